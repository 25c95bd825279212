"""The loss-driven learning-rate scheme against a plain-Python reference of the rule."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sparsejax import constraints as C
from sparsejax.optim.frank_wolfe import sfw
from sparsejax.optim.loss_adaptive import loss_adaptive_learning_rate


def reference_learning_rates(
    losses, steps_per_epoch, base, decay_epochs=(60, 120), decay_factor=0.1, warmup=20, every=5,
    short=5, long=10, lag=1, dec=0.7, inc=1.06, epoch_loss="last",
):
    """A transcription of the reference's ``dynamic_change`` rule (SFW pruning, train_prune.py).

    At the start of every 0-based epoch the rate is divided at the decay epochs, then (after
    the warm-up, every ``every`` epochs) the mean of ``loss_list[e-lag-short : e-lag]`` is
    compared with that of ``loss_list[e-lag-long : e-lag]`` (reference: ``[e-6:e-1]`` and
    ``[e-11:e-1]``); ``loss_list`` holds one recorded loss per finished epoch. Float64.
    """
    lr_mult, rates, loss_list = 1.0, [], []
    epochs = len(losses) // steps_per_epoch
    for epoch in range(epochs):
        if epoch in decay_epochs:
            lr_mult = lr_mult * decay_factor
        if epoch > warmup and epoch % every == 0 and epoch - lag - long >= 0:
            avg_short = np.mean(loss_list[epoch - lag - short:epoch - lag])
            avg_long = np.mean(loss_list[epoch - lag - long:epoch - lag])
            if avg_short > avg_long:
                lr_mult = lr_mult * dec
            if avg_short < avg_long:
                lr_mult = lr_mult * inc
        batch_losses = []
        for step in range(steps_per_epoch):
            t = epoch * steps_per_epoch + step
            rates.append((base(t) if callable(base) else base) * lr_mult)
            batch_losses.append(losses[t])
        loss_list.append(batch_losses[-1] if epoch_loss == "last" else float(np.mean(batch_losses)))
    return np.asarray(rates)


def _losses(seed, epochs, steps_per_epoch):
    """A noisy decreasing training loss with a plateau and a bump, so both branches happen."""
    rng = np.random.default_rng(seed)
    t = np.arange(epochs * steps_per_epoch) / steps_per_epoch
    trend = 2.0 * np.exp(-t / 8) + 0.3 * np.exp(-((t - 25) ** 2) / 8)
    return (trend + 0.05 * rng.normal(size=t.shape)).astype(np.float32)


def _used_rates(tx, losses):
    """Learning rates used by tx (wrapping optax.sgd) at each step, read off the updates, under jit."""
    params = {"w": jnp.zeros(2)}
    grads = {"w": jnp.ones(2)}

    def body(state, loss):
        updates, state = tx.update(grads, state, params, value=loss)
        return state, -updates["w"][0]

    state, rates = jax.jit(lambda s, ls: jax.lax.scan(body, s, ls))(tx.init(params), jnp.asarray(losses))
    return np.asarray(rates), state


def _dynamic_change_literal(epoch_losses, epoch_num=180, lr=1.0):
    """The reference's loop with its constants, one recorded loss per epoch: the rate of each epoch."""
    loss_list, rates = [], []
    for epoch in range(epoch_num):
        if epoch == int(epoch_num / 3):
            lr = lr / 10
        elif epoch == int(epoch_num * 2 / 3):
            lr = lr / 10
        if epoch > 20 and epoch % 5 == 0:
            avg_loss_5epoch = np.mean(loss_list[(epoch - 6):(epoch - 1)])
            avg_loss_10epoch = np.mean(loss_list[(epoch - 11):(epoch - 1)])
            if avg_loss_5epoch > avg_loss_10epoch:
                lr = lr * 0.7
            if avg_loss_5epoch < avg_loss_10epoch:
                lr = lr * 1.06
        rates.append(lr)
        loss_list.append(epoch_losses[epoch])
    return np.asarray(rates)


