r"""STR: soft-threshold reparameterisation with one trainable threshold per layer.

Like :func:`sparsejax.soft_threshold_reparam`, the transform keeps latent
weights :math:`\theta` and shows the model :math:`w = S_d(\theta)`; here each
thresholded leaf :math:`l` has its own threshold :math:`d_l = \sigma(s_l)`,
whose logit :math:`s_l` is trained together with :math:`\theta` by the same SGD.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sparsejax._validation import check_choice, check_number, require_params
from sparsejax.optim._common import copy_as
from sparsejax.optim.reparam import (
    MOMENTUM,
    Gradient,
    _initial_latents,
    _Leaves,
    _leaves,
    _step_latents,
    _theta_grads,
    _thetas,
)
from sparsejax.optim.sgd import pytorch_sgd
from sparsejax.tree import Mask

__all__ = ["StrReparamState", "str_", "str_reparam"]

STR_WEIGHT_DECAY = 2.251757813e-05
"""Weight decay of STR's 90.23%-sparse ResNet-50 config (``resnet50-str.yaml``)."""

STR_S_INIT = -3200.0
"""Initial threshold logit of STR's ResNet-50 configs (``sInit_value``)."""


class StrReparamState(NamedTuple):
    """State of :func:`str_reparam`.

    Attributes:
      count: number of updates so far (int32).
      latent: the latent weights :math:`\\theta` (params' structure; ``None`` at
        the leaves that are not thresholded, which are trained directly).
      logit: the threshold logit :math:`s_l` of each thresholded leaf (a
        float32 scalar; ``None`` elsewhere).
      threshold: :math:`d_l = \\sigma(s_l)`, the threshold each thresholded leaf
        is seen through now (float32 scalars; ``None`` elsewhere).
      inner_state: the state of the SGD of the pair ``(theta, logit)``.
    """

    count: jax.Array
    latent: optax.Params
    logit: optax.Params
    threshold: optax.Params
    inner_state: optax.OptState


def _logit_grads(
    leaves: _Leaves, grads: optax.Updates, thetas: list[Any], thresholds: list[Any]
) -> list[Any]:
    r"""The gradient to the logits, :math:`\partial L/\partial s_l` (see :func:`str_reparam`)."""
    out = []
    for g, theta, s, d in zip(leaves.flatten(grads), thetas, leaves.selected, thresholds):
        if not s:
            out.append(None)
            continue
        alive = jnp.abs(theta) > d
        signed = g.astype(jnp.float32) * jnp.sign(theta).astype(jnp.float32)
        out.append(-jnp.sum(jnp.where(alive, signed, 0.0)) * d * (1.0 - d))
    return out


