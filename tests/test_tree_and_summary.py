"""Leaf naming and selection (sparsejax.tree) and sparsity summaries."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import sparsejax as sj
from sparsejax.models import MLP


def test_paths_read_the_same_for_dicts_lists_and_nnx_states():
    model = MLP(4, (3,), 2, rngs=nnx.Rngs(0))
    nnx_paths = [p for p, _ in sj.tree.leaves_with_paths(nnx.state(model, nnx.Param))]
    pure = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    dict_paths = [p for p, _ in sj.tree.leaves_with_paths(pure)]
    assert nnx_paths == dict_paths == ["layers/0/bias", "layers/0/kernel", "layers/1/bias", "layers/1/kernel"]
    as_list = [{"kernel": jnp.ones((2, 2))}, (jnp.ones(1), None)]
    assert [p for p, _ in sj.tree.leaves_with_paths(as_list)] == ["0/kernel", "1/0"]


def test_weights_only_and_path_filters_select_kernels():
    model = MLP(4, (3,), 2, rngs=nnx.Rngs(0))
    state = nnx.state(model, nnx.Param)
    selected = [p for (p, _), s in zip(sj.tree.leaves_with_paths(state), jax.tree.leaves(sj.tree.weights_only(state))) if s]
    assert selected == ["layers/0/kernel", "layers/1/kernel"]
    by_regex = sj.tree.path_filter(r"^layers/1/")(nnx.to_pure_dict(state))
    assert by_regex["layers"][1] == {"bias": True, "kernel": True}
    assert by_regex["layers"][0] == {"bias": False, "kernel": False}


def test_resolve_mask_broadcasts_prefixes_and_rejects_bad_masks():
    params = {"a": jnp.ones(2), "b": {"c": jnp.ones(1), "d": None}}
    assert sj.tree.resolve_mask(None, params) == {"a": True, "b": {"c": True, "d": None}}
    assert sj.tree.resolve_mask({"a": False, "b": True}, params) == {"a": False, "b": {"c": True, "d": None}}
    assert sj.tree.resolve_mask(lambda p: {"a": True, "b": False}, params)["b"]["c"] is False
    with pytest.raises(ValueError, match="mask does not match the params"):
        sj.tree.resolve_mask({"a": True}, params)
    with pytest.raises(ValueError, match="mask leaves must be booleans"):
        sj.tree.resolve_mask({"a": 0.5, "b": True}, params)


def test_sparsity_counts_exact_zeros_and_works_under_jit():
    params = {"w": jnp.array([[0.0, 1.0], [0.0, -0.0]]), "b": jnp.array([0.0, 2.0, 3.0, 4.0]), "n": None}
    np.testing.assert_allclose(sj.sparsity(params), 4 / 8)
    np.testing.assert_allclose(jax.jit(sj.sparsity)(params), 4 / 8)
    np.testing.assert_allclose(sj.sparsity(params, sj.tree.weights_only), 3 / 4)
    assert float(sj.sparsity({"x": None})) == 0.0
    # Python floats are leaves too (Python ints, like integer arrays, are not counted by default);
    # empty leaves count as 0% sparse, an empty selection by a given mask is an error
    assert float(sj.sparsity({"w": jnp.zeros(3), "lr": 0.5, "step": 3})) == 0.75
    empty = {"w": jnp.zeros((0, 4)), "v": jnp.array([0.0, 1.0])}
    assert [r.sparsity for r in sj.sparsity_summary(empty)] == [0.5, 0.0]
    assert sj.format_sparsity(empty, mask="^w$").splitlines()[-1].endswith(" 0.00%")
    assert float(sj.sparsity(empty, mask="^w$")) == 0.0
    with pytest.raises(ValueError, match="mask='nomatch' selects no leaf"):
        sj.sparsity(empty, mask="nomatch")


def test_sparsity_summary_and_table():
    model = MLP(4, (3,), 2, rngs=nnx.Rngs(0))
    state = nnx.state(model, nnx.Param)
    kernel = state["layers"][0]["kernel"]
    kernel[...] = kernel[...].at[0].set(0.0)  # 3 of 12 entries
    rows = sj.sparsity_summary(state, sj.tree.weights_only)
    assert [r.path for r in rows] == ["layers/0/kernel", "layers/1/kernel"]
    assert rows[0] == sj.LeafSparsity("layers/0/kernel", (4, 3), 12, 9, 0.25)
    table = sj.format_sparsity(state, sj.tree.weights_only)
    lines = table.splitlines()
    assert lines[0].split() == ["path", "shape", "nonzeros", "/", "size", "sparsity"]
    assert lines[1].split()[0] == "layers/0/kernel" and lines[1].endswith("25.00%")
    assert lines[-1].split()[:4] == ["total", "15", "/", "18"] and lines[-1].endswith("16.67%")


def test_a_mask_turned_into_an_array_by_inject_hyperparams_is_an_error():
    import optax

    params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}
    tx = optax.inject_hyperparams(sj.grda)(learning_rate=0.1, mask=sj.tree.weights_only)
    with pytest.raises(ValueError, match="static_args=\\('mask',\\)"):
        tx.update(params, tx.init(params), params)
    ok = optax.inject_hyperparams(sj.grda, static_args=("mask",))(learning_rate=0.1, mask=sj.tree.weights_only)
    ok.update(params, ok.init(params), params)


def test_one_mask_convention_for_transforms_and_pruning():
    """The same mask= forms select the same leaves in a transform and in pruning; an empty
    selection names the paths and what to pass."""
    import optax

    params = {"conv": {"kernel": jnp.array([[0.1, 0.9], [0.2, 0.8]]), "bias": jnp.array([0.15, 0.85])}}
    grads = jax.tree.map(jnp.zeros_like, params)
    for mask, selected in [(None, {"kernel", "bias"}), ("kernel$", {"kernel"}),
                           (sj.tree.weights_only, {"kernel"}),
                           ({"conv": {"kernel": False, "bias": True}}, {"bias"})]:
        tx = sj.apply_soft_threshold(0.05, mask)
        updates, _ = tx.update(grads, tx.init(params), params)
        new = optax.apply_updates(params, updates)
        changed = {k for k in params["conv"] if not np.array_equal(new["conv"][k], params["conv"][k])}
        assert changed == selected, mask
        # half of the selected entries by magnitude: the smallest ones, in the selected leaves only
        pruned, _ = sj.pruning.prune(params, 0.5, mask=mask)
        zeroed = {k for k, v in pruned["conv"].items() if bool(jnp.any(v == 0))}
        assert zeroed == selected, mask
    with pytest.raises(ValueError, match=r"selects no leaf.*'conv/bias', 'conv/kernel'.*mask=None"):
        tx = sj.apply_soft_threshold(0.1, "^dense")
        tx.update(grads, tx.init(params), params)


def test_format_sparsity_refuses_an_n_m_pattern():
    # It printed a "channels kept" column counting single non-zero entries for '2:4'.
    w = {"k": jnp.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [0.0, 0.0]])}
    with pytest.raises(ValueError, match="pattern='2:4' is N:M"):
        sj.format_sparsity(w, pattern="2:4")
    assert "channels kept" in sj.format_sparsity(w, pattern="channel")


def test_weights_only_leaves_out_two_dimensional_biases_and_selects_embeddings():
    """MultiHeadAttention's (heads, head_dim) query/key/value biases and LinearGeneral's bias
    have ndim 2; they were selected (and pruned). Embedding tables are weight matrices."""

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.attn = nnx.MultiHeadAttention(num_heads=2, in_features=4, qkv_features=4, decode=False, rngs=rngs)
            self.lg = nnx.LinearGeneral(4, (2, 3), rngs=rngs)
            self.embed = nnx.Embed(10, 4, rngs=rngs)
            self.ln = nnx.LayerNorm(4, rngs=rngs)

    state = nnx.state(Net(nnx.Rngs(0)), nnx.Param)
    for params in (state, nnx.to_pure_dict(state)):
        flags = jax.tree.leaves(sj.tree.weights_only(params))
        selected = [p for (p, _), s in zip(sj.tree.leaves_with_paths(params), flags) if s]
        assert selected == ["attn/key/kernel", "attn/out/kernel", "attn/query/kernel", "attn/value/kernel",
                            "embed/embedding", "lg/kernel"]
    assert np.ndim(state["attn"]["query"]["bias"][...]) == 2 and np.ndim(state["lg"]["bias"][...]) == 2
    # pruning with mask=weights_only leaves the 2-D biases alone
    state["attn"]["query"]["bias"][...] = jnp.array([[0.1, -0.2], [0.3, 0.4]])
    pruned, support = sj.pruning.prune(state, 0.5, mask=sj.tree.weights_only)
    np.testing.assert_array_equal(pruned["attn"]["query"]["bias"][...], np.float32([[0.1, -0.2], [0.3, 0.4]]))
    assert support["attn"]["query"]["bias"].get_value() is None and support["lg"]["bias"].get_value() is None
    # a weight named bias or scale is never selected, at any depth or in any tree
    assert sj.tree.weights_only({"w": jnp.ones((2, 2)), "x": [{"scale": jnp.ones((2, 2))}]}) == {
        "w": True, "x": [{"scale": False}]}


def test_the_default_mask_selects_floating_point_leaves_only():
    """mask=None took PRNG keys (dtype errors in summaries and pruning), int and bool leaves."""
    tree = {"w": jnp.ones((2, 2)), "c": jnp.array([0j, 1j]), "h": jnp.zeros(2, jnp.bfloat16),
            "lr": 0.5, "step": jnp.int32(0), "keep": jnp.zeros(2, bool), "n": 3, "flag": True,
            "key": jax.random.key(0), "raw_key": jax.random.PRNGKey(0), "none": None}
    assert sj.tree.resolve_mask(None, tree) == {
        "w": True, "c": True, "h": True, "lr": True, "step": False, "keep": False, "n": False,
        "flag": False, "key": False, "raw_key": False, "none": None}
    np.testing.assert_allclose(sj.sparsity(tree), 3 / 9)  # the zeros of c and h, and not of int/bool leaves
    assert sj.format_sparsity({"w": jnp.ones((2, 2)), "step": jnp.int32(0), "keep": jnp.zeros(2, bool)}
                              ).splitlines()[-1].split()[1:4] == ["4", "/", "4"]

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.lin = nnx.Linear(3, 2, rngs=rngs)
            self.bn = nnx.BatchNorm(2, rngs=rngs)
            self.drop = nnx.Dropout(0.5, rngs=rngs)

    full = nnx.state(Net(nnx.Rngs(0)))  # holds the dropout's key and uint32 counter
    assert any(not jnp.issubdtype(x.dtype, jnp.inexact) for x in jax.tree.leaves(full))
    np.testing.assert_allclose(sj.sparsity(full), 6 / 16)  # lin bias, bn bias and bn mean (2 each)
    assert [r.path for r in sj.sparsity_summary(full)] == [
        "bn/bias", "bn/mean", "bn/scale", "bn/var", "lin/bias", "lin/kernel"]
    assert "total" in sj.format_sparsity(full)
    pruned, support = sj.pruning.prune(full, 0.5)
    assert jax.tree.structure(pruned) == jax.tree.structure(full)
    # a tree without floating-point leaves is an empty selection for the transforms
    with pytest.raises(ValueError, match=r"mask=None \(the default: floating-point leaves only\) selects no leaf.*'n'"):
        ints = {"n": jnp.arange(3)}
        tx = sj.apply_soft_threshold(0.5)
        tx.update(ints, tx.init(ints), ints)


def test_summaries_refuse_a_mask_that_selects_nothing():
    """A typo in the mask gave 0% sparsity silently (an empty selection is an error elsewhere)."""
    p = {"conv": {"kernel": jnp.zeros((3, 3))}}
    for summary in (sj.sparsity, sj.sparsity_summary, sj.format_sparsity):
        with pytest.raises(ValueError, match=r"mask='kernal' selects no leaf.*'conv/kernel'"):
            summary(p, "kernal")
        with pytest.raises(ValueError, match=r"mask selects no leaf"):
            summary(p, False)
    with pytest.raises(ValueError, match="selects no leaf"):
        sj.format_sparsity(p, "kernal", pattern="channel")
    assert float(sj.sparsity(p, "kernel")) == 1.0
    assert float(sj.sparsity({"n": None})) == 0.0 and float(sj.sparsity({"n": None}, "kernel")) == 0.0


def test_a_plain_mask_or_threshold_for_nnx_state_params_says_how_to_fix_it():
    _, params = nnx.split(nnx.Linear(3, 2, rngs=nnx.Rngs(0)), nnx.Param)
    for mask in ({"kernel": True, "bias": False}, sj.tree.weights_only(nnx.to_pure_dict(params))):
        with pytest.raises(ValueError, match=r"mask is a plain pytree.*params are an nnx.State.*"
                                             r"regular expression.*weights_only.*nnx.to_pure_dict"):
            sj.tree.resolve_mask(mask, params)
    tx = sj.grda(0.1, mask={"kernel": True, "bias": False})
    with pytest.raises(ValueError, match=r"mask is a plain pytree.*nnx.State"):
        tx.update(params, tx.init(params), params)
    # and the other way round; a per-leaf threshold gets the same explanation
    with pytest.raises(ValueError, match=r"mask is an nnx.State.*params are a plain pytree"):
        sj.tree.resolve_mask(sj.tree.weights_only(params), nnx.to_pure_dict(params))
    tx = sj.apply_soft_threshold({"kernel": 0.1, "bias": 0.0})
    with pytest.raises(ValueError, match=r"threshold is a plain pytree.*nnx.State.*Build the threshold"):
        tx.update(params, tx.init(params), params)
    # the working forms: a regex, a callable, a mask of the same kind
    assert jax.tree.leaves(sj.tree.resolve_mask("kernel", params)) == [False, True]
    assert jax.tree.leaves(sj.tree.resolve_mask(sj.tree.weights_only(params), params)) == [False, True]
    # a mismatch between trees of the same kind keeps the structure message
    with pytest.raises(ValueError, match=r"mask does not match the params: its structure"):
        sj.tree.resolve_mask({"kernel": True}, nnx.to_pure_dict(params))


def test_invalid_regex_and_per_element_masks_are_clear_errors():
    p = {"conv": {"kernel": jnp.zeros((3, 3))}}
    with pytest.raises(ValueError, match=r"mask='kernel\(' is not a valid regular expression"):
        sj.tree.resolve_mask("kernel(", p)
    with pytest.raises(ValueError, match=r"(?s)mask leaves must be booleans.*one bool per leaf.*"
                                         r"sparsejax.pruning.apply_support"):
        sj.tree.resolve_mask({"conv": {"kernel": jnp.ones((3, 3), bool)}}, p)
