r"""LATS with continuation: :math:`\lambda` grows until a target sparsity, then is held.

The transform is :func:`sparsejax.lats` whose threshold rule keeps
:math:`\lambda` in its state (:class:`ContinuationState`), plus a feedback
step: after each update the sparsity of the thresholded leaves is measured and,
at the checks, :math:`\lambda` is multiplied until the target is reached.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sparsejax._validation import as_schedule, check_number
from sparsejax.optim._common import copy_as
from sparsejax.optim.reparam import (
    MOMENTUM,
    WEIGHT_DECAY,
    Gradient,
    SoftThresholdReparamState,
    _sgd_reparam,
    sparse_weights,
)
from sparsejax.optim.threshold_rules import ThresholdRule, lats_increment
from sparsejax.tree import Mask, PyTree

__all__ = ["ContinuationState", "lats_continuation"]


class ContinuationState(NamedTuple):
    """State of the threshold rule of :func:`lats_continuation` (its ``rule_state``).

    Attributes:
      l1: the current :math:`\\ell_1` coefficient :math:`\\lambda` (float32).
      reached: whether the target sparsity was reached (bool); from then on
        :math:`\\lambda` is held.
      sparsity: the sparsity of the thresholded leaves after the last update (float32).
    """

    l1: jax.Array
    reached: jax.Array
    sparsity: jax.Array


def _continuation_rule(
    learning_rate: optax.ScalarOrSchedule, l1: Any, start_step: Any
) -> ThresholdRule[ContinuationState]:
    r"""LATS's rule :math:`d_{t+1} = d_t + \lambda_t\eta_t` with :math:`\lambda_t` in its state."""
    lr = as_schedule(learning_rate)

    def init() -> tuple[jax.Array, ContinuationState]:
        state = ContinuationState(
            l1=copy_as(jnp.asarray(l1, jnp.float32), jnp.float32),  # not inject_hyperparams' buffer
            reached=jnp.zeros([], bool),
            sparsity=jnp.zeros([], jnp.float32),
        )
        return jnp.zeros([], jnp.float32), state

    def next_(count: jax.Array, threshold: jax.Array, state: ContinuationState) -> Any:
        return threshold + lats_increment(count, state.l1, lr(count), start_step), state

    return ThresholdRule(init, next_)


def _sparsity(weights: PyTree) -> jax.Array:
    """The share of exact zeros over every leaf of ``weights`` (float32)."""
    leaves = jax.tree.leaves(weights)
    total = sum(int(w.size) for w in leaves)
    if not total:
        return jnp.zeros([], jnp.float32)
    zeros = sum(jnp.sum(w == 0).astype(jnp.float32) for w in leaves)
    return zeros / jnp.float32(total)


def _continue(
    reparam: optax.GradientTransformationExtraArgs,
    target_sparsity: Any,
    interval: Any,
    growth: Any,
    start_step: Any,
) -> optax.GradientTransformationExtraArgs:
    """``reparam`` followed by the continuation's update of :math:`\\lambda`."""

    def update_fn(
        updates: optax.Updates,
        state: SoftThresholdReparamState[ContinuationState],
        params: optax.Params | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, SoftThresholdReparamState[ContinuationState]]:
        updates, state = reparam.update(updates, state, params, **extra_args)
        c = state.rule_state
        sparsity = _sparsity(sparse_weights(state))
        since = state.count - start_step
        check = (since > 0) & (since % interval == 0) & ~c.reached
        hit = sparsity >= jnp.asarray(target_sparsity, jnp.float32)
        grown = c.l1 * jnp.asarray(growth, jnp.float32)
        c = ContinuationState(
            l1=jnp.where(check & ~hit, grown, c.l1).astype(jnp.float32),
            reached=c.reached | (check & hit),
            sparsity=sparsity,
        )
        return updates, state._replace(rule_state=c)

    return optax.GradientTransformationExtraArgs(reparam.init, update_fn)


def _check(target_sparsity: Any, l1: Any, interval: Any, growth: Any, start_step: Any) -> None:
    if any(callable(v) for v in (l1, target_sparsity, growth, interval)):
        raise ValueError(
            "lats_continuation: l1, target_sparsity, growth and interval must be numbers "
            "(l1 is adapted by the transform itself)"
        )
    check_number("target_sparsity", target_sparsity, ge=0, lt=1, scalar=True, schedule=False)
    check_number("l1", l1, gt=0, scalar=True, schedule=False)
    check_number("interval", interval, ge=1, integer=True, scalar=True, schedule=False)
    check_number("growth", growth, ge=1, scalar=True, schedule=False)
    check_number("start_step", start_step, ge=0, integer=True)


