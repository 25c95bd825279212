"""What the two BatchNorm-CNN reproductions share: the model, the budget and how a run is trained.

``experiments/irda_table7.py`` (iRDA against its baselines, the iRDA paper's
Tables 5 and 7) and ``experiments/soft_threshold_family.py`` (LATS, S-LATS,
PGH, STR, STDS and gradual magnitude pruning at matched sparsities) train the
same network on the same Fashion-MNIST batches through the library's trainer
(:func:`sparsejax.train.cli.runs.run_training`, i.e. :func:`sparsejax.train.fit`
with the registry's optimizers): one training loop, the registry's
hyperparameters, a workdir per run (a finished run is reused, an interrupted
one resumed).

The network, registered in the model zoo as ``fmnist_bn_cnn``, is a small VGG
with BatchNorm (:class:`sparsejax.models.VGG`, configuration
``(16, M, 32, M, 64, M)``, global average pooling, one hidden dense layer of
64): three 3x3 convolutions without bias, each followed by BatchNorm and
ReLU, and 28,218 parameters of which 27,920 are conv and dense kernels (the
leaves that are sparsified and counted). It stands in for the papers'
ResNet-18/ResNet-50: the smallest network with BatchNorm after every
convolution that trains in tens of seconds on 2 CPU cores.

This module is imported by the two scripts (it is not a script itself);
``experiments/dynamic_sparse_training.py`` uses its budget and :func:`train_run`
with other models.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

MODEL = "fmnist_bn_cnn"
CONV_CONFIG: tuple[int | str, ...] = (16, "M", 32, "M", 64, "M")
HIDDEN: tuple[int, ...] = (64,)


def register_model() -> None:
    """Registers ``fmnist_bn_cnn`` in :mod:`sparsejax.models` (once per process)."""
    from sparsejax import models
    from sparsejax.models.vgg import VGG

    if MODEL in models.available():
        return

    def build(num_classes: int, input_shape: Sequence[int], *, rngs: Any, **kwargs: Any) -> VGG:
        return VGG(CONV_CONFIG, num_classes, in_channels=int(input_shape[-1]), batch_norm=True,
                   classifier_hidden=HIDDEN, rngs=rngs, **kwargs)

    models.register(MODEL, build, (28, 28, 1))


@dataclasses.dataclass(frozen=True)
class Budget:
    """The training budget every method of a study gets (the same batches for all).

    Attributes:
      epochs: passes over ``train_split``.
      train_split: the Fashion-MNIST training examples used (a TFDS-style slice).
      test_split: the test examples the accuracy is measured on.
      batch_size: training mini-batch size (the iRDA paper: 128).
      seed: model initialisation and batch order.
    """

    epochs: int
    train_split: str
    test_split: str = "test"
    batch_size: int = 128
    seed: int = 0

    @property
    def steps_per_epoch(self) -> int:
        """Training steps per epoch (``train_split`` is ``'train'`` or ``'train[:N]'``)."""
        n = 60000
        if self.train_split.startswith("train[:"):
            n = int(self.train_split[len("train[:"):-1])
        elif self.train_split != "train":
            raise ValueError(
                f"train_split must be 'train' or 'train[:N]', got {self.train_split!r}")
        return n // self.batch_size


FULL = Budget(epochs=2, train_split="train[:25600]")
"""The documented runs: 2 epochs of 25,600 examples (400 steps of 128), all 10,000 test images."""
QUICK = Budget(epochs=1, train_split="train[:256]", test_split="test[:200]", batch_size=64)
"""The tests' runs: 4 steps of batch 64, 200 test images (seconds)."""


def settings(name: str, method: str, hparams: Mapping[str, Any], budget: Budget,
             **training: Any) -> Any:
    """A :class:`sparsejax.train.cli.settings.RunSettings` of ``fmnist_bn_cnn`` under ``budget``.

    ``training`` sets the learning rate, momentum, schedule and warm-up
    (methods without a learning rate ignore them).
    """
    from sparsejax.train.cli.settings import RunSettings

    register_model()
    return RunSettings(
        name=name, method=method, hparams=dict(hparams), model=MODEL, dataset="fashion_mnist",
        epochs=budget.epochs, batch_size=budget.batch_size, seed=budget.seed,
        train_split=budget.train_split, test_split=budget.test_split, **training)


def train(run: Any, work: Path, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Trains (or reuses, or resumes) ``run`` in ``work/<run.name>``; returns its figures.

    Returns:
      ``{name, method, hparams, accuracy, sparsity, wall_time, steps, reused}``:
      the final test accuracy, the fraction of zero conv and dense kernel
      entries, the training's wall time in seconds (of the run that trained it).
    """
    register_model()
    return train_run(run, work, say)[0]


def train_run(run: Any, work: Path,
              say: Callable[[str], None] | None = None) -> tuple[dict[str, Any], Any]:
    """:func:`train` for any registered model, also returning the trained run.

    Returns:
      ``(row, trained)``: the figures of :func:`train` and the
      :class:`sparsejax.train.cli.runs.TrainedRun` (its final params, model and
      test batches, for evaluations after training).
    """
    from sparsejax.train.cli.runs import run_training

    start = time.perf_counter()
    trained = run_training(run, work / run.name, log=None, progress=False)
    final = trained.result.final
    row = {
        "name": run.name,
        "method": run.method,
        "hparams": dict(run.hparams),
        "accuracy": float(final["test_accuracy"]),
        "sparsity": float(final["sparsity"]),
        "wall_time": float(trained.result.wall_time),
        "steps": int(final["step"]),
        "reused": bool(trained.finished_before),
    }
    if say is not None:
        took = "reused" if row["reused"] else f"{time.perf_counter() - start:.0f} s"
        say(f"  {run.name}: {100 * row['accuracy']:.2f}% at {100 * row['sparsity']:.2f}% "
            f"kernel zeros ({took})")
    return row, trained


def write_json(path: Path, payload: Mapping[str, Any]) -> None:
    """Writes ``payload`` as indented JSON (creating the folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, sort_keys=False) + "\n")


def pct(x: float | None, digits: int = 2) -> str:
    """``x`` (a fraction) in percent, ``'-'`` for ``None``."""
    return "-" if x is None else f"{100 * x:.{digits}f}"