@pytest.mark.parametrize("steps_per_epoch", [1, 3])
def test_defaults_are_the_reference_dynamic_change_scheme(steps_per_epoch):
    # 180 epochs, a loss that falls steadily with a bump at epochs 70-90 (both branches happen);
    # with 3 steps per epoch the last batch of each epoch is the recorded loss (the reference's)
    epochs = 180
    e = np.arange(epochs, dtype=np.float64)
    per_epoch = 2.0 * np.exp(-e / 40) + 0.5 * np.exp(-((e - 80) ** 2) / 50)
    losses = np.repeat(per_epoch, steps_per_epoch) + np.tile(
        np.linspace(0.3, 0.0, steps_per_epoch), epochs)  # the last batch carries per_epoch
    tx = loss_adaptive_learning_rate(optax.sgd, 1.0, steps_per_epoch=steps_per_epoch)
    rates, state = _used_rates(tx, losses.astype(np.float32))
    expected = np.repeat(_dynamic_change_literal(per_epoch.astype(np.float32)), steps_per_epoch)
    np.testing.assert_allclose(rates, expected, rtol=2e-5)
    assert int(state.epoch) == epochs
    per = rates[::steps_per_epoch]
    # the first change comes at epoch 25 (x1.06), the decays at 60 and 120
    assert np.all(per[:25] == 1.0) and per[25] == pytest.approx(1.06, rel=1e-6)
    assert np.all(per[26:30] == per[25])  # only every 5 epochs
    assert np.any(np.isclose(per[1:] / per[:-1], 0.7, rtol=1e-5))  # the bump lowers the rate


def test_a_steadily_falling_loss_reaches_1_50_before_the_first_decay():
    # issue 16's figure: 1.06^7 = 1.50 at epoch 59 (adaptations at 25, 30, ..., 55), then
    # /10 and x1.06 at epoch 60 (the old rule gave 19.5)
    losses = np.linspace(3.0, 0.1, 180).astype(np.float32)
    tx = loss_adaptive_learning_rate(optax.sgd, 1.0, steps_per_epoch=1)
    rates, _ = _used_rates(tx, losses)
    assert rates[59] == pytest.approx(1.06 ** 7, rel=1e-5)
    assert rates[60] == pytest.approx(1.06 ** 8 / 10, rel=1e-5)
    np.testing.assert_allclose(rates, _dynamic_change_literal(losses), rtol=2e-5)


@pytest.mark.parametrize(
    "seed,kwargs",
    [
        (0, dict(steps_per_epoch=3, decay_epochs=(12, 30), warmup_epochs=10, adapt_every=2,
                 epoch_loss="mean")),
        (1, dict(steps_per_epoch=1, decay_epochs=(5,), warmup_epochs=3, adapt_every=1,
                 short_window=2, long_window=4, lag=0)),
        (2, dict(steps_per_epoch=4, decay_epochs=(), warmup_epochs=12, adapt_every=2,
                 decrease_factor=0.5, increase_factor=1.2, lag=2, epoch_loss="mean")),
    ],
)
def test_generalised_windows_match_the_transcription(seed, kwargs):
    epochs = 40
    losses = _losses(seed, epochs, kwargs["steps_per_epoch"])
    base = optax.exponential_decay(0.5, 50, 0.9)
    tx = loss_adaptive_learning_rate(optax.sgd, base, **kwargs)
    rates, state = _used_rates(tx, losses)
    ref_names = dict(warmup_epochs="warmup", adapt_every="every", short_window="short",
                     long_window="long", decrease_factor="dec", increase_factor="inc")
    ref_kwargs = {ref_names.get(k, k): v for k, v in kwargs.items() if k != "steps_per_epoch"}
    expected = reference_learning_rates([float(x) for x in losses], kwargs["steps_per_epoch"],
                                        lambda t: float(base(t)), **ref_kwargs)
    np.testing.assert_allclose(rates, expected, rtol=2e-5)
    assert int(state.epoch) == epochs and int(state.count) == len(losses)
    base_ratio = np.asarray([float(base(t + 1)) / float(base(t)) for t in range(len(expected) - 1)])
    ratios = expected[1:] / expected[:-1] / base_ratio
    assert np.any(np.isclose(ratios, kwargs.get("decrease_factor", 0.7), rtol=1e-6))
    assert np.any(np.isclose(ratios, kwargs.get("increase_factor", 1.06), rtol=1e-6))


