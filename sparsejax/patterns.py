r"""Sparsity patterns: which groups of a kernel's entries are kept or removed together.

A *pattern* is chosen with one argument, ``pattern=``, by every mask-producing
function of sparsejax (one-shot :func:`sparsejax.pruning.prune`, gradual
pruning, the dynamic sparse training transforms and STE):

* ``None`` or ``'unstructured'``: single entries;
* ``'N:M'`` (e.g. ``'2:4'``): in every run of :math:`M` consecutive entries
  along the *input* axis of a kernel, at most :math:`N` are kept (the
  fine-grained structured sparsity of sparse tensor cores);
* ``'RxC'`` (e.g. ``'1x4'``, ``'4x4'``): blocks of :math:`R` entries along the
  input axis by :math:`C` along the output axis, kept or removed whole; a
  block's score is the sum of its entries' scores;
* ``'channel'`` (``'channel:l2'``) or ``'channel:l1'``: whole output units
  (neurons of a dense layer, filters of a convolution), scored by the L2 or L1
  norm of their scores (for magnitude scores: of their weights).

Kernels are laid out as Flax lays them out: ``(..., in, out)`` (dense
``(in, out)``, convolution ``(h, w, in, out)``), so the input axis is ``-2``
and the output axis ``-1``. Structured patterns need leaves with at least two
dimensions whose input (and, for blocks, output) size is divisible by the
group size: any other selected leaf is a ``ValueError`` naming it, so a pattern
is never silently weaker than asked. Leave such leaves out with ``mask=`` (e.g.
:func:`sparsejax.tree.weights_only` and a path regex for the first layer).

This module holds the pure group arithmetic on single arrays (no pruning logic
and no dependency on :mod:`sparsejax.pruning`), so the summaries and every
transform can use it.
"""

from __future__ import annotations

import math
import re
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax.tree import Mask, PyTree, leaves_with_paths, resolve_mask

__all__ = [
    "Pattern",
    "check_pattern_shape",
    "expand_groups",
    "group_scores",
    "group_shape",
    "is_n_m_sparse",
    "kept_groups",
    "n_m_keep",
    "parse_pattern",
]


class Pattern(NamedTuple):
    """A parsed sparsity pattern (see the module docstring).

    Attributes:
      kind: ``'unstructured'``, ``'n:m'``, ``'block'`` or ``'channel'``.
      n: kept entries per group (``'n:m'``).
      m: group size along the input axis (``'n:m'``).
      rows: block size along the input axis (``'block'``).
      cols: block size along the output axis (``'block'``).
      norm: 1 or 2, the norm of a channel's scores (``'channel'``).
    """

    kind: str
    n: int = 0
    m: int = 0
    rows: int = 1
    cols: int = 1
    norm: int = 2

    def __str__(self) -> str:
        if self.kind == "n:m":
            return f"{self.n}:{self.m}"
        if self.kind == "block":
            return f"{self.rows}x{self.cols}"
        if self.kind == "channel":
            return f"channel:l{self.norm}"
        return "unstructured"


_NM = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")
_BLOCK = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def parse_pattern(pattern: str | Pattern | None) -> Pattern:
    """Parses ``pattern=`` (``None``, ``'unstructured'``, ``'N:M'``, ``'RxC'``, ``'channel[:l1|:l2]'``).

    Args:
      pattern: the pattern, as a string, a :class:`Pattern` or ``None``.

    Returns:
      A :class:`Pattern`.

    Raises:
      ValueError: for an unknown pattern or sizes out of range.

    Example:
      >>> import sparsejax as sj
      >>> sj.patterns.parse_pattern('2:4')
      Pattern(kind='n:m', n=2, m=4, rows=1, cols=1, norm=2)
    """
    if pattern is None:
        return Pattern("unstructured")
    if isinstance(pattern, Pattern):
        return pattern
    if not isinstance(pattern, str):
        raise ValueError(f"pattern must be a string such as '2:4', '4x4' or 'channel', got {pattern!r}")
    spec = pattern.strip().lower()
    if spec == "unstructured":
        return Pattern("unstructured")
    if spec in ("channel", "neuron", "channel:l2", "neuron:l2"):
        return Pattern("channel", norm=2)
    if spec in ("channel:l1", "neuron:l1"):
        return Pattern("channel", norm=1)
    found = _NM.match(spec)
    if found:
        n, m = int(found.group(1)), int(found.group(2))
        if not 0 < n < m:
            raise ValueError(f"pattern={pattern!r}: N:M needs 0 < N < M")
        return Pattern("n:m", n=n, m=m)
    found = _BLOCK.match(spec)
    if found:
        rows, cols = int(found.group(1)), int(found.group(2))
        if rows < 1 or cols < 1:
            raise ValueError(f"pattern={pattern!r}: block sizes must be >= 1")
        if rows == cols == 1:
            return Pattern("unstructured")
        return Pattern("block", rows=rows, cols=cols)
    raise ValueError(
        f"unknown pattern={pattern!r}: pass None or 'unstructured', 'N:M' (e.g. '2:4'), "
        "'RxC' blocks (e.g. '1x4', '4x4'), or 'channel' / 'channel:l1'"
    )


