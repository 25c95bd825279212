"""Closed-form checks of dual_averaging, gRDA, RDA and iRDA against the papers' equations."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sparsejax as sj
from tests.trees import assert_tree_close, make_grads, make_params, np_soft_threshold, to_f64


def run(tx, params, n_steps):
    """Runs ``n_steps`` with gradients that depend only on the step index."""
    state = tx.init(params)
    history = []
    for k in range(n_steps):
        updates, state = tx.update(make_grads(params, k), state, params)
        params = optax.apply_updates(params, updates)
        history.append(params)
    return history, state


def grads_f64(params, n_steps):
    return [to_f64(make_grads(params, k)) for k in range(n_steps)]


def tree_map64(fn, *trees):
    return jax.tree.map(fn, *trees)


def assert_exact_zeros(actual, unthresholded, tau, margin=1e-3):
    """Entries clearly inside the threshold are exactly 0, those clearly outside are not."""
    for a, u in zip(jax.tree.leaves(actual), jax.tree.leaves(unthresholded)):
        if jnp.asarray(a).dtype != jnp.float32:
            continue
        a = np.asarray(a)
        assert np.all(a[np.abs(u) < tau * (1 - margin)] == 0.0)
        assert np.all(a[np.abs(u) > tau * (1 + margin)] != 0.0)


def test_dual_averaging_moves_params_to_center_minus_weighted_gradient_sum():
    params = make_params()
    sched = optax.linear_schedule(0.2, 0.05, 4)
    n = 5
    for center in ("init", "zero"):
        history, _ = run(sj.dual_averaging(sched, center=center), params, n)
        g = grads_f64(params, n)
        w0 = to_f64(params) if center == "init" else jax.tree.map(np.zeros_like, to_f64(params))
        expected = jax.tree.map(
            lambda w, *gs: w - sum(float(sched(k)) * gk for k, gk in enumerate(gs)), w0, *g
        )
        assert_tree_close(history[-1], expected, params)


def test_dual_averaging_with_init_center_and_constant_lr_is_sgd():
    params = make_params()
    da, _ = run(sj.dual_averaging(0.1), params, 4)
    sgd, _ = run(optax.sgd(0.1), params, 4)
    assert_tree_close(da[-1], sgd[-1], params)


@pytest.mark.parametrize("n_steps", [1, 2, 7])
def test_grda_constant_lr_matches_closed_form(n_steps):
    # w_n = S_{c gamma^1/2 (n gamma)^mu}(w0 - gamma sum_k g_k)
    params = make_params()
    gamma, c, mu = 0.1, 1.0, 0.6
    history, state = run(sj.grda(gamma, c=c, mu=mu), params, n_steps)
    tau = c * gamma**0.5 * (n_steps * gamma) ** mu
    acc = jax.tree.map(lambda w, *gs: w - gamma * sum(gs), to_f64(params), *grads_f64(params, n_steps))
    expected = jax.tree.map(lambda a: np_soft_threshold(a, tau), acc)
    assert_tree_close(history[-1], expected, params)
    assert_exact_zeros(history[-1], acc, tau)
    np.testing.assert_allclose(optax.tree_utils.tree_get(state, "threshold"), tau, rtol=1e-5)
    sparsity = float(sj.sparsity(history[-1]))
    assert 0.05 < sparsity < 0.95  # both regimes are exercised


def test_grda_with_schedule_follows_reference_recurrence():
    # a_n = a_{n-1} - eta_n g_n;  tau_n = tau_{n-1} + c eta_n^{mu+1/2} (n^mu - (n-1)^mu)
    params = make_params()
    c, mu, n_steps = 0.8, 0.55, 6
    sched = optax.piecewise_constant_schedule(0.2, {2: 0.5, 4: 0.25})
    history, state = run(sj.grda(sched, c=c, mu=mu), params, n_steps)
    acc, tau = to_f64(params), 0.0
    for n, g in enumerate(grads_f64(params, n_steps), start=1):
        eta = float(sched(n - 1))
        acc = jax.tree.map(lambda a, gk: a - eta * gk, acc, g)
        tau += c * eta ** (mu + 0.5) * (n**mu - (n - 1) ** mu)
    expected = jax.tree.map(lambda a: np_soft_threshold(a, tau), acc)
    assert_tree_close(history[-1], expected, params)
    np.testing.assert_allclose(optax.tree_utils.tree_get(state, "threshold"), tau, rtol=1e-5)


def test_grda_threshold_increment_is_accurate_for_large_step_counts():
    # n^mu - (n-1)^mu at n = 10^6 cancels catastrophically if computed naively in float32.
    from sparsejax.optim.dual_averaging import _power_increment

    n = jnp.float32(1e6)
    exact = 1e6**0.51 - (1e6 - 1) ** 0.51
    np.testing.assert_allclose(float(_power_increment(n, 0.51)), exact, rtol=1e-5)


def test_grda_mask_leaves_unselected_leaves_as_sgd():
    params = make_params()
    history, _ = run(sj.grda(0.1, c=1.0, mu=0.6, mask=sj.tree.weights_only), params, 3)
    sgd, _ = run(optax.sgd(0.1), params, 3)
    assert_tree_close(history[-1]["dense"]["bias"], sgd[-1]["dense"]["bias"])
    assert_tree_close(history[-1]["scale"], sgd[-1]["scale"])
    assert float(sj.sparsity(history[-1]["dense"]["kernel"])) > 0.05


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_grda_sets_params_to_the_threshold_of_the_dual_point_bit_for_bit(dtype):
    # w_n = S_{tau_n}(a_n) computed from a_n itself (the paper, the reference code), not from
    # p + (a_n - p); unselected leaves move to a_n. The state keeps the layout of
    # chain(dual_averaging(lr, 'init'), apply_soft_threshold(...)), so older checkpoints load.
    rng = np.random.default_rng(5)
    params = {"w": jnp.asarray(rng.standard_normal((9, 4)), dtype),
              "b": jnp.asarray(rng.standard_normal(4), dtype)}
    grads = [jax.tree.map(lambda p: jnp.asarray(rng.standard_normal(p.shape) * 10.0 ** rng.integers(-5, 1),
                                                 dtype), params) for _ in range(10)]
    lr, c, mu = 0.1, 0.3, 0.6
    tx = sj.grda(lr, c=c, mu=mu, mask=lambda p: jax.tree.map(lambda x: x.ndim == 2, p))
    state = tx.init(params)
    layout = optax.chain(sj.dual_averaging(lr), sj.apply_soft_threshold(1.0)).init(params)
    assert jax.tree.structure(state) == jax.tree.structure(layout)
    p, a = params, params
    bits = np.uint16 if jnp.dtype(dtype).itemsize == 2 else np.uint32
    for g in grads:
        a = jax.tree.map(lambda a_, g_: (a_.astype(jnp.float32) - jnp.float32(lr) * g_.astype(jnp.float32))
                         .astype(dtype), a, g)
        u, state = tx.update(g, state, p)
        tau = jnp.float32(optax.tree_utils.tree_get(state, "threshold"))
        w = (a["w"].astype(jnp.float32) - jnp.clip(a["w"].astype(jnp.float32), -tau, tau)).astype(dtype)
        np.testing.assert_array_equal(np.asarray(u["w"]).view(bits),
                                      np.asarray((w - p["w"]).astype(dtype)).view(bits))
        np.testing.assert_array_equal(np.asarray(u["b"]).view(bits),
                                      np.asarray((a["b"] - p["b"]).astype(dtype)).view(bits))
        p = optax.apply_updates(p, u)
    assert 0 < int(jnp.sum(p["w"] == 0)) < p["w"].size  # both regimes are exercised


@pytest.mark.parametrize("mu", [0.4, 0.5, 1.0, 1.5])
def test_grda_warns_outside_theory_range(mu):
    with pytest.warns(UserWarning, match="0.5 < mu < 1"):
        sj.grda(0.1, c=0.01, mu=mu)


def test_grda_does_not_warn_inside_theory_range():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sj.grda(0.1, c=0.01, mu=0.51)


@pytest.mark.parametrize("center", ["zero", "init"])
def test_rda_matches_closed_form(center):
    # w_{t+1} = S_{lambda sqrt(t)/gamma}(w0 - sum_{tau<=t} g_tau / (gamma sqrt(t)))
    params = make_params()
    gamma, lam = 2.0, 0.15
    for n_steps in (1, 4):
        history, _ = run(sj.rda(gamma, lam, center=center), params, n_steps)
        w0 = to_f64(params) if center == "init" else jax.tree.map(np.zeros_like, to_f64(params))
        g_sum = jax.tree.map(lambda *gs: sum(gs), *grads_f64(params, n_steps))
        point = jax.tree.map(lambda w, s: w - s / (gamma * np.sqrt(n_steps)), w0, g_sum)
        tau = lam * np.sqrt(n_steps) / gamma
        expected = jax.tree.map(lambda p: np_soft_threshold(p, tau), point)
        assert_tree_close(history[-1], expected, params)
        assert_exact_zeros(history[-1], point, tau)


def test_rda_gamma_schedule_is_evaluated_per_step():
    params = make_params()
    sched = optax.linear_schedule(1.0, 3.0, 3)
    n_steps, lam = 3, 0.1
    history, _ = run(sj.rda(sched, lam), params, n_steps)
    g_sum = jax.tree.map(lambda *gs: sum(gs), *grads_f64(params, n_steps))
    gamma = float(sched(n_steps - 1))
    expected = jax.tree.map(
        lambda s: np_soft_threshold(-s / (gamma * np.sqrt(n_steps)), lam * np.sqrt(n_steps) / gamma),
        g_sum,
    )
    assert_tree_close(history[-1], expected, params)


def test_irda_is_rda_then_freezes_zeros():
    params = make_params()
    gamma, lam, retrain, n_steps = 2.0, 0.2, 3, 8
    f32 = lambda t: {"dense": t["dense"], "layers": [{"kernel": t["layers"][0]["kernel"]}]}  # noqa: E731
    hist_irda, _ = run(sj.irda(gamma, lam, retrain_step=retrain), params, n_steps)
    hist_rda, _ = run(sj.rda(gamma, lam), params, n_steps)
    # Step 1: identical to RDA before the retraining step.
    for t in range(retrain):
        assert_tree_close(hist_irda[t], hist_rda[t], params)
    # Step 2: recompute with the rule "g_j <- 0 where (w_t)_j = 0" (float64 reference).
    w_prev, g_sum = to_f64(params), jax.tree.map(np.zeros_like, to_f64(params))
    for t, g in enumerate(grads_f64(params, n_steps), start=1):
        if t - 1 >= retrain:
            g = jax.tree.map(lambda gk, w: np.where(w == 0.0, 0.0, gk), g, to_f64(hist_irda[t - 2]))
        g_sum = jax.tree.map(np.add, g_sum, g)
        w_prev = jax.tree.map(
            lambda s: np_soft_threshold(-s / (gamma * np.sqrt(t)), lam * np.sqrt(t) / gamma), g_sum
        )
    assert_tree_close(f32(hist_irda[-1]), f32(w_prev))
    # Pruned weights stay pruned from the retraining step on, and retraining changed the result.
    for before, after in zip(hist_irda[retrain - 1 : -1], hist_irda[retrain:]):
        for b, a in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
            assert np.all(np.asarray(a)[np.asarray(b) == 0] == 0)
    assert float(sj.sparsity(hist_irda[-1])) > float(sj.sparsity(hist_rda[-1]))


@pytest.mark.parametrize("center", ["zero", "init"])
def test_irda_gradient_sum_does_not_read_the_params(center):
    # The implementation skips Algorithm 1's gradient rule on the stored sum (a frozen entry's
    # sum is never read again): the new sum is the old one plus the raw gradient wherever the
    # weights are zero, and the update keeps the zero weights at zero.
    params = {"w": jnp.array([0.0, 0.5, 0.0, -0.5])}
    tx = sj.irda(2.0, 0.1, retrain_step=0, center=center)
    state = tx.init(params)
    grads = {"w": jnp.array([1.0, 2.0, -3.0, 4.0])}
    updates, new_state = tx.update(grads, state, params)
    np.testing.assert_array_equal(optax.tree_utils.tree_get(new_state, "grad_sum")["w"], grads["w"])
    new_params = optax.apply_updates(params, updates)["w"]
    np.testing.assert_array_equal(new_params[jnp.array([0, 2])], 0.0)
    assert np.all(np.asarray(new_params[jnp.array([1, 3])]) != 0)  # the others train


def test_irda_warns_about_bfloat16_params_whose_rounding_it_would_freeze():
    # 0.5 -> 0.00069 lands on exactly 0 in bfloat16 (apply_updates adds in the params' dtype),
    # and the retraining freezes it: the case the warning is for
    p = {"w": jnp.array([0.5], jnp.bfloat16), "b": jnp.zeros(2, jnp.float16)}
    with pytest.warns(UserWarning, match="irda with bfloat16/float16 params"):
        tx = sj.irda(gamma=1.0, l1=1e-5, retrain_step=1, accumulator_dtype=jnp.float32)
        state = tx.init(p)
    u, state = tx.update({"w": jnp.array([-7e-4], jnp.bfloat16), "b": jnp.zeros(2, jnp.float16)},
                         state, p)
    assert float(optax.apply_updates(p, u)["w"][0]) == 0.0  # the documented rounding
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sj.irda(1.0, 1e-5, 0).init({"w": jnp.ones(2)})
        sj.irda(1.0, 1e-5, 0, mask=sj.tree.weights_only).init({"kernel": jnp.ones((2, 2)),
                                                            "bias": jnp.ones(2, jnp.bfloat16)})


def test_irda_uniform_init_has_the_papers_moments():
    s, shape = 10.0, (3, 3, 16, 64)  # fan-in n = k^2 c = 144
    w = sj.init.irda_uniform(s)(jax.random.key(0), shape, jnp.float32)
    sigma = np.sqrt(s**2 / 144)
    assert abs(float(w.mean())) < 0.02 * sigma
    np.testing.assert_allclose(float(w.std()), sigma, rtol=0.02)
    assert float(jnp.abs(w).max()) <= sigma * np.sqrt(3) + 1e-6


def test_irda_uniform_is_a_flax_initializer():
    from flax import nnx

    layer = nnx.Linear(50, 4, kernel_init=sj.init.irda_uniform(3.0), rngs=nnx.Rngs(0))
    bound = 3.0 * np.sqrt(3.0 / 50)
    assert float(jnp.abs(layer.kernel[...]).max()) <= bound + 1e-6
    assert float(jnp.abs(layer.kernel[...]).max()) > 0.9 * bound


def _zero_set_violations(history, start):
    """Entries that are zero at some step >= ``start`` and non-zero at the next."""
    bad = 0
    for before, after in zip(history[start - 1 : -1], history[start:]):
        for b, a in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
            bad += int(np.sum((np.asarray(b) == 0) & (np.asarray(a) != 0)))
    return bad


@pytest.mark.parametrize("center", ["zero", "init"])
def test_irda_zero_set_is_monotone_after_the_retraining_step(center):
    # Algorithm 1, Step 2: weights pruned before or during retraining stay pruned. With
    # center='init' the RDA point of a frozen weight drifts back to w_0 as t grows.
    params = make_params()
    retrain, n_steps = 3, 12
    history, _ = run(sj.irda(2.0, 0.1, retrain_step=retrain, center=center), params, n_steps)
    assert float(sj.sparsity(history[retrain - 1])) > 0.2  # there is something to keep pruned
    assert _zero_set_violations(history, retrain) == 0


@pytest.mark.parametrize("make", [
    lambda: sj.rda(2.0, 0.1, center="zero", mask=sj.tree.weights_only),
    lambda: sj.irda(2.0, 0.1, retrain_step=1, center="zero", mask=sj.tree.weights_only),
])
def test_rda_zero_center_keeps_unregularised_leaves_around_their_initial_value(make):
    # Leaves outside the l1 mask (a BatchNorm scale, biases) do simple dual averaging around
    # their own initial value: w_1 - sum g / (gamma sqrt t); the kernel uses the zero centre.
    params = {"kernel": jnp.full((2, 3), 0.5), "bn": {"scale": jnp.ones(3), "bias": jnp.zeros(3)}}
    gamma, lam, n_steps = 2.0, 0.1, 4
    grads = [jax.tree.map(lambda p, k=k: jnp.full_like(p, 0.3 * (k + 1)), params)
             for k in range(n_steps)]
    tx = make()
    state, p = tx.init(params), params
    for g in grads:
        updates, state = tx.update(g, state, p)
        p = optax.apply_updates(p, updates)
    g_sum = sum(0.3 * (k + 1) for k in range(n_steps))
    step = 1 / (gamma * np.sqrt(n_steps))
    np.testing.assert_allclose(p["bn"]["scale"], 1.0 - step * g_sum, rtol=1e-6)
    np.testing.assert_allclose(p["bn"]["bias"], -step * g_sum, rtol=1e-6)
    tau = lam * np.sqrt(n_steps) / gamma
    np.testing.assert_allclose(p["kernel"], np_soft_threshold(-step * g_sum, tau), rtol=1e-6)


def test_irda_with_the_papers_init_scale_trains_a_batchnorm_network():
    # Algorithm 1 with w_0 = 0 and w_1 from the re-scaled init (s = 10), kernels l1-regularised
    # (the paper's choice of leaves), BatchNorm scales and biases trained by dual averaging
    # around their initial value: the scales stay near 1 and the network learns.
    from flax import nnx

    from sparsejax.models import VGG

    rng = np.random.default_rng(0)
    n = 256
    y = rng.integers(0, 2, n)
    x = rng.normal(0.0, 1.0, (n, 8, 8, 1)).astype(np.float32)
    x[:, :4, :, 0] += np.where(y == 1, 1.0, -1.0)[:, None, None]  # the class is the top half's mean
    x, y = jnp.asarray(x), jnp.asarray(y)
    model = VGG((8, "M", 8), 2, in_channels=1, batch_norm=True,
                kernel_init=sj.init.irda_uniform(10.0), rngs=nnx.Rngs(0))
    tx = sj.irda(gamma=1.0, l1=1e-3, retrain_step=40, mask=sj.tree.weights_only)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer, xb, yb):
        def loss_fn(m):
            return optax.softmax_cross_entropy_with_integer_labels(m(xb), yb).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    losses = []
    for k in range(60):
        i = (k * 32) % n
        losses.append(float(train_step(model, optimizer, x[i : i + 32], y[i : i + 32])))
    model.eval()
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    scales = [np.asarray(v["bn"]["scale"]) for v in params["convs"].values()]
    assert min(float(s.min()) for s in scales) > 0.5  # not pulled to the zero centre
    assert np.mean(losses[-5:]) < 0.2 * np.mean(losses[:5])
    assert float(jnp.mean(jnp.argmax(model(x), -1) == y)) > 0.9
    assert float(sj.sparsity(params, mask=sj.tree.weights_only)) > 0.1


def _run_f64(tx, params, grads):
    state = tx.init(params)
    for g in grads:
        updates, state = tx.update(g, state, params)
        params = optax.apply_updates(params, updates)
    return params, state


def _rel_err(actual, expected):
    actual, expected = np.asarray(actual), np.asarray(expected)
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def test_float64_params_get_float64_grda_and_rda():
    rng = np.random.default_rng(0)
    w0 = rng.normal(0.0, 0.3, (64,))
    grads = [rng.normal(0.0, 0.5, (64,)) for _ in range(6)]
    lr, c, mu, gamma, lam = 0.1, 0.3, 0.6, 2.0, 0.05
    n = len(grads)
    # float64 NumPy references: gRDA (reference code), RDA (iRDA paper eq. 20), both centres
    grda_ref = np_soft_threshold(w0 - lr * sum(grads), c * lr**0.5 * (n * lr) ** mu)
    point = -sum(grads) / (gamma * np.sqrt(n))
    rda_ref = {"zero": np_soft_threshold(point, lam * np.sqrt(n) / gamma),
               "init": np_soft_threshold(w0 + point, lam * np.sqrt(n) / gamma)}
    with jax.enable_x64(True):
        params = {"w": jnp.asarray(w0, jnp.float64)}
        g64 = [{"w": jnp.asarray(g, jnp.float64)} for g in grads]
        out, state = _run_f64(sj.grda(lr, c=c, mu=mu), params, g64)
        assert out["w"].dtype == jnp.float64
        assert optax.tree_utils.tree_get(state, "threshold").dtype == jnp.float64
        assert _rel_err(out["w"], grda_ref) <= 1e-12
        for center, ref in rda_ref.items():
            out, _ = _run_f64(sj.rda(gamma, lam, center=center), params, g64)
            assert out["w"].dtype == jnp.float64
            assert _rel_err(out["w"], ref) <= 1e-12
            out, _ = _run_f64(sj.dual_averaging(lr, center=center), params, g64)
            base = w0 if center == "init" else 0.0
            assert _rel_err(out["w"], base - lr * sum(grads)) <= 1e-12


def test_opaque_one_is_an_exact_one_that_survives_compilation():
    # x * opaque_one is x bit for bit (signed zeros, infinities, NaN, the largest float), except
    # that subnormals come out as any arithmetic result does (XLA:CPU flushes them to signed zeros;
    # the transforms only multiply results of arithmetic). XLA keeps the multiply (the one is not
    # folded away): the loop keeps its broadcast operand, which is the point of the helper.
    from sparsejax.optim._common import opaque_one

    f32 = np.array([0.0, -0.0, 1.5, -3.25e-42, 1e-45, 3.4e38, np.inf, -np.inf, np.nan], np.float32)
    subnormal = np.array([False, False, False, True, True, False, False, False, False])
    for dtype in (jnp.float32, jnp.bfloat16, jnp.float16):
        x = jnp.asarray(f32).astype(dtype)
        fn = jax.jit(lambda x: x * opaque_one(x.dtype))
        y = fn(x)
        assert y.dtype == x.dtype
        bits = np.uint16 if jnp.dtype(dtype).itemsize == 2 else np.uint32
        normal = ~subnormal & (np.asarray(x.astype(jnp.float32)) != 0) | (f32 == 0)
        np.testing.assert_array_equal(np.asarray(y).view(bits)[normal], np.asarray(x).view(bits)[normal])
        # everywhere, what an arithmetic operation with a runtime zero gives
        minus_zero = jax.jit(lambda a, b: a - b)(x, jnp.zeros_like(x))
        np.testing.assert_array_equal(np.asarray(y).view(bits), np.asarray(minus_zero).view(bits))
        assert "multiply" in fn.lower(x).compile().as_text()


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_dual_averaging_family_updates_are_the_plain_formulas_bit_for_bit(dtype):
    # The gradient sum and the dual point are computed with an exact multiply by an opaque one
    # (a code-generation choice for XLA:CPU): the results must be those of the plain
    # formulas, s + g and z - p, bit for bit, over steps with gradients of mixed scales.
    rng = np.random.default_rng(3)
    p0 = jnp.asarray(rng.standard_normal((7, 5)), dtype)
    grads = [jnp.asarray(rng.standard_normal((7, 5)) * 10.0 ** rng.integers(-6, 1), dtype)
             for _ in range(12)]

    def bits(x):
        return np.asarray(x).view(np.uint16 if jnp.dtype(x.dtype).itemsize == 2 else np.uint32)

    # dual averaging: z <- z - lr g (in float32 for bf16 accumulators), p <- p + (z - p)
    tx, p, z = sj.dual_averaging(0.1), p0, p0
    state = tx.init(p)
    for g in grads:
        z = (z.astype(jnp.float32) - jnp.float32(0.1) * g.astype(jnp.float32)).astype(dtype)
        u, state = tx.update(g, state, p)
        expected_u = (z - p).astype(dtype)
        np.testing.assert_array_equal(bits(u), bits(expected_u))
        p = optax.apply_updates(p, u)
    # RDA: the gradient sum is s + g in the accumulator's dtype
    tx = sj.rda(1.0, 1e-3)
    state, s = tx.init(p0), jnp.zeros_like(p0)
    for g in grads:
        s = (s + g).astype(dtype)
        _, state = tx.update(g, state, p0)
        np.testing.assert_array_equal(bits(state.grad_sum), bits(s))
