r"""Threshold rules of soft-threshold reparameterisation: how the threshold :math:`d` moves.

The transforms of :mod:`sparsejax.optim.reparam` show the model the weights
:math:`w_t = S_{d_t}(\theta_t)`; a :class:`ThresholdRule` says how :math:`d_t`
moves from one update to the next. A rule is a pair of functions, ``init``
(the threshold before any update and the rule's own state) and ``next`` (the
threshold the next update applies, from the update count, the current threshold
and the rule's state), so that :func:`sparsejax.soft_threshold_reparam` works
with any of them:

* :func:`schedule_rule`: a closed-form schedule, :math:`d_k = \text{schedule}(k)`;
* :func:`increment_rule`: a running sum, :math:`d_{t+1} = d_t + \text{increment}(t)`;
* :func:`lats_rule`: LATS, :math:`d_{t+1} = d_t + \lambda_t\eta_t` for the
  learning rate :math:`\eta_t` actually used.

The closed-form schedules ``k -> d_k`` (the threshold after ``k`` updates,
``k`` counting every update, those before ``start_step`` included) come from
the reference implementation of Chen et al. (ICLR 2023) and from STDS. All of
them are 0 up to ``start_step`` and reach the final threshold :math:`D` exactly
after ``total_steps`` updates, where they stay. With :math:`x = (k - k_0)/(T - k_0)`
the progress through the pruning phase (``start_step`` :math:`k_0`,
``total_steps`` :math:`T`):

* :func:`slats_threshold`: :math:`D(x + \sin(\pi x)/\pi)`, the integral of a
  cosine learning rate: LATS (a constant :math:`\lambda`) in closed form;
* :func:`lats_epochwise_threshold`: the same for a cosine learning rate held
  constant within each epoch (the reference code's ``--low-freq`` LATS);
* :func:`pgh_threshold`: :math:`\lambda` changing geometrically as :math:`\beta^{x}`
  (shrinking for :math:`\beta < 1`, growing for :math:`\beta > 1`) under a
  cosine learning rate (proximal gradient homotopy);
* :func:`stds_threshold`: STDS, :math:`D(1 + \sin(\pi(x - \tfrac12)))/2`, or
  the line :math:`D x`;
* :func:`fixed_threshold`: :math:`D` from ``start_step`` on.

Hyperparameters are evaluated as float32 arrays, so numbers and the traced
arrays of :func:`optax.inject_hyperparams` give the same values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Generic, Literal, NamedTuple, TypeVar

import jax
import jax.numpy as jnp
import optax

from sparsejax._validation import as_schedule, check_choice, check_number, concrete_value

__all__ = [
    "ThresholdRule",
    "fixed_threshold",
    "increment_rule",
    "lats_epochwise_threshold",
    "lats_increment",
    "lats_rule",
    "pgh_threshold",
    "schedule_rule",
    "slats_threshold",
    "stds_threshold",
]

StdsShape = Literal["sine", "linear"]

RuleState = TypeVar("RuleState")


# --- rules ----------------------------------------------------------------------------------------


class ThresholdRule(NamedTuple, Generic[RuleState]):
    r"""How the threshold of a soft-threshold reparameterisation moves.

    Attributes:
      init: ``() -> (d_0, state)``: the threshold before any update (a float32
        scalar) and the rule's own state (a pytree of arrays).
      next: ``(t, d_t, state) -> (d_{t+1}, state)``: the threshold that update
        ``t`` (counted from 0) applies, from the count, the current threshold
        and the rule's state.
    """

    init: Callable[[], tuple[jax.Array, RuleState]]
    next: Callable[[jax.Array, jax.Array, RuleState], tuple[jax.Array, RuleState]]


def schedule_rule(schedule: optax.Schedule) -> ThresholdRule[optax.EmptyState]:
    r"""The threshold of a closed-form schedule: :math:`d_k = \text{schedule}(k)`.

    ``k`` is the number of updates done, so :math:`d_0 = \text{schedule}(0)` and
    update :math:`t` applies :math:`\text{schedule}(t + 1)`.

    Args:
      schedule: ``k -> d_k \ge 0``, e.g. :func:`slats_threshold`.

    Returns:
      A :class:`ThresholdRule` without state of its own.

    Example:
      >>> import sparsejax as sj
      >>> rule = sj.optim.schedule_rule(sj.optim.stds_threshold(2.0, total_steps=10))
      >>> d, state = rule.init()
      >>> d, rule.next(4, d, state)[0]  # the threshold after 0 and after 5 updates
      (Array(0., dtype=float32), Array(1., dtype=float32))
    """

    def init() -> tuple[jax.Array, optax.EmptyState]:
        return jnp.asarray(schedule(jnp.zeros([], jnp.int32)), jnp.float32), optax.EmptyState()

    def next_(count: jax.Array, threshold: jax.Array, state: optax.EmptyState) -> Any:
        del threshold
        return jnp.asarray(schedule(optax.safe_increment(count)), jnp.float32), state

    return ThresholdRule(init, next_)


def increment_rule(increment: optax.Schedule) -> ThresholdRule[optax.EmptyState]:
    r"""A threshold grown by an increment per update: :math:`d_{t+1} = d_t + \text{increment}(t)`.

    :math:`d_0 = 0`, so :math:`d_t = \sum_{s < t} \text{increment}(s)`.

    Args:
      increment: ``t -> increment \ge 0`` of update ``t``.

    Returns:
      A :class:`ThresholdRule` without state of its own.

    Example:
      >>> import sparsejax as sj
      >>> rule = sj.optim.increment_rule(lambda t: 0.25)
      >>> d, state = rule.init()
      >>> for t in range(3):
      ...   d, state = rule.next(t, d, state)
      >>> d
      Array(0.75, dtype=float32)
    """

    def init() -> tuple[jax.Array, optax.EmptyState]:
        return jnp.zeros([], jnp.float32), optax.EmptyState()

    def next_(count: jax.Array, threshold: jax.Array, state: optax.EmptyState) -> Any:
        return threshold + jnp.asarray(increment(count), jnp.float32), state

    return ThresholdRule(init, next_)


def lats_increment(count: Any, l1: Any, learning_rate: Any, start_step: Any) -> jax.Array:
    r"""LATS's increment of update ``count``: :math:`\lambda_t\eta_t\mathbb 1[t \ge t_0]` (float32)."""
    increment = jnp.asarray(l1, jnp.float32) * jnp.asarray(learning_rate, jnp.float32)
    return jnp.where(count >= start_step, increment, 0.0)


