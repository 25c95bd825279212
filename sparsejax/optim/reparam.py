r"""Soft-threshold reparameterisation: the core transform and its threshold schedulers.

The model's weights are a soft threshold of latent weights,
:math:`w = S_d(\theta) = \operatorname{sign}(\theta)\max(|\theta| - d, 0)`. The
transforms here own :math:`\theta`: it lives in the optimizer state, is
initialised from the params, and is trained by an inner Optax optimizer from
the gradient :math:`\partial L/\partial w` the model produces. Each update
moves the params to :math:`S_{d_{t+1}}(\theta_{t+1})`, so the model, its
evaluation and its checkpoints only ever see the sparse :math:`w`; nothing in
the model changes.

Chen et al. (ICLR 2023) show that, for the weights that stay non-zero, one such
step with plain SGD is one ISTA (proximal-gradient) step on
:math:`L(w) + \lambda_t\|w\|_1` with :math:`\lambda_t = (d_{t+1} - d_t)/\eta_t`.
The methods differ in how they move :math:`d`, i.e. in their
:class:`~sparsejax.optim.threshold_rules.ThresholdRule`:

* :func:`soft_threshold_reparam`: the core, for any inner optimizer and any
  threshold (a number, a schedule or a rule);
* :func:`lats`: :math:`d_{t+1} = d_t + \lambda\eta_t` for the learning rate
  actually used (a constant :math:`\lambda`);
* :func:`slats`: its closed form for a cosine learning rate, ending at :math:`D`;
* :func:`lats_epochwise`: the closed form for a cosine learning rate that
  changes once per epoch, ending at :math:`D`;
* :func:`pgh`: :math:`\lambda` growing or shrinking geometrically (cosine closed form);
* :func:`stds`: a sine (or linear) ramp to :math:`D`, independent of the learning rate;
* :func:`fixed_threshold_reparam`: a constant :math:`D`, latents starting at
  :math:`S_D^{-1}(w_0)`.

The named methods train :math:`\theta` with PyTorch-style SGD
(:func:`sparsejax.pytorch_sgd`: momentum 0.875 and coupled weight decay
:math:`2^{-15}` on :math:`\theta` by default, as the reference code). Trainable
per-layer thresholds (STR) are :func:`sparsejax.str_reparam`, the continuation
on :math:`\lambda` is :func:`sparsejax.lats_continuation`, and pruning at
initialisation is :func:`sparsejax.lats_prune_at_init`.

All of them consume raw gradients and write the final update, so they stand
alone or last in an ``optax.chain``, and need ``params``. Which leaves are
thresholded is chosen with ``mask`` (:func:`sparsejax.tree.resolve_mask`;
default: every leaf); the leaves outside it are trained by the inner optimizer
directly.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, NamedTuple, TypeVar

import jax
import jax.numpy as jnp
import optax

from sparsejax import prox
from sparsejax._validation import as_schedule, check_choice, check_number, require_params
from sparsejax.optim._common import copy_as
from sparsejax.optim.sgd import pytorch_sgd
from sparsejax.optim.threshold_rules import (
    StdsShape,
    ThresholdRule,
    fixed_threshold,
    increment_rule,
    lats_epochwise_threshold,
    lats_rule,
    pgh_threshold,
    schedule_rule,
    slats_threshold,
    stds_threshold,
)
from sparsejax.tree import Mask, PyTree, resolve_mask

__all__ = [
    "SoftThresholdReparamState",
    "fixed_threshold_reparam",
    "lats",
    "lats_epochwise",
    "pgh",
    "slats",
    "soft_threshold_reparam",
    "sparse_weights",
    "stds",
]

Gradient = Literal["ste", "exact"]

MOMENTUM = 0.875
"""Momentum of the reference code's SGD (ResNet-50 and MobileNet-V1 configs; not Nesterov)."""

WEIGHT_DECAY = 2.0**-15
"""Weight decay on :math:`\\theta` of the reference code's configs, 3.0517578125e-05."""

RuleState = TypeVar("RuleState")


