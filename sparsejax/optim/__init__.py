"""Optax transforms for sparse training, one module per family.

Dependency direction: ``prox`` and ``tree`` <- ``optim``. Nothing here imports
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
from sparsejax.optim.masking import FreezeZerosState, freeze_zeros
from sparsejax.optim.proximal import (
    SoftThresholdState,
    prox_sgd,
    soft_threshold,
    sqrt_t_prox_sgd,
)

__all__ = [
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
    "soft_threshold",
    "sqrt_t_prox_sgd",
]
