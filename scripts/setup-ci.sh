#!/usr/bin/env bash
# Installs the system packages the test suite uses on Debian 12:
#   ffmpeg         - video files (MP4 output tests);
#   chromium       - the web page test (server.TestWebPageInChromium drives
#                    Debian's chromium headless through chromedp; it runs as
#                    root with --no-sandbox and a fresh profile);
#   libnvrtc11.2   - NVRTC 11.8 from Debian's non-free component, so every
#                    embedded CUDA kernel is compiled for sm_80/sm_90 without a GPU.
set -euo pipefail
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
if ! grep -rqs "non-free" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
  # deb822 form with the same key as the stock entry (apt refuses two
  # entries for one URI whose Signed-By differ).
  printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: %s\nComponents: contrib non-free\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$codename" |
    $SUDO tee /etc/apt/sources.list.d/turbodiffusion-nonfree.sources >/dev/null
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends ffmpeg chromium libnvrtc11.2 libnvrtc-builtins11.8 >/dev/null
echo "setup-ci: ffmpeg $(ffmpeg -version | head -1 | cut -d' ' -f3), $(chromium --version 2>/dev/null | head -1), NVRTC: $(ls /usr/lib/x86_64-linux-gnu/libnvrtc.so* 2>/dev/null | head -1)"

# NVRTC 12 for the sm_90a (wgmma/TMA) kernels: Debian 12 has only 11.8, so
# take trixie's libnvrtc12 package and unpack it into a private folder. The
# system's package sources are not changed (a separate apt state is used);
# nothing is installed. TestKernelsCompileSM90A uses it (scripts/test.sh
# points TURBODIFFUSION_NVRTC_SM90A_LIBS at it).
nvrtc12=/opt/turbodiffusion-nvrtc12
if [ ! -e "$nvrtc12/usr/lib/x86_64-linux-gnu/libnvrtc.so.12" ]; then
  tmp=$(mktemp -d) && chmod 755 "$tmp"
  mkdir -p "$tmp/lists/partial" "$tmp/debs" && chmod -R 777 "$tmp/lists" "$tmp/debs"
  printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: trixie\nComponents: non-free\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' >"$tmp/trixie.sources"
  o="-oDir::Etc::SourceList=$tmp/trixie.sources -oDir::Etc::SourceParts=/dev/null -oDir::State::Lists=$tmp/lists -oAPT::Architecture=amd64 -oDebug::NoLocking=1"
  if apt-get $o update -qq && (cd "$tmp/debs" && apt-get $o download -qq libnvrtc12 'libnvrtc-builtins12.*' 2>/dev/null); then
    $SUDO mkdir -p "$nvrtc12"
    for f in "$tmp"/debs/*.deb; do $SUDO dpkg -x "$f" "$nvrtc12"; done
  else
    echo "setup-ci: could not fetch libnvrtc12 from trixie; sm_90a kernels will not be compiled" >&2
  fi
  rm -rf "$tmp"
fi
# Not a pipeline ending in ls: under pipefail a missing library (the
# warning above) would fail the whole setup.
for lib in "$nvrtc12"/usr/lib/x86_64-linux-gnu/libnvrtc.so.12*; do
  [ -e "$lib" ] && echo "setup-ci: NVRTC for sm_90a: $lib"
  break
done
