"""Mode connectivity: Bézier curves (sparsejax.directional.curves) and the trainer's curve runs
(sparsejax.train.connectivity), with BatchNorm statistics recomputed along the curve."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import sparsejax as sj
from sparsejax import data
from sparsejax.train import connectivity as conn
from tests.trees import make_params

dp = sj.directional


def test_bezier_passes_through_both_end_points_exactly():
    w1, w2, c = make_params(0), make_params(1), make_params(2)  # f32, bf16, scalars, a None leaf
    for t, want in ((0.0, w1), (1.0, w2), (jnp.float32(0.0), w1), (jnp.float32(1.0), w2)):
        for got in (dp.bezier(w1, c, w2, t), jax.jit(dp.bezier)(w1, c, w2, t)):
            assert jax.tree.structure(got) == jax.tree.structure(want)
            for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
                assert a.dtype == b.dtype
                np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))
    for t, want in ((0.0, w1), (1.0, w2)):
        for a, b in zip(jax.tree.leaves(dp.line_point(w1, w2, t)), jax.tree.leaves(want)):
            np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))
    # the midpoint control gives the straight line
    mid = dp.init_control(w1, w2)
    a = dp.bezier(w1, mid, w2, 0.3)["dense"]["kernel"]
    np.testing.assert_allclose(a, dp.line_point(w1, w2, 0.3)["dense"]["kernel"], atol=1e-6)


def test_integer_leaves_are_interpolated_and_rounded_not_truncated_to_zero():
    # An integer leaf (a counter) equal at the three points stays as it is along the curve; it
    # came out 0 for every 0 < t < 1 (the coefficients were cast to int)
    s = {"w": jnp.array([1.0]), "n": jnp.array(5), "m": jnp.array([2, 4], jnp.int32)}
    e = {"w": jnp.array([3.0]), "n": jnp.array(5), "m": jnp.array([4, 8], jnp.int32)}
    for t in (0.25, 0.5, jnp.float32(0.7)):
        for point in (dp.bezier(s, s, s, t), dp.line_point(s, s, t), dp.init_control(s, s)):
            assert int(point["n"]) == 5 and point["n"].dtype == s["n"].dtype
            np.testing.assert_array_equal(point["m"], s["m"])
    mid = dp.line_point(s, e, 0.5)
    np.testing.assert_array_equal(mid["m"], [3, 6])
    assert mid["m"].dtype == jnp.int32 and float(mid["w"][0]) == 2.0
    np.testing.assert_array_equal(dp.bezier(s, dp.init_control(s, e), e, 0.25)["m"], [2, 5])  # 2.5, 5


def _ring(p):
    """A valley along the unit circle (plus a flat second leaf): the straight line from (-1, 0)
    to (1, 0) crosses a barrier of height 1 at the origin, the half circle has loss 0."""
    return (jnp.sum(p["w"] ** 2) - 1.0) ** 2 + 0.5 * p["b"] ** 2


def test_training_the_control_point_lowers_the_barrier_of_the_straight_line():
    w1 = {"w": jnp.array([-1.0, 0.0]), "b": jnp.array(0.0)}
    w2 = {"w": jnp.array([1.0, 0.0]), "b": jnp.array(0.0)}
    start = {"w": jnp.array([0.0, 0.1]), "b": jnp.array(0.3)}  # off the symmetric saddle
    fit = dp.train_control(_ring, w1, w2, optax.adam(0.05), num_steps=300, control=start, seed=0)
    assert fit.losses.shape == fit.ts.shape == (300,) and 0 <= fit.ts.min() and fit.ts.max() <= 1
    ts = np.linspace(0, 1, 101)
    curve = dp.evaluate_path(_ring, w1, w2, fit.control, ts=ts)["value"]
    line = dp.evaluate_path(_ring, w1, w2, None, ts=ts)["value"]
    assert line.max() == pytest.approx(1.0)
    assert curve.max() < 0.1 * line.max(), (curve.max(), line.max())
    assert curve[0] == line[0] == 0.0 and curve[-1] == line[-1] == 0.0
    # the plane through the three points holds the whole curve
    basis = dp.plane_basis(w1, fit.control, w2)
    np.testing.assert_allclose(basis.points[[0, 2]], [[0.0, 0.0], [2.0, 0.0]], atol=1e-6)
    for t, (x, y) in zip((0.25, 0.5, 0.9), basis.curve([0.25, 0.5, 0.9])):
        on_plane, on_curve = dp.plane_point(basis, x, y), dp.bezier(w1, fit.control, w2, t)
        for a, b in zip(jax.tree.leaves(on_plane), jax.tree.leaves(on_curve)):
            np.testing.assert_allclose(a, b, atol=1e-5)
    xs, ys = dp.plane_grid(basis, 7)
    grid = dp.evaluate_plane(_ring, basis, xs, ys)["value"]
    assert grid.shape == (7, 7) and np.all(np.isfinite(grid))


def test_curve_bad_input():
    w = {"w": jnp.zeros(2)}
    with pytest.raises(ValueError, match="same structure"):
        dp.bezier(w, {"v": jnp.zeros(2)}, w, 0.5)
    with pytest.raises(ValueError, match="shape"):
        dp.train_control(_ring, w, {"w": jnp.zeros(3)}, optax.sgd(0.1), num_steps=2)
    with pytest.raises(ValueError, match="straight line"):
        dp.plane_basis({"w": jnp.zeros(2)}, {"w": jnp.ones(2)}, {"w": 2 * jnp.ones(2)})
    with pytest.raises(ValueError, match="coincide"):
        dp.plane_basis(w, {"w": jnp.ones(2)}, w)
    with pytest.raises(ValueError, match="the curve's loss was nan at step 1"):
        dp.train_control(lambda p: jnp.sum(p["w"]) * jnp.nan, w, w, optax.sgd(0.1), num_steps=3)
    with pytest.raises(ValueError, match="batches ran out after 2"):
        dp.train_control(lambda p, b: jnp.sum(p["w"] * b), w, w, optax.sgd(0.1), num_steps=3,
                         batches=[jnp.ones(2)] * 2)


# --- the trainer: a tiny net with BatchNorm, on 8 devices --------------------------------------


class _BNNet(nnx.Module):
    """dense -> BatchNorm -> relu -> dense, on 4x4x1 images."""

    def __init__(self, seed: int) -> None:
        rngs = nnx.Rngs(seed)
        self.dense = nnx.Linear(16, 8, rngs=rngs)
        self.bn = nnx.BatchNorm(8, rngs=rngs)
        self.out = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.relu(self.bn(self.dense(x.reshape(x.shape[0], -1)))))


def _params(net):
    return nnx.to_pure_dict(nnx.state(net, nnx.Param))


@pytest.fixture(scope="module")
def bn_setup():
    opts = {"image_shape": (4, 4, 1), "num_classes": 3}
    train_ds = data.load("synthetic", "train", num_examples=128, **opts)
    test_ds = data.load("synthetic", "test", num_examples=40, **opts)
    train = data.batches(train_ds, 32, train=True, seed=0)
    test = data.batches(test_ds, 16, train=False)  # 40 = 16 + 16 + 8 (+ 8 padding)
    net = _BNNet(0)
    return net, _params(net), _params(_BNNet(1)), train, test


def test_train_curve_resumes_and_keeps_its_end_points(bn_setup, tmp_path):
    net, w1, w2, train, _ = bn_setup
    kwargs = dict(epochs=2, workdir=tmp_path / "curve", config={"a": "w1", "b": "w2"}, log=None,
                  seed=3)
    first = conn.train_curve(net, w1, w2, optax.sgd(0.05, momentum=0.9), train, **kwargs)
    assert [r["step"] for r in first.result.history] == [4, 8]
    assert jax.tree.structure(first.control) == jax.tree.structure(w1)
    moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in
                zip(jax.tree.leaves(first.control), jax.tree.leaves(dp.init_control(w1, w2))))
    assert moved > 0
    # the end points are carried untouched (CurveAnchor variables, not trained)
    model = first.result.model
    for anchor, want in ((model.start, w1), (model.end, w2)):
        got = nnx.to_pure_dict(nnx.state(anchor, conn.CurveAnchor))
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    again = conn.train_curve(net, w1, w2, optax.sgd(0.05, momentum=0.9), train, **kwargs)
    assert again.result.resumed_from == again.result.steps == 8
    for a, b in zip(jax.tree.leaves(again.control), jax.tree.leaves(first.control)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="same structure"):
        conn.BezierCurveModel(net, w1, {"dense": w2["dense"]})


def test_batch_stats_averages_the_first_batches_and_compiles_once(bn_setup):
    # BatchStats(net, train, max_batches=2)(w): the mean over the first two training batches of
    # each batch's mean and (biased) variance of the dense layer's output, at any w, with the
    # statistics step compiled once.
    net, w1, w2, train, _ = bn_setup
    stats_at = conn.BatchStats(net, train, max_batches=2)
    for w in (w1, w2):
        k, b = np.asarray(w["dense"]["kernel"]), np.asarray(w["dense"]["bias"])
        outs = [batch["image"].reshape(len(batch["image"]), -1) @ k + b
                for batch, _ in zip(train.epoch(0), range(2))]
        got = stats_at(w)
        np.testing.assert_allclose(np.asarray(got["bn"]["mean"]),
                                   np.mean([h.mean(0) for h in outs], 0), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(np.asarray(got["bn"]["var"]),
                                   np.mean([h.var(0) for h in outs], 0), rtol=1e-4, atol=1e-6)
    assert stats_at.step._cache_size() == 1
    from sparsejax.models import create

    with pytest.raises(ValueError, match="no BatchNorm statistics"):
        conn.BatchStats(create("mlp", hidden=(4,), rngs=0), train)


def test_batch_stats_refuse_padded_batches_of_an_evaluation_pipeline(bn_setup):
    # test (train=False) pads its last batch (40 = 16 + 16 + 8 real + 8 padding rows): the padding
    # rows would enter the BatchNorm statistics, so recomputing from it is an error naming the fix.
    net, w1, _, train, test = bn_setup
    with pytest.raises(ValueError, match=r"bn_data batch 2 has padding rows.*train=True"):
        conn.recompute_batch_stats(net, w1, test)
    with pytest.raises(ValueError, match="padding rows"):
        conn.BatchStats(net, test)(w1)
    with pytest.raises(ValueError, match="padding rows"):
        conn.PathEvaluator(net, {"test": test}, bn_data=test)(w1)
    # the first two (full) batches of it are fine, and so is a training pipeline
    conn.recompute_batch_stats(net, w1, test, max_batches=2)
    conn.recompute_batch_stats(net, w1, train)


def test_evaluation_recomputes_batchnorm_statistics_at_each_point(bn_setup):
    net, w1, w2, train, test = bn_setup
    control = jax.tree.map(lambda a, b: 0.5 * (a + b) + 0.05, w1, w2)
    ev = conn.PathEvaluator(net, {"test": test}, bn_data=train)
    curve = conn.evaluate_path(net, w1, w2, control, evaluator=ev, ts=[0.0, 0.5, 1.0])
    line = conn.evaluate_path(net, w1, w2, None, evaluator=ev, ts=[0.0, 1.0])
    assert curve["test_loss"][0] == line["test_loss"][0] and curve["test_loss"][2] == line["test_loss"][1]

    # by hand at t = 0.5: BatchNorm statistics = the mean over the 4 training batches of each
    # batch's mean and (biased) variance of the dense layer's output, then the test loss with them
    point = dp.bezier(w1, control, w2, 0.5)
    k, b = np.asarray(point["dense"]["kernel"]), np.asarray(point["dense"]["bias"])
    means, variances = [], []
    for batch in train.epoch(0):
        h = batch["image"].reshape(len(batch["image"]), -1) @ k + b
        means.append(h.mean(0))
        variances.append(h.var(0))
    stats = {"bn": {"mean": np.mean(means, 0), "var": np.mean(variances, 0)}}
    recomputed = conn.recompute_batch_stats(net, point, train)
    for key in ("mean", "var"):
        np.testing.assert_allclose(np.asarray(recomputed["bn"][key]), stats["bn"][key], rtol=1e-4,
                                   atol=1e-6)
    examples = conn.collect_examples(test)
    assert examples["image"].shape == (40, 4, 4, 1)
    losses = conn.classifier_loss(net, stats)(point, examples)
    assert curve["test_loss"][1] == pytest.approx(float(jnp.mean(losses)), rel=1e-4)
    # the Hessian pipeline on the same loss: DatasetLoss averages exactly over the 40 examples
    loss = dp.DatasetLoss(conn.classifier_loss(net, stats), examples, batch_size=16)
    assert float(loss.value(point)) == pytest.approx(float(jnp.mean(losses)), rel=1e-5)

    plane = conn.evaluate_plane(net, w1, w2, control, evaluator=ev, num_points=3)
    assert plane.values["test_loss"].shape == (3, 3) and plane.values["test_error"].max() <= 1.0
    with pytest.raises(ValueError, match="BatchNorm: pass bn_data"):
        conn.PathEvaluator(net, {"test": test})
    with pytest.raises(ValueError, match="names no dataset"):
        conn.PathEvaluator(net, {})