def _str_transform(
    inner: optax.GradientTransformation, s_init: Any, gradient: str, mask: Mask, latent_dtype: Any
) -> optax.GradientTransformationExtraArgs:
    """STR with ``inner`` training the pair ``(theta, logit)``."""
    inner_tx = optax.with_extra_args_support(inner)

    def init_fn(params: optax.Params) -> StrReparamState:
        leaves = _leaves(params, mask)
        s0 = jnp.asarray(s_init, jnp.float32)
        # one buffer per leaf (and none shared with a hyperparameter): the state can be donated
        logit = leaves.unflatten([copy_as(s0, jnp.float32) if s else None for s in leaves.selected])
        threshold = jax.tree.map(jax.nn.sigmoid, logit)
        latent = _initial_latents(leaves, leaves.flatten(threshold), latent_dtype)
        return StrReparamState(
            count=jnp.zeros([], jnp.int32),
            latent=latent,
            logit=logit,
            threshold=threshold,
            inner_state=inner.init((leaves.unflatten(_thetas(leaves, latent)), logit)),
        )

    def update_fn(
        updates: optax.Updates,
        state: StrReparamState,
        params: optax.Params | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, StrReparamState]:
        require_params(params, "str_reparam")
        leaves = _leaves(params, mask)
        thetas = _thetas(leaves, state.latent)
        d = leaves.flatten(state.threshold)
        grads = (
            leaves.unflatten(_theta_grads(leaves, updates, thetas, d, gradient)),
            leaves.unflatten(_logit_grads(leaves, updates, thetas, d)),
        )
        (u_theta, u_logit), inner_state = inner_tx.update(
            grads, state.inner_state, (leaves.unflatten(thetas), state.logit), **extra_args
        )
        logit = jax.tree.map(lambda s, u: (s + u).astype(jnp.float32), state.logit, u_logit)
        threshold = jax.tree.map(jax.nn.sigmoid, logit)
        new_updates, latent = _step_latents(leaves, thetas, u_theta, leaves.flatten(threshold))
        new_state = StrReparamState(
            count=optax.safe_increment(state.count),
            latent=latent,
            logit=logit,
            threshold=threshold,
            inner_state=inner_state,
        )
        return new_updates, new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def str_reparam(
    learning_rate: optax.ScalarOrSchedule,
    s_init: float = STR_S_INIT,
    momentum: float | None = MOMENTUM,
    weight_decay: float = STR_WEIGHT_DECAY,
    threshold_weight_decay: float | None = None,
    *,
    nesterov: bool = False,
    gradient: Gradient = "exact",
    mask: Mask = None,
    latent_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""STR: soft threshold reparameterisation with one trainable threshold per layer.

    Each thresholded leaf :math:`l` has a logit :math:`s_l` and the threshold
    :math:`d_l = \sigma(s_l)`; :math:`w = S_{d_l}(\theta)`. Both are trained by
    the same PyTorch-style SGD (momentum, coupled weight decay), :math:`s_l`
    from the gradient it receives through :math:`w`, computed from
    :math:`g = \partial L/\partial w` and :math:`\theta`:

    .. math::

      \frac{\partial L}{\partial s_l}
      = -\sigma(s_l)\big(1 - \sigma(s_l)\big)\sum_i g_i \operatorname{sign}(\theta_i)\,
        \mathbb 1\big[|\theta_i| > d_l\big].

    The weight decay on :math:`s` pulls a very negative :math:`s` up towards 0,
    which is what raises the threshold over training; the gradient term then
    balances it (Chen et al. read every threshold tuning strategy, this one
    included, as a way of tuning the :math:`\ell_1` coefficient :math:`\lambda`).
    :math:`\theta` starts at :math:`S_{d}^{-1}(w_0)`, so the params do not move
    (up to the rounding of :math:`\theta` to ``latent_dtype``; see
    :func:`sparsejax.soft_threshold_reparam`). With ``gradient='exact'``, while
    :math:`d_l = 0` (:math:`\sigma(-3200)` is 0 in float32) every entry
    passes the gradient, an exact zero included; the default ``mask=None``
    thresholds every leaf, biases and BatchNorm parameters included, where
    STR thresholds conv and linear weights only (``mask=sj.tree.weights_only``).

    Args:
      learning_rate: :math:`\eta`, a number or a schedule.
      s_init: the initial logit of every layer (default -3200, STR's ResNet-50
        configs: :math:`d \approx 0` until the weight decay has raised it); read at
        ``init`` only (the logits are trained state from then on), so a value
        changed later through ``optax.inject_hyperparams`` has no effect.
      momentum: momentum in ``[0, 1)`` or ``None`` (default 0.875, STR's configs).
      weight_decay: coupled weight decay on :math:`\theta` (default
        2.251757813e-05, STR's 90.23%-sparse ResNet-50 config).
      threshold_weight_decay: the weight decay on :math:`s` (default ``None``:
        the same as ``weight_decay``, as STR).
      nesterov: Nesterov momentum (default no).
      gradient: gradient to :math:`\theta`: ``'exact'`` (default, STR) or ``'ste'``.
      mask: which leaves get a threshold (default ``None``: every leaf; STR
        thresholds conv and linear weights only: ``mask=sj.tree.weights_only``;
        see :func:`sparsejax.tree.resolve_mask`).
      latent_dtype: dtype of :math:`\theta` (default: the params').

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`; ``update`` requires
      ``params``. ``state.threshold`` holds :math:`d_l` per leaf and
      ``state.logit`` the logits :math:`s_l`.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> import sparsejax as sj
      >>> params = {'kernel': jnp.array([[0.5, -0.05]]), 'bias': jnp.zeros(2)}
      >>> tx = sj.str_reparam(learning_rate=0.1, s_init=-2.0, mask=sj.tree.weights_only)
      >>> state = tx.init(params)
      >>> state.threshold['kernel'].round(4), state.threshold['bias']
      (Array(0.1192, dtype=float32), None)

    References:
      Kusupati, Ramanujan, Somani, Wortsman, Jain, Kakade and Farhadi, *Soft
      Threshold Weight Reparameterization for Learnable Sparsity*, ICML 2020.
    """
    check_choice("gradient", gradient, ("ste", "exact"))
    check_number("s_init", s_init)
    check_number("threshold_weight_decay", threshold_weight_decay, ge=0)
    wd_s = weight_decay if threshold_weight_decay is None else threshold_weight_decay
    inner = pytorch_sgd(learning_rate, momentum, nesterov, (weight_decay, wd_s))
    return _str_transform(inner, s_init, gradient, mask, latent_dtype)


str_ = str_reparam
"""Alias of :func:`str_reparam`."""
