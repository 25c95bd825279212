"""Run settings and comparison configs of the ``sparsejax`` command line."""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
"""Config keys kept for the reader only (comments that survive a JSON config).

``source`` there cites where a run's settings come from (a paper, a table);
the data source is the ``--source`` flag, which a config does not set.
"""
DATA_SOURCES = ("auto", "tfds", "files")
"""The values of ``--source`` (where the data may come from)."""
RUN_KEYS = ("method", "hparams") + SETTING_KEYS + DOC_KEYS
COMPARE_KEYS = ("ratios", "scope", "bn_recalibrate", "methods", "out") + SETTING_KEYS + DOC_KEYS
DEFAULT_RATIOS = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98)
RETRAIN_LR, RETRAIN_MOMENTUM = 0.01, 0.9
"""``prune``'s default retraining learning rate and momentum (left out of its folder names)."""

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


class UsageError(ValueError):
    """Bad command-line input found by the command line itself."""


# --- settings ---------------------------------------------------------------------------------


def default_augment_as_none(dataset: Any, augment: Any) -> Any:
    """``augment``, or ``None`` (the dataset's default) where it equals that default.

    ``--no-augment`` on a dataset that does not augment by default (or ``--augment``
    on one that does) is the same experiment as leaving it out, so it gets the same
    identity. Anything else (an unknown dataset, a value that is not a bool) is
    returned as it is, for :meth:`RunSettings.validate` to judge.

    Example:
      >>> default_augment_as_none('synthetic', False), default_augment_as_none('cifar10', False)
      (None, False)
    """
    from sparsejax.data import DATASETS

    info = DATASETS.get(dataset) if isinstance(dataset, str) else None
    if info is not None and isinstance(augment, bool) and augment == info.augment:
        return None
    return augment


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
        from sparsejax.train import methods, schedules

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
        if self.augment is not None and not isinstance(self.augment, bool):
            raise UsageError(f"augment must be true or false, got {self.augment!r}")
        spec.resolve_learning_rate(self.learning_rate)
        spec.resolve_momentum(self.momentum)
        w = self.warmup_steps
        if isinstance(w, bool) or not isinstance(w, int) or w < 0:
            raise UsageError(f"warmup-steps must be an integer >= 0, got {w!r}")
        # the schedule's settings (warm-up against the total steps is checked once the data is known)
        schedules.make_schedule(self.schedule, 0.1, steps_per_epoch=w + 1, epochs=1, warmup_steps=w,
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


def check_output_dir(path: str | os.PathLike[str], what: str) -> None:
    """Raises a :class:`UsageError` if ``path`` cannot be made an output folder.

    Checked before any work: ``path``, or the nearest of its parents that exists,
    must be a directory. ``what`` names the folder in the message (e.g.
    ``'--out runs/x'``).
    """
    p = Path(path)
    for q in (p, *p.parents):
        if q.exists():
            if q.is_dir():
                return
            if q == p:
                raise UsageError(f"{what} exists and is not a directory; name another folder")
            raise UsageError(f"{what}: {q} exists and is not a directory; name another folder")


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Reads a comparison config: TOML (``.toml``) or JSON (anything else).

    The file holds shared settings (``model``, ``dataset``, ``epochs``,
    ``batch_size``, ``learning_rate``, ``schedule``, ...) and a table
    ``methods`` with one entry per run: ``{name: {method=..., hparams={...},
    <settings that differ from the shared ones>}}`` (``method`` defaults to the
    entry's name). Keys ``description``/``source``/``notes`` are for the reader
    (``source`` cites where the settings come from; the data source is the
    ``--source`` flag, and a ``source`` that names one is refused).

    Raises:
      UsageError: if the file cannot be read, holds unknown keys, or a value of
        the wrong type (``ratios``, ``out``, ``methods``, ``method``, ``hparams``),
        or a ``source`` that names a data source (``"files"``, ...).
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
    _refuse_a_data_source_as_note(p, "", config)
    unknown = sorted(set(config) - set(COMPARE_KEYS))
    if unknown:
        raise UsageError(f"config {p}: unknown key(s) {', '.join(unknown)}; accepted: "
                         f"{', '.join(COMPARE_KEYS)}")
    runs = config.get("methods", {})
    if not isinstance(runs, dict):
        raise UsageError(f"config {p}: 'methods' must be a table of runs")
    ratios = config.get("ratios", DEFAULT_RATIOS)
    if not isinstance(ratios, list | tuple) or not all(
            isinstance(r, int | float) and not isinstance(r, bool) for r in ratios):
        raise UsageError(f"config {p}: 'ratios' must be a list of pruning ratios (numbers in "
                         f"[0, 1)), got {ratios!r}")
    if config.get("out") is not None and not isinstance(config["out"], str):
        raise UsageError(f"config {p}: 'out' must be a string (an output directory), got "
                         f"{config['out']!r}")
    for name, entry in runs.items():
        if not isinstance(entry, dict):
            raise UsageError(f"config {p}: methods.{name} must be a table")
        bad = sorted(set(entry) - set(RUN_KEYS))
        if bad:
            raise UsageError(f"config {p}: methods.{name}: unknown key(s) {', '.join(bad)}; "
                             f"accepted: {', '.join(RUN_KEYS)}")
        _refuse_a_data_source_as_note(p, f"methods.{name}.", entry)
        if not isinstance(entry.get("method", ""), str):
            raise UsageError(f"config {p}: methods.{name}.method must be a string (a method's "
                             f"name), got {entry['method']!r}")
        if entry.get("hparams") is not None and not isinstance(entry["hparams"], dict):
            raise UsageError(f"config {p}: methods.{name}.hparams must be a table of "
                             f"hyperparameters (NAME = VALUE), got {entry['hparams']!r}")
    return config


def _refuse_a_data_source_as_note(path: Path, where: str, table: Mapping[str, Any]) -> None:
    """A :class:`UsageError` for ``source = "files"`` (etc.): a note that looks like ``--source``.

    ``source`` is a note for the reader; written as one of :data:`DATA_SOURCES`
    it was almost certainly meant to choose the data source, which it would not.
    """
    value = table.get("source")
    if isinstance(value, str) and value.strip().lower() in DATA_SOURCES:
        raise UsageError(
            f"config {path}: {where}source = {value!r} is a note for the reader (it cites where "
            "the settings come from) and does not choose the data source: pass --source "
            f"{value.strip().lower()} on the command line instead, and remove the key or write "
            "a citation there"
        )
