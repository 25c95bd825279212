"""Per-leaf removal counts: ERK in the counted unit, scalar leaves, exact totals, monotone counts."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sparsejax import pruning


def erk_kept_reference(kernel_shapes, counted, density, power=1.0):
    """RigL's ERK solve in float64, in the counted units: kept amounts d_l * n_l.

    Leaves whose density would exceed 1 are made dense (largest ratio first) and
    epsilon is solved again over the others; scalar leaves are dense from the start.
    """
    n = np.asarray(counted, float)
    raw = np.array([sum(s) / max(math.prod(s), 1) for s in kernel_shapes]) ** power
    dense = np.array([len(s) == 0 for s in kernel_shapes])
    while True:
        eps = (density * n.sum() - n[dense].sum()) / (raw[~dense] * n[~dense]).sum()
        over = ~dense & (eps * raw > 1)
        if not over.any():
            return np.where(dense, 1.0, eps * raw) * n
        dense |= over


CONV_SHAPES = [(3, 3, 3, 32), (3, 3, 32, 64), (3, 3, 64, 128), (128, 10)]


def test_channel_erk_keeps_every_layer_at_its_density_in_channels_and_the_exact_total():
    params = {f"l{i}": jnp.ones(s) for i, s in enumerate(CONV_SHAPES)}
    state = pruning.rigl(optax.sgd(0.1), 0.8, end_step=100, pattern="channel").init(params)
    kept = np.array([int(jnp.any(state.support[f"l{i}"].reshape(-1, s[-1]), axis=0).sum())
                     for i, s in enumerate(CONV_SHAPES)])
    channels = np.array([s[-1] for s in CONV_SHAPES])
    assert kept.sum() == channels.sum() - round(0.8 * channels.sum())  # 47 of 234
    assert np.all(kept > 0)  # was 31, 9, 0, 9: a dead layer and 46 kept
    # the density of a layer is the share of its channels kept, ERK's from its kernel's shape
    target = erk_kept_reference(CONV_SHAPES, channels, 1 - round(0.8 * channels.sum()) / channels.sum())
    assert np.all(np.abs(kept - target) < 1), (kept, target)
    assert kept[-1] == 10  # the classifier's density would exceed 1: dense, the rest re-solved


def test_erk_counts_of_groups_sum_to_the_total_and_empty_no_leaf():
    counts = pruning.layer_remove_counts([(8,), (512,)], 468, "erk",
                                         erk_shapes=[(3, 3, 512, 8), (1, 1, 8, 512)])
    assert counts.sum() == 468  # was 463
    assert counts[0] == 7  # ERK would keep 0.09 of its 8 channels: one stays
    rng = np.random.default_rng(0)
    for trial in range(300):
        layers = int(rng.integers(1, 6))
        kernels = [tuple(int(d) for d in rng.integers(1, 9, size=int(rng.integers(2, 5))))
                   for _ in range(layers)]
        channels = [(s[-1],) for s in kernels]
        n = np.array([c[0] for c in channels])
        k = int(rng.integers(0, n.sum() + 1))
        for traced in (False, True) if trial % 20 == 0 else (False,):
            kk = jnp.int32(k) if traced else k
            c = np.asarray(pruning.layer_remove_counts(channels, kk, "erk", erk_shapes=kernels))
            assert c.sum() == k and np.all(c >= 0) and np.all(c <= n), (kernels, k, c)
            if k <= n.sum() - layers:
                assert np.all(c < n), (kernels, k, c)
        target = n - erk_kept_reference(kernels, n, 1 - k / n.sum())
        if np.all(n - target >= 1):  # no leaf needs rounding up to one kept unit
            c = pruning.layer_remove_counts(channels, k, "erk", erk_shapes=kernels)
            assert np.all(np.abs(c - target) < 1), (kernels, k, c, target)


def test_erk_keeps_scalar_leaves_dense():
    params = {"k": jnp.ones((100, 100)), "scale": jnp.float32(1.0)}
    state = pruning.static_sparse(optax.sgd(0.1), 0.01).init(params)
    assert bool(state.support["scale"])  # was pruned: its ratio 0/1 gave density 0
    assert int(jnp.sum(~state.support["k"])) == round(0.01 * 10001)
    d = pruning.erk_densities([(100, 100), (), (10,)], 0.1)
    assert d[1] == 1.0
    np.testing.assert_allclose(d @ np.array([10000, 1, 10]), 0.1 * 10011, rtol=1e-12)
    for k in (0, 1, 500, 9000, 10009, 10010, 10011):
        for kk in (k, jnp.int32(k)):
            c = np.asarray(pruning.layer_remove_counts([(100, 100), (), (10,)], kk, "erk"))
            assert c.sum() == k
            assert c[1] == 0 or k > 10009  # the scalar goes only when nothing else is left


@pytest.mark.parametrize("distribution", ["uniform", "erk"])
def test_counts_never_shrink_when_the_total_grows_with_earlier_removals_as_lower_bounds(distribution):
    # largest remainder alone is not monotone in the total (the Alabama paradox)
    assert list(pruning.layer_remove_counts([(2,), (5,), (5,)], 3)) == [1, 1, 1]
    assert list(pruning.layer_remove_counts([(2,), (5,), (5,)], 4)) == [0, 2, 2]
    assert list(pruning.layer_remove_counts([(2,), (5,), (5,)], 4, at_least=[1, 1, 1])) == [1, 2, 1]
    rng = np.random.default_rng(1)
    for trial in range(150):
        shapes = [tuple(int(d) for d in rng.integers(1, 7, size=int(rng.integers(1, 3))))
                  for _ in range(int(rng.integers(2, 6)))]
        n = np.array([math.prod(s) for s in shapes])
        totals = np.sort(rng.integers(0, n.sum() + 1, size=6))
        traced = trial % 10 == 0
        prev = np.zeros(len(shapes), np.int64)
        for k in totals:
            lower = jnp.asarray(prev, jnp.int32) if traced else prev
            c = np.asarray(pruning.layer_remove_counts(shapes, int(k), distribution, at_least=lower))
            assert c.sum() == k and np.all(c >= prev) and np.all(c <= n), (shapes, k, prev, c)
            prev = c
    # a total below what is already removed: nothing comes back
    c = pruning.layer_remove_counts([(4,), (4,)], 2, distribution, at_least=[3, 1])
    assert list(c) == [3, 1]


def test_traced_counts_match_and_jit():
    shapes = [(3, 3, 16, 32), (512, 256), (256, 10)]
    n = sum(math.prod(s) for s in shapes)
    f = jax.jit(lambda k: pruning.layer_remove_counts(shapes, k, "erk", at_least=jnp.zeros(3, jnp.int32)))
    for k in (0, n // 3, n - 3, n):
        c = np.asarray(f(jnp.int32(k)))
        assert c.sum() == k
        assert np.all(np.abs(c - pruning.layer_remove_counts(shapes, k, "erk")) <= 1)
