"""Prunable groups: the units (neurons, channels) structured pruning acts on.

Every model of the zoo declares, with :meth:`PrunableModel.prunable_groups`,
the sets of units that can be silenced or removed together, and accepts a
multiplicative *gate* per group in its forward pass. Nothing here changes the
forward pass of a model called without gates.

**A group** (:class:`PrunableGroup`) is a set of ``size`` units — the hidden
units of a dense layer, the output channels of a convolution, the inner
channels of a residual block, the expansion channels of an inverted residual
block — together with

* ``producers``: every variable (kernel, bias, BatchNorm scale/bias/mean/var,
  depthwise kernel, ...) that holds one slice per unit on the output side, as
  :class:`UnitAxis` entries ``(path, axis)``;
* ``consumers``: every kernel that *reads* the units, with the axis of its
  input features (``-2`` for a conv kernel ``(h, w, in, out)``, ``0`` for a
  dense kernel ``(in, out)``; a dense layer that reads a flattened feature map
  gives a ``view`` such as ``(h, w, channels, out)`` and ``axis=2``).

Paths are :func:`sparsejax.tree.path_str` names of the leaves of
``nnx.state(model)`` (all variables, Params and BatchStats), e.g.
``"blocks/3/conv1/conv/kernel"``; they read the same on
``nnx.to_pure_dict(nnx.state(model))`` and on optimizer states shaped like the
params.

**The gate.** ``model(x, gates={name: g})`` multiplies the activations of group
``name`` — the tensor its consumers read, channels last — by the vector ``g``
of shape ``(size,)``. Groups absent from ``gates`` (and ``gates=None``) are not
touched: no multiplication is emitted. The gate sits right before the
consumers (after the producer's normalisation, activation and any pooling), so
that, exactly,

* ``model(x, gates={name: g}) == fold_gates(model, {name: g})(x)`` — a gate is
  the same as scaling the consumers' input slices (how a pruner folds its
  weights ``a_i·N`` into the next layer);
* ``g[i] = 0`` is the same as removing unit ``i`` with :func:`keep_units`, and
  the same as zeroing unit ``i``'s slices of every producer (all activations of
  the zoo map 0 to 0, and a BatchNorm with zero scale and bias outputs 0).

``model(x, capture=d)`` writes into the dict ``d``, for every group, the
tensor the gate multiplies (before the gate), so ``d[name] * g`` is the
consumers' input. A pruner uses it to compute per-unit contributions to a
consumer's output: take the consumer module with :func:`module_at` and apply
it to the activations of one unit at a time (it is linear in its input, up to
its bias).

**Using gates in a pruner.** Evaluate in evaluation mode (``model.eval()`` or
``nnx.view(model, use_running_average=True, deterministic=True)``): in
training mode BatchNorm layers after a gate normalise with statistics of the
gated activations and write running statistics. Gates are ordinary inputs, so
``jax.grad(lambda g: loss(model(x, gates={name: g})))(jnp.ones(size))`` gives
the derivatives with respect to the gates (one backward pass), and
``jax.vmap`` over ``g`` evaluates many candidate gate vectors at once.

**Removing units** (:func:`keep_units` on a model, :func:`take_units` on any
pytree with the model's paths): every producer and consumer entry is indexed
along its axis (through its ``view`` when it has one) with the kept indices,
in the order given, and the static sizes of the Flax modules involved
(``in_features``, ``out_features``, ``feature_group_count`` of depthwise
convolutions, ``num_features``) are updated from the new shapes. The result
is a model of the same class whose output equals the gated model's, up to
float summation order. Fold weights first (:func:`fold_gates`), then slice.

Example:
  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> from sparsejax.models import MLP, keep_units
  >>> model = MLP(4, (8,), 3, rngs=nnx.Rngs(0))
  >>> [g.name for g in model.prunable_groups()]
  ['layers/0']
  >>> x = jnp.ones((2, 4))
  >>> gate = jnp.ones(8).at[5:].set(0.0)
  >>> small = keep_units(model, {'layers/0': [0, 1, 2, 3, 4]})
  >>> bool(jnp.allclose(model(x, gates={'layers/0': gate}), small(x), atol=1e-6))
  True
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sparsejax.tree import PyTree, path_str

__all__ = [
    "Gates",
    "PrunableGroup",
    "PrunableModel",
    "UnitAxis",
    "apply_gate",
    "fold_gates",
    "keep_units",
    "module_at",
    "take_units",
]

Gates = Mapping[str, jax.Array]
M = TypeVar("M", bound=nnx.Module)


@dataclasses.dataclass(frozen=True)
class UnitAxis:
    """Where the units of a group lie in one variable.

    Attributes:
      path: the variable's normalised path in ``nnx.state(model)``
        (:func:`sparsejax.tree.path_str`), e.g. ``"layers/0/kernel"``.
      axis: the axis indexing the units (of ``view`` when given).
      view: ``None``, or a shape to reshape the variable to before indexing
        ``axis``; used by a dense layer reading a flattened ``(h, w, c)``
        feature map, whose kernel ``(h*w*c, out)`` is viewed as
        ``(h, w, c, out)`` with ``axis=2``.
    """

    path: str
    axis: int
    view: tuple[int, ...] | None = None


@dataclasses.dataclass(frozen=True)
class PrunableGroup:
    """A set of units (neurons or channels) that structured pruning removes together.

    Attributes:
      name: the group's name, the key of its gate; by convention the path of
        the module whose output the units are (``"layers/0"``,
        ``"convs/3"``, ``"blocks/2/conv1"``, ``"blocks/5/depthwise"``).
      size: the number of units.
      producers: the variables with one slice per unit on the output side
        (kernels along their output axis, biases, BatchNorm scale, bias and
        running statistics, depthwise kernels).
      consumers: the kernels that read the units, along their input axis.
    """

    name: str
    size: int
    producers: tuple[UnitAxis, ...]
    consumers: tuple[UnitAxis, ...]

    @property
    def consumer_modules(self) -> tuple[str, ...]:
        """Paths of the consumer modules (the consumer kernels' paths without ``/kernel``)."""
        return tuple(c.path.rsplit("/", 1)[0] for c in self.consumers)


def apply_gate(
    x: jax.Array,
    name: str,
    gates: Gates | None,
    capture: MutableMapping[str, jax.Array] | None,
) -> jax.Array:
    """Multiplies ``x`` (channels last) by the gate of group ``name``, if there is one.

    Models call this at the place each group's activations are read by its
    consumers. ``capture[name]`` receives ``x`` before the gate.

    Args:
      x: the group's activations, units on the last axis.
      name: the group's name.
      gates: ``None`` or a mapping from group names to vectors of shape ``(size,)``.
      capture: ``None`` or a dict to record ``x`` in.

    Returns:
      ``x * gates[name]`` (in ``x``'s dtype), or ``x`` itself when there is no gate.

    Example:
      >>> import jax.numpy as jnp
      >>> from sparsejax.models import apply_gate
      >>> apply_gate(jnp.ones((1, 3)), 'g', {'g': jnp.array([1.0, 0.0, 2.0])}, None)
      Array([[1., 0., 2.]], dtype=float32)
    """
    if capture is not None:
        capture[name] = x
    if gates is not None:
        g = gates.get(name)
        if g is not None:
            x = x * jnp.asarray(g).astype(x.dtype)
    return x


class PrunableModel(nnx.Module):
    """Base class of the zoo's models: declared prunable groups and gate checks.

    Subclasses implement :meth:`prunable_groups` (computed from the current
    parameter shapes, so it stays right after :func:`keep_units`) and call
    :meth:`check_gates` and :func:`apply_gate` in ``__call__(x, *, gates=None,
    capture=None)``.
    """

    def prunable_groups(self) -> tuple[PrunableGroup, ...]:
        """Returns the model's prunable groups, in forward order."""
        raise NotImplementedError

    def group(self, name: str) -> PrunableGroup:
        """Returns the group called ``name``.

        Raises:
          ValueError: if there is no such group (the message lists them).
        """
        groups = {g.name: g for g in self.prunable_groups()}
        if name not in groups:
            raise ValueError(
                f"{type(self).__name__} has no prunable group {name!r}; its groups are "
                f"{sorted(groups)}"
            )
        return groups[name]

    def check_gates(self, gates: Gates | None) -> None:
        """Raises ``ValueError`` if ``gates`` names an unknown group or has a wrong shape."""
        if gates is None:
            return
        sizes = {g.name: g.size for g in self.prunable_groups()}
        unknown = sorted(set(gates) - set(sizes))
        if unknown:
            raise ValueError(
                f"gates for unknown groups {unknown}; the groups of "
                f"{type(self).__name__} are {sorted(sizes)}"
            )
        for name, g in gates.items():
            if g is not None and tuple(jnp.shape(g)) != (sizes[name],):
                raise ValueError(
                    f"the gate of group {name!r} must have shape ({sizes[name]},), "
                    f"got {tuple(jnp.shape(g))}"
                )


# --------------------------------------------------------------------------- #
# Slicing and scaling along unit axes.


def _merge_plan(shape: tuple[int, ...], view: tuple[int, ...]) -> list[int]:
    """How many consecutive ``view`` dims make up each dim of ``shape``."""
    plan, j = [], 0
    for d in shape:
        n, prod = 0, 1
        while j < len(view) and (n == 0 or prod < d):
            prod *= view[j]
            j += 1
            n += 1
        if prod != d:
            raise ValueError(f"view {view} does not refine the shape {shape}")
        plan.append(n)
    while plan and j < len(view) and view[j] == 1:  # trailing 1s belong to the last dim
        plan[-1] += 1
        j += 1
    if j != len(view):
        raise ValueError(f"view {view} does not refine the shape {shape}")
    return plan


def _unview(x: jax.Array, plan: list[int]) -> jax.Array:
    new_shape, j = [], 0
    for n in plan:
        new_shape.append(math.prod(x.shape[j : j + n]))
        j += n
    return x.reshape(new_shape)


def _on_host(x: Any) -> np.ndarray | None:
    """``x`` as a NumPy array if it is a concrete array on one device, else ``None``.

    Model surgery on concrete single-device arrays is done in NumPy: with
    ``jax.numpy`` every new shape would compile a gather or a multiply.
    """
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer) and len(x.devices()) == 1:
        return np.asarray(x)
    return None