def lats_rule(
    learning_rate: optax.ScalarOrSchedule, l1: optax.ScalarOrSchedule, start_step: int = 0
) -> ThresholdRule[optax.EmptyState]:
    r"""LATS: the threshold grows by :math:`\ell_1` coefficient times learning rate.

    .. math::

      d_{t+1} = d_t + \lambda_t\,\eta_t\,\mathbb 1[t \ge t_0], \qquad d_0 = 0,

    for the learning rate :math:`\eta_t` of update :math:`t` (warm-up, decays
    and restarts included).

    Args:
      learning_rate: :math:`\eta`, a number or a schedule.
      l1: :math:`\lambda \ge 0`, a number or a schedule.
      start_step: :math:`t_0 \ge 0`, the first update whose increment counts.

    Returns:
      A :class:`ThresholdRule` without state of its own.

    Example:
      >>> import sparsejax as sj
      >>> rule = sj.optim.lats_rule(learning_rate=0.1, l1=0.5)
      >>> d, state = rule.init()
      >>> rule.next(0, d, state)[0]
      Array(0.05, dtype=float32)

    References:
      Chen et al., *A Unified Framework for Soft Threshold Pruning*, ICLR 2023 (LATS).
    """
    check_number("l1", l1, ge=0, scalar=True)
    check_number("learning_rate", learning_rate, ge=0, scalar=True)
    check_number("start_step", start_step, ge=0, integer=True)
    lr, lam = as_schedule(learning_rate), as_schedule(l1)
    return increment_rule(lambda t: lats_increment(t, lam(t), lr(t), start_step))


# --- closed-form schedules ------------------------------------------------------------------------


def _check_span(total_steps: Any, start_step: Any) -> None:
    check_number("total_steps", total_steps, ge=1, integer=True)
    check_number("start_step", start_step, ge=0, integer=True)
    t, s = concrete_value(total_steps), concrete_value(start_step)
    if t is not None and s is not None and t <= s:
        raise ValueError(
            f"total_steps must be > start_step (the threshold rises from start_step to "
            f"total_steps), got total_steps={total_steps}, start_step={start_step}"
        )


