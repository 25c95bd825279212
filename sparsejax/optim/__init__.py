"""Optax transforms for sparse training, one module per family.

Dependency direction: ``prox``, ``constraints`` and ``tree`` <- ``optim``. Nothing here imports
Flax, the trainer or the data code.
"""

from sparsejax.optim.continuation import ContinuationState, lats_continuation
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
    inverse_sqrt,
    sqrt_t_prox_sgd,
)
from sparsejax.optim.reparam import (
    SoftThresholdReparamState,
    fixed_threshold_reparam,
    lats,
    lats_epochwise,
    pgh,
    slats,
    soft_threshold_reparam,
    stds,
)
from sparsejax.optim.sgd import pytorch_sgd
from sparsejax.optim.threshold_rules import (
    ThresholdRule,
    fixed_threshold,
    increment_rule,
    lats_epochwise_threshold,
    lats_rule,
    pgh_threshold,
    schedule_rule,
    slats_threshold,
    stds_threshold,
)
from sparsejax.optim.trainable_threshold import StrReparamState, str_, str_reparam

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
    "inverse_sqrt",
    "prox_sgd",
    "rda",
    "apply_soft_threshold",
    "sqrt_t_prox_sgd",
    # soft-threshold reparameterisation (Chen et al., ICLR 2023)
    "ContinuationState",
    "SoftThresholdReparamState",
    "StrReparamState",
    "ThresholdRule",
    "fixed_threshold",
    "fixed_threshold_reparam",
    "increment_rule",
    "lats",
    "lats_continuation",
    "lats_epochwise",
    "lats_epochwise_threshold",
    "lats_rule",
    "pgh",
    "pgh_threshold",
    "schedule_rule",
    "slats",
    "slats_threshold",
    "soft_threshold_reparam",
    "stds",
    "stds_threshold",
    "str_",
    "str_reparam",
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
