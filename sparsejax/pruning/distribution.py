"""How many weights each leaf loses: uniform and Erdős–Rényi-kernel (ERK) allocations.

Layer-wise pruning at overall sparsity :math:`s` (or :math:`K` weights in
all) first decides the number :math:`k_l` removed from each selected leaf
:math:`l`:

* ``'uniform'``: every leaf gets the same sparsity, :math:`k_l \\approx s\\,n_l`;
* ``'erk'``: the densities of Evci et al. (RigL), scaled so that the selected
  leaves together keep :math:`(1 - s) N` weights (see :func:`erk_densities`).
  For block and channel patterns the units are groups (see
  :func:`layer_remove_counts`).

The real-valued targets are then rounded by the largest-remainder method, so
that :math:`\\sum_l k_l = K` exactly and :math:`0 \\le k_l \\le n_l`. No leaf
is emptied (:math:`k_l = n_l`) unless :math:`K` leaves no other choice, and
lower bounds (the weights that gradual pruning removed before) are respected,
so that the counts of a growing :math:`K` never shrink. The functions work on
concrete numbers (NumPy, float64) and on traced ones (``jax.numpy``, float32,
for the schedules of gradual pruning).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["erk_densities", "layer_remove_counts"]


def _xp(*values: Any) -> Any:
    traced = any(isinstance(v, jax.core.Tracer) or isinstance(v, jax.Array) for v in values)
    return jnp if traced else np


def _erk(
    shapes: Sequence[tuple[int, ...]],
    density: Any,
    power_scale: Any,
    xp: Any,
    sizes: Sequence[int] | None = None,
) -> Any:
    """ERK densities of leaves whose kernels have ``shapes``, counting ``sizes`` units each.

    ``sizes`` defaults to the numbers of entries; for block and channel
    patterns they are the numbers of groups, and :math:`\\sum_l d_l n_l = D N`
    then holds in groups. Scalar and empty leaves start dense.
    """
    dtype = xp.float64 if xp is np else jnp.float32
    counted = [math.prod(s) for s in shapes] if sizes is None else [int(c) for c in sizes]
    n = xp.asarray(counted, dtype)
    base = xp.asarray([sum(s) / max(math.prod(s), 1) for s in shapes], dtype)
    raw = base ** xp.asarray(power_scale, dtype)
    keep_total = xp.asarray(density, dtype) * xp.sum(n)

    def epsilon(dense: Any) -> Any:
        rhs = keep_total - xp.sum(xp.where(dense, n, 0.0))
        divisor = xp.sum(xp.where(dense, 0.0, raw * n))
        return xp.maximum(rhs, 0.0) / xp.where(divisor > 0, divisor, 1.0)

    def densify(_: Any, dense: Any) -> Any:
        # The leaves with the largest raw probability become dense if even they would
        # get a density above 1 (Evci et al., Appendix; RigL's code); then eps is solved
        # again over the others. At most one round per leaf.
        max_raw = xp.max(xp.where(dense, -xp.inf, raw))
        return dense | ((~dense) & (raw == max_raw) & (epsilon(dense) * max_raw > 1))

    # A scalar's ratio is 0/1, which would make it the first thing pruned; like a leaf
    # whose density would exceed 1, it is kept dense. Empty leaves have nothing to count.
    dense = np.asarray([len(s) == 0 or c == 0 for s, c in zip(shapes, counted)], bool)
    dense = dense if xp is np else jnp.asarray(dense)
    if xp is np:
        for i in range(len(shapes)):
            dense = densify(i, dense)
    else:
        dense = jax.lax.fori_loop(0, len(shapes), densify, dense)
    d = xp.clip(xp.where(dense, 1.0, epsilon(dense) * raw), 0.0, 1.0)
    # Only if the scalars alone hold more than the budget is it exceeded: scale down.
    kept = xp.sum(d * n)
    scale = xp.where(kept > keep_total, keep_total / xp.where(kept > 0, kept, 1.0), 1.0)
    return xp.where(n > 0, d * scale, d)


def erk_densities(
    shapes: Sequence[tuple[int, ...]], density: Any, power_scale: Any = 1.0
) -> Any:
    r"""Erdős–Rényi-kernel densities of the leaves with the given shapes.

    .. math::

      d_l = \min\Big(1,\; \epsilon \Big(\frac{\sum_i s^l_i}{\prod_i s^l_i}\Big)^{p}\Big),
      \qquad \sum_l d_l\, n_l = D\, N,

    for a leaf of shape :math:`(s^l_1, \dots, s^l_r)` with :math:`n_l` entries,
    :math:`N = \sum_l n_l`, overall density :math:`D`, and power scale
    :math:`p` (1: ERK; 0: uniform). For a dense layer :math:`(n_\text{in},
    n_\text{out})` the ratio is Erdős–Rényi's :math:`(n_\text{in} +
    n_\text{out})/(n_\text{in} n_\text{out})`; for a conv kernel :math:`(h, w,
    c_\text{in}, c_\text{out})` it adds :math:`h + w`. Leaves whose density
    would exceed 1 are made dense and :math:`\epsilon` is solved again over
    the others, so the total is kept. Scalar leaves (shape ``()``, whose
    ratio is :math:`0/1`: a learnable scale or temperature) are kept dense the
    same way, unless the budget is smaller than they are. Only the leaves
    passed in take part: pass the shapes of the *selected* leaves, and the
    total refers to them.

    Args:
      shapes: the shapes of the leaves being pruned.
      density: the overall density :math:`D = 1 - s \in (0, 1]`.
      power_scale: :math:`p \ge 0`.

    Returns:
      One density per leaf in ``[0, 1]`` (a NumPy float64 array, or a float32
      ``jax.Array`` when ``density`` or ``power_scale`` is a JAX array).

    Example:
      >>> import sparsejax as sj
      >>> sj.pruning.erk_densities([(100, 100), (10, 100)], density=0.1).round(4)
      array([0.071 , 0.3903])

    References:
      Evci, Gale, Menick, Castro and Elsen, *Rigging the Lottery: Making All
      Tickets Winners*, ICML 2020 (Section 3 and Appendix, ERK).
    """
    return _erk(list(shapes), density, power_scale, _xp(density, power_scale))


def _fit(targets: Any, total: Any, lower: Any, upper: Any, xp: Any) -> Any:
    """Real targets within ``[lower, upper]`` summing to ``total``.

    The targets are clipped to the bounds, then the difference to ``total`` is
    taken from (or given to) the leaves in proportion to their room below
    (above) the bound. Assumes ``sum(lower) <= total <= sum(upper)``.
    """
    t = xp.clip(targets, lower, upper)
    gap = total - xp.sum(t)
    up, down = upper - t, t - lower
    room_up, room_down = xp.sum(up), xp.sum(down)
    grow = t + gap * up / xp.where(room_up > 0, room_up, 1.0)
    shrink = t + gap * down / xp.where(room_down > 0, room_down, 1.0)
    return xp.clip(xp.where(gap > 0, grow, shrink), lower, upper)


def _settle(counts: Any, total: Any, lower: Any, upper: Any, xp: Any) -> Any:
    """Integer counts within the bounds moved (earlier leaves first) until they sum to ``total``.

    A no-op after exact rounding; it absorbs float32 rounding of large traced totals.
    """
    gap = total - xp.sum(counts)
    up, down = upper - counts, counts - lower
    add = xp.clip(gap - (xp.cumsum(up) - up), 0, up)
    sub = xp.clip(-gap - (xp.cumsum(down) - down), 0, down)
    return counts + add - sub


def _apportion(targets: Any, total: Any, sizes: Sequence[int], xp: Any, lower: Any = None) -> Any:
    """Integers near ``targets``, within ``[lower, sizes]``, summing to ``total`` (largest remainder).

    The total is raised to ``sum(lower)`` where it is smaller (what was removed
    stays removed). A non-empty leaf keeps at least one unit wherever the total
    leaves room for that.
    """
    int_type = xp.int64 if xp is np else jnp.int32
    dtype = xp.float64 if xp is np else jnp.float32
    n = xp.asarray(np.asarray(sizes, np.int64), int_type)
    lo = xp.zeros_like(n) if lower is None else xp.clip(xp.asarray(lower).astype(int_type), 0, n)
    total = xp.clip(xp.asarray(total).astype(int_type), xp.sum(lo), xp.sum(n))
    cap = xp.maximum(xp.where(n > 0, n - 1, 0), lo)
    hi = xp.where(total <= xp.sum(cap), cap, n)
    lo_f, hi_f = lo.astype(dtype), hi.astype(dtype)
    t = _fit(xp.asarray(targets, dtype), total.astype(dtype), lo_f, hi_f, xp)
    floor = xp.clip(xp.floor(t), lo_f, hi_f)
    remainder = xp.where(floor < hi_f, t - floor, -1.0)
    floor = floor.astype(int_type)
    deficit = total - xp.sum(floor)
    if xp is np:
        order = np.argsort(-remainder, kind="stable")
        rank = np.argsort(order, kind="stable")
    else:
        order = jnp.argsort(-remainder, stable=True)
        rank = jnp.argsort(order, stable=True)
    counts = xp.clip(floor + (rank < deficit).astype(int_type), lo, hi)
    return _settle(counts, total, lo, hi, xp)


def layer_remove_counts(
    shapes: Sequence[tuple[int, ...]],
    num_remove: Any,
    distribution: str = "uniform",
    power_scale: Any = 1.0,
    *,
    erk_shapes: Sequence[tuple[int, ...]] | None = None,
    at_least: Any = None,
) -> Any:
    r"""Splits a total of ``num_remove`` weights among leaves of the given shapes.

    .. math::

      k_l \in \{\lfloor t_l \rfloor, \lceil t_l \rceil\}, \quad
      \sum_l k_l = K, \quad
      t_l = (1 - d_l)\, n_l, \quad \sum_l d_l\, n_l = N - K,

    with :math:`d_l` uniform (:math:`1 - K/N`) or :func:`erk_densities`;
    remainders are given out largest first (earlier leaves first among equals).
    The targets are first brought within bounds :math:`a_l \le t_l \le b_l`
    (the difference going to the other leaves in proportion to their room):
    :math:`b_l = n_l - 1` for a non-empty leaf, so that none is emptied, unless
    :math:`K` needs more (then :math:`b_l = n_l`); :math:`a_l` is ``at_least``
    (default 0). The sum is exact in every case.

    For block and channel patterns (``erk_shapes`` given) the counted units are
    groups: ERK then means that the share :math:`d_l` of leaf :math:`l`'s
    groups that is kept is :math:`\epsilon\, r_l^p` with :math:`r_l` the
    Erdős–Rényi ratio of its *kernel's* shape, :math:`\epsilon` solved so
    that :math:`N - K` groups are kept in all (:math:`n_l`, :math:`N` in
    groups), and leaves whose density would exceed 1 kept dense and
    :math:`\epsilon` solved again, as in RigL.

    Args:
      shapes: the shapes of the selected leaves (of their group arrays, with
        ``erk_shapes``).
      num_remove: :math:`K`, an integer in ``[0, N]`` (may be traced).
      distribution: ``'uniform'`` or ``'erk'``.
      power_scale: ERK's power scale (see :func:`erk_densities`).
      erk_shapes: the shapes ERK's ratios are computed from, when the counted
        units are groups of weights (blocks or channels of a sparsity pattern,
        :mod:`sparsejax.patterns`): the shapes of the leaves themselves
        (default: ``shapes``).
      at_least: optional per-leaf lower bounds :math:`a_l` (may be traced),
        e.g. the weights removed by an earlier step: the counts are then at
        least these, and sum to :math:`\max(K, \sum_l a_l)`. Gradual pruning
        passes its current removals, so that no weight comes back when
        :math:`K` grows (largest remainder alone is not monotone in :math:`K`:
        sizes 2, 5, 5 give 1, 1, 1 for :math:`K = 3` but 0, 2, 2 for
        :math:`K = 4`).

    Returns:
      The counts :math:`k_l`, as a NumPy int64 array (an int32 ``jax.Array``
      if ``num_remove``, ``power_scale`` or ``at_least`` is traced).

    Example:
      >>> import sparsejax as sj
      >>> sj.pruning.layer_remove_counts([(10, 10), (5, 2)], 55)
      array([50,  5])
      >>> sj.pruning.layer_remove_counts([(2,), (5,), (5,)], 4)
      array([0, 2, 2])
      >>> sj.pruning.layer_remove_counts([(2,), (5,), (5,)], 4, at_least=[1, 1, 1])
      array([1, 2, 1])
    """
    xp = _xp(num_remove, power_scale, at_least)
    dtype = xp.float64 if xp is np else jnp.float32
    counted = [math.prod(s) for s in shapes]
    sizes = xp.asarray(counted, dtype)
    total_size = float(sum(counted))
    k = xp.asarray(num_remove, dtype)
    if distribution == "uniform":
        targets = k * sizes / max(total_size, 1.0)
    else:
        density = 1.0 - k / max(total_size, 1.0)
        erk_of = list(shapes) if erk_shapes is None else list(erk_shapes)
        targets = (1.0 - _erk(erk_of, density, power_scale, xp, sizes=counted)) * sizes
    return _apportion(targets, num_remove, counted, xp, at_least)
