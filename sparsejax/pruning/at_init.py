r"""Pruning at initialisation: a short LATS phase chooses the support, then fixed-support training.

:func:`lats_prune_at_init` chains the soft-threshold reparameterisation of
:func:`sparsejax.lats` with :func:`sparsejax.pruning.fixed_support`. The support
is every entry (``fixed_support`` is the identity) until the end of the LATS
phase, where it becomes the non-zeros of the weights and the threshold drops to 0.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sparsejax._validation import check_choice, check_number, require_params
from sparsejax.optim.reparam import (
    MOMENTUM,
    WEIGHT_DECAY,
    Gradient,
    SoftThresholdReparamState,
    soft_threshold_reparam,
    sparse_weights,
)
from sparsejax.optim.sgd import pytorch_sgd
from sparsejax.optim.threshold_rules import ThresholdRule, lats_rule
from sparsejax.pruning import FixedSupportState, fixed_support
from sparsejax.tree import Mask, PyTree

__all__ = ["PruneAtInitState", "lats_prune_at_init"]


class PruneAtInitState(NamedTuple):
    """State of :func:`lats_prune_at_init`.

    Attributes:
      count: number of updates so far (int32).
      reparam: the state of the LATS reparameterisation (its threshold is 0
        once the support is fixed; from then on its latents are the weights at
        the surviving entries and are held at zero at the pruned ones, so that
        ``sparsejax.optim.reparam.sparse_weights(state.reparam)`` equals the params
        at the thresholded leaves).
      retrain: the state of :func:`sparsejax.pruning.fixed_support`, whose
        support is ``True`` where the weight survives (everywhere until it is
        fixed) at the thresholded leaves, ``None`` elsewhere.
      initial: the initial params (kept for ``rewind=True``), else ``None``.
    """

    count: jax.Array
    reparam: SoftThresholdReparamState
    retrain: FixedSupportState
    initial: optax.Params | None


def _nonzero(weights: PyTree) -> PyTree:
    """The support of ``weights``, ``w != 0`` (``None`` leaves stay ``None``)."""
    return jax.tree.map(lambda w: w != 0, weights)


def _until(rule: ThresholdRule, steps: Any) -> ThresholdRule:
    """``rule``'s threshold for the first ``steps`` updates, 0 afterwards."""

    def next_(count: jax.Array, threshold: jax.Array, state: Any) -> Any:
        d, state = rule.next(count, threshold, state)
        return jnp.where(count >= steps, 0.0, d), state

    return ThresholdRule(rule.init, next_)


def _select(fix: jax.Array, new: PyTree, old: PyTree, *, floats_only: bool = False) -> PyTree:
    """``new`` where ``fix``, else ``old``, in ``old``'s dtypes (``floats_only``: ints kept)."""

    def leaf(a: Any, b: Any) -> Any:
        if floats_only and not jnp.issubdtype(jnp.result_type(b), jnp.floating):
            return b
        return jnp.where(fix, a, b).astype(jnp.result_type(b))

    return jax.tree.map(leaf, new, old)


def _held(support: PyTree, latent: PyTree) -> PyTree:
    """``latent`` with the entries outside ``support`` at zero (``None`` leaves stay ``None``)."""
    return jax.tree.map(
        lambda m, theta: jnp.where(m, theta, jnp.zeros_like(theta)), support, latent
    )


def _rewound(initial: PyTree, support: PyTree) -> PyTree:
    """The initial params pruned by ``support`` (a ``None`` support: the leaf as it was)."""

    def leaf(m: Any, w0: Any) -> Any:
        return w0 if m is None else jnp.where(m, w0, jnp.zeros_like(w0))

    return jax.tree.map(leaf, support, initial, is_leaf=lambda x: x is None)


