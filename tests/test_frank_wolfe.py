"""Frank-Wolfe transforms: the exact step rules against float64 hand computations, feasibility
of iterates, unconstrained leaves through optax.partition, NNX models, variance reduction on a
finite sum, and SFW-Init."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sparsejax as sj
from sparsejax import constraints as C
from sparsejax.models import create as create_model
from sparsejax.optim.frank_wolfe import (
    frank_wolfe_step_size,
    one_shot_fw,
    saga_fw,
    sfw,
    sfw_init,
    svrf,
)

# --- independent float64 references -----------------------------------------------------------


def np_lmo(con, g):
    g = np.asarray(g, np.float64)
    flat = g.ravel()
    n = flat.size
    v = np.zeros(n)
    if isinstance(con, C.KSparsePolytope):
        k = max(1, min(max(con.k or 0, math.floor((con.k_frac or 0) * n + 1e-9)), n))
        top = np.argsort(-np.abs(flat), kind="stable")[:k]
        v[top] = -con.radius * np.sign(flat[top])
    elif isinstance(con, C.LpBall) and con.p == 2:
        v = -con.radius * flat / np.linalg.norm(flat)
    elif isinstance(con, C.LpBall) and con.p == 1:
        i = int(np.argmax(np.abs(flat)))
        v[i] = -con.radius * np.sign(flat[i])
    else:
        raise NotImplementedError(con)
    return v.reshape(g.shape)


def np_diameter(con, shape):
    n = int(np.prod(shape))
    if isinstance(con, C.KSparsePolytope):
        k = max(1, min(max(con.k or 0, math.floor((con.k_frac or 0) * n + 1e-9)), n))
        return 2 * con.radius * math.sqrt(k)
    return 2 * con.radius  # L1 and L2 balls


def np_fw_step(p, d, con, lr, rescale):
    v = np_lmo(con, d)
    if rescale == "gradient":
        den = np.linalg.norm(p - v)
        factor = np.linalg.norm(d) / den if den > 0 else 0.0
    elif rescale == "diameter":
        factor = 1.0 / np_diameter(con, p.shape)
    else:
        factor = 1.0
    eta = min(max(lr * factor, 0.0), 1.0)
    return (1 - eta) * p + eta * v


CONS = {"a": C.k_sparse_polytope(k=3, radius=0.8), "b": C.l2_ball(1.0)}


def _start(seed=0):
    rng = np.random.default_rng(seed)
    params = {"a": jnp.asarray(rng.normal(0, 0.1, (3, 4)), jnp.float32),
              "b": jnp.asarray(rng.normal(0, 0.2, (5,)), jnp.float32)}
    grads = [
        {"a": jnp.asarray(rng.normal(0, 1, (3, 4)), jnp.float32),
         "b": jnp.asarray(rng.normal(0, 1, (5,)), jnp.float32)}
        for _ in range(4)
    ]
    return params, grads


def _run(tx, params, grads_seq, **extra):
    state = tx.init(params)
    out = []
    step = jax.jit(lambda p, s, g: tx.update(g, s, p, **extra))
    for g in grads_seq:
        updates, state = step(params, state, g)
        params = optax.apply_updates(params, updates)
        out.append(params)
    return out, state


@pytest.mark.parametrize(
    "rescale,lr",
    [("gradient", 0.3), ("diameter", 1.0), (None, 0.3), ("gradient", optax.linear_schedule(0.5, 0.1, 3))],
    ids=["gradient", "diameter", "none", "gradient_schedule"],
)
def test_sfw_matches_hand_computation(rescale, lr):
    params, grads = _start()
    rho = 0.9
    got, state = _run(sfw(lr, CONS, momentum=rho, rescale=rescale), params, grads)
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    m = {}
    etas = []
    for t, g in enumerate(grads):
        lr_t = float(lr(t)) if callable(lr) else lr
        for key in ("a", "b"):
            g64 = np.asarray(g[key], np.float64)
            m[key] = g64 if t == 0 else rho * m[key] + (1 - rho) * g64  # m_0 = g_0
            new = np_fw_step(p[key], m[key], CONS[key], lr_t, rescale)
            etas.append(np.linalg.norm(new - p[key]))
            p[key] = new
        for key in ("a", "b"):
            np.testing.assert_allclose(got[t][key], p[key], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.momentum["a"], m["a"], rtol=1e-5, atol=1e-6)
    assert int(state.count) == 4
    assert min(etas) > 1e-3  # the steps really moved (the check is not vacuous)


def test_sfw_without_momentum_and_zero_learning_rate():
    params, grads = _start(1)
    got, _ = _run(sfw(0.0, CONS), params, grads)
    np.testing.assert_array_equal(got[-1]["a"], params["a"])
    got, _ = _run(sfw(0.4, CONS, momentum=0.0, rescale=None), params, grads)
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    for g in grads:
        p = {k: np_fw_step(p[k], np.asarray(g[k], np.float64), CONS[k], 0.4, None) for k in p}
    np.testing.assert_allclose(got[-1]["b"], p["b"], rtol=1e-5, atol=1e-6)


def test_one_shot_fw_matches_hand_computation():
    params, grads = _start(2)
    got, _ = _run(one_shot_fw(frank_wolfe_step_size(shift=8), CONS), params, grads)
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    d = {k: np.zeros_like(v) for k, v in p.items()}
    for t, g in enumerate(grads, start=1):
        rho, eta = 4 / (t + 8) ** (2 / 3), 2 / (t + 8)
        for key in p:
            d[key] = (1 - rho) * d[key] + rho * np.asarray(g[key], np.float64)
            p[key] = np_fw_step(p[key], d[key], CONS[key], eta, None)
        for key in p:
            np.testing.assert_allclose(got[t - 1][key], p[key], rtol=1e-5, atol=1e-6)


def test_frank_wolfe_step_size():
    sched = frank_wolfe_step_size()
    assert [float(sched(c)) for c in range(3)] == pytest.approx([1.0, 2 / 3, 0.5])
    assert float(frank_wolfe_step_size(8)(0)) == pytest.approx(2 / 9)


def test_svrf_uses_the_variance_reduced_estimate():
    params, grads = _start(3)
    rng = np.random.default_rng(4)
    snap = jax.tree.map(lambda g: jnp.asarray(rng.normal(size=g.shape), jnp.float32), grads[0])
    full = jax.tree.map(lambda g: jnp.asarray(rng.normal(size=g.shape), jnp.float32), grads[0])
    tx = svrf(0.5, CONS, rescale="gradient")
    got, _ = _run(tx, params, grads[:2], snapshot_grads=snap, snapshot_full_grads=full)
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    for g in grads[:2]:
        for key in p:
            d = np.asarray(g[key], np.float64) - np.asarray(snap[key]) + np.asarray(full[key])
            p[key] = np_fw_step(p[key], d, CONS[key], 0.5, "gradient")
    for key in p:
        np.testing.assert_allclose(got[-1][key], p[key], rtol=1e-5, atol=1e-6)


def test_saga_fw_matches_hand_computation():
    n = 4
    params, _ = _start(5)
    rng = np.random.default_rng(6)
    batches = [np.array([0, 2]), np.array([2, 3]), np.array([1, 0])]
    per_sample = [
        {k: jnp.asarray(rng.normal(size=(2,) + v.shape), jnp.float32) for k, v in params.items()}
        for _ in batches
    ]
    tx = saga_fw(0.4, CONS, num_samples=n, rescale="diameter")
    state = tx.init(params)
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    table = {k: np.zeros((n,) + v.shape) for k, v in p.items()}
    jp = params
    for idx, ps in zip(batches, per_sample):
        grads = jax.tree.map(lambda x: x.mean(0), ps)
        updates, state = tx.update(grads, state, jp, indices=jnp.asarray(idx), per_sample_grads=ps)
        jp = optax.apply_updates(jp, updates)
        for key in p:
            ps64 = np.asarray(ps[key], np.float64)
            d = ps64.mean(0) - table[key][idx].mean(0) + table[key].mean(0)
            table[key][idx] = ps64
            p[key] = np_fw_step(p[key], d, CONS[key], 0.4, "diameter")
        for key in p:
            np.testing.assert_allclose(jp[key], p[key], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(state.table[key], table[key], rtol=1e-6)
            np.testing.assert_allclose(state.table_mean[key], table[key].mean(0), rtol=1e-5, atol=1e-7)


def test_float64_params_get_float64_frank_wolfe_steps():
    # Under jax_enable_x64, float64 params and gradients are stepped in float64: every transform
    # equals the float64 NumPy reference to 1e-12, and an LMO decided by a 1e-12 difference of
    # the gradient picks the right vertex (it picked the other one when steps ran in float32).
    def rel(a, b):
        return float(np.max(np.abs(np.asarray(a) - b)) / max(np.max(np.abs(b)), 1e-300))

    with jax.enable_x64(True):
        p0, g32 = _start(7)
        params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), p0)
        grads = [jax.tree.map(lambda x: jnp.asarray(x, jnp.float64) / 3, g) for g in g32]
        np_p = {k: np.asarray(v, np.float64) for k, v in params.items()}
        np_g = [{k: np.asarray(v, np.float64) for k, v in g.items()} for g in grads]

        for rescale in ("gradient", "diameter", None):
            tx = sfw(0.3, CONS, momentum=0.9, rescale=rescale)
            got, state = _run(tx, params, grads)
            p, m = dict(np_p), {}
            for t, g in enumerate(np_g):
                for k in p:
                    m[k] = g[k] if t == 0 else 0.9 * m[k] + 0.1 * g[k]
                    p[k] = np_fw_step(p[k], m[k], CONS[k], 0.3, rescale)
            for k in p:
                assert got[-1][k].dtype == jnp.float64 and state.momentum[k].dtype == jnp.float64
                assert rel(got[-1][k], p[k]) <= 1e-12, (rescale, k)
                assert rel(state.momentum[k], m[k]) <= 1e-12, (rescale, k)

        got, _ = _run(one_shot_fw(frank_wolfe_step_size(shift=8), CONS), params, grads)
        p, d = dict(np_p), {k: np.zeros_like(v) for k, v in np_p.items()}
        for t, g in enumerate(np_g, start=1):
            rho, eta = 4 / (t + 8) ** (2 / 3), 2 / (t + 8)
            for k in p:
                d[k] = (1 - rho) * d[k] + rho * g[k]
                p[k] = np_fw_step(p[k], d[k], CONS[k], eta, None)
        assert all(rel(got[-1][k], p[k]) <= 1e-12 for k in p)

        snap, full = grads[1], grads[2]
        got, _ = _run(svrf(0.5, CONS, rescale="gradient"), params, grads[:2],
                      snapshot_grads=snap, snapshot_full_grads=full)
        p = dict(np_p)
        for g in np_g[:2]:
            for k in p:
                direction = g[k] - np.asarray(snap[k]) + np.asarray(full[k])
                p[k] = np_fw_step(p[k], direction, CONS[k], 0.5, "gradient")
        assert all(rel(got[-1][k], p[k]) <= 1e-12 for k in p)

        tx = saga_fw(0.4, CONS, num_samples=3, rescale="diameter")
        state, jp = tx.init(params), params
        p, table = dict(np_p), {k: np.zeros((3,) + v.shape) for k, v in np_p.items()}
        for idx in (np.array([0, 2]), np.array([1, 2])):
            ps = {k: jnp.stack([grads[i][k] for i in idx]) for k in params}
            updates, state = tx.update(jax.tree.map(lambda x: x.mean(0), ps), state, jp,
                                       indices=jnp.asarray(idx), per_sample_grads=ps)
            jp = optax.apply_updates(jp, updates)
            for k in p:
                ps64 = np.asarray(ps[k])
                direction = ps64.mean(0) - table[k][idx].mean(0) + table[k].mean(0)
                table[k][idx] = ps64
                p[k] = np_fw_step(p[k], direction, CONS[k], 0.4, "diameter")
        assert all(rel(jp[k], p[k]) <= 1e-12 for k in p)

        # the vertex: the second entry's |g| is larger by 1e-12, so the 1-sparse LMO takes it
        w = {"w": jnp.zeros(2, jnp.float64)}
        g = {"w": -jnp.array([1.0, 1.0 + 1e-12], jnp.float64)}
        for tx in (sfw(1.0, C.k_sparse_polytope(k=1), momentum=0.0, rescale=None),
                   one_shot_fw(1.0, C.k_sparse_polytope(k=1), rho=1.0)):
            updates, _ = tx.update(g, tx.init(w), w)
            np.testing.assert_array_equal(updates["w"], [0.0, 1.0])
        assert frank_wolfe_step_size()(jnp.asarray(1)).dtype == jnp.float64


# --- feasibility of iterates -------------------------------------------------------------------

FEAS_SETS = {
    "k_sparse": lambda x: C.k_sparse_polytope(k_frac=0.2, radius=0.3),
    "l1": lambda x: C.l1_ball(0.7),
    "l2": lambda x: C.l2_ball(0.5),
    "linf": lambda x: C.linf_ball(0.1),
    "lp3": lambda x: C.lp_ball(3.0, 0.4),
    "simplex": lambda x: C.simplex(2.0),
}
_STEPS: dict = {}


def _feasibility_step(kind, rescale, dtype):
    key = (kind, rescale, dtype)
    if key not in _STEPS:
        make = FEAS_SETS[kind]

        @jax.jit
        def run(params, grads, lr, momentum):
            cons = jax.tree.map(make, params)
            tx = sfw(lr, cons, momentum=momentum, rescale=rescale)
            state = tx.init(params)
            ok = []
            for g in grads:
                updates, state = tx.update(g, state, params)
                params = optax.apply_updates(params, updates)
                ok.append(C.is_feasible(params, cons, rtol=1e-2 if dtype == jnp.bfloat16 else 1e-5))
            return jnp.stack(ok), params

        _STEPS[key] = run
    return _STEPS[key]


@settings(max_examples=30, deadline=None)
@given(
    kind=st.sampled_from(sorted(FEAS_SETS)),
    rescale=st.sampled_from(["gradient", "diameter", None]),
    dtype=st.sampled_from([jnp.float32, jnp.bfloat16]),
    seed=st.integers(0, 2**16),
    lr=st.floats(0.0, 20.0),
    momentum=st.floats(0.0, 0.99),
    scale=st.floats(0.01, 100.0),
)
def test_iterates_stay_feasible(kind, rescale, dtype, seed, lr, momentum, scale):
    rng = np.random.default_rng(seed)
    raw = {"w": jnp.asarray(rng.normal(size=(4, 6)), dtype), "v": jnp.asarray(rng.normal(size=7), dtype)}
    cons = jax.tree.map(FEAS_SETS[kind], raw)
    params = C.make_feasible(raw, cons)
    grads = [
        jax.tree.map(lambda x: jnp.asarray(scale * rng.normal(size=x.shape), dtype), raw)
        for _ in range(4)
    ]
    ok, final = _feasibility_step(kind, rescale, dtype)(params, grads, lr, momentum)
    assert bool(jnp.all(ok)), (kind, rescale, np.asarray(ok))
    assert jax.tree.map(lambda x: x.dtype, final) == jax.tree.map(lambda x: x.dtype, raw)


# --- unconstrained leaves, partition, NNX --------------------------------------------------------


def _mlp_params(seed):
    rng = np.random.default_rng(seed)
    return {
        "hidden": {"kernel": jnp.asarray(rng.normal(0, 0.5, (4, 8)), jnp.float32), "bias": jnp.zeros(8)},
        "out": {"kernel": jnp.asarray(rng.normal(0, 0.5, (8, 3)), jnp.float32), "bias": jnp.zeros(3)},
    }


def test_unconstrained_leaves_are_an_error_naming_them():
    params = _mlp_params(0)
    cons = C.constraints_from_init(_mlp_params, "k_sparse", k_frac=0.25, value=2.0, mask=sj.tree.weights_only)
    grads = jax.tree.map(jnp.ones_like, params)
    for tx in (sfw(0.1, cons), svrf(0.1, cons), saga_fw(0.1, cons, 2), one_shot_fw(0.1, cons)):
        with pytest.raises(ValueError, match=r"hidden/bias.*optax.partition"):
            tx.update(grads, tx.init(params), params)
    explicit = jax.tree.map(lambda c: C.unconstrained() if c is None else c, cons, is_leaf=lambda x: x is None)
    with pytest.raises(ValueError, match="hidden/bias"):
        sfw(0.1, explicit).update(grads, sfw(0.1, explicit).init(params), params)


def test_partition_recipe_trains_unconstrained_leaves_with_sgd():
    params = _mlp_params(1)
    cons = C.constraints_from_init(_mlp_params, "k_sparse", k_frac=0.25, value=2.0, mask=sj.tree.weights_only)
    params = C.make_feasible(params, cons)
    tx = optax.partition(
        {"frank_wolfe": sfw(0.3, cons), "unconstrained": optax.sgd(0.05)},
        lambda p: C.partition_labels(cons, p),
    )
    rng = np.random.default_rng(2)
    grads = [jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), params) for _ in range(3)]
    got, _ = _run(tx, params, grads)
    kernels = lambda t: {k: {"kernel": v["kernel"]} for k, v in t.items()}  # noqa: E731
    alone, _ = _run(sfw(0.3, cons), kernels(params), [kernels(g) for g in grads])
    for layer in ("hidden", "out"):
        np.testing.assert_allclose(got[-1][layer]["kernel"], alone[-1][layer]["kernel"], rtol=1e-6)
        expected_bias = params[layer]["bias"] - 0.05 * sum(g[layer]["bias"] for g in grads)
        np.testing.assert_allclose(got[-1][layer]["bias"], expected_bias, rtol=1e-5, atol=1e-6)
    assert bool(C.is_feasible(got[-1], cons))


def test_variance_reduced_variants_inside_partition_accept_unmasked_extra_args():
    params = _mlp_params(3)
    cons = C.constraints_from_init(_mlp_params, "l2", value=1.0, mask=sj.tree.weights_only)
    params = C.make_feasible(params, cons)
    labels = C.partition_labels(cons, params)
    grads = jax.tree.map(lambda x: jnp.full_like(x, 0.5), params)
    snap = jax.tree.map(lambda x: jnp.full_like(x, 0.25), params)
    tx = optax.partition({"frank_wolfe": svrf(0.5, cons), "unconstrained": optax.sgd(0.1)}, labels)
    updates, _ = tx.update(grads, tx.init(params), params, snapshot_grads=snap, snapshot_full_grads=snap)
    # direction = g - snap + snap = g, so this equals SFW without momentum
    ref = optax.partition({"frank_wolfe": sfw(0.5, cons, momentum=0.0, rescale=None), "unconstrained": optax.sgd(0.1)}, labels)
    ref_updates, _ = ref.update(grads, ref.init(params), params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), updates, ref_updates)
    per = jax.tree.map(lambda x: jnp.stack([x, x]), grads)
    tx = optax.partition({"frank_wolfe": saga_fw(0.5, cons, 4), "unconstrained": optax.sgd(0.1)}, labels)
    updates, state = tx.update(grads, tx.init(params), params, indices=jnp.array([1, 3]), per_sample_grads=per)
    table = state.inner_states["frank_wolfe"].inner_state.table
    np.testing.assert_allclose(table["out"]["kernel"][1], grads["out"]["kernel"])


def test_sfw_trains_a_zoo_model_with_nnx_optimizer():
    from flax import nnx

    def sample(seed):
        model = create_model("mlp", 3, input_shape=(4, 4, 1), hidden=(16,), rngs=seed)
        return nnx.to_pure_dict(nnx.state(model, nnx.Param))

    cons = C.constraints_from_init(sample, "k_sparse", k_frac=0.1, value=1.0, num_samples=3)
    model = create_model("mlp", 3, input_shape=(4, 4, 1), hidden=(16,), rngs=7)
    nnx.update(model, C.make_feasible(nnx.state(model, nnx.Param), cons))
    optimizer = nnx.Optimizer(model, sfw(0.5, cons), wrt=nnx.Param)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(32, 4, 4, 1)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, 32))

    def loss(m):
        return optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()

    @nnx.jit
    def step(model, optimizer):
        value, grads = nnx.value_and_grad(loss)(model)
        optimizer.update(model, grads)
        return value

    losses = [float(step(model, optimizer)) for _ in range(8)]
    assert losses[-1] < losses[0]
    assert bool(C.is_feasible(nnx.to_pure_dict(nnx.state(model, nnx.Param)), cons))


# --- variance reduction on a convex finite sum --------------------------------------------------


def _least_squares(seed, n=200, d=30):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, d)).astype(np.float32)
    x_true = np.zeros(d, np.float32)
    x_true[:5] = rng.normal(size=5) * 3
    b = (a @ x_true + 2.0 * rng.normal(size=n)).astype(np.float32)  # noisy: gradients disagree at x*
    # K-sparse polytope with K = 3 and half of x_true's L1 norm: the constraint is active
    con = C.k_sparse_polytope(k=3, radius=float(np.abs(x_true).sum()) / 6)
    return jnp.asarray(a), jnp.asarray(b), con


def _solve(method, seed, budget=3000, batch=10, snapshot_every=10):
    """Runs ``method`` for ``budget`` per-sample gradient evaluations; returns the FW gap."""
    a, b, con = _least_squares(seed)
    n, d = a.shape
    full = jax.jit(lambda x: a.T @ (a @ x - b) / n)
    per_sample = jax.jit(lambda x, idx: a[idx] * (a[idx] @ x - b[idx])[:, None])
    rng = np.random.default_rng(100 + seed)
    x = {"w": jnp.zeros(d)}
    step_size = frank_wolfe_step_size()  # eta_t = 2 / (t + 2) for every method
    evals = 0
    if method == "sfw":
        tx = sfw(step_size, con, momentum=0.0, rescale=None)  # plain SFW
    elif method == "svrf":
        tx = svrf(step_size, con)
    else:
        tx = saga_fw(step_size, con, num_samples=n)
    state = tx.init(x)

    @jax.jit
    def step(x, state, idx, snapshot, snapshot_full):
        g_i = per_sample(x["w"], idx)
        grads = {"w": g_i.mean(0)}
        extra = {}
        if method == "svrf":
            extra = dict(snapshot_grads={"w": per_sample(snapshot["w"], idx).mean(0)},
                         snapshot_full_grads=snapshot_full)
        elif method == "saga_fw":
            extra = dict(indices=idx, per_sample_grads={"w": g_i})
        updates, state = tx.update(grads, state, x, **extra)
        return optax.apply_updates(x, updates), state

    snapshot, snapshot_full, cost = x, {"w": jnp.zeros(d)}, batch
    t = 0
    while True:
        if method == "svrf":
            cost = 2 * batch
            if t % snapshot_every == 0:
                if evals + n + cost > budget:
                    break
                snapshot, snapshot_full = x, {"w": full(x["w"])}
                evals += n
        if evals + cost > budget:
            break
        idx = jnp.asarray(rng.integers(0, n, batch))
        x, state = step(x, state, idx, snapshot, snapshot_full)
        evals += cost
        t += 1
    return float(C.fw_gap({"w": full(x["w"])}, x, con))


@pytest.mark.parametrize("seed", [0, 1])
def test_variance_reduction_beats_plain_sfw_at_equal_gradient_evaluations(seed):
    plain = _solve("sfw", seed)
    for method in ("svrf", "saga_fw"):
        gap = _solve(method, seed)
        # typically 100x lower; a 4x margin keeps the test far from the noise
        assert 0 <= gap < plain / 4, (method, gap, plain)


# --- SFW-Init --------------------------------------------------------------------------------


def _init_mlp(seed, din=20, hidden=32, classes=5):
    k1, k2 = jax.random.split(jax.random.key(seed))
    return {
        "l1": {"kernel": jax.random.normal(k1, (din, hidden)) / np.sqrt(din), "bias": jnp.zeros(hidden)},
        "l2": {"kernel": jax.random.normal(k2, (hidden, classes)) / np.sqrt(hidden), "bias": jnp.zeros(classes)},
    }


def _mlp_loss(params, batch):
    x, y = batch
    h = jax.nn.relu(x @ params["l1"]["kernel"] + params["l1"]["bias"])
    logits = h @ params["l2"]["kernel"] + params["l2"]["bias"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def _teacher_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 20)).astype(np.float32)
    y = np.argmax(x @ rng.normal(size=(20, 5)), 1)
    return jnp.asarray(x), jnp.asarray(y)


@pytest.mark.parametrize("seed", [10, 11])
def test_sfw_init_lowers_the_loss_of_the_first_sfw_steps(seed):
    x, y = _teacher_data()
    cons = C.constraints_from_init(_init_mlp, "k_sparse", k_frac=0.1, value=15.0, num_samples=3)
    plain = C.make_feasible(_init_mlp(seed), cons)
    # two overlapping minibatches (the second replaces half of the first)
    result = sfw_init(
        _mlp_loss, plain, cons, (x[:64], y[:64]), (x[32:96], y[32:96]),
        learning_rate=0.1, scale_learning_rate=0.5, steps=10,
    )
    assert bool(C.is_feasible(result.params, cons))
    assert float(result.losses[-1]) < float(result.losses[0])

    tx = sfw(0.1, cons)

    @jax.jit
    def train(params):
        state = tx.init(params)
        losses = []
        for t in range(3):
            batch = (x[64 * t: 64 * t + 64], y[64 * t: 64 * t + 64])
            updates, state = tx.update(jax.grad(_mlp_loss)(params, batch), state, params)
            params = optax.apply_updates(params, updates)
            losses.append(_mlp_loss(params, (x, y)))
        return jnp.stack(losses)

    base, learned = np.asarray(train(plain)), np.asarray(train(result.params))
    assert np.all(learned < base - 0.01), (base, learned)


def test_sfw_init_bounds_unconstrained_leaves_and_stacked_batches():
    x, y = _teacher_data()
    cons = C.constraints_from_init(_init_mlp, "l2", value=0.6, num_samples=2, mask=sj.tree.weights_only)
    params = C.make_feasible(_init_mlp(3), cons)
    stacked_a = (x[:96].reshape(3, 32, 20), y[:96].reshape(3, 32))
    stacked_b = (x[16:112].reshape(3, 32, 20), y[16:112].reshape(3, 32))
    result = sfw_init(
        _mlp_loss, params, cons, stacked_a, stacked_b, learning_rate=0.2, scale_learning_rate=5.0,
        steps=3, min_scale={"l1": 0.9, "l2": 0.5}, stacked=True,
    )
    assert result.losses.shape == (3,)
    assert float(result.scales["l1"]["bias"]) == 1.0 and float(result.scales["l2"]["bias"]) == 1.0
    assert float(result.scales["l1"]["kernel"]) >= 0.9 - 1e-6
    assert float(result.scales["l2"]["kernel"]) >= 0.5 - 1e-6
    for layer in ("l1", "l2"):
        # never beyond the largest scale that keeps the kernel in its ball
        assert float(result.scales[layer]["kernel"]) <= float(cons[layer]["kernel"].max_scale(params[layer]["kernel"])) + 1e-6
        np.testing.assert_array_equal(result.params[layer]["bias"], params[layer]["bias"])
    assert bool(C.is_feasible(result.params, cons))


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: sfw(-0.1, CONS), "learning_rate"),
        (lambda: sfw(0.1, CONS, momentum=1.0), "momentum"),
        (lambda: sfw(0.1, CONS, rescale="norm"), "rescale"),
        (lambda: sfw(0.1, None), "constraints is None"),
        (lambda: sfw(0.1, {"a": 1.0}), "constraints must be"),
        (lambda: one_shot_fw(0.1, CONS, rho=0.0), "rho"),
        (lambda: saga_fw(0.1, CONS, num_samples=0), "num_samples"),
        (lambda: saga_fw(0.1, CONS, num_samples=2.5), "num_samples"),
        (lambda: frank_wolfe_step_size(shift=-1.0), "shift"),
        (lambda: sfw_init(_mlp_loss, {}, CONS, None, None, steps=0), "steps"),
        (lambda: sfw_init(_mlp_loss, {}, CONS, None, None, min_scale=0.0), "min_scale"),
    ],
)
def test_bad_arguments_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_missing_params_and_extra_args_raise():
    params, grads = _start()
    with pytest.raises(ValueError, match="needs the current params"):
        sfw(0.1, CONS).update(grads[0], sfw(0.1, CONS).init(params))
    tx = svrf(0.1, CONS)
    with pytest.raises(ValueError, match="snapshot_grads"):
        tx.update(grads[0], tx.init(params), params)
    with pytest.raises(ValueError, match="snapshot_full_grads"):
        tx.update(grads[0], tx.init(params), params, snapshot_grads=grads[1])
    with pytest.raises(ValueError, match="structure"):
        tx.update(grads[0], tx.init(params), params, snapshot_grads=[1.0], snapshot_full_grads=grads[1])
    tx = saga_fw(0.1, CONS, num_samples=3)
    with pytest.raises(ValueError, match="indices"):
        tx.update(grads[0], tx.init(params), params)
    with pytest.raises(ValueError, match="len\\(indices\\)"):
        tx.update(grads[0], tx.init(params), params, indices=jnp.array([0, 1]), per_sample_grads=grads[1])
