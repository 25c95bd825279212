r"""Mode connectivity: quadratic Bézier curves between two parameter pytrees, and their plane.

Garipov, Izmailov, Podoprikhin, Vetrov and Wilson (NeurIPS 2018) connect two
minima :math:`w_1, w_2` by the curve

.. math::

  \theta(t) = (1-t)^2 w_1 + 2t(1-t)\,\theta_c + t^2 w_2, \qquad t \in [0, 1],

and train the control point :math:`\theta_c` to minimise
:math:`\mathbb E_{t \sim U[0,1]} L(\theta(t))`. A curve of low loss shows that
the two minima lie in one connected valley; Chao et al. (NeurIPS 2020, Figures
1-4) find such curves between the SGD and the gRDA minima.

This module is the pure math on pytrees: the curve and the straight line,
training :math:`\theta_c` for a loss written in JAX with any Optax optimizer
(:func:`train_control`), evaluation along a path, the plane through
:math:`w_1, \theta_c, w_2` and the plots. Training and evaluating Flax models
with BatchNorm, data-parallel and resumable, is
:mod:`sparsejax.train.connectivity`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sparsejax.directional._util import check_same_structure, tree_vdot
from sparsejax.tree import PyTree

__all__ = [
    "ControlFit",
    "PlaneBasis",
    "bezier",
    "bezier_coefficients",
    "curve_objective",
    "evaluate_path",
    "evaluate_plane",
    "init_control",
    "line_point",
    "plane_basis",
    "plane_grid",
    "plane_point",
    "plot_path",
    "plot_plane",
    "train_control",
]


def bezier_coefficients(t: Any) -> tuple[Any, Any, Any]:
    r"""The Bernstein weights :math:`((1-t)^2,\ 2t(1-t),\ t^2)` of a quadratic Bézier curve.

    Example:
      >>> import sparsejax as sj
      >>> sj.directional.bezier_coefficients(0.5)
      (0.25, 0.5, 0.25)
    """
    return (1 - t) ** 2, 2 * t * (1 - t), t**2


def _check_three(start: PyTree, control: PyTree | None, end: PyTree) -> None:
    check_same_structure(start, end, "start", "end")
    if control is not None:
        check_same_structure(start, control, "start", "control")


def bezier(start: PyTree, control: PyTree, end: PyTree, t: Any) -> PyTree:
    r"""The point :math:`\theta(t)` of the quadratic Bézier curve from ``start`` to ``end``.

    .. math::

      \theta(t) = (1-t)^2 w_1 + 2t(1-t)\,\theta_c + t^2 w_2 .

    Each floating leaf is computed in its own dtype; integer and boolean
    leaves in float32, rounded to the nearest value (so a leaf equal at the
    three points stays as it is). :math:`\theta(0) = w_1` and
    :math:`\theta(1) = w_2` exactly (the other weights are exactly 0 there).

    Args:
      start: :math:`w_1` (any pytree).
      control: :math:`\theta_c`, like ``start``.
      end: :math:`w_2`, like ``start``.
      t: :math:`t \in [0, 1]`, a scalar (Python or traced).

    Returns:
      :math:`\theta(t)`, a pytree like ``start``.

    Raises:
      ValueError: if the three pytrees do not have the same structure and shapes.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> w1, w2, c = {'w': jnp.array([-1.0, 0.0])}, {'w': jnp.array([1.0, 0.0])}, {'w': jnp.array([0.0, 2.0])}
      >>> sj.directional.bezier(w1, c, w2, 0.5)['w']
      Array([0., 1.], dtype=float32)

    References:
      Garipov, Izmailov, Podoprikhin, Vetrov and Wilson, *Loss Surfaces, Mode
      Connectivity, and Fast Ensembling of DNNs*, NeurIPS 2018.
    """
    _check_three(start, control, end)
    c0, c1, c2 = bezier_coefficients(t)

    def leaf(a: jax.Array, c: jax.Array, b: jax.Array) -> jax.Array:
        dt, wt = _dtypes(a)
        out = jnp.asarray(c0, wt) * a + jnp.asarray(c1, wt) * c + jnp.asarray(c2, wt) * b
        return _back(out, dt)

    return jax.tree.map(leaf, start, control, end)


def _dtypes(a: Any) -> tuple[Any, Any]:
    """A leaf's dtype and the dtype its combination is computed in (float32 for integer leaves)."""
    dt = jnp.asarray(a).dtype
    return dt, (dt if jnp.issubdtype(dt, jnp.inexact) else jnp.promote_types(dt, jnp.float32))


