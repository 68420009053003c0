#!/bin/bash
cd "$(dirname "$0")"  # .taehv-dev: cuda.test (go test -c ./backend/cuda) and golden/taehv, carried
export TURBODIFFUSION_GOLDEN=$PWD/golden TURBODIFFUSION_KERNEL_CACHE=/tmp/kcache
T0=$(date +%s)
./cuda.test -test.run 'TestConvFusedPackedChain|TestConvFusedMatchesCPU|TestTinyActMatchesCPU|TestTAEHVModelMatchesCPU|TestGoldenTAEHVOnGPU|TestConv3dHopperMatchesCPU|TestConv3dUpsample2xMatchesCPU|TestConv3dNormHistoryMatchesCPU|TestConv3dMatchesCPU|TestVAEModelMatchesCPU' -test.v > $OUT/tests.log 2>&1
echo "tests rc=$? after $(( $(date +%s) - T0 )) s"
grep -E "^(--- FAIL|FAIL|ok|PASS)|panic|Error" $OUT/tests.log | head -40
grep -E "taehv_test.go" $OUT/tests.log | grep -v "persist=true" | head -80
echo "=== bench after $(( $(date +%s) - T0 )) s"
./cuda.test -test.run XXX -test.bench 'BenchmarkTAEHVDecode480p' -test.benchtime 20x > $OUT/bench.log 2>&1; tail -22 $OUT/bench.log
echo "=== Wan VAE bench after $(( $(date +%s) - T0 )) s"
./cuda.test -test.run XXX -test.bench 'BenchmarkVAEDecode480p' -test.benchtime 3x 2>&1 | grep -E "ns/op|conv3d_tma|wall"
echo "done after $(( $(date +%s) - T0 )) s"
