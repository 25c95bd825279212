"""The ``sparsejax`` command line: train one method, compare several, prune a trained run.

::

  sparsejax train   --method grda --model lenet5 --dataset fashion_mnist --epochs 4 --hp c=0.02
  sparsejax compare --config experiments/configs/fashion_mnist_lenet5.toml --out runs/compare
  sparsejax compare --methods sgd,grda,lats --model lenet5 --dataset fashion_mnist --out DIR
  sparsejax prune   --workdir runs/fashion_mnist-lenet5-sgd-s0 --ratios 0.5,0.8,0.9 --retrain-epochs 1
  sparsejax methods [METHOD]          # the methods, their hyperparameters, defaults and sources

``train`` builds the model (:func:`sparsejax.models.create`), the data
(:func:`sparsejax.data.load` and :func:`sparsejax.data.batches`) and the
optimizer (:func:`sparsejax.train.methods.make_optimizer`, which also applies
a method's own initialisation), and calls :func:`sparsejax.train.fit` in a
workdir (default ``runs/<dataset>-<model>-<method>-s<seed>``). The workdir
holds the experiment's identity (``config.json``): running the same command
again resumes an interrupted run or, once finished, just prints its result;
a workdir holding another experiment is refused and left untouched.

``compare`` runs several methods one after the other, each in its own workdir
``OUT/<name>`` (so an interrupted comparison resumes and a rerun skips the
finished runs), then writes ``OUT/results.md`` and ``OUT/results.json`` (test
accuracy, sparsity, FLOPs of the sparse model, wall time, any-sparsity curves)
and three plots: ``accuracy_vs_sparsity.png``, ``one_shot_curves.png`` and
``layer_sparsity.png``. Its settings come from flags or from a TOML/JSON config
(``--config``, see ``experiments/configs/``); flags override the config.

``prune`` reloads a finished run from its workdir, prunes it one-shot by
magnitude at each ratio, and reports test accuracy without and, with
``--retrain-epochs``, after a short retraining with the mask fixed
(:func:`sparsejax.pruning.fixed_mask` last in the chain).

Bad input (an unknown method, model or dataset, a hyperparameter out of range,
a workdir holding another experiment, missing data, a workdir whose checkpoints
are all damaged) gives a one-line message on stderr and exit status 2; a
diverged training run gives status 1. A damaged checkpoint with an older good
one is reported in one line, moved to ``WORKDIR/damaged_checkpoints/`` and the
run resumes from the older one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tomllib
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["RunSettings", "load_config", "main"]

DEFAULTS: dict[str, Any] = {
    "epochs": 10,
    "batch_size": 128,
    "eval_batch_size": 1000,
    "learning_rate": None,  # the method's default
    "momentum": None,  # the method's default
    "schedule": "constant",
    "warmup_steps": 0,
    "decay_at": [0.5, 0.75],
    "decay_factor": 0.1,
    "seed": 0,
    "augment": None,  # the dataset's default
    "train_split": "train",
    "test_split": "test",
    "data_options": {},
}
"""Shared training settings and their defaults (a config file or the flags change them)."""

SETTING_KEYS = tuple(DEFAULTS) + ("model", "dataset")
DOC_KEYS = ("description", "source", "sources", "notes", "note")
"""Config keys kept for the reader only (comments that survive a JSON config)."""
RUN_KEYS = ("method", "hparams") + SETTING_KEYS + DOC_KEYS
COMPARE_KEYS = ("ratios", "scope", "methods", "out") + SETTING_KEYS + DOC_KEYS
DEFAULT_RATIOS = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98)

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


class UsageError(ValueError):
    """Bad command-line input found by the command line itself."""


# --- settings ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """Everything that defines one training run (its identity is :meth:`config`).

    Attributes:
      name: the run's name in a comparison (and its workdir there); usually the method.
      method: a registered method (:func:`sparsejax.train.methods.available_methods`).
      hparams: the method's hyperparameters to change from their defaults.
      model: a registered model (:func:`sparsejax.models.available`).
      dataset: a dataset name (:func:`sparsejax.data.available_datasets`).
      epochs, batch_size, eval_batch_size, learning_rate, momentum, schedule,
      warmup_steps, decay_at, decay_factor, seed, augment, train_split,
      test_split, data_options: see ``sparsejax train --help``.
    """

    name: str
    method: str
    hparams: Mapping[str, Any]
    model: str
    dataset: str
    epochs: int = DEFAULTS["epochs"]
    batch_size: int = DEFAULTS["batch_size"]
    eval_batch_size: int = DEFAULTS["eval_batch_size"]
    learning_rate: float | None = None
    momentum: float | None = None
    schedule: str = DEFAULTS["schedule"]
    warmup_steps: int = 0
    decay_at: tuple[float, ...] = (0.5, 0.75)
    decay_factor: float = 0.1
    seed: int = 0
    augment: bool | None = None
    train_split: str = "train"
    test_split: str = "test"
    data_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def validate(self) -> dict[str, Any]:
        """Checks every setting early (before data or model are built); returns the full hparams."""
        from sparsejax import data, models
        from sparsejax.train import methods

        spec = methods.get_method(self.method)
        hp = methods.resolve_hparams(self.method, self.hparams)
        if self.model not in models.available():
            raise UsageError(
                f"unknown model {self.model!r}; available models: {', '.join(models.available())}"
            )
        if self.dataset not in data.available_datasets():
            raise UsageError(f"unknown dataset {self.dataset!r}; available datasets: "
                             f"{', '.join(data.available_datasets())}")
        for key in ("epochs", "batch_size", "eval_batch_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"{key.replace('_', '-')} must be an integer >= 1, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise UsageError(f"seed must be an integer >= 0, got {self.seed!r}")
        spec.resolve_learning_rate(self.learning_rate)
        spec.resolve_momentum(self.momentum)
        w = self.warmup_steps
        if isinstance(w, bool) or not isinstance(w, int) or w < 0:
            raise UsageError(f"warmup-steps must be an integer >= 0, got {w!r}")
        # the schedule's settings (warm-up against the total steps is checked once the data is known)
        methods.make_schedule(self.schedule, 0.1, steps_per_epoch=w + 1, epochs=1, warmup_steps=w,
                              decay_at=self.decay_at, decay_factor=self.decay_factor)
        return hp

    def config(self) -> dict[str, Any]:
        """The experiment's identity, stored in the workdir's ``config.json``.

        Values are resolved (the method's defaults filled in), so a run with
        default hyperparameters and one that spells them out are the same
        experiment; settings that do not change the result (the evaluation
        batch size, the run's name) are left out.
        """
        from sparsejax.train import methods

        spec = methods.get_method(self.method)
        uses_lr = spec.uses_learning_rate
        config = {
            "method": self.method,
            "hparams": methods.resolve_hparams(self.method, self.hparams),
            "model": self.model,
            "dataset": self.dataset,
            "train_split": self.train_split,
            "test_split": self.test_split,
            "data_options": dict(self.data_options),
            "augment": self.augment,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "learning_rate": spec.resolve_learning_rate(self.learning_rate),
            "momentum": spec.resolve_momentum(self.momentum),
            "schedule": self.schedule if uses_lr else None,
            "warmup_steps": self.warmup_steps if uses_lr else None,
        }
        if uses_lr and self.schedule == "step":
            config["decay_at"] = list(self.decay_at)
            config["decay_factor"] = self.decay_factor
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, name: str | None = None,
                    eval_batch_size: int = DEFAULTS["eval_batch_size"]) -> RunSettings:
        """The settings of a stored ``config.json`` (see :meth:`config`)."""
        try:
            return cls(
                name=name or config["method"],
                method=config["method"],
                hparams=dict(config["hparams"]),
                model=config["model"],
                dataset=config["dataset"],
                epochs=config["epochs"],
                batch_size=config["batch_size"],
                eval_batch_size=eval_batch_size,
                learning_rate=config.get("learning_rate"),
                momentum=config.get("momentum"),
                schedule=config.get("schedule") or "constant",
                warmup_steps=config.get("warmup_steps") or 0,
                decay_at=tuple(config.get("decay_at", (0.5, 0.75))),
                decay_factor=config.get("decay_factor", 0.1),
                seed=config["seed"],
                augment=config.get("augment"),
                train_split=config.get("train_split", "train"),
                test_split=config.get("test_split", "test"),
                data_options=dict(config.get("data_options") or {}),
            )
        except KeyError as e:
            raise UsageError(f"config.json lacks {e.args[0]!r}: not a run of `sparsejax train`") from None

    def default_workdir(self) -> Path:
        """``runs/<dataset>-<model>-<method>-s<seed>``."""
        return Path("runs") / f"{self.dataset}-{self.model}-{self.name}-s{self.seed}"


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Reads a comparison config: TOML (``.toml``) or JSON (anything else).

    The file holds shared settings (``model``, ``dataset``, ``epochs``,
    ``batch_size``, ``learning_rate``, ``schedule``, ...) and a table
    ``methods`` with one entry per run: ``{name: {method=..., hparams={...},
    <settings that differ from the shared ones>}}`` (``method`` defaults to the
    entry's name). Keys ``description``/``source``/``notes`` are for the reader.

    Raises:
      UsageError: if the file cannot be read or holds unknown keys.
    """
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise UsageError(f"cannot read config {p}: {e.strerror or e}") from None
    try:
        config = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"config {p} is not valid {'TOML' if p.suffix == '.toml' else 'JSON'}: "
                         f"{e}") from None
    if not isinstance(config, dict):
        raise UsageError(f"config {p} must hold a table of settings")
    unknown = sorted(set(config) - set(COMPARE_KEYS))
    if unknown:
        raise UsageError(f"config {p}: unknown key(s) {', '.join(unknown)}; accepted: "
                         f"{', '.join(COMPARE_KEYS)}")
    runs = config.get("methods", {})
    if not isinstance(runs, dict):
        raise UsageError(f"config {p}: 'methods' must be a table of runs")
    for name, entry in runs.items():
        if not isinstance(entry, dict):
            raise UsageError(f"config {p}: methods.{name} must be a table")
        bad = sorted(set(entry) - set(RUN_KEYS))
        if bad:
            raise UsageError(f"config {p}: methods.{name}: unknown key(s) {', '.join(bad)}; "
                             f"accepted: {', '.join(RUN_KEYS)}")
    return config


# --- building and running ---------------------------------------------------------------------


@dataclasses.dataclass
class TrainedRun:
    """A finished run with what the reports need."""

    settings: RunSettings
    result: Any  # FitResult
    image_shape: tuple[int, ...]
    test_batches: Any
    train_batches: Any
    finished_before: bool


def _load_data(settings: RunSettings, data_dir: str | None, source: str, download: bool):
    from sparsejax import data

    opts = dict(settings.data_options)
    if settings.augment is not None:
        opts["augment"] = settings.augment
    try:
        train_ds = data.load(settings.dataset, settings.train_split, data_dir=data_dir,
                             source=source, download=download, **opts)
        test_ds = data.load(settings.dataset, settings.test_split, data_dir=data_dir,
                            source=source, download=download, **opts)
    except TypeError as e:  # an option the dataset does not take
        raise UsageError(f"dataset {settings.dataset!r}: {e}") from None
    train_b = data.batches(train_ds, settings.batch_size, train=True, seed=settings.seed)
    test_b = data.batches(test_ds, settings.eval_batch_size, train=False)
    return train_ds, train_b, test_b


def run_training(
    settings: RunSettings,
    workdir: str | os.PathLike[str],
    *,
    data_dir: str | None = None,
    source: str = "auto",
    download: bool = False,
    checkpoint_every_steps: int | None = None,
    keep_checkpoints: int = 3,
    progress: bool | None = None,
    log: Callable[[str], None] | None = print,
) -> TrainedRun:
    """Builds model, data and optimizer of ``settings`` and trains (or resumes, or reloads) in ``workdir``."""
    from flax import nnx

    from sparsejax import models
    from sparsejax.train import fit, methods

    hp = settings.validate()
    finished_before = (Path(workdir) / "result.json").exists()
    train_ds, train_b, test_b = _load_data(settings, data_dir, source, download)
    model = models.create(settings.model, num_classes=train_ds.num_classes,
                          input_shape=train_ds.image_shape, rngs=settings.seed)
    methods.prepare_model(settings.method, model, hp, seed=settings.seed)
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    tx, extra = methods.make_optimizer(
        settings.method, hp, learning_rate=settings.learning_rate, momentum=settings.momentum,
        steps_per_epoch=len(train_b), epochs=settings.epochs, params=params, model=model,
        schedule=settings.schedule, warmup_steps=settings.warmup_steps,
        decay_at=settings.decay_at, decay_factor=settings.decay_factor,
    )
    result = fit(model, tx, train_b, epochs=settings.epochs, eval_data=test_b, workdir=workdir,
                 config=settings.config(), seed=settings.seed, keep_checkpoints=keep_checkpoints,
                 checkpoint_every_steps=checkpoint_every_steps, extra_metrics=extra,
                 sparsity_filter="weights", progress=progress, log=log)
    return TrainedRun(settings, result, tuple(train_ds.image_shape), test_b, train_b,
                      finished_before)


def _accuracy_of(run: TrainedRun) -> Callable[[Any], float]:
    """``params -> test accuracy`` of the run's model (one evaluator, compiled once)."""
    from sparsejax.train import make_evaluator

    return make_evaluator(run.result.model, run.test_batches).accuracy


def _flops(run: TrainedRun) -> tuple[float, float]:
    """FLOPs (2 x multiply-accumulates) of one example through the sparse and the dense model."""
    from sparsejax.models import macs

    layers = macs(run.result.model, run.image_shape)
    return 2.0 * sum(m.sparse for m in layers), 2.0 * sum(m.dense for m in layers)


def _model_with_params(model: Any, params: Any) -> Any:
    """A copy of an NNX ``model`` whose ``nnx.Param`` s are ``params`` (a pure dict)."""
    from flax import nnx

    copy = nnx.merge(*nnx.split(model))
    state = nnx.state(copy, nnx.Param)
    nnx.replace_by_pure_dict(state, params)
    nnx.update(copy, state)
    return copy


# --- output -----------------------------------------------------------------------------------


def _pct(x: Any) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100.0 * x:.2f}%"