def _back(x: jax.Array, dt: Any) -> jax.Array:
    """``x`` in the leaf's dtype ``dt``; integer and boolean leaves are rounded to the nearest value."""
    return (x if jnp.issubdtype(dt, jnp.inexact) else jnp.round(x)).astype(dt)


def line_point(start: PyTree, end: PyTree, t: Any) -> PyTree:
    r"""The point :math:`(1-t) w_1 + t w_2` of the straight line (exact at both ends).

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> sj.directional.line_point({'w': jnp.array(0.0)}, {'w': jnp.array(2.0)}, 0.25)['w']
      Array(0.5, dtype=float32)
    """
    _check_three(start, None, end)

    def leaf(a: jax.Array, b: jax.Array) -> jax.Array:
        dt, wt = _dtypes(a)
        return _back(jnp.asarray(1 - t, wt) * a + jnp.asarray(t, wt) * b, dt)

    return jax.tree.map(leaf, start, end)


def init_control(start: PyTree, end: PyTree) -> PyTree:
    r"""The usual initial control point, the midpoint :math:`(w_1 + w_2)/2` (a straight curve).

    With it :math:`\theta(t) = (1-t) w_1 + t w_2`: the curve starts as the
    straight line (Garipov et al.'s ``init_linear``).

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> sj.directional.init_control({'w': jnp.array(0.0)}, {'w': jnp.array(2.0)})['w']
      Array(1., dtype=float32)
    """
    return line_point(start, end, 0.5)


def curve_objective(loss_fn: Callable[..., jax.Array], start: PyTree, end: PyTree
                    ) -> Callable[..., jax.Array]:
    r"""The stochastic objective of the control point: :math:`L(\theta(t))` at one :math:`t \sim U[0,1]`.

    .. math::

      \ell(\theta_c; \xi) = L\big(\theta(t)\big), \quad t = t(\xi) \sim U[0, 1],
      \qquad \mathbb E_\xi\, \nabla_{\theta_c} \ell = \nabla_{\theta_c}
      \mathbb E_{t} L(\theta(t)),

    one :math:`t` per call (per mini-batch), as Garipov et al. train curves.

    Args:
      loss_fn: ``loss_fn(params, *args) -> scalar``.
      start: :math:`w_1`.
      end: :math:`w_2`.

    Returns:
      ``objective(control, key, *args) -> scalar``; ``key`` is a JAX PRNG key.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import sparsejax as sj
      >>> obj = sj.directional.curve_objective(lambda p: jnp.sum(p['w'] ** 2), {'w': jnp.zeros(2)},
      ...                                      {'w': jnp.zeros(2)})
      >>> float(obj({'w': jnp.zeros(2)}, jax.random.key(0)))
      0.0
    """
    _check_three(start, None, end)

    def objective(control: PyTree, key: jax.Array, *args: Any) -> jax.Array:
        t = jax.random.uniform(key)
        return loss_fn(bezier(start, control, end, t), *args)

    return objective


class ControlFit(NamedTuple):
    """What :func:`train_control` returns.

    Attributes:
      control: the trained control point :math:`\\theta_c`.
      losses: the loss at each step's :math:`t`, ``(num_steps,)``.
      ts: each step's :math:`t`, ``(num_steps,)``.
    """

    control: PyTree
    losses: np.ndarray
    ts: np.ndarray


