"""Proximal (soft-threshold) transforms: the building block and prox-SGD.

The soft threshold acts in parameter space, so it is written as an update
(as every parameter-space step of sparsejax): it receives the updates of the transforms
before it, forms the point ``params + updates`` those would reach, and emits
the update that moves the params to ``S_tau(params + updates)`` instead. It
therefore needs ``params`` and sits last in a chain.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sparsejax import prox
from sparsejax._validation import as_schedule, check_number, require_params
from sparsejax.optim._common import compute_dtype, tree_compute_dtype
from sparsejax.optim.sgd import pytorch_sgd
from sparsejax.tree import Mask, broadcast_prefix, path_str, resolve_mask

__all__ = [
    "SoftThresholdState",
    "apply_soft_threshold",
    "inverse_sqrt",
    "prox_sgd",
    "sqrt_t_prox_sgd",
]


class SoftThresholdState(NamedTuple):
    """State of :func:`apply_soft_threshold`.

    Attributes:
      count: number of updates so far (int32).
      threshold: the threshold applied at the last update (float32, or float64
        when a param leaf is float64; a pytree of per-leaf values when the
        threshold was given per leaf). With
        ``cumulative=True`` it is the running sum of the increments.
    """

    count: jax.Array
    threshold: Any


def _is_single(value: Any) -> bool:
    return callable(value) or jax.tree_util.treedef_is_leaf(jax.tree.structure(value))


def _check_threshold_shapes(threshold: Any, single: bool) -> None:
    """Refuses array thresholds with dimensions (they were applied per element, silently)."""
    if callable(threshold):
        return
    if single:
        if jnp.ndim(threshold) != 0:
            raise ValueError(
                f"threshold must be a single number (a 0-d array included), a schedule, or a "
                f"pytree with one number per leaf; got an array of shape "
                f"{tuple(jnp.shape(threshold))}: {threshold!r}. A threshold per element is not "
                "accepted; for one value per leaf pass a pytree with the params' structure "
                "(or a prefix of it), e.g. {'w': 0.1, 'b': 0.0}"
            )
        return
    for path, leaf in jax.tree_util.tree_leaves_with_path(threshold):
        if jnp.ndim(leaf) != 0:
            raise ValueError(
                f"threshold holds one value per leaf, and each value must be a single number "
                f"(a 0-d array included); got an array of shape {tuple(jnp.shape(leaf))} at "
                f"{path_str(path)!r}: {leaf!r}. A threshold per element is not accepted; give "
                "each leaf (or subtree) of the params one number"
            )


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
        prefix of it) holding one value per leaf. Each value is one number (a
        0-d array included); arrays with dimensions are a ``ValueError``.
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
    _check_threshold_shapes(threshold, single)
    schedule = as_schedule(threshold) if single else None

    def value_at(count: jax.Array, dtype: Any) -> Any:
        if single:
            return jnp.asarray(schedule(count), dtype)
        return jax.tree.map(lambda t: jnp.asarray(t, dtype), threshold)

    return _soft_threshold_transform(value_at, single, mask, cumulative)


def _next_threshold(
    value_at: Callable[[jax.Array, Any], Any], cumulative: bool, state: SoftThresholdState,
    params: optax.Params,
) -> SoftThresholdState:
    """The state after one step: the threshold ``value_at(count, dtype)`` (added to the last one
    if ``cumulative``) in the params' :func:`~sparsejax.optim._common.tree_compute_dtype`."""
    tau = value_at(state.count, tree_compute_dtype(params))
    if cumulative:
        tau = jax.tree.map(jnp.add, state.threshold, tau)
    return SoftThresholdState(count=optax.safe_increment(state.count), threshold=tau)


