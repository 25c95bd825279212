"""Plots of pruned networks: layer-wise sparsity bars and weight-magnitude histograms.

Matplotlib is imported only when a plot is drawn (``pip install
sparsejax[plots]``; see :mod:`sparsejax.plotting`). The figures are built
without ``pyplot``, so no GUI backend or global figure state is involved; pass
``path`` to save a PNG, or ``ax`` to draw into an existing axes (a notebook
displays the returned figure).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

from sparsejax.plotting import figure_and_axes, save_png
from sparsejax.tree import Mask, resolve_mask
from sparsejax.summary import sparsity_summary
from sparsejax.tree import PyTree, leaves_with_paths

__all__ = ["plot_layer_sparsity", "plot_weight_histogram"]


def plot_layer_sparsity(
    params: PyTree,
    path: str | os.PathLike[str] | None = None,
    *,
    mask: Mask = None,
    ax: Any = None,
    title: str | None = None,
    dpi: int = 100,
) -> Any:
    """Bar chart of the share of zeros in each selected leaf, with the overall share.

    Args:
      params: a pytree of concrete arrays (pruned params, or support).
      path: if given, the figure is saved there as a PNG.
      mask: which leaves are shown (default: every leaf; see
        :func:`sparsejax.tree.resolve_mask`).
      ax: a Matplotlib axes to draw into (default: a new figure).
      title: the title (default: the overall sparsity).
      dpi: resolution of the saved PNG.

    Returns:
      The Matplotlib ``Figure``.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> params = {'a': {'kernel': jnp.array([[0.0, 1.0]])}, 'b': {'kernel': jnp.ones((2, 2))}}
      >>> fig = sj.pruning.plot_layer_sparsity(params)
      >>> [t.get_text() for t in fig.axes[0].get_xticklabels()]
      ['a/kernel', 'b/kernel']
    """
    rows = sparsity_summary(params, resolve_mask(mask, params, nonempty=True))
    if not rows:
        raise ValueError("mask selects no leaves to plot")
    fig, ax = figure_and_axes(ax, (max(4.0, 0.45 * len(rows) + 2.0), 3.5))
    x = np.arange(len(rows))
    ax.bar(x, [100.0 * r.sparsity for r in rows], color="tab:blue")
    total = sum(r.size for r in rows)
    overall = 100.0 * (1.0 - sum(r.nonzeros for r in rows) / max(total, 1))
    ax.axhline(overall, color="tab:red", linestyle="--", label=f"overall {overall:.1f}%")
    ax.set_xticks(x, [r.path for r in rows], rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel("sparsity (% zeros)")
    ax.set_title(title if title is not None else f"layer-wise sparsity ({total:,} weights)")
    ax.legend(loc="lower right", fontsize=8)
    save_png(fig, path, dpi)
    return fig


def plot_weight_histogram(
    params: PyTree,
    path: str | os.PathLike[str] | None = None,
    *,
    mask: Mask = None,
    bins: int = 80,
    per_layer: bool = False,
    threshold: float | None = None,
    ax: Any = None,
    title: str | None = None,
    dpi: int = 100,
) -> Any:
    """Histogram of the non-zero weight magnitudes on a log scale (zeros are counted in the legend).

    Empty leaves are left out; a selection of empty leaves only is a ``ValueError``.

    Args:
      params: a pytree of concrete arrays.
      path: if given, the figure is saved there as a PNG.
      mask: which leaves are included (default: every leaf).
      bins: number of logarithmically spaced bins.
      per_layer: one outlined histogram per leaf instead of a single one.
      threshold: if given, a vertical line at this magnitude (e.g. a pruning threshold).
      ax: a Matplotlib axes to draw into (default: a new figure).
      title: the title.
      dpi: resolution of the saved PNG.

    Returns:
      The Matplotlib ``Figure``.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> fig = sj.pruning.plot_weight_histogram({'kernel': jnp.array([[0.0, 0.5], [1.0, 2.0]])})
      >>> fig.axes[0].get_xscale()
      'log'
    """
    flags = jax.tree.leaves(resolve_mask(mask, params, nonempty=True))
    named = [
        (path, np.abs(np.asarray(x, np.float64)).ravel())
        for (path, x), keep in zip(leaves_with_paths(params), flags)
        if keep
    ]
    if not named:
        raise ValueError("mask selects no leaves to plot")
    named = [(name, m) for name, m in named if m.size]  # empty leaves hold no weight
    if not named:
        raise ValueError("the selected leaves are all empty: there is no weight to plot")
    everything = np.concatenate([m for _, m in named])
    nonzero = everything[everything > 0]
    fig, ax = figure_and_axes(ax, (6.0, 3.5))
    zeros = everything.size - nonzero.size
    if nonzero.size:
        lo, hi = float(nonzero.min()), float(nonzero.max())
        edges = np.geomspace(lo, hi if hi > lo else lo * 1.01, bins + 1)
        if per_layer:
            for name, m in named:
                m = m[m > 0]
                if m.size:
                    ax.hist(m, bins=edges, histtype="step", label=f"{name} ({m.size:,})")
        else:
            ax.hist(nonzero, bins=edges, color="tab:blue", label=f"non-zero ({nonzero.size:,})")
    if threshold is not None and threshold > 0:
        ax.axvline(threshold, color="tab:red", linestyle="--", label=f"threshold {threshold:.3g}")
    ax.plot([], [], " ", label=f"zeros: {zeros:,} ({100.0 * zeros / everything.size:.1f}%)")
    ax.set_xscale("log")
    ax.set_xlabel("|w|")
    ax.set_ylabel("count")
    ax.set_title(title if title is not None else "weight magnitudes")
    ax.legend(fontsize=7)
    save_png(fig, path, dpi)
    return fig
