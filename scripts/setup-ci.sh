#!/usr/bin/env bash
# Installs the system packages the test suite uses on Debian 12:
#   ffmpeg         - video files (MP4 output tests);
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
$SUDO apt-get install -y -qq --no-install-recommends ffmpeg libnvrtc11.2 libnvrtc-builtins11.8 >/dev/null
echo "setup-ci: ffmpeg $(ffmpeg -version | head -1 | cut -d' ' -f3), NVRTC: $(ls /usr/lib/x86_64-linux-gnu/libnvrtc.so* 2>/dev/null | head -1)"
