"""The learning-rate schedules the trainer shares between methods: :func:`make_schedule`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from sparsejax._validation import check_choice, check_number

__all__ = ["SCHEDULES", "make_schedule"]

SCHEDULES = ("constant", "cosine", "cosine_epoch", "step")
"""The learning-rate schedules of :func:`make_schedule`."""


def make_schedule(
    kind: str,
    learning_rate: float,
    *,
    steps_per_epoch: int,
    epochs: int,
    warmup_steps: int = 0,
    decay_at: Sequence[float] = (0.5, 0.75),
    decay_factor: float = 0.1,
) -> optax.Schedule:
    r"""The learning-rate schedule shared by every method.

    With :math:`\eta_0` = ``learning_rate``, :math:`T` the total steps, :math:`W`
    the warm-up steps (a linear ramp from 0 to :math:`\eta_0`, then the decay
    over the remaining :math:`T - W` steps):

    * ``constant``: :math:`\eta_0`;
    * ``cosine``: :math:`\tfrac{\eta_0}{2}(1 + \cos(\pi k/(T - W)))`, per step;
    * ``cosine_epoch``: the same, changing once per epoch,
      :math:`\eta_e = \tfrac{\eta_0}{2}(1 + \cos(\pi e/E))` (the schedule
      :func:`sparsejax.optim.lats_epochwise`'s theory assumes);
    * ``step``: :math:`\eta_0` multiplied by ``decay_factor`` at each fraction
      of training in ``decay_at`` (at step :math:`\operatorname{round}(fT)`;
      decays on the same step multiply, decays inside the warm-up apply when it
      ends, and one that rounds to :math:`T` falls after the last step).

    Args:
      kind: one of :data:`SCHEDULES`.
      learning_rate: :math:`\eta_0 \ge 0`.
      steps_per_epoch: steps per epoch (>= 1).
      epochs: epochs (>= 1).
      warmup_steps: :math:`W \ge 0` (must be < T).
      decay_at: ``step``: fractions of training in (0, 1).
      decay_factor: ``step``: the factor, in (0, 1].

    Returns:
      An :class:`optax.Schedule`.

    Example:
      >>> from sparsejax.train.schedules import make_schedule
      >>> s = make_schedule('step', 0.1, steps_per_epoch=10, epochs=2, decay_at=(0.5,))
      >>> [round(float(s(k)), 3) for k in (0, 9, 10, 19)]
      [0.1, 0.1, 0.01, 0.01]
    """
    check_choice("schedule", kind, SCHEDULES)
    check_number("learning_rate", learning_rate, ge=0)
    check_number("steps_per_epoch", steps_per_epoch, ge=1, integer=True)
    check_number("epochs", epochs, ge=1, integer=True)
    total = int(steps_per_epoch) * int(epochs)
    check_number("warmup_steps", warmup_steps, ge=0, integer=True)
    if warmup_steps >= total:
        raise ValueError(
            f"warmup_steps must be < the total number of steps ({total}), got {warmup_steps}"
        )
    check_number("decay_factor", decay_factor, gt=0, le=1)
    for f in decay_at:
        check_number("decay_at", f, gt=0, lt=1)
    lr = float(learning_rate)
    rest = total - int(warmup_steps)
    if kind == "constant":
        main = optax.constant_schedule(lr)
    elif kind == "cosine":
        main = optax.cosine_decay_schedule(lr, rest)
    elif kind == "cosine_epoch":
        def main(count: Any) -> jax.Array:
            # the epoch of the whole run (the warm-up's steps included), so that the rate
            # changes at epoch boundaries with or without a warm-up
            k = jnp.asarray(count, jnp.float32) + int(warmup_steps)
            e = jnp.floor(k / steps_per_epoch)
            return jnp.float32(lr / 2) * (1.0 + jnp.cos(jnp.pi * jnp.minimum(e / epochs, 1.0)))
    else:
        # steps counted after the warm-up; decays that fall inside it apply when it ends,
        # and decays that fall on the same step multiply
        scales: dict[int, float] = {}
        for f in decay_at:
            b = max(int(round(f * total)) - int(warmup_steps), 0)
            scales[b] = scales.get(b, 1.0) * float(decay_factor)
        main = optax.piecewise_constant_schedule(lr, scales)
    if not warmup_steps:
        return main
    return optax.join_schedules(
        [optax.linear_schedule(0.0, lr, int(warmup_steps)), main], [int(warmup_steps)]
    )
