r"""Mode connectivity of Flax models: train a Bézier curve between two trained nets, evaluate it.

The curve math is :mod:`sparsejax.directional.curves`; this module runs it on
Flax NNX classifiers with the library's trainer:

* :func:`train_curve` trains the control point :math:`\theta_c` of
  :math:`\theta(t) = (1-t)^2 w_1 + 2t(1-t)\theta_c + t^2 w_2` by minimising
  :math:`\mathbb E_{t\sim U[0,1]} L(\theta(t))` with any Optax optimizer,
  through :func:`sparsejax.train.fit`: data-parallel over every device,
  checkpointed, resumable, one :math:`t` per step from ``(seed, step)``. It
  wraps the net in a :class:`BezierCurveModel` whose only ``nnx.Param`` s are
  :math:`\theta_c` (paths ``control/...``); :math:`w_1, w_2` are fixed
  :class:`CurveAnchor` variables.
* :func:`evaluate_path` gives the loss and error of the net along the curve
  (or the straight line) on any data, and :func:`evaluate_plane` on a grid of
  the plane through :math:`w_1, \theta_c, w_2`. Where the net has BatchNorm,
  its statistics are recomputed at every evaluated point from training
  batches (:func:`recompute_batch_stats`), the standard practice of Garipov
  et al.: statistics accumulated while training the curve belong to no single
  point of it.
* :func:`classifier_loss` and :func:`collect_examples` turn a net and a data
  pipeline into the per-example loss and arrays of
  :class:`sparsejax.directional.DatasetLoss` (for the Hessian of a trained run).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from sparsejax.directional import curves
from sparsejax.directional._util import check_same_structure
from sparsejax.train.distributed import DATA_AXIS, data_mesh
from sparsejax.train.evaluation import BatchSource, make_evaluator, warn_if_training_pipeline
from sparsejax.train.loop import FitResult, fit
from sparsejax.train.step import replicated, shard_batch, split_model, to_global
from sparsejax.tree import PyTree

Batches = BatchSource

__all__ = [
    "BatchStats",
    "BezierCurveModel",
    "CurveAnchor",
    "CurveFit",
    "CurveTime",
    "PathEvaluator",
    "PlaneResult",
    "classifier_loss",
    "collect_examples",
    "evaluate_path",
    "evaluate_plane",
    "has_batch_stats",
    "recompute_batch_stats",
    "train_curve",
]


class CurveAnchor(nnx.Variable):
    """A fixed end point of a curve: carried and checkpointed, never trained."""


class CurveTime(nnx.Variable):
    """The :math:`t` at which a :class:`BezierCurveModel` in eval mode evaluates its curve."""


def _params_of(net: nnx.Module) -> PyTree:
    return nnx.to_pure_dict(nnx.state(net, nnx.Param))


def _copy_with(net: nnx.Module, params: PyTree, kind: type | None) -> nnx.Module:
    """A copy of ``net`` whose ``nnx.Param`` values are ``params`` (re-typed to ``kind`` if given)."""
    graphdef, state, rest = nnx.split(net, nnx.Param, ...)
    state = jax.tree.map(lambda x: x, state)
    nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, params))
    if kind is not None:
        state = jax.tree.map(lambda v: kind(v.get_value()), state,
                             is_leaf=lambda x: isinstance(x, nnx.Variable))
    return nnx.merge(graphdef, state, rest, copy=True)


class BezierCurveModel(nnx.Module):
    r"""A network evaluated on the quadratic Bézier curve between two of its parameter sets.

    .. math::

      f_{\text{curve}}(x) = f\big(x;\ \theta(t)\big), \qquad
      \theta(t) = (1-t)^2 w_1 + 2t(1-t)\,\theta_c + t^2 w_2,

    with :math:`t \sim U[0,1]` drawn from the ``curve`` random stream at every
    call in training mode (the trainer sets its key from ``(seed, step)``:
    one :math:`t` per step, the same after a resume) and :math:`t` =
    ``self.t`` in eval mode. The trainable ``nnx.Param`` s are those of
    ``self.control`` (:math:`\theta_c`, paths ``control/...``); ``self.start``
    and ``self.end`` hold :math:`w_1, w_2` as :class:`CurveAnchor` variables.
    BatchNorm layers use and update the statistics of ``self.control`` (for
    evaluation, :func:`evaluate_path` recomputes them at each :math:`t`).

    Args:
      net: the network (any Flax NNX module; not modified).
      start: :math:`w_1`, a pure dict like ``nnx.to_pure_dict(nnx.state(net, nnx.Param))``.
      end: :math:`w_2`, likewise.
      control: the initial :math:`\theta_c` (default: the midpoint, a straight curve).
      seed: seed of the ``curve`` stream (the trainer resets it every step).
      t: the :math:`t` used in eval mode.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from flax import nnx
      >>> from sparsejax.models import create
      >>> from sparsejax.train.connectivity import BezierCurveModel
      >>> net = create('mlp', hidden=(4,), rngs=0)
      >>> w1 = jax.tree.map(jnp.zeros_like, nnx.to_pure_dict(nnx.state(net, nnx.Param)))
      >>> curve = BezierCurveModel(net, w1, nnx.to_pure_dict(nnx.state(net, nnx.Param)), t=1.0)
      >>> curve.eval()
      >>> bool(jnp.allclose(curve(jnp.ones((2, 28, 28, 1))), net(jnp.ones((2, 28, 28, 1)))))
      True

    References:
      Garipov, Izmailov, Podoprikhin, Vetrov and Wilson, *Loss Surfaces, Mode
      Connectivity, and Fast Ensembling of DNNs*, NeurIPS 2018.
    """

    def __init__(self, net: nnx.Module, start: PyTree, end: PyTree, control: PyTree | None = None,
                 *, seed: int = 0, t: float = 0.5) -> None:
        template = _params_of(net)
        check_same_structure(template, start, "the net's params", "start")
        check_same_structure(template, end, "the net's params", "end")
        if control is None:
            control = curves.init_control(start, end)
        check_same_structure(template, control, "the net's params", "control")
        self.control = _copy_with(net, control, None)
        self.start = _copy_with(net, start, CurveAnchor)
        self.end = _copy_with(net, end, CurveAnchor)
        self.rngs = nnx.Rngs(curve=seed)
        self.t = CurveTime(jnp.asarray(t, jnp.float32))
        self.deterministic = False  # set by .train() / .eval()

    def point(self, t: Any) -> PyTree:
        r""":math:`\theta(t)` as a pure dict of the net's params."""
        a = nnx.to_pure_dict(nnx.state(self.start, CurveAnchor))
        b = nnx.to_pure_dict(nnx.state(self.end, CurveAnchor))
        c = nnx.to_pure_dict(nnx.state(self.control, nnx.Param))
        return curves.bezier(a, c, b, t)

    def __call__(self, x: jax.Array, **kwargs: Any) -> jax.Array:
        """The net's output at :math:`\\theta(t)` (``kwargs`` go to the net)."""
        t = self.t.get_value() if self.deterministic else jax.random.uniform(self.rngs.curve())
        graphdef, params, rest = nnx.split(self.control, nnx.Param, ...)
        state = jax.tree.map(lambda v: v, params)
        nnx.replace_by_pure_dict(state, self.point(t))
        module = nnx.merge(graphdef, state, rest)
        out = module(x, **kwargs)
        nnx.update(self.control, nnx.state(module, nnx.Not(nnx.Param)))  # BatchNorm statistics
        return out


