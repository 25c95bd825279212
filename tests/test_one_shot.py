"""Any-sparsity curves (sparsejax.pruning.one_shot) and the comparison plots (sparsejax.train.plots)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax import pruning
from sparsejax.train import plots
import sparsejax as sj


def _params() -> dict:
    return {
        "a": {"kernel": jnp.arange(1.0, 13.0).reshape(3, 4), "bias": jnp.ones(4)},
        "b": {"kernel": 100.0 + jnp.arange(1.0, 5.0).reshape(2, 2), "bias": jnp.ones(2)},
    }


def _nonzeros(params: dict) -> float:
    return float(sum(jnp.count_nonzero(x) for x in jax.tree.leaves(params)))


def test_global_curve_removes_the_smallest_weights_first() -> None:
    params = _params()
    seen = []

    def evaluate(p):
        seen.append(p)
        return _nonzeros(p)

    curve = pruning.one_shot_curve(params, evaluate, [0.0, 0.25, 0.75], mask=sj.tree.weights_only)
    assert [c.ratio for c in curve] == [0.0, 0.25, 0.75]
    # 16 kernel weights + 6 biases; the biases are never pruned
    assert [c.metric for c in curve] == [22.0, 18.0, 10.0]
    assert [c.sparsity for c in curve] == [0.0, 0.25, 0.75]
    # global: at 75% the 12 weights removed are all of layer a (the smallest)
    assert bool(jnp.all(seen[2]["a"]["kernel"] == 0)) and bool(jnp.all(seen[2]["b"]["kernel"]))
    assert _nonzeros(params) == 22.0  # the input is not changed
    assert isinstance(curve[0], tuple) and curve[1] == (0.25, 18.0, 0.25)


def test_layerwise_curve_prunes_every_layer_alike() -> None:
    seen = []
    pruning.one_shot_curve(_params(), lambda p: seen.append(p) or 0.0, [0.5], scope="layerwise", mask=sj.tree.weights_only)
    assert float(jnp.mean(seen[0]["a"]["kernel"] == 0)) == 0.5
    assert float(jnp.mean(seen[0]["b"]["kernel"] == 0)) == 0.5


def test_a_sparser_network_is_evaluated_as_it_is() -> None:
    params = _params()
    params["a"]["kernel"] = params["a"]["kernel"].at[:2].set(0.0)  # 8 of 16 weights are zero
    curve = pruning.one_shot_curve(params, _nonzeros, [0.25, 0.5, 0.625], mask=sj.tree.weights_only)
    assert [c.sparsity for c in curve] == [0.5, 0.5, 0.625]
    assert [c.metric for c in curve] == [14.0, 14.0, 12.0]


def test_filter_selects_the_pruned_and_counted_leaves() -> None:
    seen = []
    curve = pruning.one_shot_curve(_params(), lambda p: seen.append(p) or 1.0, [0.5],
                                   mask=r"^b/kernel$")
    assert float(jnp.mean(seen[0]["b"]["kernel"] == 0)) == 0.5
    assert bool(jnp.all(seen[0]["a"]["kernel"]))
    assert curve[0].sparsity == 0.5


@pytest.mark.parametrize("ratios", [[1.0], [-0.1], ["0.5"], [True], []])
def test_bad_ratios(ratios) -> None:
    with pytest.raises(ValueError, match="ratio"):
        pruning.one_shot_curve(_params(), _nonzeros, ratios, mask=sj.tree.weights_only)


def test_bad_scope() -> None:
    with pytest.raises(ValueError, match="scope must be one of"):
        pruning.one_shot_curve(_params(), _nonzeros, [0.5], scope="rowwise", mask=sj.tree.weights_only)


def test_plots_are_written(tmp_path) -> None:
    rows = [{"method": "sgd", "test_accuracy": 0.9, "sparsity": 0.0},
            {"method": "grda", "test_accuracy": 0.88, "sparsity": 0.93}]
    fig = plots.plot_accuracy_vs_sparsity(rows, tmp_path / "acc.png")
    offsets = [tuple(c.get_offsets()[0]) for c in fig.axes[0].collections]
    np.testing.assert_allclose(offsets, [(0.0, 90.0), (93.0, 88.0)])

    curves = {"sgd": pruning.one_shot_curve(_params(), lambda p: 0.9, [0.0, 0.5], mask=sj.tree.weights_only),
              "grda": [(0.0, 0.88, 0.93), (0.5, 0.88, 0.93)]}
    fig = plots.plot_one_shot_curves(curves, tmp_path / "curves.png")
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["sgd", "grda"]
    np.testing.assert_allclose(lines[0].get_xdata(), [0.0, 50.0])
    fig = plots.plot_one_shot_curves(curves, x="sparsity")
    np.testing.assert_allclose(fig.axes[0].get_lines()[1].get_xdata(), [93.0, 93.0])

    fig = plots.plot_layer_sparsity_grid({"sgd": _params(), "grda": _params(), "lats": _params()},
                                         tmp_path / "layers.png", columns=2, mask=sj.tree.weights_only)
    assert [ax.get_title() for ax in fig.axes] == ["sgd", "grda", "lats"]
    for name in ("acc.png", "curves.png", "layers.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1000


def test_plots_reject_empty_input() -> None:
    with pytest.raises(ValueError, match="at least one"):
        plots.plot_accuracy_vs_sparsity([])
    with pytest.raises(ValueError, match="at least one"):
        plots.plot_one_shot_curves({})
    with pytest.raises(ValueError, match="x must be"):
        plots.plot_one_shot_curves({"a": [(0.0, 1.0, 0.0)]}, x="density")
    with pytest.raises(ValueError, match="at least one"):
        plots.plot_layer_sparsity_grid({}, mask=sj.tree.weights_only)
