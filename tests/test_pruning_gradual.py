"""Gradual magnitude pruning: the Zhu & Gupta schedule and support that follow it under jit."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sparsejax import pruning
import sparsejax as sj


def zhu_gupta(t, s_i, s_f, t0, end, power=3):
    """The paper's formula in float64, clamped outside [t0, end]."""
    if t < t0:
        return s_i
    if t >= end:
        return s_f
    return s_f + (s_i - s_f) * (1 - (t - t0) / (end - t0)) ** power


def test_schedule_matches_the_formula():
    schedule = pruning.polynomial_sparsity(0.8, begin_step=10, end_step=20, initial_sparsity=0.1)
    for t in [0, 9, 10, 11, 13, 15, 17, 19, 20, 21, 100]:
        assert float(schedule(t)) == pytest.approx(zhu_gupta(t, 0.1, 0.8, 10, 20), abs=1e-6)
    squared = pruning.polynomial_sparsity(0.5, 0, 4, power=2)
    assert float(squared(1)) == pytest.approx(0.5 - 0.5 * 0.75**2, abs=1e-6)
    instant = pruning.polynomial_sparsity(0.6, 5, 5, initial_sparsity=0.2)
    assert [round(float(instant(t)), 6) for t in (4, 5, 6)] == [0.2, 0.6, 0.6]
    assert jax.jit(schedule)(jnp.int32(15)).dtype == jnp.float32


def make_params() -> dict:
    rng = np.random.default_rng(0)
    return {
        "conv": {"kernel": jnp.asarray(rng.normal(size=(3, 3, 4, 8)), jnp.float32),
                 "bias": jnp.zeros(8, jnp.float32)},
        "dense": {"kernel": jnp.asarray(rng.normal(size=(40, 10)), jnp.bfloat16),
                  "bias": jnp.zeros(10, jnp.float32)},
        "head": {"kernel": jnp.asarray(rng.normal(size=(10, 3)), jnp.float32)},
        "scale": jnp.asarray(1.0, jnp.float32),
        "frozen": None,
    }


def kernel_masks(state):
    return [state.support[k]["kernel"] for k in ("conv", "dense", "head")]


@pytest.mark.parametrize(
    "scope,distribution", [("layerwise", "uniform"), ("global", "uniform"), ("layerwise", "erk")]
)
def test_support_sparsity_follows_the_schedule_in_a_jitted_loop(scope, distribution):
    s_i, s_f, t0, end, every = 0.1, 0.8, 2, 10, 3  # mask updates at 2, 5, 8 and 10
    tx = pruning.gradual_pruning(
        optax.chain(optax.add_decayed_weights(1e-3), optax.sgd(0.01, momentum=0.9)),
        final_sparsity=s_f, begin_step=t0, end_step=end, frequency=every,
        initial_sparsity=s_i, scope=scope, distribution=distribution,
        mask=sj.tree.weights_only,
    )
    params = make_params()
    shapes = [(3, 3, 4, 8), (40, 10), (10, 3)]
    n = sum(math.prod(s) for s in shapes)
    traces = []

    @jax.jit
    def step(params, state, grads):
        traces.append(None)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    state = tx.init(params)
    schedule = pruning.polynomial_sparsity(s_f, t0, end, s_i)
    targets = {t: float(schedule(t)) for t in (2, 5, 8, 10)}
    previous = [np.asarray(m) for m in kernel_masks(state)]
    last_update = None
    for t in range(12):
        grads = jax.tree.map(lambda x: jnp.full_like(x, 0.01 * (t + 1)), params)
        params, state = step(params, state, grads)
        if t in targets:
            last_update = t
        support = [np.asarray(m) for m in kernel_masks(state)]
        weights = [np.asarray(params[k]["kernel"], np.float32) for k in ("conv", "dense", "head")]
        removed = [int((~m).sum()) for m in support]
        if last_update is None:
            assert sum(removed) == 0 and float(state.sparsity) == 0.0
        else:
            target = targets[last_update]
            assert float(state.sparsity) == pytest.approx(target, abs=1e-6)
            assert target == pytest.approx(zhu_gupta(last_update, s_i, s_f, t0, end), abs=1e-6)
            assert abs(sum(removed) - target * n) <= 0.5 + 1e-3
            if scope == "layerwise":
                expected = pruning.layer_remove_counts(shapes, round(target * n), distribution)
                assert np.all(np.abs(np.asarray(removed) - expected) <= 1)
        for m, old, w in zip(support, previous, weights):
            assert not np.any(m & ~old), "a pruned weight came back"
            assert np.all(w[~m] == 0), "a pruned weight is not zero"
            if t not in targets:
                np.testing.assert_array_equal(m, old)  # support change only on update steps
        previous = support
    assert state.support["conv"]["bias"] is None and state.support["scale"] is None
    assert len(traces) == 1
    assert bool(jnp.all(params["conv"]["bias"] != 0))  # biases are not pruned
    assert sum(int((~m).sum()) for m in previous) == round(s_f * n)


