"""The baselines of every study in the registry: SGD (dense) and gradual magnitude pruning."""

from __future__ import annotations

from typing import Any

import optax

from sparsejax import pruning
from sparsejax.train.methods._common import (
    NESTEROV,
    PATTERN,
    SPARSIFY,
    UNTILEABLE,
    base_sgd,
    pattern_mask,
    reads_state,
    weight_decay_hparam,
)
from sparsejax.train.registry import Context, HParam, MethodSpec, register


register(MethodSpec(
    name="sgd",
    summary="SGD with heavy-ball momentum: the dense baseline.",
    reference="Robbins and Monro (1951); the 'SGD' rows of every paper here",
    hparams=(
        NESTEROV,
        weight_decay_hparam(0.0, "library default: no regulariser, so that the baseline differs "
                                 "from the sparse methods only by their sparsity mechanism"),
    ),
    build=lambda ctx, hp: base_sgd(ctx, hp["weight_decay"], hp["nesterov"]),
    default_learning_rate=0.1,
    learning_rate_source="SFW study (Miao et al. ICLR 2022), Sec. 7.6: 'for both [SGD and "
                         "SFW], a learning rate of 0.1 is optimal'",
    default_momentum=0.9,
    momentum_source="the iRDA paper's SGD baseline is 'SGD with momentum' (Sec. 4.2, value not "
                    "given); 0.9 is the usual value, also the SFW study's (Sec. 7.6 table)",
    sparse=False,
))


def _build_gmp(ctx: Context, hp: dict[str, Any]) -> optax.GradientTransformation:
    if hp["end_fraction"] < hp["begin_fraction"]:
        raise ValueError(f"end_fraction ({hp['end_fraction']}) must be >= begin_fraction "
                         f"({hp['begin_fraction']})")
    begin = ctx.steps(hp["begin_fraction"] * ctx.epochs)
    end = max(begin, ctx.steps(hp["end_fraction"] * ctx.epochs))
    frequency = max(1, min(hp["frequency"], max(1, end - begin)))
    return pruning.gradual_pruning(
        base_sgd(ctx, hp["weight_decay"], hp["nesterov"]),
        final_sparsity=hp["final_sparsity"],
        begin_step=begin,
        end_step=end,
        frequency=frequency,
        initial_sparsity=hp["initial_sparsity"],
        power=hp["power"],
        scope=hp["scope"],
        mask=pattern_mask(hp),
        pattern=None if hp["pattern"] == "unstructured" else hp["pattern"],
        score=hp["score"],
        seed=hp["score_seed"],
    )


register(MethodSpec(
    name="gmp",
    summary="gradual magnitude pruning: momentum SGD whose smallest weights are masked "
            "along a cubic sparsity schedule (Zhu & Gupta).",
    reference="Zhu and Gupta, To prune, or not to prune, ICLR-W 2018 (arXiv:1710.01878), "
              "Sec. 3 and eq. (1)",
    hparams=(
        HParam("final_sparsity", 0.9, "the sparsity s_f reached at end_fraction of training",
               "library default: 90% (Zhu & Gupta report 50-95%)",
               ge=0, lt=1),
        HParam("initial_sparsity", 0.0, "the sparsity s_i of the first mask update",
               "Zhu & Gupta eq. (1): s_i = 0 when starting from a dense network", ge=0, lt=1),
        HParam("begin_fraction", 0.1, "fraction of training before the first mask update (t_0)",
               "library default: Zhu & Gupta start after some dense training",
               ge=0, le=1),
        HParam("end_fraction", 0.7, "fraction of training at the last mask update (t_0 + n dt)",
               "library default: Zhu & Gupta stop pruning before the learning rate has decayed",
               ge=0, le=1),
        HParam("frequency", 100, "steps between mask updates (dt)",
               "Zhu & Gupta Sec. 3: dt of 100 to 1000 steps", kind=int, ge=1),
        HParam("power", 3.0, "the exponent of the schedule", "Zhu & Gupta eq. (1): 3", gt=0),
        HParam("scope", "layerwise",
               "'layerwise' (every layer to s_t) or 'global' (one threshold for all layers)",
               "Zhu & Gupta prune each layer to the same sparsity", kind=("layerwise", "global")),
        HParam("score", "magnitude",
               "what is removed first: 'magnitude', 'saliency' (smallest |w*g|) or 'random' "
               "(a control)", "Zhu & Gupta: magnitude", kind=("magnitude", "saliency", "random")),
        HParam("score_seed", 0, "seed of score='random'", "library default", kind=int, ge=0),
        NESTEROV,
        weight_decay_hparam(0.0, "as the sgd baseline"),
        SPARSIFY,
        PATTERN,
        UNTILEABLE,
    ),
    build=_build_gmp,
    metrics=reads_state(target_sparsity="sparsity"),
    default_learning_rate=0.1,
    learning_rate_source="as the sgd baseline",
    default_momentum=0.9,
    momentum_source="as the sgd baseline",
))
