r"""The flat subspace, the directional-pruning scores and the closed-form DP solution.

Chao, Wang, Xing and Cheng (NeurIPS 2020): SGD reaches a flat valley
:math:`\mathcal P_0`, the span of the Hessian's (near-)zero eigenvectors.
Moving :math:`w^{SGD}` along :math:`-\Pi_0 \operatorname{sign}(w^{SGD}) \in
\mathcal P_0` shrinks the weights' magnitudes without leaving the valley, and

.. math::

  s_j = \operatorname{sign}(w^{SGD}_j)\,\big(\Pi_0 \operatorname{sign}(w^{SGD})\big)_j

is positive iff pruning :math:`w_j` along that direction does not increase the
loss. Directional pruning (DP) is the weighted-:math:`\ell_1` problem

.. math::

  \hat w = \operatorname{argmin}_{w \in \mathbb R^d}\;
  \tfrac12 \|w - w^{SGD}\|_2^2 + \lambda \sum_j s_j |w_j| ,

solved coordinate by coordinate by :func:`directional_prune`. The paper's
theorem: gRDA's iterate at time :math:`t = n\gamma` is asymptotically DP of
SGD's with :math:`\lambda_{\gamma,t} = c\sqrt\gamma\, t^\mu`
(:func:`grda_lambda`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax import prox
from sparsejax._validation import check_number
from sparsejax.directional._util import (
    check_same_structure,
    stacked_coefficients,
    stacked_combination,
)
from sparsejax.directional.spectrum import HessianEigen
from sparsejax.tree import Mask, PyTree, leaves_with_paths, resolve_mask

__all__ = [
    "FlatProjector",
    "directional_prune",
    "dp_scores",
    "flat_projector",
    "grda_lambda",
    "lambda_for_sparsity",
]


class FlatProjector(NamedTuple):
    r"""The orthogonal projector onto the flat subspace, :math:`\Pi_0 v = v - V V^\top v`.

    Call it on a pytree like the params. :math:`V` holds the retained
    (non-flat) eigenvectors, orthonormal.

    Attributes:
      vectors: :math:`V` as a pytree like the params whose leaves have a
        leading axis :math:`r` (the number of retained directions; 0 gives the
        identity).
      values: their eigenvalues, ``(r,)``.
    """

    vectors: PyTree
    values: jax.Array

    @property
    def rank(self) -> int:
        """:math:`r`, the number of directions projected out."""
        return int(self.values.shape[0])

    def _check(self, v: PyTree) -> None:
        rows = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), self.vectors)
        check_same_structure(rows, v, "the projector's eigenvectors", "v")

    def complement(self, v: PyTree) -> PyTree:
        r""":math:`V V^\top v`, the part of ``v`` in the retained (non-flat) directions."""
        self._check(v)
        if self.rank == 0:
            return jax.tree.map(jnp.zeros_like, v)
        c = stacked_coefficients(self.vectors, v)
        return jax.tree.map(lambda p, x: p.astype(x.dtype), stacked_combination(self.vectors, c, v), v)

    def __call__(self, v: PyTree) -> PyTree:
        r""":math:`\Pi_0 v = v - V V^\top v`, a pytree like ``v`` (each leaf in its dtype)."""
        self._check(v)
        if self.rank == 0:
            return v
        c = stacked_coefficients(self.vectors, v)
        part = stacked_combination(self.vectors, c, v)
        return jax.tree.map(lambda x, p: (x - p).astype(x.dtype), v, part)


def flat_projector(eigen: HessianEigen, *, k: int | None = None,
                   tol: float | None = None) -> FlatProjector:
    r"""The projector onto the flat subspace :math:`\mathcal P_0` from Hessian eigenpairs.

    .. math::

      \Pi_0 v = v - V V^\top v, \qquad
      V = [\,v_i : i \le k,\ \lambda_i > \text{tol}\,],

    i.e. the retained (non-flat) directions are the top ``k`` eigenvectors
    whose eigenvalue exceeds ``tol``; everything orthogonal to them counts as
    flat. With Lanczos eigenpairs (:func:`top_eigenpairs`) every direction
    beyond the computed ones is flat; with the exact path
    (:func:`exact_eigenpairs`) pass a ``tol`` above the rounding level
    (e.g. :math:`10^{-6}\lambda_1`), since the zero eigenvalues come out as
    :math:`\pm\epsilon\|H\|`. Directions of negative curvature count as flat
    (the loss does not increase along them to second order).

    Args:
      eigen: a :class:`~sparsejax.directional.HessianEigen`, largest eigenvalue first.
      k: keep at most the top ``k`` pairs (:math:`1 \le k \le` the number given).
      tol: keep only eigenvalues :math:`> \text{tol}` (default, with ``k``: 0, so
        that eigenvalues :math:`\le 0` among the top ``k`` count as flat).

    Returns:
      A :class:`FlatProjector` (the identity if no direction is retained).

    Raises:
      ValueError: if neither ``k`` nor ``tol`` is given, or ``k`` exceeds the
        number of eigenpairs given.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> f = lambda p: 0.5 * jnp.sum(jnp.array([2.0, 0.0, 0.0]) * p['w'] ** 2)
      >>> eig = sj.directional.exact_eigenpairs(f, {'w': jnp.ones(3)})
      >>> proj = sj.directional.flat_projector(eig, tol=1e-6)
      >>> proj.rank, proj({'w': jnp.array([1.0, 1.0, 1.0])})['w']
      (1, Array([0., 1., 1.], dtype=float32))

    References:
      Chao, Wang, Xing and Cheng, *Directional Pruning of Deep Neural
      Networks*, NeurIPS 2020 (Sec. 2: the flat valley :math:`\mathcal P_0`).
    """
    if k is None and tol is None:
        raise ValueError(
            "flat_projector needs k= (the number of top eigenvectors projected out) or tol= (the "
            "eigenvalue above which a direction is not flat), or both"
        )
    values = jnp.asarray(eigen.values)
    n = int(values.shape[0])
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
        if k > n:
            raise ValueError(f"k={k} exceeds the {n} eigenpairs given; compute more of them")
    if tol is not None:
        check_number("tol", tol)
    keep = np.arange(n) < (n if k is None else int(k))
    # negative curvature is flat whatever k is: without tol, only eigenvalues > 0 are retained
    keep &= np.asarray(values, np.float64) > (0.0 if tol is None else float(tol))
    idx = np.flatnonzero(keep)
    return FlatProjector(jax.tree.map(lambda x: x[idx], eigen.vectors), values[idx])


def _selected(mask: Mask, params: PyTree) -> list[bool]:
    return jax.tree.leaves(resolve_mask(mask, params, nonempty=True))


def dp_scores(params: PyTree, projector: Callable[[PyTree], PyTree], *,
              mask: Mask = None) -> PyTree:
    r"""The directional-pruning scores :math:`s_j = \operatorname{sign}(w_j)\,(\Pi_0 \operatorname{sign}(w))_j`.

    .. math::

      d = \operatorname{sign}(w) \odot m, \qquad
      s_j = \operatorname{sign}(w_j)\,(\Pi_0 d)_j \quad (j \text{ selected}),

    where :math:`m` is 1 on the selected leaves (``mask``) and 0 elsewhere: the
    leaves that are not pruned do not move, so the pruning direction has no
    component on them (with the default, every leaf, :math:`d =
    \operatorname{sign}(w)` as in the paper). :math:`s_j > 0` iff moving
    :math:`w_j` towards 0 along the flat direction :math:`-\Pi_0 d` shrinks it;
    :math:`s_j = 0` wherever :math:`w_j = 0`.

    Args:
      params: :math:`w^{SGD}`, the trained params (any pytree).
      projector: :math:`\Pi_0`, a :class:`FlatProjector` (:func:`flat_projector`)
        or any callable ``pytree -> pytree`` with the params' structure.
      mask: the leaves to score (the library's ``mask=``: ``None`` for every
        leaf, a regex on paths, a pytree of booleans or a callable such as
        :func:`sparsejax.tree.weights_only`).

    Returns:
      The scores, a pytree like ``params`` (each leaf in its dtype) with
      ``None`` at the leaves that are not selected.

    Raises:
      ValueError: if the mask selects nothing, or the projector's vectors do
        not match the params.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> f = lambda p: 0.5 * (p['w'][0] + p['w'][1]) ** 2  # steep along (1, 1, 0) only
      >>> w = {'w': jnp.array([1.0, 0.5, -2.0])}
      >>> proj = sj.directional.flat_projector(sj.directional.exact_eigenpairs(f, w), tol=1e-6)
      >>> sj.directional.dp_scores(w, proj)['w'].round(4) + 0.0  # Pi_0 (1, 1, -1) = (0, 0, -1)
      Array([0., 0., 1.], dtype=float32)

    References:
      Chao, Wang, Xing and Cheng, *Directional Pruning of Deep Neural
      Networks*, NeurIPS 2020 (Sec. 2, the score :math:`s_j`).
    """
    flags = _selected(mask, params)
    leaves, treedef = jax.tree.flatten(params)
    direction = [jnp.sign(x) if sel else jnp.zeros_like(x) for x, sel in zip(leaves, flags)]
    projected = projector(jax.tree.unflatten(treedef, direction))
    check_same_structure(params, projected, "params", "the projected direction")
    out = [(jnp.sign(x) * p).astype(x.dtype) if sel else None
           for x, p, sel in zip(leaves, jax.tree.leaves(projected), flags)]
    return jax.tree.unflatten(treedef, out)


def _pairs(params: PyTree, scores: PyTree, mask: Mask) -> list[tuple[str, Any, Any, bool]]:
    """``(path, w, s, selected)`` per leaf of params; checks the scores' structure."""
    flags = _selected(mask, params)
    named = leaves_with_paths(params)
    treedef = jax.tree.structure(params)
    try:
        score_leaves = treedef.flatten_up_to(scores)
    except (ValueError, TypeError) as e:
        raise ValueError(
            "scores do not match params: the two pytrees must have the same structure (None "
            f"allowed at leaves that are not pruned).\n  params: {treedef}\n"
            f"  scores: {jax.tree.structure(scores)}"
        ) from e
    out = []
    for (path, w), s, sel in zip(named, score_leaves, flags):
        if sel:
            if s is None:
                raise ValueError(
                    f"scores is None at {path!r}, a leaf selected for pruning: pass the same mask= "
                    "as to dp_scores"
                )
            if jnp.shape(s) != jnp.shape(w):
                raise ValueError(f"scores at {path!r} has shape {jnp.shape(s)}, the params "
                                 f"{jnp.shape(w)}")
        out.append((path, w, s, sel))
    return out


