"""Constraint sets for Frank-Wolfe: LMOs against brute force and optax.projections, diameters,
feasibility maps, constraint pytrees and radii from the initialisation."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sparsejax as sj
from sparsejax.models import create as create_model
from sparsejax import constraints as C


def _rng(seed=0):
    return np.random.default_rng(seed)


def _ksparse_vertices(n, k, r):
    for support in itertools.combinations(range(n), k):
        for signs in itertools.product((-1.0, 1.0), repeat=k):
            v = np.zeros(n)
            v[list(support)] = r * np.asarray(signs)
            yield v


def _l1_vertices(n, r):
    for i in range(n):
        for s in (-1.0, 1.0):
            v = np.zeros(n)
            v[i] = s * r
            yield v


def _linf_vertices(n, r):
    for signs in itertools.product((-1.0, 1.0), repeat=n):
        yield r * np.asarray(signs)


def _simplex_vertices(n, r):
    for i in range(n):
        v = np.zeros(n)
        v[i] = r
        yield v


def _ks(k=None, k_frac=None, radius=1.0):
    c = C.k_sparse_polytope(k=k, k_frac=k_frac, radius=radius)
    return c, lambda n: _ksparse_vertices(n, c.k_for(n), radius)


BRUTE = [
    ("k_sparse_k2", *_ks(k=2, radius=1.5)),
    ("k_sparse_frac", *_ks(k_frac=0.5, radius=0.7)),
    ("k_sparse_full", *_ks(k=99, radius=2.0)),
    ("l1", C.l1_ball(2.5), lambda n: _l1_vertices(n, 2.5)),
    ("linf", C.linf_ball(0.3), lambda n: _linf_vertices(n, 0.3)),
    ("simplex", C.simplex(1.7), lambda n: _simplex_vertices(n, 1.7)),
]


@pytest.mark.parametrize("name,con,vertices", BRUTE, ids=[b[0] for b in BRUTE])
@pytest.mark.parametrize("n", [1, 5, 6])
def test_lmo_matches_brute_force_over_vertices(name, con, vertices, n):
    rng = _rng(n)
    for trial in range(5):
        g = rng.normal(size=n)
        v = np.asarray(con.lmo(jnp.asarray(g, jnp.float32)), np.float64)
        best = min(float(g @ w) for w in vertices(n))
        assert g @ v == pytest.approx(best, rel=1e-5, abs=1e-6), (name, trial)
        assert bool(con.contains(v)), (name, trial)


def test_k_sparse_lmo_is_a_vertex_with_exactly_k_nonzeros_and_the_right_signs():
    g = jnp.asarray(_rng(3).normal(size=(4, 5)), jnp.float32)
    c = C.k_sparse_polytope(k=6, radius=0.25)
    v = np.asarray(c.lmo(g))
    assert v.shape == (4, 5) and np.count_nonzero(v) == 6
    top = np.argsort(-np.abs(np.asarray(g)).ravel())[:6]
    np.testing.assert_allclose(v.ravel()[top], -0.25 * np.sign(np.asarray(g).ravel()[top]))


def test_lmo_tie_break_and_zero_gradient_are_deterministic():
    c = C.k_sparse_polytope(k=2, radius=1.0)
    np.testing.assert_array_equal(c.lmo(jnp.array([1.0, -1.0, 1.0, 0.5])), [-1.0, 1.0, 0.0, 0.0])
    # sign(0) = 0: a zero gradient gives the centre, still a minimiser of <0, v>
    np.testing.assert_array_equal(c.lmo(jnp.zeros(4)), np.zeros(4))
    np.testing.assert_array_equal(C.l1_ball(1.0).lmo(jnp.array([2.0, -2.0])), [-1.0, 0.0])
    np.testing.assert_array_equal(C.simplex(1.0).lmo(jnp.array([0.0, 0.0])), [1.0, 0.0])
    np.testing.assert_array_equal(C.l2_ball(1.0).lmo(jnp.zeros(3)), np.zeros(3))


@pytest.mark.parametrize("p", [2.0, 3.0, 1.5, 7.0])
def test_lp_lmo_attains_the_dual_norm(p):
    # min over the ball of <g, v> is -r * ||g||_q (Hoelder), attained on the sphere
    rng = _rng(int(p * 10))
    q = p / (p - 1)
    c = C.lp_ball(p, radius=1.3)
    for _ in range(5):
        g = rng.normal(size=(3, 4)) * rng.uniform(1e-3, 1e3)
        v = np.asarray(c.lmo(jnp.asarray(g, jnp.float32)), np.float64)
        assert np.sum(g * v) == pytest.approx(-1.3 * np.linalg.norm(g.ravel(), q), rel=1e-4)
        assert np.linalg.norm(v.ravel(), p) == pytest.approx(1.3, rel=1e-4)


PROJECTED = [
    ("l1", C.l1_ball(1.2), lambda z: optax.projections.projection_l1_ball(z, 1.2)),
    ("l2", C.l2_ball(0.8), lambda z: optax.projections.projection_l2_ball(z, 0.8)),
    ("linf", C.linf_ball(0.4), lambda z: optax.projections.projection_linf_ball(z, 0.4)),
    ("simplex", C.simplex(2.0), lambda z: optax.projections.projection_simplex(z, 2.0)),
]


@pytest.mark.parametrize("name,con,proj", PROJECTED, ids=[p[0] for p in PROJECTED])
def test_lmo_beats_every_projected_point_and_project_is_optax(name, con, proj):
    rng = _rng(7)
    z = jnp.asarray(rng.normal(size=(40, 8)) * rng.uniform(0.1, 10, size=(40, 1)), jnp.float32)
    points = jax.jit(jax.vmap(proj))(z)
    np.testing.assert_allclose(jax.jit(jax.vmap(con.project))(z), points, rtol=1e-6, atol=1e-6)
    assert all(bool(con.contains(x, rtol=1e-5, atol=1e-5)) for x in points)
    for _ in range(5):
        g = jnp.asarray(rng.normal(size=8), jnp.float32)
        lmo_value = float(jnp.vdot(g, con.lmo(g)))
        assert lmo_value <= float(jnp.min(points @ g)) + 1e-5


@pytest.mark.parametrize(
    "con,shape,expected",
    [
        (C.k_sparse_polytope(k=3, radius=2.0), (4, 5), 2 * 2.0 * math.sqrt(3)),
        (C.k_sparse_polytope(k_frac=0.1, radius=1.0), (10, 10), 2 * math.sqrt(10)),
        (C.l1_ball(1.5), (7,), 3.0),
        (C.l2_ball(1.5), (7,), 3.0),
        (C.lp_ball(1.5, 1.5), (7,), 3.0 * 7 ** (0.5 - 1 / 1.5)),  # the reference's convention
        (C.linf_ball(0.5), (3, 3), 2 * 0.5 * 3.0),
        (C.lp_ball(4.0, 1.0), (16,), 2 * 16 ** 0.25),
        (C.simplex(3.0), (5,), 3.0 * math.sqrt(2)),
        (C.simplex(3.0), (), 0.0),
    ],
)
def test_diameter_formulas_and_with_diameter_round_trip(con, shape, expected):
    assert con.diameter(shape) == pytest.approx(expected)
    if expected > 0:
        assert con.with_diameter(5.0, shape).diameter(shape) == pytest.approx(5.0)


def test_diameter_is_attained_by_two_points_of_the_set():
    # the brute-force farthest pair of vertices has the formula's distance
    for con, verts in [
        (C.k_sparse_polytope(k=2, radius=1.5), list(_ksparse_vertices(5, 2, 1.5))),
        (C.l1_ball(2.0), list(_l1_vertices(4, 2.0))),
        (C.linf_ball(0.5), list(_linf_vertices(4, 0.5))),
        (C.simplex(1.0), list(_simplex_vertices(4, 1.0))),
    ]:
        far = max(np.linalg.norm(a - b) for a in verts for b in verts)
        assert con.diameter((len(verts[0]),)) == pytest.approx(far)
    # Lp, p > 2: the scaled all-ones vector lies on the sphere with the largest L2 norm
    x = np.full(16, 16 ** -0.25)
    assert np.linalg.norm(x, 4) == pytest.approx(1.0)
    assert C.lp_ball(4.0, 1.0).diameter((16,)) == pytest.approx(2 * np.linalg.norm(x))


ALL_SETS = [
    C.k_sparse_polytope(k=3, radius=0.5),
    C.k_sparse_polytope(k_frac=0.3, radius=1.0),
    C.l1_ball(1.0),
    C.l2_ball(1.0),
    C.linf_ball(0.2),
    C.lp_ball(3.0, 0.7),
    C.simplex(1.5),
]


@pytest.mark.parametrize("con", ALL_SETS, ids=repr)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_make_feasible_lands_in_the_set_and_keeps_feasible_points(con, dtype):
    rng = _rng(11)
    tol = dict(rtol=1e-2, atol=1e-2) if dtype == jnp.bfloat16 else {}
    for scale in (0.01, 1.0, 100.0):
        x = jnp.asarray(rng.normal(size=(4, 5)) * scale, dtype)
        y = con.make_feasible(x)
        assert y.dtype == dtype and y.shape == x.shape
        assert bool(con.contains(y, **tol))
        if bool(con.contains(x)) and not isinstance(con, C.Simplex):
            np.testing.assert_array_equal(np.asarray(y, np.float32), np.asarray(x, np.float32))
    v = con.lmo(jnp.asarray(rng.normal(size=(4, 5)), dtype))
    assert v.dtype == dtype and bool(con.contains(v, **tol))


def test_max_scale_is_the_boundary_of_the_ray():
    x = jnp.asarray(_rng(5).normal(size=12), jnp.float32)
    for con in ALL_SETS[:-1]:
        s = float(con.max_scale(x))
        assert bool(con.contains(s * x, rtol=1e-5))
        assert not bool(con.contains(1.01 * s * x, rtol=0, atol=0))
    assert float(C.l2_ball(1.0).max_scale(jnp.zeros(3))) == math.inf


def test_k_sparse_make_feasible_rescales_and_has_no_projection():
    c = C.k_sparse_polytope(k=2, radius=1.0)
    x = jnp.array([3.0, 0.5, 0.0, -0.5])  # ||x||_inf = 3 > 1: scaled by 1/3
    np.testing.assert_allclose(c.make_feasible(x), x / 3, rtol=1e-6)
    x = jnp.full(4, 0.9)  # ||x||_1 = 3.6 > K r = 2: scaled by 2/3.6
    np.testing.assert_allclose(c.make_feasible(x), x * 2 / 3.6, rtol=1e-6)
    with pytest.raises(NotImplementedError, match="make_feasible"):
        c.project(x)
    with pytest.raises(NotImplementedError):
        C.lp_ball(3.0).project(x)


def test_k_rule():
    assert C.k_sparse_polytope(k=3).k_for(10) == 3
    assert C.k_sparse_polytope(k_frac=0.29).k_for(100) == 29
    assert C.k_sparse_polytope(k_frac=0.05).k_for(10) == 1  # at least 1
    assert C.k_sparse_polytope(k=2, k_frac=0.5).k_for(10) == 5  # the larger counts
    assert C.k_sparse_polytope(k=7, k_frac=0.1).k_for(10) == 7
    assert C.k_sparse_polytope(k=50).k_for(10) == 10  # at most n
    assert C.k_sparse_polytope(k=1).k_for(1) == 1


def test_lmo_under_jit_and_vmap_and_for_scalars():
    g = jnp.asarray(_rng(2).normal(size=(3, 6)), jnp.float32)
    for con in ALL_SETS:
        batched = jax.vmap(con.lmo)(g)
        looped = jnp.stack([con.lmo(row) for row in g])
        np.testing.assert_allclose(batched, looped, rtol=1e-6)
        np.testing.assert_allclose(jax.jit(con.lmo)(g), con.lmo(g), rtol=1e-6)
    scalar = jnp.asarray(-0.3)
    assert float(C.k_sparse_polytope(k=1, radius=2.0).lmo(scalar)) == 2.0
    assert float(C.linf_ball(2.0).lmo(scalar)) == 2.0
    assert C.l2_ball().lmo(scalar).shape == ()


def test_every_set_takes_empty_leaves():
    # a (0,)-shaped leaf (a layer with no units) has an empty LMO vertex and is feasible;
    # the L1 ball and the simplex used to fail in argmax/argmin of an empty array
    empty = jnp.zeros((0,), jnp.float32)
    for con in ALL_SETS:
        for fn in (con.lmo, jax.jit(con.lmo)):
            v = fn(empty)
            assert v.shape == (0,) and v.dtype == jnp.float32, con
        assert con.make_feasible(empty).shape == (0,), con
    p = {"w": empty, "b": jnp.ones(3)}
    tx = sj.sfw(0.5, C.l1_ball())
    updates, _ = tx.update({"w": empty, "b": jnp.ones(3)}, tx.init(p), p)
    assert updates["w"].shape == (0,) and float(jnp.abs(updates["b"]).sum()) > 0


@pytest.mark.parametrize("p", [3.0, 30.0, 50.0, 200.0])
def test_lp_norm_of_contains_and_max_scale_has_no_overflow_or_underflow(p):
    # ||x||_p of values whose p-th powers overflow (8^50 > float32 max) or underflow (0.05^30):
    # contains, max_scale and make_feasible must agree with the float64 norm
    for x, radius in ((np.full(2, 8.0), 10.0), (np.full(1000, 0.05), 0.04), (np.full(4, 3e-30), 1e-29)):
        c = C.lp_ball(p, radius=radius)
        norm = float(np.max(np.abs(x)) * np.linalg.norm(x / np.max(np.abs(x)), ord=p))
        xj = jnp.asarray(x, jnp.float32)
        assert bool(c.contains(xj)) == (norm <= radius * (1 + 1e-5)), (p, x[0])
        assert float(c.max_scale(xj)) == pytest.approx(radius / norm, rel=1e-5), (p, x[0])
        y = np.asarray(c.make_feasible(xj), np.float64)
        ynorm = np.max(np.abs(y)) * np.linalg.norm(y / np.max(np.abs(y)), ord=p)
        assert ynorm == pytest.approx(min(norm, radius), rel=1e-5), (p, x[0])


def test_bf16_lmo_matches_f32_support():
    g = jnp.asarray(_rng(4).normal(size=(8, 8)), jnp.float32)
    c = C.k_sparse_polytope(k_frac=0.1, radius=0.5)
    v16 = c.lmo(g.astype(jnp.bfloat16))
    assert v16.dtype == jnp.bfloat16
    # bf16 rounding may reorder near-ties; the objective value is what must agree
    assert float(jnp.vdot(g, v16.astype(jnp.float32))) == pytest.approx(
        float(jnp.vdot(g, c.lmo(g))), rel=2e-2
    )


def test_constraints_are_hashable_pytree_leaves():
    a, b = C.k_sparse_polytope(k=2, radius=1.0), C.k_sparse_polytope(k=2, radius=1.0)
    assert a == b and hash(a) == hash(b) and len({a, b, C.l2_ball()}) == 2
    tree = {"w": a, "b": None, "s": C.unconstrained()}
    assert jax.tree.leaves(tree) == [C.unconstrained(), a]  # None is not a leaf
    assert not callable(a)


def test_unconstrained_marker():
    u = C.unconstrained()
    x = jnp.ones(3)
    assert bool(u.contains(x)) and u.make_feasible(x) is x and u.diameter((3,)) == math.inf
    with pytest.raises(ValueError, match="partition"):
        u.lmo(x)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: C.k_sparse_polytope(), "k or k_frac"),
        (lambda: C.k_sparse_polytope(k=0), "k must be"),
        (lambda: C.k_sparse_polytope(k=1.5), "k must be"),
        (lambda: C.k_sparse_polytope(k=True), "k must be"),
        (lambda: C.k_sparse_polytope(k_frac=0.0), "k_frac"),
        (lambda: C.k_sparse_polytope(k_frac=1.5), "k_frac"),
        (lambda: C.k_sparse_polytope(k=2, radius=0.0), "radius"),
        (lambda: C.l2_ball(-1.0), "radius"),
        (lambda: C.l1_ball(float("nan")), "radius"),
        (lambda: C.lp_ball(0.5), "p must be"),
        (lambda: C.lp_ball("two"), "p must be"),
        (lambda: C.simplex(0.0), "radius"),
    ],
)
def test_bad_arguments_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_lp_ball_aliases():
    assert C.lp_ball("inf") == C.linf_ball() and C.lp_ball(1) == C.l1_ball()


# --- constraint pytrees -----------------------------------------------------------------------


def _params():
    rng = _rng(0)
    return {
        "dense": {"kernel": jnp.asarray(rng.normal(size=(4, 6)), jnp.float32), "bias": jnp.zeros(6)},
        "conv": {"kernel": jnp.asarray(rng.normal(size=(3, 3, 2, 4)), jnp.bfloat16)},
        "scale": jnp.asarray(0.7),
        "frozen": None,
    }


def test_leaf_constraints_single_prefix_callable_and_paths():
    params = _params()
    ks, l2 = C.k_sparse_polytope(k=2), C.l2_ball(3.0)
    n = len(jax.tree.leaves(params))
    assert C.leaf_constraints(ks, params) == [ks] * n
    # prefix: one constraint for the whole 'conv' subtree, None for 'scale'
    prefix = {"dense": {"kernel": ks, "bias": l2}, "conv": ks, "scale": None, "frozen": None}
    assert C.leaf_constraints(prefix, params) == [ks, l2, ks, None]
    assert C.leaf_constraints(lambda p: prefix, params) == [ks, l2, ks, None]
    # a differently-built tree is matched by path (e.g. a pure dict against an nnx.State)
    by_path = [{"kernel": ks}, l2]
    with pytest.raises(ValueError, match="no constraint for leaf"):
        C.leaf_constraints(by_path, params)
    keyed = {"dense": {"kernel": ks, "bias": l2}, "conv": {"kernel": ks}, "scale": l2, "extra": ks}
    assert C.leaf_constraints(keyed, params) == [ks, l2, ks, l2]
    with pytest.raises(ValueError, match="sparsejax.constraints objects"):
        C.leaf_constraints({"dense": 1.0, "conv": ks, "scale": None, "frozen": None}, params)


def test_leaf_constraints_match_nnx_state_by_path():
    from flax import nnx

    model = create_model("mlp", 3, input_shape=(2, 2, 1), hidden=(4,), rngs=0)
    pure = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    cons = jax.tree.map(lambda x: C.l2_ball(float(x.size)), pure)
    state = nnx.as_pure(nnx.state(model, nnx.Param))
    got = C.leaf_constraints(cons, state)
    assert [c.radius for c in got] == [float(x.size) for x in jax.tree.leaves(state)]


def test_tree_helpers():
    params = _params()
    cons = {
        "dense": {"kernel": C.k_sparse_polytope(k=3, radius=0.5), "bias": None},
        "conv": C.l1_ball(2.0),
        "scale": C.linf_ball(0.5),
        "frozen": None,
    }
    feas = C.make_feasible(params, cons)
    assert bool(C.is_feasible(feas, cons, rtol=1e-2, atol=1e-2))
    assert not bool(C.is_feasible(params, cons))
    np.testing.assert_array_equal(feas["dense"]["bias"], params["dense"]["bias"])
    assert feas["frozen"] is None and feas["conv"]["kernel"].dtype == jnp.bfloat16
    labels = C.partition_labels(cons, params)
    assert labels["dense"] == {"kernel": "frank_wolfe", "bias": "unconstrained"}
    assert labels["conv"]["kernel"] == "frank_wolfe" and labels["scale"] == "frank_wolfe"

    grads = jax.tree.map(lambda x: jnp.asarray(_rng(1).normal(size=x.shape), x.dtype), params)
    with pytest.raises(ValueError, match="dense/bias"):
        C.lmo_tree(grads, cons)
    full = {**cons, "dense": {**cons["dense"], "bias": C.l2_ball(1.0)}}
    v = C.lmo_tree(grads, full)
    assert jax.tree.map(lambda x: x.dtype, v) == jax.tree.map(lambda x: x.dtype, grads)
    # the FW gap: sum over constrained leaves of <g, p - v>, >= 0 and brute-force checked
    gap = float(C.fw_gap(grads, feas, cons))
    expected = 0.0
    for path in (("dense", "kernel"), ("conv", "kernel"), ("scale",)):
        g, p = grads, feas
        for key in path:
            g, p = g[key], p[key]
        c = cons[path[0]] if path[0] != "dense" else cons["dense"]["kernel"]
        g64, p64 = np.asarray(g, np.float64), np.asarray(p, np.float64)
        expected += float(np.sum(g64 * (p64 - np.asarray(c.lmo(g), np.float64))))
    assert gap == pytest.approx(expected, rel=1e-4) and gap >= 0


def test_fw_gap_is_zero_at_the_constrained_minimiser():
    # minimise <c, x> over the L1 ball: the minimiser is the LMO vertex, where the gap is 0
    c = {"w": jnp.array([0.3, -2.0, 1.0])}
    x = C.lmo_tree(c, C.l1_ball(1.0))
    assert float(C.fw_gap(c, x, C.l1_ball(1.0))) == pytest.approx(0.0, abs=1e-7)
    assert float(C.fw_gap(c, {"w": jnp.zeros(3)}, C.l1_ball(1.0))) == pytest.approx(2.0)


# --- radii from the initialisation ----------------------------------------------------------


def _sampler(seed):
    # norms: kernel 4 * (seed + 1) (4x4 of seed+1), bias 0, scalar |seed + 1|
    return {
        "kernel": jnp.full((4, 4), float(seed + 1)),
        "bias": jnp.zeros(4),
        "scale": jnp.asarray(float(seed + 1)),
    }


def test_expected_norms_averages_fresh_draws():
    norms = C.expected_norms(_sampler, num_samples=3, seed=0)
    assert norms == {"kernel": pytest.approx(8.0), "bias": 0.0, "scale": pytest.approx(2.0)}


@pytest.mark.parametrize(
    "kind,kwargs,expected_radius",
    [
        # D = 2 * value * E||W||, value = 3, E||W_kernel|| = 8: D = 48
        ("k_sparse", dict(k=4), 48 / (2 * 2)),
        ("k_sparse", dict(k_frac=0.25), 48 / (2 * 2)),
        ("l1", {}, 24.0),
        ("l2", {}, 24.0),
        ("linf", {}, 48 / (2 * 4)),
        ("lp", dict(p=4.0), 48 / (2 * 16 ** 0.25)),
        ("simplex", {}, 48 / math.sqrt(2)),
    ],
)
def test_constraints_from_init_radius_convention(kind, kwargs, expected_radius):
    cons = C.constraints_from_init(_sampler, kind, value=3.0, num_samples=3, **kwargs)
    assert cons["kernel"].radius == pytest.approx(expected_radius)
    assert cons["kernel"].diameter((4, 4)) == pytest.approx(48.0)
    # the zero-norm bias counts as norm 1: D = 2 * value
    assert cons["bias"].diameter((4,)) == pytest.approx(6.0)


def test_constraints_from_init_mask_and_template():
    cons = C.constraints_from_init(
        _sampler, C.k_sparse_polytope(k=1), value=1.0, mask=sj.tree.weights_only, num_samples=3
    )
    assert cons["bias"] is None and cons["scale"] is None
    assert cons["kernel"] == C.k_sparse_polytope(k=1, radius=8.0)  # D = 16 = 2 r sqrt(1)


def test_constraints_from_init_for_a_zoo_model():
    from flax import nnx

    def sample(seed):
        model = create_model("lenet5", 10, rngs=seed)
        return nnx.to_pure_dict(nnx.state(model, nnx.Param))

    cons = C.constraints_from_init(sample, "k_sparse", k_frac=0.05, value=15.0, num_samples=3)
    params = sample(123)
    for (path, c), x in zip(
        jax.tree_util.tree_leaves_with_path(cons, is_leaf=lambda x: isinstance(x, C.Constraint)),
        jax.tree.leaves(params),
    ):
        assert isinstance(c, C.KSparsePolytope), path
        # a fresh init lies well inside its set (value = 15 makes the set large)
        assert bool(c.contains(x)), path
    assert bool(C.is_feasible(C.make_feasible(params, cons), cons))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(kind="nope"), "kind must be"),
        (dict(kind="lp"), "needs p"),
        (dict(kind="l2", value=0.0), "value"),
        (dict(kind="l2", num_samples=0), "num_samples"),
        (dict(kind=C.unconstrained()), "mask"),
    ],
)
def test_constraints_from_init_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        C.constraints_from_init(_sampler, **kwargs)
    with pytest.raises(ValueError, match="callable"):
        C.constraints_from_init(_sampler(0), "l2")
