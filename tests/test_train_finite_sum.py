"""The bridge from an NNX classifier and a dataset to the finite-sum Frank-Wolfe loops."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from sparsejax import constraints as C
from sparsejax import data
from sparsejax.models import create
from sparsejax.optim.fw_finite_sum import svrf_run
from sparsejax.train import classifier_loss, dataset_arrays, fit_finite_sum


class _DropoutNet(nnx.Module):
    def __init__(self, rate: float, rngs: nnx.Rngs):
        self.dense = nnx.Linear(784, 10, rngs=rngs)
        self.drop = nnx.Dropout(rate, rngs=rngs)

    def __call__(self, x):
        return self.drop(self.dense(x.reshape(x.shape[0], -1)))


class _BatchNormNet(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.dense = nnx.Linear(784, 10, rngs=rngs)
        self.norm = nnx.BatchNorm(10, rngs=rngs)

    def __call__(self, x):
        return self.norm(self.dense(x.reshape(x.shape[0], -1)))


def _with_params(model, params):
    """A copy of ``model`` holding ``params``."""
    graph, state, rest = nnx.split(model, nnx.Param, ...)
    state = jax.tree.map(lambda x: x, state)
    nnx.replace_by_pure_dict(state, params)
    return nnx.merge(graph, state, rest, copy=True)


def _mlp():
    return create("mlp", hidden=(8,), rngs=0)


def test_classifier_loss_is_the_models_per_example_cross_entropy():
    model = _mlp()
    train = data.load("synthetic", "train", num_examples=16)
    batch = dataset_arrays(train)
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    # other params than the model's: the loss must use its argument, not the model's own values
    params = jax.tree.map(lambda v: 1.5 * v, params)
    got = classifier_loss(model)(params, batch)
    logits = np.asarray(_with_params(model, params)(batch["image"]), np.float64)
    labels = batch["label"]
    want = np.log(np.exp(logits).sum(1)) - logits[np.arange(len(labels)), labels]
    assert got.shape == (16,)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    # the images are normalised as the trainer's pipeline does
    first = next(iter(data.batches(train, 16, train=False).epoch(0)))
    np.testing.assert_array_equal(batch["image"], first["image"])


def test_models_whose_losses_are_not_a_finite_sum_are_refused():
    bn = _BatchNormNet(nnx.Rngs(0))
    with pytest.raises(ValueError, match="BatchNorm"):
        classifier_loss(bn)
    train = data.load("synthetic", "train", num_examples=8)
    with pytest.raises(ValueError, match="BatchNorm"):
        fit_finite_sum(bn, train, "sfw", budget=8)
    with pytest.raises(ValueError, match="dropout"):
        classifier_loss(_DropoutNet(0.5, nnx.Rngs(0)))
    classifier_loss(_DropoutNet(0.0, nnx.Rngs(0)))  # rate 0 is deterministic: accepted
    with pytest.raises(ValueError, match="method"):
        fit_finite_sum(_mlp(), train, "adam", budget=8)


def test_a_run_through_the_bridge_is_the_direct_svrf_run():
    model = _mlp()
    train = data.load("synthetic", "train", num_examples=32)
    test = data.load("synthetic", "test", num_examples=20)
    res = fit_finite_sum(model, train, "svrf", budget=32 * 6, test=test, tau=2.0,
                         svrf_batch_scale=2.0, seed=4, record_at=[100])
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    cons = C.sfw_pruning_constraints(lambda _: params, value=2.0, num_samples=1)
    x0 = C.make_feasible(params, cons)
    direct = svrf_run(classifier_loss(model), x0, dataset_arrays(train), cons, budget=32 * 6,
                      batch_scale=2.0, seed=4, record_at=[100])
    assert res.steps == direct.steps > 0 and res.evaluations == direct.evaluations
    for a, b in zip(jax.tree.leaves(res.params), jax.tree.leaves(direct.params)):
        np.testing.assert_array_equal(a, b)
    # the recorded history: the exact training loss and test accuracy of the recorded iterates
    loss = classifier_loss(model)
    arrays, tarr = dataset_arrays(train), dataset_arrays(test)
    assert len(res.train_loss) == len(res.test_accuracy) == len(direct.iterates) >= 3
    for value, acc, p in zip(res.train_loss, res.test_accuracy, direct.iterates):
        np.testing.assert_allclose(value, float(np.mean(loss(p, arrays))), rtol=1e-5)
        logits = np.asarray(_with_params(model, p)(tarr["image"]))
        assert acc == pytest.approx(float(np.mean(logits.argmax(1) == tarr["label"])))
    # every parameter is in its polytope, and the model itself is unchanged
    assert bool(C.is_feasible(res.params, cons))
    np.testing.assert_array_equal(nnx.to_pure_dict(nnx.state(model, nnx.Param))["layers"][0]["kernel"],
                                  params["layers"][0]["kernel"])
