"""Masks on parameter pytrees: applying, combining, packing, sparsity, filters and errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sparsejax as sj
from sparsejax import pruning


def params():
    return {
        "conv": {"kernel": jnp.arange(1.0, 9.0).reshape(2, 2, 1, 2), "bias": jnp.ones(2)},
        "dense": [{"kernel": jnp.asarray([[1.0, 0.0], [0.0, -2.0]], jnp.bfloat16)}],
        "scale": jnp.asarray(0.5),
        "frozen": None,
    }


def masks():
    return {
        "conv": {"kernel": jnp.arange(8).reshape(2, 2, 1, 2) % 2 == 0, "bias": None},
        "dense": [{"kernel": jnp.asarray([[True, True], [False, True]])}],
        "scale": None,
        "frozen": None,
    }


def test_apply_masks_zeroes_pruned_entries_and_keeps_dtypes_and_dense_leaves():
    out = pruning.apply_masks(params(), masks())
    np.testing.assert_array_equal(
        out["conv"]["kernel"].ravel(), [1.0, 0.0, 3.0, 0.0, 5.0, 0.0, 7.0, 0.0]
    )
    assert out["dense"][0]["kernel"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(out["dense"][0]["kernel"], [[1.0, 0.0], [0.0, -2.0]])
    np.testing.assert_array_equal(out["conv"]["bias"], [1.0, 1.0])
    assert out["frozen"] is None and float(out["scale"]) == 0.5


def test_packed_masks_round_trip_and_apply_the_same():
    packed = pruning.pack_masks(masks())
    assert packed["conv"]["kernel"].dtype == jnp.uint8 and packed["conv"]["kernel"].shape == (1,)
    assert packed["conv"]["bias"] is None
    unpacked = pruning.unpack_masks(packed, params())
    for a, b in zip(jax.tree.leaves(unpacked), jax.tree.leaves(masks())):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(
        jax.tree.leaves(pruning.apply_masks(params(), packed)),
        jax.tree.leaves(pruning.apply_masks(params(), masks())),
    ):
        np.testing.assert_array_equal(a, b)


def test_masks_from_zeros_selects_weights_by_default():
    m = pruning.masks_from_zeros(params())
    assert m["conv"]["bias"] is None and m["scale"] is None and m["frozen"] is None
    np.testing.assert_array_equal(m["dense"][0]["kernel"], [[True, False], [False, True]])
    m = pruning.masks_from_zeros(params(), filter=r"bias$")
    assert m["conv"]["kernel"] is None
    np.testing.assert_array_equal(m["conv"]["bias"], [True, True])


def test_intersection_and_union_treat_none_as_dense():
    a = {"w": jnp.array([True, True, False, False]), "v": None, "u": None}
    b = {"w": jnp.array([True, False, True, False]), "v": jnp.array([True, False]), "u": None}
    c = {"w": jnp.array([False, True, True, True]), "v": None, "u": None}
    both = pruning.mask_intersection(a, b, c)
    np.testing.assert_array_equal(both["w"], [False, False, False, False])
    np.testing.assert_array_equal(both["v"], [True, False])
    either = pruning.mask_union(a, b)
    np.testing.assert_array_equal(either["w"], [True, True, True, False])
    assert either["v"] is None and either["u"] is None


def test_mask_sparsity_overall_and_per_leaf():
    m = masks()
    assert float(pruning.mask_sparsity(m)) == pytest.approx(5 / 12)
    assert pruning.mask_sparsity_per_leaf(m) == {"conv/kernel": 0.5, "dense/0/kernel": 0.25}
    assert float(jax.jit(pruning.mask_sparsity)(m)) == pytest.approx(5 / 12)


def test_selected_leaves_accepts_regex_pytree_and_callable():
    p = params()
    assert pruning.selected_leaves(None, p)["conv"] == {"bias": False, "kernel": True}
    assert pruning.selected_leaves(r"^dense", p)["dense"] == [{"kernel": True}]
    assert pruning.selected_leaves(sj.tree.weights_only, p)["scale"] is False
    prefix = {"conv": True, "dense": False, "scale": False, "frozen": False}
    assert pruning.selected_leaves(prefix, p)["conv"] == {"bias": True, "kernel": True}


def test_structure_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="masks do not match the params"):
        pruning.apply_masks(params(), {"conv": None})
    with pytest.raises(ValueError, match="has shape"):
        bad = masks()
        bad["conv"]["kernel"] = jnp.ones((8,), bool)
        pruning.apply_masks(params(), bad)
    with pytest.raises(ValueError, match="boolean"):
        bad = masks()
        bad["conv"]["kernel"] = jnp.ones((2, 2, 1, 2))
        pruning.apply_masks(params(), bad)
    with pytest.raises(ValueError, match="masks do not match the params"):
        bad = masks()
        bad["frozen"] = jnp.ones(2, bool)
        pruning.check_masks(bad, params())
    with pytest.raises(ValueError, match="different shapes"):
        pruning.mask_union({"w": jnp.ones(2, bool)}, {"w": jnp.ones(3, bool)})
