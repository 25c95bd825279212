"""Speed of sparsejax's Optax transforms against ``optax.sgd(momentum=0.9)``.

Every candidate is one jitted training-loop step,
``step(params, opt_state, grads) -> (new_params, new_opt_state)``, doing
``tx.update`` and ``optax.apply_updates`` with ``params`` and ``opt_state``
donated, as a real training loop would. The parameter tree is shaped like an
ImageNet ResNet-18 (float32 conv kernels in HWIO layout, BatchNorm scales and
biases, the 512x1000 classifier: 11,689,512 parameters in 62 leaves); the
gradients are random and fixed.

All candidates live in one process and are timed in interleaved rounds (each
round runs every candidate for a few steps, in a rotating order), so that the
noise of a shared machine falls on all of them alike; a candidate's figure is
the median over rounds of the wall time per step. A second, identical
SGD-momentum (``sgd_momentum_again``) is an A/A check: its ratio to the
baseline is the noise of the run.

Two figures per transform, against the goals of the issue:

* the ratio of its step time to ``optax.sgd(lr, momentum=0.9)``'s: at most
  1.10 for the transforms that move the same arrays as SGD-momentum (gRDA,
  RDA with a zero centre, dual averaging), at most 1.25 for the others (RDA
  around the initial weights and iRDA read 7 arrays per entry against
  SGD-momentum's 6; ``sgd_momentum_centre``, SGD-momentum that also reads a
  stored centre, measures what such a step costs on the machine);
* its achieved memory bandwidth, the bytes an ideal fused elementwise kernel
  must move per step divided by the step time, as a fraction of the bandwidth
  of a jitted, donated copy of the parameter tree (``x + 0`` over every leaf,
  in place: the physical limit for an elementwise update; at least 0.7).

The ideal bytes are counted from the traced step, not by hand: the step reads
the params, the gradients and every array of the optimizer state, and writes
the params and every state array that it changes (state passed through
unchanged, such as RDA's centre ``w0``, is read but not written).

To explain a miss, the table also gives the CPU time of the process per step
(less disturbed than wall time when other processes compete for the cores)
and the number of kernels per parameter leaf in the compiled step (1: one
fused pass; 2: the new state and the new params are written by two loops, so
the state is written and read back). The JSON has more: copies, f64, bytes of
outputs that missed donation. ``--show-hlo NAME`` prints a compiled step.

XLA runs with its defaults (the flags in ``XLA_FLAGS``, printed, are passed
through), so the figures are what a user gets; ``--cpus N`` pins the process
to N cores before JAX starts its thread pool.

Usage::

  python benchmarks/transforms.py                  # ResNet-18 tree; 1-2 min on 2 busy CPU cores
  python benchmarks/transforms.py --quick          # tiny tree, seconds (a smoke test)
  python benchmarks/transforms.py --rounds 60 --json figures.json
  python benchmarks/transforms.py --show-hlo grda  # the compiled step of one candidate

Timing figures are printed, never asserted: machines are noisy.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

# Quiet C++ logging; must happen before JAX loads its backend.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import sparsejax as sj  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/ is not a package
from _common import device_description  # noqa: E402

__all__ = ["Candidate", "candidates", "main", "resnet18_params"]

PyTree = Any
StepFn = Callable[[PyTree, PyTree, PyTree], tuple[PyTree, PyTree]]

#: The goals: step time relative to SGD-momentum, and bandwidth relative to a
#: jitted copy. A transform that moves the same arrays as SGD-momentum (gRDA,
#: RDA with a zero centre, dual averaging) must stay within ``TIGHT_RATIO``;
#: one that must also read its centre ``w0`` or the params a second time
#: (RDA around the initial weights, iRDA: 7 arrays per entry against
#: SGD-momentum's 6) within ``MAX_RATIO``.
MAX_RATIO = 1.25
TIGHT_RATIO = 1.10
MIN_COPY_FRACTION = 0.7

LEARNING_RATE = 0.1  # ImageNet ResNet-18 with batch 256, as in the gRDA paper
BASELINE = "sgd_momentum"
AA_CHECK = "sgd_momentum_again"  # a second, identical baseline: the noise floor
FLOOR_7 = "sgd_momentum_centre"  # SGD-momentum that also reads a centre: 7 arrays per entry

# Tree sizes: keyword arguments of resnet18_params.
SIZES: dict[str, dict[str, Any]] = {
    # ImageNet ResNet-18: 11,689,512 parameters in 62 leaves.
    "resnet18": dict(width=1.0, num_classes=1000, stages=4),
    # A quarter of the channels: 831,096 parameters in 62 leaves (compiles as slowly).
    "small": dict(width=0.25, num_classes=1000, stages=4),
    # Smoke tests: the stem, the first stage and a 10-way head (1,254 parameters
    # in 17 leaves), so that the 13 steps compile in seconds.
    "tiny": dict(width=1 / 16, num_classes=10, stages=1),
}


# ----------------------------------------------------------------------------
# The parameter tree.


def resnet18_params(
    seed: int = 0,
    width: float = 1.0,
    num_classes: int = 1000,
    stages: int = 4,
    dtype: Any = np.float32,
) -> dict[str, Any]:
    """Builds a parameter pytree shaped like an ImageNet ResNet-18, as NumPy arrays.

    Conv kernels are HWIO (as in Flax), without biases; each conv is followed
    by a BatchNorm with a ``scale`` and a ``bias`` (the running statistics are
    not trained parameters and are left out); the head is a dense layer.
    At ``width=1``, 4 stages and 1000 classes there are 11,689,512 parameters
    in 62 leaves. NumPy (not ``jax.random``) draws the values, so that no shape
    needs a compilation of its own.

    Args:
      seed: seed of the He-normal kernels.
      width: multiplier of the channel counts (64, 128, 256, 512).
      num_classes: outputs of the final dense layer.
      stages: how many of the four stages (of two basic blocks each) to keep.
      dtype: dtype of every leaf.

    Returns:
      A nested dict ``{'conv1': ..., 'bn1': ..., 'layer1': {'block0': ...}, ..., 'fc': ...}``.
    """
    rng = np.random.default_rng(seed)
    chans = [max(1, round(c * width)) for c in (64, 128, 256, 512)][:stages]

    def normal(shape: tuple[int, ...], std: float) -> np.ndarray:
        return (std * rng.standard_normal(shape, dtype=np.float32)).astype(dtype)

    def conv(k: int, cin: int, cout: int) -> dict[str, np.ndarray]:
        return {"kernel": normal((k, k, cin, cout), math.sqrt(2.0 / (k * k * cin)))}

    def bn(c: int) -> dict[str, np.ndarray]:
        return {"scale": np.ones((c,), dtype), "bias": np.zeros((c,), dtype)}

    params: dict[str, Any] = {"conv1": conv(7, 3, chans[0]), "bn1": bn(chans[0])}
    cin = chans[0]
    for stage, cout in enumerate(chans, start=1):
        layer: dict[str, Any] = {}
        for b in range(2):
            block: dict[str, Any] = {
                "conv1": conv(3, cin, cout),
                "bn1": bn(cout),
                "conv2": conv(3, cout, cout),
                "bn2": bn(cout),
            }
            if b == 0 and cin != cout:
                block["downsample_conv"] = conv(1, cin, cout)
                block["downsample_bn"] = bn(cout)
            layer[f"block{b}"] = block
            cin = cout
        params[f"layer{stage}"] = layer
    params["fc"] = {
        "kernel": normal((cin, num_classes), math.sqrt(1.0 / cin)),
        "bias": np.zeros((num_classes,), dtype),
    }
    return params


def tree_bytes(tree: PyTree) -> int:
    """Total bytes of the array leaves of ``tree``."""
    return sum(
        int(np.prod(np.shape(x))) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)
    )


def tree_size(tree: PyTree) -> int:
    """Number of elements over the leaves of ``tree``."""
    return sum(int(np.prod(np.shape(x))) for x in jax.tree.leaves(tree))


# ----------------------------------------------------------------------------
# The candidates.


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One optimizer under test.

    Attributes:
      name: short name, the row label.
      spec: how it is built, for the table's legend.
      make: builds the ``optax`` transformation.
      goal: whether the goals apply (sparsejax transforms) or it is a
        reference row (the Optax baselines, the 7-array floor).
      max_ratio: the goal for the ratio to SGD-momentum's step time.
    """

    name: str
    spec: str
    make: Callable[[], optax.GradientTransformation]
    goal: bool = True
    max_ratio: float = MAX_RATIO


