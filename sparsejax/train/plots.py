"""Plots comparing training methods: accuracy against sparsity, any-sparsity curves, layer sparsity.

Like :mod:`sparsejax.pruning.plots` (both use the figure helpers of
:mod:`sparsejax.plotting`), Matplotlib is imported only when a plot is drawn,
figures are built without ``pyplot`` (no GUI backend, no global state),
``path`` saves a PNG and ``ax`` draws into an existing axes. ``sparsejax compare`` saves all three.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax

from sparsejax.plotting import figure_and_axes, new_figure, save_png
from sparsejax.tree import Mask, resolve_mask
from sparsejax.pruning.one_shot import CurvePoint
from sparsejax.pruning.plots import plot_layer_sparsity
from sparsejax.tree import PyTree

__all__ = ["plot_accuracy_vs_sparsity", "plot_layer_sparsity_grid", "plot_one_shot_curves"]

_MARKERS = "osD^v<>pP*hX"


def plot_accuracy_vs_sparsity(
    results: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str] | None = None,
    *,
    accuracy_key: str = "test_accuracy",
    sparsity_key: str = "sparsity",
    label_key: str = "method",
    ax: Any = None,
    title: str | None = None,
    dpi: int = 100,
) -> Any:
    """Test accuracy against sparsity, one labelled point per method.

    Args:
      results: one mapping per method with a label, an accuracy and a sparsity
        (fractions in [0, 1]), e.g. the rows of ``sparsejax compare``'s results.json.
      path: if given, the figure is saved there as a PNG.
      accuracy_key: the key of the accuracy.
      sparsity_key: the key of the sparsity.
      label_key: the key of the label.
      ax: a Matplotlib axes to draw into (default: a new figure).
      title: the title.
      dpi: resolution of the saved PNG.

    Returns:
      The Matplotlib ``Figure``.

    Example:
      >>> from sparsejax.train.plots import plot_accuracy_vs_sparsity
      >>> fig = plot_accuracy_vs_sparsity([
      ...     {'method': 'sgd', 'test_accuracy': 0.90, 'sparsity': 0.0},
      ...     {'method': 'grda', 'test_accuracy': 0.89, 'sparsity': 0.93}])
      >>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
      ['sgd', 'grda']
    """
    if not results:
        raise ValueError("results must hold at least one method")
    fig, ax = figure_and_axes(ax, (5.5, 4.0))
    for i, row in enumerate(results):
        ax.scatter([100.0 * row[sparsity_key]], [100.0 * row[accuracy_key]], s=60,
                   marker=_MARKERS[i % len(_MARKERS)], label=str(row[label_key]), zorder=3)
    ax.set_xlabel("sparsity (% zeros)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xlim(-2, 102)
    ax.grid(True, alpha=0.3)
    ax.set_title(title if title is not None else "accuracy vs sparsity")
    ax.legend(fontsize=8, loc="lower left")
    save_png(fig, path, dpi)
    return fig


def plot_one_shot_curves(
    curves: Mapping[str, Sequence[CurvePoint | Sequence[float]]],
    path: str | os.PathLike[str] | None = None,
    *,
    x: str = "ratio",
    ax: Any = None,
    title: str | None = None,
    ylabel: str = "test accuracy (%)",
    dpi: int = 100,
) -> Any:
    """Any-sparsity curves: the metric after one-shot pruning at each ratio, one line per method.

    Args:
      curves: ``{method: points}``, each point ``(ratio, metric, sparsity)``
        as returned by :func:`sparsejax.pruning.one_shot_curve` (metric a
        fraction, drawn in percent).
      path: if given, the figure is saved there as a PNG.
      x: ``'ratio'`` (the pruning ratio asked for) or ``'sparsity'`` (the
        sparsity reached, which is higher when the network was sparser already).
      ax: a Matplotlib axes to draw into (default: a new figure).
      title: the title.
      ylabel: the label of the y axis.
      dpi: resolution of the saved PNG.

    Returns:
      The Matplotlib ``Figure``.

    Example:
      >>> from sparsejax.train.plots import plot_one_shot_curves
      >>> fig = plot_one_shot_curves({'sgd': [(0.0, 0.9, 0.0), (0.9, 0.3, 0.9)],
      ...                             'grda': [(0.0, 0.89, 0.93), (0.9, 0.89, 0.93)]})
      >>> len(fig.axes[0].get_lines())
      2
    """
    if x not in ("ratio", "sparsity"):
        raise ValueError(f"x must be 'ratio' or 'sparsity', got {x!r}")
    if not curves:
        raise ValueError("curves must hold at least one method")
    fig, ax = figure_and_axes(ax, (5.5, 4.0))
    for i, (name, points) in enumerate(curves.items()):
        pts = sorted((float(p[0 if x == "ratio" else 2]), float(p[1])) for p in points)
        ax.plot([100.0 * a for a, _ in pts], [100.0 * b for _, b in pts],
                marker=_MARKERS[i % len(_MARKERS)], markersize=4, label=str(name))
    ax.set_xlabel("one-shot pruning ratio (%)" if x == "ratio" else "sparsity after pruning (%)")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.set_title(title if title is not None else "one-shot magnitude pruning, no retraining")
    ax.legend(fontsize=8, loc="lower left")
    save_png(fig, path, dpi)
    return fig


def plot_layer_sparsity_grid(
    params_by_method: Mapping[str, PyTree],
    path: str | os.PathLike[str] | None = None,
    *,
    mask: Mask = None,
    columns: int = 2,
    dpi: int = 100,
) -> Any:
    """Layer-wise sparsity bars of several trained networks, one panel per method.

    Each panel is :func:`sparsejax.pruning.plot_layer_sparsity` of one
    method's params.

    Args:
      params_by_method: ``{method: params}`` (pytrees of concrete arrays).
      path: if given, the figure is saved there as a PNG.
      mask: which leaves are shown (default: every leaf).
      columns: panels per row.
      dpi: resolution of the saved PNG.

    Returns:
      The Matplotlib ``Figure``.

    Example:
      >>> import jax.numpy as jnp
      >>> from sparsejax.train.plots import plot_layer_sparsity_grid
      >>> p = {'a': {'kernel': jnp.array([[0.0, 1.0]])}, 'b': {'kernel': jnp.ones((2, 2))}}
      >>> fig = plot_layer_sparsity_grid({'sgd': p, 'grda': p})
      >>> [ax.get_title() for ax in fig.axes]
      ['sgd', 'grda']
    """
    if not params_by_method:
        raise ValueError("params_by_method must hold at least one method")
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    n = len(params_by_method)
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    first = next(iter(params_by_method.values()))
    layers = sum(jax.tree.leaves(resolve_mask(mask, first, nonempty=True)))
    fig = new_figure((cols * max(4.0, 0.45 * layers + 2.0), rows * 3.6))
    for i, (name, params) in enumerate(params_by_method.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        plot_layer_sparsity(params, mask=mask, ax=ax, title=str(name))
    save_png(fig, path, dpi)
    return fig
