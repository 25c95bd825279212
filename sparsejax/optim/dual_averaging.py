"""Dual-averaging transforms: the building block, gRDA, l1-RDA and iRDA.

Dual averaging keeps a centre :math:`w_0` and a (weighted) sum of all past
gradients, and sets the weights from them rather than from the previous
weights. With an :math:`\\ell_1` term the weights are a soft threshold of that
point, which is what makes these methods produce exact zeros that stay zero
unless the accumulated gradient pushes them out again.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sparsejax import prox
from sparsejax._validation import (
    as_schedule,
    check_choice,
    check_number,
    require_params,
    warn_outside,
)
from sparsejax.optim._common import compute_dtype, copy_as, opaque_one, tree_compute_dtype
from sparsejax.optim.masking import freeze_zeros
from sparsejax.optim.proximal import SoftThresholdState, _next_threshold, _soft_threshold_transform
from sparsejax.tree import Mask, resolve_mask

__all__ = ["DualAveragingState", "RDAState", "dual_averaging", "grda", "irda", "rda"]

Center = Literal["init", "zero"]


class DualAveragingState(NamedTuple):
    """State of :func:`dual_averaging`.

    Attributes:
      count: number of updates so far (int32).
      dual: :math:`w_0 - \\sum_k \\eta_k g_k`, the point the params are moved to.
    """

    count: jax.Array
    dual: optax.Updates


def dual_averaging(
    learning_rate: optax.ScalarOrSchedule,
    center: Center = "init",
    accumulator_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Simple dual averaging: moves the params to the centre minus the weighted gradient sum.

    .. math::

      z_t = w_0 - \sum_{k \le t} \eta_k g_k, \qquad w_{t+1} = z_t, \qquad
      \text{emitted update} = z_t - w_t .

    With ``center='init'`` and no other transform this is exactly SGD; its use is
    as the first half of a dual-averaging method, followed by a proximal step
    such as :func:`sparsejax.apply_soft_threshold` (that is how :func:`grda` is built).

    Args:
      learning_rate: :math:`\eta_k \ge 0`, a scalar or a schedule (``count``
        starts at 0). The weight of each gradient is fixed when it is added.
      center: ``'init'`` (:math:`w_0` = the params given to ``init``) or
        ``'zero'`` (:math:`w_0 = 0`).
      accumulator_dtype: dtype of :math:`z` (default: each param's dtype). Use
        ``jnp.float32`` to accumulate bf16 params without losing small steps.

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`; ``update`` requires ``params``.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> import sparsejax as sj
      >>> params = {'w': jnp.array([1.0, 2.0])}
      >>> tx = sj.dual_averaging(0.25)
      >>> state = tx.init(params)
      >>> for _ in range(3):
      ...   updates, state = tx.update({'w': jnp.ones(2)}, state, params)
      ...   params = optax.apply_updates(params, updates)
      >>> params['w']
      Array([0.25, 1.25], dtype=float32)

    References:
      Nesterov, *Primal-dual subgradient methods for convex problems*, Math.
      Program., 2009; Xiao, *Dual averaging methods for regularized stochastic
      learning and online optimization*, JMLR, 2010.
    """
    check_number("learning_rate", learning_rate, ge=0, scalar=True)
    check_choice("center", center, ("init", "zero"))
    lr = as_schedule(learning_rate)

    def init_fn(params: optax.Params) -> DualAveragingState:
        if center == "init":
            dual = jax.tree.map(lambda p: copy_as(p, accumulator_dtype), params)
        else:
            dual = jax.tree.map(lambda p: jnp.zeros_like(p, dtype=accumulator_dtype), params)
        return DualAveragingState(count=jnp.zeros([], jnp.int32), dual=dual)

    def update_fn(
        updates: optax.Updates,
        state: DualAveragingState,
        params: optax.Params | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, DualAveragingState]:
        del extra_args
        require_params(params, "dual_averaging")
        state = _dual_step(lr, state, updates)
        return jax.tree.map(_move_to, state.dual, params), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _dual_step(
    lr: optax.Schedule, state: DualAveragingState, grads: optax.Updates
) -> DualAveragingState:
    r"""Dual averaging's state after one gradient: :math:`z \leftarrow z - \eta_t g`."""
    eta = lr(state.count)

    def leaf(z: jax.Array, g: jax.Array) -> jax.Array:
        # float32 for bf16/f32 accumulators, float64 for float64 ones; the same
        # arithmetic for numbers and the arrays of inject_hyperparams
        return (z - jnp.asarray(eta, compute_dtype(z.dtype)) * g).astype(z.dtype)

    return DualAveragingState(optax.safe_increment(state.count), jax.tree.map(leaf, state.dual, grads))