def _like(value: np.ndarray, x: Any) -> Any:
    """``value`` placed like ``x``: a NumPy array, or a JAX array on ``x``'s device."""
    if not isinstance(x, jax.Array):
        return value
    if getattr(x, "committed", True):
        return jax.device_put(value, next(iter(x.devices())))
    return jnp.asarray(value)  # uncommitted, like ``x``


def _take(x: jax.Array, spec: UnitAxis, keep: np.ndarray) -> jax.Array:
    host = _on_host(x)
    xp, v = (np, host) if host is not None else (jnp, x)
    shape = tuple(v.shape)
    if spec.view is not None:
        v = v.reshape(spec.view)
    v = xp.take(v, keep, axis=spec.axis)
    if spec.view is not None:
        v = _unview(v, _merge_plan(shape, spec.view))
    return _like(v, x) if host is not None else v


def _scale(x: jax.Array, spec: UnitAxis, factors: Any) -> jax.Array:
    host = None if isinstance(factors, jax.core.Tracer) else _on_host(x)
    xp, v = (np, host) if host is not None else (jnp, x)
    if spec.view is not None:
        v = v.reshape(spec.view)
    axis = spec.axis % v.ndim
    shape = [1] * v.ndim
    shape[axis] = v.shape[axis]
    f = np.asarray(factors) if host is not None else jnp.asarray(factors)
    v = (v * f.astype(v.dtype).reshape(shape)).reshape(x.shape)
    return _like(v, x) if host is not None else v