class SoftThresholdReparamState(NamedTuple, Generic[RuleState]):
    """State of :func:`soft_threshold_reparam` and the schedulers built on it.

    Attributes:
      count: number of updates so far (int32).
      latent: the latent weights :math:`\\theta` (params' structure; ``None`` at
        the leaves that are not thresholded, which are trained directly).
      threshold: the threshold :math:`d_t` the params are seen through now (float32).
      rule_state: the threshold rule's own state (``optax.EmptyState()`` for
        every rule but the continuation's
        :class:`~sparsejax.optim.continuation.ContinuationState`).
      inner_state: the state of the inner optimizer.
    """

    count: jax.Array
    latent: optax.Params
    threshold: jax.Array
    rule_state: RuleState
    inner_state: optax.OptState


def sparse_weights(state: SoftThresholdReparamState) -> PyTree:
    r"""The weights the model sees at the thresholded leaves, :math:`S_{d_t}(\theta_t)`.

    Args:
      state: a :class:`SoftThresholdReparamState`.

    Returns:
      The latents' structure: :math:`S_{d_t}(\theta_t)` at the thresholded
      leaves, ``None`` elsewhere.
    """
    return jax.tree.map(lambda theta: prox.soft_threshold(theta, state.threshold), state.latent)


# --- the leaf-wise pieces (shared with sparsejax.optim.trainable_threshold) -----------------------


class _Leaves(NamedTuple):
    """The params as a list of leaves, with which of them are thresholded."""

    params: list[Any]
    selected: list[bool]
    treedef: Any

    def flatten(self, tree: PyTree) -> list[Any]:
        return self.treedef.flatten_up_to(tree)

    def unflatten(self, leaves: list[Any]) -> PyTree:
        return jax.tree.unflatten(self.treedef, leaves)


def _leaves(params: optax.Params, mask: Mask) -> _Leaves:
    leaves, treedef = jax.tree.flatten(params)
    selected = treedef.flatten_up_to(resolve_mask(mask, params, nonempty=True))
    return _Leaves(leaves, selected, treedef)


def _initial_latents(leaves: _Leaves, thresholds: list[Any], dtype: Any) -> PyTree:
    r""":math:`\theta_0 = S_d^{-1}(w_0) = \operatorname{sign}(w_0)(|w_0| + d)`: ``w_0`` unmoved."""

    def inverse(w: jax.Array, d: jax.Array) -> jax.Array:
        out = w.astype(jnp.promote_types(w.dtype, jnp.float32)) + jnp.sign(w) * d
        return copy_as(out, dtype or w.dtype)

    latents = [
        inverse(p, d) if s else None
        for p, s, d in zip(leaves.params, leaves.selected, thresholds)
    ]
    return leaves.unflatten(latents)


def _thetas(leaves: _Leaves, latent: PyTree) -> list[Any]:
    """What the inner optimizer trains: the latents, and the params of the other leaves."""
    return [
        lat if s else p
        for lat, p, s in zip(leaves.flatten(latent), leaves.params, leaves.selected)
    ]


def _theta_grads(
    leaves: _Leaves, grads: PyTree, thetas: list[Any], thresholds: list[Any], gradient: str
) -> list[Any]:
    r"""The gradient to :math:`\theta`: straight through, or :math:`g\,\mathbb 1[|\theta| > d]`.

    At :math:`d = 0` the exact form passes every entry (:math:`S_0` is the
    identity), including :math:`\theta = 0`.
    """
    out = []
    for g, theta, s, d in zip(leaves.flatten(grads), thetas, leaves.selected, thresholds):
        g = g.astype(theta.dtype)
        if s and gradient == "exact":
            # S_0 is the identity: at d = 0 every entry passes, an exact zero included (a
            # zero-initialised bias would otherwise never move).
            g = jnp.where((jnp.abs(theta) > d) | (d == 0), g, jnp.zeros_like(g))
        out.append(g)
    return out


