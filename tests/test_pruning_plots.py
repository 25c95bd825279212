"""Plots of pruned networks: PNG files with layer-wise sparsity bars and magnitude histograms."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax import pruning
import sparsejax as sj

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def pruned_params():
    rng = np.random.default_rng(0)
    params = {
        "conv": {"kernel": jnp.asarray(rng.normal(size=(3, 3, 2, 4)), jnp.float32),
                 "bias": jnp.zeros(4)},
        "dense": {"kernel": jnp.asarray(rng.normal(size=(16, 8)), jnp.bfloat16)},
        "frozen": None,
    }
    return pruning.prune(params, 0.7, scope="layerwise", mask=sj.tree.weights_only)[0]


def test_layer_sparsity_bars_are_saved_as_png(tmp_path):
    path = tmp_path / "sparsity.png"
    fig = pruning.plot_layer_sparsity(pruned_params(), path, mask=sj.tree.weights_only)
    assert path.read_bytes()[:8] == PNG_MAGIC
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["conv/kernel", "dense/kernel"]
    heights = [bar.get_height() for bar in ax.patches]
    np.testing.assert_allclose(heights, [100 * 50 / 72, 100 * 90 / 128], rtol=1e-6)


def test_weight_histograms_are_saved_as_png(tmp_path):
    params = pruned_params()
    for per_layer in (False, True):
        path = tmp_path / f"hist_{per_layer}.png"
        fig = pruning.plot_weight_histogram(params, path, per_layer=per_layer, threshold=0.5, mask=sj.tree.weights_only)
        assert path.read_bytes()[:8] == PNG_MAGIC
        labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert any(label.startswith("zeros: 140") for label in labels)


def test_plots_draw_into_given_axes_and_reject_empty_selections(tmp_path):
    from matplotlib.figure import Figure

    fig = Figure()
    ax1, ax2 = fig.subplots(1, 2)
    assert pruning.plot_layer_sparsity(pruned_params(), ax=ax1, mask=sj.tree.weights_only) is fig
    assert pruning.plot_weight_histogram(pruned_params(), ax=ax2, mask=r"conv") is fig
    with pytest.raises(ValueError, match="selects no leaf"):
        pruning.plot_layer_sparsity(pruned_params(), mask=r"nothing")
    with pytest.raises(ValueError, match="selects no leaf"):
        pruning.plot_weight_histogram({"bias": jnp.ones(3)}, mask=sj.tree.weights_only)


def test_weight_histogram_skips_empty_leaves():
    # An empty leaf made the share of zeros a division by zero.
    fig = pruning.plot_weight_histogram({"e": jnp.zeros((0, 3)), "k": jnp.array([0.0, 1.0])})
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert any("zeros: 1 (50.0%)" in label for label in labels)
    with pytest.raises(ValueError, match="all empty"):
        pruning.plot_weight_histogram({"e": jnp.zeros((0, 3))})