def _check_keep(group: PrunableGroup, keep: Any) -> np.ndarray:
    idx = np.asarray(keep)
    if idx.dtype == bool:
        if idx.shape != (group.size,):
            raise ValueError(
                f"a boolean keep mask for group {group.name!r} must have shape "
                f"({group.size},), got {idx.shape}"
            )
        idx = np.flatnonzero(idx)
    idx = idx.astype(np.int64).reshape(-1)
    if idx.size == 0:
        raise ValueError(f"group {group.name!r}: at least one unit must be kept")
    if idx.min() < 0 or idx.max() >= group.size:
        raise ValueError(
            f"group {group.name!r} has {group.size} units; keep indices must lie in "
            f"[0, {group.size}), got min {idx.min()} and max {idx.max()}"
        )
    if len(np.unique(idx)) != idx.size:
        raise ValueError(f"group {group.name!r}: keep indices must be distinct")
    return idx


def _resolve(
    groups: Sequence[PrunableGroup] | PrunableModel, names: Sequence[str]
) -> dict[str, PrunableGroup]:
    if isinstance(groups, PrunableModel):
        groups = groups.prunable_groups()
    by_name = {g.name: g for g in groups}
    unknown = sorted(set(names) - set(by_name))
    if unknown:
        raise ValueError(f"unknown prunable groups {unknown}; the groups are {sorted(by_name)}")
    return by_name