def directional_prune(params_sgd: PyTree, scores: PyTree, lam: Any, *,
                      mask: Mask = None) -> PyTree:
    r"""The closed-form directional-pruning (DP) solution, coordinate by coordinate.

    The problem separates: with :math:`a = w^{SGD}_j`, :math:`\kappa =
    \lambda s_j`, minimise :math:`f(x) = \tfrac12 (x - a)^2 + \kappa |x|`.

    .. math::

      \hat w_j = \operatorname{sign}(w^{SGD}_j)\,\big(|w^{SGD}_j| - \lambda s_j\big)_+ .

    * :math:`s_j > 0`: soft-thresholding at :math:`\lambda s_j` (the convex
      :math:`\ell_1` prox): :math:`w_j` shrinks, and is pruned (exactly 0)
      when :math:`|w^{SGD}_j| \le \lambda s_j`.
    * :math:`s_j = 0`: :math:`\hat w_j = w^{SGD}_j`.
    * :math:`s_j < 0`: the penalty :math:`-\lambda|s_j|\,|x|` is concave, yet
      :math:`f` is **not** unbounded below: the quadratic grows faster than the
      linear term, so :math:`f` is coercive. On each half-line :math:`f` is a
      parabola with vertex :math:`a \pm \lambda|s_j|`; for :math:`a \ne 0` the
      one on :math:`a`'s side is lower (by :math:`2\lambda|s_j||a|`), so the
      unique minimiser is :math:`\operatorname{sign}(a)(|a| + \lambda|s_j|)`,
      the formula above: the weight grows, away from 0 (pruning it would
      increase the loss). For :math:`a = 0` the two vertices
      :math:`\pm\lambda|s_j|` tie and there is no preferred sign; this cannot
      happen with :func:`dp_scores`, whose :math:`s_j` is 0 wherever
      :math:`w_j = 0`. For scores given by hand the formula returns 0 there
      (the weight stays pruned; 0 is a stationary point of :math:`f` but not a
      minimiser).

    The paper defines DP by the argmin and states that :math:`s_j > 0` iff
    pruning :math:`w_j` does not increase the loss; the formula is its
    solution.

    Args:
      params_sgd: :math:`w^{SGD}` (any pytree).
      scores: :math:`s`, a pytree like the params (``None`` allowed at leaves
        that are not selected), e.g. from :func:`dp_scores`.
      lam: :math:`\lambda \ge 0`, a scalar (e.g. :func:`grda_lambda` or
        :func:`lambda_for_sparsity`).
      mask: the leaves to prune (the library's ``mask=``, default every leaf);
        the others are returned unchanged.

    Returns:
      :math:`\hat w`, a pytree like ``params_sgd`` (dtypes kept; pruned
      entries exactly 0).

    Raises:
      ValueError: for a negative or non-finite ``lam``, scores that do not
        match the params, or ``None`` scores at a selected leaf.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> w = {'w': jnp.array([0.5, -0.5, 2.0, -1.0])}
      >>> s = {'w': jnp.array([1.0, 1.0, 0.0, -1.0])}
      >>> sj.directional.directional_prune(w, s, 0.5)['w']
      Array([ 0. ,  0. ,  2. , -1.5], dtype=float32)

    References:
      Chao, Wang, Xing and Cheng, *Directional Pruning of Deep Neural
      Networks*, NeurIPS 2020 (eq. of DP, Sec. 2).
    """
    check_number("lam", lam, ge=0)
    out = []
    for _, w, s, sel in _pairs(params_sgd, scores, mask):
        if not sel:
            out.append(w)
            continue
        dtype = jnp.result_type(w.dtype, jnp.asarray(s).dtype)
        a = w.astype(dtype)
        kappa = jnp.asarray(lam, dtype) * jnp.asarray(s, dtype)
        mag = jnp.abs(kappa)
        # kappa >= 0: the soft threshold S_kappa(a) (exact zeros, one rounding);
        # kappa < 0: a + sign(a) |kappa|, the magnitude grows (0 stays 0)
        new = jnp.where(kappa >= 0, prox.soft_threshold(a, mag), a + jnp.sign(a) * mag)
        out.append(new.astype(w.dtype))
    return jax.tree.unflatten(jax.tree.structure(params_sgd), out)


