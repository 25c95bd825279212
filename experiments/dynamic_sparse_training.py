"""Dynamic sparse training at equal sparsity and budget: dense, static, SET, RigL, STE, GMP,
gRDA, LATS and SFW (+ one-shot pruning) on Fashion-MNIST, and 2:4 sparsity.

Evci et al. (*Rigging the Lottery: Making All Tickets Winners*, ICML 2020;
``../shared/REFERENCES.md``) report that at equal training budget RigL is at least as
accurate as SET, which is at least as accurate as a static random mask (ERK
densities for all three). This script puts that ordering to the test at this
machine's scale, together with gradual magnitude pruning (Zhu & Gupta), STE
magnitude pruning and the library's own methods, on two networks:

* ``lenet5`` (:func:`sparsejax.models.lenet5`, 61,706 parameters);
* the zoo's ``small_cnn`` (Frankle & Carbin's Conv-2: two 3x3 convolutions,
  a 2x2 max pool, dense 256-256-10) **at a quarter of its width**: 16 channels
  instead of 64 (registered here as ``small_cnn_w16``, 873,914 parameters on
  28x28x1). At 64 channels one step of batch 128 costs about 0.3-0.6 s on the
  2 shared CPU cores, which does not fit 22 runs; at 16 channels it is ~0.05-0.09 s.

Every run goes through the library's trainer and registry
(:func:`sparsejax.train.cli.runs.run_training`, via
``fmnist_bn_common.train_run``): one training loop, one workdir per run (a
finished run is reused, an interrupted one resumed).

**One budget for every method.** The same epochs, batch size, batches (seed 0:
initialisation and data order), learning-rate *schedule* (cosine decay with a
linear warm-up over the first 10% of the steps) and test set. Each method runs
with the registry's paper defaults, including its own base learning rate and
momentum (0.1 / 0.9 for SGD, static, SET, RigL, STE and GMP; gRDA 0.1 without
momentum; LATS 0.05 / 0.875; SFW 1.0 / 0.9 with gradient rescaling: its
learning rate is a Frank-Wolfe step fraction). No method is tuned.

**How each method reaches the target sparsity** (the fraction of zero conv and
dense kernel entries; biases stay dense):

=============  ===========  =============================================================
method         registry     mechanism
=============  ===========  =============================================================
static         ``static``   a fixed random ERK mask with ``sparsity`` = target from step 0
SET            ``set``      ERK mask, every Delta T steps drop by magnitude, regrow at random
RigL           ``rigl``     ERK mask, every Delta T steps drop by magnitude, grow by |grad|
STE            ``ste``      straight-through magnitude pruning, cubic schedule to the target
GMP            ``gmp``      gradual magnitude pruning, cubic schedule 10%-70%, every Delta T
gRDA           ``grda``     natural sparsity, then one-shot global magnitude pruning
LATS           ``lats``     natural sparsity, then one-shot global magnitude pruning
SFW            ``sfw``      natural sparsity, then one-shot global magnitude pruning
=============  ===========  =============================================================

gRDA, LATS and SFW have no sparsity argument: their sparsity is an outcome of
their regularisation (gRDA's and LATS's growing soft threshold, SFW's K-sparse
polytopes, which make the weights pruning-friendly without zeroing them). Each
is trained once; its trained weights are then pruned one-shot to every target
by global magnitude (one threshold over all kernels, no retraining; SFW's paper
prunes this way, and the library's ``sparsejax compare`` does too), and the
table gives both the natural sparsity (and accuracy) and the accuracy after
pruning. A network already sparser than a target is evaluated as it is (its
cell then shows its own sparsity).

**Delta T.** The RigL paper updates masks every 100 steps until 75% of training
(hundreds of updates). With this script's few hundred steps that would be 3
updates, so Delta T is scaled to the run: ``total_steps // 20`` (23 steps at
468 steps: 15 updates before T_end), the same for SET, RigL and GMP's pruning
interval. STE recomputes its mask every step (the registry's default).

**2:4.** ``static``, ``ste`` and ``gmp`` with ``pattern='2:4'`` (at most 2
non-zeros in every 4 consecutive inputs of a kernel) against dense. SET and RigL
refuse N:M by design (dropping and growing single weights breaks the per-group
count); gRDA, LATS and SFW have no pattern option. The table says so from the
registry itself (:func:`nm_support`), not from a list. Kernels whose input
dimension is not divisible by 4 (both first convolutions; LeNet-5's second,
with 6 input channels) stay dense (``untileable='dense'``, as NVIDIA's ASP
leaves such layers), so the measured sparsity is a little below 50%.

Outputs in ``--results`` (committed for the documented run): ``table.md`` (the
main table, the 2:4 table, the ordering sentence), ``results.json``,
``accuracy_vs_sparsity.png``. Workdirs in ``--work``: the same command resumes
and reuses finished runs, so a long study can be split into invocations (by
``--models`` / ``--methods``) and a last invocation over everything only reloads.

Measured (seed 0, 2026-12-06; ``experiments/results/dynamic_sparse_training/``): 44 runs, 18.4
min on 2 CPU cores in one invocation (the plain command); then, after a fix to SET (a dropped
weight drawn again by its growth was zeroed), its six runs again (162 s, the others reused; the
committed ``results.json`` is that invocation's, so its training wall time counts those six).
RigL >= SET >= static holds at 0 of 6 (model, sparsity) points: SET >= static at 3, RigL >= SET
at none (RigL 0.2-2.4 points below SET); before the SET fix it held at 1 of 6. The previous run (2026-12-05, initial masks from ``jax.random.uniform``) held at
0 of 6 and RigL diverged to 10% at 95% on the small CNN at the shared learning rate of 0.1; with
this run's mask it reaches 87.23% there. Dense 85.81% (LeNet-5) and 89.65% (small CNN); 2:4
within 0.8 points of dense.

Run::

    python experiments/dynamic_sparse_training.py              # everything (reuses finished runs)
    python experiments/dynamic_sparse_training.py --models lenet5 --nm-methods ''
    python experiments/dynamic_sparse_training.py --quick --work /tmp/w --results /tmp/r
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


# fmnist_bn_common.py sits next to this file (the scripts are not a package).
sys.path.insert(0, str(Path(__file__).resolve().parent))
import fmnist_bn_common as common  # noqa: E402

SMALL_CNN = "small_cnn_w16"
SMALL_CNN_FEATURES: tuple[int, ...] = (16, 16)
SMALL_CNN_HIDDEN: tuple[int, ...] = (256, 256)
MODELS: dict[str, str] = {"lenet5": "LeNet-5", SMALL_CNN: "small CNN (Conv-2, 16 ch)"}

FULL = common.Budget(epochs=1, train_split="train", test_split="test", batch_size=128)
"""The documented runs: one epoch of the 60,000 training images (468 steps of 128), 10,000 test."""


def full_budget(train_examples: int = 60000) -> Any:
    """:data:`FULL`, or one epoch over the first ``train_examples`` images (a scaled-down study)."""
    if train_examples == 60000:
        return FULL
    return dataclasses.replace(FULL, train_split=f"train[:{int(train_examples)}]")
QUICK = common.QUICK
"""The tests' runs: 4 steps of batch 64, 200 test images."""

