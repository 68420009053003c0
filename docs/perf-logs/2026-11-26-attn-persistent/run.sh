#!/bin/bash
# Persistent attention (w2tivk128p), device call: tests, microbenchmarks
# (12 and 40 heads, old vs new, SDPA), 14B forward with each choice.
cd "$(dirname "$0")/.."
G=.gpu-attn
export TURBODIFFUSION_KERNEL_CACHE=/tmp/td-kernels TURBODIFFUSION_GOLDEN=$PWD/$G/golden PYTHONUNBUFFERED=1
[ -x /opt/torch/.venv/bin/python3 ] && PY=/opt/torch/.venv/bin/python3 || PY=python3
{
echo "== commit $(cat $G/commit) $(date -u +%FT%TZ)"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,clocks_throttle_reasons.active --format=csv,noheader -lms 200 >$OUT/smi.csv 2>&1 &
SMI=$!
echo "== tests $(date -u +%T)"
timeout 110 $G/cuda.test -test.v -test.run 'TestParseVariant|TestSplitVariants|TestAttention|TestGoldenDiTOnGPU/bf16_(original|sla_fastnorm)$' >$OUT/tests.log 2>&1; echo "tests rc=$?"
grep -E '^(--- |ok|PASS|FAIL)|persistent|rel_l2|attention\[wgmma:w2tivk128|start-up|panic' $OUT/tests.log | head -60
K=wgmma:w2tivk128,wgmma:w2tivk128p
for m in Wan2.1-T2V-1.3B Wan2.1-T2V-14B; do
  echo "== bench attention $m $(date -u +%T)"
  timeout 60 $G/turbodiffusion bench --model $m --parts attention --iters 20 --attention-warmup-ms 2000 --attention-kernels $K 2>&1 | grep -v '^device'
done
for h in 12 40; do
  echo "== torch heads $h $(date -u +%T)"
  timeout 60 $PY scripts/bench_torch.py --warmup-ms 2000 --iters 20 --heads $h 2>&1 | grep -i 'sdpa\|error'
done
for v in "" wgmma:w2tivk128+w2tivk128p wgmma:w2tivk128p; do
  echo "== 14B forward TURBODIFFUSION_ATTENTION=$v $(date -u +%T)"
  TURBODIFFUSION_ATTENTION=$v timeout 95 $G/turbodiffusion bench --model Wan2.1-T2V-14B --parts dit --profile 2>&1 | grep -E 'attention kernel|flash_wgmma|DiT forward'
done
kill $SMI
echo "== done $(date -u +%FT%TZ)"
} 2>&1 | tee $OUT/run.log
