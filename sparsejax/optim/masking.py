"""Transforms that keep pruned weights pruned."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sparsejax._validation import check_number, require_params
from sparsejax.tree import Mask, resolve_mask

__all__ = ["FreezeZerosState", "freeze_zeros"]


class FreezeZerosState(NamedTuple):
    """State of :func:`freeze_zeros`: the update count (int32)."""

    count: jax.Array


def freeze_zeros(start_step: int = 0, mask: Mask = None) -> optax.GradientTransformationExtraArgs:
    r"""Zeroes the gradient of every weight that is exactly zero, from ``start_step`` on.

    .. math::

      (g_t)_j \leftarrow 0 \quad \text{if } (w_t)_j = 0 \text{ and } t \ge T .

    This is the "iterative retraining" step of iRDA (Algorithm 1, Step 2): the
    zero pattern found so far is kept while the surviving weights go on
    training. Put *first* in a chain, it acts on raw gradients::

      optax.chain(sj.freeze_zeros(T), sj.rda(gamma, l1))

    and whether the frozen weights stay exactly zero depends on what follows:
    they do under RDA with a zero centre (their dual sum stops while the
    threshold grows) and under plain SGD, but not under transforms that move
    weights without a gradient (weight decay towards a non-zero centre, for
    example). Put *last*, it zeroes the final update of every zero weight, which
    keeps zeros at zero whatever precedes it (that is how :func:`sparsejax.irda`
    uses it).

    Args:
      start_step: the step :math:`T \ge 0` (counted from 0) from which zeros are
        frozen; before it gradients pass through unchanged.
      mask: which leaves can be frozen (``None``: all); see
        :func:`sparsejax.tree.resolve_mask`.

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`; ``update`` requires ``params``.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> params = {'w': jnp.array([0.0, 1.0])}
      >>> tx = sj.freeze_zeros()
      >>> tx.update({'w': jnp.array([3.0, 3.0])}, tx.init(params), params)[0]['w']
      Array([0., 3.], dtype=float32)

    References:
      *iRDA Method for Sparse Convolutional Neural Networks* (ICLR submission), Section 3.6
      and Algorithm 1.
    """
    check_number("start_step", start_step, ge=0, integer=True)

    def init_fn(params: optax.Params) -> FreezeZerosState:
        del params
        return FreezeZerosState(count=jnp.zeros([], jnp.int32))

    def update_fn(
        updates: optax.Updates,
        state: FreezeZerosState,
        params: optax.Params | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, FreezeZerosState]:
        del extra_args
        require_params(params, "freeze_zeros")
        active = state.count >= start_step
        selected = resolve_mask(mask, params, nonempty=True)

        def leaf_update(g: jax.Array, p: jax.Array, sel: bool) -> jax.Array:
            if not sel:
                return g
            return jnp.where(active & (p == 0), jnp.zeros_like(g), g)

        new_updates = jax.tree.map(leaf_update, updates, params, selected)
        return new_updates, FreezeZerosState(count=optax.safe_increment(state.count))

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
