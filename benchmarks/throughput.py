"""Training throughput (images/s) of every sparsejax method against plain SGD on the same model.

Each candidate is the trainer's own jitted data-parallel train step
(:func:`sparsejax.train.make_train_step`: forward, softmax cross-entropy,
backward, ``optimizer.update(grads, state, params, value=loss)``,
``apply_updates``, BatchNorm statistics, state donated) for one model and one
method of the registry (:func:`sparsejax.train.methods.make_optimizer`, the
method's default hyperparameters). The batch is a fixed random batch already
sharded over the devices, so the figures are those of the step itself, not of
the input pipeline.

All candidates of a model live in one process and are timed in interleaved
rounds (each round runs every candidate for ``--iters`` steps, in a rotating
order), so the noise of a shared machine falls on all of them alike; a
candidate's figure is the median over rounds of the time per step, and
images/s is the batch size divided by it. The ratio to ``sgd`` (momentum
SGD, the trainer's dense baseline) on the same model is the figure of the
issue: each method should keep at least 0.9 of SGD's throughput. A second,
identical SGD (``sgd_again``) is an A/A check: its ratio is the noise of the
run. The CPU time of the process per step is shown too, with its own ratio to
SGD (``cpu x``): it is less disturbed than wall time when other processes
compete for the cores.

``gmp`` recomputes its masks every ``frequency`` steps within its pruning
window (defaults: every 100 steps from 10% to 70% of training). The benchmark
sets the window to the whole run (``begin_fraction=0``, ``end_fraction=1``:
from the compiling step to past the last timed step) and the frequency to
``rounds // 2 + 1`` rounds' worth of steps (:func:`method_hparams`), so
every timed step lies inside the window and exactly one mask update falls in
the timed steps, at the end of the middle round; with 3 rounds or more the
median hides that round: its figure is the steady-state masked step.

Each row is printed (and flushed) as soon as its model's rounds are done, so
a run stopped by a timeout keeps the figures of the models already measured;
the table at the end repeats them.

Usage::

  python benchmarks/throughput.py                       # LeNet-5 and ResNet-20, batch 128 (~10 min on 2 cores)
  python benchmarks/throughput.py --quick               # LeNet-5 at batch 16, a few methods (smoke test)
  python benchmarks/throughput.py --models lenet5 --methods all --rounds 20 --json out.json

Timing figures are printed, never asserted: machines are noisy.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

import sparsejax as sj  # noqa: E402
from sparsejax.models import create  # noqa: E402
from sparsejax.train import data_mesh, make_train_step, shard_batch, split_model  # noqa: E402
from sparsejax.train import methods as registry  # noqa: E402
from sparsejax.train.step import init_train_state, zero_totals  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/ is not a package
from _common import device_description  # noqa: E402

__all__ = ["main", "run_benchmark"]

MIN_RATIO = 0.9
"""The goal of the issue: each method keeps at least this share of SGD's throughput."""

BASELINE = "sgd"
AA_CHECK = "sgd_again"
MODELS = {"lenet5": (28, 28, 1), "resnet20": (32, 32, 3),
          "resnet18": (32, 32, 3)}  # resnet18: benchmarks/device_check.sh (GPU)
DEFAULT_MODELS = ("lenet5", "resnet20")
"""What a plain run covers (~10 min on 2 cores); ``resnet18`` is chosen with ``--models``."""
DTYPES = ("float32", "bfloat16")
MAIN_METHODS = ("sgd", "gmp", "grda", "rda", "irda", "prox_sgd", "lats", "sfw")
QUICK_METHODS = ("sgd", "grda")


def log_flush(line: str) -> None:
    """Prints ``line`` and flushes stdout, so a run killed by a timeout keeps what it printed."""
    print(line, flush=True)


