"""The Hessian's spectrum: Lanczos eigenpairs, stochastic Lanczos quadrature, Hutchinson's trace.

What PyHessian offers for PyTorch (top eigenvalues, trace, spectral density),
in JAX, on any parameter pytree and a :class:`~sparsejax.directional.DatasetLoss`
or a callable ``params -> scalar``:

* :func:`top_eigenpairs`: the largest (algebraic) eigenvalues and their
  eigenvectors by Lanczos with full re-orthogonalisation (:func:`lanczos`);
* :func:`exact_eigenpairs`: ``jnp.linalg.eigh`` of the full Hessian, for nets of
  up to a few thousand parameters (to validate the Lanczos path);
* :func:`spectral_density`: stochastic Lanczos quadrature (SLQ), smoothed by
  :func:`density_curve` and drawn by :func:`plot_spectrum`;
* :func:`hutchinson_trace`: Hutchinson's estimate of the trace.

All random vectors come from ``jax.random.key(seed)``: the same seed gives the
same result on the same machine.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax.directional.hessian import HessianOperator, Loss, check_finite
from sparsejax.tree import PyTree

__all__ = [
    "HessianEigen",
    "LanczosResult",
    "SpectralDensity",
    "TraceEstimate",
    "density_curve",
    "exact_eigenpairs",
    "hutchinson_trace",
    "lanczos",
    "plot_spectrum",
    "spectral_density",
    "top_eigenpairs",
]


class LanczosResult(NamedTuple):
    r"""What :func:`lanczos` returns: :math:`A Q^\top \approx Q^\top T`.

    Attributes:
      alphas: the diagonal of the tridiagonal :math:`T`, shape ``(m,)``.
      betas: its off-diagonal, shape ``(m - 1,)`` (0 where the Krylov space
        was exhausted and a fresh orthogonal vector was started).
      basis: :math:`Q`, ``(m, d)``, orthonormal rows.
      residual_norm: :math:`\beta_m`, the norm of the part of :math:`A q_m`
        outside the basis (bounds the Ritz residuals).
    """

    alphas: jax.Array
    betas: jax.Array
    basis: jax.Array
    residual_norm: jax.Array

    def tridiagonal(self) -> np.ndarray:
        """:math:`T` as a dense float64 numpy matrix."""
        a = np.asarray(self.alphas, np.float64)
        b = np.asarray(self.betas, np.float64)
        return np.diag(a) + np.diag(b, 1) + np.diag(b, -1)


class HessianEigen(NamedTuple):
    """Eigenpairs of a Hessian, largest eigenvalue first.

    Attributes:
      values: the eigenvalues, ``(k,)``, in decreasing order.
      vectors: the unit eigenvectors as a pytree like the params whose leaves
        have a leading axis ``k`` (``vectors[leaf][i]`` belongs to ``values[i]``).
      residuals: :math:`\\|H v_i - \\lambda_i v_i\\|` (Lanczos: the bound
        :math:`|\\beta_m s_{m,i}|` from the tridiagonal matrix, which leaves out
        rounding, about :math:`\\epsilon \\|H\\|`; exact path: computed).
    """

    values: jax.Array
    vectors: PyTree
    residuals: jax.Array

    def vector(self, i: int) -> PyTree:
        """The ``i``-th eigenvector as a pytree like the params."""
        return jax.tree.map(lambda x: x[i], self.vectors)


class SpectralDensity(NamedTuple):
    r"""Stochastic Lanczos quadrature of the spectral density (see :func:`spectral_density`).

    .. math::

      \phi(\lambda) \approx \sum_{l=1}^{n_v} \sum_{j=1}^{m} w_{lj}\,
      \delta(\lambda - \theta_{lj}), \qquad \sum_{l,j} w_{lj} = 1 .

    Attributes:
      nodes: the Ritz values :math:`\theta_{lj}`, ``(num_probes, num_steps)``.
      weights: :math:`w_{lj} = \tau_{lj}^2 / n_v` (the squared first
        components of the eigenvectors of each probe's :math:`T`, divided by
        the number of probes), same shape; they sum to 1.
      num_params: :math:`d`, the dimension of the Hessian.
    """

    nodes: np.ndarray
    weights: np.ndarray
    num_params: int

    def moment(self, order: int = 1) -> float:
        r""":math:`\sum_{l,j} w_{lj}\,\theta_{lj}^{\,p}`, an estimate of :math:`\operatorname{tr}(H^p)/d`."""
        return float(np.sum(self.weights * self.nodes.astype(np.float64) ** order))


class TraceEstimate(NamedTuple):
    """Hutchinson's trace estimate (see :func:`hutchinson_trace`).

    Attributes:
      trace: the mean of :math:`v^\\top H v` over the probes.
      standard_error: the sample standard deviation over :math:`\\sqrt{n}`.
      samples: each probe's :math:`v^\\top H v`.
    """

    trace: float
    standard_error: float
    samples: np.ndarray


# --- Lanczos ----------------------------------------------------------------------------------


def _orthogonalise(basis: jax.Array, w: jax.Array) -> jax.Array:
    """``w`` minus its projection on the rows of ``basis``, twice (classical Gram-Schmidt, DGKS)."""
    w = w - basis.T @ (basis @ w)
    return w - basis.T @ (basis @ w)


def _lanczos_step(apply: Callable, ops: Any, state: tuple, j: jax.Array) -> tuple:
    """Lanczos iteration ``j`` with full re-orthogonalisation against every basis vector.

    ``basis`` has ``m + 1`` rows, those after ``j`` still zero, so the
    re-orthogonalisation over all rows only sees the vectors built so far.
    When the new vector vanishes (the Krylov space is exhausted), a random
    vector orthogonal to the basis continues it and the off-diagonal is 0.
    """
    basis, alphas, betas, raw, scale, key = state
    q = basis[j]
    w = apply(ops, q)
    a = jnp.vdot(q, w)
    b_prev = jnp.where(j > 0, betas[jnp.maximum(j - 1, 0)], 0.0).astype(w.dtype)
    w = w - a * q - b_prev * basis[jnp.maximum(j - 1, 0)]
    w = _orthogonalise(basis, w)
    b = jnp.linalg.norm(w)
    scale = jnp.maximum(scale, jnp.abs(a) + b_prev + b)
    tol = jnp.finfo(w.dtype).eps ** 0.75 * scale
    restart = b <= tol

    def fresh() -> jax.Array:  # only computed on a restart: it costs two passes over the basis
        r = jax.random.normal(jax.random.fold_in(key, j), w.shape, w.dtype)
        r = _orthogonalise(basis, r)
        return r / jnp.maximum(jnp.linalg.norm(r), jnp.finfo(w.dtype).tiny)

    q_next = jax.lax.cond(restart, fresh, lambda: w / jnp.where(restart, 1.0, b))
    basis = jax.lax.dynamic_update_index_in_dim(basis, q_next, j + 1, 0)
    alphas = alphas.at[j].set(a)
    betas = betas.at[j].set(jnp.where(restart, 0.0, b))
    raw = raw.at[j].set(b)
    return basis, alphas, betas, raw, scale, key


def _run_lanczos(step: Callable, ops: Any, v0: jax.Array, num_steps: int, key: jax.Array
                 ) -> LanczosResult:
    d = v0.shape[0]
    dtype = v0.dtype
    norm = jnp.linalg.norm(v0)
    if not float(norm) > 0:
        raise ValueError("the starting vector is zero")
    basis = jnp.zeros((num_steps + 1, d), dtype).at[0].set(v0 / norm)
    zeros = jnp.zeros(num_steps, dtype)
    state = (basis, zeros, zeros, zeros, jnp.zeros([], dtype), key)
    for j in range(num_steps):
        state = step(ops, state, jnp.int32(j))
    basis, alphas, betas, raw, _, _ = state
    return LanczosResult(alphas, betas[: num_steps - 1], basis[:num_steps], raw[num_steps - 1])


def _step_of(op: HessianOperator) -> Callable:
    return op.program("lanczos_step", lambda apply: partial(_lanczos_step, apply))


def lanczos(matvec: Callable[[jax.Array], jax.Array], v0: jax.Array, num_steps: int, *,
            seed: int = 0) -> LanczosResult:
    r"""Lanczos tridiagonalisation of a symmetric operator, with full re-orthogonalisation.

    .. math::

      A q_j = \beta_{j-1} q_{j-1} + \alpha_j q_j + \beta_j q_{j+1}, \qquad
      q_0 = v_0 / \|v_0\|,

    with every new vector re-orthogonalised (twice, classical Gram-Schmidt)
    against all previous ones, so the basis stays orthonormal to rounding and
    no spurious copies of converged eigenvalues appear. The eigenvalues of
    :math:`T = Q A Q^\top` (Ritz values) approximate the extreme eigenvalues of
    :math:`A`. If the Krylov space is exhausted (:math:`\beta_j \le
    \epsilon^{3/4} \|T\|`), a random unit vector orthogonal to the basis
    (from ``seed``) continues it with :math:`\beta_j = 0`.

    Args:
      matvec: ``x -> A x`` on flat vectors of size :math:`d` (symmetric :math:`A`).
      v0: the starting vector, shape ``(d,)`` (its dtype is the computation's).
      num_steps: :math:`m \le d`, the size of :math:`T`.
      seed: seed of the restart vectors.

    Returns:
      A :class:`LanczosResult`.

    Raises:
      ValueError: if ``num_steps`` is not in ``[1, d]`` or ``v0`` is zero.

    Example:
      >>> import jax.numpy as jnp, numpy as np
      >>> import sparsejax as sj
      >>> a = jnp.diag(jnp.array([3.0, 2.0, 1.0, 0.0]))
      >>> r = sj.directional.lanczos(lambda x: a @ x, jnp.ones(4), 4)
      >>> np.round(np.linalg.eigvalsh(r.tridiagonal()), 4) + 0.0
      array([0., 1., 2., 3.])

    References:
      Lanczos, *An iteration method for the solution of the eigenvalue problem
      of linear differential and integral operators*, J. Res. Nat. Bur.
      Standards, 1950; Golub and Van Loan, *Matrix Computations*, 4th ed.,
      Sec. 10.1 (complete re-orthogonalisation).
    """
    v0 = jnp.asarray(v0)
    if v0.ndim != 1:
        raise ValueError(f"v0 must be a flat vector, got shape {v0.shape}")
    _check_steps(num_steps, v0.shape[0])
    step = jax.jit(partial(_lanczos_step, lambda ops, x: matvec(x)))
    return _run_lanczos(step, (), v0, int(num_steps), jax.random.key(seed))


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _check_steps(num_steps: Any, d: int) -> int:
    num_steps = _check_int("num_steps", num_steps, 1)
    if num_steps > d:
        raise ValueError(
            f"num_steps={num_steps} exceeds the number of parameters ({d}): Lanczos builds at most "
            "d orthonormal vectors"
        )
    return num_steps


def _ritz(result: LanczosResult) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending, float64) and eigenvectors of the tridiagonal matrix."""
    check_finite(np.concatenate([np.asarray(result.alphas), np.asarray(result.betas)]),
                 "the Lanczos coefficients (Hessian-vector products)")
    return np.linalg.eigh(result.tridiagonal())


def top_eigenpairs(loss: Loss, params: PyTree, k: int, *, num_steps: int | None = None,
                   seed: int = 0) -> HessianEigen:
    r"""The ``k`` largest eigenvalues of the Hessian and their eigenvectors, by Lanczos.

    Runs :func:`lanczos` with full re-orthogonalisation from a Gaussian
    vector (``seed``) for :math:`m` steps on :math:`H = \nabla^2 L(w)`, then
    returns the ``k`` largest Ritz pairs :math:`(\theta_i, Q^\top s_i)` of
    :math:`T = S \Theta S^\top`, with the residual bounds :math:`\|H y_i -
    \theta_i y_i\| = \beta_m |s_{m,i}|`. Each step is one Hessian-vector
    product over the whole loss (one compiled program); :math:`m` vectors of
    size :math:`d` are kept.

    Args:
      loss: a :class:`~sparsejax.directional.DatasetLoss` or a callable
        ``params -> scalar``.
      params: the point :math:`w` (any pytree of floating arrays).
      k: how many eigenpairs, :math:`1 \le k \le d`.
      num_steps: :math:`m`, with :math:`k \le m \le d` (default
        :math:`\min(d, 2k + 20)`). More steps converge more of the spectrum;
        check ``residuals``.
      seed: seed of the starting vector.

    Returns:
      A :class:`HessianEigen` with ``k`` pairs, largest eigenvalue first
      (algebraically: negative curvature comes last).

    Raises:
      ValueError: if ``k`` or ``num_steps`` is out of range (``k`` larger than
        the number of parameters included), or the loss or its Hessian-vector
        products are not finite.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> f = lambda p: 0.5 * jnp.sum(jnp.array([4.0, 3.0, 1.0, 0.5]) * p['w'] ** 2)
      >>> eig = sj.directional.top_eigenpairs(f, {'w': jnp.ones(4)}, k=2, num_steps=4)
      >>> eig.values.round(4)
      Array([4., 3.], dtype=float32)

    References:
      Ghorbani, Krishnan and Xiao, *An Investigation into Neural Net
      Optimization via Hessian Eigenvalue Density*, ICML 2019; Yao, Gholami,
      Keutzer and Mahoney, *PyHessian: Neural Networks Through the Lens of the
      Hessian*, IEEE BigData 2020.
    """
    op = HessianOperator(loss, params)
    d = op.size
    k = _check_int("k", k, 1)
    if k > d:
        raise ValueError(f"k={k} exceeds the number of parameters ({d})")
    m = min(d, 2 * k + 20) if num_steps is None else _check_steps(num_steps, d)
    if m < k:
        raise ValueError(f"num_steps={m} must be at least k={k}")
    op.check_finite_loss()
    key = jax.random.key(seed)
    v0 = jax.random.normal(jax.random.fold_in(key, 0), (d,), op.dtype)
    result = _run_lanczos(_step_of(op), op.operands, v0, m, jax.random.fold_in(key, 1))
    theta, s = _ritz(result)
    order = np.argsort(theta)[::-1][:k]
    ritz = jnp.asarray(s[:, order].T, op.dtype) @ result.basis
    residuals = np.abs(float(result.residual_norm) * s[-1, order])
    return HessianEigen(jnp.asarray(theta[order], op.dtype), jax.vmap(op.unravel)(ritz),
                        jnp.asarray(residuals, op.dtype))


def exact_eigenpairs(loss: Loss, params: PyTree, k: int | None = None, *,
                     max_params: int = 5000) -> HessianEigen:
    r"""Eigenpairs of the full Hessian by ``jnp.linalg.eigh``, for nets of a few thousand parameters.

    .. math::

      H = \nabla^2 L(w) = V \Lambda V^\top, \qquad
      \text{residual}_i = \|H v_i - \lambda_i v_i\|,

    with :math:`H` from :func:`~sparsejax.directional.exact_hessian`. The
    reference against which :func:`top_eigenpairs` is validated.

    Args:
      loss: a :class:`~sparsejax.directional.DatasetLoss` or a callable ``params -> scalar``.
      params: the point :math:`w`.
      k: keep the ``k`` largest (default: all :math:`d`).
      max_params: refuse larger nets.

    Returns:
      A :class:`HessianEigen`, largest eigenvalue first.

    Raises:
      ValueError: if ``k`` exceeds the number of parameters, the net has more
        than ``max_params`` parameters, or the loss or Hessian is not finite.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> f = lambda p: 0.5 * (2.0 * p['a'] ** 2 + p['b'] ** 2)
      >>> eig = sj.directional.exact_eigenpairs(f, {'a': jnp.array(1.0), 'b': jnp.array(1.0)})
      >>> eig.values, eig.vectors['a']
      (Array([2., 1.], dtype=float32), Array([1., 0.], dtype=float32))
    """
    from sparsejax.directional.hessian import exact_hessian

    op = HessianOperator(loss, params)
    d = op.size
    if k is not None:
        k = _check_int("k", k, 1)
        if k > d:
            raise ValueError(f"k={k} exceeds the number of parameters ({d})")
    h = exact_hessian(loss, params, max_params=max_params)
    values, vectors = jnp.linalg.eigh(h)
    values, vectors = values[::-1][: k or d], vectors[:, ::-1][:, : k or d]
    # eigh's sign is arbitrary: make the largest-magnitude entry of each vector positive
    pivot = jnp.take_along_axis(vectors, jnp.argmax(jnp.abs(vectors), axis=0)[None], axis=0)
    vectors = vectors * jnp.where(pivot < 0, -1.0, 1.0).astype(vectors.dtype)
    residuals = jnp.linalg.norm(h @ vectors - vectors * values[None, :], axis=0)
    return HessianEigen(values, jax.vmap(op.unravel)(vectors.T), residuals)


# --- stochastic Lanczos quadrature and Hutchinson -----------------------------------------------


def _probe(seed: int, index: int, d: int, dtype: Any) -> jax.Array:
    """Probe ``index``: a Rademacher vector (entries +-1) from ``(seed, index)``."""
    key = jax.random.fold_in(jax.random.key(seed), index)
    return jax.random.rademacher(key, (d,), dtype)


def spectral_density(loss: Loss, params: PyTree, *, num_probes: int = 1, num_steps: int = 80,
                     seed: int = 0) -> SpectralDensity:
    r"""The Hessian's spectral density by stochastic Lanczos quadrature (SLQ).

    For each probe :math:`l` a Rademacher vector :math:`v_l` (entries
    :math:`\pm 1`), :math:`m` steps of :func:`lanczos` from :math:`v_l /
    \sqrt d` give :math:`T_l = S_l \Theta_l S_l^\top`, and

    .. math::

      \phi(\lambda) = \frac1d \sum_{i=1}^d \delta(\lambda - \lambda_i)
      \approx \frac{1}{n_v} \sum_{l=1}^{n_v} \sum_{j=1}^{m} (S_l)_{1j}^2\,
      \delta(\lambda - (\Theta_l)_{jj}),

    the Gauss quadrature of :math:`v^\top f(H) v / d` for every :math:`f`. The
    weights sum to 1, and the first moment :math:`\sum w\theta` equals the
    Hutchinson estimate :math:`\frac{1}{n_v}\sum_l v_l^\top H v_l / d` of
    :math:`\operatorname{tr}(H)/d` with the same probes
    (:func:`hutchinson_trace` with the same ``seed``). Smooth it with
    :func:`density_curve`.

    Args:
      loss: a :class:`~sparsejax.directional.DatasetLoss` or a callable ``params -> scalar``.
      params: the point :math:`w`.
      num_probes: :math:`n_v \ge 1` (PyHessian's ``n_v``; the paper uses 1 to 10).
      num_steps: :math:`m`, Lanczos steps per probe (PyHessian's ``iter``;
        at most :math:`d`).
      seed: seed of the probes (and of restart vectors).

    Returns:
      A :class:`SpectralDensity`.

    Raises:
      ValueError: for arguments out of range or a loss or Hessian that is not finite.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> f = lambda p: 0.5 * jnp.sum(jnp.array([2.0, 2.0, 0.0, 0.0]) * p['w'] ** 2)
      >>> sd = sj.directional.spectral_density(f, {'w': jnp.ones(4)}, num_steps=4)
      >>> round(float(sd.weights.sum()), 6), round(sd.moment(1), 6)  # tr(H)/d = 1
      (1.0, 1.0)

    References:
      Ghorbani, Krishnan and Xiao, *An Investigation into Neural Net
      Optimization via Hessian Eigenvalue Density*, ICML 2019; Lin, Saad and
      Yang, *Approximating spectral densities of large matrices*, SIAM Review,
      2016; Golub and Meurant, *Matrices, Moments and Quadrature with
      Applications*, 2010.
    """
    op = HessianOperator(loss, params)
    d = op.size
    num_probes = _check_int("num_probes", num_probes, 1)
    m = _check_steps(num_steps, d)
    op.check_finite_loss()
    step = _step_of(op)
    nodes, weights = [], []
    for l in range(num_probes):
        v = _probe(seed, l, d, op.dtype)
        key = jax.random.fold_in(jax.random.key(seed), 1_000_003 + l)
        theta, s = _ritz(_run_lanczos(step, op.operands, v, m, key))
        nodes.append(theta)
        weights.append(s[0] ** 2 / num_probes)
    return SpectralDensity(np.stack(nodes), np.stack(weights), d)


def hutchinson_trace(loss: Loss, params: PyTree, *, num_probes: int = 100,
                     seed: int = 0) -> TraceEstimate:
    r"""Hutchinson's estimate of the Hessian's trace.

    .. math::

      \operatorname{tr}(H) = \mathbb E_v[v^\top H v] \approx \frac{1}{n}\sum_{l=1}^n v_l^\top H v_l,
      \qquad v_l \in \{-1, +1\}^d \text{ uniform},

    with variance :math:`2\sum_{i \ne j} H_{ij}^2 / n`. The probes are those of
    :func:`spectral_density` with the same ``seed``.

    Args:
      loss: a :class:`~sparsejax.directional.DatasetLoss` or a callable ``params -> scalar``.
      params: the point :math:`w`.
      num_probes: :math:`n \ge 1` (PyHessian's ``maxIter``, default 100).
      seed: seed of the probes.

    Returns:
      A :class:`TraceEstimate` (estimate, standard error, samples).

    Raises:
      ValueError: for ``num_probes < 1`` or a loss or Hessian that is not finite.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> f = lambda p: 0.5 * jnp.sum(jnp.array([3.0, 1.0]) * p['w'] ** 2)
      >>> sj.directional.hutchinson_trace(f, {'w': jnp.ones(2)}, num_probes=4).trace  # diagonal: exact
      4.0

    References:
      Hutchinson, *A stochastic estimator of the trace of the influence matrix
      for Laplacian smoothing splines*, Commun. Stat. Simul. Comput., 1990;
      Avron and Toledo, *Randomized algorithms for estimating the trace of an
      implicit symmetric positive semi-definite matrix*, J. ACM, 2011.
    """
    op = HessianOperator(loss, params)
    num_probes = _check_int("num_probes", num_probes, 1)
    op.check_finite_loss()
    quad = op.program("quadratic", lambda apply: lambda ops, v: jnp.vdot(v, apply(ops, v)))
    samples = np.asarray([float(quad(op.operands, _probe(seed, l, op.size, op.dtype)))
                          for l in range(num_probes)])
    check_finite(samples, "the probes' v^T H v")
    se = float(samples.std(ddof=1) / math.sqrt(num_probes)) if num_probes > 1 else float("nan")
    return TraceEstimate(float(samples.mean()), se, samples)


def density_curve(density: SpectralDensity, grid: Any = None, *, num_points: int = 2000,
                  sigma: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    r"""The SLQ density smoothed by a Gaussian kernel, on a grid.

    .. math::

      \hat\phi(x) = \sum_{l,j} w_{lj}\,\frac{1}{\sigma\sqrt{2\pi}}
      \exp\Big(-\frac{(x - \theta_{lj})^2}{2\sigma^2}\Big),

    a probability density (it integrates to 1 over the real line).

    Args:
      density: a :class:`SpectralDensity`.
      grid: where to evaluate (default: ``num_points`` points from the smallest
        to the largest node, widened by :math:`10\sigma` on each side, which
        holds all but :math:`10^{-20}` of the mass).
      num_points: points of the default grid.
      sigma: the kernel width (default: 1/200 of the nodes' range, or
        :math:`10^{-3}` if all nodes coincide; the default grid spacing is
        then :math:`\sigma/9`).

    Returns:
      ``(grid, values)``, float64 numpy arrays.

    Example:
      >>> import numpy as np
      >>> import sparsejax as sj
      >>> sd = sj.directional.SpectralDensity(np.array([[0.0, 1.0]]), np.array([[0.5, 0.5]]), 2)
      >>> x, y = sj.directional.density_curve(sd)
      >>> round(float(np.trapezoid(y, x)), 6)
      1.0
    """
    nodes = np.asarray(density.nodes, np.float64).ravel()
    weights = np.asarray(density.weights, np.float64).ravel()
    lo, hi = float(nodes.min()), float(nodes.max())
    if sigma is None:
        sigma = (hi - lo) / 200.0 if hi > lo else 1e-3
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    if grid is None:
        grid = np.linspace(lo - 10 * sigma, hi + 10 * sigma, _check_int("num_points", num_points, 2))
    grid = np.asarray(grid, np.float64)
    z = (grid[:, None] - nodes[None, :]) / sigma
    values = (np.exp(-0.5 * z**2) @ weights) / (sigma * math.sqrt(2.0 * math.pi))
    return grid, values


def plot_spectrum(density: SpectralDensity, eigenvalues: Any = None, *, path: str | os.PathLike | None = None,
                  ax: Any = None, sigma: float | None = None, title: str | None = None) -> Any:
    """Plots the smoothed SLQ density (log scale) with the top eigenvalues marked.

    Matplotlib is imported when called (the ``plots`` extra), no ``pyplot``
    (:mod:`sparsejax.plotting`).

    Args:
      density: a :class:`SpectralDensity`.
      eigenvalues: optional eigenvalues to mark (e.g. ``top_eigenpairs(...).values``).
      path: save the figure as a PNG here.
      ax: a matplotlib axes to draw on (default: a new figure).
      sigma: the kernel width of :func:`density_curve`.
      title: the axes title.

    Returns:
      The matplotlib figure.

    Example:
      >>> import numpy as np
      >>> import sparsejax as sj
      >>> sd = sj.directional.SpectralDensity(np.array([[0.0, 1.0]]), np.array([[0.9, 0.1]]), 2)
      >>> fig = sj.directional.plot_spectrum(sd, eigenvalues=[1.0])
      >>> fig.axes[0].get_yscale()
      'log'
    """
    from sparsejax.plotting import figure_and_axes, save_png

    fig, ax = figure_and_axes(ax, (5.5, 3.8))
    x, y = density_curve(density, sigma=sigma)
    ax.semilogy(x, np.maximum(y, 1e-12), color="C0", lw=1.2, label="SLQ density")
    if eigenvalues is not None:
        for i, lam in enumerate(np.asarray(eigenvalues, np.float64).ravel()):
            ax.axvline(lam, color="C3", lw=0.6, alpha=0.6, label="top eigenvalues" if i == 0 else None)
    ax.set_ylim(bottom=max(1e-8, float(np.max(y)) * 1e-9))
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density")
    ax.legend(loc="upper right", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    save_png(fig, path, 110)
    return fig
