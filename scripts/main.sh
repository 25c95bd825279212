#!/usr/bin/env bash
# Quick start, command 1: set everything up, then run the main job: `sparsejax compare` on
# Fashion-MNIST with LeNet-5 and the library's methods (dense SGD, gradual magnitude pruning,
# gRDA, iRDA, prox-SGD, LATS, SFW), 3 epochs each as configured in
# experiments/configs/fashion_mnist_lenet5_quick.toml (about four minutes on an idle 2-core CPU).
# `--full` runs the longer, more accurate comparison of experiments/configs/fashion_mnist_lenet5.toml
# (5 epochs) into runs/main-full instead.
# It prints test accuracy, sparsity, FLOPs and wall time per method, the any-sparsity table, and
# saves results.md, results.json and the plots in runs/main. Progress bars (with an ETA) show each
# method's training and the one-shot evaluations. Runs are resumable: a second call reuses
# finished runs. Other arguments go to `sparsejax compare` (try --help).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
config=experiments/configs/fashion_mnist_lenet5_quick.toml
out=runs/main
args=()
for a in "$@"; do
  if [ "$a" = "--full" ]; then
    config=experiments/configs/fashion_mnist_lenet5.toml
    out=runs/main-full
  else
    args+=("$a")
  fi
done
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "${SPARSEJAX_VENV:-$ROOT/.venv}/bin/sparsejax" compare --config "$config" --out "$out" ${args[@]+"${args[@]}"}