@dataclasses.dataclass
class CurveFit:
    """What :func:`train_curve` returns.

    Attributes:
      control: the trained :math:`\\theta_c`, a pure dict like the net's params.
      result: the trainer's :class:`~sparsejax.train.FitResult` (history,
        workdir, wall time; ``result.model`` is the :class:`BezierCurveModel`).
    """

    control: PyTree
    result: FitResult


def train_curve(
    net: nnx.Module,
    start: PyTree,
    end: PyTree,
    optimizer: optax.GradientTransformation,
    train_data: Batches,
    *,
    epochs: int,
    control: PyTree | None = None,
    workdir: str | os.PathLike | None = None,
    config: Mapping[str, Any] | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = print,
    progress: bool | None = None,
    mesh: Mesh | None = None,
    checkpoint_every_steps: int | None = None,
    keep_checkpoints: int = 3,
) -> CurveFit:
    r"""Trains the control point of a Bézier curve between two trained nets, with the library's trainer.

    .. math::

      \min_{\theta_c}\ \mathbb E_{t \sim U[0,1]}\, L\big(\theta(t)\big), \qquad
      \theta(t) = (1-t)^2 w_1 + 2t(1-t)\,\theta_c + t^2 w_2,

    by stochastic gradient steps of ``optimizer``, one :math:`t` per batch
    (Garipov et al.), through :func:`sparsejax.train.fit` on a
    :class:`BezierCurveModel`: data-parallel over the mesh, the masked
    cross-entropy of the trainer, checkpoints in ``workdir`` and resume
    (the same call after an interruption continues; after a finished run it
    returns the stored result). The per-epoch ``train_loss`` in the history is
    the running estimate of the objective.

    Args:
      net: the network of both end points (a Flax NNX classifier; not modified).
      start: :math:`w_1`, a pure dict of the net's params.
      end: :math:`w_2`, likewise.
      optimizer: any Optax transform (it sees params ``{'control': ...}``).
      train_data: training batches (:func:`sparsejax.data.batches`, ``train=True``).
      epochs: passes over ``train_data``.
      control: the initial :math:`\theta_c` (default: the midpoint).
      workdir: checkpoints and metrics (``None``: nothing kept).
      config: the run's JSON-able identity (store the end points' identities
        in it: a workdir holding another config is refused).
      seed: seed of the :math:`t` draws and of dropout.
      log: per-epoch lines (``None``: silent).
      progress: a progress bar (``None``: when stderr is a terminal).
      mesh: the device mesh (default: every device).
      checkpoint_every_steps: also checkpoint every this many steps.
      keep_checkpoints: checkpoints kept.

    Returns:
      A :class:`CurveFit`.

    Raises:
      ValueError: if the three parameter sets do not match the net, and as
        :func:`~sparsejax.train.fit` does (workdirs of another run, batch sizes).
      TrainingDivergedError: if the loss becomes NaN or infinite.

    Example:
      >>> import optax
      >>> from flax import nnx
      >>> from sparsejax import data
      >>> from sparsejax.models import create
      >>> from sparsejax.train.connectivity import train_curve
      >>> net = create('mlp', hidden=(8,), rngs=0)
      >>> w1 = nnx.to_pure_dict(nnx.state(net, nnx.Param))
      >>> w2 = nnx.to_pure_dict(nnx.state(create('mlp', hidden=(8,), rngs=1), nnx.Param))
      >>> train = data.batches(data.load('synthetic', 'train', num_examples=256), 64, train=True)
      >>> fit = train_curve(net, w1, w2, optax.sgd(0.05), train, epochs=1, log=None)
      >>> sorted(fit.control['layers'][0]), len(fit.result.history)
      (['bias', 'kernel'], 1)

    References:
      Garipov, Izmailov, Podoprikhin, Vetrov and Wilson, *Loss Surfaces, Mode
      Connectivity, and Fast Ensembling of DNNs*, NeurIPS 2018; Chao, Wang,
      Xing and Cheng, *Directional Pruning of Deep Neural Networks*, NeurIPS
      2020 (Figures 1-4: curves between the SGD and gRDA minima).
    """
    model = BezierCurveModel(net, start, end, control, seed=seed)
    identity = {"curve": "quadratic_bezier", **dict(config or {})}
    result = fit(model, optimizer, train_data, epochs=epochs, workdir=workdir, config=identity,
                 seed=seed, log=log, progress=progress, mesh=mesh, sparsity_mask=None,
                 checkpoint_every_steps=checkpoint_every_steps, keep_checkpoints=keep_checkpoints)
    return CurveFit(result.params["control"], result)


