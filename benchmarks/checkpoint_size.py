"""Checkpoint size of a RigL train state: masks bit-packed (as saved now) against one byte per entry.

The state is RigL at 90% sparsity (ERK, the kernels only) around
``optax.sgd(0.1, momentum=0.9)`` on the ResNet-18-shaped tree of
``benchmarks/transforms.py`` (11.69M float32 parameters, 62 leaves), after two
steps on random gradients (one mask update), so that the params are 90% zeros
and the momentum is non-zero as in a real run. It is saved twice with
:class:`sparsejax.train.checkpoint.Workdir`: as ``Workdir.save`` writes it
(boolean leaves bit-packed) and as earlier versions wrote it (boolean leaves
one byte per entry). Printed: the bytes of the supports before compression,
on disk when saved alone, and the bytes on disk of the ``state`` item and of
the whole checkpoint (Orbax compresses array data with zstd).

Usage::

  python benchmarks/checkpoint_size.py            # ResNet-18 tree (tens of seconds)
  python benchmarks/checkpoint_size.py --quick    # tiny tree, seconds
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np
import optax
import orbax.checkpoint as ocp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import device_description  # noqa: E402
from transforms import SIZES, resnet18_params  # noqa: E402

from sparsejax import pruning, tree  # noqa: E402
from sparsejax.train import data_mesh  # noqa: E402
from sparsejax.train.checkpoint import Workdir, checksums  # noqa: E402
from sparsejax.train.step import TrainState, zero_totals  # noqa: E402

SPARSITY = 0.9
META = {"epoch": 0, "batch": 0, "history": [], "wall_time": 0.0, "epoch_elapsed": 0.0}


def rigl_state(size: str) -> TrainState:
    """The train state after two RigL steps (one mask update) on random gradients, replicated."""
    rep = jax.sharding.NamedSharding(data_mesh(), jax.sharding.PartitionSpec())
    params = jax.device_put(resnet18_params(0, **SIZES[size]), rep)
    tx = pruning.rigl(optax.sgd(0.1, momentum=0.9), SPARSITY, end_step=1000, update_freq=2,
                      mask=tree.weights_only)

    @jax.jit
    def step(params, state, seed):
        leaves, treedef = jax.tree.flatten(params)
        keys = jax.random.split(jax.random.key(seed), len(leaves))
        grads = treedef.unflatten([jax.random.normal(k, x.shape, x.dtype) for k, x in
                                   zip(keys, leaves)])
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    state = jax.jit(tx.init)(params)
    for seed in range(2):
        params, state = step(params, state, seed)
    return TrainState(jax.device_put(np.int32(2), rep), params, state, {})


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def save(folder: Path, state: TrainState, packed: bool) -> Path:
    """Saves ``state`` as ``Workdir.save`` does (``packed``) or as earlier versions did."""
    totals = zero_totals(data_mesh())
    wd = Workdir(folder, {}, {}, keep=1)
    wd.prepare("new")
    if packed:
        wd.save(1, state, totals, META)
    else:
        meta = dict(META, checksums={"state": checksums(state), "totals": checksums(totals)})
        wd.manager.save(1, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), totals=ocp.args.StandardSave(totals),
            meta=ocp.args.JsonSave(meta)))
    wd.close()
    return wd.checkpoint_dir / "1"


def measure(size: str) -> dict[str, float]:
    state = rigl_state(size)
    masks = [m for m in jax.tree.leaves(state.opt_state.support)]
    masks_only = TrainState(state.step, {}, state.opt_state.support, {})
    out: dict[str, float] = {
        "params": sum(x.size for x in jax.tree.leaves(state.params)),
        "mask_entries": sum(m.size for m in masks),
        "mask_bytes_unpacked": sum(m.size for m in masks),
        "mask_bytes_packed": sum((m.size + 7) // 8 for m in masks),
    }
    with tempfile.TemporaryDirectory() as root:
        for name in ("packed", "unpacked"):
            step_dir = save(Path(root) / name, state, name == "packed")
            out[f"state_disk_{name}"] = disk_bytes(step_dir / "state")
            out[f"checkpoint_disk_{name}"] = disk_bytes(step_dir)
            step_dir = save(Path(root) / f"masks_{name}", masks_only, name == "packed")
            out[f"masks_disk_{name}"] = disk_bytes(step_dir / "state")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny tree")
    args = parser.parse_args(argv)
    size = "tiny" if args.quick else "resnet18"
    print(f"devices: {device_description()}; jax {jax.__version__}, orbax {ocp.__version__}")
    start = time.perf_counter()
    r = measure(size)
    mb = 1e6
    print(f"tree: {size}, {r['params']:,} params, RigL {SPARSITY:.0%} (ERK), "
          f"{r['mask_entries']:,} mask entries")
    print(f"{'':<28} {'unpacked':>12} {'packed':>12} {'ratio':>7}")
    for label, key in (("masks before compression MB", "mask_bytes"),
                       ("masks alone on disk MB", "masks_disk"),
                       ("state/ on disk MB", "state_disk"),
                       ("whole checkpoint on disk MB", "checkpoint_disk")):
        a, b = r[f"{key}_unpacked"], r[f"{key}_packed"]
        print(f"{label:<28} {a / mb:>12.3f} {b / mb:>12.3f} {a / b:>7.2f}")
    saved = r["checkpoint_disk_unpacked"] - r["checkpoint_disk_packed"]
    print(f"packing saves {saved / mb:.2f} MB per checkpoint "
          f"({saved / r['checkpoint_disk_unpacked']:.1%}); wall time {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
