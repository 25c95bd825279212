"""Dual averaging in the registry: gRDA, RDA and iRDA (:mod:`sparsejax.optim.dual_averaging`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

import sparsejax as sj
from sparsejax.train.methods._common import SPARSIFY, THRESHOLD, scalar, sparsify_mask, state_value
from sparsejax.train.registry import Context, ExtraMetrics, HParam, MethodSpec, register
from sparsejax.tree import PyTree


register(MethodSpec(
    name="grda",
    summary="generalized regularized dual averaging: SGD's dual average seen through a "
            "soft threshold c*sqrt(lr)*(n*lr)^mu that grows with the step (directional pruning).",
    reference="Chao, Wang, Xing and Cheng, Directional Pruning of Deep Neural Networks, "
              "NeurIPS 2020 (gRDA, Algorithm and Theory)",
    hparams=(
        HParam("c", 0.005, "threshold strength c: larger c, sparser network",
               "the paper's range 1e-4 to 5e-3 on CIFAR/ImageNet (upper end)", ge=0),
        HParam("mu", 0.51, "threshold growth exponent mu (theory: 0.5 < mu < 1)",
               "the paper: mu in (0.5, 1), 0.51 to 0.7 used; 0.51 its main choice", gt=0),
        SPARSIFY,
    ),
    build=lambda ctx, hp: sj.grda(ctx.learning_rate, c=hp["c"], mu=hp["mu"],
                                  mask=sparsify_mask(hp)),
    metrics=THRESHOLD,
    default_learning_rate=0.1,
    learning_rate_source="as the sgd baseline (the paper's extract gives none)",
    default_momentum=None,
))


def _irda_prepare(model: Any, hp: dict[str, Any], seed: int,
                  sample_params: Callable[[int], PyTree] | None = None) -> None:
    """Re-initialises the model's kernels with :func:`sparsejax.init.irda_uniform` (in place)."""
    del sample_params
    scale = hp["init_scale"]
    if not scale:
        return
    from flax import nnx

    state = nnx.state(model, nnx.Param)
    pure = nnx.to_pure_dict(state)
    selected = (sj.tree.weights_only(pure) if hp["sparsify"] == "weights"
                else jax.tree.map(lambda x: jnp.ndim(x) > 1, pure))
    init = sj.init.irda_uniform(scale)
    leaves, treedef = jax.tree.flatten(pure)
    flags = treedef.flatten_up_to(selected)
    keys = jax.random.split(jax.random.key(seed), max(len(leaves), 1))
    new = [init(k, x.shape, x.dtype) if s and jnp.ndim(x) > 1 else x
           for k, x, s in zip(keys, leaves, flags)]
    nnx.replace_by_pure_dict(state, jax.tree.unflatten(treedef, new))
    nnx.update(model, state)


def _rda_metrics(hp: dict[str, Any]) -> ExtraMetrics:
    gamma, l1 = float(hp["gamma"]), float(hp["l1"])

    def extra(opt_state: PyTree, params: PyTree) -> dict[str, jax.Array]:
        del params
        t = jnp.maximum(scalar(state_value(opt_state, "RDAState").count), 1.0)
        # the last update (the t-th) used tau = l1 * sqrt(t) / gamma and step 1/(gamma sqrt t)
        return {"threshold": l1 * jnp.sqrt(t) / gamma, "step_size": 1.0 / (gamma * jnp.sqrt(t))}

    return extra


RDA_HPARAMS = (
    HParam("gamma", 1.0, "gamma of beta_t = gamma*sqrt(t): the step is 1/(gamma*sqrt(t))",
           "iRDA paper Tables 1, 2, 4 (CIFAR-10, ResNet-18/VGG): gamma = 1.0 "
           "(0.1 on MNIST and ImageNet, Table 3)", gt=0),
    HParam("l1", 1e-6, "the l1 coefficient lambda; the threshold is lambda*sqrt(t)/gamma",
           "iRDA paper Tables 1, 2, 4 (CIFAR-10): lambda = 1e-6", ge=0),
    HParam("center", "zero", "w_0: 'zero' (Xiao's RDA, iRDA) or 'init' (the initial weights)",
           "iRDA paper Algorithm 1: w_0 = 0, w_1 random", kind=("zero", "init")),
)

register(MethodSpec(
    name="rda",
    summary="l1-regularized dual averaging: "
            "w = S_{lambda sqrt(t)/gamma}(w_0 - sum g/(gamma sqrt t)).",
    reference="Xiao, Dual averaging methods for regularized stochastic learning, JMLR 2010; "
              "iRDA paper eq. (19)-(20)",
    hparams=RDA_HPARAMS + (
        HParam("init_scale", 0.0,
               "re-initialise the kernels with iRDA's uniform init of scale s (0: keep the "
               "model's own initialiser)", "Xiao's RDA: the model's own init",
               ge=0),
        SPARSIFY,
    ),
    build=lambda ctx, hp: sj.rda(hp["gamma"], hp["l1"], center=hp["center"],
                                 mask=sparsify_mask(hp)),
    metrics=_rda_metrics,
    default_learning_rate=None,
    default_momentum=None,
    prepare=_irda_prepare,
))


def _build_irda(ctx: Context, hp: dict[str, Any]) -> optax.GradientTransformation:
    retrain = ctx.steps(hp["retrain_fraction"] * ctx.epochs)
    return sj.irda(hp["gamma"], hp["l1"], retrain_step=retrain, center=hp["center"],
                   mask=sparsify_mask(hp))


register(MethodSpec(
    name="irda",
    summary="iterative RDA: RDA from iRDA's re-scaled init, then retraining of the "
            "non-zero weights only (zeros frozen).",
    reference="iRDA Method for Sparse Convolutional Neural Networks (ICLR submission), "
              "Algorithm 1, Sec. 3.5-3.6",
    hparams=RDA_HPARAMS + (
        HParam("retrain_fraction", 0.5,
               "fraction of training after which step 2 (retraining with zeros frozen) starts",
               "library default: Algorithm 1 runs step 1 for T steps, then step 2; the "
               "extract does not give T", ge=0, le=1),
        HParam("init_scale", 10.0,
               "scale s of iRDA's uniform init (std sqrt(s^2/fan_in)) applied to the kernels "
               "before training (0: keep the model's initialiser)",
               "iRDA paper Sec. 3.5 and Table 5: s = 10 (s in {5, 10, 100} work, s <= 2 fails)",
               ge=0),
        SPARSIFY,
    ),
    build=_build_irda,
    metrics=_rda_metrics,
    default_learning_rate=None,
    default_momentum=None,
    prepare=_irda_prepare,
))