class _CentreState(NamedTuple):
    centre: optax.Params


def _pull_to_centre(strength: float) -> optax.GradientTransformation:
    """Adds ``-strength * (params - centre)`` to the updates; the centre is the initial params.

    Chained after ``optax.sgd(momentum=0.9)`` it moves exactly the arrays of
    ``rda(center='init')``: the momentum loop reads the gradient and the
    momentum and writes the momentum; the params loop reads the params, the
    new momentum and the centre, and writes the params (7 arrays per entry).
    Its ratio to SGD-momentum is the floor of a 7-array step on this machine.
    """

    def init_fn(params: optax.Params) -> _CentreState:
        return _CentreState(jax.tree.map(lambda p: jnp.array(p, copy=True), params))

    def update_fn(
        updates: optax.Updates, state: _CentreState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, _CentreState]:
        new = jax.tree.map(lambda u, p, c: u - strength * (p - c), updates, params, state.centre)
        return new, state

    return optax.GradientTransformation(init_fn, update_fn)


def candidates(learning_rate: float = LEARNING_RATE) -> list[Candidate]:
    """The transforms timed by default, with realistic ImageNet-scale hyperparameters.

    The thresholds are those the papers use on ImageNet (gRDA: ``c=0.005``,
    ``mu=0.51``; iRDA: ``gamma=0.1``, ``l1=1e-8``); their values do not change
    the amount of work of a step. ``irda`` is timed in its retraining phase
    (``retrain_step=0``), the more expensive of its two phases.
    ``apply_soft_threshold`` and ``freeze_zeros`` are chained onto
    ``optax.sgd(momentum=0.9)``, so that their ratio to the baseline is the cost
    of adding them to it. A second instance of the baseline gives an A/A
    check: its ratio shows how much of a ratio is noise on this machine.
    """
    lr = learning_rate
    sgdm = lambda: optax.sgd(lr, momentum=0.9)  # noqa: E731
    return [
        Candidate("sgd", f"optax.sgd({lr})", lambda: optax.sgd(lr), goal=False),
        Candidate(BASELINE, f"optax.sgd({lr}, momentum=0.9)", sgdm, goal=False),
        Candidate(
            AA_CHECK,
            f"optax.sgd({lr}, momentum=0.9) again: an A/A check, its ratio is the noise",
            sgdm,
            goal=False,
        ),
        Candidate(
            FLOOR_7,
            f"chain(optax.sgd({lr}, momentum=0.9), pull to the initial params): "
            "the 7-array floor of rda_init and irda",
            lambda: optax.chain(sgdm(), _pull_to_centre(1e-4)),
            goal=False,
        ),
        Candidate(
            "grda",
            f"sj.grda({lr}, c=0.005, mu=0.51)",
            lambda: sj.grda(lr, c=0.005, mu=0.51),
            max_ratio=TIGHT_RATIO,
        ),
        Candidate(
            "rda_zero",
            "sj.rda(gamma=0.1, l1=1e-8, center='zero')",
            lambda: sj.rda(gamma=0.1, l1=1e-8, center="zero"),
            max_ratio=TIGHT_RATIO,
        ),
        Candidate(
            "rda_init",
            "sj.rda(gamma=0.1, l1=1e-8, center='init')",
            lambda: sj.rda(gamma=0.1, l1=1e-8, center="init"),
        ),
        Candidate(
            "irda",
            "sj.irda(gamma=0.1, l1=1e-8, retrain_step=0)",
            lambda: sj.irda(gamma=0.1, l1=1e-8, retrain_step=0),
        ),
        Candidate(
            "prox_sgd",
            f"sj.prox_sgd({lr}, l1=1e-5)",
            lambda: sj.prox_sgd(lr, l1=1e-5),
        ),
        Candidate(
            "prox_sgd_momentum",
            f"sj.prox_sgd({lr}, l1=1e-5, momentum=0.9)",
            lambda: sj.prox_sgd(lr, l1=1e-5, momentum=0.9),
        ),
        Candidate(
            "sqrt_t_prox_sgd",
            f"sj.sqrt_t_prox_sgd({lr}, gamma=1.0, l1=1e-6)",
            lambda: sj.sqrt_t_prox_sgd(lr, gamma=1.0, l1=1e-6),
        ),
        Candidate(
            "dual_averaging",
            f"sj.dual_averaging({lr})",
            lambda: sj.dual_averaging(lr),
            max_ratio=TIGHT_RATIO,
        ),
        Candidate(
            "apply_soft_threshold",
            f"chain(optax.sgd({lr}, momentum=0.9), sj.apply_soft_threshold(1e-6))",
            lambda: optax.chain(sgdm(), sj.apply_soft_threshold(1e-6)),
        ),
        Candidate(
            "freeze_zeros",
            f"chain(sj.freeze_zeros(), optax.sgd({lr}, momentum=0.9))",
            lambda: optax.chain(sj.freeze_zeros(), sgdm()),
        ),
    ]