def _edits(
    groups: Sequence[PrunableGroup] | PrunableModel, keep: Mapping[str, Any]
) -> dict[str, list[tuple[UnitAxis, np.ndarray]]]:
    by_name = _resolve(groups, list(keep))
    edits: dict[str, list[tuple[UnitAxis, np.ndarray]]] = {}
    for name, k in keep.items():
        group = by_name[name]
        idx = _check_keep(group, k)
        for spec in (*group.producers, *group.consumers):
            edits.setdefault(spec.path, []).append((spec, idx))
    # A view (a flattened conv output read by a dense layer) holds the leaf's unshrunk sizes:
    # its edit goes first, whatever the order of ``keep``, before the leaf's plain axes shrink.
    return {path: sorted(e, key=lambda edit: edit[0].view is None) for path, e in edits.items()}


def take_units(
    tree: PyTree,
    groups: Sequence[PrunableGroup] | PrunableModel,
    keep: Mapping[str, Any],
) -> PyTree:
    """Keeps only the given units of some groups in a pytree with the model's paths.

    Works on ``nnx.state(model)``, ``nnx.to_pure_dict(...)``, parameter-shaped
    optimizer states (momentum buffers), masks: every leaf whose path is a
    producer or consumer of a group in ``keep`` is indexed along the group's
    axis; other leaves are returned as they are.

    Args:
      tree: a pytree whose leaf paths (:func:`sparsejax.tree.path_str`) are the
        model's variable paths.
      groups: the model, or its :meth:`~PrunableModel.prunable_groups`.
      keep: ``{group name: indices to keep}`` (a sequence of distinct ints in
        ``[0, size)``, in the order wanted, or a boolean vector of length ``size``).

    Returns:
      A pytree of the same structure with smaller leaves.

    Raises:
      ValueError: for an unknown group, an empty, out-of-range or repeated
        index list.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from sparsejax.models import MLP, take_units
      >>> model = MLP(4, (8,), 3, rngs=nnx.Rngs(0))
      >>> params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
      >>> small = take_units(params, model, {'layers/0': [1, 3]})
      >>> small['layers'][0]['kernel'].shape, small['layers'][1]['kernel'].shape
      ((4, 2), (2, 3))
    """
    edits = _edits(groups, keep)
    matched = []

    def edit(path: Any, leaf: Any) -> Any:
        for spec, idx in edits.get(path_str(path), ()):
            leaf = _take(leaf, spec, idx)
            matched.append(spec.path)
        return leaf

    out = jax.tree_util.tree_map_with_path(edit, tree)
    if edits and not matched:
        raise ValueError(
            f"take_units: no leaf of the tree has a path of the groups {sorted(keep)} (e.g. "
            f"{next(iter(edits))!r}); pass a tree shaped like the params (for an optimizer "
            "state, the params-shaped parts such as a momentum trace), not a wrapper of it")
    return out


def _variables(model: nnx.Module) -> dict[str, nnx.Variable]:
    return {
        "/".join(str(k) for k in path): node
        for path, node in nnx.iter_graph(model)
        if isinstance(node, nnx.Variable)
    }


