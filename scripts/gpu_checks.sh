#!/usr/bin/env bash
# The checks that need a CUDA GPU (issues 12 and 26), in two parts sized for one 15-minute device lease:
#   bench  (under 4 min): a preflight, the tests marked `gpu`, then `mdrn-bench --device cuda` (sections
#          limits and gpu: the GPU's ceiling for the network's convolutions, the training step at four pixel
#          budgets per way of running it, the cuDNN benchmark A/B, the kernel profile of the fusion)
#          -> $OUT/<gpu>-<date>.json and .md (e.g. h100-2026-12-01), $OUT/bench.log
#   learn  (under 8 min): a preflight, then scripts/gpu_learn.py (MDRN B=80 F=64 trained on .gpu_data/ with
#          the recipe of conf/experiment/gpu_learn.yaml, Set5 scored in fp32)
#          -> $OUT/gpu_learn_<gpu>-<date>.json and .md, $OUT/learn.log
#   all    both (12 min: over the device tool's 10 minutes per command; there, run the parts as two calls).
# Usage: OUT=/some/folder bash scripts/gpu_checks.sh bench|learn|all    (make gpu-checks PART=bench)
# .gpu_data/ (make gpu-data, on a machine with ../shared) must be in the repository root for `learn`; it also
# holds wheels of hydra-core/omegaconf/antlr4, installed into /tmp/mdrn-site only if the image lacks them.
# Each step has its own time limit; the exit code is the first failure's (3: no CUDA device or a missing
# package). Run from the repository root; nothing is written outside $OUT (a temporary folder by default).
set -u
PART=${1:-all}
case "$PART" in bench | learn | all) ;; *)
  echo "usage: $0 bench|learn|all" >&2
  exit 2
  ;;
esac
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg WANDB_MODE=offline PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
rc=0
step() { # step NAME SECONDS LOG COMMAND...: run with a time limit, append to $OUT/LOG, remember a failure
  local name=$1 limit=$2 logf=$OUT/$3
  shift 3
  echo "=== $name (limit ${limit} s) $(date -u +%T)" | tee -a "$logf"
  local t0=$SECONDS
  timeout "$limit" "$@" >>"$logf" 2>&1
  local r=$?
  tail -n "${TAIL:-40}" "$logf"
  echo "=== $name: exit $r after $((SECONDS - t0)) s" | tee -a "$logf"
  [ $r -ne 0 ] && [ $rc -eq 0 ] && rc=$r
  return 0
}
preflight() { # preflight LOG: the GPU, the packages (wheels from .gpu_data if missing), mdrn's imports
  local logf=$OUT/$1
  {
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
    python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())"
  } | tee -a "$logf"
  if ! python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_checks: no CUDA device here: these checks need one (on a CPU: pytest, make bench)" | tee -a "$logf" >&2
    exit 3
  fi
  if ! python3 -c "import hydra, omegaconf" 2>/dev/null; then
    if ls .gpu_data/wheels/*.whl >/dev/null 2>&1; then
      echo "hydra/omegaconf missing: installing .gpu_data/wheels into /tmp/mdrn-site" | tee -a "$logf"
      python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/mdrn-site .gpu_data/wheels/*.whl >>"$logf" 2>&1
      export PYTHONPATH=/tmp/mdrn-site:$PYTHONPATH
    fi
  fi
  if ! python3 -c "import mdrn.train, mdrn.bench" >>"$logf" 2>&1; then
    echo "gpu_checks: mdrn does not import here (a missing package? see $logf); carry .gpu_data (make gpu-data: its wheels) or the wheels it names" | tee -a "$logf" >&2
    tail -n 5 "$logf" >&2
    exit 3
  fi
}
if [ "$PART" = bench ] || [ "$PART" = all ]; then
  preflight bench.log
  step tests "${TESTS_LIMIT:-90}" bench.log python3 -m pytest -q -p no:cacheprovider -m gpu -rs \
    tests/test_perf.py tests/test_metrics.py tests/test_train_preset.py
  step bench "${BENCH_LIMIT:-220}" bench.log python3 -m mdrn.bench --device cuda --out "$OUT" --no-readme
fi
if [ "$PART" = learn ] || [ "$PART" = all ]; then
  preflight learn.log
  # LEARN_ARGS: extra mdrn.train overrides (e.g. model.train_preset=compiled); the summary records them
  # shellcheck disable=SC2086
  step learn "${LEARN_LIMIT:-470}" learn.log python3 scripts/gpu_learn.py --out "$OUT" \
    --budget-s "${LEARN_BUDGET:-450}" ${LEARN_ARGS:-}
fi
ls -l "$OUT"
exit $rc