def check_pattern_shape(pattern: Pattern, shape: tuple[int, ...], path: str = "") -> None:
    """Raises a ``ValueError`` naming the leaf when ``pattern`` cannot tile a leaf of ``shape``.

    Example:
      >>> import sparsejax as sj
      >>> sj.patterns.check_pattern_shape(sj.patterns.parse_pattern('2:4'), (8, 3))
    """
    if pattern.kind == "unstructured":
        return
    where = f"leaf {path!r}" if path else "a leaf"
    if len(shape) < 2:
        raise ValueError(
            f"pattern {pattern} needs kernels (at least 2 dimensions, input axis -2); "
            f"{where} has shape {shape}: leave it out with mask= (e.g. sj.tree.weights_only)"
        )
    if pattern.kind == "n:m" and shape[-2] % pattern.m:
        raise ValueError(
            f"pattern {pattern}: {where} has input dimension {shape[-2]} (shape {shape}), "
            f"not divisible by M={pattern.m}; leave it out with mask= (a path regex or "
            "pytree of booleans) or choose another M"
        )
    if pattern.kind == "block" and (shape[-2] % pattern.rows or shape[-1] % pattern.cols):
        raise ValueError(
            f"pattern {pattern}: {where} has shape {shape}, whose last two dimensions "
            f"(input, output) are not divisible by the block ({pattern.rows}, {pattern.cols}); "
            "leave it out with mask= or choose another block"
        )


