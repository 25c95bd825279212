"""Optax transforms for sparse training, one module per family.

Dependency direction: ``prox``, ``constraints`` and ``tree`` <- ``optim``. Nothing here imports
Flax, the trainer or the data code.
"""

from sparsejax.optim.dual_averaging import (
    DualAveragingState,
    RDAState,
    dual_averaging,
    grda,
    irda,
    rda,
)
from sparsejax.optim.frank_wolfe import (
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
)
from sparsejax.optim.loss_adaptive import LossAdaptiveState, loss_adaptive_learning_rate
from sparsejax.optim.masking import FreezeZerosState, freeze_zeros
from sparsejax.optim.proximal import (
    SoftThresholdState,
    prox_sgd,
    apply_soft_threshold,
    sqrt_t_prox_sgd,
)
from sparsejax.optim.reparam import (
    ContinuationState,
    PruneAtInitState,
    SoftThresholdReparamState,
    fixed_threshold_reparam,
    lats,
    lats_continuation,
    lats_epochwise,
    lats_prune_at_init,
    pgh,
    slats,
    soft_threshold_reparam,
    stds,
    str_,
)
from sparsejax.optim.sgd import pytorch_sgd
from sparsejax.optim.threshold_schedules import (
    lats_epochwise_threshold,
    pgh_threshold,
    slats_threshold,
    stds_threshold,
)

__all__ = [
    "pytorch_sgd",
    "DualAveragingState",
    "FreezeZerosState",
    "RDAState",
    "SoftThresholdState",
    "dual_averaging",
    "freeze_zeros",
    "grda",
    "irda",
    "prox_sgd",
    "rda",
    "apply_soft_threshold",
    "sqrt_t_prox_sgd",
    # soft-threshold reparameterisation (Chen et al., ICLR 2023)
    "ContinuationState",
    "PruneAtInitState",
    "SoftThresholdReparamState",
    "fixed_threshold_reparam",
    "lats",
    "lats_continuation",
    "lats_epochwise",
    "lats_epochwise_threshold",
    "lats_prune_at_init",
    "pgh",
    "pgh_threshold",
    "slats",
    "slats_threshold",
    "soft_threshold_reparam",
    "stds",
    "stds_threshold",
    "str_",
    # stochastic Frank-Wolfe (Miao et al., ICLR 2022) and its variance-reduced variants
    "FrankWolfeState",
    "SAGAFWState",
    "SFWInitResult",
    "SVRFState",
    "frank_wolfe_step_size",
    "one_shot_fw",
    "saga_fw",
    "sfw",
    "sfw_init",
    "svrf",
    "LossAdaptiveState",
    "loss_adaptive_learning_rate",
]
