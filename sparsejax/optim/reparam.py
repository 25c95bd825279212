r"""Soft-threshold reparameterisation: LATS, S-LATS, PGH, STDS, STR, continuation, pruning at init.

The model's weights are a soft threshold of latent weights,
:math:`w = S_d(\theta) = \operatorname{sign}(\theta)\max(|\theta| - d, 0)`. The
transforms here own :math:`\theta`: it lives in the optimizer state, is
initialised from the params, and is trained by an inner Optax optimizer (SGD
with momentum 0.875 and weight decay on :math:`\theta` by default, as in the
reference code) from the gradient :math:`\partial L/\partial w` the model
produces. Each update moves the params to :math:`S_{d_{t+1}}(\theta_{t+1})`, so
the model, its evaluation and its checkpoints only ever see the sparse
:math:`w`; nothing in the model changes.

Chen et al. (ICLR 2023) show that, for the weights that stay non-zero, one such
step with plain SGD is one ISTA (proximal-gradient) step on
:math:`L(w) + \lambda_t\|w\|_1` with :math:`\lambda_t = (d_{t+1} - d_t)/\eta_t`.
The schedulers differ in how they move :math:`d`:

* :func:`lats`: :math:`d_{t+1} = d_t + \lambda\eta_t` for the learning rate
  actually used (a constant :math:`\lambda`);
* :func:`slats`: its closed form for a cosine learning rate, ending at :math:`D`;
* :func:`lats_epochwise`: the closed form for a cosine learning rate that
  changes once per epoch, ending at :math:`D`;
* :func:`pgh`: :math:`\lambda` growing or shrinking geometrically (cosine closed form);
* :func:`stds`: a sine (or linear) ramp to :math:`D`, independent of the learning rate;
* :func:`str_`: one trainable threshold per layer, :math:`d = \sigma(s)`;
* :func:`fixed_threshold_reparam`: a constant :math:`D`, latents starting at
  :math:`S_D^{-1}(w_0)`;
* :func:`lats_continuation`: LATS whose :math:`\lambda` grows until a target
  sparsity is reached, then is held;
* :func:`lats_prune_at_init`: a short LATS phase that fixes the mask, then
  masked training of the survivors;
* :func:`soft_threshold_reparam`: the building block, for any inner optimizer
  and any threshold schedule.

All of them consume raw gradients and write the final update, so they stand
alone or last in an ``optax.chain``, and need ``params``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sparsejax import prox
from sparsejax._validation import (
    as_float32,
    as_schedule,
    check_choice,
    check_number,
    require_params,
)
from sparsejax.optim._common import copy_as
from sparsejax.optim.sgd import pytorch_sgd
from sparsejax.optim.threshold_schedules import (
    StdsShape,
    lats_epochwise_threshold,
    pgh_threshold,
    slats_threshold,
    stds_threshold,
)
from sparsejax.tree import Mask, broadcast_prefix, resolve_mask, weights_only

__all__ = [
    "ContinuationState",
    "PruneAtInitState",
    "SoftThresholdReparamState",
    "fixed_threshold_reparam",
    "lats",
    "lats_continuation",
    "lats_epochwise",
    "lats_prune_at_init",
    "pgh",
    "slats",
    "soft_threshold_reparam",
    "stds",
    "str_",
]

Gradient = Literal["ste", "exact"]

MOMENTUM = 0.875
"""Momentum of the reference code's SGD (ResNet-50 and MobileNet-V1 configs; not Nesterov)."""

WEIGHT_DECAY = 2.0**-15
"""Weight decay on :math:`\\theta` of the reference code's configs, 3.0517578125e-05."""

STR_WEIGHT_DECAY = 2.251757813e-05
"""Weight decay of STR's 90.23%-sparse ResNet-50 config (``resnet50-str.yaml``)."""

STR_S_INIT = -3200.0
"""Initial threshold logit of STR's ResNet-50 configs (``sInit_value``)."""


class SoftThresholdReparamState(NamedTuple):
    """State of the soft-threshold reparameterisation transforms.

    Attributes:
      count: number of updates so far (int32).
      latent: the latent weights :math:`\\theta` (params' structure; ``None`` at
        the leaves that are not thresholded, which are trained directly).
      threshold: the threshold :math:`d_t` the params are seen through now:
        a float32 scalar, or for :func:`str_` one float32 scalar per
        thresholded leaf (``None`` elsewhere).
      inner_state: the state of the inner optimizer (for :func:`str_`, of the
        pair ``(theta, s)``).
      extra: what a scheduler needs besides: :func:`str_`'s logits :math:`s`
        (per leaf), a :class:`ContinuationState`, a :class:`PruneAtInitState`,
        or ``None``.
    """

    count: jax.Array
    latent: optax.Params
    threshold: Any
    inner_state: optax.OptState
    extra: Any = None


class ContinuationState(NamedTuple):
    """Scheduler state of :func:`lats_continuation`.

    Attributes:
      l1: the current :math:`\\ell_1` coefficient :math:`\\lambda` (float32).
      reached: whether the target sparsity was reached (bool); from then on
        :math:`\\lambda` is held.
      sparsity: the sparsity of the thresholded leaves after the last update (float32).
    """

    l1: jax.Array
    reached: jax.Array
    sparsity: jax.Array


class PruneAtInitState(NamedTuple):
    """Scheduler state of :func:`lats_prune_at_init`.

    Attributes:
      masks: per thresholded leaf, ``True`` where the weight survives (all
        ``True`` until the mask is fixed), ``None`` elsewhere.
      initial: the initial params (kept for ``rewind=True``), else ``None``.
    """

    masks: Any
    initial: Any


# --- building blocks --------------------------------------------------------------------------


def _inner_sgd(
    learning_rate: optax.ScalarOrSchedule,
    momentum: Any,
    weight_decay: Any,
    nesterov: bool,
) -> optax.GradientTransformation:
    """PyTorch's SGD: coupled weight decay, then heavy-ball momentum, then the learning rate."""
    return pytorch_sgd(learning_rate, momentum, nesterov, weight_decay)


