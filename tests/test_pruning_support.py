"""Support on parameter pytrees: applying, combining, packing, sparsity, filters and errors."""

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


def support():
    return {
        "conv": {"kernel": jnp.arange(8).reshape(2, 2, 1, 2) % 2 == 0, "bias": None},
        "dense": [{"kernel": jnp.asarray([[True, True], [False, True]])}],
        "scale": None,
        "frozen": None,
    }


def test_apply_support_zeroes_pruned_entries_and_keeps_dtypes_and_dense_leaves():
    out = pruning.apply_support(params(), support())
    np.testing.assert_array_equal(
        out["conv"]["kernel"].ravel(), [1.0, 0.0, 3.0, 0.0, 5.0, 0.0, 7.0, 0.0]
    )
    assert out["dense"][0]["kernel"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(out["dense"][0]["kernel"], [[1.0, 0.0], [0.0, -2.0]])
    np.testing.assert_array_equal(out["conv"]["bias"], [1.0, 1.0])
    assert out["frozen"] is None and float(out["scale"]) == 0.5


def test_packed_support_round_trips_and_applies_the_same():
    packed = pruning.pack_support(support())
    assert packed["conv"]["kernel"].dtype == jnp.uint8 and packed["conv"]["kernel"].shape == (1,)
    assert packed["conv"]["bias"] is None
    unpacked = pruning.unpack_support(packed, params())
    for a, b in zip(jax.tree.leaves(unpacked), jax.tree.leaves(support())):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(
        jax.tree.leaves(pruning.apply_support(params(), packed)),
        jax.tree.leaves(pruning.apply_support(params(), support())),
    ):
        np.testing.assert_array_equal(a, b)


def test_support_from_zeros_covers_the_leaves_the_mask_selects():
    every = pruning.support_from_zeros(params())  # mask=None: every leaf, as everywhere
    np.testing.assert_array_equal(every["conv"]["bias"], np.asarray(params()["conv"]["bias"]) != 0)
    assert len(jax.tree.leaves(every)) == len(jax.tree.leaves(params()))  # no None in place of a leaf
    m = pruning.support_from_zeros(params(), mask=sj.tree.weights_only)
    assert m["conv"]["bias"] is None and m["scale"] is None and m["frozen"] is None
    np.testing.assert_array_equal(m["dense"][0]["kernel"], [[True, False], [False, True]])
    m = pruning.support_from_zeros(params(), mask=r"bias$")
    assert m["conv"]["kernel"] is None
    np.testing.assert_array_equal(m["conv"]["bias"], [True, True])


def test_intersection_and_union_treat_none_as_dense():
    a = {"w": jnp.array([True, True, False, False]), "v": None, "u": None}
    b = {"w": jnp.array([True, False, True, False]), "v": jnp.array([True, False]), "u": None}
    c = {"w": jnp.array([False, True, True, True]), "v": None, "u": None}
    both = pruning.support_intersection(a, b, c)
    np.testing.assert_array_equal(both["w"], [False, False, False, False])
    np.testing.assert_array_equal(both["v"], [True, False])
    either = pruning.support_union(a, b)
    np.testing.assert_array_equal(either["w"], [True, True, True, False])
    assert either["v"] is None and either["u"] is None


def test_support_sparsity_overall_and_per_leaf():
    m = support()
    assert float(pruning.support_sparsity(m)) == pytest.approx(5 / 12)
    assert pruning.support_sparsity_per_leaf(m) == {"conv/kernel": 0.5, "dense/0/kernel": 0.25}
    assert float(jax.jit(pruning.support_sparsity)(m)) == pytest.approx(5 / 12)


def test_the_mask_accepts_none_regex_pytree_and_callable():
    p = params()
    assert sj.tree.resolve_mask(None, p)["conv"] == {"bias": True, "kernel": True}
    assert sj.tree.resolve_mask(r"^dense", p)["dense"] == [{"kernel": True}]
    assert sj.tree.resolve_mask(sj.tree.weights_only, p)["conv"] == {"bias": False, "kernel": True}
    assert sj.tree.resolve_mask(sj.tree.weights_only, p)["scale"] is False
    prefix = {"conv": True, "dense": False, "scale": False, "frozen": False}
    assert sj.tree.resolve_mask(prefix, p)["conv"] == {"bias": True, "kernel": True}
    with pytest.raises(ValueError, match="selects no leaf.*'conv/kernel'.*mask=None"):
        pruning.prune(p, 0.5, mask=r"^nothing")


def test_structure_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="support does not match the params"):
        pruning.apply_support(params(), {"conv": None})
    with pytest.raises(ValueError, match="has shape"):
        bad = support()
        bad["conv"]["kernel"] = jnp.ones((8,), bool)
        pruning.apply_support(params(), bad)
    with pytest.raises(ValueError, match="boolean"):
        bad = support()
        bad["conv"]["kernel"] = jnp.ones((2, 2, 1, 2))
        pruning.apply_support(params(), bad)
    with pytest.raises(ValueError, match="support does not match the params"):
        bad = support()
        bad["frozen"] = jnp.ones(2, bool)
        pruning.check_support(bad, params())
    with pytest.raises(ValueError, match="different shapes"):
        pruning.support_union({"w": jnp.ones(2, bool)}, {"w": jnp.ones(3, bool)})


