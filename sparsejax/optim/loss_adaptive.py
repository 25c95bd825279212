r"""A loss-driven learning-rate scheme (SFW pruning's): step decays plus a 5-vs-10-epoch loss test.

The wrapper holds ``optax.inject_hyperparams(optimizer_factory)`` state and
sets its ``learning_rate`` before every update from the recorded per-epoch
training losses, which it reads from the extra argument ``value=`` (the way
:func:`optax.contrib.reduce_on_plateau` does). Everything lives in the jitted
state; no Python branch looks at a traced value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sparsejax._validation import as_schedule, check_choice, check_number
from sparsejax.optim._common import copy_as

__all__ = ["LossAdaptiveState", "loss_adaptive_learning_rate"]

EpochLoss = Literal["last", "mean"]


class LossAdaptiveState(NamedTuple):
    """State of :func:`loss_adaptive_learning_rate`.

    Attributes:
      count: number of updates so far (int32).
      epoch: number of completed epochs (int32), i.e. the 0-based index of
        the epoch in progress.
      multiplier: the factor applied to the base learning rate in the current
        epoch (float32; starts at 1).
      learning_rate: the learning rate used by the last update (float32).
      loss_sum: sum of the losses seen so far in the current epoch (float32).
      epoch_losses: the last ``long_window + lag`` recorded epoch losses,
        newest last (float32; unused slots are 0).
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
    decay_epochs: Sequence[int] = (60, 120),
    decay_factor: float = 0.1,
    warmup_epochs: int = 20,
    adapt_every: int = 5,
    short_window: int = 5,
    long_window: int = 10,
    lag: int = 1,
    decrease_factor: float = 0.7,
    increase_factor: float = 1.06,
    epoch_loss: EpochLoss = "last",
    **optimizer_kwargs: Any,
) -> optax.GradientTransformationExtraArgs:
    r"""Wraps an optimizer so its learning rate follows SFW pruning's loss-driven scheme.

    Epochs are ``steps_per_epoch`` updates and are numbered from 0. Let
    :math:`L_j` be the loss recorded for epoch :math:`j` (``epoch_loss``:
    the loss of its last update, as the reference code records it, or the
    mean over the epoch). The learning rate of every step is
    :math:`\alpha_t = \alpha^{\rm base}_t \cdot \mu`; at the start of epoch
    :math:`e \ge 1` the multiplier :math:`\mu` (initially 1) becomes

    .. math::

      \mu \leftarrow \mu \cdot \gamma^{[e \in \mathcal D]} \cdot
      \begin{cases}
        0.7 & A_e \wedge S_e > \Lambda_e\\
        1.06 & A_e \wedge S_e < \Lambda_e\\
        1 & \text{otherwise,}
      \end{cases}
      \qquad
      S_e = \operatorname{mean}_{j=e-\ell-s}^{e-\ell-1} L_j,\quad
      \Lambda_e = \operatorname{mean}_{j=e-\ell-w}^{e-\ell-1} L_j,

    with :math:`A_e = (e > E_{\rm warm}) \wedge (e \bmod P = 0) \wedge
    (e \ge w + \ell)`. With the defaults (:math:`\mathcal D = \{60, 120\}`,
    :math:`E_{\rm warm} = 20`, :math:`P = 5`, :math:`s = 5`, :math:`w = 10`,
    lag :math:`\ell = 1`) this is the ``dynamic_change`` scheme of the SFW
    pruning code: the rate is divided by 10 at the start of epochs 60 and 120
    (``int(E/3)``, ``int(2E/3)`` of its 180 epochs) and, at the start of every
    5th epoch after epoch 20, multiplied by 0.7 or 1.06 after comparing the
    mean recorded loss of epochs :math:`e-6..e-2` with that of
    :math:`e-11..e-2` (the epoch just finished is not used).

    Once the loss plateaus, the test compares noise (with ``epoch_loss='last'``
    each :math:`L_j` is a single minibatch's loss), and a coin flip between
    0.7 and 1.06 shrinks the rate on average: :math:`\tfrac12(\ln 0.7 +
    \ln 1.06) \approx -0.15` per test, a factor of about 0.86 every
    ``adapt_every`` epochs. In the Fashion-MNIST study of ``FIDELITY.md`` the
    rate ended at 2.9e-5 (two ÷10 decays included). ``epoch_loss='mean'``
    makes the test less noisy; the reference behaviour is the default.

    Args:
      optimizer_factory: a factory taking ``learning_rate`` (e.g.
        :func:`sparsejax.optim.frank_wolfe.sfw` or :func:`optax.sgd`).
      learning_rate: the base rate :math:`\alpha^{\rm base}_t`, a number or a
        schedule of the step count. SFW pruning uses 1.0.
      steps_per_epoch: updates per epoch, ``>= 1``.
      decay_epochs: 0-based epochs at whose start the rate is multiplied by
        ``decay_factor`` (each ``>= 1``).
      decay_factor: :math:`\gamma \in (0, 1]`.
      warmup_epochs: :math:`E_{\rm warm} \ge 0`: the loss test runs only at
        epochs :math:`e > E_{\rm warm}`.
      adapt_every: :math:`P \ge 1`: the loss test runs only at epochs that
        are multiples of it.
      short_window: :math:`s \ge 1` epochs.
      long_window: :math:`w \ge s` epochs.
      lag: :math:`\ell \ge 0`, the newest epochs left out of both windows.
      decrease_factor: applied when the short-window mean is larger, ``> 0``.
      increase_factor: applied when it is smaller, ``> 0``.
      epoch_loss: ``'last'`` (the epoch's last batch loss, what the reference
        code records although it names it the epoch mean) or ``'mean'``.
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
      ...                                  decay_epochs=(1,))
      >>> params = {'w': jnp.ones(2)}
      >>> state = tx.init(params)
      >>> for loss in [1.0, 1.0, 0.5, 0.5]:
      ...   updates, state = tx.update({'w': jnp.ones(2)}, state, params, value=loss)
      >>> float(state.learning_rate)  # epoch 1 (0-based) runs at a tenth
      0.010000000707805157

    References:
      Miao et al., *Learning Pruning-Friendly Networks via Frank-Wolfe:
      One-Shot, Any-Sparsity, and No Retraining*, ICLR 2022 (training
      details; code: VITA-Group/SFW-Once-for-All-Pruning, ``train_prune.py``,
      ``--lr_scheme dynamic_change``).
    """
    spe = _check_int("steps_per_epoch", steps_per_epoch, 1)
    warmup = _check_int("warmup_epochs", warmup_epochs, 0)
    every = _check_int("adapt_every", adapt_every, 1)
    short = _check_int("short_window", short_window, 1)
    long = _check_int("long_window", long_window, 1)
    lag_ = _check_int("lag", lag, 0)
    if long < short:
        raise ValueError(
            f"long_window must be >= short_window, got long_window={long}, short_window={short}"
        )
    decays = tuple(_check_int("decay_epochs", e, 1) for e in decay_epochs)
    check_number("learning_rate", learning_rate, ge=0, scalar=True)
    check_number("decay_factor", decay_factor, gt=0, le=1, scalar=True)
    check_number("decrease_factor", decrease_factor, gt=0, scalar=True)
    check_number("increase_factor", increase_factor, gt=0, scalar=True)
    check_choice("epoch_loss", epoch_loss, ("last", "mean"))
    if "learning_rate" in optimizer_kwargs:
        raise ValueError("pass learning_rate once, as loss_adaptive_learning_rate's argument")
    base = as_schedule(learning_rate)
    inner = optax.inject_hyperparams(
        optimizer_factory, static_args=tuple(optimizer_kwargs), hyperparam_dtype=jnp.float32
    )(learning_rate=0.0, **optimizer_kwargs)
    decay_table = jnp.asarray(decays, jnp.int32) if decays else jnp.zeros([0], jnp.int32)
    size = long + lag_  # history slots: [e-long-lag, ..., e-1], newest last

    def init_fn(params: optax.Params) -> LossAdaptiveState:
        f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
        return LossAdaptiveState(  # one buffer per field: the state can be donated
            count=jnp.zeros([], jnp.int32),
            epoch=jnp.zeros([], jnp.int32),
            multiplier=f32(1.0),
            learning_rate=copy_as(f32(base(jnp.zeros([], jnp.int32))), jnp.float32),
            loss_sum=f32(0.0),
            epoch_losses=jnp.zeros([size], jnp.float32),
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
        recorded = loss if epoch_loss == "last" else loss_sum / spe
        history = jnp.where(
            end, jnp.concatenate([state.epoch_losses[1:], recorded[None]]), state.epoch_losses
        )
        e = state.epoch + end.astype(jnp.int32)  # the 0-based index of the next epoch
        decay = jnp.where(jnp.any(decay_table == e), decay_factor, 1.0)
        used = history[: long]  # epochs e-long-lag .. e-lag-1
        s_mean = jnp.mean(used[long - short:])
        l_mean = jnp.mean(used)
        active = (e > warmup) & (e % every == 0) & (e >= size)
        adapt = jnp.where(
            active & (s_mean > l_mean),
            decrease_factor,
            jnp.where(active & (s_mean < l_mean), increase_factor, 1.0),
        )
        multiplier = jnp.where(end, state.multiplier * decay * adapt, state.multiplier)
        new_state = LossAdaptiveState(
            count=optax.safe_increment(state.count),
            epoch=e,
            multiplier=multiplier.astype(jnp.float32),
            learning_rate=lr,
            loss_sum=jnp.where(end, 0.0, loss_sum).astype(jnp.float32),
            epoch_losses=history,
            inner_state=inner_state,
        )
        return new_updates, new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
