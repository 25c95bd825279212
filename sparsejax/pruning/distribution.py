"""How many weights each leaf loses: uniform and Erdős–Rényi-kernel (ERK) allocations.

Layer-wise pruning at overall sparsity :math:`s` (or :math:`K` weights in
all) first decides the number :math:`k_l` removed from each selected leaf
:math:`l`:

* ``'uniform'``: every leaf gets the same sparsity, :math:`k_l \\approx s\\,n_l`;
* ``'erk'``: the densities of Evci et al. (RigL), scaled so that the selected
  leaves together keep :math:`(1 - s) N` weights (see :func:`erk_densities`).

The real-valued targets are then rounded by the largest-remainder method:
each :math:`k_l` is the floor or the ceiling of its target, never above
:math:`n_l`, and :math:`\\sum_l k_l = K` exactly. The functions work on
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


def _erk(shapes: Sequence[tuple[int, ...]], density: Any, power_scale: Any, xp: Any) -> Any:
    dtype = xp.float64 if xp is np else jnp.float32
    n = xp.asarray([math.prod(s) for s in shapes], dtype)
    base = xp.asarray([sum(s) / max(math.prod(s), 1) for s in shapes], dtype)
    raw = base ** xp.asarray(power_scale, dtype)
    density = xp.asarray(density, dtype)

    def epsilon(dense: Any) -> Any:
        rhs = xp.sum(xp.where(dense, -(1 - density) * n, density * n))
        divisor = xp.sum(xp.where(dense, 0.0, raw * n))
        return rhs / xp.where(divisor > 0, divisor, 1.0)

    def densify(_: Any, dense: Any) -> Any:
        # The leaves with the largest raw probability become dense if even they would
        # get a density above 1 (Evci et al., Appendix; RigL's code); then eps is solved
        # again over the others. At most one round per leaf.
        max_raw = xp.max(xp.where(dense, -xp.inf, raw))
        return dense | ((~dense) & (raw == max_raw) & (epsilon(dense) * max_raw > 1))

    dense = xp.zeros(len(shapes), bool)
    if xp is np:
        for i in range(len(shapes)):
            dense = densify(i, dense)
    else:
        dense = jax.lax.fori_loop(0, len(shapes), densify, dense)
    return xp.clip(xp.where(dense, 1.0, epsilon(dense) * raw), 0.0, 1.0)


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
    the others, so the total is kept. Only the leaves passed in take part:
    pass the shapes of the *selected* leaves, and the total refers to them.

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


def _apportion(targets: Any, total: Any, sizes: Any, xp: Any) -> Any:
    """Integers within one of ``targets`` summing to ``total`` (largest remainder)."""
    int_type = xp.int64 if xp is np else jnp.int32
    floor = xp.floor(targets)
    remainder = targets - floor
    floor = floor.astype(int_type)
    deficit = xp.asarray(total, int_type) - xp.sum(floor)
    if xp is np:
        order = np.argsort(-remainder, kind="stable")
        rank = np.argsort(order, kind="stable")
    else:
        order = jnp.argsort(-remainder, stable=True)
        rank = jnp.argsort(order, stable=True)
    counts = floor + (rank < deficit).astype(int_type)
    return xp.clip(counts, 0, xp.asarray(sizes, int_type))


def layer_remove_counts(
    shapes: Sequence[tuple[int, ...]],
    num_remove: Any,
    distribution: str = "uniform",
    power_scale: Any = 1.0,
    *,
    erk_shapes: Sequence[tuple[int, ...]] | None = None,
) -> Any:
    r"""Splits a total of ``num_remove`` weights among leaves of the given shapes.

    .. math::

      k_l \in \{\lfloor t_l \rfloor, \lceil t_l \rceil\}, \quad
      \sum_l k_l = K, \quad
      t_l = K\,\frac{(1 - d_l)\, n_l}{\sum_j (1 - d_j)\, n_j},

    with :math:`d_l` uniform (:math:`1 - K/N`) or :func:`erk_densities`;
    remainders are given out largest first (earlier leaves first among equals).

    Args:
      shapes: the shapes of the selected leaves.
      num_remove: :math:`K`, an integer in ``[0, N]`` (may be traced).
      distribution: ``'uniform'`` or ``'erk'``.
      power_scale: ERK's power scale (see :func:`erk_densities`).
      erk_shapes: the shapes ERK's densities are computed from, when the
        counted units are groups of weights (blocks or channels of a sparsity
        pattern, :mod:`sparsejax.patterns`): ``shapes`` are then the shapes of
        the group arrays and ``erk_shapes`` those of the leaves (default:
        ``shapes``). Each leaf's density :math:`d_l` comes from its kernel's
        shape, and :math:`n_l` counts its groups.

    Returns:
      The counts :math:`k_l`, as a NumPy int64 array (a ``jax.Array`` if
      ``num_remove`` or ``power_scale`` is traced).

    Example:
      >>> import sparsejax as sj
      >>> sj.pruning.layer_remove_counts([(10, 10), (5, 2)], 55)
      array([50,  5])
    """
    xp = _xp(num_remove, power_scale)
    dtype = xp.float64 if xp is np else jnp.float32
    sizes = xp.asarray([math.prod(s) for s in shapes], dtype)
    total_size = float(sum(math.prod(s) for s in shapes))
    k = xp.asarray(num_remove, dtype)
    if distribution == "uniform":
        weights = sizes
    else:
        density = 1.0 - k / max(total_size, 1.0)
        erk_of = list(shapes) if erk_shapes is None else list(erk_shapes)
        weights = (1.0 - _erk(erk_of, density, power_scale, xp)) * sizes
    norm = xp.sum(weights)
    targets = xp.where(norm > 0, k * weights / xp.where(norm > 0, norm, 1.0), 0.0)
    targets = xp.minimum(targets, sizes)
    return _apportion(targets, num_remove, [math.prod(s) for s in shapes], xp)
