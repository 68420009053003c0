#!/usr/bin/env bash
# The test command: vet, format check and every test (GPU tests skip without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=0
# NVRTC 12 for the sm_90a kernels, where scripts/setup-ci.sh unpacked it.
nvrtc12=/opt/turbodiffusion-nvrtc12/usr/lib/x86_64-linux-gnu
if [ -z "${TURBODIFFUSION_NVRTC_SM90A_LIBS:-}" ] && [ -e "$nvrtc12/libnvrtc.so.12" ]; then
	export TURBODIFFUSION_NVRTC_SM90A_LIBS="$nvrtc12"
fi
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt needed:"; echo "$unformatted"; exit 1; fi
go vet ./...
# staticcheck (a tool of go.mod, pinned there) catches what vet does not.
go tool staticcheck ./...
go build -o /dev/null ./cmd/turbodiffusion
# The other platforms compile (nothing of theirs runs here; ~2-3 min cold):
# Windows amd64 is vetted and every package's test binary links, so files
# split by build tags stay in step; macOS and Linux on arm64 build.
GOOS=windows GOARCH=amd64 go vet ./...
for p in $(GOOS=windows GOARCH=amd64 go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' ./...); do
	GOOS=windows GOARCH=amd64 go test -c -o /dev/null "$p"
done
GOOS=darwin GOARCH=arm64 go build ./...
GOOS=linux GOARCH=arm64 go build ./...
# The log goes to a fresh temporary file (a fixed /tmp name could be another
# user's file or a link planted there); its path is printed at the end.
log=$(mktemp "${TMPDIR:-/tmp}/turbodiffusion-test.XXXXXX")
trap 'echo "test log: $log"' EXIT
go test -count=1 -timeout 60m ./... 2>&1 | tee "$log"
