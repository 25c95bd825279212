"""Retraining a pruned network with its support fixed: an Optax transform."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sparsejax.pruning.support import (
    Support,
    _unpack_leaf,
    check_support,
    map_support,
    support_from_zeros,
    pack_support,
)
from sparsejax.tree import Mask, PyTree

__all__ = ["FixedSupportState", "fixed_support"]


class FixedSupportState(NamedTuple):
    """State of :func:`fixed_support`.

    Attributes:
      count: number of updates so far (int32).
      support: the support, fixed at ``init`` (boolean arrays, or packed ``uint8``;
        ``None`` for dense leaves).
    """

    count: jax.Array
    support: Support


def masked_update(updates: PyTree, support: Support, params: PyTree | None) -> PyTree:
    """Updates that keep the pruned entries at exactly zero (see :func:`fixed_support`)."""

    def leaf(m: Any, u: Any, p: Any) -> Any:
        if m is None or u is None:
            return u
        keep = _unpack_leaf(m, u)
        if p is None:
            return jnp.where(keep, u, jnp.zeros_like(u))
        # -p moves a pruned weight to exactly zero: p + (-p) == 0 in floating point.
        return jnp.where(keep, u, (-p).astype(u.dtype))

    if params is None:
        return map_support(lambda m, u: leaf(m, u, None), support, updates)
    return map_support(leaf, support, updates, params)


def fixed_support(
    support: Support | Callable[[PyTree], Support] | None = None,
    *,
    mask: Mask = None,
    packed: bool = False,
) -> optax.GradientTransformationExtraArgs:
    r"""Keeps the pruned weights at exactly zero while the others retrain.

    With a fixed mask :math:`m` (``True`` = kept), incoming updates :math:`u`
    and params :math:`w`,

    .. math::

      \text{emitted update}_j = \begin{cases} u_j & m_j \\ -w_j & \lnot m_j \end{cases}
      \quad\Longrightarrow\quad (w + \text{update})_j = 0 \text{ for every pruned } j,

    so a pruned weight is exactly zero after every step, whatever produced
    :math:`u` (momentum accumulated before pruning, weight decay, Adam's
    normalisation). This is exact when the updates have the params' dtype (the
    usual case; updates narrower than the params, e.g. bf16 updates of f32
    params, cannot carry :math:`-w_j` exactly). Without ``params`` the pruned
    updates are simply zeroed, which keeps weights that are already zero at
    zero.

    **Put it last in the chain**, after every transform that changes the
    update (weight decay, momentum, learning-rate scaling)::

      optax.chain(optax.add_decayed_weights(1e-4), optax.sgd(0.1, momentum=0.9),
                  fixed_support(support))

    Placed earlier, its output would be transformed again by what follows
    (scaled by the learning rate, mixed into momentum, decayed), and pruned
    weights would move. Inside wrappers (``optax.MultiSteps``,
    ``optax.apply_if_finite``) put the whole chain, this transform last.
    (:func:`sparsejax.freeze_zeros` has no stored support: it recomputes the
    zeros of the params each step, and goes first to zero raw gradients or last
    to zero final updates.)

    Args:
      support: the support (see :mod:`sparsejax.pruning.support`: boolean arrays,
        ``None`` for dense leaves), a callable ``params -> support`` evaluated by
        ``init`` (e.g. ``lambda p: pruning.prune(p, 0.9)[1]``), or ``None``
        for :func:`support_from_zeros` of the params given to ``init``: the
        zeros of an already pruned network stay zero.
      mask: with ``support=None``, which leaves keep their zeros (default:
        every leaf; see :func:`sparsejax.tree.resolve_mask`).
      packed: keep the support packed as bits in the state (8x less memory).

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> import sparsejax as sj
      >>> params = {'kernel': jnp.array([[0.5, -1.0], [0.1, 2.0]]), 'bias': jnp.zeros(2)}
      >>> params, support = sj.pruning.prune(params, 0.5, mask=sj.tree.weights_only)
      >>> tx = optax.chain(optax.add_decayed_weights(1e-2), optax.sgd(0.1, momentum=0.9),
      ...                  sj.pruning.fixed_support(support))
      >>> state = tx.init(params)
      >>> grads = {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones(2)}
      >>> for _ in range(3):
      ...   updates, state = tx.update(grads, state, params)
      ...   params = optax.apply_updates(params, updates)
      >>> params['kernel'] == 0
      Array([[ True, False],
             [ True, False]], dtype=bool)

    References:
      Han, Pool, Tran and Dally, *Learning both Weights and Connections for
      Efficient Neural Networks*, NeurIPS 2015 (retraining after pruning).
    """

    def init_fn(params: optax.Params) -> FixedSupportState:
        if support is None:
            m = support_from_zeros(params, mask)
        elif callable(support):
            m = support(params)
        else:
            m = support
        check_support(m, params)
        m = jax.tree.map(lambda x: jnp.array(x, copy=True), m)
        if packed:
            m = jax.tree.map(lambda x: x if x.dtype == jnp.uint8 else pack_support(x), m)
        return FixedSupportState(count=jnp.zeros([], jnp.int32), support=m)

    def update_fn(
        updates: optax.Updates,
        state: FixedSupportState,
        params: optax.Params | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, FixedSupportState]:
        del extra_args
        new_updates = masked_update(updates, state.support, params)
        return new_updates, FixedSupportState(optax.safe_increment(state.count), state.support)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
