#!/bin/bash
# taehv helper's device run: GPU tests then the 480p benchmark.
cd "$(dirname "$0")"  # .taehv-dev: cuda.test (go test -c ./backend/cuda) and golden/taehv, carried
export TURBODIFFUSION_GOLDEN=$PWD/golden TURBODIFFUSION_KERNEL_CACHE=/tmp/kcache
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv
T0=$(date +%s)
./cuda.test -test.run 'TestConvFusedMatchesCPU|TestTinyActMatchesCPU|TestTAEHVModelMatchesCPU|TestGoldenTAEHVOnGPU|TestConv3dHopperMatchesCPU|TestConv3dUpsample2xMatchesCPU|TestConv3dNormHistoryMatchesCPU' -test.v > $OUT/tests.log 2>&1
echo "tests rc=$? after $(( $(date +%s) - T0 )) s"
grep -E "^(--- |FAIL|ok|PASS)|rel_l2|Error|error|panic" $OUT/tests.log | grep -v "^--- PASS" | head -150
echo "=== bench default after $(( $(date +%s) - T0 )) s"
./cuda.test -test.run XXX -test.bench 'BenchmarkTAEHVDecode480p' -test.benchtime 10x > $OUT/bench.log 2>&1; tail -60 $OUT/bench.log
echo "=== bench N256 after $(( $(date +%s) - T0 )) s"
TURBODIFFUSION_CONV_N256=1 ./cuda.test -test.run XXX -test.bench 'BenchmarkTAEHVDecode480p' -test.benchtime 10x 2>&1 | grep -E "Benchmark|conv3d_tma|ms/decode"
echo "=== bench non-persistent after $(( $(date +%s) - T0 )) s"
TURBODIFFUSION_CONV=tma ./cuda.test -test.run XXX -test.bench 'BenchmarkTAEHVDecode480p' -test.benchtime 10x 2>&1 | grep -E "Benchmark|conv3d_tma|ms/decode"
echo "done after $(( $(date +%s) - T0 )) s"