def _step_latents(
    leaves: _Leaves, thetas: list[Any], inner_updates: PyTree, thresholds: list[Any]
) -> tuple[optax.Updates, PyTree]:
    r""":math:`\theta_{t+1} = \theta_t + u_t`; the update to :math:`S_{d_{t+1}}(\theta_{t+1})`.

    Returns the emitted updates (:math:`w_{t+1} - w_t` at the thresholded
    leaves, :math:`u_t` at the others) and the new latents.
    """
    updates = leaves.flatten(inner_updates)
    new_thetas = [(theta + u).astype(theta.dtype) for theta, u in zip(thetas, updates)]
    emitted = [
        (prox.soft_threshold(theta, d) - p).astype(p.dtype) if s else u.astype(p.dtype)
        for theta, u, p, s, d in zip(
            new_thetas, updates, leaves.params, leaves.selected, thresholds
        )
    ]
    latents = [theta if s else None for theta, s in zip(new_thetas, leaves.selected)]
    return leaves.unflatten(emitted), leaves.unflatten(latents)


# --- the core -------------------------------------------------------------------------------------


def _reparameterise(
    name: str,
    rule: ThresholdRule,
    inner: optax.GradientTransformation,
    gradient: str,
    mask: Mask,
    latent_dtype: Any,
) -> optax.GradientTransformationExtraArgs:
    """The soft-threshold reparameterisation with a threshold rule and an inner optimizer."""
    check_choice("gradient", gradient, ("ste", "exact"))
    inner_tx = optax.with_extra_args_support(inner)

    def init_fn(params: optax.Params) -> SoftThresholdReparamState:
        leaves = _leaves(params, mask)
        d, rule_state = rule.init()
        d = copy_as(jnp.asarray(d, jnp.float32), jnp.float32)  # never an injected hyperparameter
        latent = _initial_latents(leaves, [d] * len(leaves.params), latent_dtype)
        return SoftThresholdReparamState(
            count=jnp.zeros([], jnp.int32),
            latent=latent,
            threshold=d,
            rule_state=rule_state,
            inner_state=inner.init(leaves.unflatten(_thetas(leaves, latent))),
        )

    def update_fn(
        updates: optax.Updates,
        state: SoftThresholdReparamState,
        params: optax.Params | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, SoftThresholdReparamState]:
        require_params(params, name)
        leaves = _leaves(params, mask)
        thetas = _thetas(leaves, state.latent)
        grads = _theta_grads(leaves, updates, thetas, [state.threshold] * len(thetas), gradient)
        inner_updates, inner_state = inner_tx.update(
            leaves.unflatten(grads), state.inner_state, leaves.unflatten(thetas), **extra_args
        )
        d, rule_state = rule.next(state.count, state.threshold, state.rule_state)
        d = jnp.asarray(d, jnp.float32)
        new_updates, latent = _step_latents(leaves, thetas, inner_updates, [d] * len(thetas))
        new_state = SoftThresholdReparamState(
            count=optax.safe_increment(state.count),
            latent=latent,
            threshold=d,
            rule_state=rule_state,
            inner_state=inner_state,
        )
        return new_updates, new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _as_rule(threshold: Any, cumulative: bool) -> ThresholdRule:
    """The rule of :func:`soft_threshold_reparam`'s ``threshold`` argument."""
    if isinstance(threshold, ThresholdRule):
        if cumulative:
            raise ValueError(
                "cumulative=True applies to a number or a schedule; a ThresholdRule says "
                "itself how the threshold moves (see sparsejax.optim.increment_rule)"
            )
        return threshold
    check_number("threshold", threshold, ge=0, scalar=True)
    schedule = as_schedule(threshold)
    if cumulative:
        return increment_rule(schedule)
    # d_0 = threshold(0), and update t applies threshold(t).
    return schedule_rule(lambda k: schedule(jnp.maximum(k - 1, 0)))