# --- evaluation -------------------------------------------------------------------------------


def has_batch_stats(net: nnx.Module) -> bool:
    """Whether ``net`` has BatchNorm statistics (``nnx.BatchStat`` variables).

    Example:
      >>> from sparsejax.models import create
      >>> from sparsejax.train.connectivity import has_batch_stats
      >>> has_batch_stats(create('mlp', hidden=(4,), rngs=0))
      False
    """
    return bool(jax.tree.leaves(nnx.state(net, nnx.BatchStat)))


def _with_zero_momentum(net: nnx.Module) -> nnx.Module:
    """A copy of ``net`` whose BatchNorm layers keep only the last batch's statistics."""
    copy = nnx.merge(*nnx.split(net))
    for _, module in nnx.iter_modules(copy):
        if isinstance(module, nnx.BatchNorm):
            module.momentum = 0.0
    return copy


class PathEvaluator:
    """Loss and error of a net at any params, with BatchNorm statistics recomputed (compiled once).

    ``evaluator(params)`` returns ``{'<name>_loss': ..., '<name>_error': ...}``
    for every dataset of ``eval_data`` (exact over each dataset: padding rows
    do not count; one :func:`sparsejax.train.make_evaluator` per dataset,
    compiled once, its batches kept on the devices). When the net has
    BatchNorm, its statistics are first recomputed at ``params`` by
    :func:`recompute_batch_stats` from ``bn_data``.

    Args:
      net: the network.
      eval_data: ``{name: batches}`` (``train=False`` pipelines).
      bn_data: training batches for the BatchNorm statistics (``train=True``:
        full batches, no padding; required when the net has BatchNorm).
      max_bn_batches: use at most this many of them (default: one epoch).
      mesh: the device mesh (default: every device).

    Example:
      >>> from sparsejax import data
      >>> from flax import nnx
      >>> from sparsejax.models import create
      >>> from sparsejax.train.connectivity import PathEvaluator
      >>> net = create('mlp', hidden=(4,), rngs=0)
      >>> test = data.batches(data.load('synthetic', 'test', num_examples=64), 32, train=False)
      >>> ev = PathEvaluator(net, {'test': test})
      >>> sorted(ev(nnx.to_pure_dict(nnx.state(net, nnx.Param))))
      ['test_error', 'test_loss']
    """

    def __init__(self, net: nnx.Module, eval_data: Mapping[str, Batches], *,
                 bn_data: Batches | None = None, max_bn_batches: int | None = None,
                 mesh: Mesh | None = None) -> None:
        if not eval_data:
            raise ValueError("eval_data names no dataset: pass {'train': ..., 'test': ...}")
        self.mesh = mesh or data_mesh()
        self.evaluators = {name: make_evaluator(net, d, mesh=self.mesh)
                           for name, d in eval_data.items()}
        self.bn = has_batch_stats(net)
        self.rep = replicated(self.mesh)
        if self.bn:
            if bn_data is None:
                raise ValueError(
                    "the net has BatchNorm: pass bn_data= (training batches) to recompute its "
                    "statistics at every evaluated point")
            self.recompute = BatchStats(net, bn_data, max_batches=max_bn_batches, mesh=self.mesh)

    def batch_stats(self, params: PyTree) -> PyTree | None:
        """The recomputed BatchNorm statistics at ``params`` (``None`` without BatchNorm)."""
        return self.recompute(params) if self.bn else None

    def __call__(self, params: PyTree) -> dict[str, float]:
        state = self.batch_stats(params)
        if state is not None:
            state = jax.device_get(state)
        out = {}
        for name, evaluator in self.evaluators.items():
            r = evaluator(params, state)  # state None: the net's own (no BatchNorm)
            out[f"{name}_loss"] = r["loss"]
            out[f"{name}_error"] = 1.0 - r["accuracy"]
        return out


