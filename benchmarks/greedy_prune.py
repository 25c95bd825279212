"""Time to prune each layer of a small VGG with local, exact global and Taylor-accelerated global imitation.

A VGG-11 with every width divided by ``--width-div`` (8: 8-16-32-32-64-64-64-64
channels, BatchNorm, global average pool, one dense layer) runs on 28x28x1
inputs — Fashion-MNIST when the files are found (then trained for
``--train-steps`` Adam steps first), otherwise random images. Each of its 8
convolution groups is pruned on its own (the others unpruned, as in the
paper's §3.1) to ``n = N/2`` channels with ``--steps`` greedy steps on
``--examples`` imitation images, by

* ``local``: :func:`sparsejax.structured.local_imitation` (line search): one
  forward pass, one Gram matrix, then closed-form steps; ``gram%`` is the
  share of its time spent in :func:`~sparsejax.structured.contribution_gram`
  (the forward pass included);
* ``exact``: :func:`sparsejax.structured.global_imitation` with
  ``taylor_start=None``: every step evaluates all ``N`` candidate gates
  (``jax.vmap``; cross-entropy discrepancy);
* ``taylor``: the same with the paper's acceleration past ``k = 25``: one
  backward pass ranks the units, the top 5 are evaluated exactly (one
  compiled program per step).

Each time is the median over ``--rounds`` runs after one warm-up run that
compiles. The Taylor speed-up is given per step past ``k = 25`` (``x step``:
the mean time of the steps ``k > 25`` of exact over Taylor, from the time
each step ended; this is where the acceleration applies; goal >= 5x) and for
the whole run (``x total``, which includes the 26 exact steps both do).
Agreement: the first step where the picks differ (``-``: never), the overlap
(Jaccard) of the kept channels, and the ratio of the discrepancies reached.

On the development machine (2 shared vCPUs, load 10-12 from other jobs; jax
0.12.0.1), with the defaults (trained 300 steps; 32 images; 40 steps; 2 rounds)::

  group       N    n  local s  gram%  exact s  taylor s  x total  ms/step e  ms/step t  x step  diverge  jaccard   D t/e
  convs/0     8    4    0.079   100%    7.201     8.406      0.9      160.7      165.2     1.0        -     1.00   1.000
  convs/1    16    8    0.095    92%   14.753     9.968      1.5      353.1      146.1     2.4        -     1.00   1.000
  convs/2    32   16    0.097   100%   19.967    16.024      1.2      483.6      134.3     3.6       32     1.00   1.000
  convs/3    32   16    0.107    52%   16.534    14.721      1.1      282.4      128.2     2.2       40     1.00   1.000
  convs/4    64   32    0.176    88%   38.550    24.707      1.6      867.8      113.3     7.7       26     0.62   0.505
  convs/5    64   32    0.085   100%   31.754    23.730      1.3      719.0      120.5     6.0       27     0.73   0.947
  convs/6    64   32    0.145   100%   16.765    11.769      1.4      407.7       69.9     5.8       27     0.73   0.765
  convs/7    64   32    0.104    66%    1.342     1.293      1.0       31.4       28.6     1.1       26     0.63   0.550

What the figures say:

* Per step past ``k = 25`` Taylor is 5.8-7.7x faster on the 64-channel layers
  whose later layers cost something (``convs/4-6``), as the paper's
  ``O(Nn) -> O(n)`` suggests: an exact step costs ``N`` evaluations of the
  layers after the group, a Taylor step about 8 (a backward pass and 5
  candidates). It is not faster where ``N`` is small (8-32 channels: 1-3.6x)
  or where nothing but the classifier follows the group (``convs/7``: the
  layers before the group, computed once per step by both, dominate). Over
  whole 40-step runs the gain is only 0.9-1.6x, since both take the same
  first 26 exact steps.
* The gain grows with ``N``, as it should: at VGG-11-BN/4 (``--width-div 4
  --groups convs/4,convs/6 --steps 32 --rounds 1``, 128 channels, same
  machine and load) an exact step past ``k = 25`` took 3498 and 2258 ms, a
  Taylor step 262 and 187 ms: 13.4x and 12.1x; the discrepancy reached was
  1.07x and 0.67x exact's (Jaccard 0.63, 0.71). The paper's networks
  (VGG-11, ResNet-34, MobileNetV2 at full width: 64-512 channels) are in
  this regime; this machine cannot time them at full width.
* The selections are identical up to ``k = 25`` by construction and differ
  soon after in the wider layers (the exact choice is often not among the 5
  best-ranked units), yet the Taylor runs reach the same or a lower
  discrepancy (``D t/e`` 0.5-1.0): the greedy choice is myopic either way.
* Local imitation takes 0.1-0.2 s per layer, 52-100% of it in the forward
  pass and the Gram matrix; its closed-form steps are nearly free.

Usage::

  python benchmarks/greedy_prune.py             # ~15 min on 2 busy cores (a few on an idle machine)
  python benchmarks/greedy_prune.py --quick     # width/16, 16 images, 30 steps, 2 layers, 1 round
  python benchmarks/greedy_prune.py --json figures.json

Timing figures are printed, never asserted: machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from sparsejax.models import VGG, VGG_CONFIGS  # noqa: E402
from sparsejax.structured import (  # noqa: E402
    contribution_gram,
    global_imitation,
    local_imitation,
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/ is not a package
from _common import device_description  # noqa: E402

__all__ = ["main", "make_model"]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny widths and data, 1 round (smoke test)")
    p.add_argument("--width-div", type=int, default=8, help="divide VGG-11's widths by this")
    p.add_argument("--examples", type=int, default=32, help="imitation images")
    p.add_argument("--steps", type=int, default=40, help="greedy steps per layer (past 25: Taylor)")
    p.add_argument("--rounds", type=int, default=2, help="timed runs per layer and method")
    p.add_argument("--train-steps", type=int, default=300,
                   help="Adam steps on Fashion-MNIST before pruning (0: random weights)")
    p.add_argument("--taylor-start", type=int, default=25)
    p.add_argument("--taylor-top", type=int, default=5)
    p.add_argument("--groups", type=str, default=None,
                   help="comma-separated group names (default: all convolutions)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the figures here")
    args = p.parse_args(argv)
    if args.quick:
        for name, value in (("width_div", 16), ("examples", 16), ("steps", 30), ("rounds", 1),
                            ("train_steps", 0), ("groups", "convs/2,convs/4")):
            if getattr(args, name) == p.get_default(name):
                setattr(args, name, value)
    for name in ("width_div", "examples", "steps", "rounds"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def make_model(width_div: int, seed: int = 0) -> VGG:
    """VGG-11 (BatchNorm) with widths divided by ``width_div``, for 28x28x1 inputs."""
    config = [v if v == "M" else max(1, int(v) // width_div) for v in VGG_CONFIGS[11]]
    model = VGG(config, 10, in_channels=1, batch_norm=True, rngs=nnx.Rngs(seed))
    return model


def load_images(count: int, train_steps: int) -> tuple[np.ndarray, np.ndarray | None, str]:
    """``(images for training, labels, source)``; random images when Fashion-MNIST is missing."""
    try:
        from sparsejax.data import load_fashion_mnist

        x, y = load_fashion_mnist("train")
        x = (x.astype(np.float32) / 255.0 - 0.2860) / 0.3530
        return x, np.asarray(y, np.int32), "Fashion-MNIST"
    except Exception:  # noqa: BLE001 - any reason the files are not there
        rng = np.random.default_rng(0)
        return rng.normal(size=(max(count, 256), 28, 28, 1)).astype(np.float32), None, "random"


def train(model: VGG, x: np.ndarray, y: np.ndarray, steps: int, batch: int = 128) -> float:
    """Adam on the cross-entropy, in place (BatchNorm in training mode); returns the last loss."""
    model.train()
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model: VGG, optimizer: nnx.Optimizer, xb: jax.Array, yb: jax.Array) -> jax.Array:
        def loss_fn(model: VGG) -> jax.Array:
            return optax.softmax_cross_entropy_with_integer_labels(model(xb), yb).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    rng = np.random.default_rng(0)
    loss = jnp.nan
    for _ in range(steps):
        idx = rng.integers(0, len(x), batch)
        loss = step(model, optimizer, jnp.asarray(x[idx]), jnp.asarray(y[idx]))
    model.eval()
    return float(loss)


class StepClock:
    """A ``stop_fn`` that never stops and records when each greedy step ended."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.ends: list[float] = []

    def __call__(self, gate: np.ndarray) -> bool:
        self.ends.append(time.perf_counter() - self.start)
        return False


