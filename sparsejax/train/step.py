"""The jitted, data-parallel train and eval steps.

A Flax NNX model is split once (:func:`split_model`) into its graph and three
kinds of state:

* the trainable ``nnx.Param`` s, handed to the optimizer as a plain nested
  dict (:func:`flax.nnx.to_pure_dict`), so sparsejax masks and path filters
  (``'weights'``, ``'conv1/kernel'``, ...) see ordinary paths;
* the other variables (BatchNorm running statistics, ``nnx.BatchStat``), also a
  plain dict, updated by every train step and used by the eval step;
* the random streams (``nnx.RngState``), which are *not* carried: each train
  step sets every stream's key from ``(seed, step)``
  (``fold_in(fold_in(key(seed), step), stream index)``), so dropout masks are
  deterministic, the same after a resume and independent of the process count.

The train step computes the softmax cross-entropy of the integer labels,
averaged over the rows with ``batch['mask'] == 1``, its gradient, and calls
``optimizer.update(grads, opt_state, params, value=loss)``. It runs under
``jax.jit`` with the batch sharded along the ``'data'`` axis of a 1-D mesh and
everything else replicated; the old state buffers are donated. Per-epoch sums
(loss, correct predictions, examples, and the first step whose loss was not
finite) are accumulated on device in :class:`Totals`, so a step never waits for
the host.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from sparsejax.train.distributed import DATA_AXIS
from sparsejax.tree import PyTree, leaves_with_paths, path_str

__all__ = [
    "ModelParts",
    "Totals",
    "TrainState",
    "batch_sums",
    "init_train_state",
    "make_eval_step",
    "make_train_step",
    "replicated",
    "shard_batch",
    "split_model",
    "zero_totals",
]

Batch = Mapping[str, Any]


class TrainState(NamedTuple):
    """Everything a train step changes (replicated over the mesh).

    Attributes:
      step: the number of steps taken so far (int32 scalar).
      params: the ``nnx.Param`` values as a plain nested dict.
      opt_state: the optimizer state.
      model_state: the other model variables (BatchNorm statistics) as a plain dict.
    """

    step: jax.Array
    params: PyTree
    opt_state: PyTree
    model_state: PyTree


class Totals(NamedTuple):
    """Running sums over the batches of one epoch (float32 scalars on device).

    Attributes:
      loss_sum: the summed cross-entropy of the unmasked rows.
      correct: the number of unmasked rows predicted right.
      count: the number of unmasked rows.
      bad_step: the first step whose loss was NaN or inf (int32; -1: none).
      bad_loss: that loss.
    """

    loss_sum: jax.Array
    correct: jax.Array
    count: jax.Array
    bad_step: jax.Array
    bad_loss: jax.Array


def _zero_totals() -> Totals:
    z = jnp.zeros([], jnp.float32)
    return Totals(z, z, z, jnp.full([], -1, jnp.int32), z)


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding of params, optimizer state and totals: a full copy on every device."""
    return NamedSharding(mesh, P())


def zero_totals(mesh: Mesh) -> Totals:
    """Fresh :class:`Totals` (zeros, ``bad_step = -1``), replicated over ``mesh``."""
    return jax.jit(_zero_totals, out_shardings=replicated(mesh))()


def _fill(template: nnx.State, paths: list[str], pure: PyTree) -> nnx.State:
    """The state ``template`` with its leaves taken from the plain dict ``pure`` (by path)."""
    by_path = dict(leaves_with_paths(pure))
    missing = [p for p in paths if p not in by_path]
    if missing or len(by_path) != len(paths):
        raise ValueError(
            "the params do not match the model: missing "
            f"{missing[:5]}, unexpected {sorted(set(by_path) - set(paths))[:5]}"
        )
    return jax.tree.unflatten(jax.tree.structure(template), [by_path[p] for p in paths])


def _paths(state: nnx.State) -> list[str]:
    return [path_str(p) for p, _ in jax.tree_util.tree_leaves_with_path(state)]


