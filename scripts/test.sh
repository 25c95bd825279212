#!/usr/bin/env bash
# Quick start, command 2: set everything up, then run the test suite (on all cores).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k grda`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "${SPARSEJAX_VENV:-$ROOT/.venv}/bin/python" -m pytest -n auto --dist loadgroup --durations=15 "$@"
