#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one run of under ~8 minutes (sized for a 15-minute GPU lease):
#   1. the tests marked `gpu` (fast path bf16 + compile keeps state_dict keys; protocol scores on the GPU
#      equal the CPU kernel's, bf16 autocast or not);
#   2. `mdrn-bench --device cuda` (sections limits and gpu: bf16 matmul and convolution limits, training
#      steps eager fp32 / bf16 NHWC / compiled / larger batch, forward x2 and x4), written to $OUT;
#   3. a short Lightning run of the quickstart on the GPU (bf16-mixed, compiled), its test table kept.
# Usage: OUT=/some/folder bash scripts/gpu_checks.sh   (each step has its own time limit; the exit code
# is the first failure's). Run from the repository root with the package importable (pip install -e .,
# or PYTHONPATH=.).
set -u
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg WANDB_MODE=offline PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
rc=0
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log, remember a failure
  local name=$1 limit=$2
  shift 2
  echo "=== $name (limit ${limit} s) $(date -u +%T)"
  local t0=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local r=$?
  tail -n "${TAIL:-25}" "$OUT/$name.log"
  echo "=== $name: exit $r after $((SECONDS - t0)) s"
  [ $r -ne 0 ] && [ $rc -eq 0 ] && rc=$r
  return 0
}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"
step tests "${TESTS_LIMIT:-120}" python3 -m pytest -q -p no:cacheprovider -m gpu -rs \
  tests/test_perf.py tests/test_metrics.py
step bench "${BENCH_LIMIT:-420}" python3 -m mdrn.bench --device cuda --out "$OUT" --no-readme
step train "${TRAIN_LIMIT:-150}" python3 -m mdrn.train experiment=quickstart trainer=gpu threads=4 \
  trainer.max_steps="${TRAIN_STEPS:-400}" hydra.run.dir="$OUT/quickstart_run"
find "$OUT/quickstart_run" -name 'test_results.csv' -exec cp {} "$OUT/quickstart_gpu_test_results.csv" \;
rm -rf "$OUT/quickstart_run"
exit $rc