def group_shape(pattern: Pattern, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of the array of group scores of a leaf (the leaf's own shape if unstructured).

    Example:
      >>> import sparsejax as sj
      >>> sj.patterns.group_shape(sj.patterns.parse_pattern('2x4'), (3, 3, 4, 8))
      (3, 3, 2, 2)
    """
    if pattern.kind == "block":
        return (*shape[:-2], shape[-2] // pattern.rows, shape[-1] // pattern.cols)
    if pattern.kind == "channel":
        return (shape[-1],) if math.prod(shape) else (0,)  # an empty leaf has no channels
    return tuple(shape)


def group_scores(scores: jax.Array, pattern: Pattern) -> jax.Array:
    r"""Scores of the groups of a block or channel pattern, as float32.

    .. math::

      S_{\text{block}} = \sum_{j \in \text{block}} s_j, \qquad
      S_{\text{channel}} = \sum_{j \in \text{channel}} |s_j|^{p} \quad (p = 1 \text{ or } 2),

    (the channel score is the :math:`p`-th power of the L\ :sub:`p` norm, which
    orders channels the same way). An empty leaf has no channels (shape
    ``(0,)``). Unstructured and N:M patterns return the scores themselves.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> sj.patterns.group_scores(jnp.arange(8.0).reshape(2, 4), sj.patterns.parse_pattern('2x2'))
      Array([[10., 18.]], dtype=float32)
    """
    s = jnp.asarray(scores).astype(jnp.float32)
    if pattern.kind == "block":
        *lead, n_in, n_out = s.shape
        s = s.reshape(*lead, n_in // pattern.rows, pattern.rows, n_out // pattern.cols, pattern.cols)
        return jnp.sum(s, axis=(-3, -1))
    if pattern.kind == "channel":
        if s.size == 0:  # an empty leaf has no channels (not shape[-1] channels of score 0)
            return jnp.zeros((0,), jnp.float32)
        power = jnp.abs(s) if pattern.norm == 1 else jnp.square(s)
        return jnp.sum(power.reshape(-1, s.shape[-1]), axis=0)
    return s


def expand_groups(keep: jax.Array, pattern: Pattern, shape: tuple[int, ...]) -> jax.Array:
    """A per-entry support from a per-group one (the inverse layout of :func:`group_scores`).

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> sj.patterns.expand_groups(jnp.array([[True, False]]), sj.patterns.parse_pattern('1x2'), (1, 4))
      Array([[ True,  True, False, False]], dtype=bool)
    """
    if pattern.kind == "block":
        out = jnp.repeat(jnp.repeat(keep, pattern.rows, axis=-2), pattern.cols, axis=-1)
        return out.reshape(shape)
    if pattern.kind == "channel":
        if math.prod(shape) == 0:
            return jnp.zeros(shape, keep.dtype)
        return jnp.broadcast_to(keep, shape)
    return keep.reshape(shape)


def _to_groups(x: jax.Array, m: int) -> jax.Array:
    """``(..., in, out)`` to ``(..., out, in/m, m)``: the runs of ``m`` along the input axis."""
    x = jnp.moveaxis(x, -2, -1)
    return x.reshape(*x.shape[:-1], x.shape[-1] // m, m)


def _from_groups(g: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    g = g.reshape(*g.shape[:-2], -1)
    return jnp.moveaxis(g, -1, -2).reshape(shape)


def n_m_keep(scores: jax.Array, m: int, num_remove: Any) -> jax.Array:
    r"""Support removing the ``num_remove`` smallest scores of every run of ``m`` along the input axis.

    .. math::

      m_j = \mathbb{1}\big[\operatorname{rank}_{G(j)}(s_j) \ge r\big],

    with ranks from 0 within each group :math:`G(j)` of :math:`M` consecutive
    entries along axis ``-2``, ties ranked by position (earlier entries removed
    first, as a stable ``argsort``). ``num_remove`` (:math:`r`) may be traced;
    :math:`r = M - N` gives an N:M support.

    Args:
      scores: a kernel's scores, shape ``(..., in, out)`` with ``in`` divisible by ``m``.
      m: the group size :math:`M`.
      num_remove: :math:`r`, removed per group (clipped to ``[0, m]``).

    Returns:
      A boolean array of the scores' shape.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> sj.patterns.n_m_keep(jnp.array([[1.0], [4.0], [3.0], [2.0]]), 4, 2).ravel()
      Array([False,  True,  True, False], dtype=bool)
    """
    s = jnp.asarray(scores)
    shape = s.shape
    groups = _to_groups(s.astype(jnp.float32), m)
    rank = jnp.argsort(jnp.argsort(groups, axis=-1, stable=True), axis=-1, stable=True)
    keep = rank >= jnp.clip(jnp.asarray(num_remove, jnp.int32), 0, m)
    return _from_groups(keep, shape)


def kept_groups(support: jax.Array, pattern: Pattern) -> tuple[int, int]:
    """``(kept, total)`` groups of a leaf's support under ``pattern`` (a group is kept if any entry is).

    For unstructured patterns the groups are single entries; for N:M they are
    single entries too (each run of M keeps at most N).

    Example:
      >>> import numpy as np
      >>> import sparsejax as sj
      >>> sj.patterns.kept_groups(np.array([[1, 1, 0, 0]]) != 0, sj.patterns.parse_pattern('1x2'))
      (1, 2)
    """
    x = np.asarray(support) != 0
    if pattern.kind == "block":
        *lead, n_in, n_out = x.shape
        g = x.reshape(*lead, n_in // pattern.rows, pattern.rows, n_out // pattern.cols, pattern.cols)
        g = g.any(axis=(-3, -1))
    elif pattern.kind == "channel":
        g = x.reshape(-1, x.shape[-1]).any(axis=0)
    else:
        g = x
    return int(np.count_nonzero(g)), int(g.size)


def is_n_m_sparse(params: PyTree, n: int, m: int, mask: Mask = None) -> bool:
    r"""Whether every selected kernel has at most ``n`` non-zeros in every run of ``m`` along its input axis.

    Args:
      params: the parameter pytree.
      n: :math:`N`, the most non-zeros allowed per group.
      m: :math:`M`, the group size (the input dimension of every selected
        leaf must be divisible by it).
      mask: which leaves are checked (default: every leaf with at least two
        dimensions; see :func:`sparsejax.tree.resolve_mask`).

    Returns:
      A Python ``bool``.

    Raises:
      ValueError: if a selected leaf has fewer than 2 dimensions or an input
        dimension not divisible by ``m``.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> w = jnp.array([[1.0, 0.0], [0.0, 0.0], [2.0, 3.0], [0.0, 4.0]])
      >>> sj.pruning.is_n_m_sparse({'kernel': w}, 2, 4), sj.pruning.is_n_m_sparse({'kernel': w}, 1, 4)
      (True, False)
    """
    if not (isinstance(n, int) and isinstance(m, int) and 0 <= n <= m and m >= 1):
        raise ValueError(f"is_n_m_sparse needs integers 0 <= n <= m, m >= 1; got n={n!r}, m={m!r}")
    if mask is None:
        mask = lambda p: jax.tree.map(lambda x: jnp.ndim(x) >= 2, p)  # noqa: E731
    selected = jax.tree.leaves(resolve_mask(mask, params, nonempty=True))
    pattern = Pattern("n:m", n=max(n, 1), m=m)
    for (path, x), keep in zip(leaves_with_paths(params), selected):
        if not keep:
            continue
        check_pattern_shape(pattern, tuple(np.shape(x)), path)
        nonzeros = np.count_nonzero(np.asarray(_to_groups(jnp.asarray(x) != 0, m)), axis=-1)
        if nonzeros.size and int(nonzeros.max()) > n:
            return False
    return True
