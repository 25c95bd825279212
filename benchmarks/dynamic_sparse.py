"""Amortised step cost of the mask-based sparse-training transforms (RigL, SET, static, STE).

Every candidate wraps ``optax.sgd(0.1, momentum=0.9)`` (the baseline) and is one
jitted training-loop step ``step(params, opt_state, grads)`` doing ``tx.update``
and ``optax.apply_updates`` with ``params`` and ``opt_state`` donated, on the
ResNet-18-shaped tree of ``benchmarks/transforms.py`` (11.69M float32
parameters, 62 leaves; the kernels are sparsified at 90%, ERK). RigL and SET
update their masks every ΔT steps (default 100), so a window of ΔT steps
holds exactly one mask update: the *amortised* cost is the wall time of whole
windows divided by their steps, mask updates included. The candidates are timed
in interleaved rounds (a window each, rotating order) and each figure is the
median over rounds; the ratio is to the baseline's figure (goal of issue 17:
at most 1.10 for RigL and SET at ΔT = 100). The cost of one mask-update step
alone is also printed, and the time to draw one uniform score per kernel entry
(SET's regrowth) with :func:`sparsejax.pruning.uniform_scores` and with
``jax.random.uniform``.

The ``*_host`` rows are the same transforms with the mask-update steps chosen
on the host (``update(..., mask_update=rule(step))``, the rule
:func:`sparsejax.pruning.dst_update_due` / :func:`~sparsejax.pruning.ste_update_due`;
what :func:`sparsejax.train.fit` does with ``mask_update_due=``): two
compiled steps, the ordinary one without the selection or any control flow.

Usage::

  python benchmarks/dynamic_sparse.py            # ResNet-18 tree, ΔT = 100 (a few minutes on 2 busy cores)
  python benchmarks/dynamic_sparse.py --quick    # tiny tree, ΔT = 10, seconds
  python benchmarks/dynamic_sparse.py --size small   # a quarter of the channels (0.83M parameters)

Timing figures are printed, never asserted: machines are noisy.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import device_description  # noqa: E402
from transforms import SIZES, resnet18_params  # noqa: E402

from sparsejax import pruning, tree  # noqa: E402

__all__ = ["candidates", "main", "random_score_times"]

SPARSITY = 0.9


Rule = Callable[[int], bool] | None


def candidates(update_freq: int, end_step: int
               ) -> dict[str, tuple[optax.GradientTransformation, Rule]]:
    """The transforms timed, each around momentum SGD, with their host-side rule (``None``:
    the step decides on the device)."""

    def inner() -> optax.GradientTransformation:
        return optax.sgd(0.1, momentum=0.9)

    kw = dict(mask=tree.weights_only)
    dst_rule = functools.partial(pruning.dst_update_due, update_freq=update_freq, end_step=end_step)
    ste_rule = functools.partial(pruning.ste_update_due, begin_step=0, frequency=update_freq)
    out: dict[str, tuple[optax.GradientTransformation, Rule]] = {
        "sgd_momentum": (inner(), None),
        "sgd_momentum_again": (inner(), None),
        "static_sparse": (pruning.static_sparse(inner(), SPARSITY, **kw), None),
    }
    for name, rule, make in (
        ("set", dst_rule, lambda: pruning.set_(inner(), SPARSITY, end_step=end_step,
                                               update_freq=update_freq, **kw)),
        ("rigl", dst_rule, lambda: pruning.rigl(inner(), SPARSITY, end_step=end_step,
                                                update_freq=update_freq, **kw)),
        (f"ste_every_{update_freq}", ste_rule, lambda: pruning.ste_pruning(
            inner(), SPARSITY, begin_step=0, end_step=0, frequency=update_freq, **kw)),
    ):
        out[name] = (make(), None)
        out[f"{name}_host"] = (make(), rule)
    return out


def _make_step(tx: optax.GradientTransformation, mask_update: bool | None = None
               ) -> Callable[..., Any]:
    extra = {} if mask_update is None else {"mask_update": mask_update}

    def step(params: Any, state: Any, grads: Any) -> tuple[Any, Any]:
        updates, state = tx.update(grads, state, params, **extra)
        return optax.apply_updates(params, updates), state

    return jax.jit(step, donate_argnums=(0, 1))


def _block(x: Any) -> None:
    jax.tree.map(lambda a: a.block_until_ready(), x)


class Runner:
    """One candidate: its jitted step(s) and its own params and state.

    With a host-side ``rule``, two steps (``mask_update=False`` / ``True``) and a
    host step counter that follows the transform's own count.
    """

    def __init__(self, name: str, tx: optax.GradientTransformation, rule: Rule,
                 host_params: Any, grads: Any):
        self.name, self.tx, self.rule, self.t = name, tx, rule, 0
        self.programs = ({None: _make_step(tx)} if rule is None
                         else {flag: _make_step(tx, flag) for flag in (False, True)})
        self.params = jax.device_put(host_params)
        self.state = jax.jit(tx.init)(self.params)
        self.grads = grads
        self.windows: list[float] = []
        self.update_steps: list[float] = []

    def window(self, steps: int) -> None:
        _block((self.params, self.state))
        start = time.perf_counter()
        for _ in range(steps):
            step = self.programs[None if self.rule is None else self.rule(self.t)]
            self.params, self.state = step(self.params, self.state, self.grads)
            self.t += 1
        _block((self.params, self.state))
        self.windows.append((time.perf_counter() - start) / steps)

    def update_step(self, update_freq: int) -> None:
        """Times one step that updates the mask (RigL and SET: at the 0-based count ΔT - 1; STE:
        at ΔT; static: an ordinary step)."""
        if isinstance(self.state, pruning.STEState):
            due = update_freq
        elif isinstance(self.state, pruning.SparseTrainingState):
            due = update_freq - 1
        else:
            return
        saved = self.state.count
        self.state = self.state._replace(count=jnp.asarray(due, jnp.int32))
        _block((self.params, self.state))
        step = self.programs[None if self.rule is None else True]
        start = time.perf_counter()
        self.params, self.state = step(self.params, self.state, self.grads)
        _block((self.params, self.state))
        self.update_steps.append(time.perf_counter() - start)
        self.state = self.state._replace(count=saved)


def run(size: str, update_freq: int, rounds: int) -> list[dict[str, Any]]:
    host = resnet18_params(0, **SIZES[size])
    grads = jax.device_put(resnet18_params(1, **SIZES[size]))
    # Windows start at a multiple of ΔT: exactly one mask update in each.
    runners = [Runner(n, tx, rule, host, grads)
               for n, (tx, rule) in candidates(update_freq, 10**9).items()]
    for r in runners:  # compile and warm up (one full window: the first mask update included)
        r.window(update_freq)
        r.windows.clear()
    for k in range(rounds):
        order = runners[k % len(runners):] + runners[: k % len(runners)]
        for r in order:
            r.window(update_freq)
            r.update_step(update_freq)
    base = float(np.median(runners[0].windows))
    by_name = {r.name: r for r in runners}
    rows = []
    for r in runners:
        ms = 1e3 * float(np.median(r.windows))
        upd = 1e3 * float(np.median(r.update_steps)) if r.update_steps else float("nan")
        row = dict(name=r.name, ms_per_step=ms, ratio=ms / (1e3 * base), update_step_ms=upd)
        if r.rule is not None:
            # the same steps as its device-scheduled twin: the same masks, the same weights up
            # to rounding (the programs are compiled separately)
            twin = by_name[r.name.removesuffix("_host")]
            pairs = list(zip(jax.tree.leaves((r.params, r.state)),
                             jax.tree.leaves((twin.params, twin.state)), strict=True))
            row["masks_equal"] = all(np.array_equal(np.asarray(a), np.asarray(b))
                                     for a, b in pairs if a.dtype == jnp.bool_)
            row["max_abs_diff"] = max(
                float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)),
                             initial=0.0))
                for a, b in pairs if jnp.issubdtype(a.dtype, jnp.floating))
        rows.append(row)
    return rows


def random_score_times(size: str, rounds: int = 7) -> dict[str, float]:
    """Milliseconds to draw one uniform score per kernel entry of the tree (median of ``rounds``).

    ``uniform_scores``: :func:`sparsejax.pruning.uniform_scores`, the counter-based hash that
    SET's regrowth and every random mask use; ``jax_random_uniform``: one
    ``jax.random.uniform`` per kernel (Threefry), what they used before.
    """
    host = resnet18_params(0, **SIZES[size])
    chosen = jax.tree.leaves(tree.resolve_mask(tree.weights_only, host))
    shapes = [np.shape(x) for x, keep in zip(jax.tree.leaves(host), chosen) if keep]
    draws = {
        "uniform_scores": jax.jit(lambda k: pruning.uniform_scores(k, shapes)),
        "jax_random_uniform": jax.jit(lambda k: [
            jax.random.uniform(jax.random.fold_in(k, i), s) for i, s in enumerate(shapes)]),
    }
    key = jax.random.PRNGKey(0)
    times: dict[str, list[float]] = {name: [] for name in draws}
    for fn in draws.values():
        _block(fn(key))  # compile
    for r in range(rounds):
        for name, fn in (list(draws.items()) if r % 2 == 0 else list(draws.items())[::-1]):
            start = time.perf_counter()
            _block(fn(jax.random.fold_in(key, r)))
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * float(np.median(t)) for name, t in times.items()}


def format_rows(rows: Sequence[dict[str, Any]], update_freq: int) -> str:
    lines = [f"{'transform':<20} {'ms/step':>9} {'x sgd-m':>8} {'mask-update step ms':>20}",
             "-" * 60]
    for row in rows:
        upd = "-" if np.isnan(row["update_step_ms"]) else f"{row['update_step_ms']:.1f}"
        lines.append(f"{row['name']:<20} {row['ms_per_step']:>9.2f} {row['ratio']:>8.3f} {upd:>20}")
    host = [row for row in rows if "masks_equal" in row]
    if host:
        same = all(row["masks_equal"] for row in host)
        diff = max(row["max_abs_diff"] for row in host)
        lines.append(f"host-scheduled runs against their device-scheduled twins: masks identical: "
                     f"{'yes' if same else 'NO'}; largest difference of a float: {diff:.2g}")
    lines.append(f"(amortised over windows of {update_freq} steps, each with one mask update; "
                 "goal for rigl and set: ratio <= 1.10; *_host: mask-update steps chosen on the "
                 "host)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Runs the benchmark, prints the table; returns its rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny tree, ΔT = 10, 2 rounds")
    parser.add_argument("--update-freq", type=int, default=None, help="ΔT (default 100)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5)")
    parser.add_argument("--size", choices=sorted(SIZES), default=None,
                        help="the tree (default resnet18; tiny with --quick)")
    args = parser.parse_args(argv)
    size = args.size or ("tiny" if args.quick else "resnet18")
    update_freq = args.update_freq or (10 if args.quick else 100)
    rounds = args.rounds or (2 if args.quick else 5)
    print(f"devices: {device_description()}; jax {jax.__version__}, optax {optax.__version__}")
    print(f"tree: {size}; sparsity {SPARSITY} (ERK) of the kernels; ΔT = {update_freq}; "
          f"{rounds} rounds")
    start = time.perf_counter()
    rows = run(size, update_freq, rounds)
    print(format_rows(rows, update_freq))
    draw = random_score_times(size)
    print(f"one uniform score per kernel entry: uniform_scores {draw['uniform_scores']:.2f} ms, "
          f"jax.random.uniform {draw['jax_random_uniform']:.2f} ms (median of 7)")
    print(f"wall time {time.perf_counter() - start:.0f} s")
    return rows


if __name__ == "__main__":
    main()