def test_gradual_works_inside_other_wrappers_and_with_inject_hyperparams():
    params = make_params()
    factory = optax.inject_hyperparams(pruning.gradual_pruning, static_args=("inner",))
    tx = factory(inner=optax.sgd(0.1), final_sparsity=0.5, begin_step=0, end_step=0, frequency=1)
    state = tx.init(params)
    updates, state = jax.jit(tx.update)(jax.tree.map(jnp.zeros_like, params), state, params)
    new = optax.apply_updates(params, updates)
    removed = sum(int(jnp.sum(new[k]["kernel"] == 0)) for k in ("conv", "dense", "head"))
    assert removed == 0.5 * (288 + 400 + 30)


def test_errors_are_clear():
    inner = optax.sgd(0.1)
    with pytest.raises(ValueError, match="final_sparsity must be >= 0"):
        pruning.gradual_pruning(inner, 1.0, 0, 10, mask=sj.tree.weights_only)
    with pytest.raises(ValueError, match="end_step must be >= begin_step"):
        pruning.gradual_pruning(inner, 0.5, 10, 5, mask=sj.tree.weights_only)
    with pytest.raises(ValueError, match="frequency must be an integer >= 1"):
        pruning.gradual_pruning(inner, 0.5, 0, 10, frequency=0, mask=sj.tree.weights_only)
    with pytest.raises(ValueError, match="initial_sparsity must be <= final_sparsity"):
        pruning.gradual_pruning(inner, 0.5, 0, 10, initial_sparsity=0.6, mask=sj.tree.weights_only)
    with pytest.raises(ValueError, match="needs scope='layerwise'"):
        pruning.gradual_pruning(inner, 0.5, 0, 10, scope="global", distribution="erk", mask=sj.tree.weights_only)
    tx = pruning.gradual_pruning(inner, 0.5, 0, 10, mask=sj.tree.weights_only)
    params = make_params()
    with pytest.raises(ValueError, match="params"):
        tx.update(params, tx.init(params))