# ----------------------------------------------------------------------------
# Steps, byte counts and HLO statistics.


def make_step(tx: optax.GradientTransformation) -> StepFn:
    """The training-loop step of ``tx``: ``update`` then ``apply_updates``."""

    def step(params: PyTree, opt_state: PyTree, grads: PyTree) -> tuple[PyTree, PyTree]:
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return step


def copy_step(params: PyTree, opt_state: PyTree, grads: PyTree) -> tuple[PyTree, PyTree]:
    """The bandwidth reference: ``x + 0`` over every leaf, in place (donated).

    ``opt_state`` carries a traced zero, so that XLA cannot fold the addition
    away; ``grads`` is ignored.
    """
    del grads
    return jax.tree.map(lambda x: x + opt_state.astype(x.dtype), params), opt_state


def ideal_bytes(step: StepFn, params: PyTree, opt_state: PyTree, grads: PyTree) -> int:
    """Bytes an ideal fused kernel of ``step`` reads and writes per call.

    Reads: every input leaf that the step uses (params, opt_state, grads).
    Writes: every output leaf, except those that are an input passed through
    unchanged (found in the step's jaxpr), which donation turns into aliases.
    """
    closed = jax.make_jaxpr(step)(params, opt_state, grads)
    jaxpr = closed.jaxpr
    in_leaves = jax.tree.leaves((params, opt_state, grads))
    used = _used_vars(jaxpr)
    read = sum(
        tree_bytes(x) for v, x in zip(jaxpr.invars, in_leaves, strict=True) if id(v) in used
    )
    invar_ids = {id(v) for v in jaxpr.invars}
    written = sum(
        int(np.prod(v.aval.shape)) * np.dtype(v.aval.dtype).itemsize
        for v in jaxpr.outvars
        if hasattr(v, "aval") and id(v) not in invar_ids
    )
    return read + written


