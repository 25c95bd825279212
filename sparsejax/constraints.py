r"""Constraint sets for Frank-Wolfe training: linear minimisation oracles, diameters, feasibility.

A *constraint* is a small frozen (hashable) dataclass describing one convex set
for one parameter leaf. It knows

* ``lmo(g)``: a point :math:`v` of the set minimising :math:`\langle g, v\rangle`
  (same shape and dtype as ``g``; pure jnp, so it works under ``jit``/``vmap``
  and on bf16);
* ``diameter(shape)``: the set's L2 diameter :math:`\max_{x,y\in C}\|x-y\|_2`
  for a leaf of that shape;
* ``contains(x)``, ``make_feasible(x)`` (a cheap map into the set),
  ``project(x)`` (the Euclidean projection, where it has a closed form) and
  ``max_scale(x)`` (the largest :math:`s` with :math:`s\,x \in C`).

A *constraint pytree* gives one constraint per leaf of the params: the params'
structure (or a prefix of it, like :func:`optax.masked` masks) with constraint
objects as leaves and ``None`` for unconstrained leaves. Functions taking one
also accept a single constraint (used for every leaf) or a callable
``params -> constraint pytree``. When the structure differs from the params'
(a pure dict against an ``nnx.State``), leaves are matched by their normalised
paths (:func:`sparsejax.tree.path_str`).

Radii from the initialisation (Pokutta et al.'s convention, used by SFW
pruning): each leaf's set gets the L2 diameter

.. math::

  D = 2\cdot\mathrm{value}\cdot\mathbb E\|W_{\rm init}\|_2

(the expectation estimated over a few fresh initialisations; a leaf whose
initial norm is 0, e.g. a zero bias, uses 1), and each set's radius is chosen
so that its L2 diameter equals :math:`D` (:meth:`Constraint.with_diameter`):

===================================  =========================  =============================
set                                  L2 diameter (n entries)    radius for diameter :math:`D`
===================================  =========================  =============================
K-sparse polytope :math:`C(K, r)`    :math:`2r\sqrt K`          :math:`D/(2\sqrt K)`
L1 and L2 balls                      :math:`2r`                 :math:`D/2`
Lp ball, :math:`1 < p < \infty` (*)  :math:`2r\,n^{1/2-1/p}`    :math:`D/(2\,n^{1/2-1/p})`
L∞ ball                              :math:`2r\sqrt n`          :math:`D/(2\sqrt n)`
simplex :math:`\{x\ge0, \sum x=r\}`  :math:`r\sqrt2 \ (n\ge2)`  :math:`D/\sqrt2`
===================================  =========================  =============================

(*) The Lp-ball entry is the reference code's convention (``convert_lp_radius``
of ZIB-IOL/StochasticFrankWolfe, used by SFW pruning): the L2 norm of the
ball's diagonal points :math:`\pm r n^{-1/p}(1,\dots,1)`, times 2. It is the
set's true L2 diameter for :math:`p \ge 2`, but for :math:`1 < p < 2` the true
diameter is :math:`2r` (attained at the vertices :math:`\pm r e_i`), larger by
:math:`n^{1/p-1/2}`; :meth:`LpBall.diameter` returns the reference's value, so
radii from diameters and the ``'diameter'`` step-size rescaling match the
reference (at :math:`p = 1.5`, :math:`n = 1000` the radius is
:math:`1000^{1/6} \approx 3.16` times the true-diameter radius :math:`D/2`).

References:
  Miao, Luo, Chen, Liu, Wang, *Learning Pruning-Friendly Networks via
  Frank-Wolfe: One-Shot, Any-Sparsity, and No Retraining*, ICLR 2022;
  Pokutta, Spiegel, Zimmer, *Deep Neural Network Training with Frank-Wolfe*,
  2020.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sparsejax._validation import check_number
from sparsejax.select import top_k_mask
from sparsejax.tree import Mask, PyTree, path_str, resolve_mask

__all__ = [
    "Constraint",
    "ConstraintTree",
    "KSparsePolytope",
    "LpBall",
    "Simplex",
    "Unconstrained",
    "constraints_from_init",
    "sfw_pruning_constraints",
    "expected_norms",
    "fw_gap",
    "is_feasible",
    "k_sparse_polytope",
    "l1_ball",
    "l2_ball",
    "leaf_constraints",
    "linf_ball",
    "lmo_tree",
    "lp_ball",
    "make_feasible",
    "partition_labels",
    "simplex",
    "unconstrained",
]

Shape: TypeAlias = Sequence[int]


def _size(shape: Shape) -> int:
    return int(math.prod(shape))


def _work_dtype(x: jax.Array) -> Any:
    """float32, or the input's dtype when it is wider (float64 with x64 enabled)."""
    return jnp.promote_types(jnp.asarray(x).dtype, jnp.float32)


