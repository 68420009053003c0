#!/usr/bin/env bash
# One device call of the W8A8 work: correctness (fused vs unfused vs CPU
# rule, golden DiT), compute-sanitizer, GEMM/LN benchmarks, DiT forward.
set -uo pipefail
cd "$(dirname "$0")"
export TURBODIFFUSION_KERNEL_CACHE=/tmp/td-kernels TURBODIFFUSION_GOLDEN=$PWD/golden
OUT=${OUT:-out}; mkdir -p $OUT
T0=$SECONDS
el() { echo "[t=$((SECONDS-T0))s] $*"; }
echo "commit $(cat commit)"; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader
TESTS='TestAddLayerNormInt8|TestInt8LinearGELUQ|TestInt8LinearMatchesCPU|TestInt8LinearGolden|TestGoldenDiTInt8Hopper|TestAddLayerNorm$|TestNorms|TestElementwise|TestGoldenDiTOnGPU/bf16|TestInt8LinearArgumentErrors'
timeout ${TT:-110} ./cuda.test -test.v -test.run "$TESTS" > $OUT/tests.log 2>&1; el "tests rc=$?"
grep -E '^(--- FAIL|FAIL|ok|PASS|panic)|rel_l2|differ|fused launches|did not|Error' $OUT/tests.log | head -40
grep -E -- '--- PASS' $OUT/tests.log | grep -v '    ---' | tr '\n' ' '; echo
TURBODIFFUSION_INT8_BENCH_VARIANTS=${BV:-bf16,quant,n128p_i2f,n128w3_i2f,q,gq,gq-gemm,gq-unfused} timeout ${BT:-55} ./cuda.test -test.run XXX -test.bench 'Int8Linear|AddLayerNormInt8' -test.benchtime 1x > $OUT/bench.log 2>&1; el "bench rc=$?"
grep -E '^Benchmark' $OUT/bench.log | sed -E 's/ +[0-9]+ ns\/op//; s/-16 +1 +/ /' 
dit() {
for run in "$@"; do
  case $run in
    bf16) a="--profile";; quant) a="--quant --profile";; quant_nofuse) a="--quant"; export TURBODIFFUSION_INT8_FUSE=0;;
    quant_w3) a="--quant"; unset TURBODIFFUSION_INT8_FUSE; export TURBODIFFUSION_INT8_GEMM=n128w3_i2f;;
  esac
  timeout $([ $run = bf16 ] && echo 45 || echo 30) ./turbodiffusion bench --parts dit --iters 3 $a > $OUT/dit_$run.log 2>&1; el "dit $run rc=$?"
  grep -E 'DiT forward' $OUT/dit_$run.log
  unset TURBODIFFUSION_INT8_FUSE TURBODIFFUSION_INT8_GEMM
done
}
dit bf16 quant
CS=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer /opt/nvidia/*/compute-sanitizer 2>/dev/null | head -1)
if [ -n "${SAN:-1}" ] && [ -n "$CS" ]; then
  timeout 40 $CS --tool memcheck --error-exitcode 9 ./cuda.test -test.run 'TestAddLayerNormInt8/D_(1536_rows_1x300|5120_rows_1x130)|TestInt8LinearGELUQ/1280x' > $OUT/memcheck.log 2>&1; el "memcheck rc=$?"
  grep -E "ERROR SUMMARY|^(ok|PASS|FAIL)|Invalid|out of bounds" $OUT/memcheck.log | head -8
  timeout 25 $CS --tool racecheck --error-exitcode 9 ./cuda.test -test.run 'TestAddLayerNormInt8/D_1536_rows_1x300_add_true_gate_true|TestInt8LinearGELUQ/1280x' > $OUT/racecheck.log 2>&1; el "racecheck rc=$?"
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY|^(ok|PASS|FAIL)|hazard" $OUT/racecheck.log | head -8
fi
dit quant_nofuse ${EXTRA:-}
grep -A40 'GPU time per kernel' $OUT/dit_quant.log | head -45
el done
