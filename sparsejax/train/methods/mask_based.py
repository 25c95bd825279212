"""Mask-based sparse training in the registry: static masks, SET, RigL and STE
(:mod:`sparsejax.pruning.dynamic`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
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


def _pattern(hp: Mapping[str, Any]) -> str | None:
    return None if hp["pattern"] == "unstructured" else hp["pattern"]


def _dst_hparams(anneal_default: str, anneal_source: str, distribution_source: str) -> tuple[HParam, ...]:
    return (
        HParam("sparsity", 0.9, "the sparsity of the sparsified weights, from the first step "
               "(prepare_model zeroes the weights outside the initial mask)",
               "library default: 90% (RigL reports 80% and 90%)", ge=0, lt=1),
        HParam("distribution", "erk", "per-layer densities: 'erk' or 'uniform'",
               distribution_source, kind=("erk", "uniform")),
        HParam("update_freq", 100, "steps between mask updates (Delta T)",
               "RigL paper Sec. 4.1: Delta T = 100", kind=int, ge=1),
        HParam("drop_fraction", 0.3, "fraction alpha of each layer's active weights dropped and "
               "regrown at an update", "RigL paper Sec. 4.1: alpha = 0.3", ge=0, le=1),
        HParam("end_fraction", 0.75, "fraction of training after which the mask is fixed (T_end)",
               "RigL paper Sec. 4.1: T_end = 75% of training", gt=0, le=1),
        HParam("anneal", anneal_default, "drop-fraction decay: 'cosine' or 'constant'",
               anneal_source, kind=("cosine", "constant")),
        HParam("mask_seed", 0, "seed of the random initial mask (and of SET's growth)",
               "library default", kind=int, ge=0),
        PATTERN,
        UNTILEABLE,
        NESTEROV,
        weight_decay_hparam(0.0, "as the sgd baseline"),
        SPARSIFY,
    )


def _build_static(ctx: Context, hp: dict[str, Any]) -> optax.GradientTransformation:
    return pruning.static_sparse(
        base_sgd(ctx, hp["weight_decay"], hp["nesterov"]), hp["sparsity"],
        distribution=hp["distribution"], pattern=_pattern(hp), seed=hp["mask_seed"],
        mask=pattern_mask(hp),
    )


def _apply_initial_support(model: Any, hp: dict[str, Any], seed: int,
                           sample_params: Callable[[int], Any] | None = None) -> None:
    """Zeroes the model's weights outside the initial random mask (in place).

    Static, SET and RigL draw their initial support in ``init`` from the params' shapes and
    ``mask_seed`` only, so the support drawn here is the one the optimizer will hold: the first
    forward pass is then the sparse network's (as in the reference, whose forward uses
    ``mask * w`` from step 0), not the dense one.
    """
    del seed, sample_params
    from flax import nnx

    state = nnx.state(model, nnx.Param)
    pure = nnx.to_pure_dict(state)
    # the same draw as the transforms' init (SET and RigL share static_sparse's initial mask)
    support = pruning.static_sparse(
        optax.identity(), hp["sparsity"], distribution=hp["distribution"],
        pattern=_pattern(hp), seed=hp["mask_seed"], mask=pattern_mask(hp),
    ).init(pure).support
    nnx.replace_by_pure_dict(state, pruning.apply_support(pure, support))
    nnx.update(model, state)


def _dst_end(ctx: Context, hp: Mapping[str, Any]) -> int:
    return max(1, ctx.steps(hp["end_fraction"] * ctx.epochs))


def _dst_due(ctx: Context, hp: Mapping[str, Any]) -> Callable[[int], bool]:
    return functools.partial(pruning.dst_update_due, update_freq=hp["update_freq"],
                             end_step=_dst_end(ctx, hp))


def _dst_builder(factory: Callable[..., Any]) -> Callable[[Context, dict[str, Any]], Any]:
    def build(ctx: Context, hp: dict[str, Any]) -> optax.GradientTransformation:
        return factory(
            base_sgd(ctx, hp["weight_decay"], hp["nesterov"]), hp["sparsity"],
            end_step=_dst_end(ctx, hp),
            update_freq=hp["update_freq"], drop_fraction=hp["drop_fraction"],
            anneal=hp["anneal"], distribution=hp["distribution"], pattern=_pattern(hp),
            seed=hp["mask_seed"], mask=pattern_mask(hp),
        )

    return build


register(MethodSpec(
    name="static",
    summary="static sparse training: a fixed random mask (ERK densities) from the start.",
    reference="Evci et al., Rigging the Lottery, ICML 2020 (the 'Static' baseline, Sec. 4)",
    hparams=(
        HParam("sparsity", 0.9, "the sparsity of the sparsified weights",
               "library default: 90% (RigL reports 80% and 90%)", ge=0, lt=1),
        HParam("distribution", "erk", "per-layer densities: 'erk' or 'uniform'",
               "RigL paper Sec. 3: ERK for the static and dynamic methods", kind=("erk", "uniform")),
        HParam("mask_seed", 0, "seed of the random mask", "library default", kind=int, ge=0),
        PATTERN,
        UNTILEABLE,
        NESTEROV,
        weight_decay_hparam(0.0, "as the sgd baseline"),
        SPARSIFY,
    ),
    build=_build_static,
    prepare=_apply_initial_support,
    default_learning_rate=0.1,
    learning_rate_source="as the sgd baseline",
    default_momentum=0.9,
    momentum_source="as the sgd baseline",
))

register(MethodSpec(
    name="set",
    summary="SET: every Delta T steps drop the smallest active weights and regrow as many "
            "at random (momentum SGD inside).",
    reference="Mocanu et al., Nature Communications 9:2383 (2018); run as in RigL's experiments",
    hparams=_dst_hparams("cosine", "RigL paper Sec. 4.1: the dynamic methods share RigL's update "
                         "schedule (Mocanu et al. drop a constant 0.3 per epoch: anneal=constant)",
                         "RigL paper Sec. 4.1 (SET with ERK)"),
    build=_dst_builder(pruning.set_),
    prepare=_apply_initial_support,
    mask_update_due=_dst_due,
    default_learning_rate=0.1,
    learning_rate_source="as the sgd baseline",
    default_momentum=0.9,
    momentum_source="as the sgd baseline",
))

register(MethodSpec(
    name="rigl",
    summary="RigL: every Delta T steps drop the smallest active weights and grow where the "
            "dense gradient is largest; cosine-decayed drop fraction (momentum SGD inside).",
    reference="Evci, Gale, Menick, Castro and Elsen, Rigging the Lottery: Making All Tickets "
              "Winners, ICML 2020 (Algorithm 1, Sec. 4.1)",
    hparams=_dst_hparams("cosine", "RigL paper Sec. 3: cosine decay of the drop fraction",
                         "RigL paper Sec. 4.1: ERK"),
    build=_dst_builder(pruning.rigl),
    prepare=_apply_initial_support,
    mask_update_due=_dst_due,
    default_learning_rate=0.1,
    learning_rate_source="as the sgd baseline",
    default_momentum=0.9,
    momentum_source="as the sgd baseline",
))


def _ste_begin(ctx: Context, hp: Mapping[str, Any]) -> int:
    return ctx.steps(hp["begin_fraction"] * ctx.epochs)


def _ste_due(ctx: Context, hp: Mapping[str, Any]) -> Callable[[int], bool]:
    return functools.partial(pruning.ste_update_due, begin_step=_ste_begin(ctx, hp),
                             frequency=hp["frequency"])


def _build_ste(ctx: Context, hp: dict[str, Any]) -> optax.GradientTransformation:
    if hp["end_fraction"] < hp["begin_fraction"]:
        raise ValueError(f"end_fraction ({hp['end_fraction']}) must be >= begin_fraction "
                         f"({hp['begin_fraction']})")
    begin = _ste_begin(ctx, hp)
    end = max(begin, ctx.steps(hp["end_fraction"] * ctx.epochs))
    return pruning.ste_pruning(
        base_sgd(ctx, hp["weight_decay"], hp["nesterov"]),
        final_sparsity=hp["final_sparsity"], begin_step=begin, end_step=end,
        frequency=hp["frequency"], power=hp["power"], sr_ste_decay=hp["sr_ste_decay"],
        scope=hp["scope"], pattern=_pattern(hp), mask=pattern_mask(hp),
    )


register(MethodSpec(
    name="ste",
    summary="magnitude pruning with the straight-through estimator: the forward pass sees the "
            "masked weights, the dense weights get its gradient (optional SR-STE decay).",
    reference="Bengio et al. 2013 (STE); Zhou et al., ICLR 2021 (SR-STE); Zhu & Gupta 2018 "
              "(schedule)",
    hparams=(
        HParam("final_sparsity", 0.9, "the sparsity s_f reached at end_fraction of training "
               "(1 - N/M with an N:M pattern)", "as gmp", ge=0, lt=1),
        HParam("begin_fraction", 0.0, "fraction of training before the mask starts",
               "library default: STE masks from the start", ge=0, le=1),
        HParam("end_fraction", 0.7, "fraction of training at which s_f is reached", "as gmp",
               ge=0, le=1),
        HParam("frequency", 1, "steps between mask recomputations",
               "library default: every step (jaxpruner's STE)", kind=int, ge=1),
        HParam("power", 3.0, "the exponent of the schedule", "Zhu & Gupta eq. (1): 3", gt=0),
        HParam("sr_ste_decay", 0.0, "SR-STE's decay lambda_W of the masked-out weights "
               "(0: plain STE)", "SR-STE (Zhou et al. 2021) uses 2e-4", ge=0),
        HParam("scope", "layerwise", "'layerwise' or 'global'", "as gmp",
               kind=("layerwise", "global")),
        PATTERN,
        UNTILEABLE,
        NESTEROV,
        weight_decay_hparam(0.0, "as the sgd baseline"),
        SPARSIFY,
    ),
    build=_build_ste,
    metrics=reads_state(target_sparsity="sparsity"),
    mask_update_due=_ste_due,
    default_learning_rate=0.1,
    learning_rate_source="as the sgd baseline",
    default_momentum=0.9,
    momentum_source="as the sgd baseline",
))
