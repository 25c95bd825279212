"""Pruning masks: pytrees of booleans with ``None`` for the leaves that stay dense.

A *masks* pytree has the structure of the params, with

* a boolean array of the leaf's shape where the leaf is pruned: ``True`` keeps
  the weight, ``False`` prunes it;
* ``None`` where the leaf stays dense (biases, normalisation scales, scalars,
  and every leaf the filter leaves out).

Masks can be *packed* (:func:`pack_masks`): each boolean array becomes a flat
``uint8`` array of bits, 8x smaller; :func:`apply_masks` takes either form.

Which leaves take part is chosen with a *filter*, as everywhere in
:mod:`sparsejax.pruning`: ``None`` for :func:`sparsejax.tree.weights_only`
(leaves with ``ndim > 1``), a regular expression searched in each leaf's
normalised path, a pytree of booleans, or a callable ``params -> pytree of
booleans`` (e.g. ``sparsejax.tree.path_filter(predicate)``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import jax
import jax.numpy as jnp

from sparsejax import summary
from sparsejax.tree import PyTree, path_filter, path_str, resolve_mask, weights_only

__all__ = [
    "Filter",
    "Masks",
    "apply_masks",
    "mask_intersection",
    "mask_sparsity",
    "mask_sparsity_per_leaf",
    "mask_union",
    "masks_from_zeros",
    "pack_masks",
    "unpack_masks",
]

Masks: TypeAlias = PyTree
"""A pytree with the params' structure: boolean arrays (``True`` = kept) or ``None`` (dense)."""

Filter: TypeAlias = PyTree | Callable[[PyTree], PyTree] | str | None
"""Which leaves take part: ``None`` (weights only), a regex, a bool pytree or a callable."""


def _is_none(x: Any) -> bool:
    return x is None


def selected_leaves(filter: Filter, params: PyTree) -> PyTree:
    """Resolves a filter to a pytree of Python booleans with the params' structure.

    Args:
      filter: ``None`` (:func:`sparsejax.tree.weights_only`), a regular
        expression searched in each normalised leaf path, a pytree of booleans
        (the params' structure or a prefix of it), or a callable ``params ->
        such a pytree``.
      params: the parameter pytree.

    Returns:
      A pytree with the params' structure and a ``bool`` at each leaf.

    Example:
      >>> import jax.numpy as jnp
      >>> from sparsejax import pruning
      >>> pruning.selected_leaves(None, {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones(2)})
      {'bias': False, 'kernel': True}
    """
    if filter is None:
        filter = weights_only
    elif isinstance(filter, str):
        filter = path_filter(filter)
    return resolve_mask(filter, params)


def map_masks(
    fn: Callable[..., Any], masks: Masks, *trees: PyTree, what: str = "masks"
) -> PyTree:
    """``jax.tree.map`` led by ``masks``, with ``None`` mask leaves passed to ``fn``.

    ``trees`` must have the masks' structure, where a ``None`` of the masks may
    stand for any subtree. Raises a ``ValueError`` naming both structures when
    they do not match.
    """
    treedef = jax.tree.structure(masks, is_leaf=_is_none)
    try:
        columns = [treedef.flatten_up_to(tree) for tree in trees]
    except ValueError as e:
        raise ValueError(
            f"{what} do not match the params: they must have the params' structure, "
            f"with None for the leaves that stay dense.\n  {what}: {treedef}\n  params: "
            f"{jax.tree.structure(trees[0]) if trees else None}"
        ) from e
    leaves = treedef.flatten_up_to(masks)
    return treedef.unflatten([fn(m, *xs) for m, *xs in zip(leaves, *columns)])


