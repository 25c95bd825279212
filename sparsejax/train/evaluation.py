"""Exact test loss and accuracy, compiled once per model: :func:`make_evaluator` and :func:`evaluate`.

One evaluator serves every evaluation of one architecture on one data set:
the per-epoch evaluation of :func:`sparsejax.train.fit`, the one-shot pruning
curves of ``sparsejax compare`` and ``sparsejax prune``, and the experiments'
own curves. Its eval step is compiled on the first call and reused for any
params of the same structure (e.g. the same network pruned to many ratios).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any, Protocol

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from sparsejax.train.distributed import data_mesh
from sparsejax.train.step import (
    ModelParts,
    make_eval_step,
    replicated,
    shard_batch,
    split_model,
    to_global,
    zero_totals,
)
from sparsejax.tree import PyTree

__all__ = ["BatchSource", "Evaluator", "evaluate", "make_evaluator"]


class BatchSource(Protocol):
    """What the trainer needs from a data pipeline (e.g. :class:`sparsejax.data.Batches`)."""

    batch_size: int

    def __len__(self) -> int: ...

    def epoch(self, epoch: int, start: int = 0) -> Iterator[dict[str, np.ndarray]]: ...


def warn_if_training_pipeline(data: Any, what: str, stacklevel: int = 3) -> None:
    """Warns when ``data`` is a training pipeline (``train=True``) used to evaluate.

    Such a pipeline drops its last incomplete batch and may augment, so the
    figures are not those of the dataset's examples.
    """
    if getattr(data, "train", False) is True:
        augment = " and augments" if getattr(data, "augment", False) else ""
        warnings.warn(
            f"{what} is a training pipeline (train=True): it drops its last incomplete "
            f"batch{augment}, so not every example is counted as it is; build it with "
            "sparsejax.data.batches(..., train=False)", UserWarning, stacklevel=stacklevel)


def _check_labels(batch: dict[str, Any], index: int) -> None:
    """Raises ``ValueError`` unless ``batch['label']`` holds one integer class label per row."""
    label = np.asarray(batch["label"])
    rows = int(np.shape(batch["image"])[0])
    if label.shape != (rows,):
        hint = (" (one-hot or probability labels: pass their class indices, label.argmax(-1))"
                if label.ndim == 2 and label.shape[0] == rows else "")
        raise ValueError(
            f"evaluation batch {index}: 'label' must hold one integer class label per example, "
            f"of shape ({rows},), got shape {tuple(label.shape)}{hint}")
    if label.dtype.kind not in "biu" and not (
            label.dtype.kind == "f" and np.all(label == np.round(label))):
        raise ValueError(
            f"evaluation batch {index}: 'label' must hold integer class labels, got dtype "
            f"{label.dtype}{' with non-integer values' if label.dtype.kind == 'f' else ''}")


def _checked(batches: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for i, batch in enumerate(batches):
        _check_labels(batch, i)
        yield batch


class Evaluator:
    r"""Loss and accuracy of one model architecture on fixed data, with one compiled step.

    .. math::

      \text{loss} = \frac{\sum_i m_i \ell_i}{\sum_i m_i}, \qquad
      \text{accuracy} = \frac{\sum_i m_i [\hat y_i = y_i]}{\sum_i m_i}

    with :math:`m_i` the batches' ``mask`` (padding rows have 0), so the
    figures are exact whatever the batch size. The model runs in eval mode
    (BatchNorm running averages, no dropout). Build it with
    :func:`make_evaluator`. The batches' ``label`` must be integer class labels
    of shape ``(batch,)`` (one-hot labels are refused with a ``ValueError``).
    """

    def __init__(self, parts: ModelParts, data: BatchSource, mesh: Mesh, cache: bool) -> None:
        warn_if_training_pipeline(data, "evaluation data", stacklevel=4)
        self.parts = parts
        self.mesh = mesh
        self.data = data
        self._step = make_eval_step(parts, mesh)
        self._rep = replicated(mesh)
        self._model_state = to_global(parts.initial_model_state, self._rep)
        self._cached = ([shard_batch(b, mesh) for b in _checked(data.epoch(0))] if cache
                        else None)

    def _batches(self) -> Iterator[dict[str, jax.Array]]:
        if self._cached is not None:
            return iter(self._cached)
        return (shard_batch(b, self.mesh) for b in _checked(self.data.epoch(0)))

    def run(self, params: PyTree, model_state: PyTree) -> dict[str, float]:
        """Evaluates device-resident ``params`` and ``model_state`` (what :func:`fit` holds)."""
        totals = zero_totals(self.mesh)
        for batch in self._batches():
            totals = self._step(params, model_state, totals, batch)
        loss_sum, correct, count = (
            np.asarray(x).item() for x in jax.device_get((totals.loss_sum, totals.correct, totals.count))
        )
        if count == 0:
            raise ValueError("the evaluation data yielded no example")
        return {"loss": loss_sum / count, "accuracy": correct / count, "count": int(count)}

    def __call__(self, params: PyTree | None = None, model_state: PyTree | None = None
                 ) -> dict[str, float]:
        """``{'loss', 'accuracy', 'count'}`` of the model with ``params`` (a plain dict).

        Args:
          params: the ``nnx.Param`` values as a plain nested dict (e.g.
            ``nnx.to_pure_dict(nnx.state(model, nnx.Param))`` or a pruned copy
            of it); ``None``: the model's own.
          model_state: the other variables (BatchNorm statistics) as a plain
            dict; ``None``: the model's own.
        """
        params = self.parts.initial_params if params is None else params
        state = (self._model_state if model_state is None
                 else to_global(model_state, self._rep))
        return self.run(to_global(params, self._rep), state)

    def accuracy(self, params: PyTree) -> float:
        """The accuracy alone: a ``params -> float`` for :func:`sparsejax.pruning.one_shot_curve`."""
        return self(params)["accuracy"]


def make_evaluator(model: nnx.Module, data: BatchSource, *, mesh: Mesh | None = None,
                   cache: bool = True) -> Evaluator:
    """An :class:`Evaluator` of ``model``'s architecture on ``data``, compiled once.

    Args:
      model: a Flax NNX classifier returning logits; its non-parameter
        variables (BatchNorm statistics) are the ones used, and it is not changed.
      data: eval batches (``train=False`` in :func:`sparsejax.data.batches`),
        with integer class labels of shape ``(batch,)``.
      mesh: the device mesh (default: all devices, :func:`sparsejax.train.data_mesh`).
      cache: keep the sharded batches on the devices, so repeated evaluations
        cost only the forward passes (``False`` for data that does not fit).

    Returns:
      The evaluator: ``evaluator(params)`` gives ``{'loss', 'accuracy', 'count'}``
      and ``evaluator.accuracy(params)`` the accuracy alone.

    Raises:
      ValueError: (with ``cache=True`` here, otherwise when evaluating) if a
        batch's ``label`` is not integer class labels of shape ``(batch,)``.

    Example:
      >>> import jax
      >>> from flax import nnx
      >>> import sparsejax as sj
      >>> from sparsejax import data
      >>> from sparsejax.models import create
      >>> from sparsejax.train import make_evaluator
      >>> model = create('mlp', hidden=(8,), rngs=0)
      >>> test = data.batches(data.load('synthetic', 'test', num_examples=100), 64, train=False)
      >>> evaluator = make_evaluator(model, test)
      >>> evaluator()['count']
      100
      >>> params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
      >>> pruned, _ = sj.pruning.prune(params, 0.5)
      >>> 0.0 <= evaluator.accuracy(pruned) <= 1.0
      True
    """
    return Evaluator(split_model(model), data, mesh or data_mesh(), cache)


def evaluate(model: nnx.Module, data: BatchSource, *, mesh: Mesh | None = None) -> dict[str, float]:
    """Loss and accuracy of ``model`` (in eval mode) on every example of ``data``, once.

    The same figures as :func:`make_evaluator` (see :class:`Evaluator` for the
    formula); use that to evaluate one architecture many times.

    Args:
      model: a Flax NNX classifier returning logits; it is not changed.
      data: eval batches (``train=False`` in :func:`sparsejax.data.batches`).
      mesh: the device mesh (default: all devices).

    Returns:
      ``{'loss': ..., 'accuracy': ..., 'count': number of examples}``.

    Example:
      >>> from sparsejax import data
      >>> from sparsejax.models import create
      >>> from sparsejax.train import evaluate
      >>> test = data.batches(data.load('synthetic', 'test', num_examples=100), 64, train=False)
      >>> evaluate(create('mlp', hidden=(8,), rngs=0), test)['count']
      100
    """
    return make_evaluator(model, data, mesh=mesh, cache=False)()
