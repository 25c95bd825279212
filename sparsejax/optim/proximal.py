"""Proximal (soft-threshold) transforms: the building block and prox-SGD.

The soft threshold acts in parameter space, so it is written as an update
(as every parameter-space step of sparsejax): it receives the updates of the transforms
before it, forms the point ``params + updates`` those would reach, and emits
the update that moves the params to ``S_tau(params + updates)`` instead. It
therefore needs ``params`` and sits last in a chain.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sparsejax import prox
from sparsejax._validation import as_schedule, check_number, require_params
from sparsejax.optim.sgd import pytorch_sgd
from sparsejax.tree import Mask, broadcast_prefix, resolve_mask

__all__ = ["SoftThresholdState", "prox_sgd", "apply_soft_threshold", "sqrt_t_prox_sgd"]


class SoftThresholdState(NamedTuple):
    """State of :func:`apply_soft_threshold`.

    Attributes:
      count: number of updates so far (int32).
      threshold: the threshold applied at the last update (float32; a pytree of
        per-leaf values when the threshold was given per leaf). With
        ``cumulative=True`` it is the running sum of the increments.
    """

    count: jax.Array
    threshold: Any


def _is_single(value: Any) -> bool:
    return callable(value) or jax.tree_util.treedef_is_leaf(jax.tree.structure(value))


def apply_soft_threshold(
    threshold: optax.ScalarOrSchedule | Any,
    mask: Mask = None,
    *,
    cumulative: bool = False,
) -> optax.GradientTransformationExtraArgs:
    r"""Proximal step of :math:`\tau_t \|w\|_1`, written as an update.

    With :math:`u_t` the incoming updates and :math:`w_t` the params,

    .. math::

      w_{t+1} = S_{\tau_t}(w_t + u_t), \qquad
      \text{emitted update} = S_{\tau_t}(w_t + u_t) - w_t,

    where :math:`S_\tau(x) = \operatorname{sign}(x)\max(|x| - \tau, 0)`
    (:func:`sparsejax.prox.soft_threshold`). Put it last in a chain, after the
    transform that produces the (negative, learning-rate scaled) step.

    Args:
      threshold: :math:`\tau_t \ge 0`: a scalar, a schedule ``count -> tau``
        (``count`` starts at 0), or a pytree with the params' structure (or a
        prefix of it) holding one value per leaf.
      mask: which leaves are thresholded: ``None`` for all, a pytree of
        booleans or a callable ``params -> pytree of booleans``
        (e.g. :func:`sparsejax.tree.weights_only`). Other leaves pass their
        updates through unchanged.
      cumulative: if ``True``, ``threshold`` gives the per-step *increment* and
        the threshold applied at step ``t`` is the sum of the increments of
        steps ``0..t`` (kept in the state). gRDA's threshold, which depends on
        the whole learning-rate history, is built this way.

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`; ``update`` requires
      ``params``.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> import sparsejax as sj
      >>> params = {'w': jnp.array([0.5, -0.05, 2.0])}
      >>> tx = optax.chain(optax.sgd(0.1), sj.apply_soft_threshold(0.1 * 0.5))  # prox-SGD, lambda = 0.5
      >>> state = tx.init(params)
      >>> grads = {'w': jnp.array([1.0, 0.0, -1.0])}
      >>> updates, state = tx.update(grads, state, params)
      >>> optax.apply_updates(params, updates)['w']
      Array([0.35, 0.  , 2.05], dtype=float32)

    References:
      Combettes and Wajs, *Signal recovery by proximal forward-backward
      splitting*, Multiscale Model. Simul., 2005; Duchi and Singer, *Efficient
      online and batch learning using forward backward splitting*, JMLR, 2009.
    """
    check_number("threshold", threshold, ge=0)
    single = _is_single(threshold)
    schedule = as_schedule(threshold) if single else None

    def value_at(count: jax.Array) -> Any:
        if single:
            return jnp.asarray(schedule(count), jnp.float32)
        return jax.tree.map(lambda t: jnp.asarray(t, jnp.float32), threshold)

    def init_fn(params: optax.Params) -> SoftThresholdState:
        del params
        zeros = jax.tree.map(jnp.zeros_like, value_at(jnp.zeros([], jnp.int32)))
        return SoftThresholdState(count=jnp.zeros([], jnp.int32), threshold=zeros)

    def update_fn(
        updates: optax.Updates,
        state: SoftThresholdState,
        params: optax.Params | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, SoftThresholdState]:
        del extra_args
        require_params(params, "apply_soft_threshold")
        tau = value_at(state.count)
        if cumulative:
            tau = jax.tree.map(jnp.add, state.threshold, tau)
        selected = resolve_mask(mask, params, nonempty=True)
        tau_per_leaf = (
            jax.tree.map(lambda _: tau, params)
            if single
            else broadcast_prefix(tau, params, what="threshold")
        )

        def leaf_update(u: jax.Array, p: jax.Array, sel: bool, t: jax.Array) -> jax.Array:
            if not sel:
                return u
            return (prox.soft_threshold(p + u, t) - p).astype(p.dtype)

        new_updates = jax.tree.map(leaf_update, updates, params, selected, tau_per_leaf)
        new_state = SoftThresholdState(count=optax.safe_increment(state.count), threshold=tau)
        return new_updates, new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def prox_sgd(
    learning_rate: optax.ScalarOrSchedule,
    l1: optax.ScalarOrSchedule,
    momentum: float | None = None,
    nesterov: bool = False,
    mask: Mask = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Proximal SGD (FOBOS) for :math:`f(w) + \lambda\|w\|_1`.

    .. math::

      w_{t+1} = S_{\eta_t \lambda}\big(w_t - \eta_t g_t\big),

    iRDA paper eq. (17)-(18); with ``momentum``, :math:`g_t` is replaced by the
    (heavy-ball or Nesterov) momentum buffer of :func:`optax.sgd`.

    Args:
      learning_rate: :math:`\eta_t \ge 0`, a scalar or a schedule.
      l1: :math:`\lambda \ge 0`, a scalar or a schedule.
      momentum: momentum decay in ``[0, 1)``, or ``None`` for plain SGD.
      nesterov: use Nesterov momentum.
      mask: which leaves get the :math:`\ell_1` term (see :func:`apply_soft_threshold`).

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`; ``update`` requires ``params``.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> import sparsejax as sj
      >>> params = {'w': jnp.array([1.0, 0.01])}
      >>> tx = sj.prox_sgd(learning_rate=0.1, l1=0.5)
      >>> updates, _ = tx.update({'w': jnp.zeros(2)}, tx.init(params), params)
      >>> optax.apply_updates(params, updates)['w']
      Array([0.95, 0.  ], dtype=float32)

    References:
      Duchi and Singer, *Efficient online and batch learning using forward
      backward splitting*, JMLR, 2009; baseline in *iRDA Method for Sparse
      Convolutional Neural Networks* (eq. 17-18).
    """
    check_number("learning_rate", learning_rate, ge=0)
    check_number("l1", l1, ge=0)
    if momentum is not None:
        check_number("momentum", momentum, ge=0, lt=1)
    lr, lam = as_schedule(learning_rate), as_schedule(l1)
    return optax.chain(
        pytorch_sgd(learning_rate, momentum, nesterov),
        apply_soft_threshold(lambda count: lr(count) * lam(count), mask),
    )


def sqrt_t_prox_sgd(
    learning_rate: optax.ScalarOrSchedule,
    gamma: optax.ScalarOrSchedule,
    l1: optax.ScalarOrSchedule,
    momentum: float | None = None,
    nesterov: bool = False,
    mask: Mask = None,
) -> optax.GradientTransformationExtraArgs:
    r""":math:`\sqrt t`-proximal SGD: an SGD step, then RDA's growing threshold.

    .. math::

      w_{t+1} = S_{\lambda t / \beta_t}\big(w_t - \eta_t g_t\big), \qquad
      \beta_t = \gamma\sqrt t \;\Rightarrow\; \lambda t/\beta_t = \lambda\sqrt t/\gamma,

    with :math:`t = 1, 2, \dots` the step number (iRDA paper eq. 21-22). The
    threshold grows without bound, so the iterates are driven to zero in the
    long run; the paper uses it as a baseline showing exactly that.

    Args:
      learning_rate: :math:`\eta_t \ge 0`, a scalar or a schedule.
      gamma: :math:`\gamma > 0` of :math:`\beta_t = \gamma\sqrt t`.
      l1: :math:`\lambda \ge 0`.
      momentum: momentum decay in ``[0, 1)``, or ``None``.
      nesterov: use Nesterov momentum.
      mask: which leaves get the :math:`\ell_1` term (see :func:`apply_soft_threshold`).

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`; ``update`` requires ``params``.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> import sparsejax as sj
      >>> params = {'w': jnp.array([1.0, 0.01])}
      >>> tx = sj.sqrt_t_prox_sgd(learning_rate=0.1, gamma=1.0, l1=0.5)
      >>> updates, _ = tx.update({'w': jnp.zeros(2)}, tx.init(params), params)
      >>> optax.apply_updates(params, updates)['w']
      Array([0.5, 0. ], dtype=float32)

    References:
      *iRDA Method for Sparse Convolutional Neural Networks* (ICLR submission), eq. (21)-(22).
    """
    check_number("learning_rate", learning_rate, ge=0)
    check_number("gamma", gamma, gt=0)
    check_number("l1", l1, ge=0)
    if momentum is not None:
        check_number("momentum", momentum, ge=0, lt=1)
    gam, lam = as_schedule(gamma), as_schedule(l1)

    def threshold(count: jax.Array) -> jax.Array:
        t = (count + 1).astype(jnp.float32)
        return lam(count) * jnp.sqrt(t) / gam(count)

    return optax.chain(
        pytorch_sgd(learning_rate, momentum, nesterov),
        apply_soft_threshold(threshold, mask),
    )