def _prune_at_init(
    reparam: optax.GradientTransformationExtraArgs,
    inner: optax.GradientTransformation,
    prune_steps: Any,
    rewind: bool,
) -> optax.GradientTransformationExtraArgs:
    """``reparam`` then ``fixed_support``, with the support fixed after ``prune_steps`` updates."""
    retrain = fixed_support(_nonzero)

    def init_fn(params: optax.Params) -> PruneAtInitState:
        state = reparam.init(params)
        everything = jax.tree.map(jnp.ones_like, state.latent)
        initial = jax.tree.map(lambda p: jnp.array(p, copy=True), params) if rewind else None
        return PruneAtInitState(jnp.zeros([], jnp.int32), state, retrain.init(everything), initial)

    def fix_support(
        fix: jax.Array, updates: optax.Updates, state: PruneAtInitState, params: optax.Params
    ) -> tuple[optax.Updates, PruneAtInitState]:
        r"""At ``fix``: the support :math:`m = [w_P \ne 0]`, :math:`\theta \leftarrow w_P`
        (or :math:`m \odot w_0`, with fresh optimizer buffers, when rewinding), :math:`d = 0`."""
        reparam_state = state.reparam
        weights = sparse_weights(reparam_state)
        retrain_state = _select(fix, retrain.init(weights), state.retrain)
        inner_state = reparam_state.inner_state
        if rewind:
            target = _rewound(state.initial, _nonzero(weights))
            moved = jax.tree.map(lambda t, p: (t - p).astype(p.dtype), target, params)
            updates = _select(fix, moved, updates)
            fresh = inner.init(target)
            inner_state = _select(fix, fresh, inner_state, floats_only=True)
            weights = jax.tree.map(lambda w, t: None if w is None else t, weights, target,
                                   is_leaf=lambda x: x is None)
        reparam_state = reparam_state._replace(
            latent=_select(fix, weights, reparam_state.latent),
            threshold=jnp.where(fix, 0.0, reparam_state.threshold),
            inner_state=inner_state,
        )
        return updates, state._replace(reparam=reparam_state, retrain=retrain_state)

    def update_fn(
        updates: optax.Updates,
        state: PruneAtInitState,
        params: optax.Params | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, PruneAtInitState]:
        require_params(params, "lats_prune_at_init")
        # The pruned weights get no gradient and no update (nothing is pruned before the fix).
        grads, _ = retrain.update(updates, state.retrain)
        updates, reparam_state = reparam.update(grads, state.reparam, params, **extra_args)
        # The pruned latents stay at zero: momentum and weight decay would otherwise move them
        # (the params stay zero, but sparse_weights(state.reparam) would not). A no-op before
        # the fix, where the support is everything.
        reparam_state = reparam_state._replace(
            latent=_held(state.retrain.support, reparam_state.latent)
        )
        updates, retrain_state = retrain.update(updates, state.retrain, params)
        count = optax.safe_increment(state.count)
        state = PruneAtInitState(count, reparam_state, retrain_state, state.initial)
        return fix_support(count == prune_steps, updates, state, params)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def lats_prune_at_init(
    learning_rate: optax.ScalarOrSchedule,
    l1: optax.ScalarOrSchedule,
    prune_steps: int,
    momentum: float | None = MOMENTUM,
    weight_decay: float = WEIGHT_DECAY,
    *,
    rewind: bool = False,
    nesterov: bool = False,
    gradient: Gradient = "ste",
    mask: Mask = None,
    latent_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Pruning at initialisation: a short LATS phase fixes the support, then masked training.

    *Provenance.* This is this library's construction from the one-line mention
    of "pruning at initialization" among the methods the framework of Chen et al.
    (ICLR 2023) yields; the available text gives no algorithm. The phase split,
    the support freeze and ``rewind`` are this library's choices. The paper's
    early-pruning schedule is :func:`sparsejax.pgh` (proximal-gradient homotopy,
    Xiao and Zhang).

    Phase 1, updates :math:`t < P` (``prune_steps``): :func:`sparsejax.lats`
    from the initial weights, :math:`d_{t+1} = d_t + \lambda\eta_t`. A short
    phase needs a large :math:`\lambda` (the threshold reached is
    :math:`\lambda\sum_{t<P}\eta_t`).

    At :math:`t + 1 = P` the support :math:`m = [w_P \ne 0]` of the thresholded
    leaves is fixed and the threshold dropped: :math:`\theta \leftarrow w_P`
    (the model does not jump), :math:`d = 0`.

    Phase 2, :math:`t \ge P`: the inner optimizer trains the surviving weights
    only, :math:`w_{t+1} = m \odot (w_t + u_t(m \odot g_t))`
    (:func:`sparsejax.pruning.fixed_support`): pruned weights stay exactly zero,
    survivors are no longer shrunk (no :math:`\ell_1` bias in the final
    weights), and the support never changes again (``state.retrain``).

    With ``rewind=True`` the survivors are instead reset to their *initial*
    values at :math:`P` (:math:`\theta \leftarrow m \odot w_0`; leaves outside
    ``mask`` back to :math:`w_0` too; the state keeps a copy of :math:`w_0`) and
    the inner optimizer's buffers (momentum) are re-initialised, while its step
    count, and so the learning-rate schedule, goes on. Phase 2 then trains the
    initial network pruned by a support found in :math:`P` steps: pruning at
    initialisation in the sense of SNIP or lottery tickets, with the support
    chosen by the soft-threshold dynamics.

    Args:
      learning_rate: :math:`\eta`, a number or a schedule.
      l1: :math:`\lambda \ge 0` of the thresholding phase, a number or a schedule.
      prune_steps: :math:`P \ge 1`, the length of the thresholding phase.
      momentum, weight_decay, nesterov, latent_dtype: the inner SGD and the
        latents, as in :func:`sparsejax.lats`.
      rewind: reset the survivors to their initial values at :math:`P`.
      gradient: ``'ste'`` (default) or ``'exact'``, in phase 1.
      mask: which leaves are thresholded and masked (default ``None``: every
        leaf; the paper's choice is ``mask=sj.tree.weights_only``).

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`; ``update`` requires ``params``.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> import sparsejax as sj
      >>> params = {'kernel': jnp.array([[0.5, -0.05, 0.02]])}
      >>> tx = sj.lats_prune_at_init(0.1, l1=1.0, prune_steps=1, momentum=None,
      ...                            weight_decay=0.0)
      >>> state = tx.init(params)
      >>> grads = {'kernel': jnp.array([[0.0, 0.5, -0.5]])}
      >>> for _ in range(3):  # after step 1 the gradient would revive them; the support stops it
      ...   updates, state = tx.update(grads, state, params)
      ...   params = optax.apply_updates(params, updates)
      >>> params['kernel'], state.retrain.support['kernel']
      (Array([[0.4, 0. , 0. ]], dtype=float32), Array([[ True, False, False]], dtype=bool))

    References:
      Chen et al., *A Unified Framework for Soft Threshold Pruning*, ICLR 2023
      (the family of pruning methods: sparsify-during-training, early pruning
      and pruning at initialisation); Lee, Ajanthan and Torr, *SNIP: Single-shot
      Network Pruning based on Connection Sensitivity*, ICLR 2019.
    """
    check_number("learning_rate", learning_rate, ge=0, scalar=True)
    check_number("l1", l1, ge=0, scalar=True)
    check_number("prune_steps", prune_steps, ge=1, integer=True)
    check_choice("rewind", rewind, (False, True))
    inner = pytorch_sgd(learning_rate, momentum, nesterov, weight_decay)
    rule = _until(lats_rule(learning_rate, l1), prune_steps)
    reparam = soft_threshold_reparam(inner, rule, gradient=gradient, mask=mask,
                                     latent_dtype=latent_dtype)
    return _prune_at_init(reparam, inner, prune_steps, rewind)