def _move_to(target: jax.Array, p: jax.Array) -> jax.Array:
    """The update that moves ``p`` to ``target``: ``target - p`` in ``p``'s dtype."""
    # times an opaque 1 (exact): a loop of plain subtractions runs slower on XLA:CPU
    d = target - p
    return (d * opaque_one(d.dtype)).astype(p.dtype)


def _power_increment(n: jax.Array, mu: jax.Array) -> jax.Array:
    """``n**mu - (n-1)**mu`` for ``n >= 1``, without cancellation for large ``n``."""
    return n**mu * -jnp.expm1(mu * jnp.log1p(-1.0 / n))


def grda(
    learning_rate: optax.ScalarOrSchedule,
    c: optax.ScalarOrSchedule = 0.005,
    mu: optax.ScalarOrSchedule = 0.51,
    mask: Mask = None,
    accumulator_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Generalized regularized dual averaging (gRDA), which performs directional pruning.

    With constant learning rate :math:`\gamma`,

    .. math::

      w_n = S_{g(n,\gamma)}\Big(w_0 - \gamma \sum_{k=0}^{n-1} \nabla f(w_k; Z_{k+1})\Big),
      \qquad g(n,\gamma) = c\,\gamma^{1/2}(n\gamma)^{\mu}.

    For a learning-rate schedule :math:`\eta_n` it follows the reference
    implementation step by step (:math:`n = 1, 2, \dots`):

    .. math::

      a_n = a_{n-1} - \eta_n g_n \;(a_0 = w_0), \qquad
      \tau_n = \tau_{n-1} + c\,\eta_n^{\mu + 1/2}\big(n^\mu - (n-1)^\mu\big), \qquad
      w_n = S_{\tau_n}(a_n),

    which reduces to the closed form above when :math:`\eta_n = \gamma`.
    *Indexing.* The library follows the reference code (``grda_pytorch.py``:
    ``iter_num`` counts the gradients, then ``l1_accumulation`` becomes
    :math:`c\,\eta^{\mu+1/2}n^\mu`), which thresholds with :math:`g(n,\gamma)`
    after :math:`n` gradients. The paper writes
    :math:`w_{n+1} = S_{g(n,\gamma)}(w_0 - \gamma\sum_{k=0}^{n}\nabla f(w_k; Z_{k+1}))`,
    i.e. :math:`g(n,\gamma)` after :math:`n+1` gradients: the same rule shifted by one
    step (a slightly smaller threshold at each step in the paper's form). The
    params are set to :math:`S_{\tau_n}(a_n)` computed from :math:`a_n` itself,
    as in the paper and the reference code. The state is that of
    ``optax.chain(dual_averaging(lr, 'init'), apply_soft_threshold(increment,
    mask, cumulative=True))`` (a ``(DualAveragingState, SoftThresholdState)``
    tuple); read the threshold with ``optax.tree_utils.tree_get(state, 'threshold')``.

    Args:
      learning_rate: :math:`\eta \ge 0`, a scalar or a schedule.
      c: :math:`c \ge 0`, the strength of the sparsity-inducing threshold
        (the paper uses :math:`10^{-4}` to :math:`5\cdot 10^{-3}` on ImageNet/CIFAR).
      mu: :math:`\mu > 0`, the growth exponent of the threshold; the theory
        (directional pruning) needs :math:`0.5 < \mu < 1` (a warning is issued
        otherwise); the paper uses 0.51 to 0.7.
      mask: which leaves are thresholded (default: all, as in the reference
        implementation). Unselected leaves follow plain dual averaging from
        their initial value, which is SGD.
      accumulator_dtype: dtype of the accumulator :math:`a` (default: the
        params' dtypes, as Optax's accumulators). With bf16 params pass
        ``jnp.float32``: in bf16 a step smaller than half a unit in the last
        place of :math:`a` is lost (learning rate 1e-3 and unit gradients
        leave weights near 1 unmoved, as plain SGD on bf16 params would).

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`; ``update`` requires ``params``.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> import sparsejax as sj
      >>> params = {'w': jnp.array([1.0, 0.001])}
      >>> tx = sj.grda(learning_rate=0.1, c=0.1, mu=0.51)
      >>> state = tx.init(params)
      >>> updates, state = tx.update({'w': jnp.array([0.0, 0.0])}, state, params)
      >>> optax.apply_updates(params, updates)['w'].round(4)  # threshold 0.1 * 0.1**1.01
      Array([0.9902, 0.    ], dtype=float32)

    References:
      Chao, Wang, Xing and Cheng, *Directional Pruning of Deep Neural Networks*,
      NeurIPS 2020.
    """
    check_number("learning_rate", learning_rate, ge=0, scalar=True)
    check_number("c", c, ge=0, scalar=True)
    check_number("mu", mu, gt=0, scalar=True)
    warn_outside(
        "mu", mu, 0.5, 1.0, "gRDA performs directional pruning only for 0.5 < mu < 1"
    )
    lr, c_, mu_ = as_schedule(learning_rate), as_schedule(c), as_schedule(mu)

    def threshold_increment(count: jax.Array, dtype: Any) -> jax.Array:
        n = (count + 1).astype(dtype)
        m = jnp.asarray(mu_(count), dtype)
        eta = jnp.asarray(lr(count), dtype)
        return jnp.asarray(c_(count), dtype) * eta ** (m + 0.5) * _power_increment(n, m)

    # The state is that of optax.chain(dual_averaging(lr, 'init'),
    # apply_soft_threshold(increment, mask, cumulative=True)), but the params are set
    # to the soft threshold of the dual point itself, w_n = S(a_n), as in the paper
    # and the reference code, not of p + (a_n - p) as the chain would compute it.
    averaging = dual_averaging(learning_rate, center="init", accumulator_dtype=accumulator_dtype)
    thresholding = _soft_threshold_transform(threshold_increment, True, mask, cumulative=True)

    def init_fn(params: optax.Params) -> tuple[DualAveragingState, SoftThresholdState]:
        return averaging.init(params), thresholding.init(params)

    def update_fn(
        updates: optax.Updates,
        state: tuple[DualAveragingState, SoftThresholdState],
        params: optax.Params | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, tuple[DualAveragingState, SoftThresholdState]]:
        del extra_args
        require_params(params, "grda")
        dual_state, threshold_state = state
        dual_state = _dual_step(lr, dual_state, updates)
        threshold_state = _next_threshold(threshold_increment, True, threshold_state, params)
        tau = threshold_state.threshold
        selected = resolve_mask(mask, params, nonempty=True)

        def leaf_update(a: jax.Array, p: jax.Array, sel: bool) -> jax.Array:
            if not sel:
                return _move_to(a, p)
            w = prox.soft_threshold(a, jnp.asarray(tau, compute_dtype(a.dtype)))
            return (w - p).astype(p.dtype)

        new_updates = jax.tree.map(leaf_update, dual_state.dual, params, selected)
        return new_updates, (dual_state, threshold_state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


class RDAState(NamedTuple):
    """State of :func:`rda`.

    Attributes:
      count: number of updates so far (int32).
      grad_sum: :math:`\\sum_{\\tau \\le t} g_\\tau`.
      center: :math:`w_0` per leaf: a copy of the initial params, except a
        scalar 0 for the :math:`\\ell_1` leaves when the centre is zero (leaves
        outside ``mask`` are always centred at their initial value).
    """

    count: jax.Array
    grad_sum: optax.Updates
    center: optax.Params | None


def rda(
    gamma: optax.ScalarOrSchedule,
    l1: optax.ScalarOrSchedule,
    center: Center = "zero",
    mask: Mask = None,
    accumulator_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r""":math:`\ell_1`-regularized dual averaging (RDA) with :math:`\beta_t = \gamma\sqrt t`.

    With :math:`h(w) = \tfrac12\|w - w_0\|^2`, the RDA step
    :math:`w_{t+1} = \operatorname{argmin}_w \langle \bar g_t, w\rangle + \lambda\|w\|_1
    + \tfrac{\beta_t}{2t}\|w - w_0\|^2` has the closed form (iRDA paper eq. 20)

    .. math::

      w_{t+1} = S_{\lambda\sqrt t/\gamma}\Big(w_0 - \frac{1}{\gamma\sqrt t}\sum_{\tau \le t} g_\tau\Big),
      \qquad t = 1, 2, \dots

    A schedule for ``gamma`` (or a value changed through
    :func:`optax.inject_hyperparams`) gives :math:`\gamma_t`, read at the
    update's ``count`` :math:`t - 1`, in place of :math:`\gamma` in this
    formula: it rescales the whole accumulated sum :math:`\sum_{\tau \le t} g_\tau`
    (and the threshold) at every step, not only the newest gradient as a
    learning rate in SGD does. With ``center='zero'`` and a constant
    :math:`\lambda`, halving :math:`\gamma` at some step doubles every
    weight in ``mask`` at once (:math:`S_{2\tau}(2x) = 2S_\tau(x)`).

    Args:
      gamma: :math:`\gamma > 0`, a number or a schedule (the paper: 1.0 on CIFAR-10,
        0.1 on MNIST and ImageNet; see above for what a schedule does).
      l1: :math:`\lambda \ge 0` (the paper: :math:`10^{-6}` on CIFAR-10, :math:`10^{-8}`
        on CIFAR-100 and ImageNet).
      center: ``'zero'`` (:math:`w_0 = 0`, Xiao's RDA and iRDA: the params given to
        ``init`` are only the first iterate :math:`w_1`, where the first gradient is
        taken) or ``'init'`` (:math:`w_0` = the params given to ``init``).
      mask: which leaves get the :math:`\ell_1` term (default: all). The others
        follow simple dual averaging around *their initial value*
        :math:`w_1` whatever ``center`` is, :math:`w_1 - \sum g/(\gamma\sqrt t)`:
        the zero centre belongs to the :math:`\ell_1` problem, and pulling a
        BatchNorm scale or a bias towards 0 is not what an unregularised leaf
        needs.
      accumulator_dtype: dtype of the gradient sum (default: the params' dtypes,
        as Optax's accumulators). With bf16 params pass ``jnp.float32``: a
        gradient smaller than half a unit in the last place of the sum is
        lost in bf16.

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`; ``update`` requires ``params``.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> import sparsejax as sj
      >>> params = {'w': jnp.array([0.3, -0.2])}
      >>> tx = sj.rda(gamma=1.0, l1=0.5)
      >>> updates, _ = tx.update({'w': jnp.array([-2.0, 0.1])}, tx.init(params), params)
      >>> optax.apply_updates(params, updates)['w']  # S_0.5(0 - g)
      Array([1.5, 0. ], dtype=float32)

    References:
      Xiao, *Dual averaging methods for regularized stochastic learning and
      online optimization*, JMLR, 2010; *iRDA Method for Sparse Convolutional
      Neural Networks* (ICLR submission), eq. (19)-(20) and Algorithm 1.
    """
    check_number("gamma", gamma, gt=0, scalar=True)
    check_number("l1", l1, ge=0, scalar=True)
    check_choice("center", center, ("init", "zero"))
    gam, lam = as_schedule(gamma), as_schedule(l1)

    def init_fn(params: optax.Params) -> RDAState:
        grad_sum = jax.tree.map(lambda p: jnp.zeros_like(p, dtype=accumulator_dtype), params)
        selected = resolve_mask(mask, params, nonempty=True)

        def leaf_center(p: jax.Array, sel: bool) -> jax.Array:
            # l1 leaves with a zero centre keep a scalar 0; the rest, their initial value
            if center == "zero" and sel:
                return jnp.zeros([], p.dtype)
            return copy_as(p, None)

        w0 = jax.tree.map(leaf_center, params, selected)
        return RDAState(count=jnp.zeros([], jnp.int32), grad_sum=grad_sum, center=w0)

    def update_fn(
        updates: optax.Updates,
        state: RDAState,
        params: optax.Params | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, RDAState]:
        del extra_args
        require_params(params, "rda")
        dtype = tree_compute_dtype(params)
        sqrt_t = jnp.sqrt((state.count + 1).astype(dtype))
        gamma_t = jnp.asarray(gam(state.count), dtype)
        inv_beta = 1 / (gamma_t * sqrt_t)
        tau = jnp.asarray(lam(state.count), dtype) * sqrt_t / gamma_t
        # g times an opaque 1 (exact): a loop of plain additions runs slower on XLA:CPU
        grad_sum = jax.tree.map(lambda s, g: (s + g * opaque_one(g.dtype)).astype(s.dtype),
                                state.grad_sum, updates)
        selected = resolve_mask(mask, params, nonempty=True)

        def leaf_update(s: jax.Array, c: jax.Array, p: jax.Array, sel: bool) -> jax.Array:
            dt = compute_dtype(p.dtype)
            point = c - jnp.asarray(inv_beta, dt) * s
            new = prox.soft_threshold(point, jnp.asarray(tau, dt)) if sel else point
            return (new - p).astype(p.dtype)

        new_updates = jax.tree.map(leaf_update, grad_sum, state.center, params, selected)
        return new_updates, RDAState(optax.safe_increment(state.count), grad_sum, state.center)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def irda(
    gamma: optax.ScalarOrSchedule,
    l1: optax.ScalarOrSchedule,
    retrain_step: int,
    center: Center = "zero",
    mask: Mask = None,
    accumulator_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Iterative RDA (Algorithm 1): :func:`rda`, then "iterative retraining" from ``retrain_step``.

    Step 1 (:math:`t < T`) is :func:`rda`. Step 2 (:math:`t \ge T`) zeroes the
    gradient of every weight that is exactly zero before the RDA update and keeps
    such weights at exactly zero, so the weights pruned so far stay pruned while
    the others go on training:

    .. math::

      (g_t)_j \leftarrow 0 \text{ if } (w_t)_j = 0, \qquad
      w_{t+1} = S_{\lambda\sqrt t/\gamma}\Big(w_0 - \frac{1}{\gamma\sqrt t}\sum_{\tau \le t} g_\tau\Big),
      \qquad (w_{t+1})_j = 0 \text{ if } (w_t)_j = 0.

    With ``center='zero'`` (Algorithm 1: :math:`w_0 = 0`, the initial params are
    only the first iterate :math:`w_1`) the last rule follows from the first: a
    frozen weight's gradient sum stays put while the threshold grows. With
    ``center='init'`` (this library's variant) the point
    :math:`w_0 - \sum g/(\gamma\sqrt t)` of a frozen weight drifts back towards
    :math:`w_0` as :math:`t` grows, and the last rule is what keeps it pruned.

    *Implementation.* Built as ``optax.chain(rda(...), freeze_zeros(T, mask))``:
    :func:`freeze_zeros` after the RDA step zeroes the *update* of every weight
    that is zero, which is the last rule. The first rule is not applied to the
    stored gradient sum: RDA is separable per entry and a weight that is zero at
    some :math:`t \ge T` is zero at every later step, so the sum of a frozen
    entry is never read again, and the params are exactly Algorithm 1's. Skipping
    it saves one read of the params per step (the step streams the six arrays of
    SGD-momentum instead of seven); the only visible difference is
    ``grad_sum`` at frozen entries, which goes on accumulating their gradients.

    Leaves outside ``mask`` (biases, BatchNorm scales) are neither thresholded nor
    frozen; they follow simple dual averaging around their initial value (see
    :func:`rda`), so with a zero centre a BatchNorm scale starts from 1, not 0.
    Initialise the model's kernels with :func:`sparsejax.init.irda_uniform`, the
    paper's re-scaled initialisation. Use float32 params: in bfloat16,
    ``optax.apply_updates`` can round a small surviving weight to exactly 0
    (a new value below about 1/256 of the old magnitude), which the
    retraining step then freezes (see ``FIDELITY.md``).

    Args:
      gamma: :math:`\gamma > 0`, a number or a schedule, passed to :func:`rda`: a
        schedule rescales the whole accumulated gradient sum at every step, not
        only the newest gradient (see :func:`rda`).
      l1: :math:`\lambda \ge 0`.
      retrain_step: :math:`T \ge 0`, the step (counted from 0) where retraining starts.
      center: ``'zero'`` (the paper, default) or ``'init'`` (:math:`w_0` = the
        params given to ``init``; this library's variant).
      mask: which leaves get the :math:`\ell_1` term and are frozen (default: all).
      accumulator_dtype: dtype of the gradient sum (default: the params'
        dtypes; ``jnp.float32`` for bf16 params, see :func:`rda`).

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`; ``update`` requires ``params``.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> import sparsejax as sj
      >>> params = {'kernel': jnp.array([[0.5, -0.5]]), 'bias': jnp.ones(2)}
      >>> tx = sj.irda(gamma=1.0, l1=0.2, retrain_step=1, mask=sj.tree.weights_only)
      >>> state = tx.init(params)
      >>> for g in (0.1, -0.5, -0.5):  # without step 2 the second weight would be 0.17
      ...   grads = {'kernel': jnp.array([[1.0, g]]), 'bias': jnp.zeros(2)}
      ...   updates, state = tx.update(grads, state, params)
      ...   params = optax.apply_updates(params, updates)
      >>> params['kernel']  # the second weight, zero after step 1, stays zero
      Array([[-1.3856406,  0.       ]], dtype=float32)
      >>> params['bias']  # not l1-regularised: dual averaging around its initial value
      Array([1., 1.], dtype=float32)

    References:
      *iRDA Method for Sparse Convolutional Neural Networks* (ICLR submission),
      Algorithm 1 and Section 3.6.
    """
    check_number("retrain_step", retrain_step, ge=0, integer=True)
    chained = optax.chain(
        rda(gamma, l1, center=center, mask=mask, accumulator_dtype=accumulator_dtype),
        freeze_zeros(retrain_step, mask),
    )

    def init_fn(params: optax.Params) -> Any:
        selected = jax.tree.leaves(resolve_mask(mask, params, nonempty=True))
        narrow = sorted({str(jnp.result_type(x)) for x, s in zip(jax.tree.leaves(params), selected)
                         if s and jnp.issubdtype(jnp.result_type(x), jnp.floating)
                         and jnp.finfo(jnp.result_type(x)).bits < 32})
        if narrow:
            warnings.warn(
                f"irda with {'/'.join(narrow)} params: optax.apply_updates can round a small "
                "surviving weight to exactly 0, which the retraining step then freezes; use "
                "float32 params", stacklevel=2)
        return chained.init(params)

    return optax.GradientTransformationExtraArgs(init_fn, chained.update)
