"""Soft-threshold reparameterisation (Chen et al., ICLR 2023): checks against the paper's equations."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sparsejax as sj
from sparsejax import optim
from sparsejax.optim.reparam import MOMENTUM, WEIGHT_DECAY
from tests.trees import assert_tree_close, make_grads, make_params, np_soft_threshold, to_f64

PLAIN = dict(momentum=None, weight_decay=0.0)  # plain SGD on theta


def run(tx, params, grads_fn, n_steps):
    """``n_steps`` jitted steps with ``grads_fn(k, params)``; returns the params history and state."""
    step = jax.jit(lambda p, s, g: _apply(tx, p, s, g))
    state = tx.init(params)
    history = [params]
    for k in range(n_steps):
        params, state = step(params, state, grads_fn(k, params))
        history.append(params)
    return history, state


def _apply(tx, params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state


def _at(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def fixed_grads(params):
    return lambda k, p: make_grads(params, k)


def f32_kernels(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "a": {"kernel": jnp.asarray(rng.normal(0, 0.5, (6, 8)), jnp.float32),
              "bias": jnp.asarray(rng.normal(0, 0.1, (8,)), jnp.float32)},
        "b": [{"kernel": jnp.asarray(rng.normal(0, 0.5, (8, 4)), jnp.float32)}],
    }


# --- the paper's central identity ---------------------------------------------------------------


def test_one_lats_step_is_a_prox_sgd_step():
    # theta_0 = w_0, so the first step is S_{eta lambda}(w_0 - eta g) on every entry.
    params = make_params()
    lr, lam = 0.2, 0.4
    grads = make_grads(params, 0)
    tx = optim.lats(lr, lam, **PLAIN, mask=None)
    out, state = jax.jit(lambda p, s, g: _apply(tx, p, s, g))(params, tx.init(params), grads)
    prox_step = lambda w, g: np_soft_threshold(w - lr * g, lr * lam)  # noqa: E731
    expected = jax.tree.map(prox_step, to_f64(params), to_f64(grads))
    assert_tree_close(out, expected, params)
    np.testing.assert_allclose(state.threshold, lr * lam, rtol=1e-6)
    prox_tx = sj.prox_sgd(lr, lam)
    prox_out, _ = jax.jit(lambda p, s, g: _apply(prox_tx, p, s, g))(params, prox_tx.init(params), grads)
    assert_tree_close(out, prox_out, params)
    assert 0.05 < float(sj.sparsity(out["dense"]["kernel"])) < 0.95


def test_lats_is_ista_on_weights_that_stay_nonzero_with_the_actual_learning_rate():
    # For w_t != 0 and w_{t+1} != 0 of the same sign: w_{t+1} = S_{eta_t lambda}(w_t - eta_t g_t),
    # with eta_t from the schedule.
    params = f32_kernels()
    sched = optax.join_schedules(
        [optax.linear_schedule(0.01, 0.3, 2), optax.cosine_decay_schedule(0.3, 4)], [2]
    )  # warm-up, then cosine
    lam = 0.3
    history, state = run(optim.lats(sched, lam, **PLAIN, mask=sj.tree.weights_only), params, fixed_grads(params), 6)
    checked = 0
    for k in range(6):
        w, w_next, g = to_f64(history[k]), to_f64(history[k + 1]), to_f64(make_grads(params, k))
        eta = float(sched(k))
        for path in (("a", "kernel"), ("b", 0, "kernel")):
            wt, wn, gt = (_at(t, path) for t in (w, w_next, g))
            ista = np_soft_threshold(wt - eta * gt, eta * lam)
            # (a weight that jumps across zero in one step differs from ISTA by d_t + d_{t+1})
            alive = (wt != 0) & (np.sign(wn) == np.sign(wt))
            np.testing.assert_allclose(wn[alive], ista[alive], rtol=1e-5, atol=1e-6)
            checked += int(alive.sum())
        # the bias is outside the mask: plain SGD
        sgd_bias = w["a"]["bias"] - eta * g["a"]["bias"]
        np.testing.assert_allclose(w_next["a"]["bias"], sgd_bias, rtol=1e-5, atol=1e-7)
    assert checked > 100
    expected_d = lam * sum(float(sched(k)) for k in range(6))
    np.testing.assert_allclose(state.threshold, expected_d, rtol=1e-5)


def test_start_step_is_the_identity_mapping_before_it():
    params = f32_kernels()
    lr, start = 0.1, 3
    history, state = run(optim.lats(lr, 0.5, start_step=start), params, fixed_grads(params), 5)
    inner = optax.chain(optax.add_decayed_weights(WEIGHT_DECAY), optax.sgd(lr, momentum=MOMENTUM))
    dense, _ = run(inner, params, fixed_grads(params), start)
    assert_tree_close(history[start], dense[start])
    assert float(sj.sparsity(history[start], sj.tree.weights_only)) == 0.0
    assert float(sj.sparsity(history[start + 1], sj.tree.weights_only)) > 0.0
    np.testing.assert_allclose(state.threshold, 0.5 * lr * 2, rtol=1e-6)  # steps 3 and 4
    # closed forms: zero up to start_step
    sched = optim.slats_threshold(1.0, total_steps=10, start_step=4)
    assert [float(sched(k)) for k in range(5)] == [0.0] * 5
    assert float(sched(5)) > 0.0


# --- closed-form schedules ------------------------------------------------------------------------


@pytest.mark.parametrize("start", [0, 5])
def test_slats_matches_formula_and_ends_at_d(start):
    D, T = 0.3, 45
    sched = optim.slats_threshold(D, T, start)
    ks = np.arange(0, T + 10)
    x = np.clip((ks - start) / (T - start), 0, 1)
    expected = D * (x + np.sin(np.pi * x) / np.pi)
    np.testing.assert_allclose([float(sched(k)) for k in ks], expected, rtol=1e-5, atol=1e-7)
    assert float(sched(T)) == pytest.approx(D, abs=1e-7)
    assert np.all(np.diff(expected) >= 0)


def test_slats_is_lats_with_constant_l1_under_a_cosine_learning_rate():
    # d = D(x + sin(pi x)/pi) is the integral of lambda * eta(x) with lambda = 2D/(eta0 N).
    D, N, eta0 = 0.2, 400, 0.1
    lr = optax.cosine_decay_schedule(eta0, N)
    lam = 2 * D / (eta0 * N)
    cumulative = np.cumsum([lam * float(lr(k)) for k in range(N)])
    sched = optim.slats_threshold(D, N)
    np.testing.assert_allclose(cumulative, [float(sched(k + 1)) for k in range(N)], atol=D / N)


def test_epochwise_lats_equals_lats_step_by_step_and_ends_at_d():
    D, E, B, eta0, start = 0.25, 5, 7, 0.2, 3
    tx_closed = optim.lats_epochwise(0.1, D, num_epochs=E, steps_per_epoch=B, start_step=start, **PLAIN)
    # the reference's per-epoch cosine learning rate, constant within an epoch
    lr = lambda k: eta0 * 0.5 * (1 + jnp.cos(jnp.pi * ((k - start) // B) / E))  # noqa: E731
    lam = 2 * D / (eta0 * B * (E + 1))
    tx_lats = optim.lats(lr, lam, start_step=start, **PLAIN)
    params = {"kernel": jnp.ones((2, 2))}
    zero = lambda k, p: {"kernel": jnp.zeros((2, 2))}  # noqa: E731
    n = start + E * B
    d_closed, d_lats = [], []
    for tx, out in ((tx_closed, d_closed), (tx_lats, d_lats)):
        state = tx.init(params)
        for k in range(n + 3):
            _, state = tx.update(zero(k, params), state, params)
            out.append(float(state.threshold))
    np.testing.assert_allclose(d_closed[: n], d_lats[: n], rtol=1e-5, atol=1e-7)
    assert d_closed[n - 1] == pytest.approx(D, rel=1e-6)  # after start + E*B updates
    assert d_closed[n + 2] == pytest.approx(D, rel=1e-6)  # held
    sched = optim.lats_epochwise_threshold(D, E, B, start)
    assert [float(sched(k)) for k in range(start + 1)] == [0.0] * (start + 1)


@pytest.mark.parametrize("beta", [0.05, 0.5, 4.0])
def test_pgh_is_lats_with_geometric_l1_under_cosine_and_ends_at_d(beta):
    D, T = 0.4, 50
    sched = optim.pgh_threshold(D, T, beta)
    x = np.linspace(0, 1, 200_001)
    density = beta**x * (1 + np.cos(np.pi * x))  # lambda_0 beta^x * eta(x)
    integral = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2)])
    integral *= D / integral[-1]
    for k in (0, 5, 17, 25, 40, 50, 60):
        xk = min(k / T, 1.0)
        assert float(sched(k)) == pytest.approx(np.interp(xk, x, integral), abs=1e-5)
    assert float(sched(T)) == pytest.approx(D, abs=1e-6)
    early = float(sched(T // 2)) / D
    assert (early > 0.82) if beta < 1 else (early < 0.82)  # S-LATS has 0.5 + 1/pi = 0.818


@pytest.mark.parametrize("shape", ["sine", "linear"])
def test_stds_matches_formula_and_ends_at_d(shape):
    D, T, start = 0.5, 20, 4
    sched = optim.stds_threshold(D, T, start, shape)
    ks = np.arange(T + 5)
    x = np.clip((ks - start) / (T - start), 0, 1)
    expected = D * (1 + np.sin(np.pi * (x - 0.5))) / 2 if shape == "sine" else D * x
    np.testing.assert_allclose([float(sched(k)) for k in ks], expected, rtol=1e-5, atol=1e-7)
    assert float(sched(T)) == pytest.approx(D)
    tx = optim.stds(0.1, D, T, start_step=start, shape=shape)
    params = {"kernel": jnp.ones((3, 3))}
    state = tx.init(params)
    for _ in range(T):
        _, state = tx.update({"kernel": jnp.zeros((3, 3))}, state, params)
    assert float(state.threshold) == pytest.approx(D)


def test_fixed_threshold_starts_from_the_initial_weights():
    params = f32_kernels()
    D, lr = 0.2, 0.1
    tx = optim.fixed_threshold_reparam(lr, D, **PLAIN, mask=sj.tree.weights_only)
    state = tx.init(params)
    theta = state.latent["a"]["kernel"]
    w = params["a"]["kernel"]
    np.testing.assert_allclose(theta, np.sign(w) * (np.abs(w) + D), rtol=1e-6)
    np.testing.assert_allclose(sj.prox.soft_threshold(theta, D), w, rtol=1e-6, atol=1e-7)
    assert state.latent["a"]["bias"] is None
    history, state = run(tx, params, fixed_grads(params), 3)
    g = to_f64(make_grads(params, 0))
    # the first step: S_D(theta_0 - lr g)
    expected = np_soft_threshold(np.asarray(theta, np.float64) - lr * g["a"]["kernel"], D)
    np.testing.assert_allclose(history[1]["a"]["kernel"], expected, rtol=1e-5, atol=1e-7)
    assert float(state.threshold) == pytest.approx(D)


# --- gradients --------------------------------------------------------------------------------------


def _quadratic(w, target):
    return 0.5 * sum(jnp.sum((a - b) ** 2 * (1 + jnp.arange(a.size).reshape(a.shape) % 3))
                     for a, b in zip(jax.tree.leaves(w), jax.tree.leaves(target)))


def test_str_threshold_gradient_equals_autodiff_through_an_explicit_soft_threshold():
    # some weights already pruned (w = 0, so theta = 0 is inside the threshold)
    params = jax.tree.map(lambda w: jnp.where(jnp.abs(w) < 0.3, 0.0, w), f32_kernels(1))
    target = f32_kernels(2)
    s0, lr = 0.3, 0.05  # d = sigmoid(0.3) ~ 0.57
    tx = optim.str_(lr, s_init=s0, **PLAIN, mask=sj.tree.weights_only)
    state = tx.init(params)
    theta0 = state.latent
    kernels = lambda t: {"a": t["a"]["kernel"], "b": t["b"][0]["kernel"]}  # noqa: E731

    def explicit_loss(theta_k, s, bias):
        w = {"a": {"kernel": sj.prox.soft_threshold(theta_k["a"], jax.nn.sigmoid(s["a"])), "bias": bias},
             "b": [{"kernel": sj.prox.soft_threshold(theta_k["b"], jax.nn.sigmoid(s["b"]))}]}
        return _quadratic(w, target)

    s = {"a": jnp.float32(s0), "b": jnp.float32(s0)}
    g_theta, g_s = jax.grad(explicit_loss, argnums=(0, 1))(kernels(theta0), s, params["a"]["bias"])
    grads = jax.grad(_quadratic)(params, target)  # dL/dw at w = S_d(theta_0) = params
    updates, new_state = jax.jit(tx.update)(grads, state, params)
    for name, leaf in (("a", new_state.logit["a"]["kernel"]), ("b", new_state.logit["b"][0]["kernel"])):
        np.testing.assert_allclose(leaf, s0 - lr * g_s[name], rtol=1e-5)
        assert abs(float(g_s[name])) > 1e-3
    # theta follows the exact gradient (zero for the pruned weights)
    new_theta = kernels(new_state.latent)
    for name in ("a", "b"):
        expected = kernels(theta0)[name] - lr * g_theta[name]
        np.testing.assert_allclose(new_theta[name], expected, rtol=1e-5, atol=1e-7)
    pruned = np.abs(np.asarray(kernels(theta0)["a"])) <= float(jax.nn.sigmoid(s0))
    assert pruned.any() and np.all(np.asarray(g_theta["a"])[pruned] == 0)
    out = optax.apply_updates(params, updates)
    d1 = jax.nn.sigmoid(new_state.logit["a"]["kernel"])
    expected_w = sj.prox.soft_threshold(new_theta["a"], d1)
    np.testing.assert_allclose(out["a"]["kernel"], expected_w, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(new_state.threshold["a"]["kernel"], d1, rtol=1e-6)


def test_str_weight_decay_raises_a_very_negative_threshold_logit():
    params = f32_kernels()
    tx = optim.str_(0.1, momentum=None, weight_decay=1e-2)  # s_init = -3200: d = 0
    state = tx.init(params)
    assert float(state.threshold["a"]["kernel"]) == 0.0
    for k in range(3):
        _, state = tx.update(make_grads(params, k), state, params)
    np.testing.assert_allclose(state.logit["a"]["kernel"], -3200 * (1 - 0.1 * 1e-2) ** 3, rtol=1e-6)
    tx = optim.str_(0.1, momentum=None, weight_decay=1e-2, threshold_weight_decay=0.0)
    state = tx.init(params)
    _, state = tx.update(make_grads(params, 0), state, params)
    assert float(state.logit["a"]["kernel"]) == -3200.0


def test_exact_gradient_freezes_pruned_latents_and_ste_moves_them():
    # D = 0.1: theta_0 = sign(w)(|w| + D) = [0.6, 0, -0.15, 0.1 + 0.02]; the zero weight is pruned.
    params = {"kernel": jnp.array([[0.5, 0.0, -0.05, 0.02]])}
    grads = np.array([[1.0, -1.0, 1.0, -1.0]], np.float32)
    lr, D = 0.1, 0.1
    latents = {}
    for gradient in ("ste", "exact"):
        tx = optim.fixed_threshold_reparam(lr, D, gradient=gradient, **PLAIN)
        state = tx.init(params)
        theta0 = np.asarray(state.latent["kernel"])
        updates, state = tx.update({"kernel": jnp.asarray(grads)}, state, params)
        latents[gradient] = np.asarray(state.latent["kernel"])
        w1 = optax.apply_updates(params, updates)["kernel"]
        np.testing.assert_allclose(w1, sj.prox.soft_threshold(state.latent["kernel"], D), rtol=1e-6)
    dead = np.abs(theta0) <= D
    assert dead.tolist() == [[False, True, False, False]]
    np.testing.assert_allclose(latents["ste"], theta0 - lr * grads, rtol=1e-6)  # the pruned one moves
    np.testing.assert_allclose(latents["exact"], np.where(dead, theta0, theta0 - lr * grads), rtol=1e-6)


# --- continuation and pruning at initialisation ------------------------------------------------------


def _regression_problem(seed=0):
    rng = np.random.default_rng(seed)
    w_star = rng.normal(0, 1, (20, 10)) * (rng.random((20, 10)) < 0.3)
    params = {"kernel": jnp.asarray(rng.normal(0, 0.3, (20, 10)), jnp.float32), "bias": jnp.zeros(10)}
    w_star = jnp.asarray(w_star, jnp.float32)
    return params, (lambda k, p: {"kernel": p["kernel"] - w_star, "bias": jnp.zeros(10)})


def test_continuation_grows_l1_geometrically_until_the_target_then_holds_it():
    params, grads_fn = _regression_problem()
    lam0, growth, interval, target = 0.01, 2.0, 3, 0.6
    tx = optim.lats_continuation(0.1, target, lam0, interval, growth, start_step=2, **PLAIN,
                                 mask=sj.tree.weights_only)
    step = jax.jit(lambda p, s: _apply(tx, p, s, grads_fn(0, p)))
    state = tx.init(params)
    l1s, reached, sparsities = [], [], []
    for _ in range(80):
        params, state = step(params, state)
        l1s.append(float(state.rule_state.l1))
        reached.append(bool(state.rule_state.reached))
        sparsities.append(float(state.rule_state.sparsity))
    first = reached.index(True)
    checks = [i for i in range(80) if (i + 1 - 2) > 0 and (i + 1 - 2) % interval == 0]
    assert first in checks
    before = [i for i in checks if i < first]
    assert len(before) >= 3 and all(sparsities[i] < target for i in before)
    # lambda doubled at each check before the target was hit, and only there
    for i in range(first + 1):
        assert l1s[i] == pytest.approx(lam0 * growth ** sum(1 for c in before if c <= i), rel=1e-6)
    assert sparsities[first] >= target
    assert all(v == l1s[first] for v in l1s[first:])  # held
    assert all(reached[first:])
    assert min(sparsities[first:]) >= target - 0.05
    np.testing.assert_allclose(float(sj.sparsity(params["kernel"])), sparsities[-1])


def test_continuation_state_does_not_change_before_a_check():
    params, grads_fn = _regression_problem()
    tx = optim.lats_continuation(0.1, 0.99, 0.01, interval=5, **PLAIN)
    state = tx.init(params)
    for k in range(4):
        updates, state = tx.update(grads_fn(k, params), state, params)
        params = optax.apply_updates(params, updates)
        assert float(state.rule_state.l1) == pytest.approx(0.01)
    updates, state = tx.update(grads_fn(4, params), state, params)
    assert float(state.rule_state.l1) == pytest.approx(0.02)


@pytest.mark.parametrize("rewind", [False, True])
def test_prune_at_init_fixes_the_mask_and_trains_the_survivors(rewind):
    params0, grads_fn = _regression_problem(1)
    P, lr = 4, 0.1
    tx = sj.lats_prune_at_init(lr, 0.5, prune_steps=P, rewind=rewind, **PLAIN, mask=sj.tree.weights_only)
    step = jax.jit(lambda p, s, k: _apply(tx, p, s, grads_fn(k, p)))
    params, state = params0, tx.init(params0)
    for k in range(P):
        params, state = step(params, state, k)
    mask = np.asarray(state.retrain.support["kernel"])
    assert 0.1 < 1 - mask.mean() < 0.95
    if rewind:
        rewound = np.where(mask, params0["kernel"], 0)
        np.testing.assert_allclose(params["kernel"], rewound, rtol=1e-6, atol=1e-7)
        assert np.all(np.asarray(params["kernel"])[~mask] == 0)
        np.testing.assert_allclose(params["bias"], params0["bias"], atol=1e-7)
    else:
        np.testing.assert_array_equal(mask, np.asarray(params["kernel"]) != 0)
    assert float(state.reparam.threshold) == 0.0
    w_fix = np.asarray(params["kernel"])
    # afterwards: the pruned weights stay exactly zero although their gradient is large,
    # the survivors move by plain SGD (no threshold), the mask never changes
    for k in range(P, P + 6):
        before = np.asarray(params["kernel"], np.float64)
        g = np.asarray(grads_fn(k, params)["kernel"], np.float64)
        params, state = step(params, state, k)
        after = np.asarray(params["kernel"])
        assert np.all(after[~mask] == 0)
        np.testing.assert_allclose(after[mask], (before - lr * g)[mask], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(np.asarray(state.retrain.support["kernel"]), mask)
    assert np.abs(np.asarray(grads_fn(0, params)["kernel"])[~mask]).max() > 0.1
    assert not np.array_equal(w_fix, np.asarray(params["kernel"]))


# --- dtypes, masks, None leaves -----------------------------------------------------------------


def test_bf16_params_with_float32_latents():
    params = make_params()
    tx = optim.lats(0.1, 0.5, latent_dtype=jnp.float32, mask=None)
    state = tx.init(params)
    assert state.latent["conv"]["kernel"].dtype == jnp.float32
    assert state.latent["frozen"] is None
    updates, state = tx.update(make_grads(params, 0), state, params)
    assert updates["conv"]["kernel"].dtype == jnp.bfloat16
    assert updates["scale"].shape == () and updates["frozen"] is None


def test_unselected_leaves_follow_the_inner_optimizer():
    params = f32_kernels()
    tx = optim.lats(0.1, 5.0, mask={"a": {"kernel": False, "bias": False}, "b": True})
    history, state = run(tx, params, fixed_grads(params), 3)
    inner = optax.chain(optax.add_decayed_weights(WEIGHT_DECAY), optax.sgd(0.1, momentum=MOMENTUM))
    sgd, _ = run(inner, params, fixed_grads(params), 3)
    assert_tree_close(history[-1]["a"], sgd[-1]["a"])
    assert float(sj.sparsity(history[-1]["b"])) > 0.5
    assert state.latent["a"]["kernel"] is None


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: optim.lats(-0.1, 0.1), "learning_rate"),
        (lambda: optim.lats(0.1, -1.0), "l1"),
        (lambda: optim.lats(0.1, 0.1, momentum=1.0), "momentum"),
        (lambda: optim.lats(0.1, 0.1, weight_decay=-1e-4), "weight_decay"),
        (lambda: optim.lats(0.1, 0.1, start_step=-1), "start_step"),
        (lambda: optim.lats(0.1, 0.1, start_step=1.5), "start_step"),
        (lambda: optim.lats(0.1, 0.1, gradient="sign"), "gradient"),
        (lambda: optim.slats(0.1, -0.1, 100), "final_threshold"),
        (lambda: optim.slats(0.1, 0.1, 0), "total_steps"),
        (lambda: optim.slats(0.1, 0.1, 10, start_step=10), "total_steps must be > start_step"),
        (lambda: optim.lats_epochwise(0.1, 0.1, 0, 10), "num_epochs"),
        (lambda: optim.lats_epochwise(0.1, 0.1, 2, 0), "steps_per_epoch"),
        (lambda: optim.pgh(0.1, 0.1, 100, beta=1.0), "beta must differ from 1"),
        (lambda: optim.pgh(0.1, 0.1, 100, beta=-2.0), "beta"),
        (lambda: optim.stds(0.1, 0.1, 100, shape="cosine"), "shape"),
        (lambda: optim.fixed_threshold_reparam(0.1, -0.5), "threshold"),
        (lambda: optim.str_(0.1, s_init=float("nan")), "s_init"),
        (lambda: optim.str_(0.1, threshold_weight_decay=-1.0), "threshold_weight_decay"),
        (lambda: optim.lats_continuation(0.1, 1.0, 0.1, 10), "target_sparsity"),
        (lambda: optim.lats_continuation(0.1, 0.9, 0.0, 10), "l1"),
        (lambda: optim.lats_continuation(0.1, 0.9, 0.1, 0), "interval"),
        (lambda: optim.lats_continuation(0.1, 0.9, 0.1, 10, growth=0.5), "growth"),
        (lambda: sj.lats_prune_at_init(0.1, 0.1, prune_steps=0), "prune_steps"),
        (lambda: optim.soft_threshold_reparam(optax.sgd(0.1), threshold=-1.0), "threshold"),
    ],
)
def test_invalid_hyperparameters_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_missing_params_raise():
    tx = optim.lats(0.1, 0.1)
    params = {"kernel": jnp.ones((2, 2))}
    with pytest.raises(ValueError, match="needs the current params"):
        tx.update(params, tx.init(params))


def test_a_mask_that_selects_no_leaf_raises_at_init():
    tx = optim.lats(0.1, 0.1, mask="biases")  # a regular expression on the leaf paths
    with pytest.raises(ValueError, match=r"mask='biases' selects no leaf"):
        tx.init({"kernel": jnp.ones((2, 2))})


def test_every_leaf_is_thresholded_by_default_even_a_vector():
    params = jnp.array([0.5, -0.2, 1e-6, 0.0])
    tx = sj.lats(learning_rate=1e-2, l1=1e-4)
    state = tx.init(params)
    assert state.latent.shape == (4,)
    grads = jnp.array([1.0, -1.0, 0.0, 0.0])
    updates, state = tx.update(grads, state, params)
    out = optax.apply_updates(params, updates)
    # theta_0 = w_0 (d_0 = 0); one SGD step (momentum buffer = g, coupled weight decay), then S_d
    g = np.asarray(grads, np.float64) + WEIGHT_DECAY * np.asarray(params, np.float64)
    expected = np_soft_threshold(np.asarray(params, np.float64) - 1e-2 * g, 1e-2 * 1e-4)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-9)
    assert float(out[2]) == 0.0 and float(out[3]) == 0.0
    np.testing.assert_allclose(state.threshold, 1e-6, rtol=1e-6)


def test_str_reparam_is_str_and_has_its_own_state():
    assert optim.str_ is sj.str_reparam
    state = sj.str_reparam(0.1, s_init=0.0).init({"w": jnp.ones(3)})
    assert isinstance(state, sj.StrReparamState)
    assert float(state.threshold["w"]) == 0.5 and float(state.logit["w"]) == 0.0


def test_any_inner_optimizer_with_a_threshold_rule():
    # LATS's rule around Adam: the threshold still grows by l1 * lr per step.
    params = {"kernel": jnp.array([[0.5, -0.05, 1.0]])}
    rule = sj.optim.lats_rule(0.1, l1=0.5)
    tx = sj.soft_threshold_reparam(optax.adam(0.01), rule)
    state = tx.init(params)
    for k in range(3):
        updates, state = tx.update({"kernel": jnp.ones((1, 3))}, state, params)
        params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(state.threshold, 3 * 0.05, rtol=1e-6)
    # each Adam step moves theta by -0.01 (a constant gradient); w = S_d(theta)
    np.testing.assert_allclose(params["kernel"], np_soft_threshold(
        np.array([[0.5, -0.05, 1.0]]) - 0.03, 0.15), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="cumulative"):
        sj.soft_threshold_reparam(optax.sgd(0.1), rule, cumulative=True)


def test_exact_gradient_at_a_zero_threshold_moves_exact_zeros():
    """At d = 0 the map S_0 is the identity, so its exact derivative is 1 everywhere: a
    zero-initialised bias trains (it was frozen at 0 by the strict |theta| > d), under STR's
    default logit (sigmoid(-3200) = 0) and a plain zero threshold alike; at d > 0 an exact zero
    still gets no gradient."""
    params = {"dense": {"kernel": jnp.array([[0.5, -0.3]]), "bias": jnp.zeros(2)}}
    grads = {"dense": {"kernel": jnp.zeros((1, 2)), "bias": jnp.array([1.0, -1.0])}}
    for tx in (sj.str_reparam(0.1, momentum=None, weight_decay=0.0),
               sj.soft_threshold_reparam(optax.sgd(0.1), 0.0, gradient="exact")):
        state = tx.init(params)
        p = params
        for _ in range(3):
            u, state = tx.update(grads, state, p)
            p = optax.apply_updates(p, u)
        np.testing.assert_allclose(p["dense"]["bias"], [-0.3, 0.3], rtol=1e-6)
    tx = sj.soft_threshold_reparam(optax.sgd(0.1), 0.05, gradient="exact")
    state = tx.init(params)
    u, state = tx.update(grads, state, params)
    assert float(jnp.max(jnp.abs(state.latent["dense"]["bias"]))) == 0.0


def test_states_hold_no_shared_buffers_and_can_be_donated():
    """A jitted step that donates the optimizer state failed on the first call ("donate the
    same buffer twice") where two state leaves, or a state leaf and an injected
    hyperparameter, were one array."""
    params = {"kernel": jnp.ones((2, 2)), "other": jnp.ones(3)}
    grads = jax.tree.map(jnp.ones_like, params)
    for tx in (sj.str_reparam(0.1),
               optax.inject_hyperparams(sj.str_reparam)(0.1),
               optax.inject_hyperparams(sj.lats_continuation)(0.1, 0.5, 1e-3, 2),
               sj.loss_adaptive_learning_rate(optax.sgd, 0.1, steps_per_epoch=1)):
        state = tx.init(params)
        step = jax.jit(lambda g, s, p: tx.update(g, s, p, value=jnp.float32(1.0)),
                       donate_argnums=(1,))
        _, state = step(grads, state, params)
        _, state = step(grads, state, params)
        ids = [id(x) for x in jax.tree.leaves(state)]
        assert len(ids) == len(set(ids))


def test_fixed_threshold_with_a_start_step_starts_latents_at_the_weights():
    """With k0 > 0 the threshold is 0 until k0: the latents start at w0 (not S_D^{-1}(w0)),
    and at k0 every weight shrinks by D, as the docstring says."""
    params = {"kernel": jnp.array([0.5, -0.05, 0.3])}
    tx = optim.fixed_threshold_reparam(0.1, 0.1, start_step=2, **PLAIN)
    state = tx.init(params)
    np.testing.assert_array_equal(state.latent["kernel"], params["kernel"])
    zero = {"kernel": jnp.zeros(3)}
    p = params
    for _ in range(2):
        u, state = tx.update(zero, state, p)
        p = optax.apply_updates(p, u)
    np.testing.assert_allclose(p["kernel"], [0.4, 0.0, 0.2], rtol=1e-6)


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda v: sj.soft_threshold_reparam(optax.sgd(0.1), v), "threshold"),
        (lambda v: sj.soft_threshold_reparam(optax.sgd(0.1), v, cumulative=True), "threshold"),
        (lambda v: optim.fixed_threshold_reparam(0.1, v, **PLAIN), "threshold"),
        (lambda v: sj.lats(0.1, v, **PLAIN), "l1"),
        (lambda v: sj.slats(0.1, v, 10, **PLAIN), "final_threshold"),
        (lambda v: sj.pgh(0.1, v, 10, 2.0, **PLAIN), "final_threshold"),
        (lambda v: sj.stds(0.1, v, 10, **PLAIN), "final_threshold"),
        (lambda v: sj.lats_epochwise(0.1, v, 2, 5, **PLAIN), "final_threshold"),
    ],
)
@pytest.mark.parametrize("value", [{"w": 0.1}, [0.1], jnp.array([0.1, 0.2, 0.3]), None])
def test_a_per_leaf_or_missing_threshold_is_refused_at_construction(make, name, value):
    """The threshold is one value for every thresholded leaf: a dict, a list, an array or
    None is a ValueError naming the argument (not a bare TypeError from float() in init, nor
    an array broadcast silently against the leaves)."""
    with pytest.raises(ValueError, match=rf"^{name} must be a single number >= 0.*got "):
        tx = make(value)
        tx.init({"w": jnp.ones(3)})


def test_a_single_threshold_is_still_accepted_as_a_number_an_array_or_a_schedule():
    params = {"w": jnp.array([0.5, -0.05, 0.3])}
    grads = {"w": jnp.zeros(3)}
    outs = []
    for threshold in (0.1, jnp.float32(0.1), jnp.array(0.1), lambda count: 0.1):
        tx = sj.soft_threshold_reparam(optax.sgd(0.1), threshold)
        updates, _ = tx.update(grads, tx.init(params), params)
        outs.append(optax.apply_updates(params, updates)["w"])
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])
    tx = optax.inject_hyperparams(sj.soft_threshold_reparam)(optax.sgd(0.1), threshold=0.1)
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_array_equal(optax.apply_updates(params, updates)["w"], outs[0])


@pytest.mark.parametrize("rewind", [False, True])
def test_prune_at_init_holds_the_pruned_latents_at_zero(rewind):
    # Without rewind, momentum and weight decay kept moving the pruned latents after the
    # fix: the params stayed 0 but sparse_weights(state.reparam) grew non-zeros there.
    from sparsejax.optim.reparam import sparse_weights

    params = {"kernel": jnp.array([[0.5, -0.05, 0.02]]), "bias": jnp.array([0.1])}
    grads = {"kernel": jnp.array([[0.1, 0.5, -0.5]]), "bias": jnp.array([0.2])}
    tx = sj.lats_prune_at_init(0.1, l1=1.0, prune_steps=2, momentum=0.9, weight_decay=5e-4,
                               rewind=rewind, mask=sj.tree.weights_only)
    state = tx.init(params)
    for _ in range(6):
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    np.testing.assert_array_equal(state.retrain.support["kernel"], [[True, False, False]])
    np.testing.assert_array_equal(sparse_weights(state.reparam)["kernel"], params["kernel"])
    np.testing.assert_array_equal(state.reparam.latent["kernel"][0, 1:], [0.0, 0.0])


def _exercise(made):
    """Builds what ``made`` is (a rule, a schedule or a transform) far enough to use its values."""
    params = {"w": jnp.array([0.5, -0.05, 0.3])}
    if isinstance(made, optim.ThresholdRule):
        d, state = made.init()
        made.next(jnp.zeros([], jnp.int32), d, state)
    elif hasattr(made, "init"):
        state = made.init(params)
        made.update({"w": jnp.ones(3)}, state, params)
    else:
        made(jnp.asarray(5, jnp.int32))


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda v: optim.lats_rule(0.1, v), "l1"),
        (lambda v: optim.lats_rule(v, 0.5), "learning_rate"),
        (lambda v: optim.slats_threshold(v, 10), "final_threshold"),
        (lambda v: optim.lats_epochwise_threshold(v, 2, 5), "final_threshold"),
        (lambda v: optim.pgh_threshold(v, 10, 0.1), "final_threshold"),
        (lambda v: optim.pgh_threshold(0.5, 10, v), "beta"),
        (lambda v: optim.stds_threshold(v, 10), "final_threshold"),
        (lambda v: optim.fixed_threshold(v), "threshold"),
        (lambda v: sj.lats_continuation(v, 0.5, 0.1, 1, **PLAIN), "learning_rate"),
        (lambda v: sj.lats_continuation(0.1, v, 0.1, 1, **PLAIN), "target_sparsity"),
        (lambda v: sj.lats_continuation(0.1, 0.5, v, 1, **PLAIN), "l1"),
        (lambda v: sj.lats_continuation(0.1, 0.5, 0.1, v, **PLAIN), "interval"),
        (lambda v: sj.lats_continuation(0.1, 0.5, 0.1, 1, v, **PLAIN), "growth"),
        (lambda v: sj.lats_prune_at_init(v, 0.5, 2, **PLAIN), "learning_rate"),
        (lambda v: sj.lats_prune_at_init(0.1, v, 2, **PLAIN), "l1"),
        (lambda v: sj.lats(v, 0.5, **PLAIN), "learning_rate"),
        (lambda v: sj.slats(v, 0.1, 10, **PLAIN), "learning_rate"),
        (lambda v: sj.lats_epochwise(v, 0.1, 2, 5, **PLAIN), "learning_rate"),
        (lambda v: sj.pgh(v, 0.1, 10, 0.1, **PLAIN), "learning_rate"),
        (lambda v: sj.stds(v, 0.1, 10, **PLAIN), "learning_rate"),
        (lambda v: optim.fixed_threshold_reparam(v, 0.1, **PLAIN), "learning_rate"),
    ],
)
@pytest.mark.parametrize("value", [{"w": 0.1}, [0.1, 0.2], None], ids=["dict", "list", "None"])
def test_a_per_leaf_or_missing_single_hyperparameter_is_refused_at_every_entry(make, name, value):
    """Threshold rules called directly, lats_continuation, lats_prune_at_init and the learning
    rate of the reparam family take one value for every leaf: a dict, a list or None is a
    ValueError naming the argument (not a bare TypeError from float(), a 'None is not a valid
    value for jnp.array', a shape error in update, or a list broadcast against the leaves)."""
    with pytest.raises(ValueError, match=rf"^{name} must be a single (number|integer) .*got "):
        _exercise(make(value))


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda v: optim.slats_threshold(v, 10), "final_threshold"),
        (lambda v: optim.lats_epochwise_threshold(v, 2, 5), "final_threshold"),
        (lambda v: optim.pgh_threshold(v, 10, 0.1), "final_threshold"),
        (lambda v: optim.pgh_threshold(0.5, 10, v), "beta"),
        (lambda v: optim.stds_threshold(v, 10), "final_threshold"),
        (lambda v: optim.fixed_threshold(v), "threshold"),
        (lambda v: sj.slats(0.1, v, 10, **PLAIN), "final_threshold"),
        (lambda v: optim.fixed_threshold_reparam(0.1, v, **PLAIN), "threshold"),
    ],
)
def test_a_schedule_is_refused_where_a_closed_form_needs_a_number(make, name):
    """The closed-form schedules compute with their final value: a schedule there failed with a
    bare TypeError from float(); optax.inject_hyperparams (which evaluates it) still works."""
    with pytest.raises(ValueError, match=rf"^{name} must be a single number .*not a schedule"):
        _exercise(make(lambda count: 0.5))


