"""Speed of global magnitude selection: sparsejax's threshold search against a full argsort.

Both candidates compute the keep-masks of global magnitude pruning (remove
the ``k`` smallest ``|w|`` over all kernels together) on the same parameter
tree, shaped like a small VGG-style CNN with a wide classifier (4,247,232
weights in 7 kernels, float32):

* ``fast``: :func:`sparsejax.pruning.select_global` (sample-bracketed
  bisection on order-preserving integer keys; no full sort);
* ``argsort``: :func:`sparsejax.pruning.select_global_argsort`, a stable
  ``jnp.argsort`` of all the magnitudes, the first ``k`` removed (the goal:
  ``fast`` at least 5x faster, with identical masks);
* ``sort``, for information: ``jnp.sort`` of the magnitudes (no indices) and
  the threshold at rank ``k``, ``|w| > tau`` kept; cheaper than the argsort
  but wrong when the threshold is tied.

A second part times the linear minimisation oracle of SFW's K-sparse
polytope (:meth:`sparsejax.constraints.KSparsePolytope.lmo`, K = 5% of each
kernel, the registry's default) on the kernels of an ImageNet ResNet-18
(11.7M weights in 21 kernels; ``--quick``: a quarter of the channels) for
random normal gradients: ``select``, the library's oracle, which marks the K
largest ``|g|`` with :func:`sparsejax.select.top_k_mask`, against ``top_k``,
the same oracle written with ``jax.lax.top_k`` and a scatter (the library's
form before 2026-12-06). Both must give identical vertices. (Off a CPU the
library's oracle uses ``lax.top_k`` too, so there the two should time alike.)

Each is one jitted function ``tree -> masks``. They run in interleaved rounds
(each round runs each once, in a rotating order) so that the noise of a shared
machine falls on both alike; the figure is the median over rounds. The masks
are compared for equality, on the float32 tree and on a bfloat16-rounded copy
full of ties (which the fast path breaks by position, as a stable sort does).

Usage::

  python benchmarks/pruning_select.py               # ~4.2M weights, ~1 minute on 2 cores
  python benchmarks/pruning_select.py --quick       # small trees, seconds
  python benchmarks/pruning_select.py --rounds 9 --sparsity 0.95

Timing figures are printed, never asserted: machines are noisy.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import sparsejax as sj  # noqa: E402
from sparsejax import pruning  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/ is not a package
from transforms import SIZES, resnet18_params  # noqa: E402

SHAPES = {
    "conv1": (3, 3, 3, 64),
    "conv2": (3, 3, 64, 128),
    "conv3": (3, 3, 128, 256),
    "conv4": (3, 3, 256, 256),
    "conv5": (3, 3, 256, 512),
    "fc1": (2048, 1024),
    "fc2": (1024, 10),
}
QUICK_SHAPES = {"conv": (3, 3, 16, 32), "fc1": (512, 256), "fc2": (256, 10)}


def make_tree(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, Any]:
    """Kernels with He-normal values and a bias per layer (biases are not pruned)."""
    rng = np.random.default_rng(seed)
    tree = {}
    for name, shape in shapes.items():
        fan_in = int(np.prod(shape[:-1]))
        tree[name] = {
            "kernel": jnp.asarray(rng.normal(0.0, np.sqrt(2.0 / fan_in), shape), jnp.float32),
            "bias": jnp.zeros(shape[-1], jnp.float32),
        }
    return tree


def kernels(tree: dict[str, Any]) -> list[jax.Array]:
    return [layer["kernel"] for layer in tree.values()]


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def interleaved(candidates: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    """Times of each candidate over ``rounds`` rounds, each round in a rotating order."""
    times: dict[str, list[float]] = {name: [] for name in candidates}
    names = list(candidates)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            times[name].append(timed(candidates[name]))
    return times


def lmo_by_top_k(con: sj.constraints.KSparsePolytope, g: jax.Array) -> jax.Array:
    """The K-sparse LMO through ``lax.top_k`` and a scatter (the reference)."""
    flat = g.reshape(-1)
    k = con.k_for(int(flat.size))
    _, idx = jax.lax.top_k(jnp.abs(flat), k)
    v = jnp.zeros_like(flat).at[idx].set(-con.radius * jnp.sign(flat[idx]))
    return (v + 0.0).reshape(g.shape)


def lmo_part(quick: bool, rounds: int, k_frac: float = 0.05) -> None:
    """Times SFW's K-sparse LMO on a ResNet-18's kernels: top_k_mask against lax.top_k."""
    tree = resnet18_params(**SIZES["small" if quick else "resnet18"])
    paths = [p for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
    shapes = [x.shape for p, x in zip(paths, jax.tree.leaves(tree)) if "kernel" in str(p[-1])]
    rng = np.random.default_rng(1)
    grads = [jnp.asarray(rng.standard_normal(s, dtype=np.float32)) for s in shapes]
    con = sj.constraints.k_sparse_polytope(k_frac=k_frac)
    select = jax.jit(lambda gs: [con.lmo(g) for g in gs])
    top_k = jax.jit(lambda gs: [lmo_by_top_k(con, g) for g in gs])
    n = sum(int(g.size) for g in grads)
    print(f"\nK-sparse LMO (K = {k_frac:.0%} of each kernel) of {n:,} weights in {len(grads)} "
          f"ResNet-18{' (quarter width)' if quick else ''} kernels, the largest "
          f"{max(int(g.size) for g in grads):,}:")
    candidates = {"select": lambda: select(grads), "top_k": lambda: top_k(grads)}
    compile_s = {name: timed(f) for name, f in candidates.items()}
    print("first call (compile + run): "
          + ", ".join(f"{name} {t:.2f}s" for name, t in compile_s.items()))
    times = interleaved(candidates, rounds)
    med = {name: float(np.median(ts)) for name, ts in times.items()}
    for name, ts in times.items():
        print(f"{name:>8}: median {1e3 * med[name]:8.1f} ms over {len(ts)} rounds "
              f"(min {1e3 * min(ts):.1f}, max {1e3 * max(ts):.1f})")
    same = all(bool(jnp.array_equal(a, b)) for a, b in zip(select(grads), top_k(grads)))
    print(f"speed ratio top_k / select: {med['top_k'] / med['select']:.1f}x; "
          f"vertices identical: {same}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small tree (smoke test)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--sparsity", type=float, default=0.9)
    args = parser.parse_args(argv)

    tree = make_tree(QUICK_SHAPES if args.quick else SHAPES)
    scores = [jnp.abs(k) for k in kernels(tree)]
    n = sum(int(s.size) for s in scores)
    k = int(round(args.sparsity * n))

    fast = jax.jit(lambda s: pruning.select_global(s, k))
    reference = jax.jit(lambda s: pruning.select_global_argsort(s, k))

    @jax.jit
    def sort_threshold(s: list[jax.Array]) -> list[jax.Array]:
        tau = jnp.sort(jnp.concatenate([x.ravel() for x in s]))[k - 1]
        return [x > tau for x in s]

    candidates = {"fast": fast, "argsort": reference, "sort": sort_threshold}

    print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({platform.machine()}, "
          f"{os.cpu_count()} CPUs); {n:,} weights in {len(scores)} kernels; "
          f"remove k={k:,} ({args.sparsity:.0%})")
    compile_s = {name: timed(lambda f=f: f(scores)) for name, f in candidates.items()}
    print("first call (compile + run): "
          + ", ".join(f"{name} {t:.2f}s" for name, t in compile_s.items()))

    times = interleaved({name: lambda f=f: f(scores) for name, f in candidates.items()},
                        args.rounds)
    med = {name: float(np.median(ts)) for name, ts in times.items()}
    for name, ts in times.items():
        print(f"{name:>8}: median {1e3 * med[name]:8.1f} ms over {len(ts)} rounds "
              f"(min {1e3 * min(ts):.1f}, max {1e3 * max(ts):.1f})")
    print(f"speed ratio argsort / fast: {med['argsort'] / med['fast']:.1f}x (goal: >= 5x); "
          f"sort-only threshold / fast: {med['sort'] / med['fast']:.1f}x")

    def same(a: list[jax.Array], b: list[jax.Array]) -> bool:
        return all(bool(jnp.array_equal(x, y)) for x, y in zip(a, b))

    identical = same(fast(scores), reference(scores))
    kept = sum(int(jnp.sum(m)) for m in fast(scores))
    print(f"masks identical to argsort: {identical}; kept {kept:,} of {n:,} "
          f"(expected {n - k:,})")
    tied = [s.astype(jnp.bfloat16).astype(jnp.float32) for s in scores]
    distinct = int(jnp.unique(jnp.concatenate([t.ravel() for t in tied])).size)
    print(f"bfloat16-rounded scores ({distinct:,} distinct values): masks identical: "
          f"{same(fast(tied), reference(tied))}")
    lmo_part(args.quick, args.rounds)


if __name__ == "__main__":
    main()
