"""Sparsity of parameter pytrees: one number, or a table per leaf.

The leaves counted are chosen with ``mask=`` (:func:`sparsejax.tree.resolve_mask`).
The default, ``None``, counts every floating-point leaf (float and complex
arrays, Python floats): integer, boolean and PRNG-key leaves (step counters,
flags, the RNG state in ``nnx.state(model)``) are left out, so the whole state of
a model can be summarised. A mask that is given must select at least one leaf of
params that have leaves (a ``ValueError`` names the paths), as everywhere in
sparsejax; with ``mask=None`` a tree with no floating-point leaf gives 0.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax.patterns import check_pattern_shape, kept_groups, parse_pattern
from sparsejax.tree import Mask, PyTree, leaves_with_paths, resolve_mask

__all__ = ["LeafSparsity", "format_sparsity", "sparsity", "sparsity_summary"]


def _resolve(mask: Mask, params: PyTree) -> PyTree:
    """The selection of a summary: a given mask must select a leaf (``None`` may select none)."""
    return resolve_mask(mask, params, nonempty=mask is not None)


def _selected_leaves(params: PyTree, mask: Mask) -> list[jax.Array]:
    selected = _resolve(mask, params)
    return [x for x, s in zip(jax.tree.leaves(params), jax.tree.leaves(selected)) if s]


def sparsity(params: PyTree, mask: Mask = None) -> jax.Array:
    r"""Share of exact zeros among the entries of the selected leaves.

    .. math::

      \text{sparsity} = \frac{\#\{j : w_j = 0\}}{\#\{j\}}

    (the :math:`\sigma` of the iRDA paper, eq. 32). Works under ``jit``.

    Args:
      params: a pytree of arrays (``None`` leaves are skipped).
      mask: which leaves count (default ``None``: every floating-point leaf;
        integer, boolean and PRNG-key leaves are left out); e.g.
        :func:`sparsejax.tree.weights_only` for weight matrices only.

    Returns:
      A float32 scalar in ``[0, 1]`` (0 when the selected leaves have no
      entries, or ``mask=None`` finds no floating-point leaf).

    Raises:
      ValueError: if a ``mask`` that is given selects no leaf.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> sj.sparsity({'w': jnp.array([[0.0, 1.0], [0.0, 0.0]]), 'b': jnp.ones(4)})
      Array(0.375, dtype=float32)
    """
    leaves = _selected_leaves(params, mask)
    total = sum(int(np.size(x)) for x in leaves)
    if total == 0:
        return jnp.zeros([], jnp.float32)
    # Per-leaf int32 counts (a leaf has < 2**31 entries), summed in float32.
    zeros = sum(jnp.sum(x == 0).astype(jnp.float32) for x in leaves)
    return zeros / jnp.float32(total)


def _share_of_zeros(nonzeros: int, size: int) -> float:
    """``1 - nonzeros / size``, and 0 for an empty leaf or selection (as :func:`sparsity`)."""
    return 1.0 - nonzeros / size if size else 0.0


class LeafSparsity(NamedTuple):
    """One row of :func:`sparsity_summary`."""

    path: str
    shape: tuple[int, ...]
    size: int
    nonzeros: int
    sparsity: float


def sparsity_summary(params: PyTree, mask: Mask = None) -> list[LeafSparsity]:
    """Per-leaf sparsity: path, shape, size, nonzeros and share of zeros.

    Paths read the same for dicts, lists and Flax NNX states
    (see :func:`sparsejax.tree.path_str`).

    Args:
      params: a pytree of concrete arrays.
      mask: which leaves to list (default ``None``: every floating-point
        leaf; integer, boolean and PRNG-key leaves are left out). A mask that
        is given must select a leaf (``ValueError`` otherwise).

    Returns:
      One :class:`LeafSparsity` per selected leaf, in tree order.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> sj.sparsity_summary({'dense': {'kernel': jnp.array([[0.0, 2.0]])}})[0]
      LeafSparsity(path='dense/kernel', shape=(1, 2), size=2, nonzeros=1, sparsity=0.5)
    """
    selected = jax.tree.leaves(_resolve(mask, params))
    rows = []
    for (path, x), keep in zip(leaves_with_paths(params), selected):
        if not keep:
            continue
        nonzeros = int(np.count_nonzero(np.asarray(x)))
        size = int(np.size(x))
        rows.append(
            LeafSparsity(path, tuple(np.shape(x)), size, nonzeros, _share_of_zeros(nonzeros, size))
        )
    return rows


def format_sparsity(params: PyTree, mask: Mask = None, pattern: str | None = None) -> str:
    """A plain-text table of :func:`sparsity_summary`, with a total row.

    Args:
      params: a pytree of concrete arrays.
      mask: which leaves to list (default ``None``: every floating-point
        leaf; integer, boolean and PRNG-key leaves are left out). A mask that
        is given must select a leaf (``ValueError`` otherwise).
      pattern: a block or channel pattern (:mod:`sparsejax.patterns`, e.g.
        ``'4x4'`` or ``'channel'``) adds a column with each leaf's kept groups
        (a group is kept where any of its entries is non-zero) out of its total.
        An N:M pattern has no kept groups to count (check it with
        :func:`sparsejax.patterns.is_n_m_sparse`) and is a ``ValueError``.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> print(sj.format_sparsity({'kernel': jnp.array([[0.0, 2.0]])}))
      path    shape   nonzeros / size  sparsity
      kernel  (1, 2)         1 / 2       50.00%
      total                  1 / 2       50.00%
      >>> print(sj.format_sparsity({'kernel': jnp.array([[0.0, 0.0, 1.0, 2.0]])}, pattern='1x2'))
      path    shape   nonzeros / size  sparsity  blocks kept
      kernel  (1, 4)         2 / 4       50.00%        1 / 2
      total                  2 / 4       50.00%        1 / 2
    """
    structure = parse_pattern(pattern)
    if structure.kind == "n:m":
        raise ValueError(
            f"format_sparsity: pattern={pattern!r} is N:M, whose groups are not kept or "
            "removed whole; pass a block ('RxC') or 'channel' pattern, or check N:M "
            "sparsity with sparsejax.patterns.is_n_m_sparse"
        )
    rows = sparsity_summary(params, mask)
    total = sum(r.size for r in rows)
    nonzeros = sum(r.nonzeros for r in rows)
    table = [(r.path, str(r.shape), r.nonzeros, r.size, r.sparsity) for r in rows]
    table.append(("total", "", nonzeros, total, _share_of_zeros(nonzeros, total)))
    groups: list[str] = []
    if structure.kind != "unstructured":
        selected = jax.tree.leaves(_resolve(mask, params))
        counts = []
        for (path, x), keep in zip(leaves_with_paths(params), selected):
            if keep:
                check_pattern_shape(structure, tuple(np.shape(x)), path)
                counts.append(kept_groups(np.asarray(x) != 0, structure))
        counts.append((sum(c[0] for c in counts), sum(c[1] for c in counts)))
        groups = [f"{k} / {n}" for k, n in counts]
    w_path = max(len("path"), *(len(t[0]) for t in table))
    w_shape = max(len("shape"), *(len(t[1]) for t in table))
    w_nz = max(len("nonzeros"), *(len(str(t[2])) for t in table))
    w_size = max(len("size"), *(len(str(t[3])) for t in table))
    title = "blocks kept" if structure.kind == "block" else "channels kept"
    w_g = max([len(title)] + [len(g) for g in groups]) if groups else 0
    head = f"{'path':<{w_path}}  {'shape':<{w_shape}}  {'nonzeros':>{w_nz}} / {'size':<{w_size}}  sparsity"
    lines = [head + (f"  {title:>{w_g}}" if groups else "")]
    for i, (path, shape, nz, size, sp) in enumerate(table):
        line = f"{path:<{w_path}}  {shape:<{w_shape}}  {nz:>{w_nz}} / {size:<{w_size}}  {sp:>8.2%}"
        lines.append(line + (f"  {groups[i]:>{w_g}}" if groups else ""))
    return "\n".join(line.rstrip() for line in lines)