def _used_vars(jaxpr: Any) -> set[int]:
    """Ids of the variables of ``jaxpr`` read by an equation or returned."""
    used = {id(v) for v in jaxpr.outvars}
    for eqn in jaxpr.eqns:
        used.update(id(v) for v in eqn.invars)
    return used


_NON_KERNEL_OPS = {"parameter", "tuple", "get-tuple-element", "constant", "bitcast"}


@dataclasses.dataclass(frozen=True)
class HloStats:
    """What the compiled step does, from its optimised HLO.

    Attributes:
      kernels: instructions of the entry computation that run code (fusions,
        copies, unfused elementwise ops...), i.e. not parameters, tuples,
        constants or bitcasts.
      copies: ``copy`` instructions of the entry computation (extra memory
        traffic, e.g. from a buffer that could not be donated).
      f64: whether any 64-bit float appears.
      unaliased_bytes: bytes of the outputs that do not reuse a donated input
        buffer (a few bytes of scalars whose old value the step does not read
        are normal; a whole leaf means a donation failed).
    """

    kernels: int
    copies: int
    f64: bool
    unaliased_bytes: int


def hlo_stats(hlo_text: str, output_bytes: Sequence[int]) -> HloStats:
    """Parses ``compiled.as_text()`` into :class:`HloStats`.

    Args:
      hlo_text: the optimised HLO module.
      output_bytes: the size of each flattened output, in order.
    """
    entry = hlo_text[hlo_text.find("\nENTRY ") :]
    kernels = copies = 0
    for line in entry.splitlines()[1:]:
        match = re.match(r"\s*(ROOT\s+)?%\S+\s*=\s*.*?\s([a-z][a-z0-9\-]*)\(", line)
        if not match:
            continue
        op = match.group(2)
        if op in _NON_KERNEL_OPS:
            continue
        kernels += 1
        copies += op == "copy"
    header = hlo_text.split("\n", 1)[0]
    aliased = {int(i) for i in re.findall(r"\{(\d+)\}:\s*\(", header)}
    return HloStats(
        kernels=kernels,
        copies=copies,
        f64=bool(re.search(r"\bf64\[", hlo_text)),
        unaliased_bytes=sum(b for i, b in enumerate(output_bytes) if i not in aliased),
    )


