"""Retraining with fixed support: pruned weights stay exactly zero under momentum and decay."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sparsejax import pruning
import sparsejax as sj


def make_params(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "dense": {"kernel": jnp.asarray(rng.normal(size=(6, 8)), jnp.float32),
                  "bias": jnp.asarray(rng.normal(size=8), jnp.float32)},
        "conv": {"kernel": jnp.asarray(rng.normal(size=(3, 3, 2, 4)), jnp.bfloat16)},
        "scale": jnp.asarray(0.5, jnp.float32),
        "frozen": None,
    }


def grads_at(params, step):
    rng = np.random.default_rng(100 + step)
    return jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), x.dtype), params)


def train(tx, params, steps=6):
    @jax.jit
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    state = tx.init(params)
    history = []
    for t in range(steps):
        params, state = step(params, state, grads_at(params, t))
        history.append(params)
    return history, state


OPTIMIZERS = {
    "sgd_momentum_decay": lambda: optax.chain(
        optax.add_decayed_weights(1e-2), optax.sgd(0.1, momentum=0.9)
    ),
    "adamw": lambda: optax.adamw(1e-2, weight_decay=1e-1),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_pruned_weights_stay_exactly_zero_and_the_rest_train_as_without_a_support(name):
    params, support = pruning.prune(make_params(), 0.5, mask=sj.tree.weights_only)
    tx = optax.chain(OPTIMIZERS[name](), pruning.fixed_support(support))
    history, state = train(tx, params)
    for p in history:
        for w, m in [(p["dense"]["kernel"], support["dense"]["kernel"]),
                     (p["conv"]["kernel"], support["conv"]["kernel"])]:
            assert bool(jnp.all(jnp.where(m, True, w == 0)))
            assert bool(jnp.all(jnp.where(m, w != 0, True)))
    # Kept weights, biases and scalars follow the same optimizer without a mask (these
    # optimizers are elementwise: pruned entries do not influence the others; the two
    # compiled programs may round differently, by an ulp).
    plain, _ = train(OPTIMIZERS[name](), params)

    def same_where_kept(m, w, ref):
        if w is None:
            return
        keep = np.ones(np.shape(w), bool) if m is None else np.asarray(m)
        rtol = 1e-2 if w.dtype == jnp.bfloat16 else 1e-5
        np.testing.assert_allclose(
            np.asarray(w, np.float32)[keep], np.asarray(ref, np.float32)[keep], rtol=rtol
        )

    jax.tree.map(same_where_kept, support, history[-1], plain[-1], is_leaf=lambda x: x is None)
    assert int(state[-1].count) == 6


def test_unpruned_weights_are_snapped_to_zero_on_the_first_step():
    params = make_params(1)
    _, support = pruning.prune(params, 0.7, scope="layerwise", mask=sj.tree.weights_only)  # params themselves not pruned
    tx = optax.chain(optax.sgd(0.1, momentum=0.9), pruning.fixed_support(support))
    history, _ = train(tx, params, steps=2)
    for p in history:
        assert bool(jnp.all(jnp.where(support["dense"]["kernel"], True, p["dense"]["kernel"] == 0)))
        assert bool(jnp.all(jnp.where(support["conv"]["kernel"], True, p["conv"]["kernel"] == 0)))


def test_default_support_comes_from_the_zeros_and_callables_and_packing_agree():
    params, support = pruning.prune(make_params(2), 0.6, mask=sj.tree.weights_only)
    runs = {
        "explicit": pruning.fixed_support(support),
        "from_zeros": pruning.fixed_support(mask=sj.tree.weights_only),
        "callable": pruning.fixed_support(lambda p: pruning.support_from_zeros(p, mask=sj.tree.weights_only)),
        "packed": pruning.fixed_support(support, packed=True),
    }
    finals = {}
    for name, fm in runs.items():
        history, state = train(optax.chain(optax.sgd(0.05, momentum=0.5), fm), params, steps=3)
        finals[name] = history[-1]
    assert state[1].support["dense"]["kernel"].dtype == jnp.uint8  # the packed run
    for name in runs:
        for a, b in zip(jax.tree.leaves(finals[name]), jax.tree.leaves(finals["explicit"])):
            np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))


def test_without_params_the_pruned_updates_are_zeroed():
    params, support = pruning.prune(make_params(3), 0.5, mask=sj.tree.weights_only)
    tx = pruning.fixed_support(support)
    updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params))
    k = updates["dense"]["kernel"]
    np.testing.assert_array_equal(k, support["dense"]["kernel"].astype(k.dtype))
    np.testing.assert_array_equal(updates["dense"]["bias"], jnp.ones(8))


def test_a_support_that_does_not_fit_the_params_is_rejected_at_init():
    params = make_params()
    with pytest.raises(ValueError, match="support does not match the params"):
        pruning.fixed_support({"dense": None}).init(params)
    _, support = pruning.prune(params, 0.5, mask=sj.tree.weights_only)
    support["dense"]["kernel"] = support["dense"]["kernel"][:3]
    with pytest.raises(ValueError, match="has shape"):
        pruning.fixed_support(support).init(params)
