"""sparsejax.directional: Hessian-vector products, Lanczos/SLQ/Hutchinson, the flat projector, DP.

The spectral checks run in float64 (``jax.enable_x64``) against ``eigh`` of the
explicit Hessian, so their tolerances hold for a reason (the Lanczos residual
bounds are asserted too), not by rounding luck.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

import sparsejax as sj

# The module-scoped fixtures (compiled programs, trained runs) are built once: one worker.
pytestmark = pytest.mark.xdist_group("directional")

dp = sj.directional


# --- a small MLP with a dataset -----------------------------------------------------------------


def _mlp_problem(seed: int = 0, n: int = 64, din: int = 8, hidden: int = 20, classes: int = 4):
    """A tanh MLP (264 parameters), its per-example cross-entropy and a dataset, in float64."""
    rng = np.random.default_rng(seed)
    params = {
        "l1": {"kernel": jnp.asarray(rng.normal(0, 0.6, (din, hidden))),
               "bias": jnp.asarray(rng.normal(0, 0.1, hidden))},
        "l2": {"kernel": jnp.asarray(rng.normal(0, 0.6, (hidden, classes))),
               "bias": jnp.asarray(rng.normal(0, 0.1, classes))},
    }
    data = {"x": jnp.asarray(rng.normal(0, 1, (n, din))),
            "y": jnp.asarray(rng.integers(0, classes, n), jnp.int32)}

    def losses(p, batch):
        h = jnp.tanh(batch["x"] @ p["l1"]["kernel"] + p["l1"]["bias"])
        logits = h @ p["l2"]["kernel"] + p["l2"]["bias"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"])

    def mean_loss(p):
        return jnp.mean(losses(p, data))

    return params, data, losses, mean_loss


def _dense_hessian(mean_loss, params) -> np.ndarray:
    flat, unravel = ravel_pytree(params)
    return np.asarray(jax.jit(jax.hessian(lambda x: mean_loss(unravel(x))))(flat))


def _flat_rows(tree_with_leading_axis) -> np.ndarray:
    return np.asarray(jax.vmap(lambda t: ravel_pytree(t)[0])(tree_with_leading_axis))


@pytest.fixture(scope="module")
def mlp():
    """The float64 MLP problem, its DatasetLoss (64 examples in batches of 24: a padded last batch)
    and its explicit Hessian; shared so that each program is compiled once."""
    with jax.enable_x64(True):
        params, data, losses, mean_loss = _mlp_problem()
        loss = dp.DatasetLoss(losses, data, batch_size=24)
        return params, data, mean_loss, loss, _dense_hessian(mean_loss, params)


def test_dataset_loss_is_exact_over_a_padded_last_batch(mlp):
    params, data, mean_loss, loss, h = mlp
    with jax.enable_x64(True):
        assert (loss.num_batches, loss.batch_size, loss.num_examples) == (3, 24, 64)
        v = jax.tree.map(lambda x: jnp.cos(3.0 * x), params)
        np.testing.assert_allclose(float(loss.value(params)), float(mean_loss(params)), rtol=1e-13)
        want_g = jax.grad(mean_loss)(params)
        hv = loss.hvp(params, v)
        for got, want in ((loss.grad(params), want_g), (dp.hvp(mean_loss, params, v), hv)):
            for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
                assert a.dtype == b.dtype == jnp.float64
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-11, atol=1e-13)
        # forward-over-reverse over the padded batches equals the explicit Hessian times v
        np.testing.assert_allclose(ravel_pytree(hv)[0], h @ ravel_pytree(v)[0], rtol=1e-10,
                                   atol=1e-12)


def test_lanczos_top10_matches_eigh_of_the_explicit_hessian(mlp):
    params, data, mean_loss, loss, h = mlp
    with jax.enable_x64(True):
        exact_vals, exact_vecs = np.linalg.eigh(h)
        exact_vals, exact_vecs = exact_vals[::-1], exact_vecs[:, ::-1]
        assert h.shape == (264, 264)
        # the top-10 subspace is well defined: a clear gap after the 10th eigenvalue
        assert exact_vals[9] - exact_vals[10] > 1e-3 * exact_vals[0]

        eig = dp.top_eigenpairs(loss, params, k=10, num_steps=60, seed=3)
        np.testing.assert_allclose(np.asarray(eig.values), exact_vals[:10], rtol=1e-4)
        # the Ritz residual bounds hold and say the pairs have converged
        assert np.all(np.asarray(eig.residuals) < 1e-4 * exact_vals[0])
        v = _flat_rows(eig.vectors)  # (10, d)
        np.testing.assert_allclose(v @ v.T, np.eye(10), atol=1e-10)
        # principal angles between span(Lanczos) and span(eigh): all cosines are 1
        cosines = np.linalg.svd(v @ exact_vecs[:, :10], compute_uv=False)
        assert cosines.min() > 1 - 1e-8, cosines
        # each Ritz pair is an eigenpair of the explicit Hessian, within its residual bound
        res = np.linalg.norm(h @ v.T - v.T * np.asarray(eig.values)[None], axis=0)
        assert np.all(res <= np.asarray(eig.residuals) + 1e-9)

        # the exact path (eigh of the Hessian built from HVPs) agrees; the same seed, the same result
        ex = dp.exact_eigenpairs(loss, params, k=10)
        np.testing.assert_allclose(np.asarray(ex.values), exact_vals[:10], rtol=1e-10)
        assert np.all(np.asarray(ex.residuals) < 1e-10)
        again = dp.top_eigenpairs(loss, params, k=10, num_steps=60, seed=3)
        np.testing.assert_array_equal(np.asarray(again.values), np.asarray(eig.values))


def test_slq_density_integrates_to_one_and_its_mean_is_the_trace_over_d(mlp):
    params, data, mean_loss, loss, h = mlp
    with jax.enable_x64(True):
        d = h.shape[0]
        probes = 24
        sd = dp.spectral_density(loss, params, num_probes=probes, num_steps=30, seed=5)
        assert sd.nodes.shape == sd.weights.shape == (probes, 30) and sd.num_params == d
        np.testing.assert_allclose(sd.weights.sum(), 1.0, rtol=1e-12)
        assert np.all(sd.weights >= 0)
        grid, density = dp.density_curve(sd)
        np.testing.assert_allclose(np.trapezoid(density, grid), 1.0, rtol=1e-6)
        # the first moment is sum_l v_l^T H v_l / (n d) with the probes of Hutchinson's estimate:
        # an identity (Gauss quadrature is exact for degree 1) ...
        tr = dp.hutchinson_trace(loss, params, num_probes=probes, seed=5)
        np.testing.assert_allclose(sd.moment(1) * d, tr.trace, rtol=1e-10)
        # ... and an unbiased estimate of tr(H)/d, within 4 of its exact standard deviations
        sigma = math.sqrt(2.0 * (np.sum(h**2) - np.sum(np.diag(h) ** 2)) / probes)
        assert abs(tr.trace - np.trace(h)) < 4 * sigma, (tr.trace, np.trace(h), sigma)
        assert abs(sd.moment(1) - np.trace(h) / d) < 4 * sigma / d
        # SLQ's nodes lie inside the spectrum
        ev = np.linalg.eigvalsh(h)
        assert sd.nodes.min() >= ev[0] - 1e-9 and sd.nodes.max() <= ev[-1] + 1e-9


def test_hutchinson_is_exact_for_a_diagonal_hessian():
    w = {"a": jnp.ones((2, 2)), "b": jnp.ones(3)}
    diag = {"a": jnp.array([[1.0, 2.0], [3.0, 4.0]]), "b": jnp.array([0.5, 0.0, -1.0])}
    f = lambda p: 0.5 * sum(jnp.sum(d * x**2) for d, x in zip(jax.tree.leaves(diag), jax.tree.leaves(p)))
    tr = dp.hutchinson_trace(f, w, num_probes=5, seed=0)
    assert tr.trace == pytest.approx(9.5, rel=1e-6) and tr.standard_error == pytest.approx(0.0, abs=1e-6)


# --- the flat projector and the scores -----------------------------------------------------------


def _quadratic(seed: int = 0, rank: int = 4):
    """L(w) = 1/2 (w - c)^T A (w - c) on a pytree of 12 parameters, A of rank 4 (a flat subspace of dim 8)."""
    rng = np.random.default_rng(seed)
    d = 12
    u, _ = np.linalg.qr(rng.normal(size=(d, d)))
    lam = np.zeros(d)
    lam[:rank] = [5.0, 3.0, 2.0, 0.7]
    a = (u * lam) @ u.T
    c = rng.normal(size=d)
    w = {"a": jnp.asarray(rng.normal(size=(3, 2))), "b": jnp.asarray(rng.normal(size=6))}

    def loss(p):
        x = ravel_pytree(p)[0] - c
        return 0.5 * x @ jnp.asarray(a) @ x

    return w, loss, u[:, :rank], a


def test_projector_is_idempotent_symmetric_and_annihilates_retained_eigenvectors(mlp):
    params, data, mean_loss, loss, h = mlp
    with jax.enable_x64(True):
        eig = dp.top_eigenpairs(loss, params, k=8, num_steps=60, seed=3)  # compiled already
        proj = dp.flat_projector(eig, k=6, tol=0.0)
        assert proj.rank == int(np.sum(np.asarray(eig.values[:6]) > 0))
        rng = np.random.default_rng(0)
        a, b = (jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape)), params) for _ in range(2))
        pa = proj(a)
        for x, y in zip(jax.tree.leaves(proj(pa)), jax.tree.leaves(pa)):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-12)
        assert float(dp._util.tree_vdot(pa, b)) == pytest.approx(float(dp._util.tree_vdot(a, proj(b))), rel=1e-12)
        for i in range(proj.rank):
            out = ravel_pytree(proj(eig.vector(i)))[0]
            assert float(jnp.max(jnp.abs(out))) < 1e-12
        # the not-retained eigenvectors are flat: the projector leaves them as they are
        keep = ravel_pytree(eig.vector(7))[0]
        np.testing.assert_allclose(ravel_pytree(proj(eig.vector(7)))[0], keep, atol=1e-12)
        # complement + projection = identity
        total = jax.tree.map(jnp.add, proj(a), proj.complement(a))
        for x, y in zip(jax.tree.leaves(total), jax.tree.leaves(a)):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-12)


def test_scores_on_a_quadratic_with_a_known_flat_subspace_equal_the_hand_computation():
    with jax.enable_x64(True):
        w, loss, u_steep, a = _quadratic()
        flat_w = np.asarray(ravel_pytree(w)[0])
        p0 = np.eye(12) - u_steep @ u_steep.T
        sgn = np.sign(flat_w)
        hand = sgn * (p0 @ sgn)
        # the exact path (eigenvalues 5, 3, 2, 0.7 and eight zeros) and the Lanczos path
        for proj in (dp.flat_projector(dp.exact_eigenpairs(loss, w), tol=1e-8),
                     dp.flat_projector(dp.top_eigenpairs(loss, w, k=4, num_steps=12), tol=1e-8)):
            assert proj.rank == 4
            s = dp.dp_scores(w, proj)
            np.testing.assert_allclose(ravel_pytree(s)[0], hand, atol=1e-10)
        # moving along -Pi_0 sign(w) keeps the loss exactly (a flat direction of the quadratic)
        step = jax.tree.map(lambda x, p: x - 0.3 * p, w, proj(jax.tree.map(jnp.sign, w)))
        assert float(loss(step)) == pytest.approx(float(loss(w)), rel=1e-12)
        # with a mask only 'a' moves: the direction is sign(w) on 'a', 0 on 'b'
        s = dp.dp_scores(w, proj, mask="^a")
        assert s["b"] is None
        direction = np.concatenate([sgn[:6], np.zeros(6)])
        np.testing.assert_allclose(np.asarray(s["a"]).ravel(), sgn[:6] * (p0 @ direction)[:6], atol=1e-10)


# --- directional pruning --------------------------------------------------------------------------


def _brute_force(a: float, kappa: float) -> np.ndarray:
    """argmin over a fine grid of 1/2 (x - a)^2 + kappa |x|, refined on a finer grid around the best."""
    f = lambda x: 0.5 * (x - a) ** 2 + kappa * np.abs(x)
    x = np.linspace(-6.0, 6.0, 240_001)  # spacing 5e-5
    best = x[np.argmin(f(x))]
    fine = np.linspace(best - 1e-4, best + 1e-4, 20_001)
    return fine[np.argmin(f(fine))]


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.1])
def test_dp_closed_form_equals_brute_force_for_positive_zero_and_negative_scores(lam):
    a = np.array([2.0, 0.4, -0.25, -1.7, 0.9, -0.05, 1.3, -2.2, 0.6])
    s = np.array([1.0, 0.8, 2.0, 0.3, 0.0, 0.0, -0.5, -1.0, -2.0])
    with jax.enable_x64(True):
        got = np.asarray(dp.directional_prune({"w": jnp.asarray(a)}, {"w": jnp.asarray(s)}, lam)["w"])
    want = np.array([_brute_force(ai, lam * si) for ai, si in zip(a, s)])
    np.testing.assert_allclose(got, want, atol=1e-8)
    # pruned entries are exact zeros; positive scores shrink, negative ones grow the magnitude
    assert np.all(got[(s > 0) & (np.abs(a) <= lam * s)] == 0.0)
    assert np.all(np.abs(got[s < 0]) >= np.abs(a[s < 0]))


def test_dp_at_a_zero_weight_with_a_negative_score_keeps_zero_as_documented():
    # two minimisers +-lam|s| tie there; dp_scores never produces this case (s = 0 where w = 0)
    out = dp.directional_prune({"w": jnp.array([0.0])}, {"w": jnp.array([-1.0])}, 0.5)["w"]
    assert float(out[0]) == 0.0
    f = lambda x: 0.5 * x**2 - 0.5 * abs(x)
    assert f(0.5) == f(-0.5) < f(0.0)
    s = dp.dp_scores({"w": jnp.array([0.0, 1.0])}, lambda v: v)
    assert float(s["w"][0]) == 0.0


def test_dp_keeps_dtypes_unselected_leaves_and_lambda_for_sparsity_hits_the_target():
    rng = np.random.default_rng(0)
    params = {"kernel": jnp.asarray(rng.normal(size=(10, 10)), jnp.float32),
              "bias": jnp.asarray(rng.normal(size=10), jnp.bfloat16)}
    scores = {"kernel": jnp.asarray(rng.uniform(-0.2, 1.0, (10, 10)), jnp.float32), "bias": None}
    lam = dp.lambda_for_sparsity(params, scores, 0.5, mask=sj.tree.weights_only)
    out = dp.directional_prune(params, scores, lam, mask=sj.tree.weights_only)
    assert out["kernel"].dtype == jnp.float32 and out["bias"] is params["bias"]
    assert int(jnp.sum(out["kernel"] == 0)) == 50
    with pytest.raises(ValueError, match="positive score"):
        dp.lambda_for_sparsity(params, scores, 0.99, mask=sj.tree.weights_only)
    with pytest.raises(ValueError, match="scores is None at 'bias'"):
        dp.directional_prune(params, scores, lam)


def test_lambda_for_sparsity_zeroes_the_target_in_the_weights_own_arithmetic():
    # The K-th ratio |w|/s in float64 can round to a float32 kappa = lam * s one unit below |w|,
    # which left that weight at ~1e-7 (6 of 200 random draws at sparsity 0.3): lam is raised to
    # the smallest value that zeroes it in the leaf's dtype, and is no larger than that.
    w = {"w": jnp.array([0.9034701585769653, 100.0], jnp.float32)}
    s = {"w": jnp.array([0.7735183238983154, 1.0], jnp.float32)}
    lam = dp.lambda_for_sparsity(w, s, 0.5)
    assert float(dp.directional_prune(w, s, lam)["w"][0]) == 0.0
    below = float(np.nextafter(np.float32(lam), np.float32(0)))
    assert float(dp.directional_prune(w, s, below)["w"][0]) != 0.0  # the smallest such lam
    rng = np.random.default_rng(1)
    for _ in range(200):
        params = {"a": jnp.asarray(rng.normal(size=40), jnp.float32),
                  "b": jnp.asarray(rng.normal(size=(3, 5)), jnp.bfloat16),
                  "z": jnp.zeros(4, jnp.float32)}
        scores = {"a": jnp.asarray(rng.uniform(-0.5, 2.0, 40), jnp.float32),
                  "b": jnp.asarray(rng.uniform(0.01, 2.0, (3, 5)), jnp.bfloat16),
                  "z": jnp.asarray([-1.0, 0.0, 1.0, 2.0], jnp.float32)}  # zeros: any score
        lam = dp.lambda_for_sparsity(params, scores, 0.3)
        out = dp.directional_prune(params, scores, lam)
        assert sum(int(jnp.sum(x == 0)) for x in out.values()) >= round(0.3 * 59)


def test_negative_curvature_among_the_top_k_counts_as_flat():
    # H = diag(2, -1, 0): with k=3 and no tol only the direction of eigenvalue 2 is retained;
    # the negative-curvature and zero directions are flat (they were projected out with k alone)
    f = lambda p: 0.5 * jnp.sum(jnp.array([2.0, -1.0, 0.0]) * p["w"] ** 2)  # noqa: E731
    eig = dp.exact_eigenpairs(f, {"w": jnp.ones(3)})
    proj = dp.flat_projector(eig, k=3)
    assert proj.rank == 1
    np.testing.assert_allclose(proj({"w": jnp.array([1.0, 1.0, 1.0])})["w"], [0.0, 1.0, 1.0], atol=1e-6)
    assert dp.flat_projector(eig, k=3, tol=-2.0).rank == 3  # an explicit tol is what it says


def test_a_new_function_object_is_compiled_again_with_its_own_data():
    # The Hessian programs are cached per loss object (as jax.jit does); the documented way to
    # change the data is a new object, e.g. functools.partial, which must see its own data
    import functools

    def loss(p, scale):
        return 0.5 * jnp.sum(scale * p["w"] ** 2)

    p = {"w": jnp.ones(2)}
    for scale in ([1.0, 2.0], [10.0, 20.0]):
        f = functools.partial(loss, scale=jnp.array(scale))
        np.testing.assert_allclose(np.diag(np.asarray(dp.exact_hessian(f, p))), scale)
        assert float(dp.top_eigenpairs(f, p, k=1, num_steps=2).values[0]) == pytest.approx(scale[1])


def test_grda_lambda_is_grdas_threshold():
    c, mu, lr, n = 0.02, 0.6, 0.05, 37
    tx = sj.grda(lr, c=c, mu=mu)
    params = {"w": jnp.zeros(3)}
    state = tx.init(params)
    for _ in range(n):
        _, state = tx.update({"w": jnp.zeros(3)}, state, params)
    threshold = float(optax.tree_utils.tree_get(state, "threshold"))
    assert threshold == pytest.approx(dp.grda_lambda(c, mu, lr, n), rel=1e-5)


# --- bad input ------------------------------------------------------------------------------------


def test_bad_input_raises_clear_value_errors():
    params, data, losses, mean_loss = _mlp_problem(n=8, din=2, hidden=3, classes=2)
    d = 17
    other = {"l1": params["l1"]}
    with pytest.raises(ValueError, match="same structure"):
        dp.hvp(mean_loss, params, other)
    loss = dp.DatasetLoss(losses, data, batch_size=3)
    with pytest.raises(ValueError, match="same structure"):
        loss.hvp(params, other)
    with pytest.raises(ValueError, match="does not match params at 'l1/kernel'|shape"):
        dp.hvp(mean_loss, params, jax.tree.map(lambda x: x.T if x.ndim == 2 else x, params))
    # k larger than the parameter count
    with pytest.raises(ValueError, match=f"k={d + 1} exceeds the number of parameters \\({d}\\)"):
        dp.top_eigenpairs(loss, params, k=d + 1)
    with pytest.raises(ValueError, match="exceeds the number of parameters"):
        dp.exact_eigenpairs(mean_loss, params, k=d + 5)
    with pytest.raises(ValueError, match="num_steps=30 exceeds"):
        dp.spectral_density(loss, params, num_steps=30)
    rows = jax.tree.map(lambda x: jnp.stack([x, 2 * x, 3 * x]), params)  # stands for 3 eigenpairs
    eig = dp.HessianEigen(jnp.array([3.0, 2.0, 1.0]), rows, jnp.zeros(3))
    with pytest.raises(ValueError, match="k=4 exceeds the 3 eigenpairs"):
        dp.flat_projector(eig, k=4)
    with pytest.raises(ValueError, match="needs k= .* or tol="):
        dp.flat_projector(eig)
    proj = dp.flat_projector(eig, k=3)
    with pytest.raises(ValueError, match="same structure"):
        dp.dp_scores(other, proj)
    with pytest.raises(ValueError, match="scores do not match params"):
        dp.directional_prune(params, {"l1": params["l1"]}, 0.1)
    with pytest.raises(ValueError, match="lam must be >= 0"):
        dp.directional_prune(params, params, -1.0)
    # an empty dataset, a mean instead of per-example losses
    with pytest.raises(ValueError, match="empty"):
        dp.DatasetLoss(losses, jax.tree.map(lambda x: x[:0], data))
    with pytest.raises(ValueError, match="same leading"):
        dp.DatasetLoss(losses, {"x": data["x"], "y": data["y"][:3]})
    with pytest.raises(ValueError, match="one loss per example"):
        dp.DatasetLoss(lambda p, b: jnp.mean(losses(p, b)), data).value(params)
    # a non-finite loss
    bad = jax.tree.map(lambda x: x.at[(0,) * x.ndim].set(jnp.nan), params)
    with pytest.raises(ValueError, match="loss at these params is nan"):
        dp.top_eigenpairs(loss, bad, k=2)
    with pytest.raises(ValueError, match="loss at these params is inf"):
        dp.hutchinson_trace(lambda p: jnp.inf * jnp.sum(p["l1"]["bias"] ** 2), params)
    with pytest.raises(ValueError, match="loss at these params is nan"):
        dp.exact_hessian(lambda p: jnp.sum(p["l1"]["bias"]) * jnp.nan, params)
