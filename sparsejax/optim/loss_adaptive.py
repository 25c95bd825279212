r"""A loss-driven learning-rate scheme (SFW pruning's): step decays plus a 5-vs-10-epoch loss test.

The wrapper holds ``optax.inject_hyperparams(optimizer_factory)`` state and
sets its ``learning_rate`` before every update from the running epoch-mean
training losses, which it reads from the extra argument ``value=`` (the way
:func:`optax.contrib.reduce_on_plateau` does). Everything lives in the jitted
state; no Python branch looks at a traced value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sparsejax._validation import as_schedule, check_number

__all__ = ["LossAdaptiveState", "loss_adaptive_learning_rate"]


class LossAdaptiveState(NamedTuple):
    """State of :func:`loss_adaptive_learning_rate`.

    Attributes:
      count: number of updates so far (int32).
      epoch: number of completed epochs (int32).
      multiplier: the factor applied to the base learning rate in the current
        epoch (float32; starts at 1).
      learning_rate: the learning rate used by the last update (float32).
      loss_sum: sum of the losses seen so far in the current epoch (float32).
      epoch_losses: the last ``long_window`` epoch-mean losses, newest last
        (float32; unused slots are 0 before that many epochs).
      inner_state: the ``optax.inject_hyperparams`` state of the optimizer.
    """

    count: jax.Array
    epoch: jax.Array
    multiplier: jax.Array
    learning_rate: jax.Array
    loss_sum: jax.Array
    epoch_losses: jax.Array
    inner_state: Any


def _check_int(name: str, value: Any, ge: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {ge}, got {value!r}")
    check_number(name, value, ge=ge, integer=True)
    return int(value)


def loss_adaptive_learning_rate(
    optimizer_factory: Callable[..., optax.GradientTransformation],
    learning_rate: optax.ScalarOrSchedule,
    *,
    steps_per_epoch: int,
    decay_epochs: Sequence[int] = (61, 121),
    decay_factor: float = 0.1,
    warmup_epochs: int = 10,
    short_window: int = 5,
    long_window: int = 10,
    decrease_factor: float = 0.7,
    increase_factor: float = 1.06,
    **optimizer_kwargs: Any,
) -> optax.GradientTransformationExtraArgs:
    r"""Wraps an optimizer so its learning rate follows SFW pruning's loss-driven scheme.

    Let :math:`\bar L_e` be the mean of the losses passed during epoch
    :math:`e` (epochs are ``steps_per_epoch`` updates; :math:`e = 1, 2,\dots`
    counts completed epochs). The learning rate of every step is
    :math:`\alpha_t = \alpha^{\rm base}_t \cdot \mu`, and at the end of epoch
    :math:`e` the multiplier :math:`\mu` (initially 1) becomes

    .. math::

      \mu \leftarrow \mu \cdot
      \underbrace{\gamma^{[e \in \mathcal D]}}_{\text{step decay}} \cdot
      \begin{cases}
        1 & e < E_{\rm warm}\\
        0.7 & \mathrm{mean}(\bar L_{e-4..e}) > \mathrm{mean}(\bar L_{e-9..e})\\
        1.06 & \text{otherwise,}
      \end{cases}

    with the windows (5 and 10) over the last :math:`\min(e, w)` epochs.
    :math:`\mathcal D` holds 0-based epoch indices: with
    ``decay_epochs=(61, 121)`` epochs 0-60 run at the full rate, 61-120 at a
    tenth of it and so on (as PyTorch's ``MultiStepLR(milestones=[61, 121])``
    stepped once per epoch). The loss test uses epoch means, not the last
    batch's loss as the reference code did.

    Args:
      optimizer_factory: a factory taking ``learning_rate`` (e.g.
        :func:`sparsejax.optim.frank_wolfe.sfw` or :func:`optax.sgd`).
      learning_rate: the base rate :math:`\alpha^{\rm base}_t`, a number or a
        schedule of the step count. SFW pruning uses 1.0 (0.1 on small nets).
      steps_per_epoch: updates per epoch, ``>= 1``.
      decay_epochs: 0-based epochs at whose start the rate is multiplied by
        ``decay_factor`` (the paper trains 180 epochs with ``(61, 121)``).
      decay_factor: :math:`\gamma \in (0, 1]`.
      warmup_epochs: :math:`E_{\rm warm} \ge 1`, the first epoch count at
        which the loss test applies (default 10, when the long window is
        first full; see ``FIDELITY.md``).
      short_window: the short window, ``>= 1`` epochs.
      long_window: the long window, ``>= short_window`` epochs.
      decrease_factor: applied when the short-window mean is larger, ``> 0``.
      increase_factor: applied otherwise, ``> 0``.
      **optimizer_kwargs: other arguments of ``optimizer_factory`` (passed as
        static arguments of :func:`optax.inject_hyperparams`; constraint
        pytrees, masks and callables are fine).

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`. ``update`` requires
      the batch loss as the extra argument ``value=``; the other extra
      arguments are passed on to the optimizer.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> import sparsejax as sj
      >>> tx = sj.loss_adaptive_learning_rate(optax.sgd, 0.1, steps_per_epoch=2,
      ...                                  decay_epochs=(1,), warmup_epochs=5)
      >>> params = {'w': jnp.ones(2)}
      >>> state = tx.init(params)
      >>> for loss in [1.0, 1.0, 0.5, 0.5]:
      ...   updates, state = tx.update({'w': jnp.ones(2)}, state, params, value=loss)
      >>> float(state.learning_rate)  # epoch 1 (0-based) runs at a tenth
      0.010000000707805157

    References:
      Miao et al., *Learning Pruning-Friendly Networks via Frank-Wolfe:
      One-Shot, Any-Sparsity, and No Retraining*, ICLR 2022 (training
      details); Pokutta, Spiegel, Zimmer, *Deep Neural Network Training with
      Frank-Wolfe*, 2020.
    """
    spe = _check_int("steps_per_epoch", steps_per_epoch, 1)
    warmup = _check_int("warmup_epochs", warmup_epochs, 1)
    short = _check_int("short_window", short_window, 1)
    long = _check_int("long_window", long_window, 1)
    if long < short:
        raise ValueError(
            f"long_window must be >= short_window, got long_window={long}, short_window={short}"
        )
    decays = tuple(_check_int("decay_epochs", e, 1) for e in decay_epochs)
    check_number("learning_rate", learning_rate, ge=0)
    check_number("decay_factor", decay_factor, gt=0, le=1)
    check_number("decrease_factor", decrease_factor, gt=0)
    check_number("increase_factor", increase_factor, gt=0)
    if "learning_rate" in optimizer_kwargs:
        raise ValueError("pass learning_rate once, as loss_adaptive_learning_rate's argument")
    base = as_schedule(learning_rate)
    inner = optax.inject_hyperparams(
        optimizer_factory, static_args=tuple(optimizer_kwargs), hyperparam_dtype=jnp.float32
    )(learning_rate=0.0, **optimizer_kwargs)
    decay_table = jnp.asarray(decays, jnp.int32) if decays else jnp.zeros([0], jnp.int32)

    def window_mean(history: jax.Array, epochs: jax.Array, width: int) -> jax.Array:
        used = jnp.minimum(epochs, width).astype(jnp.float32)
        slot = jnp.arange(long)
        weights = (slot >= long - jnp.minimum(epochs, width)).astype(jnp.float32)
        return jnp.sum(history * weights) / jnp.maximum(used, 1.0)

    def init_fn(params: optax.Params) -> LossAdaptiveState:
        f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
        zero = jnp.zeros([], jnp.int32)
        return LossAdaptiveState(
            count=zero,
            epoch=zero,
            multiplier=f32(1.0),
            learning_rate=f32(base(zero)),
            loss_sum=f32(0.0),
            epoch_losses=jnp.zeros([long], jnp.float32),
            inner_state=inner.init(params),
        )

    def update_fn(
        updates: optax.Updates,
        state: LossAdaptiveState,
        params: optax.Params | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, LossAdaptiveState]:
        if extra_args.get("value") is None:
            raise ValueError(
                "loss_adaptive_learning_rate needs the batch loss: call "
                "tx.update(grads, state, params, value=loss)"
            )
        loss = jnp.asarray(extra_args["value"], jnp.float32).reshape(())
        lr = jnp.asarray(base(state.count), jnp.float32) * state.multiplier
        inner_state = state.inner_state._replace(
            hyperparams={**state.inner_state.hyperparams, "learning_rate": lr}
        )
        new_updates, inner_state = inner.update(updates, inner_state, params, **extra_args)

        loss_sum = state.loss_sum + loss
        end = (state.count + 1) % spe == 0
        history = jnp.where(
            end,
            jnp.concatenate([state.epoch_losses[1:], (loss_sum / spe)[None]]),
            state.epoch_losses,
        )
        epochs = state.epoch + end.astype(jnp.int32)
        decay = jnp.where(jnp.any(decay_table == epochs), decay_factor, 1.0)
        worse = window_mean(history, epochs, short) > window_mean(history, epochs, long)
        adapt = jnp.where(epochs >= warmup, jnp.where(worse, decrease_factor, increase_factor), 1.0)
        multiplier = jnp.where(end, state.multiplier * decay * adapt, state.multiplier)
        new_state = LossAdaptiveState(
            count=optax.safe_increment(state.count),
            epoch=epochs,
            multiplier=multiplier.astype(jnp.float32),
            learning_rate=lr,
            loss_sum=jnp.where(end, 0.0, loss_sum).astype(jnp.float32),
            epoch_losses=history,
            inner_state=inner_state,
        )
        return new_updates, new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
