"""sparsejax: sparse training and pruning for JAX, as composable Optax transforms.

>>> import sparsejax as sj
>>> tx = sj.grda(learning_rate=0.1, c=0.005, mu=0.51)

The transforms live flat under ``sparsejax`` (defined in :mod:`sparsejax.optim`);
pure proximal operators in :mod:`sparsejax.prox`; leaf naming and selection in
:mod:`sparsejax.tree`; initialisers in :mod:`sparsejax.init`.
"""

from sparsejax import init, prox, tree
from sparsejax.optim import (
    DualAveragingState,
    FreezeZerosState,
    RDAState,
    SoftThresholdState,
    dual_averaging,
    freeze_zeros,
    grda,
    irda,
    prox_sgd,
    rda,
    soft_threshold,
    sqrt_t_prox_sgd,
)
from sparsejax.summary import LeafSparsity, format_sparsity, sparsity, sparsity_summary

__version__ = "0.1.0"

__all__ = [
    "DualAveragingState",
    "FreezeZerosState",
    "LeafSparsity",
    "RDAState",
    "SoftThresholdState",
    "dual_averaging",
    "format_sparsity",
    "freeze_zeros",
    "grda",
    "init",
    "irda",
    "prox",
    "prox_sgd",
    "rda",
    "soft_threshold",
    "sparsity",
    "sparsity_summary",
    "sqrt_t_prox_sgd",
    "tree",
]