@pytest.mark.parametrize("scope", ["layerwise", "global"])
def test_saliency_and_random_scores_remove_what_they_say(scope):
    rng = np.random.default_rng(1)
    params = {"a": {"kernel": jnp.asarray(rng.normal(size=(6, 5)), jnp.float32)},
              "b": {"kernel": jnp.asarray(rng.normal(size=(4, 4)), jnp.float32)}}
    grads = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), params)
    lr, s_f = 0.1, 0.5

    def support(score, seed=0):
        tx = pruning.gradual_pruning(optax.sgd(lr), s_f, begin_step=0, end_step=0, scope=scope,
                                     score=score, seed=seed)
        _, state = jax.jit(tx.update)(grads, tx.init(params), params)
        return jax.tree.map(np.asarray, state.support)

    # the reference: a stable argsort of the scores of w + u = w - lr g (one mask update at step 0)
    nxt = jax.tree.map(lambda w, g: w - lr * g, params, grads)
    total = sum(x.size for x in jax.tree.leaves(params))
    k = round(s_f * total)

    def reference(scores):
        if scope == "global":
            return jax.tree.map(np.asarray, pruning.select_global_argsort(scores, k))
        counts = pruning.layer_remove_counts([x.shape for x in jax.tree.leaves(scores)], k, "uniform")
        keep = [pruning.select_global_argsort({"x": x}, int(c))["x"]
                for x, c in zip(jax.tree.leaves(scores), counts)]
        return jax.tree.unflatten(jax.tree.structure(scores), [np.asarray(x) for x in keep])

    saliency = reference(jax.tree.map(lambda w, g: jnp.abs(w * g), nxt, grads))
    magnitude = reference(jax.tree.map(jnp.abs, nxt))
    got = {score: support(score) for score in ("saliency", "magnitude")}
    for name, want in (("saliency", saliency), ("magnitude", magnitude)):
        for a, b in zip(jax.tree.leaves(got[name]), jax.tree.leaves(want)):
            np.testing.assert_array_equal(a, b)
    # the two criteria disagree here, so the check above tells them apart
    assert any(np.any(a != b) for a, b in zip(jax.tree.leaves(saliency), jax.tree.leaves(magnitude)))

    # random: the same counts, a choice that is not the magnitude one, set by the seed
    rand = [support("random", seed) for seed in (0, 0, 1)]
    kept = lambda sup: [int(x.sum()) for x in jax.tree.leaves(sup)]  # noqa: E731
    assert kept(rand[0]) == kept(magnitude) if scope == "layerwise" else sum(kept(rand[0])) == total - k
    same = lambda x, y: all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y)))  # noqa: E731
    assert same(rand[0], rand[1]) and not same(rand[0], rand[2]) and not same(rand[0], magnitude)


def test_score_is_validated():
    with pytest.raises(ValueError, match="score"):
        pruning.gradual_pruning(optax.sgd(0.1), 0.5, 0, 10, score="snip")
    with pytest.raises(ValueError, match="seed"):
        pruning.gradual_pruning(optax.sgd(0.1), 0.5, 0, 10, score="random", seed=-1)


@pytest.mark.parametrize("pattern", [None, "channel"])
def test_pruned_weights_stay_pruned_when_the_largest_remainders_shift(pattern):
    # sizes 2, 5, 5: 3 removed split as 1, 1, 1 but 4 as 0, 2, 2 by largest remainder
    # alone (the Alabama paradox), which brought a's pruned weight (channel) back
    a, b, c = [0.1, 5.0], [1.0, 2, 3, 4, 6], [1.5, 2.5, 3.5, 4.5, 7]
    if pattern is None:
        params = {"a": jnp.array(a), "b": jnp.array(b), "c": jnp.array(c)}
    else:  # one input row: a channel is one weight, the same counts in channels
        params = {"a": jnp.array([a]), "b": jnp.array([b]), "c": jnp.array([c])}
    tx = pruning.gradual_pruning(optax.sgd(0.1), 1 / 3, 0, 1, 1, initial_sparsity=0.25,
                                 pattern=pattern)
    state = tx.init(params)
    history = []
    for _ in range(3):
        updates, state = tx.update(jax.tree.map(lambda x: -jnp.ones_like(x), params), state, params)
        params = optax.apply_updates(params, updates)
        history.append({k: np.asarray(v).ravel() for k, v in state.support.items()})
        assert sum(int((~m).sum()) for m in history[-1].values()) == round(
            float(state.sparsity) * 12)
    np.testing.assert_array_equal(history[0]["a"], [False, True])
    for before, after in zip(history, history[1:]):
        for k in before:
            assert not np.any(after[k] & ~before[k]), (k, before[k], after[k])
    assert params["a"].ravel()[0] == 0


def test_counts_stay_at_least_what_is_pruned_under_a_changing_schedule():
    # a final sparsity lowered through inject_hyperparams: what was removed stays removed
    params = {"a": jnp.arange(1.0, 9.0), "b": jnp.arange(1.0, 5.0)}
    tx = optax.inject_hyperparams(pruning.gradual_pruning, static_args=("inner",))(
        optax.sgd(0.0), final_sparsity=0.5, begin_step=0, end_step=10, frequency=1,
        initial_sparsity=0.5)
    state = tx.init(params)
    zero = jax.tree.map(jnp.zeros_like, params)
    _, state = tx.update(zero, state, params)
    removed = {k: int((~v).sum()) for k, v in state.inner_state.support.items()}
    assert sum(removed.values()) == 6
    state.hyperparams["final_sparsity"] = jnp.asarray(0.25)
    state.hyperparams["initial_sparsity"] = jnp.asarray(0.25)
    _, state = tx.update(zero, state, params)
    assert float(state.inner_state.sparsity) == 0.25  # the mask was recomputed
    after = {k: int((~v).sum()) for k, v in state.inner_state.support.items()}
    assert after == removed