def _make_stats_step(parts: Any, mesh: Mesh) -> Callable:
    rep = replicated(mesh)
    data = NamedSharding(mesh, P(DATA_AXIS))

    def stats_fn(params, model_state, batch, index):
        module = parts.merge(params, model_state, parts.rng_state(0, index), train=True)
        module(batch["image"])
        return parts.model_state_of(module)

    return jax.jit(stats_fn, in_shardings=(rep, rep, data, rep), out_shardings=rep)


def _check_no_padding(batch: Mapping[str, Any], index: int) -> None:
    """Raises ``ValueError`` if a BatchNorm-statistics batch has padding rows (``mask < 1``)."""
    mask = batch.get("mask")
    if mask is None:
        return
    mask = np.asarray(mask)
    if mask.size and bool(np.any(mask < 1)):
        raise ValueError(
            f"bn_data batch {index} has padding rows ({int(np.sum(mask < 1))} of {mask.size} with "
            "mask < 1, as the last batch of an evaluation pipeline): they would enter the "
            "BatchNorm statistics. Pass a training pipeline, "
            "sparsejax.data.batches(..., train=True), which yields only full batches")


def _average_stats(step: Callable, parts: Any, params: PyTree, bn_data: Batches,
                   max_batches: int | None, mesh: Mesh) -> PyTree:
    template = to_global(parts.initial_model_state, replicated(mesh))
    total, count = None, 0
    batches = iter(bn_data.epoch(0))
    try:
        for i, batch in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            _check_no_padding(batch, i)
            stats = step(params, template, shard_batch(batch, mesh), jnp.int32(i))
            total = stats if total is None else jax.tree.map(jnp.add, total, stats)
            count += 1
    finally:
        getattr(batches, "close", lambda: None)()  # stops a pipeline's prefetching
    if count == 0:
        raise ValueError("bn_data yields no batch: the BatchNorm statistics cannot be recomputed")
    return jax.tree.map(lambda x: x / count, total)