def _mflops(x: float) -> str:
    return f"{x / 1e6:.3g}M" if x >= 1e5 else f"{x / 1e3:.3g}k"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table (numbers right-aligned).

    Example:
      >>> print(markdown_table(['method', 'acc'], [['sgd', '90.1%']]))
      | method |   acc |
      |--------|------:|
      | sgd    | 90.1% |
    """
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(r: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(r, widths))) + " |"

    sep = "|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":"
                         for i, w in enumerate(widths)) + "|"
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def _error(prog: str, message: str) -> None:
    one_line = " ".join(str(message).split())
    print(f"{prog}: error: {one_line}", file=sys.stderr)


def _one_line_warnings(prog: str) -> Callable[..., None]:
    """``warnings.showwarning`` printing the trainer's warnings about this CLI's calls in one line.

    With ``--quiet`` (no ``log``), :func:`sparsejax.train.fit` reports a damaged
    checkpoint as a ``RuntimeWarning`` at its caller, i.e. in this file.
    """
    default = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        if os.path.abspath(filename) == os.path.abspath(__file__):
            print(f"{prog}: warning: {' '.join(str(message).split())}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    return show


def _primary() -> bool:
    from sparsejax.train.distributed import is_primary

    return is_primary()


# --- argument parsing -------------------------------------------------------------------------


def _parse_value(text: str) -> Any:
    """A ``KEY=VALUE`` value: an int, a float, true/false/none, a JSON list, else the string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    if text.strip().startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass
    return text