WARMUP_FRACTION = 0.1
UPDATES_PER_RUN = 20  # Delta T = total_steps // 20
SPARSITIES = (0.8, 0.9, 0.95)
NM = "2:4"
NM_SPARSITY = 0.5
ONE_SHOT_SCOPE = "global"


@dataclasses.dataclass(frozen=True)
class Method:
    """One method of the comparison.

    Attributes:
      name: the registry name (also the command line's).
      label: the name in tables and plots.
      knob: the hyperparameter set to the target sparsity; ``None`` for the
        methods whose sparsity is an outcome (pruned one-shot after training).
      interval: the hyperparameter set to Delta T (mask-update interval), if any.
    """

    name: str
    label: str
    knob: str | None
    interval: str | None = None

    @property
    def one_shot(self) -> bool:
        return self.knob is None


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("static", "static (ERK)", "sparsity"),
    Method("set", "SET (ERK)", "sparsity", "update_freq"),
    Method("rigl", "RigL (ERK)", "sparsity", "update_freq"),
    Method("ste", "STE", "final_sparsity"),
    Method("gmp", "GMP", "final_sparsity", "frequency"),
    Method("grda", "gRDA + one-shot", None),
    Method("lats", "LATS + one-shot", None),
    Method("sfw", "SFW + one-shot", None),
)}
DENSE = Method("sgd", "dense SGD", None)
NM_METHODS = ("static", "ste", "gmp")
"""The methods of the 2:4 table (the registry's N:M-capable mask methods)."""