def _soft_threshold_transform(
    value_at: Callable[[jax.Array, Any], Any], single: bool, mask: Mask, cumulative: bool
) -> optax.GradientTransformationExtraArgs:
    """:func:`apply_soft_threshold` with the threshold given as ``(count, dtype) -> tau``.

    ``dtype`` is :func:`~sparsejax.optim._common.tree_compute_dtype` of the params
    (float32 unless a leaf is float64), so the library's own thresholds are
    computed in float64 for float64 params.
    """

    def init_fn(params: optax.Params) -> SoftThresholdState:
        dtype = tree_compute_dtype(params)
        zeros = jax.tree.map(jnp.zeros_like, value_at(jnp.zeros([], jnp.int32), dtype))
        return SoftThresholdState(count=jnp.zeros([], jnp.int32), threshold=zeros)

    def update_fn(
        updates: optax.Updates,
        state: SoftThresholdState,
        params: optax.Params | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, SoftThresholdState]:
        del extra_args
        require_params(params, "apply_soft_threshold")
        new_state = _next_threshold(value_at, cumulative, state, params)
        tau = new_state.threshold
        selected = resolve_mask(mask, params, nonempty=True)
        tau_per_leaf = (
            jax.tree.map(lambda _: tau, params)
            if single
            else broadcast_prefix(tau, params, what="threshold")
        )

        def leaf_update(u: jax.Array, p: jax.Array, sel: bool, t: jax.Array) -> jax.Array:
            if not sel:
                return u
            t = jnp.asarray(t, compute_dtype(p.dtype))
            return (prox.soft_threshold(p + u, t) - p).astype(p.dtype)

        new_updates = jax.tree.map(leaf_update, updates, params, selected, tau_per_leaf)
        return new_updates, new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def inverse_sqrt(gamma: Any) -> optax.Schedule:
    r"""The step size :math:`\alpha_t = 1/(\gamma\sqrt t)` of the iRDA paper, as a schedule.

    .. math::

      \alpha_t = \frac{1}{\gamma\sqrt t}, \qquad t = \text{count} + 1 = 1, 2, \dots

    The step with which the iRDA paper runs its prox-SGD and :math:`\sqrt t`-prox-SGD
    baselines (Sec. 3.2: ":math:`\alpha_t = 1/(\gamma\sqrt t)` obtains the best
    convergence rate"; eq. 17-18 and 21-22), and the step of RDA's dual average
    (:math:`t/\beta_t \cdot \tfrac1t` with :math:`\beta_t = \gamma\sqrt t`). Pass it
    as ``learning_rate`` to :func:`prox_sgd`, :func:`sqrt_t_prox_sgd` or any Optax
    optimizer. It is computed in the default float dtype (float64 under
    ``jax_enable_x64``, float32 otherwise).

    Args:
      gamma: :math:`\gamma > 0` (the paper: 0.8 for prox-SGD and 1.0 for
        :math:`\sqrt t`-prox-SGD on CIFAR-10, Table 1).

    Returns:
      An :class:`optax.Schedule` ``count -> 1/(gamma*sqrt(count + 1))``.

    Example:
      >>> import sparsejax as sj
      >>> schedule = sj.inverse_sqrt(2.0)
      >>> [round(float(schedule(k)), 4) for k in (0, 3, 99)]
      [0.5, 0.25, 0.05]

    References:
      *iRDA Method for Sparse Convolutional Neural Networks* (ICLR submission),
      Sec. 3.2-3.3, eq. (8), (17)-(18), (21)-(22).
    """
    check_number("gamma", gamma, gt=0, scalar=True)

    def schedule(count: Any) -> jax.Array:
        dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
        t = jnp.asarray(count, dtype) + 1
        return 1 / (jnp.asarray(gamma, dtype) * jnp.sqrt(t))

    return schedule


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

    iRDA paper eq. (17)-(18), where the step is :math:`\eta_t = \alpha_t =
    1/(\gamma\sqrt t)` and there is no momentum: that is
    ``prox_sgd(sj.inverse_sqrt(gamma), l1)``. With ``momentum``, :math:`g_t` is
    replaced by the (heavy-ball or Nesterov) momentum buffer of
    :func:`sparsejax.pytorch_sgd` before the threshold; this variant is the
    library's own, not the paper's baseline.

    Args:
      learning_rate: :math:`\eta_t \ge 0`, a scalar or a schedule (the paper's:
        :func:`inverse_sqrt`).
      l1: :math:`\lambda \ge 0`, a scalar or a schedule.
      momentum: momentum decay in ``[0, 1)``, or ``None`` for plain SGD (the paper).
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
      >>> paper = sj.prox_sgd(sj.inverse_sqrt(0.8), l1=1e-5)  # iRDA paper, Table 1

    References:
      Duchi and Singer, *Efficient online and batch learning using forward
      backward splitting*, JMLR, 2009; baseline in *iRDA Method for Sparse
      Convolutional Neural Networks* (eq. 17-18).
    """
    check_number("learning_rate", learning_rate, ge=0, scalar=True)
    check_number("l1", l1, ge=0, scalar=True)
    if momentum is not None:
        check_number("momentum", momentum, ge=0, lt=1, scalar=True)
    lr, lam = as_schedule(learning_rate), as_schedule(l1)

    def threshold(count: jax.Array, dtype: Any) -> jax.Array:
        return jnp.asarray(lr(count), dtype) * jnp.asarray(lam(count), dtype)

    return optax.chain(
        pytorch_sgd(learning_rate, momentum, nesterov),
        _soft_threshold_transform(threshold, True, mask, cumulative=False),
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
    paper's step is :math:`\eta_t = \alpha_t = 1/(\gamma\sqrt t)` with the same
    :math:`\gamma` and no momentum: ``sqrt_t_prox_sgd(sj.inverse_sqrt(gamma), gamma, l1)``.
    The threshold grows without bound, so the iterates are driven to zero in the
    long run; the paper uses it as a baseline showing exactly that. With
    ``momentum`` (the library's own variant) the SGD step uses the momentum buffer.

    Args:
      learning_rate: :math:`\eta_t \ge 0`, a scalar or a schedule (the paper's:
        :func:`inverse_sqrt` of ``gamma``).
      gamma: :math:`\gamma > 0` of :math:`\beta_t = \gamma\sqrt t`.
      l1: :math:`\lambda \ge 0`.
      momentum: momentum decay in ``[0, 1)``, or ``None`` (the paper).
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
      >>> paper = sj.sqrt_t_prox_sgd(sj.inverse_sqrt(1.0), gamma=1.0, l1=1e-8)  # Table 1

    References:
      *iRDA Method for Sparse Convolutional Neural Networks* (ICLR submission), eq. (21)-(22).
    """
    check_number("learning_rate", learning_rate, ge=0, scalar=True)
    check_number("gamma", gamma, gt=0, scalar=True)
    check_number("l1", l1, ge=0, scalar=True)
    if momentum is not None:
        check_number("momentum", momentum, ge=0, lt=1, scalar=True)
    gam, lam = as_schedule(gamma), as_schedule(l1)

    def threshold(count: jax.Array, dtype: Any) -> jax.Array:
        t = (count + 1).astype(dtype)
        return jnp.asarray(lam(count), dtype) * jnp.sqrt(t) / jnp.asarray(gam(count), dtype)

    return optax.chain(
        pytorch_sgd(learning_rate, momentum, nesterov),
        _soft_threshold_transform(threshold, True, mask, cumulative=False),
    )