def recompute_batch_stats(net: nnx.Module, params: PyTree, bn_data: Batches, *,
                          max_batches: int | None = None, mesh: Mesh | None = None) -> PyTree:
    r"""BatchNorm statistics of ``net`` at ``params``, recomputed from training batches.

    .. math::

      \mu = \frac1B \sum_{b=1}^B \mu_b, \qquad \sigma^2 = \frac1B \sum_{b=1}^B \sigma_b^2,

    the mean over ``B`` batches of each BatchNorm layer's batch statistics in
    training mode (the cumulative average PyTorch's ``momentum=None`` gives,
    which Garipov et al.'s ``update_bn`` uses), every layer fed by the
    previous layers at ``params`` in training mode. Computed on a copy whose
    BatchNorm momentum is 0, so each forward pass leaves exactly its batch's
    statistics; every non-parameter variable is averaged that way.

    Args:
      net: the network.
      params: the params (a pure dict like the net's).
      bn_data: training batches (full batches, no padding: ``train=True``).
      max_batches: use at most this many batches (default: one epoch).
      mesh: the device mesh.

    Returns:
      The model state (a pure dict, as the trainer's ``model_state``).

    Raises:
      ValueError: if ``bn_data`` yields no batch, or a batch with padding rows
        (``mask < 1``, as an evaluation pipeline's last batch).

    Example:
      >>> from flax import nnx
      >>> from sparsejax import data
      >>> from sparsejax.train.connectivity import recompute_batch_stats
      >>> class Net(nnx.Module):
      ...   def __init__(self):
      ...     self.dense, self.bn = nnx.Linear(4, 3, rngs=nnx.Rngs(0)), nnx.BatchNorm(3, rngs=nnx.Rngs(0))
      ...   def __call__(self, x):
      ...     return self.bn(self.dense(x.reshape(len(x), -1)))
      >>> net = Net()
      >>> train = data.batches(data.load('synthetic', 'train', num_examples=64, image_shape=(2, 2, 1)),
      ...                      32, train=True)
      >>> stats = recompute_batch_stats(net, nnx.to_pure_dict(nnx.state(net, nnx.Param)), train)
      >>> sorted(stats['bn'])
      ['mean', 'var']
    """
    if not has_batch_stats(net):
        return split_model(net).initial_model_state
    return BatchStats(net, bn_data, max_batches=max_batches, mesh=mesh)(params)


