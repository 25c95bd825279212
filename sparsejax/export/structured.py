r"""Structured export: a smaller dense model of the same class without the units a model does not use.

For every prunable group of a zoo model (:mod:`sparsejax.models.groups`),
:func:`shrink_structured` finds the units that can go and removes them with
:func:`sparsejax.models.keep_units` (the same physical shrink as
:func:`sparsejax.structured.shrink`, which it calls for a greedy selection):

``criterion="zero"`` (exact: the output is unchanged)
  * a unit no consumer reads (all its consumer slices are zero) is removed;
  * a unit whose producer kernels are all zero outputs a constant :math:`c_i`
    (its bias, or its BatchNorm's :math:`\beta - \gamma \mu / \sqrt{\sigma^2 + \epsilon}`,
    through the activation and pooling); the constant is read from the
    activations of an example batch (and checked to be constant there). A unit
    with :math:`c_i = 0` is removed; otherwise its contribution is folded into
    the consumers' biases,

    .. math::  b_j \leftarrow b_j + c_i \sum_{\text{other axes}} W_{\dots i \dots j},

    when every consumer is a dense layer or an unpadded (``VALID``) convolution
    with a bias, and the unit is kept when not (a padded convolution sees the
    constant only inside the image).

``criterion="l1"`` / ``"l2"`` with ``threshold`` (changes the output)
  units whose producer-kernel norm :math:`\|W_{:, i}\|_1` or :math:`\|W_{:, i}\|_2`
  (all producer kernels of the unit together) is at most ``threshold`` are
  removed; the output equals the model's with those units gated to zero.

``selections`` (a :class:`~sparsejax.structured.GreedyPruneResult` or imitation results)
  delegates to :func:`sparsejax.structured.shrink` (weights folded in).

The model runs in evaluation mode throughout (BatchNorm running statistics).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flax import nnx

from sparsejax.export.inference import eval_copy
from sparsejax.models.groups import PrunableGroup, PrunableModel, keep_units, module_at
from sparsejax.tree import path_str

__all__ = ["StructuredExport", "shrink_structured", "unit_norms"]

CRITERIA = ("zero", "l1", "l2")


@dataclasses.dataclass(frozen=True)
class StructuredExport:
    """What :func:`shrink_structured` removed.

    Attributes:
      groups: ``(name, units before, units after)`` per group.
      folded: ``(group, unit)`` of the constant units folded into consumer biases.
      kept_constant: ``(group, unit)`` of constant units kept (consumers could not absorb them).
      max_abs_diff: max ``|small(x) - reference(x)|`` on the example batch, where the
        reference is the model (``"zero"``) or the gated model (``"l1"``/``"l2"``).
    """

    groups: tuple[tuple[str, int, int], ...]
    folded: tuple[tuple[str, int], ...]
    kept_constant: tuple[tuple[str, int], ...]
    max_abs_diff: float

    def __str__(self) -> str:
        lines = [f"{'group':28s} {'before':>7s} {'after':>7s}"]
        lines += [f"{n:28s} {b:7d} {a:7d}" for n, b, a in self.groups]
        lines.append(f"folded constant units: {len(self.folded)}, kept constant units: "
                     f"{len(self.kept_constant)}, max |diff| on the example batch: "
                     f"{self.max_abs_diff:.2e}")
        return "\n".join(lines)


def _values(model: nnx.Module) -> dict[str, np.ndarray]:
    state = nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))
    flat, _ = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(state))
    return {path_str(p): np.asarray(x) for p, x in flat}


def _unit_slices(values: Mapping[str, np.ndarray], specs: Any, size: int,
                 kernels_only: bool) -> np.ndarray:
    """``(size, total)``: every (kernel) variable of ``specs``, units first, flattened."""
    parts = [np.zeros((size, 0), np.float32)]
    for spec in specs:
        if kernels_only and spec.path.rsplit("/", 1)[-1] != "kernel":
            continue
        v = values[spec.path]
        if spec.view is not None:
            v = v.reshape(spec.view)
        parts.append(np.moveaxis(v, spec.axis, 0).reshape(size, -1).astype(np.float32))
    return np.concatenate(parts, axis=1)


def unit_norms(model: PrunableModel, ord: int = 2) -> dict[str, np.ndarray]:
    r"""Per-unit norm of each group's producer kernels: :math:`\|W_{:, i}\|_{\mathrm{ord}}`.

    All the kernels that produce a unit (a conv's output slice, a depthwise
    kernel's channel) are taken together; biases and BatchNorm variables are not.

    Args:
      model: a zoo model.
      ord: 1 or 2.

    Returns:
      ``{group name: (size,) norms}``.

    Example:
      >>> from sparsejax.models import create
      >>> from sparsejax.export import unit_norms
      >>> model = create('mlp', num_classes=2, input_shape=(4,), hidden=(3,), rngs=0)
      >>> unit_norms(model)['layers/0'].shape
      (3,)
    """
    if ord not in (1, 2):
        raise ValueError(f"ord must be 1 or 2, got {ord}")
    values = _values(model)
    out = {}
    for g in model.prunable_groups():
        w = _unit_slices(values, g.producers, g.size, kernels_only=True)
        out[g.name] = np.abs(w).sum(1) if ord == 1 else np.sqrt((w * w).sum(1))
    return out


def _foldable(model: nnx.Module, group: PrunableGroup) -> bool:
    for path in group.consumer_modules:
        m = module_at(model, path)
        if getattr(m, "bias", None) is None:
            return False
        if isinstance(m, nnx.Conv):
            pad = m.padding
            if not (isinstance(pad, str) and pad.upper() == "VALID") and pad not in (0, ((0, 0),) * 2):
                return False
        elif not isinstance(m, nnx.Linear):
            return False
    return True


def _fold_constants(model: nnx.Module, group: PrunableGroup,
                    constants: Mapping[int, float]) -> None:
    """Adds ``c_i * (sum of unit i's consumer kernel slice over all but the output axis)`` to biases."""
    for spec in group.consumers:
        m = module_at(model, spec.path.rsplit("/", 1)[0])
        w = np.asarray(m.kernel.get_value())
        v = w.reshape(spec.view) if spec.view is not None else w
        v = np.moveaxis(v, spec.axis, 0)
        shift = np.zeros(w.shape[-1], np.float64)
        for i, c in constants.items():
            shift += c * v[i].reshape(-1, w.shape[-1]).sum(0)
        b = np.asarray(m.bias.get_value())
        m.bias.set_value(jax.numpy.asarray((b + shift).astype(b.dtype)))


def shrink_structured(
    model: PrunableModel,
    x: jax.Array,
    *,
    criterion: str = "zero",
    threshold: float = 0.0,
    selections: Any = None,
    atol: float = 1e-6,
) -> tuple[PrunableModel, StructuredExport]:
    r"""A smaller model of the same class without the removable units (see the module docstring).

    Args:
      model: a zoo model (left unchanged).
      x: an example batch (reads the constant units' values and checks the result).
      criterion: ``"zero"`` (exact), ``"l1"`` or ``"l2"`` (units with norm at most ``threshold``).
      threshold: the norm threshold of ``"l1"``/``"l2"`` (``"zero"`` uses exact zeros).
      selections: a greedy or imitation result: shrink by it instead (:func:`sparsejax.structured.shrink`).
      atol: tolerance of "constant" for a unit with zero producer kernels.

    Returns:
      ``(small model in evaluation mode, StructuredExport)``. At least one unit
      of each group is kept.

    Raises:
      ValueError: for an unknown criterion or a negative threshold.

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np
      >>> from sparsejax.models import create
      >>> from sparsejax.export import shrink_structured
      >>> model = create('mlp', num_classes=2, input_shape=(6,), hidden=(5,), rngs=0)
      >>> k = model.layers[0].kernel
      >>> k.set_value(k.get_value().at[:, :3].set(0.0))   # units 0-2 dead (bias 0: output 0)
      >>> x = jax.random.normal(jax.random.key(0), (4, 6))
      >>> small, info = shrink_structured(model, x)
      >>> small.layers[0].kernel.shape, bool(jnp.allclose(small(x), model(x), atol=1e-6))
      ((6, 2), True)
    """
    if not isinstance(model, PrunableModel):
        raise TypeError(f"shrink_structured needs a zoo model (PrunableModel), got "
                        f"{type(model).__name__}")
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; the criteria are {CRITERIA}")
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    model = eval_copy(model)
    groups = model.prunable_groups()
    if selections is not None:
        from sparsejax.structured import shrink

        small = eval_copy(shrink(model, selections))
        gates = {n: r.gate for n, r in _selections(selections).items()}
        diff = float(np.abs(np.asarray(small(x)) - np.asarray(model(x, gates=gates))).max())
        after = {g.name: g.size for g in small.prunable_groups()}
        return small, StructuredExport(tuple((g.name, g.size, after[g.name]) for g in groups),
                                       (), (), diff)

    values = _values(model)
    captured: dict[str, jax.Array] = {}
    y_model = np.asarray(model(x, capture=captured))
    captured2: dict[str, jax.Array] = {}
    model(-x, capture=captured2)
    keep: dict[str, np.ndarray] = {}
    folded: list[tuple[str, int]] = []
    kept_constant: list[tuple[str, int]] = []
    gates: dict[str, np.ndarray] = {}
    for g in groups:
        to_fold: dict[int, float] = {}
        unread = ~_unit_slices(values, g.consumers, g.size, kernels_only=False).any(axis=1)
        if criterion == "zero":
            dead = ~_unit_slices(values, g.producers, g.size, kernels_only=True).any(axis=1)
            acts = np.concatenate([np.asarray(captured[g.name]).reshape(-1, g.size),
                                   np.asarray(captured2[g.name]).reshape(-1, g.size)])
            const = acts[0]
            is_const = np.abs(acts - const).max(axis=0) <= atol * (1 + np.abs(const))
            remove = unread.copy()
            can_fold = _foldable(model, g)
            for i in np.flatnonzero(dead & ~unread):
                if not is_const[i]:
                    continue  # e.g. a depthwise or padded path: not provably constant
                if const[i] == 0.0:
                    remove[i] = True
                elif can_fold:
                    to_fold[int(i)] = float(const[i])
                    remove[i] = True
                else:
                    kept_constant.append((g.name, int(i)))
        else:
            w = _unit_slices(values, g.producers, g.size, kernels_only=True)
            norm = np.abs(w).sum(1) if criterion == "l1" else np.sqrt((w * w).sum(1))
            remove = unread | (norm <= threshold)
            gates[g.name] = (~remove).astype(np.float32)
        if remove.all():  # a group keeps at least one unit
            kept = int(np.argmax(np.abs(captured[g.name]).reshape(-1, g.size).mean(0)))
            remove[kept] = False
            to_fold.pop(kept, None)  # it stays, with its constant: not folded as well
            if g.name in gates:
                gates[g.name] = (~remove).astype(np.float32)
        # Folded only now that the kept units are final: a unit both folded and kept
        # would add its constant twice.
        if to_fold:
            _fold_constants(model, g, to_fold)
            folded.extend((g.name, i) for i in to_fold)
        if remove.any():
            keep[g.name] = np.flatnonzero(~remove)
    # The reference: the model itself ("zero"; computed before any folding), or the
    # model with the removed units gated to zero ("l1"/"l2").
    y_ref = np.asarray(model(x, gates=gates)) if gates else y_model
    small = eval_copy(keep_units(model, keep))
    diff = float(np.abs(np.asarray(small(x)) - y_ref).max())
    after = {g.name: g.size for g in small.prunable_groups()}
    return small, StructuredExport(tuple((g.name, g.size, after[g.name]) for g in groups),
                                   tuple(folded), tuple(kept_constant), diff)


def _selections(selections: Any) -> dict[str, Any]:
    from sparsejax.structured.greedy import _as_selections

    return _as_selections(selections)