def train_control(
    loss_fn: Callable[..., jax.Array],
    start: PyTree,
    end: PyTree,
    optimizer: optax.GradientTransformation,
    *,
    num_steps: int,
    control: PyTree | None = None,
    batches: Iterable[Any] | None = None,
    seed: int = 0,
) -> ControlFit:
    r"""Trains the Bézier control point with any Optax optimizer (pure JAX loop).

    Each step draws :math:`t \sim U[0,1]` from ``(seed, step)`` and takes one
    optimizer step on :math:`\nabla_{\theta_c} L(\theta(t))`, minimising
    :math:`\mathbb E_t L(\theta(t))` by stochastic gradient; the end points
    stay fixed. The step is compiled once. For Flax models (BatchNorm,
    several devices, checkpoints), use
    :func:`sparsejax.train.connectivity.train_curve`.

    Args:
      loss_fn: ``loss_fn(params) -> scalar``, or ``loss_fn(params, batch)``
        with ``batches``.
      start: :math:`w_1`.
      end: :math:`w_2`.
      optimizer: any Optax transform (``update`` gets the control point as params).
      num_steps: steps to take (>= 1).
      control: the initial control point (default :func:`init_control`, the
        straight line; a symmetric loss may need a perturbed one to leave it).
      batches: an iterable with at least ``num_steps`` batches, one per step.
      seed: seed of the :math:`t` draws.

    Returns:
      A :class:`ControlFit`.

    Raises:
      ValueError: for mismatched pytrees, ``num_steps < 1``, too few batches, or
        a loss that becomes NaN or infinite (the step is named).

    Example:
      >>> import jax.numpy as jnp, optax
      >>> import sparsejax as sj
      >>> ring = lambda p: (jnp.sum(p['w'] ** 2) - 1.0) ** 2  # a valley around the unit circle
      >>> w1, w2 = {'w': jnp.array([-1.0, 0.0])}, {'w': jnp.array([1.0, 0.0])}
      >>> fit = sj.directional.train_control(ring, w1, w2, optax.adam(0.05), num_steps=300,
      ...                                    control={'w': jnp.array([0.0, 0.1])})
      >>> float(ring(sj.directional.bezier(w1, fit.control, w2, 0.5))) < 0.05 < float(ring(sj.directional.line_point(w1, w2, 0.5)))
      True

    References:
      Garipov, Izmailov, Podoprikhin, Vetrov and Wilson, *Loss Surfaces, Mode
      Connectivity, and Fast Ensembling of DNNs*, NeurIPS 2018.
    """
    _check_three(start, control, end)
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
    control = init_control(start, end) if control is None else control
    objective = curve_objective(loss_fn, start, end)
    root = jax.random.key(seed)

    @jax.jit
    def step(control: PyTree, state: Any, i: jax.Array, *batch: Any):
        key = jax.random.fold_in(root, i)
        loss, grads = jax.value_and_grad(objective)(control, key, *batch)
        updates, state = optimizer.update(grads, state, control)
        return optax.apply_updates(control, updates), state, loss, jax.random.uniform(key)

    state = optimizer.init(control)
    it = iter(batches) if batches is not None else None
    losses, ts = [], []
    for i in range(int(num_steps)):
        batch = ()
        if it is not None:
            try:
                batch = (next(it),)
            except StopIteration:
                raise ValueError(f"batches ran out after {i} of num_steps={num_steps} steps") from None
        control, state, loss, t = step(control, state, jnp.int32(i), *batch)
        losses.append(loss)
        ts.append(t)
    losses_np = np.asarray(jax.device_get(losses), np.float64)
    bad = np.flatnonzero(~np.isfinite(losses_np))
    if bad.size:
        raise ValueError(
            f"the curve's loss was {losses_np[bad[0]]} at step {bad[0] + 1} (t = "
            f"{float(ts[bad[0]]):.3f}): lower the learning rate or check the end points"
        )
    return ControlFit(control, losses_np, np.asarray(jax.device_get(ts), np.float64))


def _as_dict(value: Any) -> dict[str, float]:
    if isinstance(value, Mapping):
        return {str(k): float(v) for k, v in value.items()}
    return {"value": float(value)}


