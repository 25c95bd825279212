"""Convergence on an l1-regularised least-squares problem with a known sparse solution."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sparsejax as sj

N_SAMPLES, DIM, SUPPORT = 200, 20, (1, 4, 9, 15)


def lasso_problem(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (N_SAMPLES, DIM)).astype(np.float32)
    w_true = np.zeros(DIM, np.float32)
    w_true[list(SUPPORT)] = [1.5, -2.0, 1.0, -1.2]
    y = x @ w_true + 0.05 * rng.normal(0, 1, N_SAMPLES).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(y), w_true


def solve(tx, steps, seed=0, init_scale=0.1):
    x, y, w_true = lasso_problem(seed)
    loss = lambda w: 0.5 * jnp.mean((x @ w["w"] - y) ** 2)  # noqa: E731
    params = {"w": jnp.asarray(np.random.default_rng(1).normal(0, init_scale, DIM), jnp.float32)}

    @jax.jit
    def step(params, state):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        return optax.apply_updates(params, updates), state

    state = tx.init(params)
    for _ in range(steps):
        params, state = step(params, state)
    return np.asarray(params["w"]), w_true


@pytest.mark.parametrize(
    "name, tx, steps",
    [
        ("grda", sj.grda(0.1, c=0.3, mu=0.51), 2000),
        ("rda", sj.rda(gamma=2.0, l1=0.05), 3000),
        ("prox_sgd", sj.prox_sgd(0.1, l1=0.05), 1000),
    ],
)
def test_methods_recover_the_support(name, tx, steps):
    w, w_true = solve(tx, steps)
    support = set(np.flatnonzero(w))
    assert support == set(SUPPORT), f"{name}: support {sorted(support)} != {sorted(SUPPORT)}"
    assert np.all(w[list(SUPPORT)] != 0) and np.all(np.sign(w) == np.sign(w_true))
    # The l1 term shrinks the kept coefficients a little; they stay near the truth.
    np.testing.assert_allclose(w[list(SUPPORT)], w_true[list(SUPPORT)], atol=0.15)


def test_plain_sgd_does_not_give_exact_zeros():
    # The control: without the l1 machinery the same problem yields a dense solution.
    w, _ = solve(optax.sgd(0.1), 1000)
    assert np.count_nonzero(w) == DIM