def test_epoch_loss_mean_or_last_batch():
    # the last batch of every epoch is low but the epoch means rise
    losses = np.concatenate([np.tile([1.0, 1.0, 0.25], 4), np.tile([3.0, 3.0, 0.25], 4)]).astype(np.float32)
    kwargs = dict(steps_per_epoch=3, decay_epochs=(), warmup_epochs=5, adapt_every=1,
                  short_window=2, long_window=6, lag=0)
    rates, _ = _used_rates(loss_adaptive_learning_rate(optax.sgd, 1.0, epoch_loss="mean", **kwargs), losses)
    # epoch 6 starts at step 18; the means (.75 x4, 2.08, 2.08): short 2.08 > long 1.19
    np.testing.assert_allclose(rates[18:21], 0.7, rtol=1e-6)
    np.testing.assert_allclose(rates[:18], 1.0, rtol=1e-6)
    # the recorded last-batch losses are all 0.25: equal means leave the rate alone
    rates, _ = _used_rates(loss_adaptive_learning_rate(optax.sgd, 1.0, **kwargs), losses)
    np.testing.assert_allclose(rates, 1.0, rtol=1e-6)


def test_works_with_sfw_and_exposes_the_learning_rate():
    cons = {"a": C.k_sparse_polytope(k=2, radius=0.5), "b": C.l2_ball(1.0)}
    rng = np.random.default_rng(0)
    params = C.make_feasible({"a": jnp.asarray(rng.normal(size=(3, 3)), jnp.float32),
                              "b": jnp.asarray(rng.normal(size=4), jnp.float32)}, cons)
    grads = [jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), params) for _ in range(12)]
    losses = np.asarray([3, 2, 2, 1, 1, 2, 4, 4, 5, 5, 1, 1], np.float32)
    kwargs = dict(steps_per_epoch=2, decay_epochs=(5,), warmup_epochs=0, adapt_every=1,
                  short_window=1, long_window=2, lag=0, epoch_loss="mean")
    tx = loss_adaptive_learning_rate(sfw, 0.4, constraints=cons, momentum=0.5, rescale=None, **kwargs)
    expected = reference_learning_rates([float(x) for x in losses], 2, 0.4, decay_epochs=(5,),
                                        warmup=0, every=1, short=1, long=2, lag=0, epoch_loss="mean")
    ref = sfw(lambda count: jnp.asarray(expected, jnp.float32)[count], cons, momentum=0.5, rescale=None)

    def run(tx, with_value):
        p, state = params, tx.init(params)
        step = jax.jit(lambda p, s, g, e: tx.update(g, s, p, **e))
        for g, loss in zip(grads, losses):
            extra = dict(value=loss) if with_value else {}
            updates, state = step(p, state, g, extra)
            p = optax.apply_updates(p, updates)
        return p, state

    got, state = run(tx, True)
    want, _ = run(ref, False)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), got, want)
    assert float(state.learning_rate) == pytest.approx(expected[-1], rel=1e-6)
    assert float(state.inner_state.hyperparams["learning_rate"]) == pytest.approx(expected[-1], rel=1e-6)
    assert bool(C.is_feasible(got, cons))
    assert len(set(np.round(expected, 6))) > 3  # the rate really changed


def test_missing_value_and_bad_arguments_raise():
    tx = loss_adaptive_learning_rate(optax.sgd, 0.1, steps_per_epoch=2)
    params = {"w": jnp.zeros(2)}
    with pytest.raises(ValueError, match="value=loss"):
        tx.update(params, tx.init(params), params)
    bad = [
        (dict(steps_per_epoch=0), "steps_per_epoch"),
        (dict(steps_per_epoch=1.5), "steps_per_epoch"),
        (dict(steps_per_epoch=2, warmup_epochs=-1), "warmup_epochs"),
        (dict(steps_per_epoch=2, adapt_every=0), "adapt_every"),
        (dict(steps_per_epoch=2, lag=-1), "lag"),
        (dict(steps_per_epoch=2, epoch_loss="median"), "epoch_loss"),
        (dict(steps_per_epoch=2, short_window=6, long_window=5), "long_window"),
        (dict(steps_per_epoch=2, decay_factor=0.0), "decay_factor"),
        (dict(steps_per_epoch=2, decrease_factor=-1.0), "decrease_factor"),
        (dict(steps_per_epoch=2, decay_epochs=(0,)), "decay_epochs"),
    ]
    for kwargs, match in bad:
        with pytest.raises(ValueError, match=match):
            loss_adaptive_learning_rate(optax.sgd, 0.1, **kwargs)
    with pytest.raises(ValueError, match="learning_rate"):
        loss_adaptive_learning_rate(optax.sgd, -0.1, steps_per_epoch=1)
