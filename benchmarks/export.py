"""Speed of sparse inference and of structured shrinking against the dense model, honestly.

For LeNet-300-100, LeNet-5 and ResNet-20 (zoo names ``lenet_300_100``,
``lenet5``, ``resnet20``; random weights) every kernel is pruned layer-wise
by magnitude to each sparsity, then the evaluation-mode forward pass is timed
at batch 1 and 128: dense, and with every dense/conv layer in each sparse
format (:func:`sparsejax.export.sparsify` with a forced format; a conv is its
im2col patches times the kernel matrix). Times are medians over ``--rounds``
calls after warm-up calls (compilation excluded), ``block_until_ready``. Columns:
density of the kernels, FLOPs ratio (multiply-accumulates with zeros skipped
over dense, :func:`sparsejax.models.macs`), dense ms, each format's speed-up
(dense time / sparse time), the format the benchmark rule
(:data:`sparsejax.export.CPU_RULE`, policy ``"rule"``) picks for the whole
model and its speed-up, and the bytes of :func:`sparsejax.export.save_sparse`
against a dense ``.npz`` of the same weights.

Two more tables:

* crossover: for matrix products of the shapes of these models, at 1, 128
  and 4096 rows, the highest density at which each format beats the dense
  product (``-``: at none of the densities tried); the rule is derived from it;
* structured: every group of each model loses a fraction of its units
  (zeroed producers), :func:`sparsejax.export.shrink_structured` removes them;
  speed-up of the shrunk model at batch 128 against the FLOPs reduction
  (goal: speed-up >= 0.8 x FLOPs reduction).

::

  python benchmarks/export.py            # the three models (ResNet-20 at 50/90/99%), minutes
  python benchmarks/export.py --quick    # LeNet-300-100 only (99%, batch 8), seconds (smoke test)
  python benchmarks/export.py --json figures.json
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import device_description  # noqa: E402

from sparsejax.export import (  # noqa: E402
    CSRKernel,
    dense_bytes,
    eval_copy,
    matmul_arrays,
    median_seconds,
    save_sparse,
    shrink_structured,
    sparsify,
)
from sparsejax.models import create, macs  # noqa: E402

SPARSE_FORMATS = ("bcsr", "bcoo", "segment")
# bcoo and segment materialise one product per nonzero and row; beyond this many
# (ResNet-20 at batch 128 below ~99% sparsity) they are skipped (shown as nan).
MAX_GATHER = 2e8


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="LeNet-300-100, few rounds (smoke test)")
    p.add_argument("--rounds", type=int, default=None, help="timed calls per figure")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the figures here")
    return p.parse_args(argv)


def prune_by_magnitude(model: nnx.Module, sparsity: float) -> nnx.Module:
    """A copy with every kernel's smallest ``sparsity`` fraction of entries set to zero."""
    model = nnx.clone(model)
    for path, var in nnx.iter_graph(model):
        if path and path[-1] == "kernel":
            w = np.asarray(var.get_value())
            k = int(round(sparsity * w.size))
            if k:
                cut = np.partition(np.abs(w).reshape(-1), k - 1)[k - 1]
                w = np.where(np.abs(w) > cut, w, 0.0).astype(w.dtype)
            var.set_value(jnp.asarray(w))
    return model


def _timed(model: nnx.Module, x: jax.Array, rounds: int) -> float:
    graphdef, state = nnx.split(model)
    fn = jax.jit(lambda s, z: nnx.merge(graphdef, s)(z))
    return median_seconds(fn, state, x, rounds=rounds, warmup=2)


def _kernel_density(model: nnx.Module) -> float:
    nnz = size = 0
    for path, var in nnx.iter_graph(model):
        if path and path[-1] == "kernel":
            w = np.asarray(var.get_value())
            nnz, size = nnz + np.count_nonzero(w), size + w.size
    return nnz / size