def lambda_for_sparsity(params_sgd: PyTree, scores: PyTree, sparsity: float, *,
                        mask: Mask = None) -> float:
    r"""The smallest :math:`\lambda` at which DP zeroes a given share of the selected weights.

    DP zeroes :math:`w_j` iff :math:`w^{SGD}_j = 0` or (:math:`s_j > 0` and
    :math:`|w^{SGD}_j| / s_j \le \lambda`), so the share of zeros is a step
    function of :math:`\lambda`; this returns the :math:`K`-th smallest ratio
    :math:`r_j = |w^{SGD}_j| / s_j` (:math:`r_j = 0` for :math:`w_j = 0`,
    :math:`+\infty` for :math:`s_j \le 0`), :math:`K = \operatorname{round}(q N)`,
    raised by as many units in the last place as :func:`directional_prune`'s
    own arithmetic (:math:`\kappa = \lambda s` rounded to the weights' dtype)
    needs to zero those :math:`K` weights (the ratio computed in float64 can
    round to a :math:`\kappa` one unit below :math:`|w_j|`). Ties can make DP at
    that :math:`\lambda` zero a few more.

    Args:
      params_sgd: :math:`w^{SGD}`.
      scores: :math:`s` (``None`` allowed at unselected leaves).
      sparsity: :math:`q \in [0, 1)`, the share of the selected weights to zero.
      mask: the selected leaves (the library's ``mask=``).

    Returns:
      :math:`\lambda` as a float.

    Raises:
      ValueError: if ``sparsity`` is out of range, or more weights are asked
        for than have a positive score (DP never prunes the others).

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> w = {'w': jnp.array([0.1, -0.4, 0.3, 2.0])}
      >>> s = {'w': jnp.array([1.0, 1.0, 0.5, -1.0])}
      >>> sj.directional.lambda_for_sparsity(w, s, 0.5)  # ratios 0.1, 0.4, 0.6, inf
      0.4000000059604645
    """
    check_number("sparsity", sparsity, ge=0, lt=1)
    ratios, leaves = [], []
    for _, w, s, sel in _pairs(params_sgd, scores, mask):
        if not sel:
            continue
        a = np.abs(np.asarray(w, np.float64)).ravel()
        sc = np.asarray(s, np.float64).ravel()
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(a == 0, 0.0, np.where(sc > 0, a / np.where(sc > 0, sc, 1.0), np.inf))
        ratios.append(r)
        leaves.append((w, s, r))
    r = np.sort(np.concatenate(ratios))
    k = int(round(float(sparsity) * r.size))
    if k == 0:
        return 0.0
    value = float(r[k - 1])
    if not np.isfinite(value):
        reachable = int(np.sum(np.isfinite(r)))
        raise ValueError(
            f"sparsity={sparsity} asks DP to zero {k} of {r.size} weights, but only {reachable} "
            f"({reachable / r.size:.2%}) are zero or have a positive score; DP never prunes the others"
        )
    # directional_prune zeroes w_j iff |w_j| <= lam * s_j computed in the leaf's dtype: raise lam
    # one unit in the last place (of that dtype) at a time until every weight with r_j <= value is
    # zeroed there too
    lam = value
    for w, s, rj in leaves:
        dtype = np.dtype(jnp.result_type(w.dtype, jnp.asarray(s).dtype))
        due = rj <= value
        if not due.any():
            continue
        a = np.abs(np.asarray(w).astype(dtype).ravel()[due])
        sc = np.asarray(s).astype(dtype).ravel()[due]
        lam_d = np.asarray(lam, dtype)
        for _ in range(64):  # one or two steps in practice
            if np.all((a == 0) | (a <= lam_d * sc)):  # a zero weight stays zero for any lam
                break
            lam_d = np.nextafter(lam_d, np.asarray(np.inf, dtype))
        lam = max(lam, float(lam_d))
    return lam