class BatchStats:
    """:func:`recompute_batch_stats` for one net and one dataset, compiled once for many params.

    ``BatchStats(net, bn_data, max_batches=N)(params)`` gives what
    ``recompute_batch_stats(net, params, bn_data, max_batches=N)`` gives, with
    the statistics step compiled on the first call and reused: for evaluating
    many pruned or interpolated weights of one net.

    Args:
      net: a network with BatchNorm statistics.
      bn_data: training batches (full batches, no padding: ``train=True``).
      max_batches: use at most this many batches (default: one epoch).
      mesh: the device mesh (default: every device).

    Raises:
      ValueError: if ``net`` has no BatchNorm statistics; when called, if
        ``bn_data`` yields no batch or a batch with padding rows (``mask < 1``).

    Example:
      >>> import jax
      >>> from flax import nnx
      >>> from sparsejax import data
      >>> from sparsejax.models import create
      >>> from sparsejax.train.connectivity import BatchStats
      >>> net = create('resnet20', input_shape=(8, 8, 3), rngs=0)
      >>> train = data.batches(data.load('synthetic', 'train', num_examples=64,
      ...                                image_shape=(8, 8, 3)), 32, train=True)
      >>> stats_at = BatchStats(net, train, max_batches=1)
      >>> params = nnx.to_pure_dict(nnx.state(net, nnx.Param))
      >>> halved = jax.tree.map(lambda w: w / 2, params)
      >>> a, b = stats_at(params), stats_at(halved)   # one compiled step for both
      >>> len(jax.tree.leaves(a)) == len(jax.tree.leaves(b)), stats_at.step._cache_size()
      (True, 1)
    """

    def __init__(self, net: nnx.Module, bn_data: Batches, *, max_batches: int | None = None,
                 mesh: Mesh | None = None) -> None:
        if not has_batch_stats(net):
            raise ValueError("the net has no BatchNorm statistics to recompute")
        self.mesh = mesh or data_mesh()
        self.bn_data, self.max_batches = bn_data, max_batches
        self.parts = split_model(_with_zero_momentum(net))
        self.step = _make_stats_step(self.parts, self.mesh)

    def __call__(self, params: PyTree) -> PyTree:
        """The model state (a pure dict) with the statistics recomputed at ``params``."""
        return _average_stats(self.step, self.parts, to_global(params, replicated(self.mesh)),
                              self.bn_data, self.max_batches, self.mesh)


def evaluate_path(
    net: nnx.Module,
    start: PyTree,
    end: PyTree,
    control: PyTree | None = None,
    *,
    eval_data: Mapping[str, Batches] | None = None,
    evaluator: PathEvaluator | None = None,
    bn_data: Batches | None = None,
    max_bn_batches: int | None = None,
    ts: Sequence[float] | None = None,
    num_points: int = 21,
    mesh: Mesh | None = None,
) -> dict[str, np.ndarray]:
    r"""Loss and error of the net along the Bézier curve (``control`` given) or the straight line.

    .. math::

      m(t_i) = \text{metrics}\big(\theta(t_i)\big) \quad\text{or}\quad
      \text{metrics}\big((1-t_i) w_1 + t_i w_2\big),

    with the BatchNorm statistics recomputed at every :math:`t_i` when the net
    has BatchNorm (see :class:`PathEvaluator`).

    Args:
      net: the network.
      start: :math:`w_1`.
      end: :math:`w_2`.
      control: :math:`\theta_c`, or ``None`` for the straight line.
      eval_data: ``{name: batches}``, e.g. ``{'train': ..., 'test': ...}``
        (or pass a ready ``evaluator``).
      evaluator: a :class:`PathEvaluator` (reuses its compiled steps and
        sharded batches across calls).
      bn_data: training batches for the BatchNorm statistics (``train=True``:
        full batches, no padding).
      max_bn_batches: at most this many of them per point.
      ts: the :math:`t` values (default ``num_points`` evenly in [0, 1]).
      num_points: see ``ts``.
      mesh: the device mesh.

    Returns:
      ``{'t': ..., '<name>_loss': ..., '<name>_error': ...}``, float64 arrays.

    Example:
      >>> from sparsejax import data
      >>> from flax import nnx
      >>> from sparsejax.models import create
      >>> from sparsejax.train.connectivity import evaluate_path
      >>> net = create('mlp', hidden=(4,), rngs=0)
      >>> w = nnx.to_pure_dict(nnx.state(net, nnx.Param))
      >>> test = data.batches(data.load('synthetic', 'test', num_examples=64), 32, train=False)
      >>> r = evaluate_path(net, w, w, eval_data={'test': test}, num_points=3)
      >>> r['t'].tolist(), bool(r['test_loss'][0] == r['test_loss'][2])
      ([0.0, 0.5, 1.0], True)
    """
    if evaluator is None:
        if eval_data is None:
            raise ValueError("pass eval_data= ({name: batches}) or evaluator=")
        evaluator = PathEvaluator(net, eval_data, bn_data=bn_data, max_bn_batches=max_bn_batches,
                                  mesh=mesh)
    return curves.evaluate_path(evaluator, start, end, control, ts=ts, num_points=num_points)


