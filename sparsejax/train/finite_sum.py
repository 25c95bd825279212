r"""Finite-sum Frank-Wolfe training of a Flax NNX classifier on a dataset held in memory.

The finite-sum loops of :mod:`sparsejax.optim.fw_finite_sum` (SVRF,
SAGA-FW, minibatch SFW and One-Shot FW) work on a per-example loss
``loss_fn(params, batch)`` over plain-dict params and a dataset given as
arrays. This module is the bridge from a model and a :mod:`sparsejax.data`
dataset:

* :func:`classifier_loss`: the per-example cross-entropy of an NNX
  classifier, :math:`f_i(\theta) = \log\sum_k e^{z_k(x_i;\theta)} - z_{y_i}(x_i;\theta)`;
* :func:`fit_finite_sum`: one method run on the training set (every
  parameter in SFW pruning's K-sparse polytope), recording the training loss
  :math:`f(\theta) = \frac1n\sum_i f_i(\theta)` and the test accuracy against
  the per-sample gradient evaluations spent.

Only networks whose per-example losses do not depend on the rest of the batch
or on random draws are accepted: with BatchNorm in training mode
:math:`f_i` depends on the batch statistics, and with dropout it is random, so
neither is a finite sum :math:`\frac1n\sum_i f_i` (and SVRF's and SAGA-FW's
variance reduction, which re-evaluates :math:`\nabla f_i` at stored points,
would not apply).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import numpy as np
import optax
from flax import nnx

from sparsejax import constraints as C
from sparsejax._validation import check_number
from sparsejax.data import Dataset, batches, normalize
from sparsejax.optim.fw_finite_sum import METHODS, run_method
from sparsejax.train.connectivity import has_batch_stats
from sparsejax.train.evaluation import Evaluator, make_evaluator
from sparsejax.train.step import split_model
from sparsejax.tree import PyTree

__all__ = ["FiniteSumResult", "classifier_loss", "dataset_arrays", "fit_finite_sum"]


def _check_finite_sum_model(model: nnx.Module) -> None:
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model must be a flax.nnx.Module, got {type(model).__name__}")
    if has_batch_stats(model):
        raise ValueError(
            "the model has BatchNorm statistics (nnx.BatchStat): in training mode each example's "
            "loss depends on the rest of its batch, so the loss is not a finite sum of "
            "per-example losses; use a model without BatchNorm")
    dropout = [path for path, m in nnx.iter_modules(model)
               if isinstance(m, nnx.Dropout) and m.rate > 0]
    if dropout:
        raise ValueError(
            f"the model has dropout (rate > 0 at {dropout[:3]}): its per-example losses are "
            "random, not a finite sum; build it with dropout 0")


def classifier_loss(model: nnx.Module) -> Callable[[PyTree, dict], jax.Array]:
    r"""``(params, batch) -> per-example cross-entropy`` of an NNX classifier with plain-dict params.

    .. math::

      f_i(\theta) = \log \sum_{k} e^{z_k(x_i;\,\theta)} - z_{y_i}(x_i;\,\theta),

    with :math:`z(x;\theta)` the logits of ``model`` at the params
    :math:`\theta` (a plain nested dict like
    ``nnx.to_pure_dict(nnx.state(model, nnx.Param))``), ``batch['image']`` the
    inputs and ``batch['label']`` the integer labels. The model is split once
    (:func:`sparsejax.train.split_model`, as the trainer does); its other
    variables are held at their current values, and ``model`` is not changed.
    The result is the ``loss_fn`` of :mod:`sparsejax.optim.fw_finite_sum`.

    Args:
      model: a Flax NNX classifier returning logits, without BatchNorm and
        without dropout (their per-example losses are not a finite sum).

    Returns:
      The per-example loss, a vector with the batch's leading size.

    Raises:
      ValueError: the model has BatchNorm statistics or dropout with rate > 0.

    Example:
      >>> import numpy as np
      >>> from flax import nnx
      >>> from sparsejax.models import create
      >>> from sparsejax.train import classifier_loss
      >>> model = create('mlp', hidden=(8,), rngs=0)
      >>> loss = classifier_loss(model)
      >>> batch = {'image': np.zeros((3, 28, 28, 1), np.float32), 'label': np.array([0, 1, 2])}
      >>> loss(nnx.to_pure_dict(nnx.state(model, nnx.Param)), batch).shape
      (3,)

    References:
      Reddi, Sra, Póczos, Smola, *Stochastic Frank-Wolfe Methods for
      Nonconvex Optimization*, Allerton 2016 (the finite-sum setting).
    """
    _check_finite_sum_model(model)
    parts = split_model(model)
    rngs = parts.rng_state(0, 0)
    model_state = parts.initial_model_state

    def loss(params: PyTree, batch: dict) -> jax.Array:
        module = parts.merge(params, model_state, rngs, train=True)
        return optax.softmax_cross_entropy_with_integer_labels(module(batch["image"]), batch["label"])

    return loss


def dataset_arrays(dataset: Dataset) -> dict[str, np.ndarray]:
    """A whole dataset in memory as the trainer sees it: ``{'image': float32, 'label': int32}``.

    The images are normalised as :func:`sparsejax.data.batches` does
    (:func:`sparsejax.data.normalize` with the dataset's mean and std), without augmentation.

    Args:
      dataset: a :class:`sparsejax.data.Dataset`.

    Returns:
      ``{'image': float32 [N, H, W, C], 'label': int32 [N]}``.

    Example:
      >>> from sparsejax import data
      >>> from sparsejax.train import dataset_arrays
      >>> d = dataset_arrays(data.load('synthetic', 'train', num_examples=5))
      >>> d['image'].shape, d['image'].dtype, d['label'].dtype
      ((5, 28, 28, 1), dtype('float32'), dtype('int32'))
    """
    images, labels = dataset.arrays()
    return {"image": normalize(images, dataset.mean, dataset.std),
            "label": np.asarray(labels, np.int32)}


class FiniteSumResult(NamedTuple):
    """What :func:`fit_finite_sum` returns.

    Attributes:
      params: the last iterate (a plain nested dict).
      evaluations: per-sample gradient evaluations at each recorded iterate.
      train_loss: the full training loss :math:`f` at each recorded iterate.
      test_accuracy: the test accuracy at each recorded iterate (empty without test data).
      steps: the Frank-Wolfe steps taken (LMO calls).
      constraints: the constraint pytree used.
    """

    params: PyTree
    evaluations: list[int]
    train_loss: list[float]
    test_accuracy: list[float]
    steps: int
    constraints: PyTree


def fit_finite_sum(
    model: nnx.Module,
    train: Dataset,
    method: str,
    *,
    budget: int,
    test: Dataset | None = None,
    constraints: PyTree | None = None,
    k: int = C.SFW_K,
    k_frac: float = C.SFW_K_FRAC,
    tau: float = 1.0,
    batch_size: int = 64,
    svrf_batch_scale: float = 96.0,
    saga_batch_size: int | None = None,
    learning_rate: optax.ScalarOrSchedule | None = None,
    seed: int = 0,
    record_at: Sequence[int] = (),
    eval_batch_size: int = 1000,
) -> FiniteSumResult:
    r"""Trains an NNX classifier with a finite-sum Frank-Wolfe method inside K-sparse polytopes.

    Minimises the training cross-entropy as a finite sum,

    .. math::

      \min_{\theta \in \mathcal{C}} f(\theta) = \frac1n \sum_{i=1}^n f_i(\theta), \qquad
      \mathcal{C} = \prod_\ell \{W_\ell : \|W_\ell\|_1 \le K_\ell\, r_\ell,\
      \|W_\ell\|_\infty \le r_\ell\},

    with :math:`f_i` from :func:`classifier_loss` and, unless ``constraints``
    is given, SFW pruning's polytopes
    (:func:`sparsejax.constraints.sfw_pruning_constraints`) on every leaf:
    :math:`K_\ell = \min(\max(k, \lfloor k_{\rm frac} n_\ell\rfloor), n_\ell)`,
    :math:`r_\ell = \tau\,\|W_\ell^{\rm init}\|_2/\sqrt{K_\ell}`, the norms
    those of the model's own params (one draw). The run starts from those
    params made feasible (:func:`sparsejax.constraints.make_feasible`) and
    calls :func:`sparsejax.optim.fw_finite_sum.run_method` (``'sfw'``,
    ``'one_shot_fw'``, ``'svrf'`` or ``'saga_fw'`` with their analyses'
    default constants) on the whole training set held in memory
    (:func:`dataset_arrays`), until ``budget`` per-sample gradients are
    spent. At each recorded iterate the exact training loss and test accuracy
    are computed by :func:`sparsejax.train.make_evaluator` (one compilation
    each). ``model`` is not changed.

    ``tau`` defaults to 1 (each polytope's vertices have the L2 norm of the
    initial tensor), not the registry's ``sfw`` value 15: the open-loop
    rate's first step :math:`\gamma_0 = 1` (and SVRF's start
    :math:`w_0 = \mathrm{LMO}(\cdot)`) lands on a vertex, and at
    :math:`\tau = 15` that is every layer at 15 times its initial norm.

    Args:
      model: a Flax NNX classifier without BatchNorm or dropout.
      train: the training set (the :math:`n` examples of the sum).
      method: ``'sfw'``, ``'one_shot_fw'``, ``'svrf'`` or ``'saga_fw'``.
      budget: per-sample gradient evaluations allowed.
      test: optional test set for the accuracy.
      constraints: a constraint pytree (default: the K-sparse polytopes above).
      k: the floor of K (SFW pruning's default 10).
      k_frac: K as a fraction of each tensor (default 0.05).
      tau: :math:`\tau > 0`, the polytopes' scale.
      batch_size: minibatch of ``'sfw'`` and ``'one_shot_fw'``.
      svrf_batch_scale: SVRF's :math:`c` in :math:`m_k = \lceil c(k+1)\rceil` (analysis: 96).
      saga_batch_size: SAGA-FW's :math:`b` (default :math:`\lceil n^{2/3}\rceil`).
        SAGA-FW keeps an :math:`n \times d` table of per-sample gradients.
      learning_rate: ``None``: each method's convex open-loop rate
        (:math:`2/(t+2)`, One-Shot FW :math:`2/(t+8)`, SVRF :math:`2/(k+1)`);
        otherwise the step size of every method (e.g. a constant, as the
        nonconvex analyses of Reddi et al. use).
      seed: seed of the sampling.
      record_at: evaluation counts at which the iterate is evaluated (the
        start and the end always are).
      eval_batch_size: batch size of the evaluations (rounded up to a multiple
        of the device count; the last batch is padded, padding does not count).

    Returns:
      A :class:`FiniteSumResult`.

    Raises:
      ValueError: an unknown method, a bad number, or a model with BatchNorm or dropout.

    Example:
      >>> from sparsejax import data
      >>> from sparsejax.models import create
      >>> from sparsejax.train import fit_finite_sum
      >>> model = create('mlp', hidden=(8,), rngs=0)
      >>> train = data.load('synthetic', 'train', num_examples=64)
      >>> res = fit_finite_sum(model, train, 'svrf', budget=640, svrf_batch_scale=4.0)
      >>> res.evaluations[-1] <= 640, res.train_loss[-1] < res.train_loss[0]
      (True, True)

    References:
      Hazan and Luo, ICML 2016 (SVRF); Reddi, Sra, Póczos, Smola, Allerton
      2016 (SFW, SAGA-FW); Chen et al., ICML 2018 (One-Shot FW); Miao et al.,
      *Learning Pruning-Friendly Networks via Frank-Wolfe*, ICLR 2022 (the
      K-sparse polytopes).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    check_number("tau", tau, gt=0)
    check_number("eval_batch_size", eval_batch_size, ge=1, integer=True)
    loss_fn = classifier_loss(model)
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    if constraints is None:
        constraints = C.sfw_pruning_constraints(lambda _: params, value=tau, k=k, k_frac=k_frac,
                                                num_samples=1)
    params = C.make_feasible(params, constraints)
    run = run_method(method, loss_fn, params, dataset_arrays(train), constraints, budget=budget,
                     batch_size=batch_size, svrf_batch_scale=svrf_batch_scale,
                     saga_batch_size=saga_batch_size, learning_rate=learning_rate, seed=seed,
                     record_at=record_at)
    devices = jax.device_count()  # the evaluators shard each batch over all devices

    def evaluator(dataset: Dataset) -> Evaluator:
        size = -(-min(eval_batch_size, len(dataset)) // devices) * devices
        return make_evaluator(model, batches(dataset, size, train=False))

    train_eval = evaluator(train)
    losses = [train_eval(p)["loss"] for p in run.iterates]
    accuracy: list[float] = []
    if test is not None:
        test_eval = evaluator(test)
        accuracy = [test_eval.accuracy(p) for p in run.iterates]
    return FiniteSumResult(run.params, run.evaluations, losses, accuracy, run.steps, constraints)