def soft_threshold_reparam(
    inner: optax.GradientTransformation,
    threshold: optax.ScalarOrSchedule | ThresholdRule,
    *,
    cumulative: bool = False,
    gradient: Gradient = "ste",
    mask: Mask = None,
    latent_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Soft-threshold reparameterisation around any optimizer and any threshold rule.

    The state keeps latent weights :math:`\theta` and a threshold :math:`d`;
    the model sees :math:`w = S_d(\theta)`. With :math:`g_t = \partial L/\partial w`
    at :math:`w_t = S_{d_t}(\theta_t)` and :math:`u_t` the inner optimizer's update,

    .. math::

      \theta_{t+1} = \theta_t + u_t(\tilde g_t), \qquad
      w_{t+1} = S_{d_{t+1}}(\theta_{t+1}), \qquad
      \text{emitted update} = w_{t+1} - w_t,

    where :math:`\tilde g_t = g_t` (``gradient='ste'``, straight through, as the
    LATS/STDS reference code) or :math:`g_t\,\mathbb 1[|\theta_t| > d_t]`
    (``'exact'``, the derivative of :math:`S_d`, as STR; at :math:`d_t = 0`,
    where :math:`S_0` is the identity, every entry passes, an exact zero
    included). :math:`\theta` starts at :math:`S_{d_0}^{-1}(w_0) =
    \operatorname{sign}(w_0)(|w_0| + d_0)`, so the params do not move (up to
    the rounding of :math:`\theta_0` to ``latent_dtype``: with bf16 latents
    and :math:`d_0 > 0` an entry moves by up to half a bf16 ulp of
    :math:`|w_0| + d_0`, and one smaller than that becomes 0; float32 latents
    avoid it). Leaves outside ``mask`` are trained by ``inner`` directly.

    The threshold follows a :class:`~sparsejax.optim.threshold_rules.ThresholdRule`
    (e.g. ``sj.optim.lats_rule(learning_rate, l1)``; a closed-form schedule
    ``k -> d_k`` such as :func:`sparsejax.optim.slats_threshold` is
    ``sj.optim.schedule_rule(schedule)``). A number or a schedule gives
    :math:`d_0 = \text{threshold}(0)` and :math:`d_{t+1} = \text{threshold}(t)`
    for the update with count :math:`t` (as :func:`sparsejax.apply_soft_threshold` and
    :func:`optax.inject_hyperparams` evaluate schedules); with
    ``cumulative=True``, :math:`d_0 = 0` and :math:`d_{t+1} = d_t + \text{threshold}(t)`.

    Args:
      inner: the optimizer of :math:`\theta` (it sees :math:`\theta` as its
        params, e.g. for weight decay), e.g. ``optax.adam(1e-3)``.
      threshold: a ``ThresholdRule``, or a number or schedule :math:`\ge 0` (see above).
      cumulative: see above (numbers and schedules only).
      gradient: ``'ste'`` or ``'exact'``.
      mask: which leaves are thresholded (default ``None``: every leaf; a
        regular expression on leaf paths, a pytree of booleans or a callable
        such as :func:`sparsejax.tree.weights_only`; see
        :func:`sparsejax.tree.resolve_mask`).
      latent_dtype: dtype of :math:`\theta` (default: each param's dtype);
        ``jnp.float32`` keeps float32 master weights for bf16 params.

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`; ``update`` takes raw
      gradients and requires ``params``. With ``optax.inject_hyperparams``,
      list ``inner``, ``gradient``, ``mask`` and a ``latent_dtype`` given as a
      type in ``static_args``.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> import sparsejax as sj
      >>> params = {'kernel': jnp.array([[0.5, -0.125], [2.0, 0.125]])}
      >>> tx = sj.soft_threshold_reparam(optax.sgd(0.25), threshold=0.25)
      >>> state = tx.init(params)  # theta = sign(w)(|w| + 0.25): the params do not move
      >>> state.latent['kernel']
      Array([[ 0.75 , -0.375],
             [ 2.25 ,  0.375]], dtype=float32)
      >>> updates, state = tx.update({'kernel': jnp.ones((2, 2))}, state, params)
      >>> optax.apply_updates(params, updates)['kernel']  # S_0.25(theta - 0.25)
      Array([[ 0.25 , -0.375],
             [ 1.75 ,  0.   ]], dtype=float32)

    References:
      Chen et al., *A Unified Framework for Soft Threshold Pruning*, ICLR 2023
      (soft threshold pruning as an implicit ISTA).
    """
    rule = _as_rule(threshold, cumulative)
    return _reparameterise("soft_threshold_reparam", rule, inner, gradient, mask, latent_dtype)


def _sgd_reparam(
    name: str,
    rule: ThresholdRule,
    learning_rate: optax.ScalarOrSchedule,
    momentum: Any,
    weight_decay: Any,
    nesterov: bool,
    gradient: str,
    mask: Mask,
    latent_dtype: Any,
) -> optax.GradientTransformationExtraArgs:
    """The reparameterisation with :math:`\\theta` trained by PyTorch-style SGD (reference code)."""
    check_number("learning_rate", learning_rate, ge=0, scalar=True)
    inner = pytorch_sgd(learning_rate, momentum, nesterov, weight_decay)
    return _reparameterise(name, rule, inner, gradient, mask, latent_dtype)


# --- the schedulers -------------------------------------------------------------------------------


def lats(
    learning_rate: optax.ScalarOrSchedule,
    l1: optax.ScalarOrSchedule,
    momentum: float | None = MOMENTUM,
    weight_decay: float = WEIGHT_DECAY,
    start_step: int = 0,
    *,
    nesterov: bool = False,
    gradient: Gradient = "ste",
    mask: Mask = None,
    latent_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""LATS: the learning-rate adapted threshold scheduler (a constant :math:`\ell_1` coefficient).

    .. math::

      d_{t+1} = d_t + \lambda\,\eta_t\,\mathbb 1[t \ge t_0], \qquad d_0 = 0,

    for the learning rate :math:`\eta_t` actually used at step :math:`t`
    (warm-up, decays and restarts included; :func:`sparsejax.optim.lats_rule`),
    with the soft-threshold reparameterisation of :func:`soft_threshold_reparam`
    and PyTorch-style SGD on :math:`\theta` (coupled weight decay, heavy-ball
    momentum). With plain SGD, every step on the weights that stay non-zero is
    exactly the ISTA step

    .. math::

      w_{t+1} = S_{\eta_t\lambda}\big(w_t - \eta_t g_t\big)

    on :math:`L(w) + \lambda\|w\|_1`: a time-invariant objective, which is the
    paper's argument for LATS. Before ``start_step`` the threshold stays 0 and
    the model trains densely (:math:`w = \theta`).

    Args:
      learning_rate: :math:`\eta \ge 0`, a number or a schedule.
      l1: :math:`\lambda \ge 0`, a number or a schedule (a geometric schedule
        gives a step-wise proximal gradient homotopy).
      momentum: momentum in ``[0, 1)`` or ``None`` (default 0.875, the
        reference code's configs).
      weight_decay: coupled weight decay on :math:`\theta` (and on the leaves
        outside ``mask``), default :math:`2^{-15} \approx 3.05\cdot10^{-5}`
        (the reference code's ResNet-50 / MobileNet-V1 configs).
      start_step: :math:`t_0 \ge 0`: the threshold starts to grow at this step
        (identity mapping before it: early or late pruning).
      nesterov: Nesterov momentum (the reference code: no).
      gradient: ``'ste'`` (default, the reference code) or ``'exact'``.
      mask: which leaves are thresholded (default ``None``: every leaf; the
        paper thresholds conv and linear weights only:
        ``mask=sj.tree.weights_only``; see :func:`soft_threshold_reparam`).
      latent_dtype: dtype of :math:`\theta` (default: the params').

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`; ``update`` requires
      ``params``. Read the threshold with ``optax.tree_utils.tree_get(state, 'threshold')``.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> import sparsejax as sj
      >>> params = {'kernel': jnp.array([[0.5, -0.05]])}
      >>> tx = sj.lats(learning_rate=0.1, l1=0.5, momentum=None, weight_decay=0.0)
      >>> updates, state = tx.update({'kernel': jnp.array([[1.0, 0.0]])}, tx.init(params), params)
      >>> optax.apply_updates(params, updates)['kernel']  # S_0.05(w - 0.1 g)
      Array([[0.35, 0.  ]], dtype=float32)

    References:
      Chen et al., *A Unified Framework for Soft Threshold Pruning*, ICLR
      2023 (LATS).
    """
    rule = lats_rule(learning_rate, l1, start_step)
    return _sgd_reparam("lats", rule, learning_rate, momentum, weight_decay, nesterov,
                        gradient, mask, latent_dtype)


def slats(
    learning_rate: optax.ScalarOrSchedule,
    final_threshold: float,
    total_steps: int,
    momentum: float | None = MOMENTUM,
    weight_decay: float = WEIGHT_DECAY,
    start_step: int = 0,
    *,
    nesterov: bool = False,
    gradient: Gradient = "ste",
    mask: Mask = None,
    latent_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""S-LATS: LATS for a cosine learning rate, with the threshold in closed form.

    .. math::

      d_k = D\Big(x + \frac{\sin(\pi x)}{\pi}\Big), \qquad
      x = \operatorname{clip}\Big(\frac{k - k_0}{T - k_0}, 0, 1\Big)

    (:func:`sparsejax.optim.slats_threshold`), reaching exactly :math:`D` after
    ``total_steps`` updates. Pair it with
    ``optax.cosine_decay_schedule(eta0, total_steps - start_step)`` started at
    ``start_step``; then :math:`\Delta d/\eta` is the constant
    :math:`\lambda = 2D/(\eta_0 (T - k_0))` and S-LATS is the continuous form of
    :func:`lats`. Setting :math:`D` instead of :math:`\lambda` fixes where the
    threshold ends, which is what the reference code's ``--flat-width`` sets.

    Args:
      learning_rate: :math:`\eta`, a number or a schedule (a cosine decay for
        the theory to hold).
      final_threshold: :math:`D \ge 0`.
      total_steps: :math:`T > k_0`, the update count where :math:`d = D`.
      momentum, weight_decay, nesterov, gradient, latent_dtype: the inner SGD
        and the latents, as in :func:`lats`.
      start_step: :math:`k_0 \ge 0`, dense training before it.
      mask: which leaves are thresholded (default ``None``: every leaf; the
        paper's choice is ``mask=sj.tree.weights_only``).

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`; ``update`` requires ``params``.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> import sparsejax as sj
      >>> params = {'kernel': jnp.array([[0.5, -0.05]])}
      >>> tx = sj.slats(optax.cosine_decay_schedule(0.1, 4), final_threshold=0.1,
      ...               total_steps=4, momentum=None, weight_decay=0.0)
      >>> state = tx.init(params)
      >>> for _ in range(4):
      ...   updates, state = tx.update({'kernel': jnp.zeros((1, 2))}, state, params)
      ...   params = optax.apply_updates(params, updates)
      >>> state.threshold, params['kernel']
      (Array(0.1, dtype=float32), Array([[0.4, 0. ]], dtype=float32))

    References:
      Chen et al., *A Unified Framework for Soft Threshold Pruning*, ICLR 2023
      (S-LATS; reference code ``--gradual sinp``).
    """
    rule = schedule_rule(slats_threshold(final_threshold, total_steps, start_step))
    return _sgd_reparam("slats", rule, learning_rate, momentum, weight_decay, nesterov,
                        gradient, mask, latent_dtype)


def lats_epochwise(
    learning_rate: optax.ScalarOrSchedule,
    final_threshold: float,
    num_epochs: int,
    steps_per_epoch: int,
    momentum: float | None = MOMENTUM,
    weight_decay: float = WEIGHT_DECAY,
    start_step: int = 0,
    *,
    nesterov: bool = False,
    gradient: Gradient = "ste",
    mask: Mask = None,
    latent_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""LATS for a cosine learning rate that changes once per epoch (the reference's LATS).

    The threshold is :func:`sparsejax.optim.lats_epochwise_threshold`: it grows
    within epoch :math:`e` by :math:`\lambda\eta_e` per step, where
    :math:`\eta_e = \tfrac{\eta_0}{2}(1 + \cos(\pi e/E))` and
    :math:`\lambda = 2D/(\eta_0 B (E + 1))`, and ends exactly at :math:`D` after
    :math:`E` epochs of :math:`B` steps from ``start_step``. It equals
    :func:`lats` with that :math:`\lambda` and that learning rate, step for step.

    Args:
      learning_rate: :math:`\eta`, a number or a schedule (the per-epoch cosine
        for the theory to hold).
      final_threshold: :math:`D \ge 0`.
      num_epochs: :math:`E \ge 1`, the epochs of the pruning phase.
      steps_per_epoch: :math:`B \ge 1`.
      momentum, weight_decay, nesterov, gradient, latent_dtype: the inner SGD
        and the latents, as in :func:`lats`.
      start_step: :math:`k_0 \ge 0`, dense training before it.
      mask: which leaves are thresholded (default ``None``: every leaf; the
        paper's choice is ``mask=sj.tree.weights_only``).

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`; ``update`` requires ``params``.

    Example:
      >>> import sparsejax as sj
      >>> tx = sj.lats_epochwise(0.1, final_threshold=0.05, num_epochs=90,
      ...                        steps_per_epoch=5000)

    References:
      Chen et al., *A Unified Framework for Soft Threshold Pruning*, ICLR 2023
      (LATS; reference code ``--gradual sinp --low-freq``).
    """
    schedule = lats_epochwise_threshold(final_threshold, num_epochs, steps_per_epoch, start_step)
    return _sgd_reparam("lats_epochwise", schedule_rule(schedule), learning_rate, momentum,
                        weight_decay, nesterov, gradient, mask, latent_dtype)


def pgh(
    learning_rate: optax.ScalarOrSchedule,
    final_threshold: float,
    total_steps: int,
    beta: float,
    momentum: float | None = MOMENTUM,
    weight_decay: float = WEIGHT_DECAY,
    start_step: int = 0,
    *,
    nesterov: bool = False,
    gradient: Gradient = "ste",
    mask: Mask = None,
    latent_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""PGH: proximal gradient homotopy, :math:`\lambda_t \propto \beta^{x}`, under a cosine.

    The threshold is :func:`sparsejax.optim.pgh_threshold`: its increments are
    :math:`\lambda_0\beta^{x}\eta(x)` for the cosine learning rate
    :math:`\eta(x) = \tfrac{\eta_0}{2}(1 + \cos\pi x)`, normalised so that it
    ends exactly at :math:`D`. The implicit :math:`\ell_1` coefficient changes
    by the factor :math:`\beta` over the pruning phase: :math:`\beta < 1`
    prunes early (large :math:`\lambda` first, then relaxed, the homotopy
    direction of Xiao and Zhang), :math:`\beta > 1` late. This is the
    continuation method Chen et al. cite (proximal-gradient homotopy) and the
    library's form of their early pruning; :func:`sparsejax.lats_continuation`
    and :func:`sparsejax.lats_prune_at_init` are this library's own constructions.

    Args:
      learning_rate: :math:`\eta`, a number or a schedule (cosine for the theory).
      final_threshold: :math:`D \ge 0`.
      total_steps: :math:`T > k_0`, the update count where :math:`d = D`.
      beta: :math:`\beta > 0`, :math:`\beta \ne 1` (no default: the reference
        code sets it per run).
      momentum, weight_decay, nesterov, gradient, latent_dtype: the inner SGD
        and the latents, as in :func:`lats`.
      start_step: :math:`k_0 \ge 0`, dense training before it.
      mask: which leaves are thresholded (default ``None``: every leaf; the
        paper's choice is ``mask=sj.tree.weights_only``).

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`; ``update`` requires ``params``.

    Example:
      >>> import optax
      >>> import sparsejax as sj
      >>> tx = sj.pgh(optax.cosine_decay_schedule(0.1, 1000), final_threshold=0.05,
      ...             total_steps=1000, beta=0.1)

    References:
      Chen et al., *A Unified Framework for Soft Threshold Pruning*, ICLR 2023
      (PGH; reference code ``--gradual sinppgh``); Xiao and Zhang, *A
      proximal-gradient homotopy method for the sparse least-squares problem*,
      SIAM J. Optim., 2013.
    """
    rule = schedule_rule(pgh_threshold(final_threshold, total_steps, beta, start_step))
    return _sgd_reparam("pgh", rule, learning_rate, momentum, weight_decay, nesterov,
                        gradient, mask, latent_dtype)


def stds(
    learning_rate: optax.ScalarOrSchedule,
    final_threshold: float,
    total_steps: int,
    momentum: float | None = MOMENTUM,
    weight_decay: float = WEIGHT_DECAY,
    start_step: int = 0,
    *,
    shape: StdsShape = "sine",
    nesterov: bool = False,
    gradient: Gradient = "ste",
    mask: Mask = None,
    latent_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""STDS: a threshold ramped to :math:`D` along a sine (or a line), whatever the learning rate.

    .. math::

      d_k = \frac{D}{2}\Big(1 + \sin\big(\pi(x - \tfrac12)\big)\Big)
      \;\;(\text{sine}), \qquad d_k = D\,x \;\;(\text{linear})

    (:func:`sparsejax.optim.stds_threshold`). The implied :math:`\ell_1`
    coefficient :math:`\Delta d/\eta` is not constant; Chen et al. use it as
    the baseline LATS improves on.

    Args:
      learning_rate: :math:`\eta`, a number or a schedule.
      final_threshold: :math:`D \ge 0`.
      total_steps: :math:`T > k_0`, the update count where :math:`d = D`.
      momentum, weight_decay, nesterov, gradient, latent_dtype: the inner SGD
        and the latents, as in :func:`lats` (the LATS reference code's defaults).
      start_step: :math:`k_0 \ge 0`, dense training before it.
      shape: ``'sine'`` (STDS) or ``'linear'``.
      mask: which leaves are thresholded (default ``None``: every leaf;
        ``mask=sj.tree.weights_only`` thresholds conv and linear weights only).

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`; ``update`` requires ``params``.

    Example:
      >>> import sparsejax as sj
      >>> tx = sj.stds(0.1, final_threshold=0.05, total_steps=1000, shape='linear')

    References:
      Chen et al., *State Transition of Dendritic Spines Improves Learning of
      Sparse Spiking Neural Networks*, ICML 2022.
    """
    rule = schedule_rule(stds_threshold(final_threshold, total_steps, start_step, shape))
    return _sgd_reparam("stds", rule, learning_rate, momentum, weight_decay, nesterov,
                        gradient, mask, latent_dtype)


def fixed_threshold_reparam(
    learning_rate: optax.ScalarOrSchedule,
    threshold: float,
    momentum: float | None = MOMENTUM,
    weight_decay: float = WEIGHT_DECAY,
    start_step: int = 0,
    *,
    nesterov: bool = False,
    gradient: Gradient = "ste",
    mask: Mask = None,
    latent_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""A constant threshold :math:`D`, with :math:`\theta_0 = \operatorname{sign}(w_0)(|w_0| + D)`.

    .. math::

      d_k = D\,\mathbb 1[k \ge k_0], \qquad w_k = S_{d_k}(\theta_k),

    (:func:`sparsejax.optim.fixed_threshold`), the reference code's
    ``--sparse-function stmod`` without ``--gradual``. With :math:`k_0 = 0`
    the latent weights start at :math:`S_D^{-1}(w_0)`, so the model starts
    from its initial weights; with :math:`k_0 > 0` they start at :math:`w_0`
    (:math:`d_0 = 0`).
    With :math:`k_0 = 0` (the default) every step is an ISTA step with
    :math:`\lambda_t = 0`: the sparsity comes from the weights that fall back
    into :math:`[-D, D]`; with :math:`k_0 > 0` the threshold jumps from 0 to
    :math:`D` at :math:`k_0` (one ISTA step with a large :math:`\lambda`).

    Args:
      learning_rate: :math:`\eta`, a number or a schedule.
      threshold: :math:`D \ge 0`.
      momentum, weight_decay, nesterov, gradient, latent_dtype: the inner SGD
        and the latents, as in :func:`lats`.
      start_step: :math:`k_0 \ge 0`.
      mask: which leaves are thresholded (default ``None``: every leaf; the
        paper's choice is ``mask=sj.tree.weights_only``).

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`; ``update`` requires ``params``.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> import sparsejax as sj
      >>> params = {'kernel': jnp.array([[0.5, -0.05]])}
      >>> tx = sj.fixed_threshold_reparam(0.1, threshold=0.1, momentum=None, weight_decay=0.0)
      >>> state = tx.init(params)
      >>> state.latent['kernel']
      Array([[ 0.6 , -0.15]], dtype=float32)
      >>> updates, state = tx.update({'kernel': jnp.array([[0.0, -1.0]])}, state, params)
      >>> optax.apply_updates(params, updates)['kernel']
      Array([[0.5, 0. ]], dtype=float32)

    References:
      Chen et al., *A Unified Framework for Soft Threshold Pruning*, ICLR 2023
      (reference code, ``softThresholdinv``).
    """
    rule = schedule_rule(fixed_threshold(threshold, start_step))
    return _sgd_reparam("fixed_threshold_reparam", rule, learning_rate, momentum, weight_decay,
                        nesterov, gradient, mask, latent_dtype)