@dataclasses.dataclass(frozen=True, eq=False)
class ModelParts:
    """A model split into graphs (train and eval mode) and state templates.

    Build it with :func:`split_model`. The arrays of the templates are the
    model's initial values; the steps take the current values as plain dicts.

    Attributes:
      train_graph: the graph with training-mode settings (batch statistics, dropout on).
      eval_graph: the graph in eval mode (running averages, no dropout).
      params: the ``nnx.Param`` state.
      rngs: the ``nnx.RngState`` (random streams) state.
      other: every other variable (BatchNorm statistics).
    """

    train_graph: nnx.GraphDef
    eval_graph: nnx.GraphDef
    params: nnx.State
    rngs: nnx.State
    other: nnx.State

    @property
    def initial_params(self) -> PyTree:
        """The initial params as a plain nested dict."""
        return nnx.to_pure_dict(self.params)

    @property
    def initial_model_state(self) -> PyTree:
        """The initial non-parameter variables as a plain nested dict."""
        return nnx.to_pure_dict(self.other)

    def rng_state(self, seed: int, step: jax.Array | int) -> nnx.State:
        """The random streams for ``step``: keys from ``(seed, step, stream index)``, counts 0."""
        leaves, treedef = jax.tree.flatten(self.rngs)
        new = []
        for i, x in enumerate(leaves):
            if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
                key = jax.random.key(seed, impl=jax.random.key_impl(x))
                new.append(jax.random.fold_in(jax.random.fold_in(key, step), i))
            else:
                new.append(jnp.zeros_like(x))
        return jax.tree.unflatten(treedef, new)

    def merge(self, params: PyTree, model_state: PyTree, rngs: nnx.State, *, train: bool) -> nnx.Module:
        """A module (in train or eval mode) built from plain-dict params and state."""
        graph = self.train_graph if train else self.eval_graph
        return nnx.merge(
            graph,
            _fill(self.params, _paths(self.params), params),
            rngs,
            _fill(self.other, _paths(self.other), model_state),
        )

    def model_state_of(self, module: nnx.Module) -> PyTree:
        """The non-parameter, non-random variables of ``module`` as a plain dict."""
        _, _, _, other = nnx.split(module, nnx.Param, nnx.RngState, ...)
        return nnx.to_pure_dict(other)