def _check_sgd(learning_rate: Any, momentum: Any, weight_decay: Any) -> None:
    check_number("learning_rate", learning_rate, ge=0)
    if momentum is not None:
        check_number("momentum", momentum, ge=0, lt=1)
    check_number("weight_decay", weight_decay, ge=0)


def _check_common(gradient: Any, start_step: Any) -> None:
    check_choice("gradient", gradient, ("ste", "exact"))
    check_number("start_step", start_step, ge=0, integer=True)


def _sign_inverse(w: jax.Array, d: jax.Array, dtype: Any) -> jax.Array:
    """:math:`S_d^{-1}(w) = \\operatorname{sign}(w)(|w| + d)`: the latent that maps to ``w``."""
    out = w.astype(jnp.promote_types(w.dtype, jnp.float32)) + jnp.sign(w) * d
    return copy_as(out, dtype or w.dtype)


def _reparam(
    *,
    name: str,
    inner: optax.GradientTransformation,
    gradient: str,
    mask: Mask,
    latent_dtype: Any,
    kind: str,
    threshold_fn: Callable[[jax.Array], Any] | None = None,
    learning_rate: optax.ScalarOrSchedule | None = None,
    start_step: Any = 0,
    s_init: Any = None,
    continuation: dict[str, Any] | None = None,
    prune_steps: Any = None,
    rewind: bool = False,
) -> optax.GradientTransformationExtraArgs:
    """The one transform behind every factory of this module.

    ``kind`` is ``'schedule'`` (``threshold_fn(k) = d_k``), ``'increment'``
    (``d_{k+1} = d_k + threshold_fn(k)``), ``'continuation'`` (increments
    ``lambda_k * eta_k`` with the adaptive ``lambda`` of the state) or
    ``'str'`` (``d = sigmoid(s)``, ``s`` trained with ``theta``). With
    ``prune_steps`` the mask is fixed after that many updates (prune at init).
    """
    trainable = kind == "str"
    if isinstance(mask, str):
        check_choice("mask", mask, ("weights",))
        mask = weights_only
    lr = as_schedule(learning_rate) if learning_rate is not None else None

    def selection(params: optax.Params) -> tuple[list[Any], list[bool], Any]:
        leaves, treedef = jax.tree.flatten(params)
        selected = treedef.flatten_up_to(resolve_mask(mask, params, nonempty=True))
        return leaves, selected, treedef

    def per_leaf_tree(treedef: Any, values: list[Any]) -> Any:
        return jax.tree.unflatten(treedef, values)

    def init_fn(params: optax.Params) -> SoftThresholdReparamState:
        leaves, selected, treedef = selection(params)
        zero = jnp.zeros([], jnp.int32)
        if trainable:
            s0 = jnp.asarray(s_init, jnp.float32)
            d0 = jax.nn.sigmoid(s0)
            d_leaves = [d0 if s else None for s in selected]
            threshold = per_leaf_tree(treedef, d_leaves)
            extra = per_leaf_tree(treedef, [s0 if s else None for s in selected])
        elif kind == "schedule":
            d0 = jnp.asarray(threshold_fn(zero), jnp.float32)
            threshold, d_leaves, extra = d0, [d0] * len(leaves), None
        else:
            d0 = jnp.zeros([], jnp.float32)
            threshold, d_leaves, extra = d0, [d0] * len(leaves), None
        latent = [
            _sign_inverse(p, d, latent_dtype) if s else None
            for p, s, d in zip(leaves, selected, d_leaves)
        ]
        theta = [lat if s else p for lat, p, s in zip(latent, leaves, selected)]
        inner_params = per_leaf_tree(treedef, theta)
        if trainable:
            inner_params = (inner_params, extra)
        if kind == "continuation":
            extra = ContinuationState(
                l1=jnp.asarray(continuation["l1"], jnp.float32),
                reached=jnp.zeros([], bool),
                sparsity=jnp.zeros([], jnp.float32),
            )
        elif prune_steps is not None:
            ones = [jnp.ones(p.shape, bool) if s else None for p, s in zip(leaves, selected)]
            masks = per_leaf_tree(treedef, ones)
            initial = jax.tree.map(lambda p: copy_as(p, None), params) if rewind else None
            extra = PruneAtInitState(masks=masks, initial=initial)
        return SoftThresholdReparamState(
            count=zero,
            latent=per_leaf_tree(treedef, latent),
            threshold=threshold,
            inner_state=inner.init(inner_params),
            extra=extra,
        )

    def update_fn(
        updates: optax.Updates,
        state: SoftThresholdReparamState,
        params: optax.Params | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, SoftThresholdReparamState]:
        require_params(params, name)
        leaves, selected, treedef = selection(params)
        grads = treedef.flatten_up_to(updates)
        latent = treedef.flatten_up_to(state.latent)
        theta = [lat if s else p for lat, p, s in zip(latent, leaves, selected)]
        k = state.count

        if trainable:
            d_now = treedef.flatten_up_to(state.threshold)
            s_now = treedef.flatten_up_to(state.extra)
        else:
            d_now = [state.threshold] * len(leaves)

        if prune_steps is not None:
            masks = treedef.flatten_up_to(state.extra.masks)
            frozen = k >= prune_steps  # the mask is fixed: train the survivors only
        else:
            masks, frozen = [None] * len(leaves), None

        # The gradient with respect to theta: straight through, or the exact one.
        g_theta = []
        for g, th, s, d, m in zip(grads, theta, selected, d_now, masks):
            g = g.astype(th.dtype)
            if s and gradient == "exact":
                g = jnp.where(jnp.abs(th) > d, g, jnp.zeros_like(g))
            if s and m is not None:
                g = jnp.where(frozen & ~m, jnp.zeros_like(g), g)
            g_theta.append(g)
        inner_grads = per_leaf_tree(treedef, g_theta)
        inner_params = per_leaf_tree(treedef, theta)
        if trainable:
            # dL/ds = sum_i dL/dw_i * dw_i/dd * sigmoid'(s), dw_i/dd = -sign(theta_i) [|theta_i| > d]
            g_s = []
            for g, th, s, d, sl in zip(grads, theta, selected, d_now, s_now):
                if not s:
                    g_s.append(None)
                    continue
                alive = jnp.abs(th) > d
                signed = g.astype(jnp.float32) * jnp.sign(th).astype(jnp.float32)
                gd = -jnp.sum(jnp.where(alive, signed, 0.0))
                g_s.append(gd * d * (1.0 - d))
            inner_grads = (inner_grads, per_leaf_tree(treedef, g_s))
            inner_params = (inner_params, state.extra)
        inner_updates, inner_state = optax.with_extra_args_support(inner).update(
            inner_grads, state.inner_state, inner_params, **extra_args
        )
        if trainable:
            inner_updates, s_updates = inner_updates
            s_new = [
                None if sl is None else (sl + su).astype(jnp.float32)
                for sl, su in zip(s_now, treedef.flatten_up_to(s_updates))
            ]
        u_theta = treedef.flatten_up_to(inner_updates)
        theta_new = [(th + u).astype(th.dtype) for th, u in zip(theta, u_theta)]
        if prune_steps is not None:
            theta_new = [
                th if m is None else jnp.where(frozen & ~m, jnp.zeros_like(th), th)
                for th, m in zip(theta_new, masks)
            ]

        # The next threshold.
        new_extra = state.extra
        if trainable:
            d_new = [None if sl is None else jax.nn.sigmoid(sl) for sl in s_new]
            new_threshold = per_leaf_tree(treedef, d_new)
            new_extra = per_leaf_tree(treedef, s_new)
        else:
            if kind == "schedule":
                d_scalar = jnp.asarray(threshold_fn(optax.safe_increment(k)), jnp.float32)
            elif kind == "increment":
                d_scalar = state.threshold + jnp.asarray(threshold_fn(k), jnp.float32)
            else:  # continuation
                eta = jnp.asarray(lr(k), jnp.float32)
                inc = jnp.where(k >= start_step, state.extra.l1 * eta, 0.0)
                d_scalar = state.threshold + inc
            if prune_steps is not None:
                d_scalar = jnp.where(frozen, 0.0, d_scalar)  # after the phase: no threshold
            new_threshold = d_scalar
            d_new = [d_scalar] * len(leaves)

        w_new = [
            prox.soft_threshold(th, d) if s else th
            for th, d, s in zip(theta_new, d_new, selected)
        ]

        if kind == "continuation":
            chosen = [w for w, s in zip(w_new, selected) if s]
            total = sum(int(w.size) for w in chosen)
            if total:
                zeros = sum(jnp.sum(w == 0).astype(jnp.float32) for w in chosen)
                sparsity = zeros / jnp.float32(total)
            else:
                sparsity = jnp.zeros([], jnp.float32)
            c = state.extra
            since = optax.safe_increment(k) - start_step
            interval = continuation["interval"]
            check = (since > 0) & (since % interval == 0) & ~c.reached
            hit = sparsity >= jnp.asarray(continuation["target_sparsity"], jnp.float32)
            growth = jnp.asarray(continuation["growth"], jnp.float32)
            new_extra = ContinuationState(
                l1=jnp.where(check & ~hit, c.l1 * growth, c.l1).astype(jnp.float32),
                reached=c.reached | (check & hit),
                sparsity=sparsity,
            )

        new_updates = [
            (w - p).astype(p.dtype) if s else u.astype(p.dtype)
            for w, p, u, s in zip(w_new, leaves, u_theta, selected)
        ]
        if prune_steps is not None:
            fix_now = optax.safe_increment(k) == prune_steps
            new_masks = [
                None if m is None else jnp.where(fix_now, w != 0, m) for m, w in zip(masks, w_new)
            ]
            if rewind:
                # Back to the initial weights, pruned by the mask just fixed.
                w0 = treedef.flatten_up_to(state.extra.initial)
                target = [
                    w_init if m is None else jnp.where(m, w_init, jnp.zeros_like(w_init))
                    for w_init, m in zip(w0, new_masks)
                ]
                w_new = [jnp.where(fix_now, t.astype(w.dtype), w) for t, w in zip(target, w_new)]
                new_updates = [
                    jnp.where(fix_now, (t - p).astype(p.dtype), u)
                    for t, p, u in zip(target, leaves, new_updates)
                ]
            # From here on there is no threshold: theta is the sparse weight itself.
            theta_new = [
                jnp.where(fix_now, w.astype(th.dtype), th) for th, w in zip(theta_new, w_new)
            ]
            if rewind:
                # The inner optimizer's buffers (momentum, moments) start afresh; its
                # integer step counts go on, so learning-rate schedules continue (and
                # optax.inject_hyperparams, which keeps its own count, agrees).
                fresh = inner.init(per_leaf_tree(treedef, theta_new))

                def reset(a: Any, b: Any) -> Any:
                    if not jnp.issubdtype(jnp.result_type(b), jnp.floating):
                        return b
                    return jnp.where(fix_now, a, b).astype(jnp.result_type(b))

                inner_state = jax.tree.map(reset, fresh, inner_state)
            new_threshold = jnp.where(fix_now, 0.0, new_threshold)
            new_extra = PruneAtInitState(
                masks=per_leaf_tree(treedef, new_masks), initial=state.extra.initial
            )

        new_latent = [th if s else None for th, s in zip(theta_new, selected)]
        new_state = SoftThresholdReparamState(
            count=optax.safe_increment(k),
            latent=per_leaf_tree(treedef, new_latent),
            threshold=new_threshold,
            inner_state=inner_state,
            extra=new_extra,
        )
        return per_leaf_tree(treedef, new_updates), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# --- public factories ---------------------------------------------------------------------------


