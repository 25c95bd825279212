"""sparsejax: sparse training and pruning for JAX, as composable Optax transforms.

>>> import sparsejax as sj
>>> tx = sj.grda(learning_rate=0.1, c=0.005, mu=0.51)

The transforms live flat under ``sparsejax`` (defined in :mod:`sparsejax.optim`);
pure proximal operators in :mod:`sparsejax.prox`; Frank-Wolfe constraint sets
(linear minimisation oracles) in :mod:`sparsejax.constraints`; leaf naming and selection in
:mod:`sparsejax.tree`; exact selection of the k smallest or largest entries without a sort
in :mod:`sparsejax.select`; initialisers in :mod:`sparsejax.init`.
"""

from sparsejax import constraints, directional, init, patterns, pruning, prox, select, tree
from sparsejax.optim import (
    ContinuationState,
    DualAveragingState,
    FreezeZerosState,
    RDAState,
    SoftThresholdReparamState,
    SoftThresholdState,
    dual_averaging,
    fixed_threshold_reparam,
    freeze_zeros,
    grda,
    irda,
    lats,
    lats_continuation,
    lats_epochwise,
    inverse_sqrt,
    pgh,
    prox_sgd,
    pytorch_sgd,
    rda,
    slats,
    apply_soft_threshold,
    soft_threshold_reparam,
    sqrt_t_prox_sgd,
    stds,
    str_,
    str_reparam,
    StrReparamState,
    FrankWolfeState,
    SAGAFWState,
    SFWInitResult,
    SVRFState,
    frank_wolfe_step_size,
    one_shot_fw,
    saga_fw,
    sfw,
    sfw_init,
    svrf,
    LossAdaptiveState,
    loss_adaptive_learning_rate,
)
from sparsejax.pruning import PruneAtInitState, lats_prune_at_init
from sparsejax.summary import LeafSparsity, format_sparsity, sparsity, sparsity_summary

__version__ = "0.1.0"

__all__ = [
    "ContinuationState",
    "DualAveragingState",
    "FrankWolfeState",
    "FreezeZerosState",
    "LeafSparsity",
    "LossAdaptiveState",
    "PruneAtInitState",
    "RDAState",
    "SAGAFWState",
    "SFWInitResult",
    "SVRFState",
    "SoftThresholdReparamState",
    "SoftThresholdState",
    "StrReparamState",
    "constraints",
    "directional",
    "dual_averaging",
    "fixed_threshold_reparam",
    "format_sparsity",
    "frank_wolfe_step_size",
    "freeze_zeros",
    "grda",
    "init",
    "irda",
    "lats",
    "lats_continuation",
    "lats_epochwise",
    "lats_prune_at_init",
    "loss_adaptive_learning_rate",
    "one_shot_fw",
    "patterns",
    "pgh",
    "prox",
    "pytorch_sgd",
    "inverse_sqrt",
    "prox_sgd",
    "pruning",
    "rda",
    "saga_fw",
    "select",
    "sfw",
    "sfw_init",
    "slats",
    "apply_soft_threshold",
    "soft_threshold_reparam",
    "sparsity",
    "sparsity_summary",
    "sqrt_t_prox_sgd",
    "stds",
    "str_",
    "str_reparam",
    "svrf",
    "tree",
]