def split_model(model: nnx.Module) -> ModelParts:
    """Splits an NNX model into train/eval graphs and param, rng and other state.

    ``model`` itself is left as it is (its mode too): the graphs come from a
    shallow copy that shares its arrays.

    Args:
      model: a Flax NNX module.

    Returns:
      A :class:`ModelParts`.

    Example:
      >>> from sparsejax.models import create
      >>> from sparsejax.train.step import split_model
      >>> parts = split_model(create('mlp', hidden=(4,), rngs=0))
      >>> sorted(parts.initial_params['layers'][0])
      ['bias', 'kernel']
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model must be a flax.nnx.Module, got {type(model).__name__}")
    view = nnx.merge(*nnx.split(model))
    view.train()
    train_graph, params, rngs, other = nnx.split(view, nnx.Param, nnx.RngState, ...)
    view.eval()
    eval_graph = nnx.split(view, nnx.Param, nnx.RngState, ...)[0]
    if not jax.tree.leaves(params):
        raise ValueError("the model has no nnx.Param to train")
    return ModelParts(train_graph, eval_graph, params, rngs, other)


def batch_sums(logits: jax.Array, labels: jax.Array, mask: jax.Array) -> tuple[jax.Array, ...]:
    r"""Summed cross-entropy, correct predictions and row count of the unmasked rows.

    .. math::

      \text{loss\_sum} = \sum_i m_i\,\bigl(\log\textstyle\sum_k e^{z_{ik}} - z_{i y_i}\bigr),
      \quad \text{correct} = \sum_i m_i [\arg\max_k z_{ik} = y_i],
      \quad \text{count} = \sum_i m_i .

    Args:
      logits: ``(batch, classes)``.
      labels: integer labels ``(batch,)``.
      mask: ``(batch,)``, 1 for real rows and 0 for padding.

    Returns:
      ``(loss_sum, correct, count)``, float32 scalars.

    Example:
      >>> import jax.numpy as jnp
      >>> from sparsejax.train.step import batch_sums
      >>> s = batch_sums(jnp.array([[2.0, 0.0], [0.0, 0.0]]), jnp.array([0, 1]), jnp.array([1.0, 0.0]))
      >>> [round(float(v), 4) for v in s]
      [0.1269, 1.0, 1.0]
    """
    mask = mask.astype(jnp.float32)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
    hit = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    keep = mask > 0
    return (jnp.sum(jnp.where(keep, ce, 0.0) * mask), jnp.sum(jnp.where(keep, hit, 0.0) * mask),
            jnp.sum(mask))


def _strong_copy(tree: PyTree) -> PyTree:
    # jnp.array with an explicit dtype drops weak types, so the state entering the
    # first step has exactly the avals of the state leaving it (no recompilation).
    return jax.tree.map(lambda x: jnp.array(x, dtype=jnp.asarray(x).dtype), tree)


def to_global(tree: PyTree, sharding: NamedSharding) -> PyTree:
    """Host copies of a (fully addressable) pytree, as fresh replicated global arrays."""

    def put(x: Any) -> jax.Array:
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])

    return jax.tree.map(put, tree)


def init_train_state(
    parts: ModelParts, optimizer: optax.GradientTransformation, mesh: Mesh
) -> TrainState:
    """The step-0 :class:`TrainState`: the model's values and ``optimizer.init``, replicated.

    The arrays are fresh copies (the model's own buffers are never donated).

    Args:
      parts: the split model.
      optimizer: the Optax transform.
      mesh: the device mesh.

    Returns:
      A replicated :class:`TrainState` with ``step = 0``.

    Example:
      >>> import optax
      >>> from sparsejax.models import create
      >>> from sparsejax.train import data_mesh
      >>> from sparsejax.train.step import init_train_state, split_model
      >>> state = init_train_state(split_model(create('mlp', hidden=(4,), rngs=0)),
      ...                          optax.sgd(0.1), data_mesh())
      >>> int(state.step)
      0
    """
    rep = replicated(mesh)
    params = to_global(parts.initial_params, rep)
    model_state = to_global(parts.initial_model_state, rep)
    opt_state = optimizer.init(params)
    state = TrainState(jnp.zeros([], jnp.int32), params, opt_state, model_state)
    return jax.jit(_strong_copy, out_shardings=rep)(state)


def make_train_step(
    parts: ModelParts,
    optimizer: optax.GradientTransformation,
    mesh: Mesh,
    *,
    seed: int = 0,
    extra_args: Mapping[str, Any] | None = None,
) -> Callable[[TrainState, Totals, dict[str, jax.Array]], tuple[TrainState, Totals, jax.Array]]:
    r"""The jitted data-parallel train step ``(state, totals, batch) -> (state, totals, loss)``.

    With :math:`m_i` the mask, :math:`\ell_i` the cross-entropy of row :math:`i`,

    .. math::

      L(w) = \frac{\sum_i m_i \ell_i(w)}{\max(\sum_i m_i, 1)}, \qquad
      (u, s) = \text{optimizer.update}(\nabla L, s, w, \text{value}=L), \qquad w \leftarrow w + u .

    BatchNorm layers normalise with the statistics of the whole global batch
    (reduced across devices by XLA) and update their running averages; dropout
    keys come from ``(seed, state.step)``. ``state`` and ``totals`` are donated.

    Args:
      parts: the split model (:func:`split_model`).
      optimizer: any Optax transform; wrapped with
        :func:`optax.with_extra_args_support`.
      mesh: a 1-D mesh with axis ``'data'``; the batch is sharded along it.
      seed: seed of the dropout keys.
      extra_args: more keyword arguments of every ``optimizer.update`` call,
        fixed in the compiled step (e.g. ``{'mask_update': False}`` for
        :func:`sparsejax.pruning.rigl`'s host-scheduled mask updates).

    Returns:
      The jitted step. ``batch`` is a dict of global arrays ``image``,
      ``label`` and ``mask`` sharded along ``'data'`` (see :func:`shard_batch`);
      ``loss`` is the step's loss :math:`L` (not donated, so the caller can
      wait on it to bound how many steps are in flight).

    Example:
      >>> import numpy as np, optax
      >>> from sparsejax.models import create
      >>> from sparsejax.train import data_mesh
      >>> from sparsejax.train.step import *
      >>> mesh, parts = data_mesh(), split_model(create('mlp', hidden=(4,), rngs=0))
      >>> tx = optax.sgd(0.1)
      >>> step = make_train_step(parts, tx, mesh)
      >>> batch = shard_batch({'image': np.ones((8, 28, 28, 1), np.float32),
      ...                      'label': np.zeros(8, np.int32)}, mesh)
      >>> state, totals, loss = step(init_train_state(parts, tx, mesh), zero_totals(mesh), batch)
      >>> int(state.step), float(totals.count)
      (1, 8.0)
    """
    if extra_args is not None and "value" in extra_args:
        raise ValueError("extra_args must not hold 'value': the step passes the loss as value=")
    tx = optax.with_extra_args_support(optimizer)
    rep = replicated(mesh)
    data = NamedSharding(mesh, P(DATA_AXIS))

    def step_fn(state: TrainState, totals: Totals, batch: dict[str, jax.Array]):
        def loss_fn(params):
            # The random streams are built inside the differentiated function: NNX
            # variables may only be updated at the trace level that created them.
            rngs = parts.rng_state(seed, state.step)
            module = parts.merge(params, state.model_state, rngs, train=True)
            sums = batch_sums(module(batch["image"]), batch["label"], batch["mask"])
            loss = sums[0] / jnp.maximum(sums[2], 1.0)
            return loss, (parts.model_state_of(module), sums)

        (loss, (model_state, sums)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params, value=loss,
                                       **(extra_args or {}))
        params = optax.apply_updates(state.params, updates)
        first_bad = jnp.logical_and(~jnp.isfinite(loss), totals.bad_step < 0)
        totals = Totals(
            totals.loss_sum + sums[0],
            totals.correct + sums[1],
            totals.count + sums[2],
            jnp.where(first_bad, state.step, totals.bad_step),
            jnp.where(first_bad, loss, totals.bad_loss),
        )
        return TrainState(state.step + 1, params, opt_state, model_state), totals, loss

    return jax.jit(
        step_fn,
        in_shardings=(rep, rep, data),
        out_shardings=(rep, rep, rep),
        donate_argnums=(0, 1),
    )


def make_eval_step(
    parts: ModelParts, mesh: Mesh
) -> Callable[[PyTree, PyTree, Totals, dict[str, jax.Array]], Totals]:
    """The jitted eval step ``(params, model_state, totals, batch) -> totals``.

    The model runs in eval mode (BatchNorm with its running averages, no
    dropout); rows with ``mask == 0`` (padding) do not count. ``totals`` is
    donated.

    Args:
      parts: the split model.
      mesh: the device mesh (batch sharded along ``'data'``).

    Returns:
      The jitted step.

    Example:
      >>> import numpy as np, optax
      >>> from sparsejax.models import create
      >>> from sparsejax.train import data_mesh
      >>> from sparsejax.train.step import *
      >>> mesh, parts = data_mesh(), split_model(create('mlp', hidden=(4,), rngs=0))
      >>> batch = shard_batch({'image': np.ones((8, 28, 28, 1), np.float32),
      ...                      'label': np.zeros(8, np.int32),
      ...                      'mask': np.array([1.0] * 5 + [0.0] * 3, np.float32)}, mesh)
      >>> state = init_train_state(parts, optax.sgd(0.1), mesh)
      >>> totals = make_eval_step(parts, mesh)(state.params, state.model_state,
      ...                                      zero_totals(mesh), batch)
      >>> float(totals.count)
      5.0
    """
    rep = replicated(mesh)
    data = NamedSharding(mesh, P(DATA_AXIS))

    def eval_fn(params, model_state, totals: Totals, batch):
        module = parts.merge(params, model_state, parts.rng_state(0, 0), train=False)
        s = batch_sums(module(batch["image"]), batch["label"], batch["mask"])
        return totals._replace(loss_sum=totals.loss_sum + s[0], correct=totals.correct + s[1],
                               count=totals.count + s[2])

    return jax.jit(eval_fn, in_shardings=(rep, rep, rep, data), out_shardings=rep,
                   donate_argnums=(2,))


def shard_batch(batch: Batch, mesh: Mesh) -> dict[str, jax.Array]:
    """Turns this process's rows of a batch into global arrays sharded along ``'data'``.

    Each process passes its own rows (``local_batch_size`` of them, the same
    number on every process); the global batch is their concatenation in
    process order (:func:`jax.make_array_from_process_local_data`). Only
    ``image``, ``label`` and ``mask`` are kept; a missing ``mask`` means all ones.

    Args:
      batch: a dict of host arrays with ``image`` and ``label``.
      mesh: the device mesh.

    Returns:
      ``{'image': float32, 'label': int32, 'mask': float32}`` global arrays.

    Raises:
      ValueError: if the global batch cannot be split evenly over the devices.

    Example:
      >>> import numpy as np
      >>> from sparsejax.train import data_mesh
      >>> from sparsejax.train.step import shard_batch
      >>> b = shard_batch({'image': np.zeros((8, 2, 2, 1)), 'label': np.zeros(8)}, data_mesh())
      >>> b['image'].shape, b['label'].dtype, b['mask'].dtype
      ((8, 2, 2, 1), dtype('int32'), dtype('float32'))
    """
    sharding = NamedSharding(mesh, P(DATA_AXIS))
    image = np.asarray(batch["image"], np.float32)
    n_local = image.shape[0]
    label = np.asarray(batch["label"], np.int32)
    mask = batch.get("mask")
    mask = np.ones(n_local, np.float32) if mask is None else np.asarray(mask, np.float32)
    n_global = n_local * jax.process_count()
    if n_global % mesh.size:
        raise ValueError(
            f"the global batch size ({n_global}) must be a multiple of the number of devices "
            f"in the mesh ({mesh.size})"
        )
    out = {}
    for key, x in (("image", image), ("label", label), ("mask", mask)):
        if x.shape[0] != n_local:
            raise ValueError(f"batch['{key}'] has {x.shape[0]} rows, batch['image'] {n_local}")
        out[key] = jax.make_array_from_process_local_data(sharding, x, (n_global, *x.shape[1:]))
    return out