def test_single_hyperparameters_still_accept_numbers_0d_arrays_schedules_and_injection():
    params = {"w": jnp.array([0.5, -0.05, 0.3])}
    grads = {"w": jnp.array([0.1, -0.2, 0.3])}

    def two_steps(tx):
        updates, state = tx.update(grads, tx.init(params), params)
        p = optax.apply_updates(params, updates)
        updates, _ = tx.update(grads, state, p)
        return optax.apply_updates(p, updates)["w"]

    # factory: (the name of its single threshold-like value, its other arguments)
    factories = {
        sj.lats: ("l1", {}),
        sj.slats: ("final_threshold", dict(total_steps=4)),
        sj.lats_epochwise: ("final_threshold", dict(num_epochs=2, steps_per_epoch=2)),
        sj.pgh: ("final_threshold", dict(total_steps=4, beta=0.1)),
        sj.stds: ("final_threshold", dict(total_steps=4)),
        optim.fixed_threshold_reparam: ("threshold", {}),
        sj.lats_continuation: ("l1", dict(target_sparsity=0.5, interval=1)),
        sj.lats_prune_at_init: ("l1", dict(prune_steps=1)),
    }
    for factory, (name, other) in factories.items():
        def make(lr, v, factory=factory, name=name, other=other):
            return factory(learning_rate=lr, **{name: v}, **other, **PLAIN)

        want = two_steps(make(0.1, 0.2))
        for lr, v in [(jnp.float32(0.1), np.float64(0.2)), (jnp.array(0.1), jnp.array(0.2)),
                      (np.array(0.1), 0.2), (lambda count: 0.1, 0.2)]:
            np.testing.assert_allclose(two_steps(make(lr, v)), want, rtol=1e-6,
                                       err_msg=factory.__name__)
        # inject_hyperparams evaluates a schedule given for any numeric hyperparameter
        for v in (0.2, lambda count: 0.2):
            tx = optax.inject_hyperparams(factory)(learning_rate=0.1, **{name: v}, **other, **PLAIN)
            np.testing.assert_allclose(two_steps(tx), want, rtol=1e-6, err_msg=factory.__name__)
    # the rules themselves: schedules where a schedule is allowed, 0-d arrays everywhere
    for rule in (optim.lats_rule(lambda t: 0.1, lambda t: 0.5),
                 optim.lats_rule(jnp.array(0.1), np.float32(0.5))):
        d, s = rule.init()
        np.testing.assert_allclose(rule.next(0, d, s)[0], 0.05, rtol=1e-6)
    for sched in (optim.slats_threshold(jnp.array(0.5), 10), optim.fixed_threshold(np.float32(0.5)),
                  optim.pgh_threshold(0.5, 10, jnp.array(0.1)), optim.stds_threshold(0.5, 10),
                  optim.lats_epochwise_threshold(np.array(0.5), 2, 5)):
        np.testing.assert_allclose(sched(10), 0.5, rtol=1e-6)


@pytest.mark.parametrize("factory", [
    lambda lr: sj.pytorch_sgd(lr, momentum=0.9),
    lambda lr: sj.prox_sgd(lr, l1=0.1),
    lambda lr: sj.sqrt_t_prox_sgd(lr, gamma=1.0, l1=0.1),
    lambda lr: sj.str_reparam(lr, s_init=-2.0),
])
@pytest.mark.parametrize("bad", [None, {"w": 0.1}, [0.1, 0.2]])
def test_sgd_learning_rates_must_be_one_number_or_a_schedule(factory, bad):
    # pytorch_sgd(learning_rate=None) stepped along +gradient (gradient ascent) without a word,
    # and a list was broadcast against the leaves; prox-SGD and STR build on it.
    with pytest.raises(ValueError, match=r"^learning_rate must be a single number"):
        factory(bad)
