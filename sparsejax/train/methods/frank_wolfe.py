"""Stochastic Frank-Wolfe in the registry (Miao et al., ICLR 2022): ``sfw``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import optax

import sparsejax as sj
from sparsejax import constraints
from sparsejax.train.methods._common import SPARSIFY, sparsify_mask
from sparsejax.train.registry import Context, HParam, MethodSpec, register
from sparsejax.tree import PyTree


def _sfw_constraints(params: PyTree, hp: Mapping[str, Any],
                     sample_params: Callable[[int], PyTree] | None = None) -> PyTree:
    """SFW pruning's K-sparse polytopes (:func:`sparsejax.constraints.sfw_pruning_constraints`).

    The radii come from fresh initialisations when ``sample_params`` is given
    (the CLI passes the zoo model's initialiser), otherwise from ``params``
    alone (one draw). Every leaf is constrained with ``biases='constrained'``
    (the reference's choice); with ``'sgd'`` only the leaves ``sparsify``
    selects.
    """
    constrain_all = hp["biases"] == "constrained" or hp["sparsify"] == "all"
    if sample_params is None:
        sample, num_samples = (lambda seed: params), 1
    else:
        sample, num_samples = sample_params, hp["init_samples"]
    # optax.inject_hyperparams rebuilds the transform inside the jitted step: the radii are
    # numbers computed from concrete initialisations, so the fresh draws must run eagerly.
    with jax.ensure_compile_time_eval():
        return constraints.sfw_pruning_constraints(
            sample, value=hp["radius_scale"], k=hp["k"], k_frac=hp["k_frac"],
            mask=None if constrain_all else sparsify_mask(hp), num_samples=num_samples)


_PASS_SAMPLE_PARAMS = (
    "Pass sample_params (seed -> a fresh initialisation of the model, or `lambda seed: "
    "params` with the params before prepare_model for that one draw) to both prepare_model "
    "and make_optimizer: both then build the polytopes of diameter 2*tau*||W_init|| from the "
    "initialisation.")


def _check_inside(params: PyTree, cons: PyTree, hp: Mapping[str, Any], whose: str,
                  why: str) -> None:
    """Raises unless ``params`` lie in ``cons``, the polytopes sized from ``params`` themselves."""
    with jax.ensure_compile_time_eval():
        inside = bool(constraints.is_feasible(params, cons))
    if not inside:
        raise ValueError(f"sfw: {whose} lie outside the K-sparse polytopes sized from them "
                         f"(radius_scale={hp['radius_scale']:g}) and no sample_params was "
                         f"given: {why}. {_PASS_SAMPLE_PARAMS}")


def _build_sfw(ctx: Context, hp: dict[str, Any]) -> optax.GradientTransformation:
    cons = _sfw_constraints(ctx.params, hp, ctx.sample_params)
    if ctx.sample_params is None:  # e.g. params prepared with sample_params, then left out here
        _check_inside(ctx.params, cons, hp, "the params given to make_optimizer",
                      "params that prepare_model moved with sample_params need the same "
                      "sample_params here")
    rescale = None if hp["rescale"] == "none" else hp["rescale"]
    fw = sj.sfw(ctx.learning_rate, cons, momentum=ctx.momentum or 0.0, rescale=rescale)
    labels = constraints.partition_labels(cons, ctx.params)
    if all(label == "frank_wolfe" for label in jax.tree.leaves(labels)):
        return fw
    # biases='sgd' (ours): the leaves without a constraint (biases, normalisation scales) are
    # trained by momentum SGD at bias_lr_scale times the (scheduled) Frank-Wolfe learning rate.
    other = optax.sgd(ctx.learning_rate * hp["bias_lr_scale"], momentum=ctx.momentum or None)
    return optax.partition({"frank_wolfe": fw, "unconstrained": other}, labels)


def _sfw_prepare(model: Any, hp: dict[str, Any], seed: int,
                 sample_params: Callable[[int], PyTree] | None = None) -> None:
    """Moves the model's initial params into their K-sparse polytopes (usually a no-op).

    Without ``sample_params`` the radii come from the params themselves, and
    :func:`make_optimizer` would size its polytopes from the shrunk params
    (smaller ones, which the prepared params leave): a ``ValueError`` then,
    unless the params already lie inside (then nothing changes).
    """
    del seed
    from flax import nnx

    state = nnx.state(model, nnx.Param)
    pure = nnx.to_pure_dict(state)
    cons = _sfw_constraints(pure, hp, sample_params)
    if sample_params is None:
        _check_inside(pure, cons, hp, "the model's params",
                      "prepare_model would shrink them, and make_optimizer would size smaller "
                      "polytopes from the shrunk params")
    nnx.replace_by_pure_dict(state, constraints.make_feasible(pure, cons))
    nnx.update(model, state)


register(MethodSpec(
    name="sfw",
    summary="stochastic Frank-Wolfe with momentum and gradient rescaling inside K-sparse "
            "polytopes: pruning-friendly weights for one-shot, any-sparsity pruning.",
    reference="Miao et al., Learning Pruning-Friendly Networks via Frank-Wolfe: One-Shot, "
              "Any-Sparsity, and No Retraining, ICLR 2022 (hyperparameters: the SFW "
              "study's Sec. 7.5-7.6 table)",
    hparams=(
        HParam("k", 10, "the absolute floor of K: K = min(max(k, int(k_frac * n)), n) per "
                        "tensor of n entries",
               "SFW pruning code (train_prune.py): --k_sparseness 10", kind=int, ge=1),
        HParam("k_frac", 0.05, "K of each layer's K-sparse polytope, as a fraction of its "
                               "size", "SFW study Sec. 7.5-7.6: K = 5% of the weights", gt=0,
               le=1),
        HParam("radius_scale", 15.0,
               "tau: each polytope's L2 diameter is 2*tau*||W_init||",
               "SFW study Sec. 7.5-7.6: tau = 15 (read as a multiple of the init norm, as "
               "sparsejax.constraints.constraints_from_init does)", gt=0),
        HParam("rescale", "gradient",
               "step-size rescaling: 'gradient' (||m|| / ||w - v||), 'diameter' or 'none'",
               "SFW study Sec. 7.6: the learning rate is rescaled by the gradient norm",
               kind=("gradient", "diameter", "none")),
        HParam("biases", "constrained",
               "'constrained': every leaf (biases and normalisation parameters too) in its own "
               "K-sparse polytope; 'sgd' (ours): only the leaves sparsify selects, the rest by "
               "momentum SGD at bias_lr_scale times the learning rate",
               "SFW pruning code: create_k_sparse_constraints covers every parameter",
               kind=("constrained", "sgd")),
        HParam("bias_lr_scale", 0.1,
               "biases='sgd': the unconstrained leaves (biases, norms) train with momentum SGD "
               "at this times the Frank-Wolfe learning rate",
               "library default (an option of ours, not the reference's)", ge=0),
        HParam("init_samples", 5,
               "fresh initialisations averaged for the polytopes' radii (when the caller "
               "provides an initialiser, as the CLI does)",
               "the reference averages 100 re-initialisations per layer; 5 keep start-up cheap",
               kind=int, ge=1),
        SPARSIFY,
    ),
    build=_build_sfw,
    default_learning_rate=1.0,
    learning_rate_source="SFW study Sec. 7.6 table: initial learning rate alpha_0 = 1.0 "
                         "(with gradient rescaling; 0.1 was best on their small CNN)",
    default_momentum=0.9,
    momentum_source="SFW study Sec. 7.6 table: momentum rho = 0.9",
    prepare=_sfw_prepare,
))