def _sync_static_sizes(model: nnx.Module) -> None:
    """Sets the size attributes of Flax layers from their (possibly sliced) variables."""
    for _, m in nnx.iter_modules(model):
        if isinstance(m, nnx.Linear):
            m.in_features, m.out_features = (int(d) for d in m.kernel.shape)
        elif isinstance(m, nnx.Conv):
            cin, cout = int(m.kernel.shape[-2]), int(m.kernel.shape[-1])
            if m.feature_group_count > 1:
                if cin != 1:
                    raise ValueError("only depthwise grouped convolutions can be resized")
                m.in_features = m.out_features = m.feature_group_count = cout
            else:
                m.in_features, m.out_features = cin, cout
            m.kernel_shape = tuple(int(d) for d in m.kernel.shape)
        elif isinstance(m, nnx.BatchNorm):
            m.num_features = int(m.mean.shape[0])


def keep_units(model: M, keep: Mapping[str, Any]) -> M:
    """Returns a smaller copy of ``model`` with only the given units of some groups.

    The copy is a model of the same class; its output equals ``model``'s output
    with the removed units gated to zero (exactly up to float summation order).

    Args:
      model: a :class:`PrunableModel` (left unchanged).
      keep: ``{group name: indices to keep}``, as in :func:`take_units`.

    Returns:
      The shrunk model.

    Example:
      >>> from flax import nnx
      >>> from sparsejax.models import create, keep_units
      >>> model = create('lenet5', rngs=nnx.Rngs(0))
      >>> small = keep_units(model, {'conv2': range(8), 'fc1': range(60)})
      >>> small.fc1.kernel.shape, small.conv2.kernel.shape
      ((200, 60), (5, 5, 6, 8))
    """
    edits = _edits(model, keep)
    new = nnx.clone(model)
    variables = _variables(new)
    for path, specs in edits.items():
        var = variables[path]
        value = var.get_value()
        for spec, idx in specs:
            value = _take(value, spec, idx)
        var.set_value(value)
    _sync_static_sizes(new)
    return new


def fold_gates(model: M, gates: Gates) -> M:
    """Returns a copy of ``model`` with the gates multiplied into the consumer kernels.

    ``fold_gates(model, gates)(x)`` equals ``model(x, gates=gates)``: a gate
    scales the consumers' inputs, which the consumers' kernels can do instead.

    Args:
      model: a :class:`PrunableModel` (left unchanged).
      gates: ``{group name: vector of shape (size,)}``.

    Returns:
      The model with scaled consumer kernels.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from sparsejax.models import MLP, fold_gates
      >>> model = MLP(4, (8,), 3, rngs=nnx.Rngs(0))
      >>> g = {'layers/0': jnp.linspace(0.0, 2.0, 8)}
      >>> x = jnp.ones((2, 4))
      >>> bool(jnp.allclose(fold_gates(model, g)(x), model(x, gates=g), atol=1e-6))
      True
    """
    model.check_gates(gates)
    by_name = _resolve(model, list(gates))
    new = nnx.clone(model)
    variables = _variables(new)
    for name, g in gates.items():
        if g is None:  # as in apply_gate: no gate, nothing to fold
            continue
        for spec in by_name[name].consumers:
            var = variables[spec.path]
            var.set_value(_scale(var.get_value(), spec, g))
    return new


def module_at(model: nnx.Module, path: str) -> Any:
    """Returns the submodule (or variable) at a ``/``-separated path.

    Example:
      >>> from flax import nnx
      >>> from sparsejax.models import MLP, module_at
      >>> model = MLP(4, (8,), 3, rngs=nnx.Rngs(0))
      >>> type(module_at(model, model.group('layers/0').consumer_modules[0])).__name__
      'Linear'
    """
    node: Any = model
    for part in path.split("/") if path else ():
        if isinstance(node, (nnx.List, list, tuple)) or (
            part.isdigit() and not hasattr(node, part)
        ):
            node = node[int(part)]
        elif isinstance(node, Mapping):
            node = node[part]
        else:
            node = getattr(node, part)
    return node
