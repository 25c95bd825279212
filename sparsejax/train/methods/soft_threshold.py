"""Soft-threshold reparameterisation in the registry: LATS and its siblings (Chen et al. 2023)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optax

import sparsejax as sj
from sparsejax.optim.reparam import MOMENTUM, WEIGHT_DECAY
from sparsejax.optim.trainable_threshold import STR_S_INIT, STR_WEIGHT_DECAY
from sparsejax.train.methods._common import (
    NESTEROV,
    SPARSIFY,
    THRESHOLD,
    reads_state,
    sparsify_mask,
    weight_decay_hparam,
)
from sparsejax.train.registry import Context, HParam, MethodSpec, register


LATS_REF = "Chen et al., A Unified Framework for Soft Threshold Pruning, ICLR 2023"
REF_CODE = "the LATS reference code's ResNet-50/MobileNet-V1 configs (sparsejax.optim.reparam)"
LATS_LR_SOURCE = ("library default, the peak of a cosine schedule (the reference code: cosine lr "
                  "with a 5-epoch warm-up at batch 256)")


def _reparam_common(wd_default: float = WEIGHT_DECAY,
                    wd_source: str = REF_CODE + ": 2**-15") -> tuple[HParam, ...]:
    return (
        HParam("gradient", "ste",
               "gradient to the latent weights: 'ste' (straight through) or 'exact'",
               REF_CODE + ": straight through", kind=("ste", "exact")),
        NESTEROV,
        weight_decay_hparam(wd_default, wd_source),
        SPARSIFY,
    )


def _reparam_kwargs(ctx: Context, hp: dict[str, Any]) -> dict[str, Any]:
    return dict(momentum=ctx.momentum or None, weight_decay=hp["weight_decay"],
                nesterov=hp["nesterov"], gradient=hp["gradient"],
                mask=sparsify_mask(hp))


def _register_reparam(name: str, summary: str, hparams: tuple[HParam, ...],
                      build: Callable[[Context, dict[str, Any]], optax.GradientTransformation],
                      metrics: Callable | None = None, reference: str = LATS_REF,
                      common: tuple[HParam, ...] | None = None,
                      momentum_source: str = REF_CODE + ": 0.875, not Nesterov") -> None:
    register(MethodSpec(
        name=name, summary=summary, reference=reference,
        hparams=hparams + (common if common is not None else _reparam_common()),
        build=build,
        metrics=metrics or THRESHOLD,
        default_learning_rate=0.05, learning_rate_source=LATS_LR_SOURCE,
        default_momentum=MOMENTUM, momentum_source=momentum_source,
    ))


L1_LATS = HParam(
    "l1", 2.8e-3, "the l1 coefficient lambda: the threshold grows by lambda*lr per step",
    "library default (the paper's extract gives no value; configs set their own)", ge=0)
START = HParam("start_fraction", 0.0,
               "fraction of training before the threshold starts to grow (dense before)",
               "the paper's sparsify-during-training setting: from the start", ge=0, lt=1)
FINAL_D = HParam("final_threshold", 0.2, "the final threshold D, reached at the end of training",
                 "library default (the reference code sets it per run)", ge=0)

_register_reparam(
    "lats", "LATS: soft-threshold reparameterisation whose threshold grows by l1*lr each step "
            "(a time-invariant l1 objective, an implicit ISTA).",
    (L1_LATS, START),
    lambda ctx, hp: sj.lats(ctx.learning_rate, hp["l1"],
                            start_step=ctx.steps(hp["start_fraction"] * ctx.epochs),
                            **_reparam_kwargs(ctx, hp)),
)


def _span(ctx: Context, hp: dict[str, Any]) -> dict[str, int]:
    """``total_steps`` (the end of training) and ``start_step`` of a closed-form threshold."""
    start = ctx.steps(hp["start_fraction"] * ctx.epochs)
    return {"total_steps": max(start + 1, ctx.total_steps), "start_step": start}


_register_reparam(
    "slats", "S-LATS: LATS's threshold under a cosine learning rate in closed form, ending at D "
             "(use --schedule cosine).",
    (FINAL_D, START),
    lambda ctx, hp: sj.slats(ctx.learning_rate, hp["final_threshold"], **_span(ctx, hp),
                             **_reparam_kwargs(ctx, hp)),
)
_register_reparam(
    "lats_epochwise", "LATS for a cosine learning rate changing once per epoch, ending at D "
                      "(use --schedule cosine_epoch).",
    (FINAL_D,),
    lambda ctx, hp: sj.lats_epochwise(ctx.learning_rate, hp["final_threshold"], ctx.epochs,
                                      ctx.steps_per_epoch, **_reparam_kwargs(ctx, hp)),
)
_register_reparam(
    "pgh", "proximal gradient homotopy: an l1 coefficient changing by the factor beta over "
           "training under a cosine learning rate, threshold ending at D.",
    (FINAL_D, HParam("beta", 0.1, "factor by which the implied l1 coefficient changes "
                                  "(< 1: prune early, > 1: late)",
                     "library default: early pruning (the reference code sets it per run)", gt=0),
     START),
    lambda ctx, hp: sj.pgh(ctx.learning_rate, hp["final_threshold"], beta=hp["beta"],
                           **_span(ctx, hp), **_reparam_kwargs(ctx, hp)),
)
_register_reparam(
    "stds", "STDS: a threshold ramped to D along a sine (or a line), whatever the learning rate.",
    (FINAL_D, HParam("shape", "sine", "'sine' (STDS) or 'linear'",
                     "Chen et al., ICML 2022 (STDS): sine", kind=("sine", "linear")), START),
    lambda ctx, hp: sj.stds(ctx.learning_rate, hp["final_threshold"], shape=hp["shape"],
                            **_span(ctx, hp), **_reparam_kwargs(ctx, hp)),
    reference="Chen et al., State Transition of Dendritic Spines Improves Learning of Sparse "
              "Spiking Neural Networks, ICML 2022; " + LATS_REF,
)
_register_reparam(
    "fixed_threshold_reparam", "a constant threshold D; the latent weights start at "
                               "S_D^{-1}(w_0) so the model starts from its initial weights.",
    (HParam("threshold", 0.05, "the constant threshold D",
            "library default (the reference code's stmod without --gradual sets it per run)",
            ge=0),),
    lambda ctx, hp: sj.fixed_threshold_reparam(ctx.learning_rate, hp["threshold"],
                                               **_reparam_kwargs(ctx, hp)),
)
_register_reparam(
    "str", "STR: soft threshold reparameterisation with a trainable threshold per layer, "
           "d = sigmoid(s).",
    (HParam("s_init", STR_S_INIT, "initial threshold logit s of every layer",
            "STR's ResNet-50 configs (sInit_value = -3200)"),),
    lambda ctx, hp: sj.str_reparam(ctx.learning_rate, s_init=hp["s_init"],
                                   **_reparam_kwargs(ctx, hp)),
    metrics=THRESHOLD,
    reference="Kusupati et al., Soft Threshold Weight Reparameterization for Learnable "
              "Sparsity, ICML 2020",
    common=(
        HParam("gradient", "exact", "gradient to the latent weights: 'exact' or 'ste'",
               "STR: the exact derivative of the soft threshold", kind=("ste", "exact")),
        NESTEROV,
        weight_decay_hparam(STR_WEIGHT_DECAY,
            "STR's 90.23%-sparse ResNet-50 config (resnet50-str.yaml): 2.251757813e-05"),
        SPARSIFY,
    ),
    momentum_source="STR's ResNet-50 configs: 0.875",
)


_register_reparam(
    "lats_continuation", "LATS whose l1 coefficient grows geometrically until a target sparsity "
                         "is reached, then is held (homotopy continuation).",
    (HParam("target_sparsity", 0.9, "the sparsity of the thresholded leaves to reach",
            "library default: 90%", ge=0, lt=1),
     HParam("l1", 1.4e-3, "the starting l1 coefficient lambda_0",
            "library default: half of lats's l1", gt=0),
     HParam("interval_epochs", 1.0, "epochs between sparsity checks",
            "library default: one check per epoch", gt=0),
     HParam("growth", 2.0, "factor of lambda at each check below the target",
            "library default: doubling (the paper gives no value)", ge=1),
     START),
    lambda ctx, hp: sj.lats_continuation(
        ctx.learning_rate, hp["target_sparsity"], hp["l1"],
        ctx.steps(hp["interval_epochs"], minimum=1), hp["growth"],
        start_step=ctx.steps(hp["start_fraction"] * ctx.epochs), **_reparam_kwargs(ctx, hp)),
    metrics=reads_state(threshold="threshold", l1="l1"),
)
_register_reparam(
    "lats_prune_at_init", "a short LATS phase fixes the mask, then masked training of the "
                          "survivors (pruning at initialisation).",
    (HParam("l1", 1e-2, "the l1 coefficient of the thresholding phase (a short phase needs a "
                        "large one)",
            "library default: lambda * sum(lr) over one epoch at lr 0.05 gives a threshold of ~0.2",
            ge=0),
     HParam("prune_epochs", 1.0, "length of the thresholding phase, in epochs",
            "library default: one epoch", gt=0),
     HParam("rewind", False, "reset the survivors to their initial values when the mask is fixed",
            "library default: no rewinding (LATS's weights are kept)", kind=bool)),
    lambda ctx, hp: sj.lats_prune_at_init(
        ctx.learning_rate, hp["l1"], ctx.steps(hp["prune_epochs"], minimum=1),
        rewind=hp["rewind"], **_reparam_kwargs(ctx, hp)),
)
