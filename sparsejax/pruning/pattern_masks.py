"""Supports with a sparsity pattern from scores: the counts of each leaf and the selection.

One function, :func:`pattern_keep`, turns per-entry scores (magnitudes,
saliencies, random numbers) and a target sparsity into a support with the
pattern of :mod:`sparsejax.patterns` (unstructured, N:M, blocks, channels). It is
shared by gradual pruning, the dynamic sparse training transforms and STE, and
works under ``jit`` with a traced sparsity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax.patterns import (
    Pattern,
    check_pattern_shape,
    expand_groups,
    group_scores,
    n_m_keep,
)
from sparsejax.pruning.distribution import layer_remove_counts
from sparsejax.select import pruned_entries

__all__ = ["check_leaves", "check_nonempty", "group_any", "pattern_keep"]


def check_nonempty(shapes: Sequence[tuple[int, ...]]) -> None:
    """Raises a ``ValueError`` when the selected leaves of these shapes hold no weight (all empty)."""
    if sum(math.prod(shape) for shape in shapes) == 0:
        raise ValueError(
            "mask selects only empty leaves: there is no weight to prune; pass mask= "
            "(a regex on paths such as r'kernel$', a pytree of booleans or a callable "
            "params -> booleans)"
        )


def check_leaves(pattern: Pattern, shapes: Sequence[tuple[int, ...]], paths: Sequence[str]) -> None:
    """Checks that ``pattern`` tiles every selected leaf and that they are not all empty.

    A ``ValueError`` names the first leaf the pattern does not tile, or says
    that the selection holds no weight (see :func:`check_nonempty`).
    """
    for shape, path in zip(shapes, paths):
        check_pattern_shape(pattern, tuple(shape), path)
    if shapes:
        check_nonempty(shapes)


def group_any(keep: jax.Array, pattern: Pattern) -> jax.Array:
    """Per-group support: a block or channel is kept where any of its entries is."""
    if pattern.kind in ("block", "channel"):
        return group_scores(keep.astype(jnp.float32), Pattern(pattern.kind, rows=pattern.rows,
                                                              cols=pattern.cols, norm=1)) > 0
    return keep


def _count(sparsity: Any, total: int) -> Any:
    """``round(sparsity * total)`` as a Python int (concrete) or int32 (traced)."""
    if isinstance(sparsity, (int, float, np.floating)):
        return min(int(round(float(sparsity) * total)), total)
    return jnp.clip(jnp.round(jnp.asarray(sparsity, jnp.float32) * total), 0, total).astype(jnp.int32)


def pattern_keep(
    scores: Sequence[jax.Array],
    pattern: Pattern,
    sparsity: Any,
    scope: str = "layerwise",
    distribution: str = "uniform",
    power_scale: Any = 1.0,
    keep_old: Sequence[jax.Array] | None = None,
) -> list[jax.Array]:
    r"""Supports of the selected leaves, removing a share ``sparsity`` of their groups by lowest score.

    * unstructured: :math:`K = \operatorname{round}(sN)` entries, over all
      leaves (``scope='global'``) or split among them by ``distribution``
      (:func:`~sparsejax.pruning.layer_remove_counts`);
    * blocks and channels: the same with groups (a group's score from
      :func:`sparsejax.patterns.group_scores`; ERK densities from the kernels' shapes);
    * N:M: :math:`\operatorname{round}(sM)` entries removed from every run of
      :math:`M` (``scope`` and ``distribution`` do not apply).

    For ``distribution='erk'`` with blocks or channels, a leaf's density is
    the share of its groups kept, from the ERK ratio of the leaf's own shape,
    with :math:`\epsilon` solved so that the groups kept add up (see
    :func:`~sparsejax.pruning.layer_remove_counts`). Empty leaves have no
    groups and take no share of the count.

    Ties are ranked by position (earlier removed first). Where ``keep_old``
    is given, the entries (groups) it removes score below everything and each
    leaf's count is at least the number it removes, so they stay removed.

    Args:
      scores: per-entry scores of the selected leaves.
      pattern: a parsed :class:`~sparsejax.patterns.Pattern`.
      sparsity: :math:`s \in [0, 1]` (may be traced).
      scope: ``'layerwise'`` or ``'global'``.
      distribution: ``'uniform'`` or ``'erk'`` (with ``scope='layerwise'``).
      power_scale: ERK's power scale.
      keep_old: optional previous supports of the same leaves.

    Returns:
      One boolean support per leaf.
    """
    shapes = [tuple(jnp.shape(s)) for s in scores]
    if pattern.kind == "n:m":
        r = _count(sparsity, pattern.m)
        out = []
        for i, s in enumerate(scores):
            s = jnp.asarray(s).astype(jnp.float32)
            if s.size == 0:  # an empty leaf has no group of M
                out.append(jnp.ones(s.shape, bool))
                continue
            if keep_old is not None:
                s = jnp.where(keep_old[i], s, -jnp.inf)
            out.append(n_m_keep(s, pattern.m, r))
        return out
    grouped = [group_scores(s, pattern) for s in scores]
    removed = None
    if keep_old is not None:
        old_groups = [group_any(k, pattern) for k in keep_old]
        grouped = [jnp.where(a, g, -jnp.inf) for g, a in zip(grouped, old_groups)]
        removed = jnp.stack([jnp.sum(~a, dtype=jnp.int32) for a in old_groups])
    gshapes = [tuple(g.shape) for g in grouped]
    total = sum(math.prod(s) for s in gshapes)
    k = _count(sparsity, total)
    if scope == "global":
        if removed is not None:  # what was removed stays removed
            k = jnp.maximum(jnp.asarray(k, jnp.int32), jnp.sum(removed))
        counts = jnp.reshape(jnp.asarray(k, jnp.int32), (1,))
    else:
        counts = layer_remove_counts(gshapes, k, distribution, power_scale, erk_shapes=shapes,
                                     at_least=removed)
        counts = jnp.asarray(counts, jnp.int32)
    pruned = pruned_entries(grouped, counts, scope == "layerwise")
    return [
        expand_groups(~p.reshape(gs), pattern, shape)
        for p, gs, shape in zip(pruned, gshapes, shapes)
    ]

