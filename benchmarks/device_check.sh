#!/usr/bin/env bash
# The GPU check of issue 18 (one GPU, under 8 minutes; each part has a hard timeout):
#   1. the trainer's step throughput (images/s) of every method against SGD for ResNet-18
#      on CIFAR-sized synthetic data, batch 256, float32 (all 17 methods) and bf16 mixed
#      precision (the main methods: every extra method is one more ResNet-18 compilation);
#   2. benchmarks/transforms.py (ratio to SGD-momentum, fraction of a copy's bandwidth);
#   3. the 2:4 nm_spmm against the dense bf16 matmul, 8192 x 8192 (benchmarks/nm_spmm.py).
# Usage (from the repository root):
#   benchmarks/device_check.sh            # the GPU check; output also in device_check.log
#   benchmarks/device_check.sh --quick    # the same parts at toy sizes, seconds (CPU smoke test)
# A part that fails or runs out of time prints FAILED and the others still run.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
LOG=${LOG:-device_check.log}
quick=0
[ "${1:-}" = "--quick" ] && quick=1

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
  echo "device_check $(date -u '+%Y-%m-%d %H:%M UTC'), quick=$quick"
  $PY -c "import jax; print('jax', jax.__version__, jax.devices())"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  if [ $quick = 1 ]; then
    part 120 $PY benchmarks/throughput.py --models lenet5 --methods sgd,grda --batch-size 8 --rounds 1 --iters 1 --dtype float32
    part 120 $PY benchmarks/throughput.py --models lenet5 --methods sgd,grda --batch-size 8 --rounds 1 --iters 1 --dtype bfloat16
    part 120 $PY benchmarks/transforms.py --quick
    part 60 $PY benchmarks/nm_spmm.py --quick
  else
    part 230 $PY benchmarks/throughput.py --models resnet18 --methods all --batch-size 256 --rounds 5 --iters 2 --dtype float32
    part 130 $PY benchmarks/throughput.py --models resnet18 --batch-size 256 --rounds 5 --iters 2 --dtype bfloat16
    part 70 $PY benchmarks/transforms.py
    part 40 $PY benchmarks/nm_spmm.py --size 8192
  fi
} 2>&1 | tee "$LOG"
