#!/usr/bin/env bash
# Builds a small, statically linked ffmpeg for the GPU machine (which has
# none), so `bench e2e` can time the MP4 encode and `generate` can write MP4
# there. A manual tool, run here on Debian 12 (CI does not run it):
#
#   scripts/build-ffmpeg-static.sh   # -> .ffmpeg/ffmpeg, 5.2 MB (40 s on 2 cores, download included)
#
# The source is Debian's ffmpeg (fetched through a private apt state with a
# deb-src entry; the system's package sources are not changed) and x264 is
# Debian's libx264.a (libx264-dev, installed with apt, with nasm for
# ffmpeg's own assembly). Only what package video uses is built: rawvideo in
# from a pipe, libx264, swscale (rgb24 -> yuv420p), the mp4 muxer, and for
# video.ReadMP4 the mov demuxer, the h264 decoder and rawvideo out; file and
# pipe protocols. The binary is stripped and needs no shared library.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/.ffmpeg
work=${FFMPEG_BUILD_DIR:-$out/build}
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
start=$(date +%s)

# Build tools and libx264.a (pkg-config finds x264.pc with --static).
need=()
for p in libx264-dev nasm pkg-config; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[ -e /usr/lib/x86_64-linux-gnu/libx264.a ] || { echo "build-ffmpeg-static: libx264.a missing (libx264-dev)" >&2; exit 1; }

# Debian's ffmpeg source package, through a private apt state.
mkdir -p "$work"
src=$(ls -d "$work"/ffmpeg-*/ 2>/dev/null | head -1 || true)
if [ -z "$src" ]; then
	codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
	apt=$work/apt
	mkdir -p "$apt/lists/partial"
	printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb-src\nURIs: http://deb.debian.org/debian-security\nSuites: %s-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
		"$codename" "$codename" "$codename" >"$apt/src.sources"
	o=(-oDir::Etc::SourceList="$apt/src.sources" -oDir::Etc::SourceParts=/dev/null -oDir::State::Lists="$apt/lists" -oDebug::NoLocking=1)
	apt-get "${o[@]}" update -qq
	# _apt drops privileges for downloads; let it write the folder.
	chmod 777 "$work"
	(cd "$work" && apt-get "${o[@]}" source -qq ffmpeg)
	src=$(ls -d "$work"/ffmpeg-*/ | head -1)
fi
echo "build-ffmpeg-static: source $src"

cd "$src"
# --disable-autodetect keeps every optional system library (and dlopen'd
# loaders such as nvenc) out; --disable-network keeps glibc's resolver,
# which cannot be linked statically, out.
./configure --prefix="$out/prefix" \
	--pkg-config-flags=--static --extra-ldflags=-static --extra-cflags=-Os \
	--disable-autodetect --disable-everything --disable-network \
	--disable-doc --disable-debug --disable-ffplay --disable-ffprobe \
	--disable-avdevice --disable-swresample --disable-postproc --disable-iconv \
	--enable-gpl --enable-libx264 --enable-small \
	--enable-protocol=file,pipe \
	--enable-demuxer=rawvideo,mov \
	--enable-decoder=rawvideo,h264 --enable-parser=h264 \
	--enable-encoder=libx264,rawvideo \
	--enable-muxer=mp4,rawvideo \
	--enable-filter=scale,format,null,buffer,buffersink,setpts,trim,fps,transpose,hflip,vflip >"$work/configure.log"
make -j2 >"$work/make.log" 2>&1 || { tail -40 "$work/make.log" >&2; exit 1; }
strip -o "$out/ffmpeg" ffmpeg
cd "$root"

# Checks: no shared library, and it encodes and decodes.
file "$out/ffmpeg" | grep -q "statically linked" || { echo "build-ffmpeg-static: $(file "$out/ffmpeg")" >&2; exit 1; }
"$out/ffmpeg" -loglevel error -f rawvideo -pix_fmt rgb24 -s 64x32 -r 16 -i /dev/zero -frames:v 4 \
	-vcodec libx264 -pix_fmt yuv420p -crf 25 -f mp4 -y "$work/check.mp4"
n=$("$out/ffmpeg" -loglevel error -i "$work/check.mp4" -f rawvideo -pix_fmt rgb24 - | wc -c)
[ "$n" = $((64 * 32 * 3 * 4)) ] || { echo "build-ffmpeg-static: check clip decoded to $n bytes" >&2; exit 1; }
echo "build-ffmpeg-static: $out/ffmpeg, $(stat -c %s "$out/ffmpeg") bytes, $(($(date +%s) - start)) s"
echo "test it: PATH=$out:\$PATH go test -count=1 ./video/ ./pipeline/"