def _by_largest(flat: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(max|x|, x / max|x|)`` (``x`` itself for a zero or empty array), so powers cannot overflow."""
    top = jnp.max(jnp.abs(flat), initial=0.0)
    return top, flat / jnp.where(top > 0, top, 1.0)


def _check_radius(radius: Any) -> float:
    check_number("radius", radius, gt=0)
    return float(radius)


@dataclasses.dataclass(frozen=True)
class Constraint:
    """Base class of the per-leaf convex sets (frozen, hashable, a pytree *leaf*).

    Subclasses implement :meth:`lmo`, :meth:`diameter`, :meth:`contains` and
    :meth:`with_diameter`; the defaults of the other methods suit sets that are
    star-shaped about the origin.
    """

    def lmo(self, g: jax.Array) -> jax.Array:
        """A point of the set minimising ``<g, v>`` (same shape and dtype as ``g``)."""
        raise NotImplementedError

    def diameter(self, shape: Shape) -> float:
        """The L2 diameter of the set for a leaf of this shape."""
        raise NotImplementedError

    def contains(self, x: jax.Array, *, rtol: float = 1e-5, atol: float = 1e-6) -> jax.Array:
        """Whether ``x`` lies in the set, up to ``radius*rtol + atol`` (a boolean array)."""
        raise NotImplementedError

    def with_diameter(self, diameter: float, shape: Shape) -> Constraint:
        """The same kind of set with its radius chosen so its L2 diameter is ``diameter``."""
        raise NotImplementedError

    def max_scale(self, x: jax.Array) -> jax.Array:
        """Largest :math:`s \\ge 0` with :math:`s\\,x` in the set (``inf`` when unbounded)."""
        del x
        return jnp.asarray(jnp.inf, jnp.float32)

    def make_feasible(self, x: jax.Array) -> jax.Array:
        """A cheap map into the set: ``x`` shrunk towards 0 just enough to be feasible.

        ``x`` itself when it is feasible; otherwise :math:`x\\cdot\\min(1, s^*)`
        with :math:`s^*` = :meth:`max_scale`. Sets not star-shaped about the
        origin (the simplex) project instead.
        """
        s = jnp.minimum(self.max_scale(x), 1.0)
        return (x.astype(_work_dtype(x)) * s).astype(x.dtype)

    def project(self, x: jax.Array) -> jax.Array:
        """The Euclidean projection onto the set, where a closed form exists."""
        raise NotImplementedError(
            f"{type(self).__name__} has no closed-form Euclidean projection; "
            "use make_feasible (a cheap map into the set) instead"
        )


@dataclasses.dataclass(frozen=True)
class KSparsePolytope(Constraint):
    r"""The K-sparse polytope :math:`C(K, r)`: the convex hull of vectors with K entries :math:`\pm r`.

    Equivalently :math:`\{x: \|x\|_\infty \le r,\ \|x\|_1 \le K r\}`. Build it
    with :func:`k_sparse_polytope`.

    Attributes:
      radius: :math:`r > 0`.
      k: a fixed :math:`K` (or ``None``).
      k_frac: a fraction of the leaf's size (or ``None``).
    """

    radius: float = 1.0
    k: int | None = None
    k_frac: float | None = None

    def k_for(self, n: int) -> int:
        r"""The :math:`K` used for a leaf of ``n`` entries.

        .. math::

          K = \max\big(1, \min(\max(k, \lfloor k_{\rm frac}\, n\rfloor), n)\big),

        with an absent ``k`` or ``k_frac`` counting as 0. The floor is taken
        with a 1e-9 tolerance, so that ``0.29 * 100`` gives 29.
        """
        k = 0 if self.k is None else self.k
        kf = 0 if self.k_frac is None else math.floor(self.k_frac * n + 1e-9)
        return max(1, min(max(k, kf), n))

    def lmo(self, g: jax.Array) -> jax.Array:
        r"""Puts :math:`-r\,\mathrm{sign}(g_i)` on the K largest :math:`|g_i|`, zero elsewhere.

        Ties in :math:`|g|` go to the lower (flattened) index. Where
        :math:`g_i = 0` the entry is 0 (``sign(0) = 0``), which is still a
        minimiser and keeps leaves without gradient from drifting to an
        arbitrary vertex; for a gradient whose K largest entries are nonzero the
        result is a vertex with exactly K nonzeros. The K entries are the ones
        ``jax.lax.top_k(|g|, K)`` returns, marked by
        :func:`sparsejax.select.top_k_mask` (on a CPU, no sort of large leaves).
        """
        g = jnp.asarray(g)
        n = _size(g.shape)
        k = self.k_for(n)
        flat = g.reshape(-1).astype(_work_dtype(g))
        if k >= n:
            v = -self.radius * jnp.sign(flat)
        else:
            # lax.top_k's entries, without its sort for large leaves (sparsejax.select).
            chosen = top_k_mask(jnp.abs(flat), k)
            v = jnp.where(chosen, -self.radius * jnp.sign(flat), jnp.zeros_like(flat))
        return (v + 0.0).reshape(g.shape).astype(g.dtype)  # + 0.0: no negative zeros

    def diameter(self, shape: Shape) -> float:
        return 2.0 * self.radius * math.sqrt(self.k_for(_size(shape)))

    def with_diameter(self, diameter: float, shape: Shape) -> KSparsePolytope:
        radius = diameter / (2.0 * math.sqrt(self.k_for(_size(shape))))
        return dataclasses.replace(self, radius=_check_radius(radius))

    def _norms(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = jnp.abs(jnp.asarray(x).astype(_work_dtype(x)))
        return jnp.max(x, initial=0.0), jnp.sum(x)

    def contains(self, x: jax.Array, *, rtol: float = 1e-5, atol: float = 1e-6) -> jax.Array:
        linf, l1 = self._norms(x)
        k = self.k_for(_size(jnp.shape(x)))
        return (linf <= self.radius * (1 + rtol) + atol) & (l1 <= k * self.radius * (1 + rtol) + atol)

    def max_scale(self, x: jax.Array) -> jax.Array:
        linf, l1 = self._norms(x)
        k = self.k_for(_size(jnp.shape(x)))
        return jnp.minimum(_safe_ratio(self.radius, linf), _safe_ratio(k * self.radius, l1))


def _safe_ratio(num: float, den: jax.Array) -> jax.Array:
    """``num / den``, ``inf`` where ``den == 0``."""
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), jnp.inf)


@dataclasses.dataclass(frozen=True)
class LpBall(Constraint):
    r"""The Lp ball :math:`\{x: \|x\|_p \le r\}`, :math:`1 \le p \le \infty`.

    Build it with :func:`lp_ball`, :func:`l1_ball`, :func:`l2_ball` or
    :func:`linf_ball`.

    Attributes:
      p: the order (``float('inf')`` for L∞).
      radius: :math:`r > 0`.
    """

    p: float = 2.0
    radius: float = 1.0

    def _norm(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        flat = x.reshape(-1).astype(_work_dtype(x))
        if self.p == 1 or self.p == math.inf:
            return jnp.linalg.norm(flat, ord=self.p)
        # top * ||x / top||_p, so that |x|^p cannot overflow or underflow for large p
        top, u = _by_largest(flat)
        return top * jnp.linalg.norm(u, ord=self.p)

    def lmo(self, g: jax.Array) -> jax.Array:
        r"""The minimiser of :math:`\langle g, v\rangle` on the ball.

        .. math::

          v = -r\,\frac{\mathrm{sign}(g)\,|g|^{q-1}}{\|g\|_q^{q-1}},
          \qquad \tfrac1p + \tfrac1q = 1,

        i.e. :math:`-r\,\mathrm{sign}(g_{i^*}) e_{i^*}` at the largest
        :math:`|g_i|` for :math:`p = 1` (first index on ties),
        :math:`-r g/\|g\|_2` for :math:`p = 2` and :math:`-r\,\mathrm{sign}(g)`
        for :math:`p = \infty`. A zero gradient gives 0 (every point minimises).
        """
        g = jnp.asarray(g)
        flat = g.reshape(-1).astype(_work_dtype(g))
        r = self.radius
        if flat.size == 0:
            return g
        if self.p == 1:
            i = jnp.argmax(jnp.abs(flat))
            v = jnp.zeros_like(flat).at[i].set(-r * jnp.sign(flat[i]))
        elif self.p == math.inf:
            v = -r * jnp.sign(flat)
        else:
            # scale by max|g| first so |g|^(q-1) cannot overflow or underflow
            _, u = _by_largest(flat)
            if self.p == 2:
                w = u
            else:
                q = self.p / (self.p - 1.0)
                w = jnp.sign(u) * jnp.abs(u) ** (q - 1.0)
            norm = jnp.linalg.norm(w, ord=self.p)
            v = -r * w / jnp.where(norm > 0, norm, 1.0)
        return (v + 0.0).reshape(g.shape).astype(g.dtype)  # + 0.0: no negative zeros

    def _diameter_per_radius(self, n: int) -> float:
        if self.p == 1 or self.p == 2:
            return 2.0
        if self.p == math.inf:
            return 2.0 * math.sqrt(n)
        return 2.0 * n ** (0.5 - 1.0 / self.p)

    def diameter(self, shape: Shape) -> float:
        r"""The reference's L2 diameter :math:`2r\,n^{1/2-1/p}` (:math:`2r` at :math:`p = 1`).

        The true L2 diameter for :math:`p = 1` and :math:`p \ge 2`; for
        :math:`1 < p < 2` it is smaller than the true :math:`2r` (see the
        module docstring).
        """
        return self.radius * self._diameter_per_radius(_size(shape))

    def with_diameter(self, diameter: float, shape: Shape) -> LpBall:
        radius = diameter / self._diameter_per_radius(_size(shape))
        return dataclasses.replace(self, radius=_check_radius(radius))

    def contains(self, x: jax.Array, *, rtol: float = 1e-5, atol: float = 1e-6) -> jax.Array:
        return self._norm(x) <= self.radius * (1 + rtol) + atol

    def max_scale(self, x: jax.Array) -> jax.Array:
        return _safe_ratio(self.radius, self._norm(x))

    def project(self, x: jax.Array) -> jax.Array:
        """Euclidean projection for ``p`` in {1, 2, ∞} (:mod:`optax.projections`)."""
        x = jnp.asarray(x)
        y = x.astype(_work_dtype(x))
        if self.p == 1:
            out = optax.projections.projection_l1_ball(y.reshape(-1), self.radius).reshape(x.shape)
        elif self.p == 2:
            out = optax.projections.projection_l2_ball(y, self.radius)
        elif self.p == math.inf:
            out = optax.projections.projection_linf_ball(y, self.radius)
        else:
            return super().project(x)
        return out.astype(x.dtype)


@dataclasses.dataclass(frozen=True)
class Simplex(Constraint):
    r"""The scaled probability simplex :math:`\{x: x \ge 0,\ \sum_i x_i = r\}`.

    Not star-shaped about the origin: :meth:`make_feasible` projects and
    :meth:`max_scale` is ``inf``.

    Attributes:
      radius: :math:`r > 0`, the sum of the entries.
    """

    radius: float = 1.0

    def lmo(self, g: jax.Array) -> jax.Array:
        """The vertex :math:`r e_{i^*}` at the smallest :math:`g_i` (first index on ties)."""
        g = jnp.asarray(g)
        flat = g.reshape(-1).astype(_work_dtype(g))
        if flat.size == 0:
            return g
        v = jnp.zeros_like(flat).at[jnp.argmin(flat)].set(self.radius)
        return (v + 0.0).reshape(g.shape).astype(g.dtype)  # + 0.0: no negative zeros

    def diameter(self, shape: Shape) -> float:
        return self.radius * math.sqrt(2.0) if _size(shape) >= 2 else 0.0

    def with_diameter(self, diameter: float, shape: Shape) -> Simplex:
        # a one-entry simplex is the single point {r}: give it the norm D/2 instead
        per_radius = math.sqrt(2.0) if _size(shape) >= 2 else 2.0
        return dataclasses.replace(self, radius=_check_radius(diameter / per_radius))

    def contains(self, x: jax.Array, *, rtol: float = 1e-5, atol: float = 1e-6) -> jax.Array:
        x = jnp.asarray(x)
        y = x.astype(_work_dtype(x))
        total_ok = jnp.abs(jnp.sum(y) - self.radius) <= self.radius * rtol + atol
        return total_ok & jnp.all(y >= -atol)

    def project(self, x: jax.Array) -> jax.Array:
        """Euclidean projection (:func:`optax.projections.projection_simplex`)."""
        x = jnp.asarray(x)
        if x.size == 0:  # no entry to constrain (the convention of every set here)
            return x
        y = x.reshape(-1).astype(_work_dtype(x))
        out = optax.projections.projection_simplex(y, self.radius)
        return out.reshape(x.shape).astype(x.dtype)

    def make_feasible(self, x: jax.Array) -> jax.Array:
        return self.project(x)


@dataclasses.dataclass(frozen=True)
class Unconstrained(Constraint):
    """An explicit marker for a leaf without a constraint (the same as ``None``).

    It has no linear minimisation oracle; Frank-Wolfe transforms reject it
    (train such leaves with another optimizer through :func:`optax.partition`,
    see :func:`partition_labels`).
    """

    def lmo(self, g: jax.Array) -> jax.Array:
        raise ValueError(
            "an unconstrained leaf has no linear minimisation oracle; train it with "
            "another optimizer via optax.partition (see sparsejax.constraints.partition_labels)"
        )

    def diameter(self, shape: Shape) -> float:
        del shape
        return math.inf

    def with_diameter(self, diameter: float, shape: Shape) -> Unconstrained:
        del diameter, shape
        return self

    def contains(self, x: jax.Array, *, rtol: float = 1e-5, atol: float = 1e-6) -> jax.Array:
        del x, rtol, atol
        return jnp.asarray(True)

    def make_feasible(self, x: jax.Array) -> jax.Array:
        return x

    def project(self, x: jax.Array) -> jax.Array:
        return x


# --- factories ------------------------------------------------------------------------------


def k_sparse_polytope(
    k: int | None = None, k_frac: float | None = None, radius: float = 1.0
) -> KSparsePolytope:
    r"""The K-sparse polytope :math:`C(K, r) = \{x: \|x\|_\infty \le r,\ \|x\|_1 \le K r\}`.

    The convex hull of the vectors with exactly K nonzero entries, each
    :math:`\pm r`. For a leaf of n entries

    .. math::

      K = \max\big(1, \min(\max(k, \lfloor k_{\rm frac}\, n\rfloor), n)\big),
      \qquad \mathrm{LMO}(g) = -r\,\mathrm{sign}(g)\ \text{on the K largest } |g_i|,
      \qquad D = 2 r\sqrt K .

    Args:
      k: a fixed number of nonzeros, an integer ``>= 1`` (or ``None``).
      k_frac: a fraction of each leaf's size, in ``(0, 1]`` (or ``None``).
        At least one of ``k`` and ``k_frac`` is needed; with both the larger
        K counts. SFW pruning uses ``k_frac=0.05``.
      radius: :math:`r > 0`.

    Returns:
      A :class:`KSparsePolytope`.

    Raises:
      ValueError: if neither ``k`` nor ``k_frac`` is given, or one is out of range.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> c = sj.constraints.k_sparse_polytope(k=2, radius=3.0)
      >>> c.lmo(jnp.array([0.5, -2.0, 0.1, 1.0]))
      Array([ 0.,  3.,  0., -3.], dtype=float32)
      >>> round(c.diameter((4,)), 4)  # 2 * 3 * sqrt(2)
      8.4853

    References:
      Miao et al., *Learning Pruning-Friendly Networks via Frank-Wolfe*, ICLR
      2022; Pokutta, Spiegel, Zimmer, *Deep Neural Network Training with
      Frank-Wolfe*, 2020.
    """
    if k is None and k_frac is None:
        raise ValueError("k_sparse_polytope needs k or k_frac (SFW pruning uses k_frac=0.05)")
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
        check_number("k", k, ge=1, integer=True)
        k = int(k)
    if k_frac is not None:
        check_number("k_frac", k_frac, gt=0, le=1)
        k_frac = float(k_frac)
    return KSparsePolytope(radius=_check_radius(radius), k=k, k_frac=k_frac)


def lp_ball(p: float, radius: float = 1.0) -> LpBall:
    r"""The Lp ball :math:`\{x: \|x\|_p \le r\}` for :math:`1 \le p \le \infty`.

    L2 diameter (:meth:`LpBall.diameter`, the reference code's convention)
    :math:`2r` for :math:`p = 1` and :math:`2r\,n^{1/2-1/p}` for
    :math:`p > 1` (:math:`2r\sqrt n` for L∞), n the leaf's size; for
    :math:`1 < p < 2` the set's true L2 diameter is :math:`2r` (see the module
    docstring).

    Args:
      p: the order, ``>= 1`` (``float('inf')`` or ``'inf'`` for L∞).
      radius: :math:`r > 0`.

    Returns:
      An :class:`LpBall`.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> sj.constraints.lp_ball(2, radius=2.0).lmo(jnp.array([3.0, -4.0]))
      Array([-1.2,  1.6], dtype=float32)

    References:
      Pokutta, Spiegel, Zimmer, *Deep Neural Network Training with
      Frank-Wolfe*, 2020.
    """
    if isinstance(p, str) and p.lower() == "inf":
        p = math.inf
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)):
        raise ValueError(f"p must be a number >= 1 or 'inf', got {p!r}")
    if math.isnan(p) or p < 1:
        raise ValueError(f"p must be >= 1 (or inf), got {p!r}")
    return LpBall(p=float(p), radius=_check_radius(radius))


def l1_ball(radius: float = 1.0) -> LpBall:
    """The L1 ball of radius ``radius`` (:func:`lp_ball` with ``p=1``).

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> sj.constraints.l1_ball(2.0).lmo(jnp.array([0.5, -3.0, 1.0]))
      Array([0., 2., 0.], dtype=float32)
    """
    return lp_ball(1, radius)


def l2_ball(radius: float = 1.0) -> LpBall:
    """The L2 ball of radius ``radius`` (:func:`lp_ball` with ``p=2``).

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> sj.constraints.l2_ball(1.0).lmo(jnp.array([0.0, 2.0]))
      Array([ 0., -1.], dtype=float32)
    """
    return lp_ball(2, radius)


def linf_ball(radius: float = 1.0) -> LpBall:
    """The L∞ ball (box) of radius ``radius`` (:func:`lp_ball` with ``p=inf``).

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> sj.constraints.linf_ball(0.5).lmo(jnp.array([1.0, -2.0, 0.0]))
      Array([-0.5,  0.5,  0. ], dtype=float32)
    """
    return lp_ball(math.inf, radius)


def simplex(radius: float = 1.0) -> Simplex:
    r"""The scaled probability simplex :math:`\{x \ge 0: \sum_i x_i = r\}`.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> sj.constraints.simplex(2.0).lmo(jnp.array([0.3, -1.0, 0.2]))
      Array([0., 2., 0.], dtype=float32)
    """
    return Simplex(radius=_check_radius(radius))


def unconstrained() -> Unconstrained:
    """The explicit "no constraint" marker (equivalent to ``None`` in a constraint pytree).

    Example:
      >>> import sparsejax as sj
      >>> sj.constraints.unconstrained().diameter((3, 3))
      inf
    """
    return Unconstrained()


# --- constraint pytrees ---------------------------------------------------------------------

ConstraintTree: TypeAlias = Constraint | PyTree | Callable[[PyTree], PyTree] | None


def _is_constraint_leaf(x: Any) -> bool:
    return x is None or isinstance(x, Constraint)


def _is_free(c: Constraint | None) -> bool:
    return c is None or isinstance(c, Unconstrained)


def leaf_constraints(constraints: ConstraintTree, tree: PyTree) -> list[Constraint | None]:
    """The constraint of every leaf of ``tree``, in ``jax.tree.leaves`` order.

    Args:
      constraints: a single :class:`Constraint` (or ``None``) for every leaf; a
        pytree with ``tree``'s structure or a prefix of it whose leaves are
        constraints or ``None``; or a callable ``tree -> such a pytree``. When
        the structures differ (e.g. a pure dict against an ``nnx.State``), each
        leaf takes the constraint whose normalised path equals its own path or
        is its longest prefix.
      tree: the params (or grads); ``None`` and ``optax.MaskedNode`` entries
        are not leaves and get nothing.

    Returns:
      A list with one constraint (or ``None``) per leaf of ``tree``.

    Raises:
      ValueError: if a leaf of ``tree`` matches no entry of ``constraints``.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> params = {'b': jnp.zeros(2), 'w': jnp.ones((2, 2))}
      >>> sj.constraints.leaf_constraints({'b': None, 'w': sj.constraints.l2_ball(1.0)}, params)
      [None, LpBall(p=2.0, radius=1.0)]
    """
    if callable(constraints) and not isinstance(constraints, Constraint):
        constraints = constraints(tree)
    n_leaves = len(jax.tree.leaves(tree))
    if _is_constraint_leaf(constraints):
        return [constraints] * n_leaves
    cdef = jax.tree.structure(constraints, is_leaf=_is_constraint_leaf)
    cons = jax.tree.leaves(constraints, is_leaf=_is_constraint_leaf)
    bad = [c for c in cons if not _is_constraint_leaf(c)]
    if bad:
        raise ValueError(
            f"constraint pytree leaves must be sparsejax.constraints objects or None, got {bad[0]!r}"
        )
    try:
        subtrees = cdef.flatten_up_to(tree)
    except (ValueError, TypeError):
        return _match_by_path(constraints, tree)
    out: list[Constraint | None] = []
    for c, sub in zip(cons, subtrees):
        out += [c] * len(jax.tree.leaves(sub))
    return out


def _match_by_path(constraints: PyTree, tree: PyTree) -> list[Constraint | None]:
    table = {
        path_str(p): c
        for p, c in jax.tree_util.tree_leaves_with_path(constraints, is_leaf=_is_constraint_leaf)
    }
    out = []
    for p, _ in jax.tree_util.tree_leaves_with_path(tree):
        name = path_str(p)
        parts = name.split("/") if name else []
        for cut in range(len(parts), -1, -1):
            key = "/".join(parts[:cut])
            if key in table:
                out.append(table[key])
                break
        else:
            raise ValueError(
                f"constraints do not match the params: no constraint for leaf {name!r}. "
                "Give a constraint pytree with the params' structure (or a prefix of it), "
                f"or one keyed by the same paths; constraint paths: {sorted(table)[:8]}"
            )
    return out


def _map_leaves(fn: Callable[..., Any], tree: PyTree, cons: list[Constraint | None]) -> PyTree:
    leaves, treedef = jax.tree.flatten(tree)
    return treedef.unflatten([fn(x, c) for x, c in zip(leaves, cons)])


def lmo_tree(grads: PyTree, constraints: ConstraintTree) -> PyTree:
    r"""The LMO of every leaf: :math:`v = \arg\min_{v \in C} \langle g, v\rangle` leaf by leaf.

    Args:
      grads: a pytree of arrays (a gradient or a momentum buffer).
      constraints: the constraint pytree (see :func:`leaf_constraints`).

    Returns:
      A pytree like ``grads``.

    Raises:
      ValueError: if a leaf is unconstrained (``None`` or :func:`unconstrained`).

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> sj.constraints.lmo_tree({'w': jnp.array([1.0, -3.0])}, sj.constraints.l1_ball(2.0))
      {'w': Array([0., 2.], dtype=float32)}
    """
    cons = leaf_constraints(constraints, grads)
    names = [path_str(p) for p, _ in jax.tree_util.tree_leaves_with_path(grads)]
    for name, c in zip(names, cons):
        if _is_free(c):
            raise ValueError(f"leaf {name!r} has no constraint, so it has no LMO")
    return _map_leaves(lambda g, c: c.lmo(g), grads, cons)


def fw_gap(grads: PyTree, params: PyTree, constraints: ConstraintTree) -> jax.Array:
    r"""The Frank-Wolfe gap :math:`\sum_\ell \max_{v \in C_\ell} \langle g_\ell, p_\ell - v\rangle \ge 0`.

    Zero exactly at the stationary points of the constrained problem (with the
    full gradient); it bounds the suboptimality :math:`f(p) - f^*` for convex
    :math:`f`. Unconstrained leaves are left out of the sum.

    Args:
      grads: the gradient at ``params``.
      params: a feasible point.
      constraints: the constraint pytree (see :func:`leaf_constraints`).

    Returns:
      A float32 scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> sj.constraints.fw_gap({'w': jnp.array([1.0, 0.0])}, {'w': jnp.array([0.5, 0.0])}, sj.constraints.l1_ball(1.0))
      Array(1.5, dtype=float32)
    """
    cons = leaf_constraints(constraints, params)
    p_leaves = jax.tree.leaves(params)
    g_leaves = jax.tree.leaves(grads)
    total = jnp.zeros([], jnp.float32)
    for g, p, c in zip(g_leaves, p_leaves, cons):
        if _is_free(c):
            continue
        v = c.lmo(g).astype(jnp.float32)
        total = total + jnp.vdot(g.astype(jnp.float32), p.astype(jnp.float32) - v)
    return total


def make_feasible(params: PyTree, constraints: ConstraintTree) -> PyTree:
    """Moves every constrained leaf into its set (:meth:`Constraint.make_feasible`).

    Norm balls and the K-sparse polytope shrink the leaf towards 0 just enough
    (direction and sparsity pattern are kept); the simplex projects.
    Unconstrained leaves are returned unchanged.

    Args:
      params: the params.
      constraints: the constraint pytree (see :func:`leaf_constraints`).

    Returns:
      Feasible params, same structure and dtypes.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> sj.constraints.make_feasible({'w': jnp.array([3.0, 4.0]), 'b': jnp.array([9.0])},
      ...                 {'w': sj.constraints.l2_ball(1.0), 'b': None})
      {'b': Array([9.], dtype=float32), 'w': Array([0.6, 0.8], dtype=float32)}
    """
    cons = leaf_constraints(constraints, params)
    return _map_leaves(lambda p, c: p if _is_free(c) else c.make_feasible(p), params, cons)


def is_feasible(
    params: PyTree, constraints: ConstraintTree, *, rtol: float = 1e-5, atol: float = 1e-6
) -> jax.Array:
    """Whether every constrained leaf lies in its set (a boolean scalar array).

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> bool(sj.constraints.is_feasible({'w': jnp.array([0.6, 0.8])}, sj.constraints.l2_ball(1.0)))
      True
    """
    cons = leaf_constraints(constraints, params)
    ok = jnp.asarray(True)
    for p, c in zip(jax.tree.leaves(params), cons):
        if not _is_free(c):
            ok = ok & c.contains(p, rtol=rtol, atol=atol)
    return ok


def partition_labels(
    constraints: ConstraintTree,
    params: PyTree,
    constrained: str = "frank_wolfe",
    unconstrained: str = "unconstrained",
) -> PyTree:
    """Labels for :func:`optax.partition`: Frank-Wolfe for constrained leaves, another optimizer for the rest.

    Frank-Wolfe transforms need a constraint for every leaf they see; leaves
    without one (``None`` or :func:`unconstrained`) go to another optimizer:

    .. code-block:: python

      labels = partition_labels(cons, params)
      tx = optax.partition({'frank_wolfe': sj.sfw(0.1, cons),
                            'unconstrained': optax.sgd(0.01)}, labels)

    Args:
      constraints: the constraint pytree (see :func:`leaf_constraints`).
      params: the params.
      constrained: the label of constrained leaves.
      unconstrained: the label of the others.

    Returns:
      A pytree of strings with ``params``' structure.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> params = {'b': jnp.zeros(2), 'w': jnp.ones((2, 2))}
      >>> sj.constraints.partition_labels({'b': None, 'w': sj.constraints.l2_ball()}, params)
      {'b': 'unconstrained', 'w': 'frank_wolfe'}
    """
    cons = leaf_constraints(constraints, params)
    return _map_leaves(lambda _, c: unconstrained if _is_free(c) else constrained, params, cons)


# --- radii from the initialisation ----------------------------------------------------------


def _draws(sample_params: Callable[[int], PyTree], num_samples: int, seed: int) -> list[PyTree]:
    if not callable(sample_params):
        raise ValueError(
            "sample_params must be a callable seed -> params pytree (a fresh initialisation "
            f"of the model for each seed), got {type(sample_params).__name__}"
        )
    check_number("num_samples", num_samples, ge=1, integer=True)
    return [sample_params(seed + i) for i in range(int(num_samples))]


def expected_norms(
    sample_params: Callable[[int], PyTree], num_samples: int = 5, seed: int = 0
) -> PyTree:
    r"""Monte-Carlo estimate of :math:`\mathbb E\|W_{\rm init}\|_2` for every leaf.

    Args:
      sample_params: ``seed -> params``, a fresh initialisation of the model
        for each seed (e.g. ``lambda s: nnx.to_pure_dict(nnx.state(
        sparsejax.models.create('lenet5', rngs=s), nnx.Param))``).
      num_samples: number of initialisations averaged.
      seed: the seeds used are ``seed, seed + 1, ..., seed + num_samples - 1``.

    Returns:
      A pytree like the params with a Python float per leaf.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import sparsejax as sj
      >>> sample = lambda s: {'w': jnp.full((4,), 0.5 * (s + 1))}
      >>> sj.constraints.expected_norms(sample, num_samples=2)  # mean of 1 and 2
      {'w': 1.5}
    """
    return _mean_norms(_draws(sample_params, num_samples, seed))


def _mean_norms(draws: list[PyTree]) -> PyTree:
    leaves0, treedef = jax.tree.flatten(draws[0])
    sums = [0.0] * len(leaves0)
    for d in draws:
        for i, x in enumerate(treedef.flatten_up_to(d)):
            sums[i] += float(np.linalg.norm(np.asarray(x, np.float64).ravel()))
    return treedef.unflatten([s / len(draws) for s in sums])


_KINDS = ("k_sparse", "l1", "l2", "linf", "lp", "simplex")

#: SFW pruning's K-sparse polytope defaults (``--k_sparseness 10 --k_frac 0.05``):
#: :math:`K = \min(\max(10, \lfloor 0.05\,n\rfloor), n)` per leaf of n entries.
SFW_K, SFW_K_FRAC = 10, 0.05
#: SFW pruning's diameter multiplier :math:`\tau` (``--tau 15``).
SFW_TAU = 15.0
#: The first seed of the fresh initialisations that :func:`sfw_pruning_constraints` draws.
INIT_NORM_SEED = 10_000


def constraints_from_init(
    sample_params: Callable[[int], PyTree],
    kind: str | Constraint = "k_sparse",
    *,
    value: float = 15.0,
    k: int | None = None,
    k_frac: float | None = None,
    p: float | None = None,
    mask: Mask = None,
    num_samples: int = 5,
    seed: int = 0,
) -> PyTree:
    r"""A constraint pytree for a whole model, with radii set from its initialisation.

    For every selected leaf the set gets the L2 diameter

    .. math::

      D_\ell = 2\cdot\mathrm{value}\cdot\mathbb E\|W_\ell^{\rm init}\|_2

    (estimated over ``num_samples`` fresh initialisations; 1 instead of a zero
    norm), and the radius that gives it that diameter (see the module
    docstring's table: :math:`r = D/(2\sqrt K)` for the K-sparse polytope,
    :math:`D/2` for L1/L2, :math:`D/(2\sqrt n)` for L∞).

    Args:
      sample_params: ``seed -> params``, a fresh initialisation for each seed.
        For a zoo model: ``lambda s: nnx.to_pure_dict(nnx.state(
        sparsejax.models.create(name, rngs=s), nnx.Param))``.
      kind: ``'k_sparse'`` (with neither ``k`` nor ``k_frac`` the SFW pruning
        defaults ``k=10, k_frac=0.05``: :math:`K = \min(\max(10,
        \lfloor 0.05 n\rfloor), n)`), ``'l1'``, ``'l2'``,
        ``'linf'``, ``'lp'`` (needs ``p``), ``'simplex'``, or a constraint used
        as a template (only its radius is replaced).
      value: the diameter multiplier, ``> 0`` (the :math:`\tau` of SFW
        pruning, 15 with K = 5%; see ``FIDELITY.md``).
      k: fixed K for ``'k_sparse'``.
      k_frac: K as a fraction of each leaf's size for ``'k_sparse'``.
      p: the order for ``'lp'``.
      mask: which leaves get a constraint (``None``: all; a pytree of bools or
        a callable such as :func:`sparsejax.tree.weights_only`); the others get
        ``None``.
      num_samples: number of initialisations for the expectation.
      seed: first seed.

    Returns:
      A pytree like ``sample_params(seed)`` with a constraint or ``None`` per leaf.

    Raises:
      ValueError: for an unknown ``kind`` or missing/invalid arguments.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import sparsejax as sj
      >>> def sample(seed):
      ...   k1, k2 = jax.random.split(jax.random.key(seed))
      ...   return {'w': jax.random.normal(k1, (10, 10)), 'b': jnp.zeros(10)}
      >>> cons = sj.constraints.constraints_from_init(sample, 'k_sparse', value=2.0, k_frac=0.04)
      >>> cons['w'].k_for(100), round(cons['b'].radius, 3)  # zero-norm bias: D = 2*value*1, K = 1
      (4, 2.0)

    References:
      Pokutta, Spiegel, Zimmer, *Deep Neural Network Training with
      Frank-Wolfe*, 2020; Miao et al., *Learning Pruning-Friendly Networks via
      Frank-Wolfe*, ICLR 2022.
    """
    check_number("value", value, gt=0)
    if isinstance(kind, Constraint):
        if isinstance(kind, Unconstrained):
            raise ValueError("kind=unconstrained() has no radius to set; use mask= instead")
        template = kind
    elif kind == "k_sparse" or kind == "k_sparse_polytope":
        if k is None and k_frac is None:
            k, k_frac = SFW_K, SFW_K_FRAC
        template = k_sparse_polytope(k=k, k_frac=k_frac)
    elif kind in ("l1", "l2", "linf"):
        template = {"l1": l1_ball, "l2": l2_ball, "linf": linf_ball}[kind]()
    elif kind == "lp":
        if p is None:
            raise ValueError("kind='lp' needs p (the order of the ball, >= 1)")
        template = lp_ball(p)
    elif kind == "simplex":
        template = simplex()
    else:
        raise ValueError(f"kind must be one of {_KINDS} or a constraint, got {kind!r}")
    draws = _draws(sample_params, num_samples, seed)
    norms, sample = _mean_norms(draws), draws[0]
    selected = resolve_mask(mask, sample)

    leaves, treedef = jax.tree.flatten(sample)
    out = []
    for x, n, sel in zip(leaves, treedef.flatten_up_to(norms), treedef.flatten_up_to(selected)):
        if not sel:
            out.append(None)
            continue
        norm = n if n > 0 else 1.0
        out.append(template.with_diameter(2.0 * float(value) * norm, np.shape(x)))
    return treedef.unflatten(out)


def sfw_pruning_constraints(
    sample_params: Callable[[int], PyTree],
    *,
    value: float = SFW_TAU,
    k: int | None = SFW_K,
    k_frac: float | None = SFW_K_FRAC,
    mask: Mask = None,
    num_samples: int = 5,
    seed: int = INIT_NORM_SEED,
) -> PyTree:
    r"""SFW pruning's constraints: a K-sparse polytope per leaf, sized from fresh initialisations.

    For every selected leaf :math:`\ell` of :math:`n_\ell` entries

    .. math::

      K_\ell = \min\big(\max(k, \lfloor k_{\rm frac}\, n_\ell\rfloor), n_\ell\big),
      \qquad D_\ell = 2\,\tau\,\overline{\|W_\ell^{\rm init}\|_2},
      \qquad r_\ell = D_\ell / (2\sqrt{K_\ell}),

    with the mean norm over ``num_samples`` fresh initialisations (seeds
    ``seed, seed + 1, ...``; a zero mean norm counts as 1), as the reference's
    ``create_k_sparse_constraints(model, K, K_frac, value, mode='initialization')``
    (which averages over 100 re-initialisations of each layer). Every leaf is
    constrained by default, biases and normalisation parameters included, as
    in the reference. This is the one construction used by the registry's
    ``sfw`` method and the experiment scripts.

    Args:
      sample_params: ``seed -> params``, a fresh initialisation for each seed.
      value: :math:`\tau > 0` (reference default 15).
      k: the absolute floor of K (reference default 10), or ``None``.
      k_frac: K as a fraction of each leaf's size (reference default 0.05), or ``None``.
      mask: which leaves get a polytope (``None``: all, the reference's
        choice; e.g. :func:`sparsejax.tree.weights_only` for the kernels
        only); the others get ``None`` (train them with another optimizer,
        see :func:`partition_labels`).
      num_samples: number of fresh initialisations, ``>= 1``.
      seed: the first of their seeds.

    Returns:
      A constraint pytree like ``sample_params(seed)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import sparsejax as sj
      >>> sample = lambda s: {'w': jax.random.normal(jax.random.key(s), (8, 9)), 'b': jnp.zeros(8)}
      >>> cons = sj.constraints.sfw_pruning_constraints(sample)
      >>> cons['w'].k_for(72), cons['b'].k_for(8)  # max(10, int(0.05 n)) capped at n
      (10, 8)

    References:
      Miao et al., *Learning Pruning-Friendly Networks via Frank-Wolfe:
      One-Shot, Any-Sparsity, and No Retraining*, ICLR 2022 (code:
      VITA-Group/SFW-Once-for-All-Pruning, ``train_prune.py`` defaults);
      Pokutta, Spiegel, Zimmer, *Deep Neural Network Training with
      Frank-Wolfe*, 2020.
    """
    if k is None and k_frac is None:
        raise ValueError("sfw_pruning_constraints needs k or k_frac (reference: k=10, k_frac=0.05)")
    return constraints_from_init(sample_params, "k_sparse", value=value, k=k, k_frac=k_frac,
                                 mask=mask, num_samples=num_samples, seed=seed)
