#!/usr/bin/env bash
# Quick start, command 1: set everything up, then run the main job (LeNet-300-100 on
# Fashion-MNIST with SGD and gRDA; prints test accuracy, sparsity and wall time).
# Extra arguments go to experiments/fashion_mnist_mlp.py (try --help).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
exec "${SPARSEJAX_VENV:-$ROOT/.venv}/bin/python" "$ROOT/experiments/fashion_mnist_mlp.py" "$@"