def _key_values(items: Sequence[str] | None, what: str, *, raw: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{what} takes NAME=VALUE, got {item!r}")
        out[key.strip()] = value.strip() if raw else _parse_value(value)
    return out


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"{what} takes comma-separated numbers, got {text!r}") from None


def _add_setting_flags(p: argparse.ArgumentParser, *, model_required: bool) -> None:
    from sparsejax.train.methods import SCHEDULES

    g = p.add_argument_group("model and data")
    g.add_argument("--model", required=model_required, default=None,
                   help="a model of the zoo (sparsejax.models.available(), e.g. lenet5, resnet20)")
    g.add_argument("--dataset", required=model_required, default=None,
                   help="fashion_mnist, mnist, cifar10, cifar100, imagenet2012 or synthetic")
    g.add_argument("--data-dir", default=None,
                   help="a folder with the dataset (TFDS data dir or the dataset's files) "
                        "looked at first")
    g.add_argument("--source", default="auto", choices=("auto", "tfds", "files"),
                   help="where the data may come from")
    g.add_argument("--download", action="store_true",
                   help="allow TFDS to download a missing dataset (network needed)")
    g.add_argument("--data-opt", action="append", metavar="NAME=VALUE",
                   help="an option of sparsejax.data.load (e.g. num_examples=512 for synthetic); "
                        "repeatable")
    g.add_argument("--train-split", default=None, help="training split (default train; "
                   "TFDS slices like 'train[:10%%]' work)")
    g.add_argument("--test-split", default=None, help="test split (default test)")
    g.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="random crop + flip (default: the dataset's choice: on for CIFAR/ImageNet)")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=None, help=f"default {DEFAULTS['epochs']}")
    g.add_argument("--batch-size", type=int, default=None,
                   help=f"global training batch size (default {DEFAULTS['batch_size']})")
    g.add_argument("--eval-batch-size", type=int, default=None,
                   help=f"test batch size (default {DEFAULTS['eval_batch_size']})")
    g.add_argument("--lr", "--learning-rate", dest="learning_rate", type=float, default=None,
                   help="base learning rate (default: the method's, see `sparsejax methods M`)")
    g.add_argument("--momentum", type=float, default=None,
                   help="momentum (default: the method's; ignored by methods without momentum)")
    g.add_argument("--schedule", default=None, choices=SCHEDULES,
                   help="learning-rate schedule (default constant)")
    g.add_argument("--warmup-steps", type=int, default=None, help="linear warm-up steps (default 0)")
    g.add_argument("--decay-at", default=None, metavar="F1,F2",
                   help="step schedule: fractions of training where the lr drops (default 0.5,0.75)")
    g.add_argument("--decay-factor", type=float, default=None,
                   help="step schedule: the factor (default 0.1)")
    g.add_argument("--seed", type=int, default=None, help="seed of init, shuffling, dropout (default 0)")


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--checkpoint-every-steps", type=int, default=None,
                   help="also checkpoint every N steps (default: after every epoch)")
    g.add_argument("--keep-checkpoints", type=int, default=3,
                   help="checkpoints kept (default 3); with 1, a damaged checkpoint has no "
                        "older one to fall back to")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="a progress bar (default: when stderr is a terminal)")
    g.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    g.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    g = p.add_argument_group("several hosts (see sparsejax.train.distributed)")
    g.add_argument("--coordinator", default=None, help="host:port of process 0")
    g.add_argument("--num-processes", type=int, default=None, help="number of processes")
    g.add_argument("--process-id", type=int, default=None, help="this process's index")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``sparsejax`` and its sub-commands."""
    parser = argparse.ArgumentParser(
        prog="sparsejax",
        description="Train sparse networks, compare sparse-training methods, prune trained runs.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train one model with one method",
                       description="Train one model with one method (resumable; see "
                                   "`sparsejax methods` for the methods and their hyperparameters).")
    p.add_argument("--method", required=True,
                   help="the method (sgd, gmp, grda, irda, lats, ...; `sparsejax methods` lists "
                        "them), or the name of an entry of --config")
    p.add_argument("--hp", action="append", metavar="NAME=VALUE",
                   help="a hyperparameter of the method, e.g. --hp c=0.02 (repeatable)")
    p.add_argument("--config", default=None,
                   help="a comparison config (TOML/JSON): settings and the method's entry are "
                        "taken from it; flags override")
    p.add_argument("--workdir", default=None,
                   help="run directory (default runs/<dataset>-<model>-<method>-s<seed>)")
    _add_setting_flags(p, model_required=False)
    _add_run_flags(p)

    p = sub.add_parser("compare", help="train several methods and compare them",
                       description="Train several methods one after the other (resumable; a rerun "
                                   "skips finished runs), then write a table and plots to --out.")
    p.add_argument("--methods", default=None,
                   help="comma-separated runs: method names, or names of the config's entries "
                        "(default: every entry of --config)")
    p.add_argument("--config", default=None, help="a comparison config (TOML/JSON), e.g. "
                   "experiments/configs/fashion_mnist_lenet5.toml")
    p.add_argument("--hp", action="append", metavar="RUN.NAME=VALUE",
                   help="a hyperparameter of one run, e.g. --hp grda.c=0.02 (repeatable)")
    p.add_argument("--out", default=None, help="output directory (default runs/compare-<dataset>-"
                   "<model>)")
    p.add_argument("--ratios", default=None,
                   help="one-shot pruning ratios of the any-sparsity curves (default "
                        + ",".join(f"{r:g}" for r in DEFAULT_RATIOS) + ")")
    p.add_argument("--scope", default=None, choices=("global", "layerwise"),
                   help="one-shot pruning scope of the curves (default global)")
    _add_setting_flags(p, model_required=False)
    _add_run_flags(p)

    p = sub.add_parser("prune", help="one-shot magnitude pruning of a trained run",
                       description="Prune a finished run one-shot at several ratios; report test "
                                   "accuracy without and (--retrain-epochs) with retraining.")
    p.add_argument("--workdir", "--checkpoint", dest="workdir", required=True,
                   help="the run's directory (of `sparsejax train` or a compare entry)")
    p.add_argument("--ratios", default="0.5,0.8,0.9", help="pruning ratios (default 0.5,0.8,0.9)")
    p.add_argument("--scope", default="global", choices=("global", "layerwise"))
    p.add_argument("--retrain-epochs", type=int, default=0,
                   help="epochs of retraining with the mask fixed (default 0: none)")
    p.add_argument("--retrain-lr", type=float, default=0.01, help="retraining learning rate")
    p.add_argument("--retrain-momentum", type=float, default=0.9, help="retraining momentum")
    p.add_argument("--data-dir", default=None, help="where the run's dataset is (if moved)")
    p.add_argument("--source", default="auto", choices=("auto", "tfds", "files"))
    p.add_argument("--eval-batch-size", type=int, default=None)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--debug", action="store_true")

    p = sub.add_parser("methods", help="list the methods, or describe one",
                       description="List the training methods, or describe one (hyperparameters, "
                                   "defaults and where they come from).")
    p.add_argument("method", nargs="?", default=None)
    return parser


def _settings_from(common: Mapping[str, Any], entry: Mapping[str, Any], name: str,
                   flags: Mapping[str, Any], hp_flags: Mapping[str, Any]) -> RunSettings:
    """One run's settings: defaults < config (shared) < config (run entry) < flags."""
    merged: dict[str, Any] = dict(DEFAULTS)
    for source in (common, entry):
        merged.update({k: v for k, v in source.items() if k in SETTING_KEYS})
    merged.update({k: v for k, v in flags.items() if v is not None})
    for key in ("model", "dataset"):
        if not merged.get(key):
            raise UsageError(f"--{key} is required (or a --config that sets it)")
    hparams = dict(entry.get("hparams") or {})
    hparams.update(hp_flags)
    opts = dict(merged["data_options"] or {})
    return RunSettings(
        name=name, method=entry.get("method", name), hparams=hparams, model=merged["model"],
        dataset=merged["dataset"], epochs=merged["epochs"], batch_size=merged["batch_size"],
        eval_batch_size=merged["eval_batch_size"], learning_rate=merged["learning_rate"],
        momentum=merged["momentum"], schedule=merged["schedule"],
        warmup_steps=merged["warmup_steps"], decay_at=tuple(merged["decay_at"]),
        decay_factor=merged["decay_factor"], seed=merged["seed"], augment=merged["augment"],
        train_split=merged["train_split"], test_split=merged["test_split"], data_options=opts,
    )