# ----------------------------------------------------------------------------
# Measuring.


@dataclasses.dataclass
class Runner:
    """One candidate's jitted step and its live (donated) buffers."""

    name: str
    step: Callable[..., tuple[PyTree, PyTree]]
    params: PyTree
    opt_state: PyTree
    grads: PyTree
    bytes_per_step: int
    stats: HloStats
    compile_s: float
    times: list[float] = dataclasses.field(default_factory=list)
    cpu_times: list[float] = dataclasses.field(default_factory=list)

    def run(self, iters: int) -> tuple[float, float]:
        """Runs ``iters`` steps back to back.

        Returns:
          The wall time and the CPU time of the whole process (all threads)
          per step, in seconds. On a shared machine the CPU time is the less
          disturbed of the two by other processes taking the cores away.
        """
        jax.block_until_ready((self.params, self.opt_state))
        start, cpu_start = time.perf_counter(), time.process_time()
        params, opt_state = self.params, self.opt_state
        for _ in range(iters):
            params, opt_state = self.step(params, opt_state, self.grads)
        jax.block_until_ready((params, opt_state))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        self.params, self.opt_state = params, opt_state
        return elapsed / iters, cpu / iters


def build_runner(
    name: str,
    step_fn: StepFn,
    params: PyTree,
    opt_state: PyTree,
    grads: PyTree,
) -> Runner:
    """Compiles ``step_fn`` with donation, warms it up, and counts its bytes."""
    nbytes = ideal_bytes(step_fn, params, opt_state, grads)
    jitted = jax.jit(step_fn, donate_argnums=(0, 1))
    start = time.perf_counter()
    compiled = jitted.lower(params, opt_state, grads).compile()
    compile_s = time.perf_counter() - start
    outputs = jax.tree.leaves(jax.eval_shape(step_fn, params, opt_state, grads))
    stats = hlo_stats(compiled.as_text(), [tree_bytes(o) for o in outputs])
    runner = Runner(name, compiled, params, opt_state, grads, nbytes, stats, compile_s)
    runner.run(2)  # warm-up: first calls, allocation of the output buffers
    return runner


def median(xs: Sequence[float]) -> float:
    """The median of ``xs``."""
    return float(np.median(np.asarray(xs)))


def fresh_buffers(tree: PyTree) -> PyTree:
    """Copies every leaf of ``tree`` into a newly allocated buffer."""
    return jax.tree.map(lambda x: jnp.array(x, copy=True), tree)


def measure(runners: Sequence[Runner], rounds: int, iters: int, move: bool = True) -> None:
    """Times every runner in ``rounds`` interleaved rounds of ``iters`` steps.

    Each round visits every runner once, starting one further along the list
    than the previous round, so that no runner always follows the same one.

    With ``move``, each runner's params and state are copied to new buffers
    (untimed) before each of its rounds. A step's speed depends by up to
    +-15% on where its buffers happen to lie relative to each other (cache
    set and page conflicts; two instances of the same step differ that much),
    and with donation a step keeps its buffers for ever; moving them every
    round turns that fixed bias into noise that the median removes.
    """
    n = len(runners)
    for r in range(rounds):
        for i in range(n):
            runner = runners[(i + r) % n]
            if move:
                runner.params, runner.opt_state = fresh_buffers((runner.params, runner.opt_state))
            wall, cpu = runner.run(iters)
            runner.times.append(wall)
            runner.cpu_times.append(cpu)


# ----------------------------------------------------------------------------
# The report.




def _fmt_pass(ok: bool | None) -> str:
    return "-" if ok is None else ("ok" if ok else "MISS")