class PlaneResult(NamedTuple):
    """What :func:`evaluate_plane` returns.

    Attributes:
      basis: the plane (:class:`sparsejax.directional.PlaneBasis`).
      xs: the grid's coordinates along :math:`w_2 - w_1`.
      ys: the grid's coordinates across.
      values: ``{metric: (len(ys), len(xs)) array}``.
    """

    basis: curves.PlaneBasis
    xs: np.ndarray
    ys: np.ndarray
    values: dict[str, np.ndarray]


def evaluate_plane(
    net: nnx.Module,
    start: PyTree,
    end: PyTree,
    control: PyTree,
    *,
    eval_data: Mapping[str, Batches] | None = None,
    evaluator: PathEvaluator | None = None,
    bn_data: Batches | None = None,
    max_bn_batches: int | None = None,
    num_points: int = 11,
    margin: float = 0.2,
    mesh: Mesh | None = None,
) -> PlaneResult:
    r"""Loss and error of the net on a grid of the plane through :math:`w_1, \theta_c, w_2`.

    The plane's frame is :func:`sparsejax.directional.plane_basis`; the grid
    covers the three points with ``margin`` of their extent on each side
    (:func:`sparsejax.directional.plane_grid`). Each point costs one
    evaluation (and a BatchNorm recomputation where the net has BatchNorm).
    Draw it with :func:`sparsejax.directional.plot_plane`.

    Args:
      net: the network.
      start: :math:`w_1`.
      end: :math:`w_2`.
      control: :math:`\theta_c` (trained: the plane needs it off the straight line).
      eval_data: ``{name: batches}`` (or pass ``evaluator``).
      evaluator: a :class:`PathEvaluator`.
      bn_data: training batches for the BatchNorm statistics (``train=True``:
        full batches, no padding).
      max_bn_batches: at most this many of them per point.
      num_points: grid points per axis.
      margin: the grid's margin.
      mesh: the device mesh.

    Returns:
      A :class:`PlaneResult`.

    Example:
      >>> import jax
      >>> from flax import nnx
      >>> from sparsejax import data
      >>> from sparsejax.models import create
      >>> from sparsejax.train.connectivity import evaluate_plane
      >>> net = create('mlp', hidden=(4,), rngs=0)
      >>> w = nnx.to_pure_dict(nnx.state(net, nnx.Param))
      >>> w2 = jax.tree.map(lambda x: x + 0.1, w)
      >>> c = jax.tree.map(lambda x: 1.5 * x, w)
      >>> test = data.batches(data.load('synthetic', 'test', num_examples=32), 32, train=False)
      >>> r = evaluate_plane(net, w, w2, c, eval_data={'test': test}, num_points=3)
      >>> r.values['test_loss'].shape
      (3, 3)
    """
    if evaluator is None:
        if eval_data is None:
            raise ValueError("pass eval_data= ({name: batches}) or evaluator=")
        evaluator = PathEvaluator(net, eval_data, bn_data=bn_data, max_bn_batches=max_bn_batches,
                                  mesh=mesh)
    basis = curves.plane_basis(start, control, end)
    xs, ys = curves.plane_grid(basis, num_points, margin)
    return PlaneResult(basis, xs, ys, curves.evaluate_plane(evaluator, basis, xs, ys))