def _setting_flags(args: argparse.Namespace) -> dict[str, Any]:
    flags = {k: getattr(args, k) for k in ("model", "dataset", "epochs", "batch_size",
                                           "eval_batch_size", "learning_rate", "momentum",
                                           "schedule", "warmup_steps", "decay_factor", "seed",
                                           "augment", "train_split", "test_split")}
    if args.decay_at is not None:
        flags["decay_at"] = _floats(args.decay_at, "--decay-at")
    if args.data_opt:
        flags["data_options"] = _key_values(args.data_opt, "--data-opt", raw=False)
    return flags


def _say(args: argparse.Namespace, prefix: str = "") -> Callable[[str], None] | None:
    if getattr(args, "quiet", False):
        return None
    return lambda line: print(prefix + line, flush=True)


def _init_distributed(args: argparse.Namespace) -> None:
    from sparsejax.train import initialize_distributed

    initialize_distributed(args.coordinator, args.num_processes, args.process_id)


# --- sub-commands -----------------------------------------------------------------------------


def _summary_line(run: TrainedRun) -> str:
    final = run.result.final
    extras = [f"{k} {v:.4g}" for k, v in final.items()
              if k in ("threshold", "target_sparsity", "l1", "step_size")]
    return (f"{run.settings.name}: test accuracy {_pct(final.get('test_accuracy'))}, "
            f"sparsity {_pct(final.get('sparsity'))} of the weights "
            f"({_pct(final.get('sparsity_all'))} of all parameters)"
            + "".join(f", {e}" for e in extras)
            + f", {run.result.wall_time:.1f} s of training; workdir {run.result.workdir}")


