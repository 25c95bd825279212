"""Figure helpers shared by the library's plots: a new figure, an axes to draw into, saving a PNG.

Used by :mod:`sparsejax.pruning.plots` and :mod:`sparsejax.train.plots`.

Matplotlib is imported only when a figure is made (``pip install
'sparsejax[plots]'``), so importing a module that plots costs nothing. Figures
are built without ``pyplot``: no GUI backend and no global figure state are
involved, and a notebook displays the returned figure.

Example:
  >>> from sparsejax.plotting import figure_and_axes
  >>> fig, ax = figure_and_axes(None, (4.0, 3.0))
  >>> [float(v) for v in fig.get_size_inches()]
  [4.0, 3.0]
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["figure_and_axes", "new_figure", "save_png"]


def new_figure(figsize: tuple[float, float]) -> Any:
    """A new Matplotlib ``Figure`` of ``figsize`` inches with constrained layout (no ``pyplot``).

    Raises:
      ImportError: if Matplotlib is not installed, saying how to install it.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "sparsejax's plots need matplotlib: pip install 'sparsejax[plots]'"
        ) from e
    return Figure(figsize=figsize, layout="constrained")


def figure_and_axes(ax: Any, figsize: tuple[float, float]) -> tuple[Any, Any]:
    """``(figure, axes)`` to draw into: ``ax`` and its figure, or a new figure with one axes.

    Args:
      ax: a Matplotlib axes, or ``None`` for a new figure.
      figsize: the size of a new figure, in inches.
    """
    if ax is not None:
        return ax.figure, ax
    fig = new_figure(figsize)
    return fig, fig.add_subplot()


def save_png(fig: Any, path: str | os.PathLike[str] | None, dpi: int) -> None:
    """Saves ``fig`` as a PNG at ``path`` with ``dpi`` (nothing when ``path`` is ``None``)."""
    if path is not None:
        fig.savefig(os.fspath(path), format="png", dpi=dpi)