def _run_gradual(params, final_sparsity, steps=3, **kwargs):
    tx = pruning.gradual_pruning(optax.sgd(0.0), final_sparsity, 0, steps - 1, 1, **kwargs)
    state = tx.init(params)
    for _ in range(steps):
        updates, state = tx.update(jax.tree.map(jnp.zeros_like, params), state, params)
        params = optax.apply_updates(params, updates)
    return params


@pytest.mark.parametrize(
    ("shapes", "final_sparsity", "kwargs", "message"),
    [
        # round(0.99 * 10) = 10 of 10: the layer ended all zeros, silently
        ([(10,)], 0.99, {}, "final_sparsity=0.99 of 10 weights rounds to all 10: pruning all"),
        ([(2, 5)], 0.96, {"scope": "global"}, "of 10 weights rounds to all 10"),
        ([(3, 4)], 0.9, {"pattern": "channel"}, "of 4 channels rounds to all 4"),
        ([(4, 4)], 0.9, {"pattern": "2x2"}, "of 4 blocks rounds to all 4"),
        ([(10,), (10,)], 0.99, {"scope": "global"}, "of 20 weights rounds to all 20"),
        # 19 of 20 leaves one weight in all, so one leaf of 10 lost all of them
        ([(10,), (10,)], 0.96, {}, "removes 19 of the 20 weights, but with scope='layerwise' only 18"),
        ([(10,), (10,)], 0.96, {"distribution": "erk"}, "only 18 can go"),
        ([(2, 4), (2, 2)], 0.8, {"pattern": "channel"}, "removes 5 of the 6 channels"),
    ],
)
def test_a_final_sparsity_that_prunes_a_whole_leaf_is_refused_at_init(
    shapes, final_sparsity, kwargs, message
):
    params = {f"w{i}": jax.random.normal(jax.random.key(i), s) for i, s in enumerate(shapes)}
    tx = pruning.gradual_pruning(optax.sgd(0.1), final_sparsity, 0, 2, 1, **kwargs)
    with pytest.raises(ValueError, match=message):
        tx.init(params)
    # under inject_hyperparams too (the sparsity is then a concrete array at init)
    injected = optax.inject_hyperparams(pruning.gradual_pruning, static_args=("inner",))(
        optax.sgd(0.1), final_sparsity, 0, 2, 1, **kwargs
    )
    with pytest.raises(ValueError, match="final_sparsity="):
        injected.init(params)


def test_a_final_sparsity_that_leaves_a_weight_in_every_leaf_is_still_accepted():
    one = {"w": jax.random.normal(jax.random.key(0), (10,))}
    assert int(jnp.sum(_run_gradual(one, 0.9)["w"] == 0)) == 9
    assert int(jnp.sum(_run_gradual(one, 0.94)["w"] == 0)) == 9  # round(9.4) = 9
    two = {"a": jax.random.normal(jax.random.key(0), (10,)),
           "b": jax.random.normal(jax.random.key(1), (10,))}
    # scope='global' may take 19 of 20 (one threshold over both); layer-wise 18 of 20 leaves one each
    assert sum(int(jnp.sum(x == 0)) for x in _run_gradual(two, 0.96, scope="global").values()) == 19
    out = _run_gradual(two, 0.9)
    assert [int(jnp.sum(out[k] == 0)) for k in "ab"] == [9, 9]


def test_an_empty_selection_is_refused_at_init():
    # the selected leaves hold no weight: gradual pruning was a silent no-op
    params = {"w": jnp.zeros((0, 4)), "b": jnp.ones(3)}
    tx = pruning.gradual_pruning(optax.sgd(0.1), 0.5, 0, 2, 1, mask="w")
    with pytest.raises(ValueError, match="mask selects only empty leaves: there is no weight"):
        tx.init(params)