def cmd_train(args: argparse.Namespace) -> int:
    """``sparsejax train``."""
    _init_distributed(args)
    config = load_config(args.config) if args.config else {}
    entries = config.get("methods", {})
    entry = dict(entries.get(args.method, {"method": args.method}))
    entry.setdefault("method", args.method)
    settings = _settings_from(config, entry, args.method, _setting_flags(args),
                              _key_values(args.hp, "--hp", raw=True))
    settings.validate()
    workdir = Path(args.workdir) if args.workdir else settings.default_workdir()
    run = run_training(settings, workdir, data_dir=args.data_dir, source=args.source,
                       download=args.download, checkpoint_every_steps=args.checkpoint_every_steps,
                       keep_checkpoints=args.keep_checkpoints, progress=args.progress,
                       log=_say(args))
    if _primary():
        print(_summary_line(run))
    return 0


def _compare_runs(args: argparse.Namespace, config: Mapping[str, Any]) -> list[RunSettings]:
    entries: dict[str, Any] = dict(config.get("methods", {}))
    if args.methods:
        names = [m.strip() for m in args.methods.split(",") if m.strip()]
    elif entries:
        names = list(entries)
    else:
        raise UsageError("--methods is required (or a --config with a [methods] table)")
    if not names:
        raise UsageError("--methods names no method")
    if len(set(names)) != len(names):
        raise UsageError(f"--methods names a run twice: {args.methods}")
    hp_by_run: dict[str, dict[str, Any]] = {}
    for key, value in _key_values(args.hp, "--hp", raw=True).items():
        run, dot, hp = key.partition(".")
        if not dot or run not in names:
            raise UsageError(f"compare's --hp takes RUN.NAME=VALUE with RUN one of "
                             f"{', '.join(names)}, got {key!r}")
        hp_by_run.setdefault(run, {})[hp] = value
    flags = _setting_flags(args)
    runs = []
    for name in names:
        entry = dict(entries.get(name, {"method": name}))
        runs.append(_settings_from(config, entry, name, flags, hp_by_run.get(name, {})))
    for r in runs:
        r.validate()  # every run is checked before the first one starts
    return runs