def evaluate_path(metric_fn: Callable[[PyTree], Any], start: PyTree, end: PyTree,
                  control: PyTree | None = None, *, ts: Sequence[float] | None = None,
                  num_points: int = 21) -> dict[str, np.ndarray]:
    r"""A metric along the Bézier curve (``control`` given) or the straight line (``control=None``).

    .. math::

      m(t_i) = \text{metric}(\theta(t_i)) \quad\text{or}\quad
      \text{metric}\big((1-t_i) w_1 + t_i w_2\big).

    Args:
      metric_fn: ``params -> number`` or ``params -> {name: number}`` (e.g.
        train loss and test error; a Flax model with BatchNorm needs its
        statistics recomputed at each point, see
        :func:`sparsejax.train.connectivity.evaluate_path`).
      start: :math:`w_1`.
      end: :math:`w_2`.
      control: :math:`\theta_c`, or ``None`` for the straight line.
      ts: the :math:`t` values (default: ``num_points`` evenly from 0 to 1).
      num_points: see ``ts``.

    Returns:
      ``{'t': ts, name: values, ...}`` as float64 numpy arrays (``'value'``
      when the metric returns a number).

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> r = sj.directional.evaluate_path(lambda p: p['w'] ** 2, {'w': jnp.array(-1.0)},
      ...                                  {'w': jnp.array(1.0)}, num_points=3)
      >>> r['t'].tolist(), r['value'].tolist()
      ([0.0, 0.5, 1.0], [1.0, 0.0, 1.0])
    """
    _check_three(start, control, end)
    ts = np.linspace(0.0, 1.0, int(num_points)) if ts is None else np.asarray(ts, np.float64)
    rows = []
    for t in ts:
        point = line_point(start, end, float(t)) if control is None else bezier(start, control, end, float(t))
        rows.append(_as_dict(metric_fn(point)))
    out = {"t": ts}
    for key in rows[0] if rows else ():
        out[key] = np.asarray([r[key] for r in rows], np.float64)
    return out


class PlaneBasis(NamedTuple):
    r"""An orthonormal frame of the plane through :math:`w_1, \theta_c, w_2`.

    A point with coordinates :math:`(x, y)` is :math:`w_1 + x u + y v`.

    Attributes:
      origin: :math:`w_1`.
      u: :math:`(w_2 - w_1)/\|w_2 - w_1\|`.
      v: the unit component of :math:`\theta_c - w_1` orthogonal to :math:`u`.
      points: the coordinates of :math:`w_1, \theta_c, w_2`, ``(3, 2)``.
    """

    origin: PyTree
    u: PyTree
    v: PyTree
    points: np.ndarray

    def curve(self, ts: Sequence[float]) -> np.ndarray:
        """The plane coordinates of :math:`\\theta(t)`, ``(len(ts), 2)`` (the curve lies in the plane)."""
        c = np.stack(bezier_coefficients(np.asarray(ts, np.float64)), axis=-1)
        return c @ self.points


def _axpy(a: Any, x: PyTree, y: PyTree) -> PyTree:
    return jax.tree.map(lambda xx, yy: (a * xx + yy).astype(yy.dtype), x, y)


def plane_basis(start: PyTree, control: PyTree, end: PyTree) -> PlaneBasis:
    r"""The plane through the two end points and the control point (Gram-Schmidt).

    .. math::

      u = \frac{w_2 - w_1}{\|w_2 - w_1\|}, \qquad
      v = \frac{(\theta_c - w_1) - \langle \theta_c - w_1, u\rangle u}
               {\|(\theta_c - w_1) - \langle \theta_c - w_1, u\rangle u\|},

    as in Garipov et al.'s plane plots. The whole curve lies in this plane.

    Args:
      start: :math:`w_1`.
      control: :math:`\theta_c`.
      end: :math:`w_2`.

    Returns:
      A :class:`PlaneBasis`.

    Raises:
      ValueError: if the end points coincide or the control point lies on the
        straight line (an untrained control point: the plane is undefined).

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> b = sj.directional.plane_basis({'w': jnp.array([0.0, 0.0])}, {'w': jnp.array([1.0, 1.0])},
      ...                                {'w': jnp.array([2.0, 0.0])})
      >>> b.points.tolist()
      [[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]]
    """
    _check_three(start, control, end)
    e = jax.tree.map(lambda b, a: b - a, end, start)
    c = jax.tree.map(lambda b, a: b - a, control, start)
    dx = float(jnp.sqrt(tree_vdot(e, e)))
    if not dx > 0:
        raise ValueError("start and end coincide: there is no plane (nor curve) between them")
    u = jax.tree.map(lambda x: x / dx, e)
    cu = float(tree_vdot(c, u))
    r = _axpy(-cu, u, c)
    dy = float(jnp.sqrt(tree_vdot(r, r)))
    cn = float(jnp.sqrt(tree_vdot(c, c)))
    if not dy > 1e-6 * max(cn, dx):
        raise ValueError(
            "the control point lies on the straight line between start and end (an untrained "
            "control point?): the plane through the three points is undefined"
        )
    v = jax.tree.map(lambda x: x / dy, r)
    points = np.array([[0.0, 0.0], [cu, dy], [dx, 0.0]])
    return PlaneBasis(start, u, v, points)