def grda_lambda(c: float, mu: float, learning_rate: float, steps: int) -> float:
    r"""The DP strength that gRDA's iterate corresponds to (the paper's theorem).

    .. math::

      \lambda_{\gamma,t} = c\sqrt{\gamma}\,t^{\mu}, \qquad t = n\gamma,

    which is gRDA's soft-threshold :math:`g(n, \gamma) = c\gamma^{1/2}(n\gamma)^\mu`
    after :math:`n` steps of constant learning rate :math:`\gamma`.

    Args:
      c: gRDA's :math:`c \ge 0`.
      mu: gRDA's :math:`\mu > 0` (the theorem needs :math:`0.5 < \mu < 1`).
      learning_rate: :math:`\gamma > 0`.
      steps: :math:`n \ge 0`.

    Returns:
      :math:`\lambda` as a float.

    Example:
      >>> import sparsejax as sj
      >>> round(sj.directional.grda_lambda(0.005, 0.51, 0.1, 1000), 6)
      0.016557

    References:
      Chao, Wang, Xing and Cheng, *Directional Pruning of Deep Neural
      Networks*, NeurIPS 2020 (Theorem: gRDA asymptotically solves DP).
    """
    check_number("c", c, ge=0)
    check_number("mu", mu, gt=0)
    check_number("learning_rate", learning_rate, gt=0)
    check_number("steps", steps, ge=0, integer=True)
    return float(c) * float(learning_rate) ** 0.5 * (float(steps) * float(learning_rate)) ** float(mu)