def cmd_compare(args: argparse.Namespace) -> int:
    """``sparsejax compare``."""
    _init_distributed(args)
    config = load_config(args.config) if args.config else {}
    runs = _compare_runs(args, config)
    out = Path(args.out or config.get("out") or
               f"runs/compare-{runs[0].dataset}-{runs[0].model}")
    ratios = (_floats(args.ratios, "--ratios") if args.ratios is not None
              else list(config.get("ratios", DEFAULT_RATIOS)))
    for r in ratios:
        if not 0 <= r < 1:
            raise UsageError(f"--ratios must lie in [0, 1), got {r:g}")
    scope = args.scope or config.get("scope", "global")
    if scope not in ("global", "layerwise"):
        raise UsageError(f"scope must be 'global' or 'layerwise', got {scope!r}")
    say = (lambda line: None) if args.quiet or not _primary() else print

    trained: list[TrainedRun] = []
    for i, settings in enumerate(runs):
        workdir = out / settings.name
        say(f"== [{i + 1}/{len(runs)}] {settings.name} ({settings.method}) -> {workdir}")
        run = run_training(settings, workdir, data_dir=args.data_dir, source=args.source,
                           download=args.download,
                           checkpoint_every_steps=args.checkpoint_every_steps,
                           keep_checkpoints=args.keep_checkpoints, progress=args.progress,
                           log=_say(args, f"  [{settings.name}] "))
        if run.finished_before:
            say(f"  [{settings.name}] finished before: skipped")
        trained.append(run)

    say(f"== evaluating: FLOPs, one-shot pruning curves ({len(trained)} runs x {len(ratios)} ratios)")
    rows, curves = [], {}
    from tqdm import tqdm

    from sparsejax import pruning
    from sparsejax.train.loop import progress_enabled

    bar = tqdm(total=len(trained) * len(ratios), desc="one-shot pruning", unit="eval", leave=False,
               disable=not progress_enabled(args.progress), dynamic_ncols=True, file=sys.stderr)
    for run in trained:
        final = run.result.final
        sparse, dense = _flops(run)
        accuracy = _accuracy_of(run)

        def counted(params: Any, accuracy: Callable[[Any], float] = accuracy) -> float:
            value = accuracy(params)
            bar.update()
            return value

        bar.set_postfix_str(run.settings.name, refresh=False)
        curve = pruning.one_shot_curve(run.result.params, counted, ratios, scope=scope)
        curves[run.settings.name] = curve
        rows.append({
            "name": run.settings.name,
            "method": run.settings.method,
            "test_accuracy": final.get("test_accuracy"),
            "sparsity": final.get("sparsity"),
            "sparsity_all": final.get("sparsity_all"),
            "nonzero_params": final.get("nonzero_params"),
            "num_params": final.get("num_params"),
            "flops": sparse,
            "flops_dense": dense,
            "wall_time": run.result.wall_time,
            "epochs": run.settings.epochs,
            "config": run.settings.config(),
            "workdir": str(run.result.workdir),
            "one_shot": [c._asdict() for c in curve],
        })
    bar.close()
    if _primary():
        _write_compare(out, rows, curves, trained, ratios, scope)
    return 0


