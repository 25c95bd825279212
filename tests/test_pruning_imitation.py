"""Greedy local and global imitation (Ye, Wu, Liu 2020): closed forms against brute force."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sparsejax.models import VGG, create
from sparsejax.structured import (
    ImitationResult,
    contribution_gram,
    global_imitation,
    local_discrepancy,
    local_imitation,
    local_imitation_from_gram,
    output_discrepancy,
)
from sparsejax.structured.imitation import Evaluator

# The module-scoped fixtures (compiled programs, trained runs) are built once: one worker.
pytestmark = pytest.mark.xdist_group("pruning_imitation")


@pytest.fixture(scope="module")
def mlp() -> nnx.Module:
    return create("mlp", num_classes=3, input_shape=(4,), hidden=(10, 6), rngs=0)


@pytest.fixture(scope="module")
def x() -> jax.Array:
    return jax.random.normal(jax.random.key(0), (40, 4))


def _contributions(model: nnx.Module, x: jax.Array) -> np.ndarray:
    """``s_i(x_n) = N * h_i(x_n) * W2[i, :]`` of ``layers/0``, computed directly in float64."""
    w1 = np.asarray(model.layers[0].kernel[...], np.float64)
    b1 = np.asarray(model.layers[0].bias[...], np.float64)
    w2 = np.asarray(model.layers[1].kernel[...], np.float64)
    h = np.maximum(np.asarray(x, np.float64) @ w1 + b1, 0.0)  # (m, N)
    n = w1.shape[1]
    return n * h[:, :, None] * w2[None, :, :]  # (m, N, out)


def _disc(s: np.ndarray, a: np.ndarray) -> float:
    """Local discrepancy of weights ``a`` from explicit contributions."""
    target = s.mean(axis=1)
    d = np.einsum("i,nio->no", a, s) - target
    return float(np.mean(np.sum(d * d, axis=-1)))


# --------------------------------------------------------------------------- #
# The Gram matrix.


def test_gram_matches_explicit_contributions(mlp: nnx.Module, x: jax.Array) -> None:
    s = _contributions(mlp, x)
    expected = np.einsum("nio,njo->ij", s, s) / x.shape[0]
    gram = contribution_gram(mlp, "layers/0", x, batch_size=16)  # 3 chunks, the last padded
    assert gram.dtype == np.float64
    np.testing.assert_allclose(gram, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


@pytest.mark.parametrize(
    ("name", "make", "shape", "group"),
    [
        ("lenet5_view", lambda: create("lenet5", rngs=0), (28, 28, 1), "conv2"),
        ("vgg_conv", lambda: VGG((6, "M", 8, "M", 8), 10, in_channels=1, batch_norm=True,
                                 rngs=nnx.Rngs(0)), (12, 12, 1), "convs/0"),
        ("resnet20_inner", lambda: create("resnet20", input_shape=(8, 8, 3), rngs=0),
         (8, 8, 3), "blocks/4/conv1"),
        ("mobilenet_expansion", lambda: create("mobilenet_v2", input_shape=(8, 8, 3),
                                               width_mult=0.25, rngs=0), (8, 8, 3),
         "blocks/1/depthwise"),
        ("strided_conv_generic", None, (9, 9, 2), "convs/0"),
    ],
)
def test_gram_quadratic_form_equals_forward_discrepancy(name, make, shape, group) -> None:
    if make is None:  # a stride-2, dilated consumer exercises the grouped-convolution path
        model = VGG((4, 5), 3, in_channels=2, rngs=nnx.Rngs(1))
        conv = model.convs[1].conv
        conv.strides, conv.kernel_dilation = (2, 2), (2, 1)
    else:
        model = make()
    model.eval()
    x = jax.random.normal(jax.random.key(1), (6, *shape))
    gram = contribution_gram(model, group, x, batch_size=4)
    size = gram.shape[0]
    gate = np.asarray(jax.random.uniform(jax.random.key(2), (size,), maxval=2.0))
    a, u = gate / size, np.full(size, 1.0 / size)
    quad = float((a - u) @ gram @ (a - u))
    forward = local_discrepancy(model, group, x, gate, batch_size=4)
    assert forward > 0
    assert quad == pytest.approx(forward, rel=2e-4), name


# --------------------------------------------------------------------------- #
# Local imitation.


def test_line_search_step_is_the_brute_force_optimum(mlp: nnx.Module, x: jax.Array) -> None:
    s = _contributions(mlp, x)
    size = s.shape[1]
    gram = np.einsum("nio,njo->ij", s, s) / x.shape[0]
    r = local_imitation_from_gram(gram, n=size, max_steps=8)
    assert r.picks[0] == int(np.argmin([_disc(s, np.eye(size)[i]) for i in range(size)]))
    assert r.history[0] == pytest.approx(min(_disc(s, np.eye(size)[i]) for i in range(size)))
    target = s.mean(axis=1)
    for k in range(1, len(r.picks)):
        a = r.weights_at(k - 1)
        best = (np.inf, -1, 0.0)
        for i in range(size):
            lo = -a[i] / (1 - a[i]) if 0 < a[i] < 1 else 0.0
            gammas = np.linspace(lo, 1.0, 801)
            weights = (1 - gammas)[:, None] * a[None, :]
            weights[:, i] += gammas
            diff = np.einsum("gi,nio->gno", weights, s) - target[None]
            values = np.mean(np.sum(diff * diff, axis=-1), axis=-1)
            j = int(np.argmin(values))
            best = min(best, (float(values[j]), i, float(gammas[j])))
        d, i, gamma = best
        assert r.picks[k] == i, k
        assert r.history[k] <= d + 1e-9 * abs(d)  # the closed form is at least as good
        assert r.history[k] == pytest.approx(d, rel=1e-3, abs=1e-9)
        assert r.gammas[k] == pytest.approx(gamma, abs=2.0 / 800)
        assert r.history[k] == pytest.approx(_disc(s, r.weights_at(k)), rel=1e-9)


def test_line_search_never_increases_and_respects_the_budget(mlp, x) -> None:
    gram = contribution_gram(mlp, "layers/0", x)
    for n in (1, 3, 10):
        r = local_imitation_from_gram(gram, n=n, max_steps=60)
        assert np.all(np.diff(r.history) <= 1e-12 * r.history[0])
        assert r.support.max() <= n and r.n <= n
        assert r.method == "local" and not r.converged
        assert r.step == int(np.argmin(r.history))
    full = local_imitation_from_gram(gram, max_steps=400)
    assert full.discrepancy < 1e-6 * full.history[0]  # all units: the original is reachable


def test_removal_steps_happen_and_zero_the_weight() -> None:
    # 8 units in 4-d (heavy-tailed draws, rounded); step 27 removes unit 7 (gamma at
    # the bound -a_i / (1 - a_i) of U_i)
    s = np.array([[0.26, -0.29, 2.86, 0.28], [-1.19, 1.04, 1.53, 0.73],
                  [-0.9, -0.15, 0.49, 0.36], [2.41, 3.07, 1.95, -0.53],
                  [-0.1, -0.27, -1.12, 0.24], [1.36, 0.17, 0.72, 0.36],
                  [0.48, -0.99, -0.96, -0.18], [-0.75, 1.95, -1.85, -1.31]])
    r = local_imitation_from_gram(s @ s.T, max_steps=100)
    removed = [k for k in range(1, len(r.picks)) if r.support[k] < r.support[k - 1]]
    assert removed, r.support
    for k in removed:
        before = r.weights_at(k - 1)
        i = r.picks[k]
        assert r.weights_at(k)[i] == 0.0
        assert r.gammas[k] == pytest.approx(-before[i] / (1 - before[i]))
    assert np.all(np.diff(r.history) <= 1e-12 * r.history[0])
    assert all(np.all(r.weights_at(k) >= 0) for k in range(len(r.picks)))


def test_fixed_step_is_eq5(mlp, x) -> None:
    gram = contribution_gram(mlp, "layers/0", x)
    size = gram.shape[0]
    u = np.full(size, 1.0 / size)
    r = local_imitation_from_gram(gram, n=size, step="fixed", max_steps=12)
    assert r.method == "local_fixed"
    for k in range(1, len(r.picks)):
        assert r.gammas[k] == pytest.approx(1.0 / (k + 1))
        a = r.weights_at(k - 1)
        cands = [((k * a + np.eye(size)[i]) / (k + 1) - u) for i in range(size)]
        values = [float(d @ gram @ d) for d in cands]
        assert r.picks[k] == int(np.argmin(values))
        counts = r.weights_at(k) * (k + 1)
        np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)


def test_eps_and_stop_fn_stop_early(mlp, x) -> None:
    gram = contribution_gram(mlp, "layers/0", x)
    ref = local_imitation_from_gram(gram, max_steps=30)
    eps = float(ref.history[5])
    r = local_imitation_from_gram(gram, eps=eps, max_steps=30)
    assert r.converged and r.step == len(r.history) - 1 == int(np.argmax(ref.history <= eps))
    seen = []

    def stop(gate: np.ndarray) -> bool:
        seen.append(gate.copy())
        return len(seen) == 4

    r = local_imitation_from_gram(gram, stop_fn=stop, max_steps=30)
    assert r.converged and r.step == 3 and len(r.history) == 4
    np.testing.assert_allclose(seen[-1], r.gate, rtol=1e-6)
    assert seen[-1].sum() == pytest.approx(gram.shape[0])  # N * a, a on the simplex


def test_local_imitation_end_to_end(mlp, x) -> None:
    r = local_imitation(mlp, "layers/0", x, n=4, max_steps=40)
    assert isinstance(r, ImitationResult) and r.group == "layers/0" and r.size == 10
    assert r.n <= 4 and np.all(np.diff(r.indices) > 0) and np.all(r.weights > 0)
    assert r.weights.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(r.weights_at(r.step)[r.indices], r.weights)
    assert r.gate.dtype == np.float32 and r.gate.sum() == pytest.approx(10.0, rel=1e-6)
    assert np.count_nonzero(r.gate) == r.n
    # the stored discrepancy is the layer-output discrepancy of the gate
    assert r.discrepancy == pytest.approx(local_discrepancy(mlp, "layers/0", x, r.gate), rel=1e-4)
    assert r.best_with_at_most(4) == pytest.approx(r.history[r.support <= 4].min())
    assert r.best_with_at_most(0) == float("inf")


def test_fixed_gates_of_other_groups_are_applied(mlp, x) -> None:
    other = {"layers/1": jnp.zeros(6).at[:3].set(2.0)}
    # layers/1 is read by the output layer only: gating it does not change layers/0's Gram
    g0 = contribution_gram(mlp, "layers/0", x)
    np.testing.assert_allclose(contribution_gram(mlp, "layers/0", x, gates=other), g0)
    g1 = contribution_gram(mlp, "layers/1", x, gates={"layers/0": jnp.full(10, 0.5)})
    assert not np.allclose(g1, contribution_gram(mlp, "layers/1", x))


# --------------------------------------------------------------------------- #
# Global imitation.


def _output_losses(model, x, a, gamma):
    size = a.size
    out = []
    for i in range(size):
        new = (1 - gamma) * a
        new[i] += gamma
        out.append(output_discrepancy(model, x, {"layers/0": size * new}))
    return np.array(out)


def test_exact_global_steps_are_the_brute_force_argmin(mlp, x) -> None:
    r = global_imitation(mlp, "layers/0", x, n=10, max_steps=5, taylor_start=None,
                         batch_size=16, candidate_batch=3)
    assert r.method == "global"
    first = _output_losses(mlp, x, np.zeros(10), 1.0)
    assert r.picks[0] == int(np.argmin(first))
    assert r.history[0] == pytest.approx(first.min(), rel=1e-5)
    for k in range(1, len(r.picks)):
        assert r.gammas[k] == pytest.approx(1.0 / (k + 1))
        losses = _output_losses(mlp, x, r.weights_at(k - 1), 1.0 / (k + 1))
        assert r.picks[k] == int(np.argmin(losses)), k
        assert r.history[k] == pytest.approx(losses.min(), rel=1e-5)


def test_cross_entropy_criterion_is_a_kl_divergence(mlp, x) -> None:
    r = global_imitation(mlp, "layers/0", x, n=3, criterion="cross_entropy", taylor_start=None)
    logits = mlp(x)
    pruned = mlp(x, gates={"layers/0": r.weights_at(r.step) * 10})
    p = jax.nn.softmax(logits)
    kl = jnp.mean(jnp.sum(p * (jax.nn.log_softmax(logits) - jax.nn.log_softmax(pruned)), -1))
    assert r.discrepancy == pytest.approx(float(kl), rel=1e-4)
    assert output_discrepancy(mlp, x, {"layers/0": jnp.ones(10)}, criterion="cross_entropy") == 0


def test_cross_entropy_criterion_is_refused_on_one_output(x) -> None:
    # KL(softmax(one logit)) is identically 0: global imitation would stop at one unit and
    # output_discrepancy would report 0 for any gates.
    model = create("mlp", num_classes=1, input_shape=(4,), hidden=(10,), rngs=0)
    with pytest.raises(ValueError, match=r"criterion='cross_entropy'.*\(1,\).*criterion='mse'"):
        global_imitation(model, "layers/0", x, n=3, criterion="cross_entropy")
    with pytest.raises(ValueError, match=r"criterion='cross_entropy'.*criterion='mse'"):
        output_discrepancy(model, x, {"layers/0": np.eye(10)[0] * 10}, criterion="cross_entropy")
    assert output_discrepancy(model, x, {"layers/0": np.eye(10)[0] * 10}, criterion="mse") > 0


def test_gate_gradient_is_the_taylor_derivative(mlp, x) -> None:
    ev = Evaluator(mlp, "layers/0", x, loss="mse", batch_size=16)
    # all units on (with ReLUs, a layer fed only by dead units sits on a kink)
    a = np.asarray(jax.random.dirichlet(jax.random.key(3), jnp.ones(10)), np.float64)
    grad = ev.grad(10 * a)
    for i in (0, 4):
        h = 1e-3
        plus, minus = (1 - h) * a, (1 + h) * a
        plus[i] += h
        minus[i] -= h
        fd = (ev.loss(10 * plus) - ev.loss(10 * minus)) / (2 * h)
        assert 10 * (grad[i] - grad @ a) == pytest.approx(fd, rel=2e-2, abs=1e-4)


def test_taylor_with_every_candidate_is_exact(mlp, x) -> None:
    exact = global_imitation(mlp, "layers/0", x, n=10, max_steps=12, taylor_start=None)
    taylor = global_imitation(mlp, "layers/0", x, n=10, max_steps=12, taylor_start=2,
                              taylor_top=10)
    np.testing.assert_array_equal(exact.picks, taylor.picks)
    assert taylor.method == "global_taylor"


def test_taylor_selects_similar_units_to_exact_global() -> None:
    # A trained network (the setting of the paper's §2.2.1): past k = 4 only the
    # 3 best-ranked of 16 units are evaluated exactly.
    model = create("mlp", num_classes=1, input_shape=(2,), hidden=(16, 16),
                   activation=jnp.tanh, rngs=3)
    x = jax.random.normal(jax.random.key(4), (256, 2))
    y = jnp.sin(2 * x[:, :1]) * jnp.cos(x[:, 1:])
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    import optax

    tx = optax.adam(1e-2)

    def loss(p):
        return jnp.mean((nnx.merge(graphdef, p, rest)(x) - y) ** 2)

    @jax.jit
    def fit(p):
        def body(c, _):
            p, s = c
            g = jax.grad(loss)(p)
            u, s = tx.update(g, s, p)
            return (optax.apply_updates(p, u), s), None

        return jax.lax.scan(body, (p, tx.init(p)), None, length=800)[0][0]

    nnx.update(model, fit(params))
    exact = global_imitation(model, "layers/0", x, max_steps=30, taylor_start=None)
    taylor = global_imitation(model, "layers/0", x, max_steps=30, taylor_start=4, taylor_top=3)
    np.testing.assert_array_equal(exact.picks[:5], taylor.picks[:5])  # exact up to k = 4
    # Taylor keeps the units exact global imitation puts most of its weight on ...
    a_exact = exact.weights_at(exact.step)
    assert a_exact[taylor.indices].sum() >= 0.75, (exact.indices, exact.weights, taylor.indices)
    # ... and imitates at least as well here (seen: 0.115 against exact's 0.272)
    assert taylor.discrepancy <= 1.25 * exact.discrepancy, (taylor.discrepancy, exact.discrepancy)


def test_global_budget_and_eps(mlp, x) -> None:
    r = global_imitation(mlp, "layers/0", x, n=2, max_steps=10)
    assert r.support.max() <= 2 and r.n <= 2 and len(r.history) == 11
    eps = float(r.history[3]) * (1 + 1e-6)
    r2 = global_imitation(mlp, "layers/0", x, n=2, max_steps=10, eps=eps)
    assert r2.converged and r2.step <= 3 and r2.history[r2.step] <= eps


def test_gauss_newton_model_is_exact_when_the_output_is_linear_in_the_layer(x) -> None:
    # One hidden layer: the output is linear in the gate, so the squared error is
    # exactly quadratic in gamma and the Gauss-Newton model is the loss itself.
    model = create("mlp", num_classes=3, input_shape=(4,), hidden=(10,), rngs=1)
    ev = Evaluator(model, "layers/0", x, loss="mse", batch_size=16, candidate_batch=4)
    a = np.zeros(10)
    a[[2, 5]] = 0.3, 0.7
    units = np.arange(10)
    p, q = ev.quadratic(a, units)
    base = ev.loss(10 * a)
    for i in (0, 2, 5, 9):
        for gamma in (0.4, -0.2):
            moved = (1 - gamma) * a
            moved[i] += gamma
            assert ev.loss(10 * moved) == pytest.approx(base + gamma * p[i] + 0.5 * gamma**2 * q[i],
                                                        rel=1e-4, abs=1e-6)
    grad = ev.grad(10 * a)
    np.testing.assert_allclose(p, 10 * (grad - grad @ a), rtol=1e-4, atol=1e-6)


def test_global_line_search_equals_local_line_search_on_a_linear_output(x) -> None:
    # With a linear output layer after the pruned layer the network's squared
    # error is the local discrepancy, so eq. 7 with the Gauss-Newton step is eq. 4.
    model = create("mlp", num_classes=3, input_shape=(4,), hidden=(10,), rngs=1)
    local = local_imitation(model, "layers/0", x, n=6, max_steps=10)
    glob = global_imitation(model, "layers/0", x, n=6, max_steps=10, step="line_search",
                            taylor_start=None, check_top=1)
    assert glob.method == "global_line_search"
    k = min(len(local.picks), len(glob.picks))
    assert k >= 6
    np.testing.assert_array_equal(glob.picks[:k], local.picks[:k])
    np.testing.assert_allclose(glob.gammas[:k], local.gammas[:k], rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(glob.history[:k], local.history[:k], rtol=1e-3)


def test_global_line_search_decreases_and_beats_the_fixed_step(mlp, x) -> None:
    fixed = global_imitation(mlp, "layers/0", x, n=5, max_steps=12, taylor_start=None)
    ls = global_imitation(mlp, "layers/0", x, n=5, max_steps=12, taylor_start=None,
                          step="line_search")
    assert np.all(np.diff(ls.history) < 0)
    assert ls.support.max() <= 5 and ls.n <= 5
    assert ls.discrepancy < fixed.discrepancy
    taylor = global_imitation(mlp, "layers/0", x, n=5, max_steps=12, taylor_start=3,
                              taylor_top=3, step="line_search")
    assert taylor.method == "global_line_search_taylor"
    assert np.all(np.diff(taylor.history) < 0)
    np.testing.assert_array_equal(taylor.picks[:4], ls.picks[:4])  # exact up to k = 3


# --------------------------------------------------------------------------- #
# Errors.


@pytest.mark.parametrize("fn", [local_imitation, global_imitation])
def test_errors(fn, mlp, x) -> None:
    with pytest.raises(ValueError, match=r"no prunable group 'layers/5'.*\['layers/0', 'layers/1'\]"):
        fn(mlp, "layers/5", x)
    for n in (0, 11, 2.5, -1):
        with pytest.raises(ValueError, match=r"n \(the number of units to keep\) must be an "
                                             r"integer in \[1, 10\]"):
            fn(mlp, "layers/0", x, n=n)
    with pytest.raises(ValueError, match="at least one example"):
        fn(mlp, "layers/0", x[:0])
    with pytest.raises(TypeError, match="PrunableModel"):
        fn(nnx.Linear(4, 3, rngs=nnx.Rngs(0)), "layers/0", x)
    with pytest.raises(ValueError, match="must not hold the gate of the group being pruned"):
        fn(mlp, "layers/0", x, gates={"layers/0": jnp.ones(10)})
    with pytest.raises(ValueError, match="unknown groups"):
        fn(mlp, "layers/0", x, gates={"nope": jnp.ones(10)})
    with pytest.raises(ValueError, match="eps"):
        fn(mlp, "layers/0", x, eps=-1.0)
    with pytest.raises(ValueError, match="max_steps"):
        fn(mlp, "layers/0", x, max_steps=0)


def test_more_errors(mlp, x) -> None:
    with pytest.raises(ValueError, match="step must be one of"):
        local_imitation(mlp, "layers/0", x, step="exact")
    with pytest.raises(ValueError, match="criterion"):
        global_imitation(mlp, "layers/0", x, criterion="hinge")
    with pytest.raises(ValueError, match="taylor_top"):
        global_imitation(mlp, "layers/0", x, taylor_top=0)
    with pytest.raises(ValueError, match="step must be one of"):
        global_imitation(mlp, "layers/0", x, step="exact")
    with pytest.raises(ValueError, match="check_top"):
        global_imitation(mlp, "layers/0", x, step="line_search", check_top=0)
    with pytest.raises(ValueError, match="gram must be a square"):
        local_imitation_from_gram(np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"gate must have shape \(10,\)"):
        local_discrepancy(mlp, "layers/0", x, np.ones(3))
    with pytest.raises(ValueError, match="batch_size"):
        contribution_gram(mlp, "layers/0", x, batch_size=0)
    with pytest.raises(ValueError, match=r"k must lie in \[0, "):
        local_imitation(mlp, "layers/0", x, n=2).weights_at(99)