def _fmt(x: float, width: int, digits: int = 3, align: str = ">") -> str:
    """``x`` in fixed point with at least ``digits`` significant digits (never a bare 0.00)."""
    decimals = 1
    if x > 0 and math.isfinite(x):
        decimals = min(8, max(1, digits - 1 - math.floor(math.log10(x))))
    return f"{x:{align}{width}.{decimals}f}"


def format_table(result: dict[str, Any]) -> str:
    """The human-readable table of :func:`run_benchmark`'s result.

    Columns: the median wall time per step and its 25th-75th percentiles over
    rounds; the median CPU time per step (all threads); the ratio of the wall
    time to the baseline's; the ideal bytes per step; the achieved bandwidth
    and its fraction of the copy's; the kernels per parameter leaf in the
    compiled step; and whether each goal is met.
    """
    header = (
        f"{'transform':<20} {'ms/step':>8} {'p25-p75 ms':>15} {'cpu ms':>7} {'x sgd-m':>7} "
        f"{'MB/step':>8} {'GB/s':>7} {'x copy':>6} {'kern/leaf':>9} "
        f"{'ratio':>5} {'bw':>4}"
    )
    lines = [header, "-" * len(header)]
    for row in [result["copy"], *result["transforms"]]:
        ratio = row.get("ratio_to_baseline")
        lines.append(
            f"{row['name']:<20} {_fmt(row['ms_per_step'], 8)} "
            f"{_fmt(row['ms_p25'], 7)}-{_fmt(row['ms_p75'], 7, align='<')} "
            f"{_fmt(row['cpu_ms_per_step'], 7)} "
            f"{'' if ratio is None else f'{ratio:.2f}':>7} "
            f"{_fmt(row['bytes_per_step'] / 1e6, 8)} {_fmt(row['gb_per_s'], 7)} "
            f"{row['copy_fraction']:>6.2f} {row['kernels_per_leaf']:>9.1f} "
            f"{_fmt_pass(row.get('ratio_ok')):>5} {_fmt_pass(row.get('bandwidth_ok')):>4}"
        )
    return "\n".join(lines)


def format_summary(result: dict[str, Any]) -> str:
    """The one-line summary: how many transforms meet both goals, and the worst.

    Without goal rows (only reference candidates run, e.g. ``--only sgd``) it
    gives the baseline's figures alone.
    """
    goal_rows = [r for r in result["transforms"] if r["goal"]]
    base = next(r for r in result["transforms"] if r["name"] == BASELINE)
    aa = next(
        (r for r in result["transforms"] if r["name"] == AA_CHECK), {"ratio_to_baseline": math.nan}
    )
    if goal_rows:
        passed = [r for r in goal_rows if r["ratio_ok"] and r["bandwidth_ok"]]
        missed = [r["name"] for r in goal_rows if r not in passed]
        worst_ratio = max(goal_rows, key=lambda r: r["ratio_to_baseline"])
        worst_bw = min(goal_rows, key=lambda r: r["copy_fraction"])
        goals = (
            f"{len(passed)}/{len(goal_rows)} transforms meet both goals "
            f"(<= {TIGHT_RATIO}x or {MAX_RATIO}x {BASELINE} as set per transform, "
            f">= {MIN_COPY_FRACTION} of copy bandwidth)"
            f"{'; missed: ' + ', '.join(missed) if missed else ''}; "
            f"worst ratio {worst_ratio['ratio_to_baseline']:.2f} ({worst_ratio['name']}), "
            f"lowest bandwidth fraction {worst_bw['copy_fraction']:.2f} ({worst_bw['name']})"
        )
    else:
        goals = "no transform with goals was run (reference candidates only)"
    return (
        f"summary: {goals}; "
        f"{BASELINE} itself: {base['copy_fraction']:.2f} of copy, "
        f"A/A ratio {aa['ratio_to_baseline']:.2f}, "
        f"copy {_fmt(result['copy']['gb_per_s'], 0).strip()} GB/s"
        f"{_floor_summary(result)}"
    )


def _floor_summary(result: dict[str, Any]) -> str:
    """``; 7-array floor ...``: the floor's ratio and the 7-array transforms' ratios to it."""
    rows = {r["name"]: r for r in result["transforms"]}
    if FLOOR_7 not in rows:
        return ""
    floor = rows[FLOOR_7]["ratio_to_baseline"]
    over = ", ".join(
        f"{name} {rows[name]['ratio_to_baseline'] / floor:.2f}"
        for name in ("rda_init", "irda")
        if name in rows
    )
    return f"; 7-array floor ({FLOOR_7}) {floor:.2f}x" + (f", relative to it: {over}" if over else "")


