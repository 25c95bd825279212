r"""Supports: which entries of the pruned leaves are kept, as pytrees of booleans.

A *support* (the set of non-zero positions, :math:`\operatorname{supp}(w)`)
has the structure of the params, with

* a boolean array of the leaf's shape where the leaf is pruned: ``True`` keeps
  the weight, ``False`` prunes it;
* ``None`` where the leaf stays dense (every leaf the ``mask=`` leaves out).

A support is per *entry*; the ``mask=`` argument of every sparsejax function
chooses *leaves* (:func:`sparsejax.tree.resolve_mask`: ``None`` for every
leaf, a path regex, a pytree of booleans or a callable such as
:func:`sparsejax.tree.weights_only`).

Supports can be *packed* (:func:`pack_support`): each boolean array becomes a
flat ``uint8`` array of bits, 8x smaller; :func:`apply_support` takes either form.
The bit layout is :func:`pack_bits`/:func:`unpack_bits`, also used by the
trainer's checkpoints (:mod:`sparsejax.train.checkpoint`) for every boolean leaf.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeAlias

import jax
import jax.numpy as jnp

from sparsejax import summary
from sparsejax.tree import Mask, PyTree, path_str, resolve_mask

__all__ = [
    "Support",
    "apply_support",
    "support_intersection",
    "support_sparsity",
    "support_sparsity_per_leaf",
    "support_union",
    "support_from_zeros",
    "pack_support",
    "unpack_support",
    "pack_bits",
    "unpack_bits",
]

Support: TypeAlias = PyTree
"""A pytree with the params' structure: boolean arrays (``True`` = kept) or ``None`` (dense)."""

def _is_none(x: Any) -> bool:
    return x is None


def map_support(
    fn: Callable[..., Any], support: Support, *trees: PyTree, what: str = "support"
) -> PyTree:
    """``jax.tree.map`` led by ``support``, with ``None`` mask leaves passed to ``fn``.

    ``trees`` must have the support' structure, where a ``None`` of the support may
    stand for any subtree. Raises a ``ValueError`` naming both structures when
    they do not match.
    """
    treedef = jax.tree.structure(support, is_leaf=_is_none)
    try:
        columns = [treedef.flatten_up_to(tree) for tree in trees]
    except ValueError as e:
        raise ValueError(
            f"{what} does not match the params: it must have the params' structure, "
            f"with None for the leaves that stay dense.\n  {what}: {treedef}\n  params: "
            f"{jax.tree.structure(trees[0]) if trees else None}"
        ) from e
    leaves = treedef.flatten_up_to(support)
    return treedef.unflatten([fn(m, *xs) for m, *xs in zip(leaves, *columns)])


def _check_shape(m: Any, x: Any, path: str = "") -> None:
    if m is None:
        return
    where = f" at {path!r}" if path else ""
    if not hasattr(x, "shape") or not hasattr(m, "shape"):
        raise ValueError(
            f"support does not match the params: the support{where} is {type(m).__name__}, "
            f"the params hold {type(x).__name__} there"
        )
    if _is_packed(m):
        if m.shape != (_packed_size(x.shape),):
            raise ValueError(
                f"packed mask{where} has shape {m.shape}, expected ({_packed_size(x.shape)},) "
                f"for a leaf of shape {x.shape}"
            )
        return
    if jnp.result_type(m) != jnp.bool_:
        raise ValueError(f"mask{where} must be boolean (or packed uint8), got {jnp.result_type(m)}")
    if m.shape != x.shape:
        raise ValueError(f"mask{where} has shape {m.shape}, but the leaf has shape {x.shape}")


def check_support(support: Support, params: PyTree) -> None:
    """Raises ``ValueError`` unless ``support`` fits ``params`` (structure, shapes, dtype).

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> sj.pruning.check_support({'w': jnp.ones(3, bool)}, {'w': jnp.ones(2)})
      Traceback (most recent call last):
      ...
      ValueError: mask at 'w' has shape (3,), but the leaf has shape (2,)
    """
    paths = jax.tree_util.tree_map_with_path(lambda p, _: path_str(p), params)
    # The paths tree has the params' structure, so the same map checks both.
    map_support(
        lambda m, x, p: _check_shape(m, x, p if isinstance(p, str) else ""), support, params, paths
    )


def _packed_size(shape: tuple[int, ...]) -> int:
    """The length of :func:`pack_bits` of a boolean array of ``shape``: ``ceil(size / 8)``."""
    return (math.prod(shape) + 7) // 8


