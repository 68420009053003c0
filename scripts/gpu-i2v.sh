#!/usr/bin/env bash
# Image-to-video conformance on the GPU (pipeline TestGoldenI2VOnGPU: DiT and
# VAE on the CUDA backend against the conformance set's I2V section), kept
# apart from scripts/gpu-suite.sh because its files would push that suite's
# .gpu folder past the 64 MiB that travel.
#
#   scripts/gpu-i2v.sh build   # here (no GPU): .gpu-i2v/pipeline.test + the set's I2V files
#   then, with the device tool:  run(command="bash scripts/gpu-i2v.sh run", carry=[".gpu-i2v"])
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
build)
	src="${TURBODIFFUSION_GOLDEN:-../shared/golden}"
	rm -rf .gpu-i2v
	mkdir -p .gpu-i2v/golden
	CGO_ENABLED=0 go test -c -ldflags="-s -w" -o .gpu-i2v/pipeline.test ./pipeline
	for f in manifest.json i2v.safetensors i2v_high.pth i2v_low.pth i2v_input.png vae.safetensors; do
		cp "$src/$f" .gpu-i2v/golden/
	done
	du -sh .gpu-i2v
	echo 'next: run(command="bash scripts/gpu-i2v.sh run", carry=[".gpu-i2v"])'
	;;
run)
	export TURBODIFFUSION_KERNEL_CACHE=/tmp/td-kernels TURBODIFFUSION_GOLDEN="$PWD/.gpu-i2v/golden"
	nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
	cd .gpu-i2v # the test binary resolves testdata/ relative to here; the GPU test needs none
	./pipeline.test -test.v -test.count=1 -test.timeout 600s -test.run 'TestGoldenI2VOnGPU' 2>&1 | grep -v '^=== RUN'
	;;
*)
	echo "usage: $0 build|run" >&2
	exit 2
	;;
esac