def run_benchmark(
    size: str = "resnet18",
    rounds: int = 30,
    iters: int = 3,
    only: Sequence[str] | None = None,
    seed: int = 0,
    move_buffers: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Builds, compiles and times every candidate; returns the figures.

    Args:
      size: a key of :data:`SIZES`.
      rounds: interleaved timing rounds.
      iters: steps per candidate per round (timed together, then divided).
      only: names of the candidates to run (the baseline is always added).
      seed: PRNG seed of the params and gradients.
      move_buffers: move each candidate's buffers before each round (see
        :func:`measure`).
      log: where progress lines go.

    Returns:
      A JSON-serialisable dict: environment, tree, the copy reference and one
      entry per transform.
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    if rounds < 1 or iters < 1:
        raise ValueError(f"rounds and iters must be >= 1, got {rounds} and {iters}")
    host_params = resnet18_params(seed, **SIZES[size])
    rng = np.random.default_rng(seed + 1)
    grads = jax.device_put(
        jax.tree.map(
            lambda p: 1e-3 * rng.standard_normal(p.shape, dtype=np.float32), host_params
        )
    )
    params = jax.device_put(host_params)
    num_leaves = len(jax.tree.leaves(params))
    all_cands = candidates()
    if only:
        unknown = set(only) - {c.name for c in all_cands}
        if unknown:
            known = [c.name for c in all_cands]
            raise ValueError(f"unknown candidates {sorted(unknown)}; known: {known}")
        all_cands = [c for c in all_cands if c.name in set(only) | {BASELINE}]

    log(
        f"jax {jax.__version__}, jaxlib {jax.lib.__version__}, optax {optax.__version__}, "
        f"sparsejax {sj.__version__}; python {platform.python_version()}"
    )
    log(f"device: {device_description()}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    log(
        f"tree: {size} ({tree_size(params):,} float32 parameters in {num_leaves} leaves, "
        f"{tree_bytes(params) / 1e6:.1f} MB); {rounds} rounds x {iters} steps per candidate"
        f"{', buffers moved every round' if move_buffers else ', buffers fixed'}"
    )

    runners: list[Runner] = []
    compile_start = time.perf_counter()
    zero = jnp.zeros([], jnp.float32)
    runners.append(build_runner("copy", copy_step, jax.device_put(host_params), zero, grads))
    for cand in all_cands:
        tx = cand.make()
        p = jax.device_put(host_params)  # fresh buffers: each candidate donates its own
        runners.append(build_runner(cand.name, make_step(tx), p, jax.jit(tx.init)(p), grads))
    log(f"compiled {len(runners)} steps in {time.perf_counter() - compile_start:.1f} s; timing...")

    time_start = time.perf_counter()
    measure(runners, rounds, iters, move=move_buffers)
    log(f"timed in {time.perf_counter() - time_start:.1f} s")

    by_name = {r.name: r for r in runners}
    copy_s = median(by_name["copy"].times)
    copy_bw = by_name["copy"].bytes_per_step / copy_s
    base_s = median(by_name[BASELINE].times)
    base_cpu_s = median(by_name[BASELINE].cpu_times)
    goal_of = {c.name: c.goal for c in all_cands}
    max_ratio_of = {c.name: c.max_ratio for c in all_cands}
    spec_of = {c.name: c.spec for c in all_cands}

    def row(r: Runner) -> dict[str, Any]:
        t = median(r.times)
        bw = r.bytes_per_step / t
        out: dict[str, Any] = {
            "name": r.name,
            "spec": spec_of.get(r.name, "jax.tree.map(lambda x: x + 0, params), donated"),
            "ms_per_step": 1e3 * t,
            "ms_p25": 1e3 * float(np.percentile(r.times, 25)),
            "ms_p75": 1e3 * float(np.percentile(r.times, 75)),
            "cpu_ms_per_step": 1e3 * median(r.cpu_times),
            "bytes_per_step": r.bytes_per_step,
            "gb_per_s": bw / 1e9,
            "copy_fraction": bw / copy_bw,
            "kernels": r.stats.kernels,
            "kernels_per_leaf": r.stats.kernels / num_leaves,
            "copies": r.stats.copies,
            "f64": r.stats.f64,
            "unaliased_bytes": r.stats.unaliased_bytes,
            "compile_s": r.compile_s,
            "samples": len(r.times),
        }
        if r.name != "copy":
            goal = goal_of[r.name]
            out["goal"] = goal
            out["ratio_to_baseline"] = t / base_s
            out["cpu_ratio_to_baseline"] = median(r.cpu_times) / base_cpu_s
            out["max_ratio"] = max_ratio_of[r.name] if goal else None
            out["ratio_ok"] = (t / base_s <= max_ratio_of[r.name]) if goal else None
            out["bandwidth_ok"] = (bw / copy_bw >= MIN_COPY_FRACTION) if goal else None
        return out

    return {
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__,
        "optax": optax.__version__,
        "sparsejax": sj.__version__,
        "python": platform.python_version(),
        "device": device_description(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "size": size,
        "num_params": tree_size(params),
        "num_leaves": num_leaves,
        "param_bytes": tree_bytes(params),
        "rounds": rounds,
        "iters": iters,
        "move_buffers": move_buffers,
        "baseline": BASELINE,
        "goals": {
            "max_ratio": MAX_RATIO,
            "tight_ratio": TIGHT_RATIO,
            "min_copy_fraction": MIN_COPY_FRACTION,
        },
        "copy": row(by_name["copy"]),
        "transforms": [row(by_name[c.name]) for c in all_cands],
    }


def show_hlo(name: str, size: str) -> str:
    """The optimised HLO of one candidate's donated step (for investigating misses)."""
    params = jax.device_put(resnet18_params(0, **SIZES[size]))
    grads = jax.device_put(resnet18_params(1, **SIZES[size]))
    if name == "copy":
        step, state = copy_step, jnp.zeros([], jnp.float32)
    else:
        cand = next((c for c in candidates() if c.name == name), None)
        if cand is None:
            raise ValueError(f"unknown candidate {name!r}")
        tx = cand.make()
        step, state = make_step(tx), jax.jit(tx.init)(params)
    return jax.jit(step, donate_argnums=(0, 1)).lower(params, state, grads).compile().as_text()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="resnet18", help="parameter tree")
    parser.add_argument(
        "--quick", action="store_true", help="tiny tree and few rounds (a smoke test, seconds)"
    )
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 30)")
    parser.add_argument(
        "--iters", type=int, default=None, help="steps per candidate per round (default 3)"
    )
    parser.add_argument(
        "--only", nargs="+", default=None, metavar="NAME", help="run only these candidates"
    )
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the figures here")
    parser.add_argument(
        "--fixed-buffers",
        action="store_true",
        help="keep each candidate's buffers for the whole run instead of moving them every round",
    )
    parser.add_argument(
        "--cpus",
        type=int,
        default=None,
        help="pin the process to this many of its usable cores (Linux; default: all)",
    )
    parser.add_argument(
        "--show-hlo", default=None, metavar="NAME", help="print a candidate's compiled HLO and exit"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.size = "tiny"
    if args.rounds is None:
        args.rounds = 3 if args.quick else 30
    if args.iters is None:
        args.iters = 2 if args.quick else 3
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Runs the benchmark from the command line; prints the table and returns the figures.

    Args:
      argv: arguments (default: ``sys.argv[1:]``).

    Returns:
      The figures of :func:`run_benchmark` (``None`` with ``--show-hlo``).
    """
    args = parse_args(argv)
    if args.cpus is not None:
        usable = sorted(os.sched_getaffinity(0))
        if not 1 <= args.cpus <= len(usable):
            raise SystemExit(f"--cpus must be between 1 and {len(usable)}")
        os.sched_setaffinity(0, usable[: args.cpus])
    if args.show_hlo:
        print(show_hlo(args.show_hlo, args.size))
        return None
    result = run_benchmark(
        args.size, args.rounds, args.iters, args.only, move_buffers=not args.fixed_buffers
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    rows = [result["copy"], *result["transforms"]]
    print()
    print(format_table(result))
    print(format_summary(result))
    print("\ncandidates:")
    print("\n".join(f"  {r['name']:<20} {r['spec']}" for r in rows))
    if args.json:
        print(f"figures written to {args.json}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