def pack_bits(mask: jax.Array) -> jax.Array:
    r"""A boolean array as a flat ``uint8`` array of bits, 8 entries per byte (big-endian).

    .. math::

      b_k = \sum_{j=0}^{7} m_{8k + j} \, 2^{7 - j}, \qquad k = 0, \dots, \lceil n / 8 \rceil - 1

    over the row-major (C-order) flat index of ``mask`` (:math:`n` entries); the
    missing entries of the last byte count as ``False`` (zero bits). The shape is
    not stored: :func:`unpack_bits` takes it back from the caller. Scalars pack to
    one byte, empty arrays to zero bytes. Works under ``jit``.

    Args:
      mask: a boolean array of any shape.

    Returns:
      A ``uint8`` array of shape ``(ceil(mask.size / 8),)``.

    Raises:
      ValueError: if ``mask`` is not boolean.

    Example:
      >>> import jax.numpy as jnp
      >>> from sparsejax.pruning import pack_bits
      >>> pack_bits(jnp.array([[True, False, True], [True, True, True]]))
      Array([188], dtype=uint8)

    References:
      NumPy's ``packbits`` (``bitorder='big'``), the layout used.
    """
    if jnp.result_type(mask) != jnp.bool_:
        raise ValueError(f"pack_bits packs boolean arrays, got {jnp.result_type(mask)}")
    return jnp.packbits(jnp.ravel(mask))