def _check_shape(m: Any, x: Any, path: str = "") -> None:
    if m is None:
        return
    where = f" at {path!r}" if path else ""
    if not hasattr(x, "shape") or not hasattr(m, "shape"):
        raise ValueError(
            f"masks do not match the params: mask{where} is {type(m).__name__}, "
            f"the params hold {type(x).__name__} there"
        )
    if jnp.result_type(m) == jnp.uint8:  # packed
        if m.shape != ((x.size + 7) // 8,):
            raise ValueError(
                f"packed mask{where} has shape {m.shape}, expected ({(x.size + 7) // 8},) "
                f"for a leaf of shape {x.shape}"
            )
        return
    if jnp.result_type(m) != jnp.bool_:
        raise ValueError(f"mask{where} must be boolean (or packed uint8), got {jnp.result_type(m)}")
    if m.shape != x.shape:
        raise ValueError(f"mask{where} has shape {m.shape}, but the leaf has shape {x.shape}")


def check_masks(masks: Masks, params: PyTree) -> None:
    """Raises ``ValueError`` unless ``masks`` fits ``params`` (structure, shapes, dtype).

    Example:
      >>> import jax.numpy as jnp
      >>> from sparsejax import pruning
      >>> pruning.check_masks({'w': jnp.ones(3, bool)}, {'w': jnp.ones(2)})
      Traceback (most recent call last):
      ...
      ValueError: mask at 'w' has shape (3,), but the leaf has shape (2,)
    """
    paths = jax.tree_util.tree_map_with_path(lambda p, _: path_str(p), params)
    # The paths tree has the params' structure, so the same map checks both.
    map_masks(
        lambda m, x, p: _check_shape(m, x, p if isinstance(p, str) else ""), masks, params, paths
    )


def _unpack_leaf(m: jax.Array, like: Any) -> jax.Array:
    if jnp.result_type(m) == jnp.uint8:
        return jnp.unpackbits(m, count=like.size).reshape(like.shape).astype(bool)
    return m


def apply_masks(params: PyTree, masks: Masks) -> PyTree:
    r"""Zeroes the pruned weights: :math:`w \odot m` leaf by leaf.

    .. math::

      w_j \leftarrow \begin{cases} w_j & m_j = \text{True} \\ 0 & m_j = \text{False} \end{cases}

    Leaves whose mask is ``None`` are returned unchanged; dtypes are kept.

    Args:
      params: the parameter pytree.
      masks: boolean (or packed ``uint8``) masks with the params' structure,
        ``None`` for dense leaves.

    Returns:
      The params with the pruned entries set to exactly zero.

    Raises:
      ValueError: if the masks' structure or shapes do not match the params.

    Example:
      >>> import jax.numpy as jnp
      >>> from sparsejax import pruning
      >>> params = {'w': jnp.array([[1.0, -2.0]]), 'b': jnp.array([3.0])}
      >>> pruning.apply_masks(params, {'w': jnp.array([[False, True]]), 'b': None})['w']
      Array([[ 0., -2.]], dtype=float32)
    """
    check_masks(masks, params)

    def leaf(m: Any, p: Any) -> Any:
        if m is None or p is None:
            return p
        return jnp.where(_unpack_leaf(m, p), p, jnp.zeros_like(p))

    return map_masks(leaf, masks, params)


def masks_from_zeros(params: PyTree, filter: Filter = None) -> Masks:
    """The masks of an already pruned network: ``True`` where a weight is non-zero.

    Args:
      params: the parameter pytree.
      filter: which leaves get a mask (default: weights only, see the module
        docstring); the others get ``None``.

    Returns:
      Masks with ``w != 0`` on the selected leaves and ``None`` elsewhere.

    Example:
      >>> import jax.numpy as jnp
      >>> from sparsejax import pruning
      >>> pruning.masks_from_zeros({'w': jnp.array([[0.0, 2.0]]), 'b': jnp.zeros(2)})
      {'b': None, 'w': Array([[False,  True]], dtype=bool)}
    """
    selected = selected_leaves(filter, params)
    return jax.tree.map(lambda p, s: (p != 0) if s else None, params, selected)


def _combine(op: Callable[[Any, Any], Any], dense_wins: bool, masks: tuple[Masks, ...]) -> Masks:
    if not masks:
        raise ValueError("at least one masks pytree is needed")

    def pair(a: Any, b: Any) -> Any:
        if a is None:
            return None if dense_wins else b
        if b is None:
            return None if dense_wins else a
        if jnp.shape(a) != jnp.shape(b):
            raise ValueError(f"masks have different shapes: {jnp.shape(a)} and {jnp.shape(b)}")
        return op(a, b)

    out = masks[0]
    for other in masks[1:]:
        out = map_masks(pair, out, other, what="masks")
    return out


def mask_intersection(*masks: Masks) -> Masks:
    """Keeps a weight only where every mask keeps it (logical AND; ``None`` = all kept).

    Example:
      >>> import jax.numpy as jnp
      >>> from sparsejax import pruning
      >>> a = {'w': jnp.array([True, True, False]), 'v': None}
      >>> b = {'w': jnp.array([True, False, True]), 'v': jnp.array([False])}
      >>> pruning.mask_intersection(a, b)
      {'v': Array([False], dtype=bool), 'w': Array([ True, False, False], dtype=bool)}
    """
    return _combine(jnp.logical_and, False, masks)


def mask_union(*masks: Masks) -> Masks:
    """Keeps a weight where any mask keeps it (logical OR; ``None`` = all kept).

    Example:
      >>> import jax.numpy as jnp
      >>> from sparsejax import pruning
      >>> a = {'w': jnp.array([True, True, False]), 'v': None}
      >>> b = {'w': jnp.array([True, False, True]), 'v': jnp.array([False])}
      >>> pruning.mask_union(a, b)
      {'v': None, 'w': Array([ True,  True,  True], dtype=bool)}
    """
    return _combine(jnp.logical_or, True, masks)


def pack_masks(masks: Masks) -> Masks:
    """Packs each boolean mask into a flat ``uint8`` array of bits (8x less memory).

    :func:`apply_masks` and :func:`unpack_masks` take packed masks; unpacking
    needs the params for the leaf shapes.

    Example:
      >>> import jax.numpy as jnp
      >>> from sparsejax import pruning
      >>> pruning.pack_masks({'w': jnp.array([[True, False], [False, True]])})
      {'w': Array([144], dtype=uint8)}
    """
    return jax.tree.map(lambda m: jnp.packbits(jnp.ravel(m)), masks)


def unpack_masks(packed: Masks, params: PyTree) -> Masks:
    """Inverse of :func:`pack_masks`: boolean masks shaped like the params' leaves.

    Example:
      >>> import jax.numpy as jnp
      >>> from sparsejax import pruning
      >>> params = {'w': jnp.ones((2, 2))}
      >>> pruning.unpack_masks({'w': jnp.array([144], jnp.uint8)}, params)['w']
      Array([[ True, False],
             [False,  True]], dtype=bool)
    """
    check_masks(packed, params)
    return map_masks(lambda m, p: None if m is None else _unpack_leaf(m, p), packed, params)


def mask_sparsity(masks: Masks) -> jax.Array:
    """Share of pruned entries (``False``) over all the mask arrays; ``None`` leaves don't count.

    Works under ``jit`` (it is :func:`sparsejax.sparsity` of the masks).

    Example:
      >>> import jax.numpy as jnp
      >>> from sparsejax import pruning
      >>> pruning.mask_sparsity({'w': jnp.array([True, False, False, False]), 'b': None})
      Array(0.75, dtype=float32)
    """
    return summary.sparsity(masks)


def mask_sparsity_per_leaf(masks: Masks) -> dict[str, float]:
    """Share of pruned entries of each mask array, by normalised path.

    Example:
      >>> import jax.numpy as jnp
      >>> from sparsejax import pruning
      >>> pruning.mask_sparsity_per_leaf({'a': {'kernel': jnp.array([True, False])}, 'b': None})
      {'a/kernel': 0.5}
    """
    return {row.path: row.sparsity for row in summary.sparsity_summary(masks)}
