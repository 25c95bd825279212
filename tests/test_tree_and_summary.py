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
    # Python scalars are leaves too; empty leaves and empty selections count as 0% sparse
    assert float(sj.sparsity({"w": jnp.zeros(3), "step": 3})) == 0.75
    empty = {"w": jnp.zeros((0, 4)), "v": jnp.array([0.0, 1.0])}
    assert [r.sparsity for r in sj.sparsity_summary(empty)] == [0.5, 0.0]
    assert sj.format_sparsity(empty, mask="nomatch").splitlines()[-1].endswith(" 0.00%")
    assert float(sj.sparsity(empty, mask="nomatch")) == 0.0


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
