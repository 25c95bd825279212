"""One-shot magnitude pruning of a parameter pytree, global or layer-wise."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax._validation import check_choice
from sparsejax.patterns import group_shape, parse_pattern
from sparsejax.pruning.distribution import layer_remove_counts
from sparsejax.pruning.pattern_masks import check_leaves, check_nonempty, pattern_keep
from sparsejax.pruning.support import Support, apply_support, map_support
from sparsejax.tree import Mask, resolve_mask
from sparsejax.select import pruned_entries
from sparsejax.tree import PyTree, leaves_with_paths

__all__ = ["num_to_remove", "prune"]


def num_to_remove(amount: Any, total: int) -> int:
    """The number of weights ``amount`` removes out of ``total``, as in ``torch.nn.utils.prune``.

    Args:
      amount: a fraction in ``[0, 1)`` (``round(amount * total)`` weights, with
        Python's round-half-to-even, which must be below ``total``) or an
        integer count in ``[0, total)``.
      total: the number of weights that take part.

    Returns:
      The count, a Python ``int``.

    Raises:
      ValueError: if ``amount`` is not a number, is out of range, or is traced.

    Example:
      >>> import sparsejax as sj
      >>> sj.pruning.num_to_remove(0.25, 10), sj.pruning.num_to_remove(3, 10)
      (2, 3)
    """
    if isinstance(amount, jax.core.Tracer):
        raise ValueError(
            "amount must be a concrete number (it fixes the mask sizes); under jax.jit, "
            "mark it static (static_argnames=('amount',))"
        )
    if isinstance(amount, (bool, np.bool_)) or not isinstance(
        amount, (numbers.Number, np.ndarray, jax.Array)
    ):
        raise ValueError(f"amount must be a fraction in [0, 1) or an int count, got {amount!r}")
    if np.ndim(amount) != 0:
        raise ValueError(f"amount must be a scalar, got shape {np.shape(amount)}")
    value = np.asarray(amount).item()
    if isinstance(value, numbers.Integral):
        if not 0 <= value < total:
            raise ValueError(
                f"amount={value} (a count) must be in [0, {total}): the selected leaves hold "
                f"{total} weights and pruning all of them is not allowed"
            )
        return int(value)
    if not (isinstance(value, numbers.Real) and 0.0 <= value < 1.0):
        raise ValueError(f"amount={value!r} (a fraction) must be in [0, 1)")
    k = int(round(value * total))
    check_not_all_removed("amount", value, k, total)
    return k


def check_not_all_removed(
    name: str, value: Any, count: int, total: int, what: str = "weights"
) -> None:
    """Raises a ``ValueError`` when the fraction ``value`` of ``name`` removes all ``total`` units.

    Args:
      name: the argument's name in the message (``'amount'``, ``'final_sparsity'``).
      value: the fraction passed.
      count: the number of units it removes (``round(value * total)``).
      total: the number of units (weights, blocks or channels) that take part.
      what: the units' name in the message.

    Raises:
      ValueError: if ``0 < total <= count``.
    """
    if total and count >= total:
        raise ValueError(
            f"{name}={value!r} of {total} {what} rounds to all {total}: pruning all of them is "
            "not allowed; pass a smaller fraction"
        )


def check_layerwise_room(
    name: str, value: Any, count: int, sizes: Sequence[int], what: str = "weights"
) -> None:
    r"""Raises a ``ValueError`` when a layer-wise split of ``count`` units must empty a leaf.

    :func:`sparsejax.pruning.distribution.layer_remove_counts` keeps one unit of
    every non-empty leaf while :math:`K \le \sum_l (n_l - 1)`; a larger
    :math:`K` prunes some leaf whole.

    Args:
      name: the argument's name in the message (``'amount'``, ``'final_sparsity'``).
      value: the fraction passed.
      count: :math:`K`, the number of units it removes in all.
      sizes: :math:`n_l`, the number of units of each selected leaf.
      what: the units' name in the message.

    Raises:
      ValueError: if ``count > sum(max(n - 1, 0) for n in sizes)``.
    """
    spare = sum(max(int(n) - 1, 0) for n in sizes)
    if count > spare:
        raise ValueError(
            f"{name}={value!r} removes {count} of the {sum(int(n) for n in sizes)} {what}, but "
            f"with scope='layerwise' only {spare} can go while every selected leaf keeps one: a "
            "whole leaf would be pruned; pass a smaller fraction, or leave the small leaves out "
            "with mask="
        )


def _concrete_scalar(amount: Any) -> int | float | None:
    """A concrete real scalar ``amount`` (Python, NumPy or JAX) as a Python number, or ``None``."""
    if isinstance(amount, (jax.core.Tracer, bool, np.bool_)) or not isinstance(
        amount, (numbers.Real, np.ndarray, jax.Array)
    ):
        return None
    if np.ndim(amount) != 0:
        return None
    value = np.asarray(amount).item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return value


def _check_scores(scores: PyTree, params: PyTree, selected: PyTree) -> list[jax.Array]:
    """The importance scores of the selected leaves, in leaf order."""
    paths = jax.tree.unflatten(
        jax.tree.structure(params), [path for path, _ in leaves_with_paths(params)]
    )

    def leaf(s: Any, p: Any, sel: Any, path: Any) -> Any:
        if s is None:
            if any(jax.tree.leaves(sel)):
                where = path if isinstance(path, str) else jax.tree.leaves(path)[0]
                raise ValueError(f"importance_scores is None at {where!r}, a leaf being pruned")
            return None
        if not sel:
            return None
        if jnp.shape(s) != jnp.shape(p):
            raise ValueError(
                f"importance_scores at {path!r} has shape {jnp.shape(s)}, "
                f"but the leaf has shape {jnp.shape(p)}"
            )
        return jnp.asarray(s)

    out = map_support(leaf, scores, params, selected, paths, what="importance_scores")
    return jax.tree.leaves(out)


def prune(
    params: PyTree,
    amount: float | int | None,
    scope: str = "global",
    distribution: str = "uniform",
    importance_scores: PyTree | None = None,
    mask: Mask = None,
    *,
    erk_power_scale: float = 1.0,
    pattern: str | None = None,
) -> tuple[PyTree, Support]:
    r"""One-shot magnitude pruning: removes the weights with the smallest scores.

    With scores :math:`s_j = |w_j|` (or ``importance_scores``),

    .. math::

      m_j = \mathbb{1}\big[\operatorname{rank}(s_j) > k\big], \qquad w \leftarrow w \odot m,

    where the ranks run over all selected leaves together (``scope='global'``,
    :math:`k = K`) or over each leaf alone (``scope='layerwise'``, :math:`k =
    k_l` from ``distribution``; see :func:`layer_remove_counts`: each
    :math:`k_l` is the floor or ceiling of its share and :math:`\sum_l k_l = K`
    exactly). Ties are broken by position: leaves in ``jax.tree.leaves``
    order, entries in row-major order, earlier ones removed first, exactly as
    a stable ``argsort`` would. The threshold is found without sorting, on
    scores read as float32 (see :mod:`sparsejax.select`); where a selected
    leaf's scores are float64 or integers of more than 16 bits, which float32
    may misorder, they are ranked exactly by a full sort instead (of that leaf,
    or of all selected leaves with ``scope='global'``). Works under
    ``jax.jit`` with ``amount``, ``scope``, ``distribution`` and ``mask`` static.

    Args:
      params: the parameter pytree (``None`` leaves allowed).
      amount: a fraction in ``[0, 1)`` of the selected weights (``round(amount
        * N)`` weights), or an ``int`` count in ``[0, N)``, like
        ``torch.nn.utils.prune``.
      scope: ``'global'`` (one threshold for all selected leaves) or
        ``'layerwise'``.
      distribution: with ``scope='layerwise'``, ``'uniform'`` (every leaf at
        the same sparsity) or ``'erk'`` (Erdős–Rényi-kernel, see
        :func:`erk_densities`). ``scope='global'`` needs ``'uniform'``.
      importance_scores: a pytree with the params' structure (``None`` allowed
        at leaves that are not pruned) giving the score of each weight; the
        lowest scores are removed. Default: :math:`|w|`.
      mask: which leaves are pruned: ``None`` (the default) for every leaf,
        a regex on the normalised paths, a pytree of booleans or a callable
        ``params -> pytree of booleans`` such as
        :func:`sparsejax.tree.weights_only` (kernels, not biases or norms: the
        usual choice).
      erk_power_scale: the power :math:`p` of ERK (1: ERK, 0: uniform).
      pattern: the sparsity pattern (:mod:`sparsejax.patterns`): ``None``
        (unstructured), ``'N:M'`` (e.g. ``'2:4'``: ``amount`` must then be
        ``None`` or :math:`1 - N/M`; ``scope`` and ``distribution`` do not
        apply), blocks ``'RxC'`` or ``'channel'`` / ``'channel:l1'`` (``amount``
        is then the fraction of blocks or channels removed, rounded to whole
        groups, and must leave at least one of them; a block's score is the sum
        of its scores, a channel's the L2 or L1 norm). Every selected leaf
        must be a kernel the pattern tiles (else a ``ValueError`` names it).

    Returns:
      ``(pruned_params, support)``: the params with the removed weights set to
      exactly zero (dtypes kept), and the boolean support (``True`` = kept) with
      ``None`` for the leaves that were not pruned.

    Raises:
      ValueError: for an ``amount`` out of range (or that rounds to every
        weight, block or channel), a ``mask`` that selects no
        leaf, an unknown ``scope``/``distribution``, or
        ``importance_scores`` that do not match the params.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> params = {'dense': {'kernel': jnp.array([[0.1, -2.0], [0.5, 0.0]]),
      ...                     'bias': jnp.array([0.01, 0.02])}}
      >>> pruned, support = sj.pruning.prune(params, 0.5, mask=sj.tree.weights_only)
      >>> pruned['dense']['kernel']
      Array([[ 0. , -2. ],
             [ 0.5,  0. ]], dtype=float32)
      >>> support['dense']['bias'] is None
      True

    References:
      Han, Pool, Tran and Dally, *Learning both Weights and Connections for
      Efficient Neural Networks*, NeurIPS 2015; Evci et al., *Rigging the
      Lottery: Making All Tickets Winners*, ICML 2020 (ERK).
    """
    check_choice("scope", scope, ("global", "layerwise"))
    check_choice("distribution", distribution, ("uniform", "erk"))
    if scope == "global" and distribution != "uniform":
        raise ValueError(
            f"distribution={distribution!r} sets per-layer sparsities and needs "
            "scope='layerwise'; scope='global' uses one threshold for all leaves"
        )
    if isinstance(erk_power_scale, (int, float)) and not erk_power_scale >= 0:
        raise ValueError(f"erk_power_scale must be >= 0, got {erk_power_scale!r}")
    structure = parse_pattern(pattern)
    selected = resolve_mask(mask, params, nonempty=True)
    if structure.kind != "unstructured":
        return _prune_pattern(
            params, amount, scope, distribution, importance_scores, selected, erk_power_scale,
            structure,
        )
    if amount is None:
        raise ValueError("amount=None is only allowed with an N:M pattern (e.g. pattern='2:4')")
    leaves = jax.tree.leaves(params)
    flags = jax.tree.leaves(selected)
    chosen = [x for x, s in zip(leaves, flags) if s]
    check_nonempty([np.shape(x) for x in chosen])
    total = sum(int(np.size(x)) for x in chosen)
    k = num_to_remove(amount, total)

    if importance_scores is None:
        scores = [jnp.abs(x) for x in chosen]
    else:
        scores = _check_scores(importance_scores, params, selected)
    if scope == "global":
        counts = np.asarray([k])
    else:
        shapes = [tuple(np.shape(x)) for x in chosen]
        check_layerwise_room("amount", amount, k, [math.prod(shape) for shape in shapes])
        counts = layer_remove_counts(shapes, k, distribution, erk_power_scale)
    pruned = pruned_entries(scores, jnp.asarray(counts, jnp.int32), scope == "layerwise")
    it = iter(~p.reshape(np.shape(x)) for p, x in zip(pruned, chosen))
    support = jax.tree.unflatten(
        jax.tree.structure(params), [next(it) if s else None for s in flags]
    )
    return apply_support(params, support), support



def _prune_pattern(
    params: PyTree,
    amount: Any,
    scope: str,
    distribution: str,
    importance_scores: PyTree | None,
    selected: PyTree,
    erk_power_scale: float,
    pattern: Any,
) -> tuple[PyTree, Support]:
    """:func:`prune` with a structured pattern (N:M, blocks, channels)."""
    flags = jax.tree.leaves(selected)
    rows = [(path, x) for (path, x), s in zip(leaves_with_paths(params), flags) if s]
    shapes = [tuple(np.shape(x)) for _, x in rows]
    check_leaves(pattern, shapes, [p for p, _ in rows])
    value = _concrete_scalar(amount)
    if pattern.kind == "n:m":
        target = 1.0 - pattern.n / pattern.m
        if amount is not None and not (value is not None and abs(value - target) < 1e-9):
            raise ValueError(
                f"pattern {pattern} removes {target:g} of every group; pass amount=None "
                f"(or amount={target:g}), got amount={amount!r}"
            )
        sparsity: Any = target
    else:
        what = "blocks" if pattern.kind == "block" else "channels"
        if not (isinstance(value, float) and 0.0 <= value < 1.0):
            raise ValueError(
                f"with pattern {pattern}, amount must be a fraction in [0, 1) of the "
                f"{what}, got {amount!r}"
            )
        sizes = [math.prod(group_shape(pattern, shape)) for shape in shapes]
        count = int(round(value * sum(sizes)))
        check_not_all_removed("amount", value, count, sum(sizes), what)
        if scope == "layerwise":
            check_layerwise_room("amount", value, count, sizes, what)
        sparsity = value
    if importance_scores is None:
        scores = [jnp.abs(x) for _, x in rows]
    else:
        scores = _check_scores(importance_scores, params, selected)
    keep = pattern_keep(scores, pattern, sparsity, scope, distribution, erk_power_scale)
    it = iter(keep)
    support = jax.tree.unflatten(
        jax.tree.structure(params), [next(it) if s else None for s in flags]
    )
    return apply_support(params, support), support