def timed(fn: Callable[[StepClock], Any], rounds: int) -> tuple[float, Any, list[float]]:
    """Median wall time of ``fn(clock)`` over ``rounds`` runs after a warm-up run.

    Returns the median (``statistics.median``: with an even number of runs, the
    mean of the two middle ones), the last result and, for each greedy step,
    the median over the runs of the time at which it ended.
    """
    out = fn(StepClock())  # compiles
    totals, ends = [], []
    for _ in range(rounds):
        clock = StepClock()
        out = fn(clock)
        totals.append(time.perf_counter() - clock.start)
        ends.append(clock.ends)
    steps = min(len(e) for e in ends)
    return (statistics.median(totals), out,
            [statistics.median(e[k] for e in ends) for k in range(steps)])




def bench_group(model: VGG, group: str, x: jax.Array, args: argparse.Namespace) -> dict[str, Any]:
    size = model.group(group).size
    n = max(1, size // 2)
    steps = args.steps
    common = dict(n=n, criterion="cross_entropy", max_steps=steps)
    t_gram, _, _ = timed(lambda clock: contribution_gram(model, group, x), args.rounds)
    t_local, local, _ = timed(lambda clock: local_imitation(model, group, x, n=n, max_steps=steps),
                              args.rounds)
    t_exact, exact, ends_e = timed(lambda clock: global_imitation(
        model, group, x, taylor_start=None, stop_fn=clock, **common), args.rounds)
    t_taylor, taylor, ends_t = timed(lambda clock: global_imitation(
        model, group, x, taylor_start=args.taylor_start, taylor_top=args.taylor_top,
        stop_fn=clock, **common), args.rounds)
    start = args.taylor_start
    accelerated = steps > start + 1 and size > args.taylor_top
    if accelerated:  # ends[k]: when step k ended; Taylor steps are k > start
        per_exact = (ends_e[-1] - ends_e[start]) / (len(ends_e) - 1 - start)
        per_taylor = (ends_t[-1] - ends_t[start]) / (len(ends_t) - 1 - start)
    diverge = next((k for k, (a, b) in enumerate(zip(exact.picks, taylor.picks)) if a != b), None)
    kept_e, kept_t = set(exact.indices.tolist()), set(taylor.indices.tolist())
    return {
        "group": group, "units": size, "n": n, "steps": steps,
        "local_s": t_local, "gram_s": t_gram, "gram_share": min(t_gram / t_local, 1.0),
        "exact_s": t_exact, "taylor_s": t_taylor,
        "exact_step_ms": 1e3 * per_exact if accelerated else None,
        "taylor_step_ms": 1e3 * per_taylor if accelerated else None,
        "speedup_total": t_exact / t_taylor,
        "speedup_past_start": per_exact / per_taylor if accelerated else None,
        "first_different_pick": diverge,
        "jaccard": len(kept_e & kept_t) / len(kept_e | kept_t),
        "discrepancy_exact": exact.discrepancy, "discrepancy_taylor": taylor.discrepancy,
        "local_kept": local.n, "local_discrepancy": local.discrepancy,
    }


HEADER = (f"{'group':<8} {'N':>4} {'n':>4} {'local s':>8} {'gram%':>6} {'exact s':>8} "
          f"{'taylor s':>9} {'x total':>8} {'ms/step e':>10} {'ms/step t':>10} {'x step':>7} "
          f"{'diverge':>8} {'jaccard':>8} {'D t/e':>7}")


def format_row(r: dict[str, Any]) -> str:
    """One line of the table (see :data:`HEADER`)."""
    if r["speedup_past_start"] is None:
        past = step_e = step_t = "-"
    else:
        past = f"{r['speedup_past_start']:.1f}"
        step_e, step_t = f"{r['exact_step_ms']:.1f}", f"{r['taylor_step_ms']:.1f}"
    div = "-" if r["first_different_pick"] is None else str(r["first_different_pick"])
    ratio = r["discrepancy_taylor"] / max(r["discrepancy_exact"], 1e-30)
    return (f"{r['group']:<8} {r['units']:>4} {r['n']:>4} {r['local_s']:>8.3f} "
            f"{100 * r['gram_share']:>5.0f}% {r['exact_s']:>8.3f} {r['taylor_s']:>9.3f} "
            f"{r['speedup_total']:>8.1f} {step_e:>10} {step_t:>10} {past:>7} {div:>8} "
            f"{r['jaccard']:>8.2f} {ratio:>7.3f}")


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    return "\n".join([HEADER, "-" * len(HEADER), *(format_row(r) for r in rows)])


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    model = make_model(args.width_div)
    x_all, y_all, source = load_images(args.examples, args.train_steps)
    loss = None
    if y_all is not None and args.train_steps > 0:
        loss = train(model, x_all, y_all, args.train_steps)
    model.eval()
    x = jnp.asarray(x_all[-args.examples:])
    groups = ([g.strip() for g in args.groups.split(",")] if args.groups
              else [g.name for g in model.prunable_groups()])
    print(f"jax {jax.__version__}; device: {device_description()}")
    print(f"model: VGG-11-BN / {args.width_div} "
          f"({', '.join(str(model.group(g).size) for g in groups)} channels); "
          f"{args.examples} {source} images 28x28"
          + (f"; trained {args.train_steps} steps (loss {loss:.3f})" if loss is not None else
             "; random weights"))
    print(f"each layer pruned to N/2 with {args.steps} steps; median of {args.rounds} run(s) "
          f"after a warm-up; Taylor past k = {args.taylor_start}, top {args.taylor_top}")
    print(HEADER + "\n" + "-" * len(HEADER), flush=True)
    rows = []
    for g in groups:
        rows.append(bench_group(model, g, x, args))
        print(format_row(rows[-1]), flush=True)
    past = [r["speedup_past_start"] for r in rows if r["speedup_past_start"] is not None]
    total_exact = sum(r["exact_s"] for r in rows)
    total_taylor = sum(r["taylor_s"] for r in rows)
    summary = {
        "speedup_past_start_median": statistics.median(past) if past else None,
        "speedup_total": total_exact / total_taylor,
        "same_selection": sum(r["first_different_pick"] is None for r in rows),
        "jaccard_mean": float(np.mean([r["jaccard"] for r in rows])),
        "gram_share_median": statistics.median(r["gram_share"] for r in rows),
    }
    past_txt = ("-" if summary["speedup_past_start_median"] is None
                else f"{summary['speedup_past_start_median']:.1f}x")
    print(f"Taylor vs exact global: {past_txt} per step past k = {args.taylor_start} "
          f"(median over layers; goal >= 5x), {summary['speedup_total']:.1f}x over the whole "
          f"runs; identical selections in {summary['same_selection']}/{len(rows)} layers, "
          f"mean Jaccard {summary['jaccard_mean']:.2f}")
    print(f"local imitation: median {100 * summary['gram_share_median']:.0f}% of its time in the "
          f"Gram computation")
    result = {"args": vars(args), "layers": rows, "summary": summary, "jax": jax.__version__,
              "device": device_description()}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=float)
        print(f"figures written to {args.json}")
    return result


if __name__ == "__main__":
    main()
