"""Sparsity patterns: N:M, blocks and channels in one-shot and gradual pruning."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sparsejax as sj
from sparsejax import pruning
from sparsejax.patterns import kept_groups, parse_pattern


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "dense": {"kernel": jnp.asarray(rng.normal(size=(8, 6)), jnp.float32),
                  "bias": jnp.asarray(rng.normal(size=6), jnp.float32)},
        "conv": {"kernel": jnp.asarray(rng.normal(size=(3, 3, 4, 8)), jnp.float32)},
    }


def test_n_m_prune_keeps_the_n_largest_of_every_group_along_the_input_axis():
    params = _params()
    pruned, support = pruning.prune(params, None, mask=sj.tree.weights_only, pattern="2:4")
    assert pruning.is_n_m_sparse(pruned, 2, 4, mask=sj.tree.weights_only)
    assert not pruning.is_n_m_sparse(pruned, 1, 4, mask=sj.tree.weights_only)
    for name in ("dense", "conv"):
        w = np.asarray(params[name]["kernel"])
        groups = np.moveaxis(w, -2, -1).reshape(-1, w.shape[-2] // 4, 4)
        kept = np.moveaxis(np.asarray(support[name]["kernel"]), -2, -1).reshape(groups.shape)
        reference = np.zeros_like(kept)
        order = np.argsort(np.abs(groups), axis=-1, kind="stable")
        np.put_along_axis(reference, order[..., 2:], True, axis=-1)
        np.testing.assert_array_equal(kept, reference)
    assert pruned["dense"]["bias"] is params["dense"]["bias"] or bool(
        jnp.all(pruned["dense"]["bias"] == params["dense"]["bias"]))


def test_pattern_errors_are_clear():
    params = {"k": jnp.ones((6, 4))}
    with pytest.raises(ValueError, match=r"'k' has input dimension 6 .*not divisible by M=4"):
        pruning.prune(params, None, pattern="2:4")
    with pytest.raises(ValueError, match="amount=None"):
        pruning.prune({"k": jnp.ones((8, 4))}, 0.3, pattern="2:4")
    with pytest.raises(ValueError, match="not divisible by the block"):
        pruning.prune(params, 0.5, pattern="4x4")
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        pruning.prune({"b": jnp.ones(8)}, 0.5, pattern="channel")
    with pytest.raises(ValueError, match="unknown pattern"):
        parse_pattern("2-4")
    with pytest.raises(ValueError, match="input dimension 6"):
        pruning.is_n_m_sparse(params, 2, 4)


def test_block_prune_removes_whole_blocks_with_the_smallest_sums():
    params = _params(1)
    pruned, support = pruning.prune(params, 0.5, scope="layerwise", mask=sj.tree.weights_only,
                                    pattern="2x2")
    pat = parse_pattern("2x2")
    for name in ("dense", "conv"):
        w = np.abs(np.asarray(params[name]["kernel"]))
        *lead, n_in, n_out = w.shape
        sums = w.reshape(*lead, n_in // 2, 2, n_out // 2, 2).sum(axis=(-3, -1)).ravel()
        m = np.asarray(support[name]["kernel"])
        blocks = m.reshape(*lead, n_in // 2, 2, n_out // 2, 2)
        assert np.all(blocks.all(axis=(-3, -1)) == blocks.any(axis=(-3, -1)))  # whole blocks
        kept_ref = np.zeros(sums.size, bool)
        kept_ref[np.argsort(sums, kind="stable")[sums.size // 2:]] = True
        np.testing.assert_array_equal(blocks.any(axis=(-3, -1)).ravel(), kept_ref)
        assert kept_groups(m, pat) == (sums.size // 2, sums.size)
    table = sj.format_sparsity(pruned, sj.tree.weights_only, pattern="2x2")
    assert "blocks kept" in table and "6 / 12" in table and "36 / 72" in table and "42 / 84" in table


@pytest.mark.parametrize("norm", [1, 2])
def test_channel_prune_removes_output_units_with_the_smallest_norm(norm):
    params = _params(2)
    _, support = pruning.prune(params, 0.5, scope="layerwise", mask=sj.tree.weights_only,
                               pattern=f"channel:l{norm}")
    for name in ("dense", "conv"):
        w = np.asarray(params[name]["kernel"]).reshape(-1, params[name]["kernel"].shape[-1])
        norms = np.linalg.norm(w, ord=norm, axis=0)
        kept = np.asarray(support[name]["kernel"]).reshape(w.shape)
        assert np.all(kept.all(axis=0) == kept.any(axis=0))
        ref = np.zeros(norms.size, bool)
        ref[np.argsort(norms, kind="stable")[norms.size // 2:]] = True
        np.testing.assert_array_equal(kept.any(axis=0), ref)


def test_gradual_n_m_reaches_a_valid_2_4_mask_through_3_4():
    params = _params(3)
    tx = pruning.gradual_pruning(optax.sgd(0.01), 0.5, begin_step=0, end_step=4, frequency=1,
                                 mask=sj.tree.weights_only, pattern="2:4", power=1)
    state = tx.init(params)
    seen = []
    for t in range(5):
        updates, state = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
        params = optax.apply_updates(params, updates)
        seen.append(tuple(pruning.is_n_m_sparse(params, n, 4, mask=sj.tree.weights_only)
                          for n in (3, 2)))
    # s_t = 0.5 t / 4: round(s_t * 4) = 0, 0, 1, 2, 2 entries removed per group of 4
    assert seen == [(False, False), (False, False), (True, False), (True, True), (True, True)]
    assert float(sj.sparsity(params, sj.tree.weights_only)) == 0.5


def _lowbias32(x):
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x7FEB352D)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(0x846CA68B)
    return x ^ (x >> np.uint32(16))


def test_uniform_scores_are_the_documented_hash_and_look_uniform():
    key = jax.random.PRNGKey(7)
    shapes = [(3, 5), (1 << 20,), (0,)]
    got = pruning.uniform_scores(key, shapes)
    assert [x.shape for x in got] == shapes and all(x.dtype == jnp.float32 for x in got)
    with np.errstate(over="ignore"):  # uint32 arithmetic wraps, as in the docstring
        for i, (x, shape) in enumerate(zip(got, shapes)):
            a, b = np.asarray(jax.random.bits(jax.random.fold_in(key, i), (2,), jnp.uint32))
            j = np.arange(math.prod(shape), dtype=np.uint32)
            h = _lowbias32(_lowbias32(j ^ a) + b)
            assert np.unique(h).size == h.size  # distinct within an array
            ref = (h >> np.uint32(8)).astype(np.float32) * np.float32(2.0**-24)
            np.testing.assert_array_equal(np.asarray(x).ravel(), ref)
    u = np.asarray(got[1], np.float64)
    n = u.size
    counts = np.bincount((u * 64).astype(int), minlength=64)
    chi2 = float(np.sum((counts - n / 64) ** 2 / (n / 64)))
    assert chi2 < 140  # 63 degrees of freedom: P(chi2 > 140) < 1e-6
    sd = 1 / math.sqrt(12 * n)  # of a mean of n uniforms
    for part in (u[0::2], u[1::2], u[: n // 2], u[n // 2:], u[::1024]):
        assert abs(part.mean() - 0.5) < 6 * sd * math.sqrt(n / part.size)
    c = u - 0.5
    assert abs(np.mean(c[1:] * c[:-1])) / (1 / 12) < 6 / math.sqrt(n)  # neighbours uncorrelated
    other = np.asarray(pruning.uniform_scores(jax.random.PRNGKey(8), shapes)[1], np.float64) - 0.5
    assert abs(np.mean(c * other)) / (1 / 12) < 6 / math.sqrt(n)  # keys give independent streams
    params = {"a": jnp.zeros((4, 3)), "b": None, "c": jnp.zeros(5)}
    rand = pruning.random_scores(params, seed=3)
    for r, x in zip(jax.tree.leaves(rand), pruning.uniform_scores(jax.random.PRNGKey(3), [(4, 3), (5,)])):
        np.testing.assert_array_equal(r, x)
    with pytest.raises(ValueError, match="2\\*\\*32"):
        pruning.uniform_scores(key, [(1 << 16, (1 << 16) + 1)])


def test_saliency_snip_and_random_scores_drive_prune():
    params = _params(4)
    grads = jax.tree.map(lambda p: jnp.sin(3.0 * p) + 0.1, params)
    scores = pruning.saliency_scores(params, grads)
    _, support = pruning.prune(params, 0.5, importance_scores=scores, mask=sj.tree.weights_only)
    flat = np.concatenate([np.abs(np.asarray(params[n]["kernel"] * grads[n]["kernel"])).ravel()
                           for n in ("conv", "dense")])  # jax.tree.leaves order: conv, dense
    kept = np.concatenate([np.asarray(support[n]["kernel"]).ravel() for n in ("conv", "dense")])
    ref = np.zeros(flat.size, bool)
    ref[np.argsort(flat, kind="stable")[flat.size // 2:]] = True
    np.testing.assert_array_equal(kept, ref)

    x = jnp.asarray(np.random.default_rng(0).normal(size=(5, 8)), jnp.float32)
    loss = lambda p, x: jnp.sum(jnp.tanh(x @ p["dense"]["kernel"]) ** 2)  # noqa: E731
    snip = pruning.snip_scores(loss, params, x)
    g = jax.grad(loss)(params, x)
    raw = {n: np.abs(np.asarray(g[n]["kernel"] * params[n]["kernel"])) for n in ("conv", "dense")}
    total = sum(r.sum() for r in raw.values())
    for n in ("conv", "dense"):
        np.testing.assert_allclose(snip[n]["kernel"], raw[n] / total, rtol=1e-5, atol=1e-9)
    rand = pruning.random_scores(params, seed=3)
    _, support = pruning.prune(params, 0.75, importance_scores=rand, mask=sj.tree.weights_only,
                               pattern="channel", scope="layerwise")
    assert kept_groups(support["dense"]["kernel"], parse_pattern("channel")) == (2, 6)


def test_empty_leaves_have_no_channels_and_take_no_share_of_the_count():
    assert sj.patterns.group_shape(parse_pattern("channel"), (0, 8)) == (0,)
    assert sj.patterns.group_scores(jnp.zeros((0, 8)), parse_pattern("channel")).shape == (0,)
    kernel = jax.random.normal(jax.random.key(0), (8, 8))
    params = {"k": kernel, "e": jnp.zeros((0, 8))}
    norms = np.linalg.norm(np.asarray(kernel), axis=0)
    best = np.zeros(8, bool)
    best[np.argsort(norms)[4:]] = True
    tx = pruning.ste_pruning(optax.sgd(0.1), 0.5, 0, 0, scope="global", pattern="channel")
    state = tx.init(params)
    _, state = tx.update(jax.tree.map(jnp.zeros_like, params), state, params)
    # the 8 empty "channels" of e (score 0) took the whole budget: 8 of 8 were kept
    np.testing.assert_array_equal(np.asarray(state.support["k"]).any(axis=0), best)
    assert state.support["e"].shape == (0, 8)
    for scope, distribution in [("global", "uniform"), ("layerwise", "uniform"), ("layerwise", "erk")]:
        keep = sj.pruning.pattern_masks.pattern_keep(
            [jnp.abs(kernel), jnp.zeros((0, 8)), jnp.zeros((3, 0))], parse_pattern("channel"),
            0.5, scope, distribution)
        np.testing.assert_array_equal(np.asarray(keep[0]).any(axis=0), best)
        assert keep[1].shape == (0, 8) and keep[2].shape == (3, 0)
    # gradual pruning reads the empty leaf's old support as no channels, not 8 pruned ones
    tx = pruning.gradual_pruning(optax.sgd(0.0), 0.5, 0, 2, 1, pattern="channel")
    state = tx.init(params)
    for _ in range(3):
        _, state = tx.update(jax.tree.map(jnp.zeros_like, params), state, params)
    np.testing.assert_array_equal(np.asarray(state.support["k"]).any(axis=0), best)


def test_channel_l1_scores_signed_importance_by_their_l1_norm():
    # Channel 0 has L1 norm 10 (scores -5 and 5), channel 1 has 2.5: the sum of the signed
    # scores (0 against 2.5) removed channel 1's better neighbour.
    scores = jnp.array([[-5.0, 1.0], [5.0, 1.5]])
    np.testing.assert_allclose(sj.patterns.group_scores(scores, parse_pattern("channel:l1")),
                               [10.0, 2.5])
    _, support = pruning.prune({"k": jnp.ones((2, 2))}, 0.5, pattern="channel:l1",
                               importance_scores={"k": scores})
    np.testing.assert_array_equal(support["k"], [[True, False], [True, False]])


@pytest.mark.parametrize("pattern", ["2:4", "2x2", "channel"])
@pytest.mark.parametrize("shape", [(0, 4), (4, 0), (2, 0, 4)])
def test_a_pattern_selection_of_empty_leaves_is_refused_like_an_unstructured_one(pattern, shape):
    # prune and gradual pruning returned the params unchanged (or N:M hit a bare
    # ZeroDivisionError), where an unstructured empty selection is a ValueError
    params = {"e": jnp.zeros(shape), "b": jnp.ones(3)}
    message = "mask selects only empty leaves: there is no weight to prune; pass mask="
    amount = None if pattern == "2:4" else 0.5
    with pytest.raises(ValueError, match=message):
        pruning.prune(params, amount, pattern=pattern, mask="e")
    with pytest.raises(ValueError, match=message):
        pruning.prune(params, 0.5, mask="e")
    with pytest.raises(ValueError, match=message):
        pruning.gradual_pruning(optax.sgd(0.1), 0.5, 0, 2, 1, pattern=pattern, mask="e").init(params)
    with pytest.raises(ValueError, match=message):
        pruning.ste_pruning(optax.sgd(0.1), 0.5, 0, 2, pattern=pattern, mask="e").init(params)


def test_an_empty_leaf_beside_a_kernel_takes_no_part_in_n_m():
    # an empty (4, 0) leaf in the selection raised a bare ZeroDivisionError
    kernel = jax.random.normal(jax.random.key(0), (8, 3))
    params = {"k": kernel, "e": jnp.zeros((4, 0))}
    pruned, support = pruning.prune(params, None, pattern="2:4")
    alone, _ = pruning.prune({"k": kernel}, None, pattern="2:4")
    np.testing.assert_array_equal(pruned["k"], alone["k"])
    assert support["e"].shape == (4, 0)


def test_snip_refuses_per_example_losses_and_says_how_to_reduce_them():
    # jax.grad failed with a bare TypeError about a non-scalar output
    params = {"w": jnp.array([1.0, 2.0])}
    x = jnp.array([[3.0, -1.0], [1.0, 0.5], [0.0, 2.0]])
    per_example = lambda p, x: x @ p["w"]  # noqa: E731
    with pytest.raises(ValueError, match=r"loss_fn must return a scalar .*got shape \(3,\).*jnp\.mean"):
        pruning.snip_scores(per_example, params, x)
    # the reduction it names gives the scores (a sum gives the same normalised ones)
    mean = pruning.snip_scores(lambda p, x: jnp.mean(per_example(p, x)), params, x)
    total = pruning.snip_scores(lambda p, x: jnp.sum(per_example(p, x)), params, x)
    np.testing.assert_allclose(mean["w"], total["w"], rtol=1e-6)
    np.testing.assert_allclose(mean["w"], [4.0 / 7.0, 3.0 / 7.0], rtol=1e-6)


def test_snip_with_classifier_loss_needs_the_mean_it_names():
    nnx = pytest.importorskip("flax.nnx")
    from sparsejax.models import create
    from sparsejax.train.connectivity import classifier_loss

    net = create("mlp", hidden=(4,), rngs=0)
    params = nnx.to_pure_dict(nnx.state(net, nnx.Param))
    batch = {"image": jnp.ones((3, 28, 28, 1)), "label": jnp.array([0, 1, 2], jnp.int32)}
    losses = classifier_loss(net)
    with pytest.raises(ValueError, match="classifier_loss"):
        pruning.snip_scores(losses, params, batch)
    scores = pruning.snip_scores(lambda p, b: jnp.mean(losses(p, b)), params, batch)
    assert sum(float(jnp.sum(s)) for s in jax.tree.leaves(scores)) == pytest.approx(1.0, rel=1e-5)
