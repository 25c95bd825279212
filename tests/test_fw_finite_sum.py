"""SVRF / SAGA-FW / minibatch FW runs on finite sums against NumPy transcriptions of the papers'
algorithms (same sampled indices), and the equal-budget experiment's quick mode."""

from __future__ import annotations

import math
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax import constraints as C
from sparsejax.optim.frank_wolfe import frank_wolfe_step_size, one_shot_fw, sfw
from sparsejax.optim.fw_finite_sum import run_method, saga_fw_run, stochastic_fw_run, svrf_run
from tests.scripts import load_script, needs_fashion_mnist

RNG = np.random.default_rng(0)
A = RNG.normal(size=(7, 4))
B = RNG.normal(size=7)
R = 1.5
DATA = {"a": A.astype(np.float32), "b": B.astype(np.float32)}


def loss(params, batch):
    return 0.5 * (batch["a"] @ params["w"] - batch["b"]) ** 2


def grad_i(w, i):
    return (A[i] @ w - B[i]) * A[i]


def full_grad(w):
    return np.mean([grad_i(w, i) for i in range(len(B))], axis=0)


def lmo(g):
    v = np.zeros_like(g)
    j = int(np.argmax(np.abs(g)))
    v[j] = -R * np.sign(g[j])
    return v


def svrf_numpy(w, budget, c, seed, gamma_of=lambda k: 2.0 / (k + 1)):
    """Hazan and Luo, Algorithm 1, with the run's sampling and budget rule."""
    n, rng, evals, steps = len(B), np.random.default_rng(seed), 0, 0
    w = lmo(full_grad(w))
    evals += n
    t = 0
    while evals + n <= budget:
        t += 1
        x0, g0 = w.copy(), full_grad(w)
        evals += n
        x = x0.copy()
        for k in range(1, 2 ** (t + 3) - 1):
            m = math.ceil(c * (k + 1))
            if evals + 2 * m > budget:
                return x, evals, steps
            idx = rng.integers(0, n, size=m)
            d = np.mean([grad_i(x, i) - grad_i(x0, i) for i in idx], axis=0) + g0
            gamma = gamma_of(k)
            x = (1 - gamma) * x + gamma * lmo(d)
            evals += 2 * m
            steps += 1
        w = x
    return w, evals, steps


def saga_numpy(w, budget, b, seed):
    """Reddi et al.'s SAGA-FW, the table at grad f_i(x0), gamma_t = 2/(t+2)."""
    n, rng = len(B), np.random.default_rng(seed)
    table = np.stack([grad_i(w, i) for i in range(n)])
    evals, t = n, 0
    while evals + b <= budget:
        idx = rng.integers(0, n, size=b)
        new = np.stack([grad_i(w, i) for i in idx])
        d = new.mean(0) - table[idx].mean(0) + table.mean(0)
        table[idx] = new
        gamma = 2.0 / (t + 2)
        w = (1 - gamma) * w + gamma * lmo(d)
        evals += b
        t += 1
    return w, evals, t


def test_svrf_run_is_hazan_and_luos_algorithm():
    w0 = np.array([0.1, -0.2, 0.0, 0.3])
    # c = 1: the budget runs out inside the first snapshot's 14 steps; c = 0.5: the first
    # snapshot costs 7 + 7 + 2 * 63 = 140, the second starts at 147 and is cut at 170
    for c, budget in ((1.0, 200), (0.5, 170)):
        want, evals, steps = svrf_numpy(w0, budget, c, seed=3)
        run = svrf_run(loss, {"w": jnp.asarray(w0, jnp.float32)}, DATA, C.l1_ball(R), budget=budget,
                       batch_scale=c, seed=3, record_at=[50])
        np.testing.assert_allclose(run.params["w"], want, rtol=2e-5, atol=2e-6)
        assert run.steps == steps and run.evaluations[-1] == evals <= budget
        assert run.evaluations[0] == 0 and run.evaluations == sorted(run.evaluations)
    assert steps > 14  # with c = 0.5 the run reached the second snapshot (N_1 = 14)
    # a constant step (Reddi et al.'s nonconvex SVFW) replaces gamma_k = 2/(k+1) in every inner loop
    want, evals, steps = svrf_numpy(w0, 170, 0.5, seed=3, gamma_of=lambda k: 0.3)
    run = svrf_run(loss, {"w": jnp.asarray(w0, jnp.float32)}, DATA, C.l1_ball(R), budget=170,
                   batch_scale=0.5, seed=3, learning_rate=0.3)
    np.testing.assert_allclose(run.params["w"], want, rtol=2e-5, atol=2e-6)
    assert run.steps == steps > 14


