r"""Importance scores other than magnitude: saliency :math:`|w \odot \nabla L|`, SNIP, random.

Each function returns a pytree of scores with the params' structure, to pass
as ``importance_scores=`` to :func:`sparsejax.pruning.prune` (any ``scope``,
``distribution`` and ``pattern``); the lowest scores are removed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax.tree import PyTree

__all__ = ["random_scores", "saliency_scores", "snip_scores", "uniform_scores"]


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

    :math:`L` is the loss of the whole batch, a scalar (the paper's mean over
    the mini-batch; a sum gives the same normalised scores). A function of
    per-example losses, such as
    :func:`sparsejax.train.connectivity.classifier_loss`, is reduced by the
    caller: ``lambda p, b: jnp.mean(losses(p, b))``.

    ``loss_fn`` alone decides how BatchNorm and dropout behave: a loss that
    applies the model in training mode normalises with the batch's own
    statistics, one in evaluation mode (as ``classifier_loss`` does) with the
    running statistics, which at initialisation are the defaults (mean 0,
    variance 1); the two give different scores.

    Args:
      loss_fn: ``loss_fn(params, *batch) -> scalar``.
      params: the (initial) parameters.
      *batch: the batch arguments of ``loss_fn``.

    Returns:
      Float32 scores with the params' structure, summing to 1.

    Raises:
      ValueError: if ``loss_fn`` does not return a scalar (e.g. per-example losses).

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

    def scalar_loss(p: PyTree, *args: Any) -> jax.Array:
        loss = loss_fn(p, *args)
        if jnp.ndim(loss) != 0:
            raise ValueError(
                f"snip_scores: loss_fn must return a scalar (the batch's mean loss), got shape "
                f"{jnp.shape(loss)}; for per-example losses (e.g. "
                "sparsejax.train.connectivity.classifier_loss), pass "
                "lambda p, *b: jnp.mean(loss_fn(p, *b))"
            )
        return loss

    grads = jax.grad(scalar_loss)(params, *batch)
    raw = saliency_scores(params, grads)
    total = sum(jnp.sum(x) for x in jax.tree.leaves(raw))
    return jax.tree.map(lambda x: x / jnp.where(total > 0, total, 1.0), raw)


def _lowbias32(x: jax.Array) -> jax.Array:
    """A bijective 32-bit integer hash with low bias (C. Wellons' "lowbias32" constants)."""
    x = x ^ (x >> 16)
    x = x * np.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * np.uint32(0x846CA68B)
    return x ^ (x >> 16)


def uniform_scores(key: jax.Array, shapes: Sequence[tuple[int, ...]]) -> list[jax.Array]:
    r"""Uniform float32 scores in :math:`[0, 1)`, one array per shape, from a counter-based hash.

    Entry :math:`j` (row-major) of array :math:`i` is

    .. math::

      u_{ij} = 2^{-24} \left\lfloor 2^{-8}\, H\big(H(j \oplus a_i) + b_i\big) \right\rfloor,
      \qquad (a_i, b_i) = \texttt{jax.random.bits}(\texttt{fold\_in}(\text{key}, i)),

    with :math:`H` the bijective 32-bit hash "lowbias32" and arithmetic modulo
    :math:`2^{32}`. Within an array the 32-bit hashes are distinct (a
    composition of bijections of :math:`j`), so scores tie only through the
    final rounding to 24 bits (``jax.random.uniform`` keeps 23). This is the
    random source of every random mask in :mod:`sparsejax.pruning` (initial
    masks, SET's regrowth, random pruning): a few integer operations per
    entry, which XLA vectorises, where ``jax.random.uniform`` runs the
    Threefry cipher per entry (about 13x slower: 13-15 ms against
    173-206 ms for the 11.7M kernel entries of a ResNet-18 on two Xeon vCPUs,
    ``benchmarks/dynamic_sparse.py``). The per-array keys
    come from ``jax.random``, so ``key`` is an ordinary JAX PRNG key.

    Args:
      key: a JAX PRNG key (``jax.random.key`` or ``jax.random.PRNGKey``).
      shapes: the shapes of the arrays; each at most :math:`2^{32}` entries.

    Returns:
      A list of float32 arrays with these shapes.

    Example:
      >>> import jax
      >>> import sparsejax as sj
      >>> u = sj.pruning.uniform_scores(jax.random.key(0), [(2, 3), (4,)])
      >>> [x.shape for x in u], bool(all(((x >= 0) & (x < 1)).all() for x in u))
      ([(2, 3), (4,)], True)

    References:
      Salmon et al., *Parallel random numbers: as easy as 1, 2, 3*, SC 2011
      (counter-based generation); C. Wellons, *Hash function prospector*
      (2018), the lowbias32 constants.
    """
    out = []
    for i, shape in enumerate(shapes):
        n = math.prod(shape)
        if n > 1 << 32:
            raise ValueError(f"uniform_scores: an array of {n} entries is above 2**32 (shape {shape})")
        a, b = jax.random.bits(jax.random.fold_in(key, i), (2,), jnp.uint32)
        h = _lowbias32(_lowbias32(jax.lax.iota(jnp.uint32, n) ^ a) + b)
        out.append(((h >> 8).astype(jnp.float32) * np.float32(2.0**-24)).reshape(shape))
    return out


def random_scores(params: PyTree, seed: int = 0) -> PyTree:
    r"""Uniform random scores in :math:`[0, 1)`: random pruning, the control of every pruning study.

    The scores of :func:`uniform_scores` with the key ``jax.random.PRNGKey(seed)``,
    one array per leaf.

    Args:
      params: the parameter pytree (only the shapes are used).
      seed: the random seed.

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
    return jax.tree.unflatten(
        treedef, uniform_scores(jax.random.PRNGKey(seed), [jnp.shape(x) for x in leaves])
    )
