"""Proximal SGD in the registry: prox-SGD and sqrt(t)-prox-SGD, the iRDA paper's baselines."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import optax

import sparsejax as sj
from sparsejax.train.methods._common import NESTEROV, SPARSIFY, THRESHOLD, sparsify_mask
from sparsejax.train.registry import Context, HParam, MethodSpec, register


PROX_STEP = HParam(
    "step", "inverse_sqrt",
    "the SGD step: 'inverse_sqrt' = the iRDA paper's 1/(gamma*sqrt(t)) without momentum (the "
    "learning rate, its schedule and momentum are then unused); 'lr' = the trainer's learning "
    "rate, schedule and momentum (this library's variant, not the paper's baseline)",
    "iRDA paper Sec. 3.2 and eq. (17)-(18), (21)-(22): alpha_t = 1/(gamma*sqrt(t)), plain SGD",
    kind=("inverse_sqrt", "lr"),
)
PROX_LR_SOURCE = "used with step='lr' only; as the sgd baseline"
PROX_MOMENTUM_SOURCE = ("used with step='lr' only (this library's variant); as the sgd baseline, "
                        "applied before the threshold")


def takes_learning_rate(hp: Mapping[str, Any]) -> bool:
    """Whether the prox-SGD methods take the trainer's learning rate (and momentum): ``step='lr'``."""
    return hp["step"] == "lr"


# The methods of this module whose learning rate depends on their hyperparameters (read by
# sparsejax.train.methods.uses_learning_rate): with step='inverse_sqrt' they have none, as rda.
LEARNING_RATE_RULES: dict[str, Callable[[Mapping[str, Any]], bool]] = {
    "prox_sgd": takes_learning_rate,
    "sqrt_t_prox_sgd": takes_learning_rate,
}


def _prox_step(ctx: Context, hp: dict[str, Any]) -> tuple[Any, float | None]:
    """The SGD step and momentum of the prox-SGD methods, as ``hp['step']`` says."""
    if not takes_learning_rate(hp):
        return sj.inverse_sqrt(hp["gamma"]), None
    return ctx.learning_rate, ctx.momentum or None


def _build_prox_sgd(ctx: Context, hp: dict[str, Any]) -> optax.GradientTransformation:
    step, momentum = _prox_step(ctx, hp)
    return sj.prox_sgd(step, hp["l1"], momentum=momentum, nesterov=hp["nesterov"],
                       mask=sparsify_mask(hp))


def _build_sqrt_t_prox_sgd(ctx: Context, hp: dict[str, Any]) -> optax.GradientTransformation:
    step, momentum = _prox_step(ctx, hp)
    return sj.sqrt_t_prox_sgd(step, hp["gamma"], hp["l1"], momentum=momentum,
                              nesterov=hp["nesterov"], mask=sparsify_mask(hp))


register(MethodSpec(
    name="prox_sgd",
    summary="proximal SGD (FOBOS): an SGD step, then the soft threshold step*l1; by default the "
            "iRDA paper's baseline, step 1/(gamma*sqrt(t)) without momentum.",
    reference="Duchi and Singer, JMLR 2009; the prox-SGD baseline of the iRDA paper, "
              "eq. (17)-(18), Table 1",
    hparams=(
        HParam("l1", 1e-5, "the l1 coefficient lambda; the threshold is step*lambda",
               "iRDA paper Table 1 (prox-SGD row, CIFAR-10): lambda = 1e-5", ge=0),
        HParam("gamma", 0.8, "gamma of the step 1/(gamma*sqrt(t)) (step='inverse_sqrt')",
               "iRDA paper Table 1 (prox-SGD row, CIFAR-10): gamma = 0.8", gt=0),
        PROX_STEP,
        NESTEROV,
        SPARSIFY,
    ),
    build=_build_prox_sgd,
    metrics=THRESHOLD,
    default_learning_rate=0.1,
    learning_rate_source=PROX_LR_SOURCE,
    default_momentum=0.9,
    momentum_source=PROX_MOMENTUM_SOURCE,
))

register(MethodSpec(
    name="sqrt_t_prox_sgd",
    summary="sqrt(t)-proximal SGD: an SGD step, then RDA's growing threshold l1*sqrt(t)/gamma "
            "(a baseline that drives the weights to zero in the long run).",
    reference="iRDA paper eq. (21)-(22), Table 1 and Table 7",
    hparams=(
        HParam("gamma", 1.0, "gamma of beta_t = gamma*sqrt(t) (and of the step "
               "1/(gamma*sqrt(t)) with step='inverse_sqrt')",
               "iRDA paper Table 1 (sqrt(t)-prox-SGD row): gamma = 1.0", gt=0),
        HParam("l1", 1e-8, "the l1 coefficient lambda",
               "iRDA paper Table 1 (sqrt(t)-prox-SGD row): lambda = 1e-8", ge=0),
        PROX_STEP,
        NESTEROV,
        SPARSIFY,
    ),
    build=_build_sqrt_t_prox_sgd,
    metrics=THRESHOLD,
    default_learning_rate=0.1,
    learning_rate_source=PROX_LR_SOURCE,
    default_momentum=0.9,
    momentum_source=PROX_MOMENTUM_SOURCE,
))
