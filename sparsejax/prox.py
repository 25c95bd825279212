"""Proximal operators on arrays and pytrees.

Pure functions with jaxopt-like signatures ``prox(x, hyperparameter)``. ``x``
may be an array or any pytree of arrays; the hyperparameter may be a scalar or
a pytree matching ``x`` (or a prefix of it), giving one value per leaf. The
result keeps each leaf's dtype, and zeros are exact.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from sparsejax.tree import PyTree, broadcast_prefix

__all__ = ["hard_threshold", "soft_threshold"]


def _per_leaf(fn: Any, x: PyTree, hyper: Any) -> PyTree:
    """Applies ``fn(leaf, value)``: one value for all leaves, or one per leaf."""
    if jax.tree_util.treedef_is_leaf(jax.tree.structure(hyper)):
        return jax.tree.map(lambda leaf: fn(leaf, hyper), x)
    return jax.tree.map(fn, x, broadcast_prefix(hyper, x, what="threshold"))


def _clip(x: jax.Array, tau: Any) -> jax.Array:
    """``clip(x, -tau, tau)`` for ``tau >= 0``, as two compare-selects (the min first).

    ``jnp.clip`` lowers to XLA's NaN-propagating ``minimum``/``maximum``, which
    XLA:CPU compiles to a vector min/max plus sign-of-zero and NaN fix-ups (7
    vector instructions for the clip); ``x < tau ? x : tau`` compiles to one
    ``minps`` and ``hi > -tau ? hi : -tau`` to one ``maxps``. The fix-ups are not
    needed here: a NaN ``x`` gives a NaN ``x - clip`` either way.
    """
    hi = jnp.where(x < tau, x, tau)
    return jnp.where(hi > -tau, hi, -tau)


def soft_threshold(x: PyTree, threshold: Any) -> PyTree:
    r"""Soft-thresholding, the proximal operator of :math:`\tau \|x\|_1`.

    .. math::

      S_\tau(x) = \operatorname{sign}(x) \max(|x| - \tau, 0)
                = \operatorname{argmin}_y \tfrac12 \|y - x\|_2^2 + \tau \|y\|_1 .

    Entries with :math:`|x| \le \tau` become exactly zero. Computed as
    :math:`x - \operatorname{clip}(x, -\tau, \tau)`, which is exact in floating
    point: each surviving entry is rounded once, and the rest are exactly zero.
    The clip is two compare-selects (``min(x, τ)`` then ``max(·, -τ)``), which
    compile to two vector instructions on CPU where ``jnp.clip`` takes seven;
    the result equals ``x - jnp.clip(x, -τ, τ)`` bit for bit for every
    :math:`\tau \ge +0` (NaN in, NaN out). Under autodiff the derivative at
    :math:`|x| = \tau` is 1 (``jnp.clip``'s is 1/2; both are subgradients).

    Args:
      x: an array or a pytree of arrays.
      threshold: :math:`\tau \ge 0`; a scalar, an array broadcastable to each
        leaf, or a pytree with ``x``'s structure (or a prefix of it) giving one
        threshold per leaf.

    Returns:
      :math:`S_\tau(x)`, with ``x``'s structure and dtypes.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> sj.prox.soft_threshold(jnp.array([-2.0, -0.5, 0.25, 3.0]), 1.0)
      Array([-1.,  0.,  0.,  2.], dtype=float32)

    References:
      Donoho, *De-noising by soft-thresholding*, IEEE Trans. Inf. Theory, 1995.
    """

    def leaf_fn(leaf: jax.Array, tau: Any) -> jax.Array:
        # Computed in the wider of the two dtypes and rounded once.
        return (leaf - _clip(leaf, tau)).astype(leaf.dtype)

    return _per_leaf(leaf_fn, x, threshold)


def hard_threshold(x: PyTree, threshold: Any) -> PyTree:
    r"""Hard-thresholding: keeps the entries with :math:`|x| > \tau`, zeroes the rest.

    .. math::

      H_\tau(x) = x \cdot \mathbb{1}[|x| > \tau],

    the proximal operator of :math:`\tfrac{\tau^2}{2}\|x\|_0` (magnitude pruning
    at threshold :math:`\tau`).

    Args:
      x: an array or a pytree of arrays.
      threshold: :math:`\tau \ge 0`; a scalar, or a pytree of per-leaf values
        with ``x``'s structure (or a prefix of it).

    Returns:
      :math:`H_\tau(x)`, with ``x``'s structure and dtypes.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> sj.prox.hard_threshold(jnp.array([-2.0, -0.5, 0.25, 3.0]), 1.0)
      Array([-2.,  0.,  0.,  3.], dtype=float32)

    References:
      Blumensath and Davies, *Iterative hard thresholding for compressed
      sensing*, Appl. Comput. Harmon. Anal., 2009.
    """

    def leaf_fn(leaf: jax.Array, tau: Any) -> jax.Array:
        return jnp.where(jnp.abs(leaf) > tau, leaf, jnp.zeros_like(leaf))

    return _per_leaf(leaf_fn, x, threshold)