def plane_point(basis: PlaneBasis, x: float, y: float) -> PyTree:
    """The params :math:`w_1 + x u + y v` at plane coordinates ``(x, y)``.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> b = sj.directional.plane_basis({'w': jnp.zeros(2)}, {'w': jnp.array([1.0, 1.0])},
      ...                                {'w': jnp.array([2.0, 0.0])})
      >>> sj.directional.plane_point(b, 1.0, 1.0)['w']
      Array([1., 1.], dtype=float32)
    """
    return jax.tree.map(lambda o, a, b: (o + x * a + y * b).astype(o.dtype),
                        basis.origin, basis.u, basis.v)


def plane_grid(basis: PlaneBasis, num_points: int = 21, margin: float = 0.2
               ) -> tuple[np.ndarray, np.ndarray]:
    """Grid coordinates covering the three points, widened by ``margin`` of their extent on each side.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> b = sj.directional.plane_basis({'w': jnp.zeros(2)}, {'w': jnp.array([1.0, 1.0])},
      ...                                {'w': jnp.array([2.0, 0.0])})
      >>> xs, ys = sj.directional.plane_grid(b, num_points=3, margin=0.0)
      >>> xs.tolist(), ys.tolist()
      ([0.0, 1.0, 2.0], [0.0, 0.5, 1.0])
    """
    lo, hi = basis.points.min(axis=0), basis.points.max(axis=0)
    pad = margin * (hi - lo)
    xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], int(num_points))
    ys = np.linspace(lo[1] - pad[1], hi[1] + pad[1], int(num_points))
    return xs, ys


def evaluate_plane(metric_fn: Callable[[PyTree], Any], basis: PlaneBasis, xs: Sequence[float],
                   ys: Sequence[float]) -> dict[str, np.ndarray]:
    r"""A metric on a grid of the plane: ``values[name][i, j]`` at :math:`(x_j, y_i)`.

    Args:
      metric_fn: ``params -> number`` or ``params -> {name: number}``.
      basis: the plane (:func:`plane_basis`).
      xs: the :math:`x` coordinates (along :math:`w_2 - w_1`).
      ys: the :math:`y` coordinates.

    Returns:
      ``{name: (len(ys), len(xs)) float64 array}`` (``'value'`` for a number).

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> b = sj.directional.plane_basis({'w': jnp.zeros(2)}, {'w': jnp.array([1.0, 1.0])},
      ...                                {'w': jnp.array([2.0, 0.0])})
      >>> sj.directional.evaluate_plane(lambda p: p['w'][1], b, [0.0, 1.0], [0.0, 2.0])['value'].tolist()
      [[0.0, 0.0], [2.0, 2.0]]
    """
    rows: list[list[dict[str, float]]] = [
        [_as_dict(metric_fn(plane_point(basis, float(x), float(y)))) for x in xs] for y in ys]
    names = list(rows[0][0]) if rows and rows[0] else []
    return {k: np.asarray([[cell[k] for cell in row] for row in rows], np.float64) for k in names}