def bench_unstructured(name: str, shape: tuple[int, ...], sparsities: Sequence[float],
                       batches: Sequence[int], rounds: int, formats: Sequence[str]) -> list[dict]:
    base = eval_copy(create(name, rngs=0))
    dense_macs = sum(m.dense for m in macs(base, shape))
    rows = []
    for s in sparsities:
        model = prune_by_magnitude(base, s)
        flops_ratio = sum(m.sparse for m in macs(model, shape)) / dense_macs
        buf = io.BytesIO()
        save_sparse(buf, model)
        disk, disk_dense = buf.getbuffer().nbytes, dense_bytes(model)
        for b in batches:
            x = jax.random.normal(jax.random.key(0), (b, *shape))
            ref = np.asarray(model(x))
            dense_t = _timed(model, x, rounds)
            row: dict[str, Any] = dict(model=name, sparsity=s, batch=b,
                                       density=_kernel_density(model), flops_ratio=flops_ratio,
                                       dense_ms=dense_t * 1e3, bytes=disk, dense_bytes=disk_dense)
            gathered = b * sum(m.sparse for m in macs(model, shape))
            for f in formats:
                if f in ("bcoo", "segment") and gathered > MAX_GATHER:
                    row[f"{f}_ms"] = float("nan")  # gathers more than MAX_GATHER floats: skipped
                    continue
                sp, _ = sparsify(model, x, policy=f, max_density=1.0)
                err = float(np.abs(np.asarray(sp(x)) - ref).max())
                assert err < 1e-3 * (1 + np.abs(ref).max()), (name, s, b, f, err)
                row[f"{f}_ms"] = _timed(sp, x, rounds) * 1e3
            rule_model, report = sparsify(model, x, policy="rule")
            chosen = sorted({c.fmt for c in report.layers if c.fmt != "dense"})
            row["rule"] = "+".join(chosen) or "dense"
            row["rule_ms"] = dense_t * 1e3 if not chosen else _timed(rule_model, x, rounds) * 1e3
            rows.append(row)
    return rows


def bench_crossover(shapes: Sequence[tuple[int, int]], row_counts: Sequence[int],
                    densities: Sequence[float], rounds: int, formats: Sequence[str]) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for k, n in shapes:
        for r in row_counts:
            x = jnp.asarray(rng.normal(size=(r, k)).astype(np.float32))
            wins: dict[str, float | None] = {f: None for f in formats}
            times: dict[str, dict[float, float]] = {f: {} for f in ("dense", *formats)}
            for d in densities:
                w = (rng.normal(size=(k, n)) * (rng.random((k, n)) < d)).astype(np.float32)
                kern = CSRKernel.from_dense(w)
                for f in ("dense", *formats):
                    arrays = {a: jnp.asarray(v) for a, v in kern.arrays(f).items()}
                    fn = jax.jit(lambda z, arr, f=f: matmul_arrays(z, f, kern.shape, arr))
                    times[f][d] = median_seconds(fn, x, arrays, rounds=rounds, warmup=2)
                for f in formats:
                    if times[f][d] < times["dense"][d] and (wins[f] is None or d > wins[f]):
                        wins[f] = d
            out.append(dict(shape=[k, n], rows=r, crossover=wins,
                            times_us={f: {str(d): t * 1e6 for d, t in v.items()}
                                      for f, v in times.items()}))
    return out


def _kill_fraction(model: nnx.Module, fraction: float) -> nnx.Module:
    """Zero every producer variable of the first ``fraction`` of units of every group."""
    model = nnx.clone(model)
    from sparsejax.tree import path_str

    groups = model.prunable_groups()
    state = nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))

    def edit(path, x):
        p = path_str(path)
        x = np.array(x)
        for g in groups:
            cut = int(fraction * g.size)
            for spec in g.producers:
                if spec.path == p:
                    v = x.reshape(spec.view) if spec.view else x
                    np.moveaxis(v, spec.axis, 0)[:cut] = 0.0
        return jnp.asarray(x)

    nnx.update(model, jax.tree_util.tree_map_with_path(edit, state))
    return model


def bench_structured(name: str, shape: tuple[int, ...], fractions: Sequence[float], batch: int,
                     rounds: int) -> list[dict]:
    base = eval_copy(create(name, rngs=0))
    x = jax.random.normal(jax.random.key(1), (batch, *shape))
    out = []
    for f in fractions:
        model = _kill_fraction(base, f)
        small, info = shrink_structured(model, x[:8])
        dense_t, small_t = _timed(model, x, rounds), _timed(small, x, rounds)
        flops_red = (sum(m.dense for m in macs(model, shape))
                     / sum(m.dense for m in macs(small, shape)))
        speed = dense_t / small_t
        out.append(dict(model=name, removed=f, batch=batch, dense_ms=dense_t * 1e3,
                        small_ms=small_t * 1e3, speedup=speed, flops_reduction=flops_red,
                        ratio=speed / flops_red, max_abs_diff=info.max_abs_diff))
    return out