def _progress(count: Any, total_steps: Any, start_step: Any) -> jax.Array:
    """:math:`x = \\operatorname{clip}((k - k_0)/(T - k_0), 0, 1)` in float32."""
    k = jnp.asarray(count, jnp.float32)
    k0 = jnp.asarray(start_step, jnp.float32)
    span = jnp.asarray(total_steps, jnp.float32) - k0
    return jnp.clip((k - k0) / span, 0.0, 1.0)


def slats_threshold(
    final_threshold: Any, total_steps: Any, start_step: Any = 0
) -> optax.Schedule:
    r"""S-LATS: the threshold of LATS under a cosine learning rate, in closed form.

    .. math::

      d_k = D\Big(x + \frac{\sin(\pi x)}{\pi}\Big), \qquad
      x = \operatorname{clip}\Big(\frac{k - k_0}{T - k_0}, 0, 1\Big).

    With the cosine learning rate :math:`\eta(x) = \tfrac{\eta_0}{2}(1 + \cos\pi x)`
    over the same steps (``optax.cosine_decay_schedule(eta0, T - k0)``), the
    increments are proportional to the learning rate,
    :math:`\mathrm{d}d/\mathrm{d}k = \lambda\,\eta`, with the constant
    :math:`\ell_1` coefficient :math:`\lambda = 2D/(\eta_0 (T - k_0))`: it is the
    continuous form of LATS (:func:`sparsejax.lats`), and ends exactly at :math:`D`.

    Args:
      final_threshold: :math:`D \ge 0`, the threshold after ``total_steps`` updates.
      total_steps: :math:`T`, the update count at which the threshold reaches
        :math:`D` (the reference code: epochs times batches per epoch).
      start_step: :math:`k_0 < T`, the update count where the threshold starts
        to rise (0 before it).

    Returns:
      An :class:`optax.Schedule` ``k -> d_k`` (float32).

    Example:
      >>> import sparsejax as sj
      >>> schedule = sj.optim.slats_threshold(0.5, total_steps=100)
      >>> [round(float(schedule(k)), 4) for k in (0, 50, 100, 150)]
      [0.0, 0.4092, 0.5, 0.5]

    References:
      Chen et al., *A Unified Framework for Soft Threshold Pruning*, ICLR
      2023 (reference code: ``sinpInc``).
    """
    check_number("final_threshold", final_threshold, ge=0, scalar=True, schedule=False)
    _check_span(total_steps, start_step)

    def schedule(count: Any) -> jax.Array:
        x = _progress(count, total_steps, start_step)
        d = jnp.asarray(final_threshold, jnp.float32)
        return d * (x + jnp.sin(jnp.pi * x) / jnp.pi)

    return schedule