def lats_continuation(
    learning_rate: optax.ScalarOrSchedule,
    target_sparsity: float,
    l1: float,
    interval: int,
    growth: float = 2.0,
    momentum: float | None = MOMENTUM,
    weight_decay: float = WEIGHT_DECAY,
    start_step: int = 0,
    *,
    nesterov: bool = False,
    gradient: Gradient = "ste",
    mask: Mask = None,
    latent_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""LATS with continuation: :math:`\lambda` grows geometrically to a target sparsity, then holds.

    *Provenance.* This is this library's construction from the one-line mention
    of "continuation" in Chen et al. (ICLR 2023), whose available text gives no
    algorithm or constants; ``growth``, ``interval`` and the sparsity feedback are
    this library's choices. The continuation method the paper cites (Xiao and
    Zhang's proximal-gradient homotopy) is :func:`sparsejax.pgh`, the one to use
    as the paper's early-pruning schedule.

    The threshold follows LATS with the current coefficient,
    :math:`d_{t+1} = d_t + \lambda_t\eta_t` (from ``start_step``). Every
    ``interval`` steps from ``start_step``, the sparsity :math:`s_{t+1}` of the
    thresholded leaves (the share of exact zeros of :math:`w_{t+1}`) is measured, and

    .. math::

      \lambda_{t+1} = \begin{cases}
        \gamma\,\lambda_t & \text{if the target was never reached and } s_{t+1} < s^\star,\\
        \lambda_t & \text{otherwise,}
      \end{cases}

    so :math:`\lambda` climbs :math:`\lambda_0, \gamma\lambda_0, \gamma^2\lambda_0, \dots`
    until the first check that finds :math:`s_{t+1} \ge s^\star`; from then on it
    is constant, i.e. plain LATS on the objective :math:`L(w) + \lambda\|w\|_1`
    the continuation has found: the homotopy continuation of sparse optimisation
    (a sequence of :math:`\ell_1` problems, each warm-started from the last),
    with increasing :math:`\lambda`, so that no dense network is trained first.
    With :math:`\lambda` held, the threshold keeps growing by :math:`\lambda\eta_t`,
    so the sparsity can still rise past the target a little; what is fixed is
    the objective. Everything is jit-safe (no host round-trip);
    ``state.rule_state`` (:class:`ContinuationState`) holds :math:`\lambda`, the
    flag and the last sparsity.

    Args:
      learning_rate: :math:`\eta`, a number or a schedule.
      target_sparsity: :math:`s^\star \in [0, 1)`.
      l1: :math:`\lambda_0 > 0`, the (small) starting coefficient; read at
        ``init`` only (the state holds :math:`\lambda` from then on), so a
        value changed later through ``optax.inject_hyperparams`` has no effect.
      interval: steps between checks, :math:`\ge 1` (no default: it depends on
        the run length; a fraction of an epoch is typical).
      growth: :math:`\gamma \ge 1` (default 2: :math:`\lambda` doubles per interval).
      momentum, weight_decay, nesterov, gradient, latent_dtype: the inner SGD
        and the latents, as in :func:`sparsejax.lats`.
      start_step: :math:`t_0 \ge 0`, dense training before it.
      mask: which leaves are thresholded and counted (default ``None``: every
        leaf; the paper's choice is ``mask=sj.tree.weights_only``).

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`; ``update`` requires ``params``.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> import sparsejax as sj
      >>> params = {'kernel': jax.random.normal(jax.random.key(0), (10, 10))}
      >>> tx = sj.lats_continuation(0.1, target_sparsity=0.5, l1=0.1, interval=1,
      ...                           momentum=None, weight_decay=0.0)
      >>> state = tx.init(params)
      >>> for _ in range(10):
      ...   updates, state = tx.update({'kernel': jnp.zeros((10, 10))}, state, params)
      ...   params = optax.apply_updates(params, updates)
      >>> c = state.rule_state
      >>> bool(c.reached), round(float(c.l1), 4), float(c.sparsity) >= 0.5
      (True, 6.4, True)

    References:
      Chen et al., *A Unified Framework for Soft Threshold Pruning*, ICLR 2023
      (continuation and early pruning); Xiao and Zhang, *A proximal-gradient
      homotopy method for the sparse least-squares problem*, SIAM J. Optim.,
      2013; Hale, Yin and Zhang, *Fixed-point continuation for l1-minimization*,
      SIAM J. Optim., 2008.
    """
    _check(target_sparsity, l1, interval, growth, start_step)
    rule = _continuation_rule(learning_rate, l1, start_step)
    reparam = _sgd_reparam("lats_continuation", rule, learning_rate, momentum, weight_decay,
                           nesterov, gradient, mask, latent_dtype)
    return _continue(reparam, target_sparsity, interval, growth, start_step)
