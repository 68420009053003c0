#!/usr/bin/env bash
# One device iteration of the VAE conv work: tests (new path, then the old
# path forced), then the conv and decode benchmarks with the old kernel as
# the same-call baseline.
set -uo pipefail
cd "$(dirname "$0")"
export TURBODIFFUSION_KERNEL_CACHE=/tmp/td-kernels TURBODIFFUSION_GOLDEN=$PWD/golden
OUT=${OUT:-out}; mkdir -p $OUT
cat commit; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv
T=${TESTS:-'Conv3d|ConvTMA|ConvTile|ChannelRMS|Upsample|FrameAttention|VAE'}
timeout 200 ./cuda.test -test.run "$T" -test.v 2>&1 | grep -v '^=== RUN' | tee $OUT/tests-tma.log | grep -E '^(--- |FAIL|ok|PASS|panic)|rel-L2|sm_90' | grep -v -- '--- PASS' | head -80
echo "tests tma rc=${PIPESTATUS[0]}"
TURBODIFFUSION_CONV=mma timeout 120 ./cuda.test -test.run 'TestConv3d' 2>&1 | tee $OUT/tests-mma.log | tail -3
[ -n "${NOBENCH:-}" ] && exit 0
timeout 150 ./cuda.test -test.run XXX -test.bench 'Conv3dBF16' -test.benchtime ${CONVN:-10x} 2>&1 | tee $OUT/bench-conv.log | grep -E 'Benchmark|FAIL|panic'
for mode in default tma-s mma; do
  if [ $mode = default ]; then unset TURBODIFFUSION_CONV; else export TURBODIFFUSION_CONV=$mode; fi
  timeout 150 ./cuda.test -test.run XXX -test.bench 'VAEDecode480p' -test.benchtime 3x 2>&1 | tee $OUT/bench-decode-$mode.log | grep -E 'ns/op|FAIL|panic|conv|pack|norm|copy3|ew_|outside|wall' | head -24
done