def method_hparams(method: str, rounds: int, iters: int) -> dict[str, Any]:
    """The hyperparameters a candidate gets instead of its registry defaults.

    Only ``gmp``: its pruning window spans the whole run (``total_steps =
    rounds * iters + 2``: the compiling step, the timed steps, one more) and it
    updates its masks every ``iters * (rounds // 2 + 1)`` steps: at the
    compiling step, at the end of the middle timed round and past
    the timed steps (see the module docstring).
    """
    if method == "gmp":
        return {"begin_fraction": 0.0, "end_fraction": 1.0,
                "frequency": iters * (rounds // 2 + 1)}
    return {}


def select_methods(methods: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(chosen, skipped)``: the registered methods to time, ``sgd`` first, and the others.

    Each model compiles ``len(chosen) + 1`` steps (the A/A ``sgd_again`` too).
    """
    available = set(registry.available_methods())
    skipped = [m for m in methods if m not in available]
    chosen = [BASELINE] + [m for m in methods if m in available and m != BASELINE]
    return chosen, skipped


def cpu_seconds() -> float:
    """User + system CPU time of this process."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime




@dataclasses.dataclass
class Runner:
    """One (model, method) candidate: its jitted step and its current state."""

    model: str
    name: str
    method: str
    step: Callable
    state: Any
    totals: Any
    batch: Any
    times: list[float] = dataclasses.field(default_factory=list)
    cpu: list[float] = dataclasses.field(default_factory=list)

    def run(self, iters: int) -> None:
        t0, c0 = time.perf_counter(), cpu_seconds()
        state, totals = self.state, self.totals
        for _ in range(iters):
            out = self.step(state, totals, self.batch)  # (state, totals, loss)
            state, totals = out[0], out[1]
        jax.block_until_ready(state)
        self.times.append((time.perf_counter() - t0) / iters)
        self.cpu.append((cpu_seconds() - c0) / iters)
        self.state, self.totals = state, totals


def build_runner(model_name: str, name: str, method: str, batch_size: int, total_steps: int,
                 seed: int = 0, dtype: str = "float32",
                 hparams: dict[str, Any] | None = None) -> Runner:
    """Builds the model, the method's optimizer and the trainer's train step; compiles it.

    With ``dtype="bfloat16"`` the step runs in mixed precision: every Flax
    layer computes in bf16 (its ``dtype``), the images are bf16, the parameters,
    optimizer state and BatchNorm statistics stay float32.
    """
    shape = MODELS[model_name]
    model = create(model_name, num_classes=10, input_shape=shape, rngs=seed)
    if dtype != "float32":
        for _, layer in nnx.iter_modules(model):
            if hasattr(layer, "dtype") and hasattr(layer, "param_dtype"):
                layer.dtype = jax.numpy.dtype(dtype)
    registry.prepare_model(method, model, {}, seed=seed)
    mesh = data_mesh()
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    tx, _ = registry.make_optimizer(method, hparams or {}, learning_rate=0.01, momentum=None,
                                    steps_per_epoch=total_steps, epochs=1, params=params)
    parts = split_model(model)
    rng = np.random.default_rng(seed)
    host = {"image": rng.standard_normal((batch_size, *shape), dtype=np.float32).astype(dtype),
            "label": rng.integers(0, 10, batch_size).astype(np.int32)}
    runner = Runner(model_name, name, method, make_train_step(parts, tx, mesh, seed=seed),
                    init_train_state(parts, tx, mesh), zero_totals(mesh), shard_batch(host, mesh))
    runner.run(1)  # compile
    runner.times.clear()
    runner.cpu.clear()
    return runner


def _quantile(xs: Sequence[float], q: float) -> float:
    return float(np.quantile(np.asarray(xs), q))


def run_benchmark(
    models: Sequence[str] = DEFAULT_MODELS,
    methods: Sequence[str] = MAIN_METHODS,
    batch_size: int = 128,
    rounds: int = 10,
    iters: int = 2,
    log: Callable[[str], None] = print,
    dtype: str = "float32",
) -> dict[str, Any]:
    """Builds, compiles and times every (model, method) candidate; returns the figures.

    Args:
      models: keys of :data:`MODELS`.
      methods: registry names (unavailable ones, e.g. ``sfw`` before it is
        registered, are skipped with a note); ``sgd`` is always added.
      batch_size: global batch size (a multiple of the device count).
      rounds: interleaved timing rounds.
      iters: steps per candidate per round.
      log: where progress lines go, and each row as soon as it is measured.
      dtype: ``"float32"`` or ``"bfloat16"`` (model variables and images).

    Returns:
      A JSON-serialisable dict: environment and one entry per candidate.
    """
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        raise ValueError(f"unknown models {unknown}; known: {sorted(MODELS)}")
    if rounds < 1 or iters < 1 or batch_size < 1:
        raise ValueError("rounds, iters and batch_size must be >= 1")
    chosen, skipped = select_methods(methods)
    log(f"jax {jax.__version__}, optax {optax.__version__}, sparsejax {sj.__version__}; "
        f"python {platform.python_version()}")
    log(f"device: {device_description()}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    log(f"batch {batch_size}, {dtype}; {rounds} rounds x {iters} steps per candidate"
        + (f"; not registered, skipped: {', '.join(skipped)}" if skipped else ""))
    total_steps = rounds * iters + 2  # the compiling step, the timed steps, one more
    hparams = {m: method_hparams(m, rounds, iters) for m in chosen}
    rows: list[dict[str, Any]] = []
    for model_name in models:
        t0 = time.perf_counter()
        runners = []
        for name, method in [*((m, m) for m in chosen), (AA_CHECK, BASELINE)]:
            t1 = time.perf_counter()
            runners.append(build_runner(model_name, name, method, batch_size, total_steps,
                                        dtype=dtype, hparams=hparams[method]))
            log(f"compiled {model_name} {name} in {time.perf_counter() - t1:.1f} s")
        log(f"{model_name}: {len(runners)} candidates compiled in {time.perf_counter() - t0:.1f} s")
        for r in range(rounds):
            k = r % len(runners)
            for runner in runners[k:] + runners[:k]:
                runner.run(iters)
        base = statistics.median(runners[0].times)
        base_cpu = statistics.median(runners[0].cpu)
        for runner in runners:
            ms = statistics.median(runner.times)
            rows.append({
                "model": model_name,
                "name": runner.name,
                "method": runner.method,
                "images_per_s": batch_size / ms,
                "ms_per_step": 1e3 * ms,
                "ms_p25": 1e3 * _quantile(runner.times, 0.25),
                "ms_p75": 1e3 * _quantile(runner.times, 0.75),
                "cpu_ms_per_step": 1e3 * statistics.median(runner.cpu),
                "mean_images_per_s": batch_size / statistics.fmean(runner.times),
                "ratio_to_sgd": base / ms,
                "cpu_ratio_to_sgd": base_cpu / statistics.median(runner.cpu),
                "goal": runner.name not in (BASELINE, AA_CHECK),
                "ratio_ok": (base / ms >= MIN_RATIO) if runner.name not in (BASELINE, AA_CHECK)
                else None,
                "samples": len(runner.times),
            })
            log(f"measured {format_row(rows[-1])}")
    return {
        "jax": jax.__version__,
        "device": device_description(),
        "batch_size": batch_size,
        "rounds": rounds,
        "iters": iters,
        "min_ratio": MIN_RATIO,
        "skipped": skipped,
        "hparams": {m: hp for m, hp in hparams.items() if hp},
        "rows": rows,
    }


def _fmt(x: float, width: int) -> str:
    decimals = 1 if x >= 100 else (2 if x >= 10 else 3)
    return f"{x:>{width}.{decimals}f}"


def format_table(result: dict[str, Any]) -> str:
    """The figures as a plain-text table."""
    header = (f"{'model':<9}{'method':<24}{'images/s':>10}{'ms/step':>10}{'p25-p75 ms':>16}"
              f"{'cpu ms':>9}{'x sgd':>7}{'cpu x':>7}  goal")
    lines = [header, "-" * len(header)]
    lines.extend(format_row(r) for r in result["rows"])
    return "\n".join(lines)


def format_row(r: dict[str, Any]) -> str:
    """One row of :func:`format_table`."""
    span = f"{_fmt(r['ms_p25'], 6)}-{_fmt(r['ms_p75'], 6).strip()}"
    goal = "-" if r["ratio_ok"] is None else ("ok" if r["ratio_ok"] else "MISS")
    return (f"{r['model']:<9}{r['name']:<24}{_fmt(r['images_per_s'], 10)}"
            f"{_fmt(r['ms_per_step'], 10)}{span:>16}{_fmt(r['cpu_ms_per_step'], 9)}"
            f"{r['ratio_to_sgd']:>7.2f}{r['cpu_ratio_to_sgd']:>7.2f}  {goal}")


def format_summary(result: dict[str, Any]) -> str:
    """One line: how many candidates meet the goal, and the A/A noise."""
    goals = [r for r in result["rows"] if r["goal"]]
    ok = sum(bool(r["ratio_ok"]) for r in goals)
    noise = [abs(1 - r["ratio_to_sgd"]) for r in result["rows"] if r["name"] == AA_CHECK]
    worst = max(noise) if noise else float("nan")
    return (f"summary: {ok}/{len(goals)} (model, method) pairs keep >= {MIN_RATIO:g} of SGD's "
            f"throughput; A/A noise (sgd_again vs sgd): {100 * worst:.1f}%")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help=f"comma-separated, from {','.join(MODELS)} "
                             f"(default: {','.join(DEFAULT_MODELS)})")
    parser.add_argument("--methods", default=None,
                        help="comma-separated registry names, or 'all' (default: "
                             + ",".join(MAIN_METHODS) + ")")
    parser.add_argument("--batch-size", type=int, default=None, help="global batch (default 128)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 10)")
    parser.add_argument("--iters", type=int, default=None,
                        help="steps per candidate per round (default 2)")
    parser.add_argument("--quick", action="store_true",
                        help="LeNet-5 only, batch 16, a few methods and rounds (a smoke test)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the figures here")
    parser.add_argument("--dtype", default="float32", choices=DTYPES,
                        help="model variables and images (default float32)")
    parser.add_argument("--cpus", type=int, default=None,
                        help="pin the process to this many of its usable cores (Linux)")
    args = parser.parse_args(argv)
    if args.quick:
        args.models = "lenet5"
        args.methods = args.methods or ",".join(QUICK_METHODS)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.methods == "all":
        args.methods = list(registry.available_methods())
    elif args.methods:
        args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    else:
        args.methods = list(MAIN_METHODS)
    args.batch_size = args.batch_size or (16 if args.quick else 128)
    args.rounds = args.rounds or (3 if args.quick else 10)
    args.iters = args.iters or 2
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Runs the benchmark from the command line; prints the table and returns the figures."""
    args = parse_args(argv)
    if args.cpus is not None:
        usable = sorted(os.sched_getaffinity(0))
        if not 1 <= args.cpus <= len(usable):
            raise SystemExit(f"--cpus must be between 1 and {len(usable)}")
        os.sched_setaffinity(0, usable[: args.cpus])
    result = run_benchmark(args.models, args.methods, args.batch_size, args.rounds, args.iters,
                           log=log_flush, dtype=args.dtype)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    print()
    print(format_table(result))
    print(format_summary(result), flush=True)
    if args.json:
        print(f"figures written to {args.json}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
