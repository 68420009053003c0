#!/usr/bin/env bash
# One command from a fresh checkout to a video: builds ./turbodiffusion (pure
# Go, no cgo) and runs `turbodiffusion generate` with the arguments given,
# e.g.  scripts/run.sh --model ~/models --prompt "a fox in the snow" -o fox.mp4
# Missing model files are listed with where to download them.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v go >/dev/null 2>&1; then
  [ -x /usr/local/go/bin/go ] && export PATH="/usr/local/go/bin:$PATH" || {
    echo "run.sh: Go 1.26 or newer is needed to build (https://go.dev/dl/)" >&2; exit 1; }
fi
CGO_ENABLED=0 go build -o turbodiffusion ./cmd/turbodiffusion
command -v ffmpeg >/dev/null 2>&1 || echo "run.sh: ffmpeg not found: .mp4 output falls back to an animated GIF (apt install ffmpeg)" >&2
exec ./turbodiffusion generate "$@"
