"""Fast global selection (sparsejax.select) against brute-force stable argsorts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax import pruning


def random_tree(seed: int) -> dict:
    """Leaves of several shapes and dtypes, with many ties, signed zeros and a None leaf."""
    rng = np.random.default_rng(seed)
    signed_zeros = np.where(rng.random((2, 3, 4)) < 0.5, -0.0, 0.0)
    signed_zeros[0, 0, :2] = [1.0, -1.0]
    return {
        "a": jnp.asarray(rng.normal(size=(7, 9)), jnp.float32),
        "b": [jnp.asarray(np.round(rng.normal(size=300), 1), jnp.float32), None],
        "c": jnp.asarray(rng.normal(size=(5, 8)), jnp.bfloat16),
        "d": jnp.asarray(signed_zeros, jnp.float32),
    }


def numpy_keep_global(tree, k):
    """Brute force: a stable argsort of all scores, the first k removed."""
    leaves = jax.tree.leaves(tree)
    flat = np.concatenate([np.asarray(x, np.float32).ravel() for x in leaves])
    removed = np.zeros(flat.size, bool)
    removed[np.argsort(flat, kind="stable")[:k]] = True
    out, start = [], 0
    for x in leaves:
        out.append(~removed[start : start + x.size].reshape(x.shape))
        start += x.size
    return out


def assert_masks_equal(actual, expected_leaves):
    actual_leaves = jax.tree.leaves(actual)
    assert len(actual_leaves) == len(expected_leaves)
    for a, e in zip(actual_leaves, expected_leaves):
        assert a.dtype == jnp.bool_
        np.testing.assert_array_equal(np.asarray(a), e)


def like_random_tree(flat) -> dict:
    """A tree with random_tree's structure, shapes and dtypes holding the given values."""
    leaves, treedef = jax.tree.flatten(random_tree(0))
    out, start = [], 0
    for x in leaves:
        out.append(jnp.asarray(flat[start : start + x.size].reshape(x.shape), x.dtype))
        start += x.size
    return jax.tree.unflatten(treedef, out)


N = 427  # entries in random_tree


