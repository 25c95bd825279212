"""Closed-form checks of the prox operators, apply_soft_threshold, prox-SGD, sqrt(t)-prox-SGD, freeze_zeros."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sparsejax as sj
from tests.test_dual_averaging import grads_f64, run
from tests.trees import assert_tree_close, make_grads, make_params, np_soft_threshold, to_f64

floats = st.floats(-1e3, 1e3, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(st.lists(floats, min_size=1, max_size=20), st.floats(0, 50, width=32))
def test_soft_threshold_is_the_prox_of_l1(xs, tau):
    x = jnp.asarray(xs, jnp.float32)
    y = sj.prox.soft_threshold(x, tau)
    np.testing.assert_allclose(y, np_soft_threshold(np.asarray(x, np.float64), tau), rtol=1e-6, atol=1e-4)
    assert np.all(np.asarray(y)[np.abs(np.asarray(xs)) <= tau] == 0.0)  # exact zeros
    # Optimality: y minimises 1/2 (y - x)^2 + tau |y| against nearby points.
    x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
    obj = lambda z: 0.5 * (z - x64) ** 2 + tau * np.abs(z)  # noqa: E731
    for eps in (1e-2, -1e-2):
        assert np.all(obj(y64) <= obj(y64 + eps) + 1e-6 * (1 + np.abs(x64)) ** 2)


def _bits(x: jax.Array) -> np.ndarray:
    """The bit patterns of ``x``, with every NaN mapped to one pattern (payloads aside)."""
    a = np.asarray(x)
    b = a.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize]).copy()
    b[np.isnan(a.astype(np.float64))] = 0
    return b


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16", "float64"])
def test_soft_threshold_is_x_minus_clip_bit_for_bit(dtype):
    # The compare-select clip against jnp.clip's form over signed zeros, subnormals
    # (flushed by XLA:CPU), infinities, NaN and random magnitudes, for thresholds
    # 0, subnormal, normal, huge, inf and NaN, in the leaf's dtype and in float32.
    def reference(x, tau):
        return (x - jnp.clip(x, -tau, tau)).astype(x.dtype)

    with jax.enable_x64(dtype == "float64"):
        fi = jnp.finfo(dtype)
        specials = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 0.5, -0.5]
        specials += [s * float(v) for v in (fi.tiny, fi.smallest_subnormal, fi.max) for s in (1, -1)]
        rng = np.random.default_rng(0)
        x = jnp.asarray(np.concatenate([specials, rng.normal(size=4000) * 10.0 ** rng.integers(-8, 3, 4000)]), dtype)
        taus = [t for t in specials if not t < 0 and not np.signbit(t)] + list(rng.exponential(size=8))
        for tau in taus:
            for t in (jnp.asarray(tau, dtype), jnp.asarray(tau, "float32" if dtype != "float64" else dtype)):
                got = jax.jit(sj.prox.soft_threshold)(x, t)
                want = jax.jit(reference)(x, t)
                assert got.dtype == x.dtype
                np.testing.assert_array_equal(_bits(got), _bits(want), err_msg=f"{dtype} tau={tau} ({t.dtype})")


def test_soft_threshold_compiles_to_compare_selects_and_its_derivative():
    # jnp.clip's NaN-propagating minimum/maximum cost XLA:CPU seven vector
    # instructions per clip; the compare-select form two (benchmarks/README.md).
    # Fails if XLA rewrites the selects back into minimum/maximum.
    hlo = jax.jit(sj.prox.soft_threshold).lower(jnp.ones(1024), 0.5).compile().as_text()
    body = [line for line in hlo.splitlines() if "f32[1024]" in line and "=" in line]
    assert not any(op in line for line in body for op in (" maximum(", " minimum(", " clamp("))
    assert sum(" select(" in line for line in body) == 2
    # Derivative: 1 outside the interval and at its ends (jnp.clip gives 1/2 there), 0 inside.
    grad = jax.vmap(jax.grad(lambda v: sj.prox.soft_threshold(v, 0.5)))
    np.testing.assert_array_equal(grad(jnp.array([-1.0, -0.5, -0.2, 0.0, 0.3, 0.5, 0.7])),
                                  [1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0])


def test_prox_operators_on_pytrees_with_per_leaf_thresholds_and_dtypes():
    tree = {"a": jnp.array([-1.0, 0.5, 2.0]), "b": [jnp.array([0.3, -3.0], jnp.bfloat16)], "c": None}
    out = sj.prox.soft_threshold(tree, {"a": 0.6, "b": [1.0], "c": None})
    np.testing.assert_allclose(out["a"], [-0.4, 0.0, 1.4], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(out["b"][0], np.float32), [0.0, -2.0])
    assert out["b"][0].dtype == jnp.bfloat16 and out["c"] is None
    hard = sj.prox.hard_threshold(tree, 0.6)
    np.testing.assert_array_equal(hard["a"], [-1.0, 0.0, 2.0])
    np.testing.assert_array_equal(np.asarray(hard["b"][0], np.float32), [0.0, -3.0])
    with pytest.raises(ValueError, match="threshold does not match"):
        sj.prox.soft_threshold(tree, {"a": 0.1, "zzz": 1.0})


def test_soft_threshold_transform_schedule_mask_and_per_leaf_values():
    params = {"w": jnp.array([1.0, -0.2, 0.05]), "b": jnp.array([0.01])}
    sched = lambda count: 0.1 * (count + 1)  # noqa: E731
    tx = sj.apply_soft_threshold(sched, mask={"w": True, "b": False})
    state = tx.init(params)
    zeros = jax.tree.map(jnp.zeros_like, params)
    for k in range(2):
        updates, state = tx.update(zeros, state, params)
        params = optax.apply_updates(params, updates)
    # thresholds 0.1 then 0.2, applied in sequence; the bias is left alone
    np.testing.assert_allclose(params["w"], [0.7, 0.0, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(params["b"], np.float32([0.01]))
    np.testing.assert_allclose(state.threshold, 0.2)

    per_leaf = sj.apply_soft_threshold({"w": 0.5, "b": 0.0})
    updates, state = per_leaf.update(zeros, per_leaf.init(params), params)
    np.testing.assert_allclose(optax.apply_updates(params, updates)["w"], [0.2, 0.0, 0.0], rtol=1e-6)
    assert set(state.threshold) == {"w", "b"}


def test_soft_threshold_cumulative_sums_increments():
    params = {"w": jnp.array([1.0, 0.25])}
    tx = sj.apply_soft_threshold(lambda count: 0.1 * (count + 1), cumulative=True)  # 0.1, 0.3, 0.6
    state = tx.init(params)
    for _ in range(3):
        updates, state = tx.update({"w": jnp.zeros(2)}, state, {"w": jnp.array([1.0, 0.25])})
    np.testing.assert_allclose(state.threshold, 0.6, rtol=1e-6)
    np.testing.assert_allclose(optax.apply_updates({"w": jnp.array([1.0, 0.25])}, updates)["w"], [0.4, 0.0], rtol=1e-6)


@pytest.mark.parametrize("momentum", [None, 0.9])
def test_prox_sgd_matches_forward_backward_recurrence(momentum):
    # w_{t+1} = S_{eta_t lambda}(w_t - eta_t m_t), m_t = g_t + rho m_{t-1}
    params = make_params()
    sched = optax.linear_schedule(0.3, 0.1, 3)
    lam, n_steps = 0.4, 5
    history, _ = run(sj.prox_sgd(sched, lam, momentum=momentum), params, n_steps)
    w, m = to_f64(params), None
    for t, g in enumerate(grads_f64(params, n_steps)):
        eta = float(sched(t))
        m = g if m is None or momentum is None else jax.tree.map(lambda gk, mk: gk + momentum * mk, g, m)
        w = jax.tree.map(lambda wk, mk: np_soft_threshold(wk - eta * mk, eta * lam), w, m)
    assert_tree_close(history[-1], w, params)
    assert 0.05 < float(sj.sparsity(history[-1])) < 0.95


def test_sqrt_t_prox_sgd_threshold_grows_like_sqrt_t():
    # w_{t+1} = S_{lambda sqrt(t)/gamma}(w_t - eta g_t), t = 1, 2, ...
    params = make_params()
    eta, gamma, lam, n_steps = 0.05, 4.0, 0.3, 4
    history, _ = run(sj.sqrt_t_prox_sgd(eta, gamma, lam), params, n_steps)
    w = to_f64(params)
    for t, g in enumerate(grads_f64(params, n_steps), start=1):
        w = jax.tree.map(lambda wk, gk: np_soft_threshold(wk - eta * gk, lam * np.sqrt(t) / gamma), w, g)
    assert_tree_close(history[-1], w, params)


def test_inverse_sqrt_gives_the_iRDA_papers_prox_sgd_and_sqrt_t_prox_sgd():
    # iRDA paper: alpha_t = 1/(gamma sqrt t), plain SGD; eq. (18) threshold alpha_t lambda,
    # eq. (22) threshold lambda t / beta_t = lambda sqrt(t) / gamma.
    gamma = 0.8
    schedule = sj.inverse_sqrt(gamma)
    np.testing.assert_allclose([float(schedule(k)) for k in range(4)],
                               [1 / (gamma * np.sqrt(t)) for t in range(1, 5)], rtol=1e-7)
    params = make_params()
    lam, n_steps = 0.3, 5
    hist_prox, _ = run(sj.prox_sgd(sj.inverse_sqrt(gamma), lam), params, n_steps)
    hist_sqrt, _ = run(sj.sqrt_t_prox_sgd(sj.inverse_sqrt(gamma), gamma, lam), params, n_steps)
    w_prox = w_sqrt = to_f64(params)
    for t, g in enumerate(grads_f64(params, n_steps), start=1):
        alpha = 1 / (gamma * np.sqrt(t))
        w_prox = jax.tree.map(
            lambda w, gk: np_soft_threshold(w - alpha * gk, alpha * lam), w_prox, g)
        tau = lam * np.sqrt(t) / gamma
        w_sqrt = jax.tree.map(lambda w, gk: np_soft_threshold(w - alpha * gk, tau), w_sqrt, g)
    assert_tree_close(hist_prox[-1], w_prox, params)
    assert_tree_close(hist_sqrt[-1], w_sqrt, params)
    with pytest.raises(ValueError, match="gamma"):
        sj.inverse_sqrt(0.0)


def test_float64_params_get_float64_prox_sgd():
    rng = np.random.default_rng(1)
    w0 = rng.normal(0.0, 0.3, (64,))
    grads = [rng.normal(0.0, 0.5, (64,)) for _ in range(5)]
    lr, lam, gamma, rho, wd = 0.1, 0.3, 0.8, 0.9, 0.01
    refs = {}
    for name in ("constant", "inverse_sqrt", "sqrt_t", "momentum"):
        w, m = w0.copy(), None
        for t, g in enumerate(grads, start=1):
            eta = 1 / (gamma * np.sqrt(t)) if name in ("inverse_sqrt", "sqrt_t") else lr
            if name == "momentum":
                g = g + wd * w
                m = g if m is None else g + rho * m
                g = m
            tau = 0.1 * lam * np.sqrt(t) / gamma if name == "sqrt_t" else eta * lam
            w = np_soft_threshold(w - eta * g, tau)
        refs[name] = w

    def rel_err(actual, expected):
        return float(np.max(np.abs(np.asarray(actual) - expected)) / np.max(np.abs(expected)))

    with jax.enable_x64(True):
        transforms = {
            "constant": sj.prox_sgd(lr, lam),
            "inverse_sqrt": sj.prox_sgd(sj.inverse_sqrt(gamma), lam),
            "sqrt_t": sj.sqrt_t_prox_sgd(sj.inverse_sqrt(gamma), gamma, 0.1 * lam),
            "momentum": optax.chain(sj.pytorch_sgd(lr, momentum=rho, weight_decay=wd),
                                    sj.apply_soft_threshold(lr * lam)),
        }
        for name, tx in transforms.items():
            params = {"w": jnp.asarray(w0, jnp.float64)}
            state = tx.init(params)
            for g in grads:
                updates, state = tx.update({"w": jnp.asarray(g, jnp.float64)}, state, params)
                params = optax.apply_updates(params, updates)
            assert params["w"].dtype == jnp.float64, name
            assert 0 < float(jnp.mean(params["w"] == 0)) < 1, name
            assert rel_err(params["w"], refs[name]) <= 1e-12, name


def test_freeze_zeros_zeroes_gradients_of_zero_weights_from_start_step():
    params = {"w": jnp.array([0.0, 1.0, 0.0]), "b": jnp.array([0.0])}
    grads = {"w": jnp.array([1.0, 2.0, 3.0]), "b": jnp.array([4.0])}
    tx = sj.freeze_zeros(start_step=1, mask={"w": True, "b": False})
    state = tx.init(params)
    out0, state = tx.update(grads, state, params)
    out1, state = tx.update(grads, state, params)
    np.testing.assert_array_equal(out0["w"], [1.0, 2.0, 3.0])  # before start_step
    np.testing.assert_array_equal(out1["w"], [0.0, 2.0, 0.0])
    np.testing.assert_array_equal(out1["b"], [4.0])  # not selected


def test_transforms_that_act_in_parameter_space_require_params():
    params = make_params()
    for tx in (sj.grda(0.1), sj.rda(1.0, 0.1), sj.apply_soft_threshold(0.1), sj.freeze_zeros(), sj.prox_sgd(0.1, 0.1)):
        with pytest.raises(ValueError, match="acts in parameter space and needs the current params"):
            tx.update(make_grads(params, 0), tx.init(params))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: sj.grda(-0.1), "learning_rate must be >= 0"),
        (lambda: sj.grda(0.1, c=-1.0), "c must be >= 0"),
        (lambda: sj.grda(0.1, mu=0.0), "mu must be > 0"),
        (lambda: sj.grda(float("nan")), "learning_rate must be >= 0"),
        (lambda: sj.rda(0.0, 0.1), "gamma must be > 0"),
        (lambda: sj.rda(1.0, -0.1), "l1 must be >= 0"),
        (lambda: sj.rda(1.0, 0.1, center="origin"), "center must be one of"),
        (lambda: sj.irda(1.0, 0.1, retrain_step=-1), "retrain_step must be an integer >= 0"),
        (lambda: sj.irda(1.0, 0.1, retrain_step=2.5), "retrain_step must be an integer"),
        (lambda: sj.prox_sgd(0.1, -1.0), "l1 must be >= 0"),
        (lambda: sj.prox_sgd(0.1, 0.1, momentum=1.0), "momentum must be >= 0 and < 1"),
        (lambda: sj.sqrt_t_prox_sgd(0.1, -2.0, 0.1), "gamma must be > 0"),
        (lambda: sj.apply_soft_threshold(-0.5), "threshold must be >= 0"),
        (lambda: sj.apply_soft_threshold({"w": -0.5}), "threshold must be >= 0"),
        (lambda: sj.apply_soft_threshold("big"), "threshold must be a number"),
        (lambda: sj.dual_averaging(0.1, center=None), "center must be one of"),
        (lambda: sj.freeze_zeros(start_step=-3), "start_step must be an integer >= 0"),
        (lambda: sj.init.irda_uniform(0.0), "scale must be > 0"),
    ],
)
def test_bad_hyperparameters_are_rejected_at_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_mask_with_wrong_structure_is_a_clear_error():
    params = make_params()
    tx = sj.grda(0.1, mask={"dense": True})
    with pytest.raises(ValueError, match="mask does not match the params"):
        tx.update(make_grads(params, 0), tx.init(params), params)


def test_pytorch_sgd_matches_torch_sgd_by_hand():
    """Three steps of torch.optim.SGD(lr, momentum, weight_decay, nesterov), written out."""
    import numpy as np

    lr, mu, wd = 0.1, 0.9, 0.01
    grads = [np.array([1.0, -2.0]), np.array([0.5, 0.25]), np.array([-1.0, 3.0])]
    for nesterov in (False, True):
        tx = sj.pytorch_sgd(lr, momentum=mu, nesterov=nesterov, weight_decay=wd)
        w = {"w": jnp.array([0.3, -0.7], jnp.float32)}
        state = tx.init(w)
        w_ref, buf = np.array([0.3, -0.7]), None
        for g in grads:
            d = g + wd * w_ref
            buf = d if buf is None else mu * buf + d
            w_ref = w_ref - lr * (d + mu * buf if nesterov else buf)
            u, state = tx.update({"w": jnp.asarray(g)}, state, w)
            w = optax.apply_updates(w, u)
        np.testing.assert_allclose(np.asarray(w["w"]), w_ref, rtol=1e-6)


def test_pytorch_sgd_keeps_bf16_and_checks_its_arguments():
    tx = sj.pytorch_sgd(0.1, momentum=0.9, weight_decay=1e-3)
    p = {"w": jnp.ones(3, jnp.bfloat16)}
    u, s = tx.update(p, tx.init(p), p)
    assert u["w"].dtype == jnp.bfloat16
    assert jax.tree.leaves(s)[0].dtype == jnp.bfloat16
    with pytest.raises(ValueError, match="needs the params"):
        tx.update(p, tx.init(p))
    with pytest.raises(ValueError, match="momentum"):
        sj.pytorch_sgd(0.1, momentum=1.0)
    with pytest.raises(ValueError, match="weight_decay"):
        sj.pytorch_sgd(0.1, weight_decay=-1.0)


def test_soft_threshold_refuses_thresholds_with_dimensions():
    """A 1-d threshold was taken as "one value" and applied per element along the last axis."""
    params = {"a": [jnp.ones((3, 2)), jnp.ones(2)], "b": jnp.ones((2, 2))}
    with pytest.raises(ValueError, match=r"threshold must be a single number.*shape \(2,\)"):
        sj.apply_soft_threshold(jnp.array([0.5, 2.0]))
    with pytest.raises(ValueError, match=r"threshold must be a single number.*shape \(1,\)"):
        sj.apply_soft_threshold(np.array([0.5]), cumulative=True)
    with pytest.raises(ValueError, match=r"threshold holds one value per leaf.*shape \(2,\) at 'a'"):
        sj.apply_soft_threshold({"a": jnp.array([0.5, 2.0]), "b": 0.0})
    with pytest.raises(ValueError, match=r"threshold holds one value per leaf.*shape \(2, 2\) at 'b'"):
        sj.apply_soft_threshold({"a": [0.1, 0.2], "b": jnp.full((2, 2), 0.5)})
    # single numbers, 0-d arrays and per-leaf single numbers are fine
    for thr in (0.5, jnp.float32(0.5), np.array(0.5), {"a": [jnp.array(0.5), 0.5], "b": 0.5}, {"a": 0.5, "b": 0.5}):
        tx = sj.apply_soft_threshold(thr)
        updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
        np.testing.assert_allclose(optax.apply_updates(params, updates)["b"], np.full((2, 2), 0.5))


def test_prox_sgd_and_grda_leave_integer_leaves_alone_by_default():
    """mask=None soft-thresholded integer leaves (a step counter or index array in the params)."""
    params = {"w": jnp.array([1.0, -0.05, 2.0]), "n": jnp.array([0, 1, 3], jnp.int32)}
    grads = {"w": jnp.zeros(3), "n": jnp.zeros(3, jnp.int32)}
    for tx in (sj.prox_sgd(0.1, 1.0), sj.grda(0.1, c=1.0), sj.apply_soft_threshold(0.5)):
        updates, _ = tx.update(grads, tx.init(params), params)
        new = optax.apply_updates(params, updates)
        np.testing.assert_array_equal(new["n"], [0, 1, 3])
        assert new["n"].dtype == jnp.int32
        assert float(new["w"][1]) == 0.0  # the float leaf is thresholded
