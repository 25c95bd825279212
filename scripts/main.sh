#!/usr/bin/env bash
# Quick start, command 1: set everything up, then run the main job: `sparsejax compare` on
# Fashion-MNIST with LeNet-5 and the library's methods (dense SGD, gradual magnitude pruning,
# gRDA, iRDA, prox-SGD, LATS, SFW), as configured in experiments/configs/fashion_mnist_lenet5.toml.
# It prints test accuracy, sparsity, FLOPs and wall time per method, the any-sparsity table, and
# saves results.md, results.json and the plots in runs/main. Runs are resumable: a second call
# reuses finished runs. Extra arguments go to `sparsejax compare` (try --help).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "${SPARSEJAX_VENV:-$ROOT/.venv}/bin/sparsejax" compare \
  --config experiments/configs/fashion_mnist_lenet5.toml --out runs/main "$@"