def soft_threshold_reparam(
    inner: optax.GradientTransformation,
    threshold: optax.ScalarOrSchedule,
    *,
    cumulative: bool = False,
    gradient: Gradient = "ste",
    mask: Mask | str = "weights",
    latent_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Soft-threshold reparameterisation around any optimizer: the building block.

    The state keeps latent weights :math:`\theta` and a threshold :math:`d`;
    the model sees :math:`w = S_d(\theta)`. With :math:`g_t = \partial L/\partial w`
    at :math:`w_t = S_{d_t}(\theta_t)` and :math:`u_t` the inner optimizer's update,

    .. math::

      \theta_{t+1} = \theta_t + u_t(\tilde g_t), \qquad
      w_{t+1} = S_{d_{t+1}}(\theta_{t+1}), \qquad
      \text{emitted update} = w_{t+1} - w_t,

    where :math:`\tilde g_t = g_t` (``gradient='ste'``, straight through, as the
    LATS/STDS reference code) or :math:`g_t\,\mathbb 1[|\theta_t| > d_t]`
    (``'exact'``, the derivative of :math:`S_d`, as STR). The update with count
    :math:`t` (from 0) applies :math:`d_{t+1}` = ``threshold(t)``, and
    :math:`d_0` = ``threshold(0)`` (as :func:`sparsejax.soft_threshold`, and as
    :func:`optax.inject_hyperparams` evaluates schedules); with
    ``cumulative=True``, :math:`d_0 = 0` and :math:`d_{t+1} = d_t + \text{threshold}(t)`.
    A schedule ``k -> d_k`` of :mod:`sparsejax.optim.threshold_schedules`
    (threshold *after* ``k`` updates) is therefore passed as
    ``lambda t: schedule(t + 1)``; the factories :func:`slats`, :func:`stds`, ...
    do that for you.
    :math:`\theta` is initialised so that the params do not move:
    :math:`\theta_0 = S_{d_0}^{-1}(w_0) = \operatorname{sign}(w_0)(|w_0| + d_0)`.
    Leaves outside ``mask`` are trained by the inner optimizer directly.

    Args:
      inner: the optimizer of :math:`\theta` (it sees :math:`\theta` as its
        params, e.g. for weight decay); e.g. ``optax.sgd(0.1, momentum=0.875)``.
      threshold: :math:`\ge 0`: a number, or a schedule ``t -> d_{t+1}``
        (the threshold update ``t`` applies); with ``cumulative=True`` the
        increment added by update ``t``.
      cumulative: see above.
      gradient: ``'ste'`` or ``'exact'``.
      mask: which leaves are thresholded: ``'weights'`` (the default,
        :func:`sparsejax.tree.weights_only`: conv and dense kernels, not biases
        or normalisation scales, as the reference code), ``None`` for all, a
        pytree of booleans or a callable (see :func:`sparsejax.tree.resolve_mask`).
        The default is a string because :func:`optax.inject_hyperparams` takes
        any callable argument for a schedule: list a callable ``mask`` (and a
        ``latent_dtype`` given as a type) in its ``static_args``.
      latent_dtype: dtype of :math:`\theta` (default: each param's dtype);
        ``jnp.float32`` keeps float32 master weights for bf16 params.

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`; ``update`` takes raw
      gradients and requires ``params``. With ``optax.inject_hyperparams``,
      list ``inner``, ``gradient`` and ``mask`` in ``static_args``.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> import sparsejax as sj
      >>> params = {'kernel': jnp.array([[0.5, -0.125], [2.0, 0.125]])}
      >>> tx = sj.optim.soft_threshold_reparam(optax.sgd(0.25), threshold=0.25)
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
    check_number("threshold", threshold, ge=0)
    check_choice("gradient", gradient, ("ste", "exact"))
    schedule = as_schedule(threshold)
    return _reparam(
        name="soft_threshold_reparam",
        inner=inner,
        gradient=gradient,
        mask=mask,
        latent_dtype=latent_dtype,
        kind="increment" if cumulative else "schedule",
        # The threshold of update k is threshold(k) (as sparsejax.soft_threshold, and as
        # optax.inject_hyperparams evaluates a schedule); d_0 = threshold(0).
        threshold_fn=(
            (lambda k: jnp.asarray(schedule(k), jnp.float32))
            if cumulative
            else (lambda j: jnp.asarray(schedule(jnp.maximum(j - 1, 0)), jnp.float32))
        ),
    )


def lats(
    learning_rate: optax.ScalarOrSchedule,
    l1: optax.ScalarOrSchedule,
    momentum: float | None = MOMENTUM,
    weight_decay: float = WEIGHT_DECAY,
    start_step: int = 0,
    *,
    nesterov: bool = False,
    gradient: Gradient = "ste",
    mask: Mask | str = "weights",
    latent_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""LATS: the learning-rate adapted threshold scheduler (a constant :math:`\ell_1` coefficient).

    .. math::

      d_{t+1} = d_t + \lambda\,\eta_t\,\mathbb 1[t \ge t_0], \qquad d_0 = 0,

    for the learning rate :math:`\eta_t` actually used at step :math:`t`
    (warm-up, decays and restarts included), with the soft-threshold
    reparameterisation of :func:`soft_threshold_reparam` and PyTorch-style SGD
    on :math:`\theta` (coupled weight decay, heavy-ball momentum). With plain
    SGD, every step on the weights that stay non-zero is exactly the ISTA step

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
      mask: which leaves are thresholded (default ``'weights'``:
        :func:`sparsejax.tree.weights_only`; see :func:`soft_threshold_reparam`).
      latent_dtype: dtype of :math:`\theta` (default: the params').

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`; ``update`` requires
      ``params``. Read the threshold with ``optax.tree_utils.tree_get(state, 'threshold')``.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> import sparsejax as sj
      >>> params = {'kernel': jnp.array([[0.5, -0.05]])}
      >>> tx = sj.optim.lats(learning_rate=0.1, l1=0.5, momentum=None, weight_decay=0.0)
      >>> updates, state = tx.update({'kernel': jnp.array([[1.0, 0.0]])}, tx.init(params), params)
      >>> optax.apply_updates(params, updates)['kernel']  # S_0.05(w - 0.1 g)
      Array([[0.35, 0.  ]], dtype=float32)

    References:
      Chen et al., *A Unified Framework for Soft Threshold Pruning*, ICLR
      2023 (LATS).
    """
    _check_sgd(learning_rate, momentum, weight_decay)
    check_number("l1", l1, ge=0)
    _check_common(gradient, start_step)
    lr, lam = as_schedule(learning_rate), as_schedule(l1)

    def increment(k: jax.Array) -> jax.Array:
        inc = jnp.asarray(lam(k), jnp.float32) * jnp.asarray(lr(k), jnp.float32)
        return jnp.where(k >= start_step, inc, 0.0)

    return _reparam(
        name="lats",
        inner=_inner_sgd(learning_rate, momentum, weight_decay, nesterov),
        gradient=gradient,
        mask=mask,
        latent_dtype=latent_dtype,
        kind="increment",
        threshold_fn=increment,
    )


def _scheduled(
    name: str,
    schedule: optax.Schedule,
    learning_rate: Any,
    momentum: Any,
    weight_decay: Any,
    nesterov: bool,
    gradient: str,
    mask: Mask,
    latent_dtype: Any,
) -> optax.GradientTransformationExtraArgs:
    return _reparam(
        name=name,
        inner=_inner_sgd(learning_rate, momentum, weight_decay, nesterov),
        gradient=gradient,
        mask=mask,
        latent_dtype=latent_dtype,
        kind="schedule",
        threshold_fn=schedule,
    )


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
    mask: Mask | str = "weights",
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
      momentum: momentum in ``[0, 1)`` or ``None`` (default 0.875, reference code).
      weight_decay: coupled weight decay on :math:`\theta`
        (default
        :math:`2^{-15}`, reference code).
      start_step: :math:`k_0 \ge 0`, dense training before it.
      nesterov: Nesterov momentum (default no, as the reference code).
      gradient: ``'ste'`` (default, reference code) or ``'exact'``.
      mask: which leaves are thresholded (default ``'weights'``:
        :func:`sparsejax.tree.weights_only`; see :func:`soft_threshold_reparam`).
      latent_dtype: dtype of :math:`\theta` (default: the params').

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`; ``update`` requires ``params``.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> import sparsejax as sj
      >>> params = {'kernel': jnp.array([[0.5, -0.05]])}
      >>> tx = sj.optim.slats(optax.cosine_decay_schedule(0.1, 4), final_threshold=0.1,
      ...                     total_steps=4, momentum=None, weight_decay=0.0)
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
    _check_sgd(learning_rate, momentum, weight_decay)
    _check_common(gradient, start_step)
    schedule = slats_threshold(final_threshold, total_steps, start_step)
    return _scheduled("slats", schedule, learning_rate, momentum, weight_decay, nesterov,
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
    mask: Mask | str = "weights",
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
      momentum: momentum in ``[0, 1)`` or ``None`` (default 0.875, reference code).
      weight_decay: coupled weight decay on :math:`\theta` (default
        :math:`2^{-15}`, reference code).
      start_step: :math:`k_0 \ge 0`, dense training before it.
      nesterov: Nesterov momentum (default no).
      gradient: ``'ste'`` (default) or ``'exact'``.
      mask: which leaves are thresholded (default ``'weights'``:
        :func:`sparsejax.tree.weights_only`; see :func:`soft_threshold_reparam`).
      latent_dtype: dtype of :math:`\theta` (default: the params').

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`; ``update`` requires ``params``.

    Example:
      >>> import sparsejax as sj
      >>> tx = sj.optim.lats_epochwise(0.1, final_threshold=0.05, num_epochs=90,
      ...                              steps_per_epoch=5000)

    References:
      Chen et al., *A Unified Framework for Soft Threshold Pruning*, ICLR 2023
      (LATS; reference code ``--gradual sinp --low-freq``).
    """
    _check_sgd(learning_rate, momentum, weight_decay)
    _check_common(gradient, start_step)
    schedule = lats_epochwise_threshold(final_threshold, num_epochs, steps_per_epoch, start_step)
    return _scheduled("lats_epochwise", schedule, learning_rate, momentum, weight_decay,
                      nesterov, gradient, mask, latent_dtype)


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
    mask: Mask | str = "weights",
    latent_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""PGH: proximal gradient homotopy, :math:`\lambda_t \propto \beta^{x}`, under a cosine schedule.

    The threshold is :func:`sparsejax.optim.pgh_threshold`: its increments are
    :math:`\lambda_0\beta^{x}\eta(x)` for the cosine learning rate
    :math:`\eta(x) = \tfrac{\eta_0}{2}(1 + \cos\pi x)`, normalised so that it
    ends exactly at :math:`D`. The implicit :math:`\ell_1` coefficient changes
    by the factor :math:`\beta` over the pruning phase: :math:`\beta < 1`
    prunes early (large :math:`\lambda` first, then relaxed, the homotopy
    direction of Xiao and Zhang), :math:`\beta > 1` late.

    Args:
      learning_rate: :math:`\eta`, a number or a schedule (cosine for the theory).
      final_threshold: :math:`D \ge 0`.
      total_steps: :math:`T > k_0`, the update count where :math:`d = D`.
      beta: :math:`\beta > 0`, :math:`\beta \ne 1` (no default: the reference
        code sets it per run).
      momentum: momentum in ``[0, 1)`` or ``None`` (default 0.875, reference code).
      weight_decay: coupled weight decay on :math:`\theta` (default
        :math:`2^{-15}`, reference code).
      start_step: :math:`k_0 \ge 0`, dense training before it.
      nesterov: Nesterov momentum (default no).
      gradient: ``'ste'`` (default) or ``'exact'``.
      mask: which leaves are thresholded (default ``'weights'``:
        :func:`sparsejax.tree.weights_only`; see :func:`soft_threshold_reparam`).
      latent_dtype: dtype of :math:`\theta` (default: the params').

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`; ``update`` requires ``params``.

    Example:
      >>> import optax
      >>> import sparsejax as sj
      >>> tx = sj.optim.pgh(optax.cosine_decay_schedule(0.1, 1000), final_threshold=0.05,
      ...             total_steps=1000, beta=0.1)

    References:
      Chen et al., *A Unified Framework for Soft Threshold Pruning*, ICLR 2023
      (PGH; reference code ``--gradual sinppgh``); Xiao and Zhang, *A
      proximal-gradient homotopy method for the sparse least-squares problem*,
      SIAM J. Optim., 2013.
    """
    _check_sgd(learning_rate, momentum, weight_decay)
    _check_common(gradient, start_step)
    schedule = pgh_threshold(final_threshold, total_steps, beta, start_step)
    return _scheduled("pgh", schedule, learning_rate, momentum, weight_decay, nesterov,
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
    mask: Mask | str = "weights",
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
      momentum: momentum in ``[0, 1)`` or ``None`` (default 0.875, the LATS reference code).
      weight_decay: coupled weight decay on :math:`\theta` (default
        :math:`2^{-15}`, LATS reference code).
      start_step: :math:`k_0 \ge 0`, dense training before it.
      shape: ``'sine'`` (STDS) or ``'linear'``.
      nesterov: Nesterov momentum (default no).
      gradient: ``'ste'`` (default, as the reference code) or ``'exact'``.
      mask: which leaves are thresholded (default ``'weights'``:
        :func:`sparsejax.tree.weights_only`; see :func:`soft_threshold_reparam`).
      latent_dtype: dtype of :math:`\theta` (default: the params').

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`; ``update`` requires ``params``.

    Example:
      >>> import sparsejax as sj
      >>> tx = sj.optim.stds(0.1, final_threshold=0.05, total_steps=1000, shape='linear')

    References:
      Chen et al., *State Transition of Dendritic Spines Improves Learning of
      Sparse Spiking Neural Networks*, ICML 2022.
    """
    _check_sgd(learning_rate, momentum, weight_decay)
    _check_common(gradient, start_step)
    schedule = stds_threshold(final_threshold, total_steps, start_step, shape)
    return _scheduled("stds", schedule, learning_rate, momentum, weight_decay, nesterov,
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
    mask: Mask | str = "weights",
    latent_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""A constant threshold :math:`D`, with :math:`\theta_0 = \operatorname{sign}(w_0)(|w_0| + D)`.

    .. math::

      d_k = D\,\mathbb 1[k \ge k_0], \qquad w_k = S_{d_k}(\theta_k),

    the reference code's ``--sparse-function stmod`` without ``--gradual``. The
    latent weights start at :math:`S_D^{-1}(w_0)`, so the model starts from its
    initial weights. With :math:`k_0 = 0` (the default) every step is an ISTA
    step with :math:`\lambda_t = 0`: the sparsity comes from the weights
    that fall back into :math:`[-D, D]`; with :math:`k_0 > 0` the threshold
    jumps from 0 to :math:`D` at :math:`k_0` (one ISTA step with a large
    :math:`\lambda`).

    Args:
      learning_rate: :math:`\eta`, a number or a schedule.
      threshold: :math:`D \ge 0`.
      momentum: momentum in ``[0, 1)`` or ``None`` (default 0.875, reference code).
      weight_decay: coupled weight decay on :math:`\theta` (default
        :math:`2^{-15}`, reference code).
      start_step: :math:`k_0 \ge 0`.
      nesterov: Nesterov momentum (default no).
      gradient: ``'ste'`` (default, reference code) or ``'exact'``.
      mask: which leaves are thresholded (default ``'weights'``:
        :func:`sparsejax.tree.weights_only`; see :func:`soft_threshold_reparam`).
      latent_dtype: dtype of :math:`\theta` (default: the params').

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`; ``update`` requires ``params``.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> import sparsejax as sj
      >>> params = {'kernel': jnp.array([[0.5, -0.05]])}
      >>> tx = sj.optim.fixed_threshold_reparam(0.1, threshold=0.1, momentum=None, weight_decay=0.0)
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
    _check_sgd(learning_rate, momentum, weight_decay)
    _check_common(gradient, start_step)
    check_number("threshold", threshold, ge=0)

    def schedule(k: jax.Array) -> jax.Array:
        return jnp.where(k >= start_step, jnp.asarray(threshold, jnp.float32), 0.0)

    return _scheduled("fixed_threshold_reparam", schedule, learning_rate, momentum,
                      weight_decay, nesterov, gradient, mask, latent_dtype)


def str_(
    learning_rate: optax.ScalarOrSchedule,
    s_init: float = STR_S_INIT,
    momentum: float | None = MOMENTUM,
    weight_decay: float = STR_WEIGHT_DECAY,
    threshold_weight_decay: float | None = None,
    *,
    nesterov: bool = False,
    gradient: Gradient = "exact",
    mask: Mask | str = "weights",
    latent_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""STR: soft threshold reparameterisation with one trainable threshold per layer.

    Each thresholded leaf :math:`l` has a logit :math:`s_l` and the threshold
    :math:`d_l = \sigma(s_l)`; :math:`w = S_{d_l}(\theta)`. Both are trained by
    the same SGD (momentum, coupled weight decay), :math:`s_l` from the
    gradient it receives through :math:`w`, computed here from
    :math:`g = \partial L/\partial w` and :math:`\theta`:

    .. math::

      \frac{\partial L}{\partial s_l}
      = -\sigma(s_l)\big(1 - \sigma(s_l)\big)\sum_i g_i \operatorname{sign}(\theta_i)\,
        \mathbb 1\big[|\theta_i| > d_l\big].

    The weight decay on :math:`s` pulls a very negative :math:`s` up towards 0,
    which is what raises the threshold over training; the gradient term then
    balances it (Chen et al. read every threshold tuning strategy, this one
    included, as a way of tuning the :math:`\ell_1` coefficient :math:`\lambda`).

    Args:
      learning_rate: :math:`\eta`, a number or a schedule.
      s_init: the initial logit of every layer (default -3200, STR's ResNet-50
        configs: :math:`d \approx 0` until the weight decay has raised it).
      momentum: momentum in ``[0, 1)`` or ``None`` (default 0.875, STR's configs).
      weight_decay: coupled weight decay on :math:`\theta` (default
        2.251757813e-05, STR's 90.23%-sparse ResNet-50 config).
      threshold_weight_decay: the weight decay on :math:`s` (default ``None``:
        the same as ``weight_decay``, as STR).
      nesterov: Nesterov momentum (default no).
      gradient: gradient to :math:`\theta`: ``'exact'`` (default, STR) or ``'ste'``.
      mask: which leaves are thresholded (default ``'weights'``:
        :func:`sparsejax.tree.weights_only`; see :func:`soft_threshold_reparam`).
      latent_dtype: dtype of :math:`\theta` (default: the params').

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`; ``update`` requires
      ``params``. ``state.threshold`` holds :math:`d_l` per leaf and
      ``state.extra`` the logits :math:`s_l`.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> import sparsejax as sj
      >>> params = {'kernel': jnp.array([[0.5, -0.05]]), 'bias': jnp.zeros(2)}
      >>> tx = sj.optim.str_(learning_rate=0.1, s_init=-2.0)
      >>> state = tx.init(params)
      >>> state.threshold['kernel'].round(4), state.threshold['bias']
      (Array(0.1192, dtype=float32), None)

    References:
      Kusupati, Ramanujan, Somani, Wortsman, Jain, Kakade and Farhadi, *Soft
      Threshold Weight Reparameterization for Learnable Sparsity*, ICML 2020.
    """
    _check_sgd(learning_rate, momentum, weight_decay)
    check_choice("gradient", gradient, ("ste", "exact"))
    check_number("s_init", s_init)
    if threshold_weight_decay is not None:
        check_number("threshold_weight_decay", threshold_weight_decay, ge=0)
    wd_s = weight_decay if threshold_weight_decay is None else threshold_weight_decay
    return _reparam(
        name="str_",
        inner=_inner_sgd(learning_rate, momentum, (weight_decay, wd_s), nesterov),
        gradient=gradient,
        mask=mask,
        latent_dtype=latent_dtype,
        kind="str",
        s_init=s_init,
    )


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
    mask: Mask | str = "weights",
    latent_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""LATS with continuation: :math:`\lambda` grows geometrically up to a target sparsity, then is held.

    The threshold follows LATS with the current coefficient,
    :math:`d_{t+1} = d_t + \lambda_t\eta_t` (from ``start_step``). Every
    ``interval`` steps (counted from ``start_step``), the sparsity
    :math:`s_{t+1}` of the thresholded leaves (the share of exact zeros of
    :math:`w_{t+1}`) is measured inside the transform, and

    .. math::

      \lambda_{t+1} = \begin{cases}
        \gamma\,\lambda_t & \text{if the target was never reached and } s_{t+1} < s^\star,\\
        \lambda_t & \text{otherwise,}
      \end{cases}

    so :math:`\lambda` climbs :math:`\lambda_0, \gamma\lambda_0, \gamma^2\lambda_0, \dots`
    until the first check that finds :math:`s_{t+1} \ge s^\star`; from then on it
    is constant, i.e. plain LATS on the objective
    :math:`L(w) + \lambda\|w\|_1` the continuation has found. This is the
    homotopy continuation strategy of sparse optimisation (a sequence of
    :math:`\ell_1` problems, each warm-started from the last), run with
    increasing :math:`\lambda` so that no dense network has to be trained
    first. With :math:`\lambda` held, the threshold keeps growing by
    :math:`\lambda\eta_t`, so the sparsity can still rise past the target a
    little (less when the learning rate decays); what is fixed is the
    objective. Everything is computed with ``jnp.where`` (jit-safe, no host
    round-trip); the state's ``extra`` (:class:`ContinuationState`) holds
    :math:`\lambda`, the flag and the last sparsity.

    Args:
      learning_rate: :math:`\eta`, a number or a schedule.
      target_sparsity: :math:`s^\star \in [0, 1)`.
      l1: :math:`\lambda_0 > 0`, the (small) starting coefficient.
      interval: steps between checks, :math:`\ge 1` (no default: it depends on
        the run length; a fraction of an epoch is typical).
      growth: :math:`\gamma \ge 1` (default 2: :math:`\lambda` doubles per
        interval; our choice, the paper gives none).
      momentum: momentum in ``[0, 1)`` or ``None`` (default 0.875, reference code).
      weight_decay: coupled weight decay on :math:`\theta` (default
        :math:`2^{-15}`, reference code).
      start_step: :math:`t_0 \ge 0`, dense training before it.
      nesterov: Nesterov momentum (default no).
      gradient: ``'ste'`` (default) or ``'exact'``.
      mask: which leaves are thresholded and counted (default ``'weights'``:
        :func:`sparsejax.tree.weights_only`; see :func:`soft_threshold_reparam`).
      latent_dtype: dtype of :math:`\theta` (default: the params').

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`; ``update`` requires ``params``.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> import sparsejax as sj
      >>> params = {'kernel': jax.random.normal(jax.random.key(0), (10, 10))}
      >>> tx = sj.optim.lats_continuation(0.1, target_sparsity=0.5, l1=0.1, interval=1,
      ...                           momentum=None, weight_decay=0.0)
      >>> state = tx.init(params)
      >>> for _ in range(10):
      ...   updates, state = tx.update({'kernel': jnp.zeros((10, 10))}, state, params)
      ...   params = optax.apply_updates(params, updates)
      >>> c = state.extra
      >>> bool(c.reached), round(float(c.l1), 4), float(c.sparsity) >= 0.5
      (True, 6.4, True)

    References:
      Chen et al., *A Unified Framework for Soft Threshold Pruning*, ICLR 2023
      (continuation and early pruning); Xiao and Zhang, *A proximal-gradient
      homotopy method for the sparse least-squares problem*, SIAM J. Optim.,
      2013; Hale, Yin and Zhang, *Fixed-point continuation for l1-minimization*,
      SIAM J. Optim., 2008.
    """
    _check_sgd(learning_rate, momentum, weight_decay)
    _check_common(gradient, start_step)
    check_number("target_sparsity", target_sparsity, ge=0, lt=1)
    check_number("l1", l1, gt=0)
    check_number("interval", interval, ge=1, integer=True)
    check_number("growth", growth, ge=1)
    if callable(l1) or callable(target_sparsity) or callable(growth) or callable(interval):
        raise ValueError(
            "lats_continuation: l1, target_sparsity, growth and interval must be numbers "
            "(l1 is adapted by the transform itself)"
        )
    return _reparam(
        name="lats_continuation",
        inner=_inner_sgd(learning_rate, momentum, weight_decay, nesterov),
        gradient=gradient,
        mask=mask,
        latent_dtype=latent_dtype,
        kind="continuation",
        learning_rate=learning_rate,
        start_step=start_step,
        continuation=dict(l1=l1, target_sparsity=target_sparsity, growth=growth, interval=interval),
    )


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
    mask: Mask | str = "weights",
    latent_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Pruning at initialisation: a short LATS phase fixes the mask, then masked training.

    Phase 1, updates :math:`t < P` (``prune_steps``): :func:`lats` from the
    initial weights, :math:`d_{t+1} = d_t + \lambda\eta_t`. A short phase needs
    a large :math:`\lambda` (the threshold reached is
    :math:`\lambda\sum_{t<P}\eta_t`).

    At :math:`t + 1 = P` the mask :math:`m = [w_P \ne 0]` of the thresholded
    leaves is fixed and the threshold dropped: :math:`\theta \leftarrow w_P`
    (the model does not jump), :math:`d = 0`.

    Phase 2, :math:`t \ge P`: the inner optimizer trains the surviving weights
    only, :math:`\theta_{t+1} = m \odot (\theta_t + u_t(m \odot g_t))`,
    :math:`w = \theta`: pruned weights stay exactly zero, survivors are no
    longer shrunk (no :math:`\ell_1` bias in the final weights), and the mask
    never changes again (``state.extra.masks``).

    With ``rewind=True`` the survivors are instead reset to their *initial*
    values at :math:`P` (:math:`\theta \leftarrow m \odot w_0`; leaves outside
    ``mask`` back to :math:`w_0` too) and the inner optimizer's buffers
    (momentum) are re-initialised; its step count goes on, so the learning-rate
    schedule continues from :math:`P` (to restart it, give a schedule that
    restarts at :math:`P`, e.g. with ``optax.join_schedules``). The network
    trained in phase 2 is then the initial network pruned by a mask found in
    :math:`P` steps, i.e. pruning at initialisation in the sense of SNIP or
    lottery tickets, with the mask chosen by the soft-threshold dynamics. The
    state then holds a copy of the initial params.

    Why this form: Chen et al. name pruning at initialisation among the
    methods their framework yields, but the abstract and introduction we work
    from do not spell the algorithm out, so this is our reading: the
    soft-threshold dynamics (with the same LATS scheduler) choose the mask
    from a few steps on the initial weights, and the mask is then *fixed*
    rather than the threshold kept, which makes the rest of training ordinary
    sparse training and removes LATS's shrinkage of the surviving weights
    (the :math:`\lambda` bias of an :math:`\ell_1` solution).

    Args:
      learning_rate: :math:`\eta`, a number or a schedule.
      l1: :math:`\lambda \ge 0` of the thresholding phase, a number or a schedule.
      prune_steps: :math:`P \ge 1`, the length of the thresholding phase.
      momentum: momentum in ``[0, 1)`` or ``None`` (default 0.875, reference code).
      weight_decay: coupled weight decay on :math:`\theta` (default
        :math:`2^{-15}`, reference code).
      rewind: reset the survivors to their initial values at :math:`P`.
      nesterov: Nesterov momentum (default no).
      gradient: ``'ste'`` (default) or ``'exact'``, in phase 1.
      mask: which leaves are thresholded (default ``'weights'``:
        :func:`sparsejax.tree.weights_only`; see :func:`soft_threshold_reparam`).
      latent_dtype: dtype of :math:`\theta` (default: the params').

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`; ``update`` requires ``params``.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> import sparsejax as sj
      >>> params = {'kernel': jnp.array([[0.5, -0.05, 0.02]])}
      >>> tx = sj.optim.lats_prune_at_init(0.1, l1=1.0, prune_steps=1, momentum=None,
      ...                                  weight_decay=0.0)
      >>> state = tx.init(params)
      >>> grads = {'kernel': jnp.array([[0.0, 0.5, -0.5]])}
      >>> for _ in range(3):  # after step 1 the gradient would revive them; the mask stops it
      ...   updates, state = tx.update(grads, state, params)
      ...   params = optax.apply_updates(params, updates)
      >>> params['kernel'], state.extra.masks['kernel']
      (Array([[0.4, 0. , 0. ]], dtype=float32), Array([[ True, False, False]], dtype=bool))

    References:
      Chen et al., *A Unified Framework for Soft Threshold Pruning*, ICLR 2023
      (the family of pruning methods: sparsify-during-training, early pruning
      and pruning at initialisation); Lee, Ajanthan and Torr, *SNIP: Single-shot
      Network Pruning based on Connection Sensitivity*, ICLR 2019.
    """
    _check_sgd(learning_rate, momentum, weight_decay)
    check_number("l1", l1, ge=0)
    check_number("prune_steps", prune_steps, ge=1, integer=True)
    check_choice("gradient", gradient, ("ste", "exact"))
    check_choice("rewind", rewind, (False, True))
    lr, lam = as_schedule(learning_rate), as_schedule(l1)

    def increment(k: jax.Array) -> jax.Array:
        return jnp.asarray(lam(k), jnp.float32) * jnp.asarray(lr(k), jnp.float32)

    return _reparam(
        name="lats_prune_at_init",
        inner=_inner_sgd(learning_rate, momentum, weight_decay, nesterov),
        gradient=gradient,
        mask=mask,
        latent_dtype=latent_dtype,
        kind="increment",
        threshold_fn=increment,
        prune_steps=prune_steps,
        rewind=rewind,
    )