# --- the Hessian of a trained classifier ------------------------------------------------------


def classifier_loss(net: nnx.Module, model_state: PyTree | None = None
                    ) -> Callable[[PyTree, Mapping[str, jax.Array]], jax.Array]:
    r"""The per-example cross-entropy of a classifier in eval mode, as a function of its params.

    .. math::

      \ell(w; x_i, y_i) = \log \sum_k e^{f_k(x_i; w)} - f_{y_i}(x_i; w),

    with BatchNorm using its running statistics (``model_state``, default the
    net's) and dropout off: a function of :math:`w` alone for each example,
    as PyHessian computes Hessians (``model.eval()``). The shape expected by
    :class:`sparsejax.directional.DatasetLoss`.

    Args:
      net: a Flax NNX classifier returning logits.
      model_state: its non-parameter variables (e.g. a trained run's
        ``result.model_state``; default: the net's own).

    Returns:
      ``losses(params, batch)`` with ``batch = {'image': ..., 'label': ...}``,
      shape ``(batch,)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from sparsejax.models import create
      >>> from sparsejax.train.connectivity import classifier_loss
      >>> net = create('mlp', hidden=(4,), rngs=0)
      >>> losses = classifier_loss(net)
      >>> losses(nnx.to_pure_dict(nnx.state(net, nnx.Param)),
      ...        {'image': jnp.zeros((3, 28, 28, 1)), 'label': jnp.zeros(3, jnp.int32)}).shape
      (3,)
    """
    parts = split_model(net)
    state = parts.initial_model_state if model_state is None else model_state
    rngs = parts.rng_state(0, 0)

    def losses(params: PyTree, batch: Mapping[str, jax.Array]) -> jax.Array:
        module = parts.merge(params, state, rngs, train=False)
        logits = module(batch["image"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])

    return losses


def collect_examples(batches: Batches, max_examples: int | None = None) -> dict[str, np.ndarray]:
    """The examples of a pipeline as arrays ``{'image', 'label'}`` (padding rows dropped).

    Args:
      batches: an evaluation pipeline (``train=False``: in order, every example once).
      max_examples: keep the first this many (default: all).

    Returns:
      ``{'image': float32 (n, ...), 'label': int32 (n,)}``, normalised as the pipeline does.

    Raises:
      ValueError: if no example is collected.

    Example:
      >>> from sparsejax import data
      >>> from sparsejax.train.connectivity import collect_examples
      >>> test = data.batches(data.load('synthetic', 'test', num_examples=10), 4, train=False)
      >>> collect_examples(test, 7)['image'].shape
      (7, 28, 28, 1)
    """
    warn_if_training_pipeline(batches, "collect_examples: batches")
    images, labels, n = [], [], 0
    for batch in batches.epoch(0):
        keep = np.asarray(batch.get("mask", np.ones(len(batch["label"]))), np.float32) > 0
        x, y = np.asarray(batch["image"])[keep], np.asarray(batch["label"])[keep]
        if max_examples is not None:
            x, y = x[: max_examples - n], y[: max_examples - n]
        images.append(x)
        labels.append(y)
        n += len(y)
        if max_examples is not None and n >= max_examples:
            break
    getattr(batches, "close", lambda: None)()
    if n == 0:
        raise ValueError("the pipeline yielded no example")
    return {"image": np.concatenate(images).astype(np.float32),
            "label": np.concatenate(labels).astype(np.int32)}