def lats_epochwise_threshold(
    final_threshold: Any, num_epochs: Any, steps_per_epoch: Any, start_step: Any = 0
) -> optax.Schedule:
    r"""LATS for a cosine learning rate held constant within each epoch, in closed form.

    With :math:`E` epochs of :math:`B` steps after :math:`k_0` and the
    learning rate of epoch :math:`e`, :math:`\eta_e = \tfrac{\eta_0}{2}(1 + \cos(\pi e/E))`
    (the reference code's ``cosine_lr``), LATS adds
    :math:`\lambda\eta_e` per step with :math:`\lambda = 2D/(\eta_0 B (E + 1))`.
    Summing the cosines in closed form, after :math:`k - k_0 = eB + r` steps
    (:math:`0 \le r < B`):

    .. math::

      d_k = \frac{D}{E + 1}\Big(e + \tfrac12 + \frac{\sin(\pi(e - \frac12)/E)}{2\sin(\pi/(2E))}
            + \frac{r}{B}\big(1 + \cos(\pi e/E)\big)\Big),

    which is exactly :math:`D` at :math:`k - k_0 = EB` (because
    :math:`\sum_{e=0}^{E-1}(1 + \cos(\pi e/E)) = E + 1`) and is held there.

    Args:
      final_threshold: :math:`D \ge 0`.
      num_epochs: :math:`E \ge 1`, epochs from ``start_step`` to the end.
      steps_per_epoch: :math:`B \ge 1`.
      start_step: :math:`k_0 \ge 0`, the update count where pruning starts.

    Returns:
      An :class:`optax.Schedule` ``k -> d_k`` (float32).

    Example:
      >>> import sparsejax as sj
      >>> schedule = sj.optim.lats_epochwise_threshold(1.0, num_epochs=2, steps_per_epoch=10)
      >>> [round(float(schedule(k)), 4) for k in (0, 5, 10, 15, 20)]
      [0.0, 0.3333, 0.6667, 0.8333, 1.0]

    References:
      Chen et al., *A Unified Framework for Soft Threshold Pruning*, ICLR 2023
      (reference code: ``sinpLowfBaseInc`` with ``--low-freq``).
    """
    check_number("final_threshold", final_threshold, ge=0, scalar=True, schedule=False)
    check_number("num_epochs", num_epochs, ge=1, integer=True)
    check_number("steps_per_epoch", steps_per_epoch, ge=1, integer=True)
    check_number("start_step", start_step, ge=0, integer=True)

    def schedule(count: Any) -> jax.Array:
        n_epochs = jnp.asarray(num_epochs, jnp.int32)
        per_epoch = jnp.asarray(steps_per_epoch, jnp.int32)
        k = jnp.clip(jnp.asarray(count, jnp.int32) - start_step, 0, n_epochs * per_epoch)
        e, r = k // per_epoch, k % per_epoch
        big_e, e_f = n_epochs.astype(jnp.float32), e.astype(jnp.float32)
        # sum_{j<e} (1 + cos(pi j / E)), a Dirichlet-kernel sum, plus r steps of epoch e
        half_step = 2 * jnp.sin(jnp.pi / (2 * big_e))
        base = e_f + 0.5 + jnp.sin(jnp.pi * (e_f - 0.5) / big_e) / half_step
        frac = r.astype(jnp.float32) / per_epoch.astype(jnp.float32)
        within = frac * (1 + jnp.cos(jnp.pi * e_f / big_e))
        d = jnp.asarray(final_threshold, jnp.float32)
        return jnp.where(k > 0, d * (base + within) / (big_e + 1.0), 0.0)

    return schedule


def pgh_threshold(
    final_threshold: Any, total_steps: Any, beta: Any, start_step: Any = 0
) -> optax.Schedule:
    r"""PGH: an :math:`\ell_1` coefficient scaled by :math:`\beta^x` under a cosine learning rate.

    Proximal gradient homotopy changes :math:`\lambda` geometrically (it decays
    for :math:`\beta < 1`, the homotopy direction of Xiao and Zhang, and grows
    for :math:`\beta > 1`); with the
    cosine learning rate of :func:`slats_threshold`, the threshold whose
    increments are :math:`\lambda_0\beta^{x}\eta(x)` and which ends at :math:`D` is

    .. math::

      d_k = D\,\frac{\pi^2(\beta^x - 1) + (\beta^x - 2)\ln^2\beta
            + \beta^x\ln\beta\,\big(\ln\beta\cos\pi x + \pi\sin\pi x\big)}
           {\pi^2(\beta - 1) - 2\ln^2\beta},

    with :math:`x` the progress of :func:`slats_threshold`. :math:`\beta < 1`
    front-loads the pruning (most of the threshold is reached early: early
    pruning), :math:`\beta > 1` back-loads it; :math:`\beta \to 1` is S-LATS.

    Args:
      final_threshold: :math:`D \ge 0`.
      total_steps: :math:`T`, the update count at which :math:`d = D`.
      beta: :math:`\beta > 0`, :math:`\beta \ne 1`: the factor by which
        :math:`\lambda` changes over the pruning phase (the reference code has
        no usable default; it is set per experiment).
      start_step: :math:`k_0 < T`.

    Returns:
      An :class:`optax.Schedule` ``k -> d_k`` (float32).

    Example:
      >>> import sparsejax as sj
      >>> schedule = sj.optim.pgh_threshold(1.0, total_steps=100, beta=0.1)
      >>> [round(float(schedule(k)), 4) for k in (0, 50, 100)]
      [0.0, 0.9218, 1.0]

    References:
      Chen et al., *A Unified Framework for Soft Threshold Pruning*, ICLR 2023
      (reference code: ``sinppghInc``); Xiao and Zhang, *A proximal-gradient
      homotopy method for the sparse least-squares problem*, SIAM J. Optim., 2013.
    """
    check_number("final_threshold", final_threshold, ge=0, scalar=True, schedule=False)
    check_number("beta", beta, gt=0, scalar=True, schedule=False)
    b = concrete_value(beta)
    if b is not None and math.isclose(b, 1.0, rel_tol=0, abs_tol=1e-3):
        raise ValueError(
            f"beta must differ from 1 (by more than 1e-3; beta -> 1 is S-LATS: use "
            f"slats_threshold), got {beta}"
        )
    _check_span(total_steps, start_step)

    def schedule(count: Any) -> jax.Array:
        x = _progress(count, total_steps, start_step)
        bt = jnp.asarray(beta, jnp.float32)
        lb = jnp.log(bt)
        bx = bt**x
        pi2 = jnp.pi**2
        wave = lb * jnp.cos(jnp.pi * x) + jnp.pi * jnp.sin(jnp.pi * x)
        num = pi2 * (bx - 1) + (bx - 2) * lb**2 + bx * lb * wave
        den = pi2 * (bt - 1) - 2 * lb**2
        d = jnp.asarray(final_threshold, jnp.float32)
        return jnp.where(x > 0, d * num / den, 0.0)

    return schedule