@pytest.mark.parametrize("shape", [(), (0,), (3, 0), (13,), (2, 3), (5, 7), (4, 4)])
def test_pack_bits_is_numpys_big_endian_layout_and_unpack_bits_inverts_it(shape):
    m = np.random.default_rng(len(shape) + sum(shape)).random(shape) < 0.5
    packed = pruning.pack_bits(jnp.asarray(m))
    n = m.size
    assert packed.dtype == jnp.uint8 and packed.shape == ((n + 7) // 8,)
    # b_k = sum_j m_{8k+j} 2^(7-j), the missing entries of the last byte zero
    flat = np.concatenate([m.ravel(), np.zeros(-n % 8, bool)]).reshape(-1, 8)
    np.testing.assert_array_equal(np.asarray(packed), (flat * 2 ** np.arange(7, -1, -1)).sum(1))
    back = jax.jit(pruning.unpack_bits, static_argnums=1)(packed, shape)
    assert back.dtype == jnp.bool_ and back.shape == shape
    np.testing.assert_array_equal(np.asarray(back), m)


def test_pack_bits_and_unpack_bits_reject_wrong_dtypes_and_lengths():
    with pytest.raises(ValueError, match="boolean"):
        pruning.pack_bits(jnp.ones(3))
    with pytest.raises(ValueError, match="uint8"):
        pruning.unpack_bits(jnp.ones(1), (3,))
    with pytest.raises(ValueError, match=r"\(3,\) do not fit .* shape \(13,\) \(expected \(2,\)\)"):
        pruning.unpack_bits(jnp.zeros(3, jnp.uint8), (13,))


def test_support_sparsity_of_packed_support_needs_the_params():
    # Packed bytes were counted as entries: a support pruning 50% read 0.0.
    p = {"k": jnp.array([[0.5, -1.0, 0.1, 2.0], [1.0, 2.0, 3.0, 4.0]]), "b": jnp.ones(3)}
    _, sup = pruning.prune(p, 0.5, mask=sj.tree.weights_only)
    packed = pruning.pack_support(sup)
    with pytest.raises(ValueError, match="support at 'k' is packed"):
        pruning.support_sparsity(packed)
    with pytest.raises(ValueError, match="pass params="):
        pruning.support_sparsity_per_leaf(packed)
    assert float(pruning.support_sparsity(packed, p)) == 0.5
    assert float(jax.jit(pruning.support_sparsity)(packed, p)) == 0.5
    assert pruning.support_sparsity_per_leaf(packed, p) == {"k": 0.5}
    assert float(pruning.support_sparsity(sup, p)) == float(pruning.support_sparsity(sup)) == 0.5


def test_intersection_and_union_of_packed_support_stay_packed():
    # Logical and/or on the bytes returned booleans of the packed length.
    p = {"k": jnp.arange(1.0, 20.0).reshape(1, 19)}
    _, a = pruning.prune(p, 0.5)
    _, b = pruning.prune({"k": 20.0 - p["k"]}, 0.4)
    pa, pb = pruning.pack_support(a), pruning.pack_support(b)
    for combine in (pruning.support_intersection, pruning.support_union):
        got = combine(pa, pb)
        assert got["k"].dtype == jnp.uint8 and got["k"].shape == pa["k"].shape
        np.testing.assert_array_equal(got["k"], pruning.pack_support(combine(a, b))["k"])
        np.testing.assert_array_equal(pruning.unpack_support(got, p)["k"], combine(a, b)["k"])
        with pytest.raises(ValueError, match="packed .uint8. support leaf with a boolean one"):
            combine(pa, b)
    assert pruning.support_union(pa, {"k": None})["k"] is None
