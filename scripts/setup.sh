#!/usr/bin/env bash
# Sets up everything sparsejax needs, idempotently: a virtual environment on Python >= 3.12 in
# .venv (or $SPARSEJAX_VENV) with sparsejax installed in editable mode plus its extras (all, dev, tf),
# and the offline Fashion-MNIST files (Debian package dataset-fashion-mnist) when they are missing.
# A second run only checks (about a second): the installer runs again only when pyproject.toml or
# the extras change. Installs with uv when it can (much faster), else with pip.
#
# Environment: PYTHON=/path/to/python3.12 to choose the interpreter; SPARSEJAX_EXTRAS to choose the
# extras (default: all,dev,tf: all brings the models, data, trainer and plots, dev the test tools,
# tf TensorFlow, which TFDS needs to prepare datasets; the core alone needs only jax, optax, numpy);
# SPARSEJAX_DATA_DIR=dir to use IDX files from another place; SPARSEJAX_INSTALLER=pip to install
# with pip only; SPARSEJAX_CONSTRAINTS=file to pin the dependencies with another constraints file
# (default scripts/constraints.txt: the versions the suite was last run with; empty: no pins).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SPARSEJAX_VENV:-$ROOT/.venv}"
EXTRAS="${SPARSEJAX_EXTRAS:-all,dev,tf}"
CONSTRAINTS="${SPARSEJAX_CONSTRAINTS-$ROOT/scripts/constraints.txt}"
FMNIST_DIR="/usr/share/datasets/fashion-mnist"

log() { printf '[setup] %s\n' "$*" >&2; }

find_python() {
  local candidates=("${PYTHON:-}" python3.14 python3.13 python3.12 python3)
  local root
  for root in "${PYENV_ROOT:-}" "$HOME/.pyenv" /root/.pyenv; do
    [ -n "$root" ] && candidates+=("$root"/versions/3.1[2-9]*/bin/python3)
  done
  candidates+=(/usr/bin/python3.1[2-9] /usr/local/bin/python3.1[2-9])
  local c
  for c in "${candidates[@]}"; do
    [ -n "$c" ] || continue
    if "$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; then
      echo "$c"
      return 0
    fi
  done
  return 1
}

if [ ! -x "$VENV/bin/python" ]; then
  if ! PY="$(find_python)"; then
    log "error: sparsejax needs Python >= 3.12 (current JAX does not support 3.11)."
    log "Install one (e.g. 'pyenv install 3.12' or your distribution's python3.12) or set PYTHON=/path/to/python3.12."
    exit 1
  fi
  log "creating $VENV with $("$PY" --version 2>&1) ($PY)"
  "$PY" -m venv "$VENV"
fi

stamp="$VENV/.sparsejax-installed"
pins=()
if [ -n "$CONSTRAINTS" ]; then
  [ -f "$CONSTRAINTS" ] || { log "error: constraints file $CONSTRAINTS not found"; exit 1; }
  pins=(-c "$CONSTRAINTS")
fi
want="$(cat "$ROOT/pyproject.toml" <(echo "extras=$EXTRAS") ${CONSTRAINTS:+"$CONSTRAINTS"} |
        sha256sum | cut -d' ' -f1)"
# uv (from PyPI, into the venv) resolves and installs the same requirements as pip about six
# times faster (2026-12-05, empty caches: 10 s against 60 s); pip is the fallback when uv cannot be
# installed or fails, and SPARSEJAX_INSTALLER=pip forces it.
# Each installer takes the constraints as extra arguments ("${pins[@]}", possibly none).
install_with_uv() {
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q uv >>"$pip_log" 2>&1 &&
    "$VENV/bin/python" -m uv pip install --python "$VENV/bin/python" "$@" -e "$ROOT[$EXTRAS]" \
      >>"$pip_log" 2>&1
}
install_with_pip() {
  "$VENV/bin/python" -m pip install --disable-pip-version-check "$@" -e "$ROOT[$EXTRAS]" \
    >>"$pip_log" 2>&1
}
install_with() {  # install_with ARGS...: uv (unless SPARSEJAX_INSTALLER=pip), then pip
  if [ "${SPARSEJAX_INSTALLER:-uv}" = uv ]; then
    install_with_uv "$@" && return 0
    log "uv could not install; trying pip"
  fi
  install_with_pip "$@"
}

if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing sparsejax[$EXTRAS] and its dependencies (first run: 10 s to a minute)"
  pip_log="$VENV/pip-install.log"
  : >"$pip_log"
  if ! install_with "${pins[@]}"; then
    if [ ${#pins[@]} -eq 0 ]; then
      tail -n 40 "$pip_log" >&2
      log "error: installation failed; the full log is in $pip_log"
      exit 1
    fi
    log "the pinned versions of $CONSTRAINTS could not be installed here (another Python or"
    log "platform? see $pip_log); installing the newest compatible releases instead"
    if ! install_with; then
      tail -n 40 "$pip_log" >&2
      log "error: installation failed; the full log is in $pip_log"
      exit 1
    fi
  fi
  echo "$want" > "$stamp"
fi

have_fmnist() {
  local d
  for d in "${SPARSEJAX_DATA_DIR:-}" "$FMNIST_DIR"; do
    [ -n "$d" ] && [ -f "$d/train-images-idx3-ubyte.gz" ] && [ -f "$d/t10k-labels-idx1-ubyte.gz" ] && return 0
  done
  return 1
}

if ! have_fmnist; then
  log "Fashion-MNIST not found; installing the Debian package dataset-fashion-mnist"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
      log "error: not root and no sudo. Install it yourself: 'apt-get install dataset-fashion-mnist',"
      log "or put the four {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz files in a folder and set SPARSEJAX_DATA_DIR."
      exit 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
  have_fmnist || { log "error: dataset-fashion-mnist installed but $FMNIST_DIR is still missing"; exit 1; }
fi