def register_small_cnn() -> None:
    """Registers ``small_cnn_w16`` (Conv-2 at 16 channels) in :mod:`sparsejax.models`, once."""
    from sparsejax import models
    from sparsejax.models import SmallCNN

    if SMALL_CNN in models.available():
        return

    def build(num_classes: int, input_shape: Sequence[int], *, rngs: Any, **kwargs: Any) -> Any:
        return SmallCNN(num_classes, input_shape, features=SMALL_CNN_FEATURES,
                        hidden=SMALL_CNN_HIDDEN, rngs=rngs, **kwargs)

    models.register(SMALL_CNN, build, (28, 28, 1))


def total_steps(budget: Any) -> int:
    """Training steps of one run under ``budget``."""
    return budget.epochs * budget.steps_per_epoch


def update_interval(budget: Any) -> int:
    """Delta T of SET, RigL and GMP: ``total_steps // 20`` (at least 1)."""
    return max(1, total_steps(budget) // UPDATES_PER_RUN)


def training(budget: Any) -> dict[str, Any]:
    """The shared schedule: cosine decay with a linear warm-up over 10% of the steps.

    Learning rate and momentum are left to each method's registry default.
    """
    return {"schedule": "cosine",
            "warmup_steps": int(round(WARMUP_FRACTION * total_steps(budget)))}


def run_settings(model: str, method: Method, target: float | None, budget: Any,
                 pattern: str | None = None) -> Any:
    """The :class:`~sparsejax.train.cli.settings.RunSettings` of one run.

    ``target`` is the sparsity given to the method's knob (ignored by the
    one-shot methods and the dense baseline); with ``pattern`` the run is the
    2:4 variant (kernels the pattern cannot tile are trained dense).
    """
    from sparsejax.train.cli.settings import RunSettings

    register_small_cnn()
    hp: dict[str, Any] = {}
    name = f"{model}-{method.name}"
    if method.knob is not None:
        hp[method.knob] = float(target)
        name += f"-s{round(100 * float(target))}"
    if method.interval is not None:
        hp[method.interval] = update_interval(budget)
    if pattern is not None:
        hp.update(pattern=pattern, untileable="dense")
        name += "-" + pattern.replace(":", "of")
    return RunSettings(
        name=name, method=method.name, hparams=hp, model=model, dataset="fashion_mnist",
        epochs=budget.epochs, batch_size=budget.batch_size, seed=budget.seed,
        train_split=budget.train_split, test_split=budget.test_split, **training(budget))


def nm_support(pattern: str = NM) -> dict[str, str]:
    """Whether each method of :data:`METHODS` takes ``pattern``, asked of the registry.

    Returns:
      ``{method: 'yes' | 'refused: <the registry's error>' | 'no pattern option'}``
      (an optimizer is built and initialised on a small kernel for each method
      that has a ``pattern`` hyperparameter).
    """
    import jax.numpy as jnp

    from sparsejax.patterns import parse_pattern
    from sparsejax.train import methods

    structure = parse_pattern(pattern)
    sparsity = 1.0 - structure.n / structure.m
    params = {"dense": {"kernel": jnp.linspace(-1.0, 1.0, 8 * 4).reshape(8, 4),
                        "bias": jnp.zeros(4)}}
    out = {}
    for name, method in METHODS.items():
        spec = methods.get_method(name)
        if method.knob is None or not any(h.name == "pattern" for h in spec.hparams):
            out[name] = "no pattern option"
            continue
        try:
            tx, _ = methods.make_optimizer(name, {method.knob: sparsity, "pattern": pattern},
                                           learning_rate=None, momentum=None, steps_per_epoch=1,
                                           epochs=1, params=params)
            tx.init(params)
        except ValueError as e:
            out[name] = f"refused: {e}"
        else:
            out[name] = "yes"
    return out


def nm_valid(params: Any, n: int = 2, m: int = 4) -> tuple[bool, list[str]]:
    """Whether every kernel with an input dimension divisible by ``m`` is N:M sparse.

    Returns:
      ``(valid, dense_kernels)``: the check and the paths of the kernels the
      pattern does not tile (trained dense).
    """
    import jax

    from sparsejax.patterns import is_n_m_sparse
    from sparsejax.tree import leaves_with_paths

    def tileable(x: Any) -> bool:
        return x.ndim >= 2 and x.shape[-2] % m == 0

    dense = [p for p, x in leaves_with_paths(params) if x.ndim >= 2 and not tileable(x)]
    valid = is_n_m_sparse(params, n, m, mask=lambda t: jax.tree.map(tileable, t))
    return bool(valid), dense


def train_method(model: str, method: Method, targets: Sequence[float], budget: Any, work: Path,
                 say: Any) -> list[dict[str, Any]]:
    """The rows of one method on one model: one per target.

    A mask method is trained once per target; a one-shot method (and the
    dense baseline, at target 0) once, then pruned to every target.
    """
    from sparsejax import pruning
    from sparsejax.train.cli.runs import accuracy_of
    from sparsejax.tree import weights_only

    base = dict(model=model, method=method.name)
    if method.knob is not None:
        rows = []
        for t in targets:
            row, _ = common.train_run(run_settings(model, method, t, budget), work, say)
            rows.append(dict(row, **base, target=t))
        return rows
    row, trained = common.train_run(run_settings(model, method, None, budget), work, say)
    natural = dict(natural_sparsity=row["sparsity"], natural_accuracy=row["accuracy"])
    if method is DENSE:
        return [dict(row, **base, **natural, target=0.0)]
    curve = pruning.one_shot_curve(trained.result.params, accuracy_of(trained), targets,
                                   scope=ONE_SHOT_SCOPE, mask=weights_only)
    for point in curve:
        say(f"    one-shot {ONE_SHOT_SCOPE} to {point.ratio:.0%}: {100 * point.metric:.2f}% at "
            f"{100 * point.sparsity:.2f}% kernel zeros")
    return [dict(row, **base, **natural, target=float(p.ratio), accuracy=float(p.metric),
                 sparsity=float(p.sparsity)) for p in curve]


def train_nm(model: str, method: Method, budget: Any, work: Path, say: Any) -> dict[str, Any]:
    """The 2:4 run of ``method`` on ``model``, with the N:M check of its final weights."""
    row, trained = common.train_run(run_settings(model, method, NM_SPARSITY, budget, NM), work,
                                    say)
    valid, dense = nm_valid(trained.result.params)
    return dict(row, model=model, method=method.name, pattern=NM, nm_valid=valid,
                dense_kernels=dense)


def _cell(row: Mapping[str, Any] | None) -> str:
    if row is None:
        return "-"
    text = common.pct(row["accuracy"])
    if abs(row["sparsity"] - row["target"]) > 0.005:
        text += f" (at {common.pct(row['sparsity'], 1)})"
    return text


def table(rows: Sequence[Mapping[str, Any]], models: Sequence[str], methods: Sequence[str],
          targets: Sequence[float]) -> str:
    """Method x (model, target sparsity): test accuracy (%); the unpruned figures of the
    dense and one-shot methods (accuracy @ natural sparsity) in each model's last column."""
    from sparsejax.train.cli.reports import markdown_table

    index = {(r["model"], r["method"], round(r["target"], 6)): r for r in rows}
    header = ["method"]
    for model in models:
        header += [f"{MODELS[model]} {t:.0%}" for t in targets] + [f"{MODELS[model]} unpruned"]
    body = []
    for name in (DENSE.name, *methods):
        method = DENSE if name == DENSE.name else METHODS[name]
        line = [method.label]
        for model in models:
            if method is DENSE:
                line += ["-"] * len(targets)
                dense = index.get((model, name, 0.0))
                line.append("-" if dense is None else f"{common.pct(dense['accuracy'])} @ 0.00")
                continue
            line += [_cell(index.get((model, name, round(t, 6)))) for t in targets]
            first = index.get((model, name, round(targets[0], 6)))
            line.append(f"{common.pct(first['natural_accuracy'])} @ "
                        f"{common.pct(first['natural_sparsity'])}"
                        if method.one_shot and first is not None else "-")
        body.append(line)
    return markdown_table(header, body)


def nm_table(nm_rows: Sequence[Mapping[str, Any]], dense_rows: Sequence[Mapping[str, Any]],
             models: Sequence[str], support: Mapping[str, str]) -> str:
    """The 2:4 table: accuracy, kernel sparsity and the 2:4 check per model, with N:M support."""
    from sparsejax.train.cli.reports import markdown_table

    header = ["method", "takes 2:4"]
    for model in models:
        label = MODELS[model]
        header += [f"{label} accuracy", f"{label} zeros", f"{label} 2:4 valid"]
    body = []
    dense = {r["model"]: r for r in dense_rows}
    line = [DENSE.label, "-"]
    for model in models:
        r = dense.get(model)
        line += ["-", "-", "-"] if r is None else [common.pct(r["accuracy"]), "0.00", "-"]
    body.append(line)
    index = {(r["model"], r["method"]): r for r in nm_rows}
    for name, answer in support.items():
        line = [f"{METHODS[name].label.split(' ')[0]} 2:4", answer.split(":")[0]]
        for model in models:
            r = index.get((model, name))
            line += (["-", "-", "-"] if r is None else
                     [common.pct(r["accuracy"]), common.pct(r["sparsity"]),
                      "yes" if r["nm_valid"] else "NO"])
        body.append(line)
    return markdown_table(header, body)


def ordering(rows: Sequence[Mapping[str, Any]], models: Sequence[str],
             targets: Sequence[float]) -> dict[str, Any]:
    """Checks RigL >= SET >= static (the RigL paper's ordering) at every (model, target).

    Returns:
      ``{points, rigl_ge_set, set_ge_static, both, failures, sentence}``: the
      number of (model, target) points with all three methods, the counts where
      each inequality holds, and a sentence for the report.
    """
    index = {(r["model"], r["method"], round(r["target"], 6)): r["accuracy"] for r in rows}
    points, rigl_set, set_static, both, failures = 0, 0, 0, 0, []
    for model in models:
        for t in targets:
            acc = [index.get((model, m, round(t, 6))) for m in ("rigl", "set", "static")]
            if None in acc:
                continue
            points += 1
            r, s, st = acc
            rigl_set += r >= s
            set_static += s >= st
            both += r >= s >= st
            if not r >= s >= st:
                failures.append(f"{MODELS[model]} at {t:.0%}: RigL {100 * r:.2f}, SET "
                                f"{100 * s:.2f}, static {100 * st:.2f}")
    if points == 0:
        sentence = ("The RigL paper's ordering (RigL >= SET >= static at equal budget) was not "
                    "tested: run rigl, set and static together.")
    else:
        sentence = (f"The RigL paper's ordering RigL >= SET >= static (equal budget) holds at "
                    f"{both} of {points} (model, sparsity) points (RigL >= SET at {rigl_set}, "
                    f"SET >= static at {set_static}); one seed (the seed-to-seed spread was "
                    f"not measured), so gaps of a few tenths of a point are not a ranking.")
        if failures:
            sentence += " Where it does not: " + "; ".join(failures) + "."
    return dict(points=points, rigl_ge_set=rigl_set, set_ge_static=set_static, both=both,
                failures=failures, sentence=sentence)


def plot(rows: Sequence[Mapping[str, Any]], models: Sequence[str], methods: Sequence[str],
         path: Path) -> None:
    """Accuracy against kernel sparsity, one panel per model (dense SGD as a dashed line)."""
    from sparsejax.plotting import new_figure, save_png

    fig = new_figure((5.0 * len(models), 3.8))
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    for ax, model in zip(axes, models):
        for name in methods:
            pts = sorted((r["sparsity"], r["accuracy"]) for r in rows
                         if r["model"] == model and r["method"] == name)
            if pts:
                ax.plot([100 * p[0] for p in pts], [100 * p[1] for p in pts],
                        "s--" if METHODS[name].one_shot else "o-", ms=4,
                        label=METHODS[name].label)
        dense = [r for r in rows if r["model"] == model and r["method"] == DENSE.name]
        if dense:
            ax.axhline(100 * dense[0]["accuracy"], color="k", ls=":", lw=1, label=DENSE.label)
        ax.set_xlabel("zero conv/dense kernel entries (%)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"Fashion-MNIST, {MODELS[model]}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_png(fig, path, dpi=80)


def _names(text: str, known: Sequence[str], what: str,
           p: argparse.ArgumentParser) -> tuple[str, ...]:
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    for n in names:
        if n not in known:
            p.error(f"unknown {what} {n!r}; expected some of {', '.join(known)}")
    if len(set(names)) != len(names):
        p.error(f"--{what}s lists a name twice: {text!r}")
    return names


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--models", default=None,
                   help=f"comma-separated models (of {', '.join(MODELS)}); default all "
                        "(--quick: lenet5)")
    p.add_argument("--methods", default=None,
                   help=f"comma-separated methods (of {', '.join(METHODS)}); dense SGD always "
                        "runs; default all (--quick: lats)")
    p.add_argument("--sparsities", default=None,
                   help="target kernel sparsities in (0, 1); default 0.8,0.9,0.95 (--quick: 0.9)")
    p.add_argument("--nm-methods", default=None,
                   help=f"methods of the 2:4 table (of {', '.join(NM_METHODS)}; '' for none); "
                        "default all three (--quick: gmp)")
    p.add_argument("--train-examples", type=int, default=60000,
                   help="training images of the full budget (one epoch over the first N, batch "
                        "128); fewer scales the study down (ignored with --quick)")
    p.add_argument("--work", default="runs/dynamic_sparse_training", help="workdirs of the runs")
    p.add_argument("--results", default="experiments/results/dynamic_sparse_training",
                   help="where the tables, results.json and the plot go")
    p.add_argument("--quick", action="store_true",
                   help="the tests' scale: 4 steps per run, three runs (dense SGD, LATS + "
                        "one-shot, GMP 2:4) that pass through every code path once")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    q = args.quick
    args.models = _names(args.models or ("lenet5" if q else ",".join(MODELS)), tuple(MODELS),
                         "model", p)
    args.methods = _names(args.methods if args.methods is not None
                          else ("lats" if q else ",".join(METHODS)), tuple(METHODS),
                          "method", p)
    nm = args.nm_methods if args.nm_methods is not None else ("gmp" if q else ",".join(NM_METHODS))
    for n in (x.strip() for x in nm.split(",") if x.strip()):
        if n in ("set", "rigl"):
            p.error(f"--nm-methods: {n} refuses N:M patterns by design (dropping and growing "
                    f"single weights breaks the per-group count); use some of "
                    f"{', '.join(NM_METHODS)}")
    args.nm_methods = _names(nm, NM_METHODS, "nm-method", p)
    text = args.sparsities if args.sparsities is not None else ("0.9" if q else "0.8,0.9,0.95")
    try:
        args.sparsities = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError as e:
        p.error(f"--sparsities: {e}")
    if not args.sparsities or any(not 0 < t < 1 for t in args.sparsities):
        p.error("--sparsities must be sparsities in (0, 1)")
    if len(set(args.sparsities)) != len(args.sparsities):
        p.error("--sparsities lists a sparsity twice")
    args.sparsities = tuple(sorted(args.sparsities))
    if not 128 <= args.train_examples <= 60000:
        p.error(f"--train-examples must lie in [128, 60000], got {args.train_examples}")
    if not args.methods and not args.nm_methods:
        p.error("nothing to compare: give --methods or --nm-methods")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    say = (lambda line: None) if args.quiet else (lambda line: print(line, flush=True))
    budget = QUICK if args.quick else full_budget(args.train_examples)
    work, results = Path(args.work), Path(args.results)
    start = time.perf_counter()
    say(f"== {budget}: {total_steps(budget)} steps per run, Delta T = {update_interval(budget)}, "
        f"{training(budget)}")
    rows: list[dict[str, Any]] = []
    nm_rows: list[dict[str, Any]] = []
    for model in args.models:
        say(f"== {MODELS[model]}")
        rows += train_method(model, DENSE, (), budget, work, say)
        for name in args.methods:
            rows += train_method(model, METHODS[name], args.sparsities, budget, work, say)
        for name in args.nm_methods:
            nm_rows.append(train_nm(model, METHODS[name], budget, work, say))
    support = nm_support()
    order = ordering(rows, args.models, args.sparsities)
    main_table = table(rows, args.models, args.methods, args.sparsities)
    dense_rows = [r for r in rows if r["method"] == DENSE.name]
    nm_text = nm_table(nm_rows, dense_rows, args.models, support)
    refused = "; ".join(f"{n}: {a.removeprefix('refused: ').split(';')[0]}"
                        for n, a in support.items() if a.startswith("refused"))
    report = "\n\n".join([
        main_table, order["sentence"], nm_text,
        f"N:M support, asked of the registry: {refused or 'every method takes 2:4'}."])
    say(report)
    results.mkdir(parents=True, exist_ok=True)
    (results / "table.md").write_text(report + "\n")
    plot_path = results / "accuracy_vs_sparsity.png"
    if args.methods:
        plot(rows, args.models, args.methods, plot_path)
    elapsed = time.perf_counter() - start
    out = {"budget": dataclasses.asdict(budget), "steps": total_steps(budget),
           "update_interval": update_interval(budget), "training": training(budget),
           "one_shot_scope": ONE_SHOT_SCOPE, "models": list(args.models),
           "methods": list(args.methods), "sparsities": list(args.sparsities),
           "rows": rows, "nm_rows": nm_rows, "nm_support": support, "ordering": order,
           "table": main_table, "nm_table": nm_text,
           "plot": str(plot_path) if args.methods else None,
           "training_wall_time": sum({r["name"]: r["wall_time"] for r in rows + nm_rows
                                      if not r["reused"]}.values()),
           "wall_time_this_invocation": elapsed}
    common.write_json(results / "results.json", out)
    say(f"wall time of this invocation: {elapsed:.0f} s")
    return out


if __name__ == "__main__":
    main()
