r"""Directional pruning: the Hessian's flat directions, DP scores and solution, mode connectivity.

Chao, Wang, Xing and Cheng (*Directional Pruning of Deep Neural Networks*,
NeurIPS 2020) prune a trained network :math:`w^{SGD}` inside the flat valley
of the training loss. This package holds the pieces, as pure JAX on parameter
pytrees and a loss function (no Flax):

* Hessian-vector products (:func:`hvp`, forward-over-reverse), exact over a
  dataset (:class:`DatasetLoss`: batched, jitted once, exact over a padded last
  batch), and the full Hessian of small nets (:func:`exact_hessian`);
* the spectrum: :func:`top_eigenpairs` (Lanczos with full
  re-orthogonalisation, :func:`lanczos`), :func:`exact_eigenpairs`
  (``eigh``), :func:`spectral_density` (stochastic Lanczos quadrature),
  :func:`hutchinson_trace`, :func:`density_curve`, :func:`plot_spectrum`;
* the flat subspace :math:`\Pi_0 v = v - VV^\top v` (:func:`flat_projector`),
  the scores :math:`s_j = \operatorname{sign}(w_j)(\Pi_0
  \operatorname{sign}(w))_j` (:func:`dp_scores`) and the closed-form DP
  solution (:func:`directional_prune`), with :func:`grda_lambda` (the
  theorem's :math:`\lambda = c\sqrt\gamma\,t^\mu`) and
  :func:`lambda_for_sparsity`;
* mode connectivity: quadratic Bézier curves (:func:`bezier`), training the
  control point (:func:`train_control`), evaluation along paths and on the
  plane, and the plots. The data-parallel, resumable trainer for Flax models
  with BatchNorm is :mod:`sparsejax.train.connectivity`.

Example:
  >>> import jax.numpy as jnp
  >>> import sparsejax as sj
  >>> dp = sj.directional
  >>> loss = lambda p: 0.5 * (p['w'][0] + p['w'][1]) ** 2   # flat along (1, -1)
  >>> w = {'w': jnp.array([0.75, -0.5])}
  >>> proj = dp.flat_projector(dp.exact_eigenpairs(loss, w), tol=1e-6)
  >>> s = dp.dp_scores(w, proj)
  >>> s['w']
  Array([1., 1.], dtype=float32)
  >>> dp.directional_prune(w, s, 0.5)['w']  # the loss stays 0.5 * 0.25 ** 2
  Array([0.25, 0.  ], dtype=float32)
"""

from sparsejax.directional.curves import (
    ControlFit,
    PlaneBasis,
    bezier,
    bezier_coefficients,
    curve_objective,
    evaluate_path,
    evaluate_plane,
    init_control,
    line_point,
    plane_basis,
    plane_grid,
    plane_point,
    plot_path,
    plot_plane,
    train_control,
)
from sparsejax.directional.hessian import DatasetLoss, Loss, exact_hessian, hvp
from sparsejax.directional.scores import (
    FlatProjector,
    directional_prune,
    dp_scores,
    flat_projector,
    grda_lambda,
    lambda_for_sparsity,
)
from sparsejax.directional.spectrum import (
    HessianEigen,
    LanczosResult,
    SpectralDensity,
    TraceEstimate,
    density_curve,
    exact_eigenpairs,
    hutchinson_trace,
    lanczos,
    plot_spectrum,
    spectral_density,
    top_eigenpairs,
)

__all__ = [
    "ControlFit",
    "DatasetLoss",
    "FlatProjector",
    "HessianEigen",
    "LanczosResult",
    "Loss",
    "PlaneBasis",
    "SpectralDensity",
    "TraceEstimate",
    "bezier",
    "bezier_coefficients",
    "curve_objective",
    "density_curve",
    "directional_prune",
    "dp_scores",
    "evaluate_path",
    "evaluate_plane",
    "exact_eigenpairs",
    "exact_hessian",
    "flat_projector",
    "grda_lambda",
    "hutchinson_trace",
    "hvp",
    "init_control",
    "lambda_for_sparsity",
    "lanczos",
    "line_point",
    "plane_basis",
    "plane_grid",
    "plane_point",
    "plot_path",
    "plot_plane",
    "plot_spectrum",
    "spectral_density",
    "top_eigenpairs",
    "train_control",
]