def unpack_bits(packed: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    r"""Inverse of :func:`pack_bits`: the boolean array of ``shape`` whose bits ``packed`` holds.

    .. math::

      m_i = \left\lfloor b_{\lfloor i/8 \rfloor} / 2^{7 - (i \bmod 8)} \right\rfloor \bmod 2,
      \qquad i = 0, \dots, n - 1

    (the padding bits of the last byte are ignored). Works under ``jit``.

    Args:
      packed: a ``uint8`` array of shape ``(ceil(prod(shape) / 8),)``.
      shape: the shape of the boolean array.

    Returns:
      A boolean array of ``shape``.

    Raises:
      ValueError: if ``packed`` is not ``uint8`` or its length does not fit ``shape``.

    Example:
      >>> import jax.numpy as jnp
      >>> from sparsejax.pruning import unpack_bits
      >>> unpack_bits(jnp.array([188], jnp.uint8), (2, 3))
      Array([[ True, False,  True],
             [ True,  True,  True]], dtype=bool)

    References:
      NumPy's ``unpackbits`` (``bitorder='big'``, ``count``), the layout used.
    """
    shape = tuple(int(d) for d in shape)
    if jnp.result_type(packed) != jnp.uint8:
        raise ValueError(f"unpack_bits takes packed uint8 arrays, got {jnp.result_type(packed)}")
    if jnp.shape(packed) != (_packed_size(shape),):
        raise ValueError(f"packed bits of shape {jnp.shape(packed)} do not fit a boolean array of "
                         f"shape {shape} (expected ({_packed_size(shape)},))")
    return jnp.unpackbits(packed, count=math.prod(shape)).reshape(shape).astype(bool)


def _unpack_leaf(m: jax.Array, like: Any) -> jax.Array:
    if jnp.result_type(m) == jnp.uint8:
        return unpack_bits(m, like.shape)
    return m


def apply_support(params: PyTree, support: Support) -> PyTree:
    r"""Zeroes the pruned weights: :math:`w \odot m` leaf by leaf.

    .. math::

      w_j \leftarrow \begin{cases} w_j & m_j = \text{True} \\ 0 & m_j = \text{False} \end{cases}

    Leaves whose mask is ``None`` are returned unchanged; dtypes are kept.

    Args:
      params: the parameter pytree.
      support: boolean (or packed ``uint8``) support with the params' structure,
        ``None`` for dense leaves.

    Returns:
      The params with the pruned entries set to exactly zero.

    Raises:
      ValueError: if the support's structure or shapes do not match the params.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> params = {'w': jnp.array([[1.0, -2.0]]), 'b': jnp.array([3.0])}
      >>> sj.pruning.apply_support(params, {'w': jnp.array([[False, True]]), 'b': None})['w']
      Array([[ 0., -2.]], dtype=float32)
    """
    check_support(support, params)

    def leaf(m: Any, p: Any) -> Any:
        if m is None or p is None:
            return p
        return jnp.where(_unpack_leaf(m, p), p, jnp.zeros_like(p))

    return map_support(leaf, support, params)


def support_from_zeros(params: PyTree, mask: Mask = None) -> Support:
    """The support of an already pruned network: ``True`` where a weight is non-zero.

    Args:
      params: the parameter pytree.
      mask: which leaves get a support (default: every leaf; see
        :func:`sparsejax.tree.resolve_mask`); the others get ``None``.

    Returns:
      Support with ``w != 0`` on the selected leaves and ``None`` elsewhere.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> sj.pruning.support_from_zeros({'w': jnp.array([[0.0, 2.0]]), 'b': jnp.zeros(2)},
      ...                               mask=sj.tree.weights_only)
      {'b': None, 'w': Array([[False,  True]], dtype=bool)}
    """
    selected = resolve_mask(mask, params, nonempty=True)
    return jax.tree.map(lambda p, s: (p != 0) if s else None, params, selected)


def _is_packed(m: Any) -> bool:
    return m is not None and jnp.result_type(m) == jnp.uint8


def _combine(
    op: Callable[[Any, Any], Any],
    bit_op: Callable[[Any, Any], Any],
    dense_wins: bool,
    support: tuple[Support, ...],
) -> Support:
    if not support:
        raise ValueError("at least one support pytree is needed")

    def pair(a: Any, b: Any) -> Any:
        if a is None:
            return None if dense_wins else b
        if b is None:
            return None if dense_wins else a
        if _is_packed(a) != _is_packed(b):
            raise ValueError(
                "cannot combine a packed (uint8) support leaf with a boolean one: pass both "
                "packed (pack_support) or both boolean (unpack_support with the params)"
            )
        if jnp.shape(a) != jnp.shape(b):
            raise ValueError(f"support have different shapes: {jnp.shape(a)} and {jnp.shape(b)}")
        return bit_op(a, b) if _is_packed(a) else op(a, b)

    out = support[0]
    for other in support[1:]:
        out = map_support(pair, out, other, what="support")
    return out


def support_intersection(*support: Support) -> Support:
    """Keeps a weight only where every mask keeps it (logical AND; ``None`` = all kept).

    Packed support (:func:`pack_support`) are combined bit by bit and stay
    packed; a packed leaf and a boolean one at the same place are a ``ValueError``.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> a = {'w': jnp.array([True, True, False]), 'v': None}
      >>> b = {'w': jnp.array([True, False, True]), 'v': jnp.array([False])}
      >>> sj.pruning.support_intersection(a, b)
      {'v': Array([False], dtype=bool), 'w': Array([ True, False, False], dtype=bool)}
    """
    return _combine(jnp.logical_and, jnp.bitwise_and, False, support)


def support_union(*support: Support) -> Support:
    """Keeps a weight where any mask keeps it (logical OR; ``None`` = all kept).

    Packed support are combined bit by bit and stay packed (the padding bits
    stay zero), as in :func:`support_intersection`.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> a = {'w': jnp.array([True, True, False]), 'v': None}
      >>> b = {'w': jnp.array([True, False, True]), 'v': jnp.array([False])}
      >>> sj.pruning.support_union(a, b)
      {'v': None, 'w': Array([ True,  True,  True], dtype=bool)}
    """
    return _combine(jnp.logical_or, jnp.bitwise_or, True, support)


def pack_support(support: Support) -> Support:
    """Packs each boolean mask into a flat ``uint8`` array of bits (8x less memory).

    :func:`apply_support` and :func:`unpack_support` take packed support; unpacking
    needs the params for the leaf shapes.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> sj.pruning.pack_support({'w': jnp.array([[True, False], [False, True]])})
      {'w': Array([144], dtype=uint8)}
    """
    return jax.tree.map(pack_bits, support)


def unpack_support(packed: Support, params: PyTree) -> Support:
    """Inverse of :func:`pack_support`: boolean support shaped like the params' leaves.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> params = {'w': jnp.ones((2, 2))}
      >>> sj.pruning.unpack_support({'w': jnp.array([144], jnp.uint8)}, params)['w']
      Array([[ True, False],
             [False,  True]], dtype=bool)
    """
    check_support(packed, params)
    return map_support(lambda m, p: None if m is None else _unpack_leaf(m, p), packed, params)


def _unpacked(support: Support, params: PyTree | None) -> Support:
    """``support`` with its packed leaves unpacked (a ``ValueError`` for them without params)."""
    if params is not None:
        return unpack_support(support, params)
    packed = [
        path_str(path)
        for path, m in jax.tree_util.tree_leaves_with_path(support, is_leaf=_is_none)
        if _is_packed(m)
    ]
    if packed:
        raise ValueError(
            f"support at {packed[0]!r} is packed (uint8): its bytes are not entries; pass "
            "params= (for the leaf shapes) or unpack_support(support, params) first"
        )
    return support


def support_sparsity(support: Support, params: PyTree | None = None) -> jax.Array:
    """Share of pruned entries (``False``) over all the mask arrays; ``None`` leaves don't count.

    Works under ``jit`` (it is :func:`sparsejax.sparsity` of the support).

    Args:
      support: boolean support, or packed (:func:`pack_support`) with ``params``.
      params: the params, whose shapes unpack a packed support (see
        :func:`unpack_support`); needed only for packed leaves.

    Returns:
      A float32 scalar in ``[0, 1]``.

    Raises:
      ValueError: for a packed leaf without ``params``.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> sj.pruning.support_sparsity({'w': jnp.array([True, False, False, False]), 'b': None})
      Array(0.75, dtype=float32)
    """
    # mask=True: a support's leaves are booleans, which the default mask (float leaves) leaves out
    return summary.sparsity(_unpacked(support, params), True)


def support_sparsity_per_leaf(support: Support, params: PyTree | None = None) -> dict[str, float]:
    """Share of pruned entries of each mask array, by normalised path.

    Args:
      support: boolean support, or packed (:func:`pack_support`) with ``params``.
      params: the params, whose shapes unpack a packed support; needed only
        for packed leaves.

    Returns:
      A dict from path to share of pruned entries.

    Raises:
      ValueError: for a packed leaf without ``params``.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> sj.pruning.support_sparsity_per_leaf({'a': {'kernel': jnp.array([True, False])}, 'b': None})
      {'a/kernel': 0.5}
    """
    rows = summary.sparsity_summary(_unpacked(support, params), True)  # boolean leaves: mask=True
    return {row.path: row.sparsity for row in rows}
