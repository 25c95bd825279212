r"""Importance scores other than magnitude: saliency :math:`|w \odot \nabla L|`, SNIP, random.

Each function returns a pytree of scores with the params' structure, to pass
as ``importance_scores=`` to :func:`sparsejax.pruning.prune` (any ``scope``,
``distribution`` and ``pattern``); the lowest scores are removed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from sparsejax.tree import PyTree

__all__ = ["random_scores", "saliency_scores", "snip_scores"]


def saliency_scores(params: PyTree, grads: PyTree) -> PyTree:
    r"""First-order saliency :math:`s_j = |w_j\, g_j|` (the loss change of removing :math:`w_j`, to first order).

    Args:
      params: the parameter pytree.
      grads: the gradient of the loss at ``params`` (same structure).

    Returns:
      Float32 scores with the params' structure (``None`` leaves kept).

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> sj.pruning.saliency_scores({'w': jnp.array([2.0, -1.0])}, {'w': jnp.array([0.5, 3.0])})
      {'w': Array([1., 3.], dtype=float32)}

    References:
      Mozer and Smolensky, *Skeletonization*, NeurIPS 1988; Molchanov et al.,
      *Pruning Convolutional Neural Networks for Resource Efficient Inference*,
      ICLR 2017 (the Taylor criterion).
    """
    return jax.tree.map(
        lambda w, g: jnp.abs(w.astype(jnp.float32) * g.astype(jnp.float32)), params, grads
    )


def snip_scores(loss_fn: Callable[..., jax.Array], params: PyTree, *batch: Any) -> PyTree:
    r"""SNIP's connection sensitivity at initialisation, on one batch.

    .. math::

      s_j = \frac{|g_j\, w_j|}{\sum_k |g_k\, w_k|}, \qquad g = \nabla_w L(w; \text{batch}),

    (the derivative of the loss with respect to a multiplicative mask
    :math:`c_j` at :math:`c = 1` is :math:`g_j w_j`). Pruning keeps the
    largest :math:`s_j` (``prune(params, amount, importance_scores=s)``); the
    normaliser is over every leaf of ``params``.

    Args:
      loss_fn: ``loss_fn(params, *batch) -> scalar``.
      params: the (initial) parameters.
      *batch: the batch arguments of ``loss_fn``.

    Returns:
      Float32 scores with the params' structure, summing to 1.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> loss = lambda p, x: jnp.sum(p['w'] * x)
      >>> sj.pruning.snip_scores(loss, {'w': jnp.array([1.0, 2.0])}, jnp.array([3.0, -1.0]))
      {'w': Array([0.6, 0.4], dtype=float32)}

    References:
      Lee, Ajanthan and Torr, *SNIP: Single-shot Network Pruning based on
      Connection Sensitivity*, ICLR 2019, eq. (6).
    """
    grads = jax.grad(loss_fn)(params, *batch)
    raw = saliency_scores(params, grads)
    total = sum(jnp.sum(x) for x in jax.tree.leaves(raw))
    return jax.tree.map(lambda x: x / jnp.where(total > 0, total, 1.0), raw)


def random_scores(params: PyTree, seed: int = 0) -> PyTree:
    """Uniform random scores in ``[0, 1)``: random pruning, the control of every pruning study.

    Args:
      params: the parameter pytree.
      seed: the seed (each leaf gets its own stream).

    Returns:
      Float32 scores with the params' structure.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> s = sj.pruning.random_scores({'w': jnp.zeros((2, 3))}, seed=1)
      >>> s['w'].shape, bool(jnp.all((s['w'] >= 0) & (s['w'] < 1)))
      ((2, 3), True)
    """
    leaves, treedef = jax.tree.flatten(params)
    key = jax.random.PRNGKey(seed)
    return jax.tree.unflatten(
        treedef,
        [jax.random.uniform(jax.random.fold_in(key, i), jnp.shape(x)) for i, x in enumerate(leaves)],
    )
