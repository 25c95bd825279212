"""One-shot magnitude pruning: exact counts, ERK densities, ties, scores and errors."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax import pruning
import sparsejax as sj


def make_params(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "conv": {"kernel": jnp.asarray(rng.normal(size=(3, 3, 4, 8)), jnp.float32),
                 "bias": jnp.asarray(rng.normal(size=8), jnp.float32)},
        "dense": [
            {"kernel": jnp.asarray(rng.normal(size=(32, 10)), jnp.float32)},
            {"kernel": jnp.asarray(rng.normal(size=(10, 5)), jnp.bfloat16),
             "bias": jnp.zeros(5, jnp.float32)},
        ],
        "norm": {"scale": jnp.ones(8, jnp.float32)},
        "step": jnp.asarray(3.0),
        "frozen": None,
    }


def kernels(tree):
    return [tree["conv"]["kernel"], tree["dense"][0]["kernel"], tree["dense"][1]["kernel"]]


def smallest(x, k):
    """Brute force: the k smallest |x| by a stable argsort (row-major ties)."""
    flat = np.abs(np.asarray(x, np.float32)).ravel()
    removed = np.zeros(flat.size, bool)
    removed[np.argsort(flat, kind="stable")[:k]] = True
    return removed.reshape(np.shape(x))


def test_global_removes_exactly_the_k_smallest_magnitudes_over_all_kernels():
    params = make_params()
    pruned, support = pruning.prune(params, 0.6, mask=sj.tree.weights_only)
    ks = kernels(params)
    n = sum(x.size for x in ks)
    k = round(0.6 * n)
    flat = np.concatenate([np.abs(np.asarray(x, np.float32)).ravel() for x in ks])
    removed = np.zeros(n, bool)
    removed[np.argsort(flat, kind="stable")[:k]] = True
    got = np.concatenate([~np.asarray(m).ravel() for m in kernels(support)])
    np.testing.assert_array_equal(got, removed)
    assert sum(int(jnp.sum(x == 0)) for x in kernels(pruned)) == k
    # biases, norms, scalars and None leaves are untouched and get no mask
    assert support["conv"]["bias"] is None and support["norm"]["scale"] is None
    assert support["step"] is None and support["frozen"] is None and pruned["frozen"] is None
    np.testing.assert_array_equal(pruned["conv"]["bias"], params["conv"]["bias"])
    assert pruned["dense"][1]["kernel"].dtype == jnp.bfloat16


def test_layerwise_uniform_gives_each_leaf_its_share_and_the_exact_total():
    params = make_params(1)
    amount = 0.37
    pruned, support = pruning.prune(params, amount, scope="layerwise", mask=sj.tree.weights_only)
    ks = kernels(params)
    n = sum(x.size for x in ks)
    counts = [int(jnp.sum(~m)) for m in kernels(support)]
    assert sum(counts) == round(amount * n)
    for x, m, c in zip(ks, kernels(support), counts):
        assert c in (math.floor(amount * x.size), math.ceil(amount * x.size))
        np.testing.assert_array_equal(~np.asarray(m), smallest(x, c))


def test_int_amount_equals_the_matching_fraction():
    params = make_params(2)
    n = sum(x.size for x in kernels(params))
    for scope in ("global", "layerwise"):
        _, by_fraction = pruning.prune(params, 0.25, scope=scope, mask=sj.tree.weights_only)
        _, by_count = pruning.prune(params, round(0.25 * n), scope=scope, mask=sj.tree.weights_only)
        for a, b in zip(kernels(by_fraction), kernels(by_count)):
            np.testing.assert_array_equal(a, b)
    assert pruning.num_to_remove(0.5, 5) == 2  # round half to even, like torch
    assert pruning.num_to_remove(np.int64(4), 5) == 4
    # a fraction that rounds to every weight is refused like the count itself (it pruned all)
    with pytest.raises(ValueError, match="rounds to all 3: pruning all of them is not allowed"):
        pruning.prune({"a": jnp.array([1.0, 2.0, 3.0])}, 0.9)
    with pytest.raises(ValueError, match="pruning all of them is not allowed"):
        pruning.prune({"a": jnp.array([1.0, 2.0, 3.0])}, 3)
    assert pruning.num_to_remove(0.8, 3) == 2


def test_pattern_amounts_may_be_numpy_scalars():
    params = {"k": jnp.asarray(np.random.default_rng(0).normal(size=(8, 4)), jnp.float32)}
    for pattern, amount in (("2:4", np.float32(0.5)), ("2x2", np.float32(0.5)), ("channel", np.float64(0.5))):
        pruned, _ = pruning.prune(params, amount, pattern=pattern)
        expected, _ = pruning.prune(params, 0.5, pattern=pattern)
        np.testing.assert_array_equal(pruned["k"], expected["k"])


def erk_reference(shapes, density, power):
    """Independent ERK solution: iterate making over-full layers dense."""
    n = np.array([math.prod(s) for s in shapes], float)
    raw = np.array([sum(s) / math.prod(s) for s in shapes]) ** power
    dense = np.zeros(len(shapes), bool)
    while True:
        eps = (density * n.sum() - n[dense].sum()) / (raw[~dense] * n[~dense]).sum()
        over = ~dense & (eps * raw > 1)
        if not over.any():
            return np.where(dense, 1.0, eps * raw)
        dense |= over


SHAPES = [(3, 3, 16, 32), (512, 256), (256, 10)]


@pytest.mark.parametrize("density,power", [(0.05, 1.0), (0.1, 1.0), (0.1, 0.5), (0.3, 0.0)])
def test_erk_densities_match_the_closed_form(density, power):
    d = pruning.erk_densities(SHAPES, density, power)
    n = np.array([math.prod(s) for s in SHAPES], float)
    np.testing.assert_allclose(d, erk_reference(SHAPES, density, power), rtol=1e-12)
    np.testing.assert_allclose((d * n).sum(), density * n.sum(), rtol=1e-12)
    raw = np.array([sum(s) / math.prod(s) for s in SHAPES]) ** power
    free = d < 1
    ratio = d[free] / raw[free]  # one common epsilon for the layers that are not capped
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-12)
    if power == 0.0:
        np.testing.assert_allclose(d, density)
    if (density, power) == (0.1, 1.0):
        # the small classifier would exceed density 1: it is made dense, the rest re-solved
        assert d[2] == 1.0 and d[0] > d[1]
        eps = (0.1 * n.sum() - n[2]) / (raw[0] * n[0] + raw[1] * n[1])
        np.testing.assert_allclose(d[:2], eps * raw[:2], rtol=1e-12)
    # the traced (float32) version agrees
    traced = pruning.erk_densities(SHAPES, jnp.float32(density), jnp.float32(power))
    np.testing.assert_allclose(np.asarray(traced), d, rtol=1e-5, atol=1e-6)


def test_erk_prune_counts_refer_to_the_selected_leaves_only():
    rng = np.random.default_rng(3)
    shapes = [(3, 3, 8, 16), (128, 64), (64, 10)]
    params = {
        name: {"kernel": jnp.asarray(rng.normal(size=shape), jnp.float32)}
        for name, shape in zip("abc", shapes)
    }
    params["head"] = {"kernel": jnp.asarray(rng.normal(size=(32, 32)), jnp.float32)}
    filt = r"^(a|b|c)/"  # the head is excluded and stays dense
    amount = 0.9
    pruned, support = pruning.prune(params, amount, "layerwise", "erk", mask=filt)
    assert support["head"]["kernel"] is None
    np.testing.assert_array_equal(pruned["head"]["kernel"], params["head"]["kernel"])
    n = np.array([math.prod(s) for s in shapes])
    removed = np.array([int(jnp.sum(~support[k]["kernel"])) for k in "abc"])
    assert removed.sum() == round(amount * n.sum())
    expected = (1 - erk_reference(shapes, 1 - amount, 1.0)) * n
    assert np.all(np.abs(removed - expected) <= 1), (removed, expected)
    # including the head would have given other counts: the excluded leaf is not in the budget
    with_head = pruning.layer_remove_counts(shapes + [(32, 32)], round(amount * n.sum()), "erk")
    assert not np.array_equal(with_head[:3], removed)
    for k, c in zip("abc", removed):
        np.testing.assert_array_equal(
            ~np.asarray(support[k]["kernel"]), smallest(params[k]["kernel"], c)
        )
    # power scale 0 is the uniform distribution
    _, m0 = pruning.prune(params, amount, "layerwise", "erk", mask=filt, erk_power_scale=0.0)
    _, mu = pruning.prune(params, amount, "layerwise", "uniform", mask=filt)
    for k in "abc":
        np.testing.assert_array_equal(m0[k]["kernel"], mu[k]["kernel"])


def test_ties_are_broken_by_position_deterministically():
    params = {"a": {"kernel": jnp.ones((2, 3))}, "b": {"kernel": -jnp.ones((4, 1))}}
    _, support = pruning.prune(params, 7, mask=sj.tree.weights_only)
    np.testing.assert_array_equal(support["a"]["kernel"], np.zeros((2, 3), bool))
    np.testing.assert_array_equal(support["b"]["kernel"].ravel(), [False, True, True, True])
    _, again = pruning.prune(params, 7, mask=sj.tree.weights_only)
    np.testing.assert_array_equal(again["b"]["kernel"], support["b"]["kernel"])
    _, layer = pruning.prune(params, 5, scope="layerwise", mask=sj.tree.weights_only)  # 3 + 2 (largest remainders)
    np.testing.assert_array_equal(layer["a"]["kernel"].ravel(), [False] * 3 + [True] * 3)
    np.testing.assert_array_equal(layer["b"]["kernel"].ravel(), [False, False, True, True])


def test_importance_scores_decide_what_is_removed():
    params = make_params(4)
    scores = jax.tree.map(lambda x: -jnp.abs(x.astype(jnp.float32)), params)
    scores["conv"]["bias"] = None  # scores are only needed for pruned leaves
    _, support = pruning.prune(params, 0.3, importance_scores=scores, mask=sj.tree.weights_only)
    ks = kernels(params)
    flat = np.concatenate([np.abs(np.asarray(x, np.float32)).ravel() for x in ks])
    kept = np.concatenate([np.asarray(m).ravel() for m in kernels(support)])
    # the largest magnitudes went first
    assert flat[~kept].min() >= flat[kept].max()
    with pytest.raises(ValueError, match="importance_scores at 'dense/0/kernel' has shape"):
        bad = jax.tree.map(lambda x: x, scores)
        bad["dense"][0]["kernel"] = jnp.ones((3, 3))
        pruning.prune(params, 0.3, importance_scores=bad, mask=sj.tree.weights_only)
    with pytest.raises(ValueError, match="None at 'conv/kernel'"):
        bad = jax.tree.map(lambda x: x, scores)
        bad["conv"]["kernel"] = None
        pruning.prune(params, 0.3, importance_scores=bad, mask=sj.tree.weights_only)
    with pytest.raises(ValueError, match="importance_scores does not match"):
        pruning.prune(params, 0.3, importance_scores={"conv": scores["conv"]}, mask=sj.tree.weights_only)


def test_prune_under_jit_matches_eager():
    params = make_params(5)
    jitted = jax.jit(pruning.prune, static_argnames=("amount", "scope", "distribution", "mask"))
    for scope, dist in [("global", "uniform"), ("layerwise", "erk")]:
        a, ma = pruning.prune(params, 0.5, scope, dist, mask=sj.tree.weights_only)
        b, mb = jitted(params, amount=0.5, scope=scope, distribution=dist, mask=sj.tree.weights_only)
        for x, y in zip(jax.tree.leaves((a, ma)), jax.tree.leaves((b, mb))):
            np.testing.assert_array_equal(np.asarray(x, np.float32), np.asarray(y, np.float32))


@pytest.mark.parametrize(
    "amount,match",
    [
        (1.0, r"fraction\) must be in \[0, 1\)"),
        (-0.1, r"fraction\) must be in \[0, 1\)"),
        (float("nan"), r"fraction\) must be in \[0, 1\)"),
        (-1, r"count\) must be in \[0, 658\)"),
        (658, r"count\) must be in \[0, 658\)"),
        (True, "fraction in"),
        ("half", "fraction in"),
    ],
)
def test_amount_out_of_range_is_a_clear_error(amount, match):
    with pytest.raises(ValueError, match=match):
        pruning.prune(make_params(), amount, mask=sj.tree.weights_only)


def test_other_errors_are_clear():
    params = make_params()
    with pytest.raises(ValueError, match="selects no leaf"):
        pruning.prune(params, 0.5, mask=r"nothing-matches")
    with pytest.raises(ValueError, match="selects no leaf"):
        pruning.prune({"bias": jnp.ones(3), "none": None}, 0.5, mask=sj.tree.weights_only)
    with pytest.raises(ValueError, match="scope must be one of"):
        pruning.prune(params, 0.5, scope="local", mask=sj.tree.weights_only)
    with pytest.raises(ValueError, match="needs scope='layerwise'"):
        pruning.prune(params, 0.5, distribution="erk", mask=sj.tree.weights_only)
    with pytest.raises(ValueError, match="concrete"):
        jax.jit(pruning.prune)(params, 0.5)


@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_pattern_amount_that_rounds_to_every_group_is_refused(scope):
    # Unstructured pruning refuses a fraction that rounds to every weight; blocks and
    # channels zeroed every group silently (round(0.75 * 2) = 2 blocks of 2).
    w = {"k": jnp.arange(1.0, 9.0).reshape(2, 4), "v": jnp.ones((2, 2))}
    with pytest.raises(ValueError, match="of 3 blocks rounds to all 3: pruning all of them"):
        pruning.prune(w, 0.9, pattern="2x2", scope=scope)
    with pytest.raises(ValueError, match="of 6 channels rounds to all 6: pruning all of them"):
        pruning.prune(w, 0.95, pattern="channel", scope=scope)
    if scope == "layerwise":  # 5 of 6 would empty a leaf (4 + 2 channels): refused too
        with pytest.raises(ValueError, match="removes 5 of the 6 channels"):
            pruning.prune(w, 0.8, pattern="channel", scope=scope)
        pruned, _ = pruning.prune(w, 0.6, pattern="channel", scope=scope)  # 4 of 6: one each
        assert [int(jnp.sum(jnp.any(x != 0, axis=0))) for x in pruned.values()] == [1, 1]
        return
    pruned, _ = pruning.prune(w, 0.8, pattern="channel", scope=scope)  # 5 of 6 channels
    kept = sum(int(jnp.sum(jnp.any(x != 0, axis=0))) for x in pruned.values())
    assert kept == 1


def test_pattern_amounts_may_be_concrete_jax_scalars():
    # Unstructured pruning takes jnp scalars; N:M, block and channel patterns refused them.
    params = {"k": jnp.asarray(np.random.default_rng(1).normal(size=(8, 4)), jnp.float32)}
    for pattern in ("2:4", "2x2", "channel"):
        pruned, _ = pruning.prune(params, jnp.float32(0.5), pattern=pattern)
        expected, _ = pruning.prune(params, 0.5, pattern=pattern)
        np.testing.assert_array_equal(pruned["k"], expected["k"])
    with pytest.raises(ValueError, match="removes 0.5 of every group"):
        pruning.prune(params, jnp.float32(0.25), pattern="2:4")
    with pytest.raises(ValueError, match="must be a fraction in"):
        pruning.prune(params, jnp.array(True), pattern="channel")


def test_a_layerwise_amount_that_must_empty_a_leaf_is_refused():
    # 0.96 of 2 x 10 weights is 19: a layer-wise split keeps one weight of each leaf only
    # while K <= 18, so one leaf would be pruned whole (it was, silently).
    params = {"a": jnp.arange(1.0, 11.0), "b": jnp.arange(1.0, 11.0) * 10}
    with pytest.raises(ValueError, match="removes 19 of the 20 weights.*scope='layerwise'"):
        pruning.prune(params, 0.96, scope="layerwise")
    with pytest.raises(ValueError, match="removes 19 of the 20 weights"):
        pruning.prune(params, 19, scope="layerwise")
    pruned, _ = pruning.prune(params, 0.9, scope="layerwise")  # 18: one weight left in each
    assert [int(jnp.sum(pruned[k] != 0)) for k in ("a", "b")] == [1, 1]
    assert int(jnp.sum(pruning.prune(params, 0.96)[0]["b"] != 0)) == 1  # global: one threshold
    kernels = {"a": jnp.ones((4, 4)), "b": jnp.ones((4, 4))}  # 2 x 4 channels
    with pytest.raises(ValueError, match="removes 7 of the 8 channels"):
        pruning.prune(kernels, 0.85, scope="layerwise", pattern="channel")
    _, support = pruning.prune(kernels, 0.75, scope="layerwise", pattern="channel")
    assert [int(support[k].any(axis=0).sum()) for k in ("a", "b")] == [1, 1]