def plot_path(curve: Mapping[str, np.ndarray], line: Mapping[str, np.ndarray] | None = None, *,
              keys: Sequence[str] | None = None, labels: Mapping[str, str] | None = None,
              path: str | os.PathLike | None = None, title: str | None = None) -> Any:
    """Plots metrics along the curve (and the straight line) against :math:`t`, one panel per metric.

    Matplotlib is imported when called (the ``plots`` extra), no ``pyplot``
    (:mod:`sparsejax.plotting`).

    Args:
      curve: :func:`evaluate_path` along the curve.
      line: the same along the straight line (optional).
      keys: the metrics to plot (default: every key but ``'t'``).
      labels: axis labels per key.
      path: save the figure as a PNG here.
      title: the figure's title.

    Returns:
      The matplotlib figure.

    Example:
      >>> import numpy as np
      >>> import sparsejax as sj
      >>> t = np.linspace(0, 1, 5)
      >>> fig = sj.directional.plot_path({'t': t, 'loss': 0 * t}, {'t': t, 'loss': t * (1 - t)})
      >>> len(fig.axes)
      1
    """
    from sparsejax.plotting import new_figure, save_png

    keys = [k for k in curve if k != "t"] if keys is None else list(keys)
    fig = new_figure((4.2 * len(keys), 3.4))
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for ax, key in zip(axes, keys):
        ax.plot(curve["t"], curve[key], "o-", ms=3, color="C0", label="Bézier curve")
        if line is not None:
            ax.plot(line["t"], line[key], "s--", ms=3, color="C1", label="straight line")
        ax.set_xlabel("t")
        ax.set_ylabel((labels or {}).get(key, key))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    save_png(fig, path, 110)
    return fig


def plot_plane(xs: Sequence[float], ys: Sequence[float], values: np.ndarray, basis: PlaneBasis, *,
               ax: Any = None, path: str | os.PathLike | None = None, title: str | None = None,
               label: str = "loss", log: bool = True,
               point_labels: Sequence[str] = ("$w_1$", r"$\theta_c$", "$w_2$")) -> Any:
    r"""The metric on the plane of :math:`w_1, \theta_c, w_2`, with the curve drawn on it.

    Filled contours (log-spaced levels with ``log``), the Bézier curve in
    white, the straight line dashed, the three points marked: the picture of
    Garipov et al. and of Chao et al.'s Figures 1-4.

    Args:
      xs, ys: the grid (:func:`plane_grid`).
      values: ``(len(ys), len(xs))`` (:func:`evaluate_plane`).
      basis: the plane.
      ax: a matplotlib axes (default: a new figure).
      path: save the figure as a PNG here.
      title: the axes title.
      label: the colour bar's label.
      log: log-spaced contour levels (for losses); linear otherwise.
      point_labels: names of the three points.

    Returns:
      The matplotlib figure.

    Example:
      >>> import jax.numpy as jnp, numpy as np
      >>> import sparsejax as sj
      >>> b = sj.directional.plane_basis({'w': jnp.zeros(2)}, {'w': jnp.array([1.0, 1.0])},
      ...                                {'w': jnp.array([2.0, 0.0])})
      >>> xs, ys = sj.directional.plane_grid(b, 5)
      >>> fig = sj.directional.plot_plane(xs, ys, np.ones((5, 5)) + xs[None, :], b)
      >>> len(fig.axes)  # the plot and its colour bar
      2
    """
    from matplotlib import colors

    from sparsejax.plotting import figure_and_axes, save_png

    fig, ax = figure_and_axes(ax, (5.2, 4.2))
    z = np.asarray(values, np.float64)
    finite = z[np.isfinite(z)]
    lo, hi = float(finite.min()), float(finite.max())
    if log and lo > 0 and hi > lo:
        levels = np.geomspace(lo, hi, 24)
        norm = colors.LogNorm(vmin=lo, vmax=hi)
    else:
        levels = np.linspace(lo, hi if hi > lo else lo + 1.0, 24)
        norm = None
    cs = ax.contourf(xs, ys, np.clip(z, lo, hi), levels=levels, norm=norm, cmap="viridis")
    fig.colorbar(cs, ax=ax, label=label, format="%.3g")
    curve = basis.curve(np.linspace(0.0, 1.0, 101))
    ax.plot(curve[:, 0], curve[:, 1], color="white", lw=2.0, label="Bézier curve")
    ends = basis.points[[0, 2]]
    ax.plot(ends[:, 0], ends[:, 1], "--", color="white", lw=1.0, alpha=0.8, label="straight line")
    for (x, y), name, marker in zip(basis.points, point_labels, ("o", "x", "o")):
        ax.plot(x, y, marker, color="white" if marker == "o" else "red", ms=7, mec="black")
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 5), color="white")
    ax.set_xlabel(r"along $w_2 - w_1$")
    ax.set_ylabel(r"orthogonal, towards $\theta_c$")
    ax.set_aspect("equal", adjustable="box")
    if title:
        ax.set_title(title)
    save_png(fig, path, 110)
    return fig