@pytest.mark.parametrize("seed,sample_size", [(0, 16), (1, 1 << 16)], ids=["bisection", "sort"])
def test_select_global_equals_stable_argsort(seed, sample_size):
    tree = random_tree(seed)
    assert sum(x.size for x in jax.tree.leaves(tree)) == N
    rng = np.random.default_rng(seed)
    for i, k in enumerate([0, 1, N // 2, N - 1, N, int(rng.integers(0, N))]):
        expected = numpy_keep_global(tree, k)
        count = jnp.int32(k) if i % 2 else k  # counts may be traced (one compilation for all)
        assert_masks_equal(pruning.select_global(tree, count, sample_size=sample_size), expected)
        assert_masks_equal(pruning.select_global_argsort(tree, count), expected)


def test_select_global_with_all_equal_scores_removes_the_first_positions():
    tree = like_random_tree(np.ones(N))
    keep = jax.tree.leaves(pruning.select_global(tree, 70, sample_size=16))
    np.testing.assert_array_equal(keep[0], np.zeros((7, 9), bool))
    np.testing.assert_array_equal(keep[1], np.arange(300) >= 7)


def test_select_global_when_the_sample_misleads_the_bracket():
    # Every sampled position (stride ceil(427 / 16) = 27) holds a large value: the bracket
    # from the sample is wrong and the search falls back to the full key range.
    flat = np.linspace(0.0, 1.0, N)
    flat[::27] = 100.0
    tree = like_random_tree(flat)
    for k in [3, 200, 400]:
        keep = pruning.select_global(tree, k, sample_size=16)
        assert_masks_equal(keep, numpy_keep_global(tree, k))


@pytest.mark.parametrize("sample_size", [16, 1 << 16], ids=["bisection", "sort"])
def test_select_layerwise_equals_per_leaf_argsort(sample_size):
    tree = random_tree(3)
    leaves, treedef = jax.tree.flatten(tree)
    rng = np.random.default_rng(3)
    counts = [int(rng.integers(0, x.size + 1)) for x in leaves]
    counts[0] = leaves[0].size  # a leaf removed entirely
    counts[1] = 0
    keep = pruning.select_layerwise(
        tree, jax.tree.unflatten(treedef, counts), sample_size=sample_size
    )
    expected = [numpy_keep_global([x], k)[0] for x, k in zip(leaves, counts)]
    assert_masks_equal(keep, expected)


def test_order_keys_follow_the_float_order():
    rng = np.random.default_rng(5)
    values = np.concatenate(
        [
            # Normal floats only: XLA flushes subnormals to zero on CPU (so does the key).
            rng.normal(size=200) * 10.0 ** rng.integers(-36, 30, size=200),
            [np.inf, -np.inf, 0.0, -0.0, 1.2e-38, -1.2e-38, 3.4e38, -3.4e38],
        ]
    ).astype(np.float32)
    keys = np.asarray(pruning.order_keys(jnp.asarray(values)))
    assert keys.dtype == np.uint32
    order_by_keys = np.argsort(keys, kind="stable")
    order_by_values = np.argsort(values, kind="stable")
    np.testing.assert_array_equal(values[order_by_keys], values[order_by_values])
    # -0.0 and 0.0 compare equal, so they share a key.
    assert keys[-5] == keys[-6]


@pytest.mark.parametrize("path", ["f32", "int"])
def test_both_bisection_paths_equal_the_argsort_on_adversarial_keys(path):
    # Neighbouring floats (equal top 24 key bits, different low 8 bits), ties straddling the
    # threshold, -inf (RigL's excluded entries), +inf and NaN: the float32-digit path (groups
    # of at most 2**24 entries) and the integer path (larger groups) both equal a stable
    # argsort of the keys, group by group.
    from sparsejax import select

    rng = np.random.default_rng(7)
    base = np.float32(0.3)
    run = [base]
    for _ in range(40):
        run.append(np.nextafter(run[-1], np.float32(1), dtype=np.float32))
    groups = [
        np.concatenate([np.repeat(np.array(run, np.float32), 3), rng.normal(size=200)]),
        np.concatenate([np.full(50, -np.inf), [np.inf, np.nan, 0.0, -0.0], rng.normal(size=90)]),
        np.ones(130),
    ]
    groups = [rng.permutation(g).astype(np.float32) for g in groups]
    keys = [pruning.order_keys(jnp.asarray(g)) for g in groups]
    fn = select._smallest_by_bisection_f32 if path == "f32" else select._smallest_by_bisection_int
    for trial in range(4):
        k = np.array([rng.integers(0, g.size + 1) for g in groups], np.int32)
        if trial == 0:
            k = np.array([g.size for g in groups], np.int32) // 2
        got = jax.jit(fn, static_argnums=2)(keys, jnp.asarray(k), 16)
        for g_keys, kk, removed in zip(keys, k, got):
            expected = np.zeros(g_keys.size, bool)
            expected[np.argsort(np.asarray(g_keys), kind="stable")[:kk]] = True
            np.testing.assert_array_equal(np.asarray(removed), expected)


def _top_k_reference(x: jax.Array, k: int) -> np.ndarray:
    """The entries lax.top_k returns, as a mask."""
    mask = np.zeros(x.size, bool)
    if k:
        mask[np.asarray(jax.lax.top_k(jnp.ravel(x), k)[1])] = True
    return mask.reshape(x.shape)


def _adversarial(n: int, seed: int) -> np.ndarray:
    """Float32 values with heavy ties, both zeros, both NaNs, infinities and subnormals."""
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(size=n), 2).astype(np.float32)  # a few hundred distinct values
    specials = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, -1e-40, 2e-40],
                        np.float32)
    x[rng.integers(0, n, n // 4)] = rng.choice(specials, n // 4)
    return x


@pytest.mark.parametrize("sample_size", [64, 1 << 16])  # bisection path; lax.top_k itself
def test_top_k_mask_is_the_set_lax_top_k_returns(sample_size):
    # Total order (-NaN < -inf < -0 < +0 < subnormals < ... < inf < NaN), ties to the lower
    # position: keys that canonicalised zeros or NaNs, or flushed subnormals, would differ.
    from sparsejax.select import top_k_mask

    for seed, shape in enumerate([(3001,), (40, 77)]):
        x = jnp.asarray(_adversarial(int(np.prod(shape)), seed).reshape(shape))
        n = x.size
        cases = [(x, k) for k in (0, 1, n // 7, n - 1, n)]
        cases += [(jnp.abs(x), n // 7), (x.astype(jnp.bfloat16), n // 3)]  # |g|, as the LMO
        for arr, k in cases:
            got = top_k_mask(arr, k, sample_size=sample_size)
            assert got.shape == arr.shape and got.dtype == jnp.bool_
            np.testing.assert_array_equal(np.asarray(got), _top_k_reference(arr, k),
                                          err_msg=f"seed {seed}, k {k}, {arr.dtype}")
            assert int(got.sum()) == k


def test_top_k_mask_rejects_a_k_outside_the_array_and_takes_float64():
    from sparsejax.select import top_k_mask

    with pytest.raises(ValueError, match=r"k must be in \[0, 4\]"):
        top_k_mask(jnp.ones(4), 5)
    with pytest.raises(ValueError, match="k must be"):
        top_k_mask(jnp.ones(4), -1)
    with jax.enable_x64(True):  # float64 keeps its own order: two values one float32 apart
        x = jnp.asarray([1.0, 1.0 + 1e-12, 0.5] * 30, jnp.float64)
        got = top_k_mask(x, 30, sample_size=8)
        np.testing.assert_array_equal(np.asarray(got), _top_k_reference(x, 30))
        assert bool(got[1]) and not bool(got[0])


def test_float32_selections_run_under_x64():
    # With jax_enable_x64 on, float32 leaves above the sample size go through the bisection,
    # whose loop carries int32 bounds: a Python-int branch of a where() became int64 there and
    # the while loop refused the carry (prune, select_global, select_layerwise, top_k_mask).
    from sparsejax.select import top_k_mask

    rng = np.random.default_rng(3)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.normal(size=70_000), jnp.float32)
        params = {"a": x, "b": jnp.asarray(rng.normal(size=(300, 250)), jnp.float32)}
        got = top_k_mask(x, 20_000)
        np.testing.assert_array_equal(np.asarray(got), _top_k_reference(x, 20_000))
        pruned, _ = pruning.prune(params, 0.5)
        assert sum(int(jnp.sum(v == 0)) for v in pruned.values()) == round(0.5 * 145_000)
        pruned, _ = pruning.prune(params, 0.3, scope="layerwise")
        assert int(jnp.sum(pruned["a"] == 0)) == 21_000 and int(jnp.sum(pruned["b"] == 0)) == 22_500


def test_k_sparse_lmo_on_a_large_leaf_is_the_top_k_vertex():
    # Above the sample size, KSparsePolytope.lmo selects with top_k_mask; its vertex must be
    # the one lax.top_k gives (ties to the lower index, zero where the gradient is zero).
    from sparsejax import constraints

    g = jnp.asarray(_adversarial(70_000, 5).reshape(700, 100))
    g = jnp.where(jnp.isnan(g), 0.0, g)  # an LMO's input is a finite gradient
    con = constraints.k_sparse_polytope(k_frac=0.05, radius=0.5)
    k = con.k_for(g.size)
    expected = np.where(_top_k_reference(jnp.abs(g), k), -0.5 * np.sign(np.asarray(g)), 0.0)
    got = np.asarray(jax.jit(con.lmo)(g))
    np.testing.assert_array_equal(got, expected + 0.0)
    assert not np.any(np.signbit(got) & (got == 0))  # no negative zeros


def _python_keep(leaves, k):
    """Brute force with exact comparisons: Python compares ints and floats exactly (NaN last)."""
    values = [v for x in leaves for v in np.asarray(x).ravel().tolist()]
    nan = [v != v for v in values]
    order = sorted(range(len(values)), key=lambda i: (nan[i], 0 if nan[i] else values[i]))
    removed = np.zeros(len(values), bool)
    removed[order[:k]] = True
    out, start = [], 0
    for x in leaves:
        out.append(~removed[start : start + x.size].reshape(x.shape))
        start += x.size
    return out


def test_float64_and_wide_integer_scores_are_ranked_exactly():
    # Float32 keys read 1 + 1e-12 as 1.0 and 16777217 as 16777216: prune removed the wrong
    # entry. Leaves of such dtypes are ranked by an exact sort, equal to a NumPy stable argsort
    # of the values themselves (and, across dtypes, to exact Python comparisons).
    rng = np.random.default_rng(11)
    big = np.array([16777217, 16777216, 5, 2**31 - 1, -(2**31), 2**30 + 1, 2**30] * 9, np.int32)
    # mask=True: the default mask leaves integer leaves out
    assert pruning.prune({"a": jnp.asarray(big[:3])}, 2, mask=True)[1]["a"].tolist() == [True, False, False]
    ints = rng.permutation(big)
    floats = np.array([2.0**31, 16777218.0, -0.0, 0.0, np.inf, np.nan, 2.0**30, 1.5], np.float32)
    tree = {"i": jnp.asarray(ints), "f": jnp.asarray(floats)}
    for k in [1, 20, 40, 70]:
        assert_masks_equal(pruning.select_global(tree, k), _python_keep(jax.tree.leaves(tree), k))
    with jax.enable_x64(True):
        w = {"a": jnp.array([1 + 1e-12, 1.0, 3.0])}
        assert pruning.prune(w, 1)[1]["a"].tolist() == [True, False, True]
        x = 1.0 + rng.normal(size=400) * 1e-12  # distinct in float64, few values in float32
        x[::7] = x[3]  # ties
        tree = {"a": jnp.asarray(x.reshape(20, 20)), "b": jnp.asarray(rng.normal(size=70))}
        leaves = jax.tree.leaves(tree)
        flat = np.concatenate([np.asarray(v).ravel() for v in leaves])
        for k in [1, 133, 300, 469]:
            removed = np.zeros(flat.size, bool)
            removed[np.argsort(flat, kind="stable")[:k]] = True
            expected = [~removed[:400].reshape(20, 20), ~removed[400:]]
            for sample_size in [16, 1 << 16]:
                assert_masks_equal(pruning.select_global(tree, k, sample_size=sample_size),
                                   expected)
            _, support = pruning.prune(tree, k, importance_scores=tree)
            assert_masks_equal(support, expected)
        counts = {"a": 150, "b": 9}
        keep = pruning.select_layerwise(tree, counts, sample_size=16)
        for leaf, name in [(tree["a"], "a"), (tree["b"], "b")]:
            expected = np.zeros(leaf.size, bool)
            expected[np.argsort(np.asarray(leaf).ravel(), kind="stable")[:counts[name]]] = True
            np.testing.assert_array_equal(np.asarray(keep[name]).ravel(), ~expected)
        wide = {"i": jnp.asarray(rng.integers(2**53, 2**53 + 8, 64)), "f": jnp.asarray(x[:30])}
        assert wide["i"].dtype == jnp.int64
        assert_masks_equal(pruning.select_global(wide, 40), _python_keep(jax.tree.leaves(wide), 40))