def test_run_method_dispatches_with_each_methods_default_step_sizes():
    w0 = {"w": jnp.asarray([0.2, 0.0, -0.1, 0.1], jnp.float32)}
    cons = C.l1_ball(R)
    same = [
        (run_method("saga_fw", loss, w0, DATA, cons, budget=31, saga_batch_size=3, seed=5),
         saga_fw_run(loss, w0, DATA, cons, budget=31, batch_size=3, seed=5)),
        (run_method("svrf", loss, w0, DATA, cons, budget=170, svrf_batch_scale=0.5, seed=3),
         svrf_run(loss, w0, DATA, cons, budget=170, batch_scale=0.5, seed=3)),
        (run_method("one_shot_fw", loss, w0, DATA, cons, budget=20, batch_size=2, seed=1),
         stochastic_fw_run(loss, w0, DATA, one_shot_fw(frank_wolfe_step_size(shift=8.0), cons),
                           budget=20, batch_size=2, seed=1)),
        (run_method("sfw", loss, w0, DATA, cons, budget=20, batch_size=2, seed=1, learning_rate=0.1),
         stochastic_fw_run(loss, w0, DATA, sfw(0.1, cons, momentum=0.0, rescale=None),
                           budget=20, batch_size=2, seed=1)),
    ]
    for got, want in same:
        np.testing.assert_array_equal(got.params["w"], want.params["w"])
        assert got.steps == want.steps > 0
    with pytest.raises(ValueError, match="method"):
        run_method("svfw", loss, w0, DATA, cons, budget=20)


def test_saga_fw_run_initialises_the_table_at_the_start_gradients():
    w0 = np.array([0.2, 0.0, -0.1, 0.1])
    want, evals, steps = saga_numpy(w0, 7 + 3 * 12, 3, seed=5)
    run = saga_fw_run(loss, {"w": jnp.asarray(w0, jnp.float32)}, DATA, C.l1_ball(R),
                      budget=7 + 3 * 12, batch_size=3, seed=5)
    np.testing.assert_allclose(run.params["w"], want, rtol=2e-5, atol=2e-6)
    assert run.steps == steps == 12 and run.evaluations[-1] == evals
    # a zero table (the transform's default) would give another first direction
    with pytest.raises(ValueError, match="budget"):
        saga_fw_run(loss, {"w": jnp.zeros(4)}, DATA, C.l1_ball(R), budget=6)
    assert saga_fw_run(loss, {"w": jnp.zeros(4)}, DATA, C.l1_ball(R), budget=7 + 4).steps == 1  # b = ceil(7^(2/3)) = 4


def test_stochastic_fw_run_counts_the_budget_and_steps_like_sfw():
    w0 = np.zeros(4)
    rng = np.random.default_rng(1)
    w = w0.copy()
    for t in range(5):
        idx = rng.integers(0, 7, size=2)
        g = np.mean([grad_i(w, i) for i in idx], axis=0)
        w = w + 2.0 / (t + 2) * (lmo(g) - w)
    tx = sfw(frank_wolfe_step_size(), C.l1_ball(R), momentum=0.0, rescale=None)
    run = stochastic_fw_run(loss, {"w": jnp.zeros(4)}, DATA, tx, budget=11, batch_size=2, seed=1)
    np.testing.assert_allclose(run.params["w"], w, rtol=2e-5, atol=2e-6)
    assert run.steps == 5 and run.evaluations == [0, 10]


