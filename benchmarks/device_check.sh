#!/usr/bin/env bash
# The GPU check of issue 18 (one GPU, under 8 minutes; each part has a hard timeout):
#   1. the trainer's step throughput (images/s) of every method against SGD for ResNet-18
#      on CIFAR-sized synthetic data, batch 256, float32 (every registered method,
#      `--methods all`: one ResNet-18 compilation each, plus sgd_again; the script prints
#      how many) and bf16 mixed precision (the main methods only);
#   2. benchmarks/transforms.py (ratio to SGD-momentum, fraction of a copy's bandwidth);
#   3. the 2:4 nm_spmm against the dense bf16 matmul, 8192 x 8192 (benchmarks/nm_spmm.py).
# The throughput parts' limits grow with their number of compilations (see budget below);
# throughput.py prints each row as soon as it is measured, so a timeout keeps those figures.
# Usage (from the repository root):
#   benchmarks/device_check.sh            # the GPU check (stops unless JAX's device is a GPU)
#   benchmarks/device_check.sh --quick    # the same parts at toy sizes, seconds (CPU smoke test)
# Python: $PYTHON, else .venv/bin/python when it exists, else python.
# Output also goes to $LOG; default $OUT/device_check.log when $OUT is set (the device
# machine returns the files under $OUT), else device_check.log in the repository root
# (gitignored).
# A part that fails or runs out of time prints FAILED and the others still run.
set -u -o pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then
  PY=$PYTHON
elif [ -x .venv/bin/python ]; then
  PY=.venv/bin/python
else
  PY=python
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1  # every line reaches the log before a timeout can kill its process
if [ -n "${OUT:-}" ]; then
  LOG=${LOG:-$OUT/device_check.log}
else
  LOG=${LOG:-device_check.log}
fi
mkdir -p "$(dirname "$LOG")"
quick=0
[ "${1:-}" = "--quick" ] && quick=1

# Budget of the full check, seconds: the parts' limits together stay under 8 minutes with the
# probe below. A throughput part gets a fixed share (start-up, data, timing rounds) plus
# PER_COMPILE per ResNet-18 step it compiles (~6 s per method per dtype on CPU is an upper
# bound for compile + run); the float32 part, the largest, takes what remains when that
# estimate would not fit.
BUDGET=440
FIXED=30
PER_COMPILE=8
TRANSFORMS_LIMIT=70
NM_LIMIT=40

# What the parts need to know: JAX's platform and the number of compilations of each
# throughput part (the registered methods, the main ones, each + sgd_again).
probe='
import sys, jax
sys.path.insert(0, "benchmarks")
import throughput as t
print("jax", jax.__version__, jax.devices())
n_all = len(t.select_methods(t.parse_args(["--methods", "all"]).methods)[0]) + 1
n_main = len(t.select_methods(t.parse_args([]).methods)[0]) + 1
print("probe", jax.devices()[0].platform, n_all, n_main)
'

part() {  # part SECONDS command...
  local limit=$1; shift
  echo "== $* (limit ${limit}s)"
  local t0=$SECONDS
  timeout "$limit" "$@"
  local rc=$?
  [ $rc -ne 0 ] && echo "FAILED (status $rc): $*"
  echo "== $((SECONDS - t0)) s"
}

{
  echo "device_check $(date -u '+%Y-%m-%d %H:%M UTC'), quick=$quick, python: $PY"
  info=$($PY -c "$probe" 2>&1)
  rc=$?
  echo "$info" | grep -v '^probe '
  if [ $rc -ne 0 ] || ! grep -q '^probe ' <<<"$info"; then
    echo "STOPPED: $PY cannot run JAX and benchmarks/throughput.py (status $rc); set PYTHON"
    echo "to a Python with JAX and sparsejax's dependencies (e.g. PYTHON=.venv/bin/python)."
    exit 1
  fi
  read -r _ platform n_all n_main <<<"$(grep '^probe ' <<<"$info" | tail -n 1)"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  if [ $quick = 1 ]; then
    part 120 $PY benchmarks/throughput.py --models lenet5 --methods sgd,grda --batch-size 8 --rounds 1 --iters 1 --dtype float32
    part 120 $PY benchmarks/throughput.py --models lenet5 --methods sgd,grda --batch-size 8 --rounds 1 --iters 1 --dtype bfloat16
    part 120 $PY benchmarks/transforms.py --quick
    part 60 $PY benchmarks/nm_spmm.py --quick
  else
    if [ "$platform" != gpu ]; then
      echo "STOPPED: JAX's device is '$platform', not a GPU: this check is for a GPU."
      echo "On a CPU, run benchmarks/device_check.sh --quick (the CPU dry run)."
      exit 2
    fi
    bf16_limit=$((FIXED + PER_COMPILE * n_main))
    f32_limit=$((FIXED + PER_COMPILE * n_all))
    room=$((BUDGET - bf16_limit - TRANSFORMS_LIMIT - NM_LIMIT))
    [ $f32_limit -gt $room ] && f32_limit=$room
    echo "throughput compilations: float32 $n_all ($((n_all - 1)) registered methods + sgd_again)," \
      "bfloat16 $n_main; limits ${f32_limit} + ${bf16_limit} + ${TRANSFORMS_LIMIT} + ${NM_LIMIT} s"
    part $f32_limit $PY benchmarks/throughput.py --models resnet18 --methods all --batch-size 256 --rounds 5 --iters 2 --dtype float32
    part $bf16_limit $PY benchmarks/throughput.py --models resnet18 --batch-size 256 --rounds 5 --iters 2 --dtype bfloat16
    part $TRANSFORMS_LIMIT $PY benchmarks/transforms.py
    part $NM_LIMIT $PY benchmarks/nm_spmm.py --size 8192
  fi
} 2>&1 | tee "$LOG"