def _d(v: float | None) -> str:
    return "-" if v is None else f"{v:g}"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.quick:
        models = [("lenet_300_100", (28, 28, 1))]
        sparsities, batches, rounds = (0.99,), (8,), args.rounds or 2
        cross = dict(shapes=[(100, 30)], row_counts=(8,), densities=(0.3, 0.03))
        structured = models
        fractions, sbatch = (0.5,), 8
    else:
        models = [("lenet_300_100", (28, 28, 1)), ("lenet5", (28, 28, 1)),
                  ("resnet20", (32, 32, 3))]
        sparsities, batches, rounds = (0.5, 0.8, 0.9, 0.95, 0.99), (1, 128), args.rounds or 7
        cross = dict(shapes=[(784, 300), (400, 120), (576, 64)], row_counts=(1, 128, 4096),
                     densities=(0.5, 0.2, 0.1, 0.05, 0.02, 0.01))
        structured = models
        fractions, sbatch = (0.5, 0.75), 128
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"sparse export benchmark, {stamp}; device: {device_description()}; jax {jax.__version__}")
    print(f"median of {rounds} timed calls after 2 warm-up calls; random weights pruned by "
          "magnitude per layer")
    print()
    head = (f"{'model':14s} {'sparsity':>8s} {'batch':>5s} {'density':>7s} {'FLOPs':>6s} "
            f"{'dense ms':>9s} " + " ".join(f"{'x ' + f:>9s}" for f in SPARSE_FORMATS)
            + f" {'rule':>8s} {'x rule':>7s} {'KB':>7s} {'KB dense':>9s}")
    print(head)
    print("-" * len(head))
    unstructured = []
    for name, shape in models:
        fmts = SPARSE_FORMATS
        sp_list = sparsities if name != "resnet20" else [s for s in sparsities if s in (0.5, 0.9, 0.99)]
        for row in bench_unstructured(name, shape, sp_list, batches, rounds, fmts):
            unstructured.append(row)
            speed = " ".join(f"{row['dense_ms'] / row[f + '_ms']:9.2f}" for f in fmts)
            print(f"{name:14s} {row['sparsity']:8.2f} {row['batch']:5d} {row['density']:7.3f} "
                  f"{row['flops_ratio']:6.3f} {row['dense_ms']:9.3f} {speed} {row['rule']:>8s} "
                  f"{row['dense_ms'] / row['rule_ms']:7.2f} {row['bytes'] / 1024:7.1f} "
                  f"{row['dense_bytes'] / 1024:9.1f}")
    print()
    print("crossover: highest kernel density at which a format beats the dense product")
    crossover = bench_crossover(rounds=rounds, formats=SPARSE_FORMATS, **cross)
    print(f"{'matrix (K, N)':>14s} {'rows':>5s} " + " ".join(f"{f:>8s}" for f in SPARSE_FORMATS))
    for c in crossover:
        print(f"{str(tuple(c['shape'])):>14s} {c['rows']:5d} "
              + " ".join(f"{_d(c['crossover'][f]):>8s}" for f in SPARSE_FORMATS))
    print(f"(densities tried: {', '.join(f'{d:g}' for d in cross['densities'])})")
    print()
    print(f"structured shrink at batch {sbatch}: speed-up against FLOPs reduction (goal >= 0.8)")
    print(f"{'model':14s} {'removed':>7s} {'dense ms':>9s} {'small ms':>9s} {'speed-up':>8s} "
          f"{'FLOPs red':>9s} {'ratio':>6s} {'max|diff|':>9s}")
    srows = []
    for name, shape in structured:
        for r in bench_structured(name, shape, fractions, sbatch, rounds):
            srows.append(r)
            print(f"{name:14s} {r['removed']:7.2f} {r['dense_ms']:9.3f} {r['small_ms']:9.3f} "
                  f"{r['speedup']:8.2f} {r['flops_reduction']:9.2f} {r['ratio']:6.2f} "
                  f"{r['max_abs_diff']:9.1e}")
    losing = [r for r in unstructured if r["rule"] != "dense" and r["rule_ms"] > r["dense_ms"]]
    print()
    print(f"summary: the rule chose sparse in {sum(r['rule'] != 'dense' for r in unstructured)} "
          f"of {len(unstructured)} settings and lost to dense in {len(losing)}; structured "
          f"shrink met the 0.8 goal in {sum(r['ratio'] >= 0.8 for r in srows)}/{len(srows)}")
    result = dict(device=device_description(), jax=jax.__version__, date=stamp, rounds=rounds,
                  unstructured=unstructured, crossover=crossover, structured=srows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