@needs_fashion_mnist
def test_equal_budget_experiment_quick(tmp_path: Path) -> None:
    job = load_script("experiments/fashion_mnist_fw_finite_sum.py")
    res = job.main(["--quick", "--examples", "400", "--passes", "6", "--reference-steps", "100",
                    "--radius", "3", "--out", str(tmp_path)])
    assert list(res["curves"]) == ["sfw", "one_shot_fw", "svrf", "saga_fw"]
    for name, curve in res["curves"].items():
        evals = [e for e, _ in curve]
        assert evals[0] == 0 and evals == sorted(evals) and evals[-1] <= res["budget"] == 2400, name
        assert all(v >= res["f_star"] - 1e-9 for _, v in curve), name
        assert curve[-1][1] < curve[0][1], name  # every method lowers the loss from x0 = 0
    assert res["table"].count("\n") == 5
    assert Path(res["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_fashion_mnist
def test_equal_budget_experiment_cnn_quick(tmp_path: Path) -> None:
    job = load_script("experiments/fashion_mnist_fw_finite_sum.py")
    # two of the four methods (one minibatch, one variance-reduced loop) keep the test short
    res = job.main(["--problem", "cnn", "--quick", "--examples", "64", "--test-examples", "32",
                    "--methods", "sfw,svrf", "--out", str(tmp_path)])
    assert list(res["curves"]) == ["sfw", "svrf"]
    for name, curve in res["curves"].items():
        evals = [e for e, _ in curve]
        assert evals[0] == 0 and evals == sorted(evals) and evals[-1] <= res["budget"] == 256, name
        assert res["steps"][name] >= 2, name  # SVRF (c = 8): w0 and a snapshot (128), then 32 + 48
        assert all(np.isfinite(v) and v > 0 for _, v in curve), name
        assert curve[0][1] == res["curves"]["sfw"][0][1] or name == "svrf", name  # same start
        assert len(res["test_accuracy"][name]) == len(curve), name
        # the constant step 1/sqrt(T) with T the steps the method took
        assert res["step_sizes"][name] == pytest.approx(1 / math.sqrt(res["steps"][name])), name
    assert res["table"].count("\n") == 3
    assert Path(res["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_svrf_run_records_the_start_and_counts_w0s_full_gradient():
    # w0 = LMO(grad f(x)) costs n = 7 evaluations: x itself is the iterate at 0, w0 the one at 7
    x = np.array([0.2, 0.0, -0.1, 0.1])
    run = svrf_run(loss, {"w": jnp.asarray(x, jnp.float32)}, DATA, C.l1_ball(R), budget=7 + 6,
                   batch_scale=1.0)
    g = sum(grad_i(x, i) for i in range(7)) / 7
    w0 = np.zeros(4)
    w0[np.argmax(np.abs(g))] = -R * np.sign(g[np.argmax(np.abs(g))])
    assert run.evaluations == [0, 7] and run.steps == 0  # a snapshot (7 more) would exceed 13
    np.testing.assert_array_equal(run.iterates[0]["w"], np.float32(x))
    np.testing.assert_allclose(run.iterates[1]["w"], w0, rtol=1e-6)
    # a budget below n cannot pay for w0, as saga_fw_run's table
    with pytest.raises(ValueError, match=r"budget must cover .*n = 7.*got 3"):
        svrf_run(loss, {"w": jnp.zeros(4)}, DATA, C.l1_ball(R), budget=3)
    start = svrf_run(loss, {"w": jnp.zeros(4)}, DATA, C.l1_ball(R), budget=3, init_at_vertex=False)
    assert start.evaluations == [0] and start.steps == 0