def _compare_markdown(rows: Sequence[Mapping[str, Any]], ratios: Sequence[float],
                      scope: str) -> tuple[str, str]:
    table = markdown_table(
        ["method", "test accuracy", "sparsity (weights)", "FLOPs", "FLOPs vs dense", "wall time"],
        [[r["name"], _pct(r["test_accuracy"]), _pct(r["sparsity"]), _mflops(r["flops"]),
          _pct(r["flops"] / r["flops_dense"]), f"{r['wall_time']:.0f} s"] for r in rows],
    )
    curve_table = markdown_table(
        ["method"] + [f"{100 * q:g}%" for q in ratios],
        [[r["name"]] + [_pct(p["metric"]) for p in r["one_shot"]] for r in rows],
    )
    return table, curve_table


def _write_compare(out: Path, rows: list[dict[str, Any]], curves: Mapping[str, Any],
                   trained: Sequence[TrainedRun], ratios: Sequence[float], scope: str) -> None:
    from sparsejax.train import plots

    out.mkdir(parents=True, exist_ok=True)
    table, curve_table = _compare_markdown(rows, ratios, scope)
    first = trained[0].settings
    head = (f"{first.dataset}, {first.model}, {first.epochs} epochs of batch {first.batch_size}, "
            f"seed {first.seed}")
    plots.plot_accuracy_vs_sparsity([{"method": r["name"], "test_accuracy": r["test_accuracy"],
                                      "sparsity": r["sparsity"]} for r in rows],
                                    out / "accuracy_vs_sparsity.png",
                                    title=f"accuracy vs sparsity ({first.dataset}, {first.model})")
    plots.plot_one_shot_curves(curves, out / "one_shot_curves.png",
                               title=f"one-shot {scope} magnitude pruning, no retraining")
    plots.plot_layer_sparsity_grid({r.settings.name: r.result.params for r in trained},
                                   out / "layer_sparsity.png", columns=3)
    md = "\n".join([
        f"# sparsejax compare: {head}", "",
        "FLOPs: one example through the model, 2 x multiply-accumulates of the conv and dense "
        "layers with the zero weights skipped; sparsity: share of zeros among the conv and "
        "dense kernels.", "",
        table, "",
        f"Test accuracy after one-shot {scope} magnitude pruning at each ratio, no retraining "
        "(any-sparsity):", "",
        curve_table, "",
        "![accuracy vs sparsity](accuracy_vs_sparsity.png)",
        "![one-shot pruning curves](one_shot_curves.png)",
        "![layer-wise sparsity](layer_sparsity.png)", "",
    ])
    (out / "results.md").write_text(md)
    (out / "results.json").write_text(json.dumps(
        {"settings": head, "scope": scope, "ratios": list(ratios), "runs": rows}, indent=2) + "\n")
    print()
    print(table)
    print()
    print(f"any-sparsity (one-shot {scope} pruning, no retraining):")
    print(curve_table)
    print(f"\nresults and plots in {out}/ (results.md, results.json, accuracy_vs_sparsity.png, "
          "one_shot_curves.png, layer_sparsity.png)")


