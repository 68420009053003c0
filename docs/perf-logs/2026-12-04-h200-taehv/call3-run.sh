#!/bin/bash
cd "$(dirname "$0")"  # .taehv-dev: cuda.test (go test -c ./backend/cuda) and golden/taehv, carried
export TURBODIFFUSION_GOLDEN=$PWD/golden TURBODIFFUSION_KERNEL_CACHE=/tmp/kcache
./cuda.test -test.run 'TestConvFusedPackedChain|TestTAEHVModelMatchesCPU|TestGoldenTAEHVOnGPU' -test.v > $OUT/tests.log 2>&1
echo "tests rc=$?"
grep -E "^(--- |FAIL|ok|PASS)|panic|taehv_test.go" $OUT/tests.log | head -60
./cuda.test -test.run XXX -test.bench 'BenchmarkTAEHVDecode480p' -test.benchtime 20x 2>&1 | tail -14
