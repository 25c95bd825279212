r"""Threshold schedules of soft-threshold pruning, as :class:`optax.Schedule`\ s.

Each function returns a schedule ``k -> d_k``: the threshold through which the
model sees its latent weights after ``k`` updates, :math:`w_k = S_{d_k}(\theta_k)`
(``k`` counts every update, the ones before ``start_step`` included). They are
the closed forms of the reference implementation of Chen et al. (ICLR 2023) and
of STDS. The factories :func:`sparsejax.optim.slats`,
:func:`sparsejax.optim.lats_epochwise`, :func:`sparsejax.optim.pgh` and
:func:`sparsejax.optim.stds` train with them; to use one with another inner
optimizer, pass ``lambda t: schedule(t + 1)`` (the threshold update ``t``
applies) to :func:`sparsejax.optim.soft_threshold_reparam`.

All of them are 0 up to ``start_step`` and reach the final threshold :math:`D`
exactly after ``total_steps`` updates, where they stay. With
:math:`x = (k - k_0)/(T - k_0)` the progress through the pruning phase
(``start_step`` :math:`k_0`, ``total_steps`` :math:`T`):

* :func:`slats_threshold`: :math:`D(x + \sin(\pi x)/\pi)`, the integral of a
  cosine learning rate: LATS (a constant :math:`\lambda`) in closed form;
* :func:`lats_epochwise_threshold`: the same for a cosine learning rate held
  constant within each epoch (the reference code's ``--low-freq`` LATS);
* :func:`pgh_threshold`: :math:`\lambda` growing as :math:`\beta^{x}` under a
  cosine learning rate (proximal gradient homotopy);
* :func:`stds_threshold`: STDS, :math:`D(1 + \sin(\pi(x - \tfrac12)))/2`, or
  the line :math:`D x`.

Hyperparameters are evaluated as float32 arrays, so numbers and the traced
arrays of :func:`optax.inject_hyperparams` give the same values.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax

from sparsejax._validation import check_choice, check_number, concrete_value

__all__ = [
    "lats_epochwise_threshold",
    "pgh_threshold",
    "slats_threshold",
    "stds_threshold",
]

StdsShape = Literal["sine", "linear"]


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
    check_number("final_threshold", final_threshold, ge=0)
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
    check_number("final_threshold", final_threshold, ge=0)
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
    r"""PGH: an :math:`\ell_1` coefficient growing as :math:`\beta^x` under a cosine learning rate.

    Proximal gradient homotopy changes :math:`\lambda` geometrically; with the
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
    check_number("final_threshold", final_threshold, ge=0)
    check_number("beta", beta, gt=0)
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
    check_number("final_threshold", final_threshold, ge=0)
    check_choice("shape", shape, ("sine", "linear"))
    _check_span(total_steps, start_step)

    def schedule(count: Any) -> jax.Array:
        x = _progress(count, total_steps, start_step)
        d = jnp.asarray(final_threshold, jnp.float32)
        if shape == "linear":
            return d * x
        return d * (1.0 + jnp.sin(jnp.pi * (x - 0.5))) / 2.0

    return schedule