def cmd_prune(args: argparse.Namespace) -> int:
    """``sparsejax prune``."""
    import optax

    import sparsejax as sj
    from sparsejax import pruning
    from sparsejax.train import fit

    workdir = Path(args.workdir)
    cfg_file = workdir / "config.json"
    if not cfg_file.is_file():
        raise UsageError(f"{workdir} holds no config.json: not a run of `sparsejax train`")
    if not (workdir / "result.json").is_file():
        raise UsageError(f"the run in {workdir} has not finished; finish it first (run its "
                         "`sparsejax train` command again to resume)")
    try:
        config = json.loads(cfg_file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"cannot read {cfg_file}: {e}") from None
    ratios = _floats(args.ratios, "--ratios")
    if not ratios or not all(0 <= r < 1 for r in ratios):
        raise UsageError(f"--ratios must be numbers in [0, 1), got {args.ratios!r}")
    if args.retrain_epochs < 0:
        raise UsageError(f"--retrain-epochs must be >= 0, got {args.retrain_epochs}")
    if not 0 <= args.retrain_momentum < 1:
        raise UsageError(f"--retrain-momentum must be in [0, 1), got {args.retrain_momentum}")
    if not args.retrain_lr >= 0:
        raise UsageError(f"--retrain-lr must be >= 0, got {args.retrain_lr}")
    settings = RunSettings.from_config(
        config, eval_batch_size=args.eval_batch_size or DEFAULTS["eval_batch_size"])
    run = run_training(settings, workdir, data_dir=args.data_dir, source=args.source,
                       log=None)
    accuracy = _accuracy_of(run)
    base = run.result.final
    say = (lambda line: None) if args.quiet or not _primary() else print
    say(f"{workdir}: {settings.method} on {settings.dataset}/{settings.model}: test accuracy "
        f"{_pct(base.get('test_accuracy'))} at sparsity {_pct(base.get('sparsity'))}")
    rows = []
    for ratio in ratios:
        pruned, masks = pruning.prune(run.result.params, ratio, scope=args.scope)
        row = {"ratio": ratio, "sparsity": float(sj.sparsity(pruned, sj.tree.weights_only)),
               "test_accuracy": accuracy(pruned)}
        if args.retrain_epochs:
            tx = optax.chain(optax.sgd(args.retrain_lr, momentum=args.retrain_momentum or None),
                             pruning.fixed_mask(masks))
            sub = workdir / "retrain" / f"{args.scope}-r{ratio:g}-e{args.retrain_epochs}"
            retrain_cfg = {"pruned_from": config, "ratio": ratio, "scope": args.scope,
                           "epochs": args.retrain_epochs, "learning_rate": args.retrain_lr,
                           "momentum": args.retrain_momentum}
            res = fit(_model_with_params(run.result.model, pruned), tx, run.train_batches,
                      epochs=args.retrain_epochs, eval_data=run.test_batches, workdir=sub,
                      config=retrain_cfg, seed=settings.seed, sparsity_filter="weights",
                      progress=args.progress, log=None if args.quiet else
                      (lambda line, r=ratio: print(f"  [retrain {r:g}] {line}", flush=True)))
            row["retrained_accuracy"] = res.final.get("test_accuracy")
            row["retrained_sparsity"] = res.final.get("sparsity")
        rows.append(row)
    header = ["ratio", "sparsity", "test accuracy (no retraining)"]
    if args.retrain_epochs:
        header += [f"after {args.retrain_epochs} epoch(s) of retraining", "sparsity after"]
    table = markdown_table(header, [
        [f"{r['ratio']:g}", _pct(r["sparsity"]), _pct(r["test_accuracy"])]
        + ([_pct(r["retrained_accuracy"]), _pct(r["retrained_sparsity"])]
           if args.retrain_epochs else []) for r in rows])
    if _primary():
        name = f"prune-{args.scope}" + (f"-e{args.retrain_epochs}" if args.retrain_epochs else "")
        (workdir / f"{name}.json").write_text(json.dumps(
            {"scope": args.scope, "retrain_epochs": args.retrain_epochs, "rows": rows},
            indent=2) + "\n")
        print(f"one-shot {args.scope} magnitude pruning of {workdir}:")
        print(table)
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    """``sparsejax methods``."""
    from sparsejax.train import methods

    if args.method:
        print(methods.describe(args.method))
        return 0
    width = max(len(m) for m in methods.available_methods())
    for name in methods.available_methods():
        print(f"{name:<{width}}  {methods.get_method(name).summary}")
    print("\n`sparsejax methods NAME` shows a method's hyperparameters, defaults and sources.")
    return 0


COMMANDS = {"train": cmd_train, "compare": cmd_compare, "prune": cmd_prune,
            "methods": cmd_methods}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``sparsejax`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    0: success; 2: bad input (a one-line message on stderr; argparse errors
    too; also a workdir whose checkpoints are all damaged); 1: training
    diverged; 130: interrupted.

    Example:
      >>> main(['methods']) == 0  # doctest: +ELLIPSIS
      fixed_threshold_reparam ...
      True
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"sparsejax {args.command}"
    if getattr(args, "debug", False):
        return COMMANDS[args.command](args)
    from sparsejax.train import CheckpointRestoreError, TrainingDivergedError

    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warnings(prog)
            return COMMANDS[args.command](args)
    except TrainingDivergedError as e:
        _error(prog, str(e))
        return EXIT_FAILED
    except (ValueError, CheckpointRestoreError, FileNotFoundError, NotADirectoryError,
            PermissionError) as e:
        _error(prog, str(e))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _error(prog, "interrupted; run the same command again to resume")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