def stds_threshold(
    final_threshold: Any, total_steps: Any, start_step: Any = 0, shape: StdsShape = "sine"
) -> optax.Schedule:
    r"""STDS: a threshold rising from 0 to :math:`D` along a sine (or a line).

    .. math::

      d_k = \frac{D}{2}\Big(1 + \sin\big(\pi(x - \tfrac12)\big)\Big) \quad\text{(sine)},
      \qquad d_k = D\,x \quad\text{(linear)},

    with :math:`x` the progress of :func:`slats_threshold`. Unlike LATS, these
    ignore the learning rate, so the implied :math:`\ell_1` coefficient
    :math:`\Delta d/\eta` changes during training.

    Args:
      final_threshold: :math:`D \ge 0`.
      total_steps: :math:`T`, the update count at which :math:`d = D`.
      start_step: :math:`k_0 < T`.
      shape: ``'sine'`` (STDS) or ``'linear'``.

    Returns:
      An :class:`optax.Schedule` ``k -> d_k`` (float32).

    Example:
      >>> import sparsejax as sj
      >>> schedule = sj.optim.stds_threshold(2.0, total_steps=10)
      >>> [round(float(schedule(k)), 4) for k in (0, 5, 10)]
      [0.0, 1.0, 2.0]

    References:
      Chen et al., *State Transition of Dendritic Spines Improves Learning of
      Sparse Spiking Neural Networks*, ICML 2022; as a
      baseline in Chen et al., ICLR 2023.
    """
    check_number("final_threshold", final_threshold, ge=0, scalar=True, schedule=False)
    check_choice("shape", shape, ("sine", "linear"))
    _check_span(total_steps, start_step)

    def schedule(count: Any) -> jax.Array:
        x = _progress(count, total_steps, start_step)
        d = jnp.asarray(final_threshold, jnp.float32)
        if shape == "linear":
            return d * x
        return d * (1.0 + jnp.sin(jnp.pi * (x - 0.5))) / 2.0

    return schedule


def fixed_threshold(threshold: Any, start_step: Any = 0) -> optax.Schedule:
    r"""A constant threshold from ``start_step`` on.

    .. math::

      d_k = D\,\mathbb 1[k \ge k_0].

    With :math:`k_0 = 0` the threshold is :math:`D` from the start; with
    :math:`k_0 > 0` it jumps from 0 to :math:`D` after :math:`k_0` updates.

    Args:
      threshold: :math:`D \ge 0`.
      start_step: :math:`k_0 \ge 0`.

    Returns:
      An :class:`optax.Schedule` ``k -> d_k`` (float32).

    Example:
      >>> import sparsejax as sj
      >>> schedule = sj.optim.fixed_threshold(0.5, start_step=2)
      >>> [float(schedule(k)) for k in range(4)]
      [0.0, 0.0, 0.5, 0.5]

    References:
      Chen et al., *A Unified Framework for Soft Threshold Pruning*, ICLR 2023
      (reference code: ``--sparse-function stmod`` without ``--gradual``).
    """
    check_number("threshold", threshold, ge=0, scalar=True, schedule=False)
    check_number("start_step", start_step, ge=0, integer=True)

    def schedule(count: Any) -> jax.Array:
        return jnp.where(count >= start_step, jnp.asarray(threshold, jnp.float32), 0.0)

    return schedule
