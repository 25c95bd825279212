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
    losses, steps_per_epoch, base, decay_epochs, decay_factor, warmup, short, long, dec, inc
):
    """The rule as the paper states it, with epoch-mean losses, in float64."""
    multiplier, rates, means, current = 1.0, [], [], []
    for t, loss in enumerate(losses):
        rates.append((base(t) if callable(base) else base) * multiplier)
        current.append(loss)
        if len(current) == steps_per_epoch:
            means.append(float(np.mean(current)))
            current = []
            epochs = len(means)  # completed epochs = index of the next epoch
            if epochs in decay_epochs:
                multiplier *= decay_factor
            if epochs >= warmup:
                worse = np.mean(means[-short:]) > np.mean(means[-long:])
                multiplier *= dec if worse else inc
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


@pytest.mark.parametrize(
    "seed,kwargs",
    [
        (0, dict(steps_per_epoch=3, decay_epochs=(12, 30))),
        (1, dict(steps_per_epoch=1, decay_epochs=(5,), warmup_epochs=3, short_window=2, long_window=4)),
        (2, dict(steps_per_epoch=4, decay_epochs=(), warmup_epochs=12, decrease_factor=0.5, increase_factor=1.2)),
    ],
)
def test_matches_the_python_reference(seed, kwargs):
    epochs = 40
    losses = _losses(seed, epochs, kwargs["steps_per_epoch"])
    full = dict(decay_epochs=(61, 121), decay_factor=0.1, warmup_epochs=10, short_window=5,
                long_window=10, decrease_factor=0.7, increase_factor=1.06)
    full.update(kwargs)
    base = optax.exponential_decay(0.5, 50, 0.9)
    tx = loss_adaptive_learning_rate(optax.sgd, base, **full)
    rates, state = _used_rates(tx, losses)
    expected = reference_learning_rates(
        [float(x) for x in losses], full["steps_per_epoch"], lambda t: float(base(t)),
        full["decay_epochs"], full["decay_factor"], full["warmup_epochs"], full["short_window"],
        full["long_window"], full["decrease_factor"], full["increase_factor"],
    )
    np.testing.assert_allclose(rates, expected, rtol=2e-5)
    assert int(state.epoch) == epochs and int(state.count) == len(losses)
    # both branches of the loss test happened (the check is not vacuous)
    ratios = expected[1:] / expected[:-1] / np.asarray([float(base(t + 1)) / float(base(t)) for t in range(len(expected) - 1)])
    assert np.any(np.isclose(ratios, full["decrease_factor"], rtol=1e-6))
    assert np.any(np.isclose(ratios, full["increase_factor"], rtol=1e-6))


def test_epoch_means_not_the_last_batch():
    # the last batch of every epoch is low but the epoch means rise: the rate must go down
    losses = np.concatenate([np.tile([1.0, 1.0, 0.1], 4), np.tile([3.0, 3.0, 0.1], 4)]).astype(np.float32)
    tx = loss_adaptive_learning_rate(optax.sgd, 1.0, steps_per_epoch=3, decay_epochs=(),
                                     warmup_epochs=6, short_window=2, long_window=6)
    rates, _ = _used_rates(tx, losses)
    # after epoch 6 (steps 18..) the means are (.7, .7, .7, .7, 2.03, 2.03): the short-window
    # mean 2.03 > the long-window mean 1.14 -> x0.7,
    # although the last-batch losses (all 0.1) are flat
    np.testing.assert_allclose(rates[18:21], 0.7, rtol=1e-6)
    np.testing.assert_allclose(rates[:18], 1.0, rtol=1e-6)


def test_works_with_sfw_and_exposes_the_learning_rate():
    cons = {"a": C.k_sparse_polytope(k=2, radius=0.5), "b": C.l2_ball(1.0)}
    rng = np.random.default_rng(0)
    params = C.make_feasible({"a": jnp.asarray(rng.normal(size=(3, 3)), jnp.float32),
                              "b": jnp.asarray(rng.normal(size=4), jnp.float32)}, cons)
    grads = [jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), params) for _ in range(12)]
    losses = np.asarray([3, 2, 2, 1, 1, 2, 4, 4, 5, 5, 1, 1], np.float32)
    kwargs = dict(steps_per_epoch=2, decay_epochs=(5,), warmup_epochs=2, short_window=1, long_window=2)
    tx = loss_adaptive_learning_rate(sfw, 0.4, constraints=cons, momentum=0.5, rescale=None, **kwargs)
    expected = reference_learning_rates([float(x) for x in losses], 2, 0.4, (5,), 0.1, 2, 1, 2, 0.7, 1.06)
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
        (dict(steps_per_epoch=2, warmup_epochs=0), "warmup_epochs"),
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
