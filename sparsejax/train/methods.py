r"""The registry of training methods used by the trainer and the ``sparsejax`` command line.

Every method of the library is registered here under a short name (``sgd``,
``gmp``, ``grda``, ``rda``, ``irda``, ``prox_sgd``, ``lats``, ...) with its
hyperparameters: a default taken from the paper (each with a ``source`` saying
where the value comes from), the accepted range and a help string.
:func:`make_optimizer` turns a name and a (partial) dict of hyperparameters
into an Optax transform and an ``extra_metrics`` callable for
:func:`sparsejax.train.fit` (the method's current threshold, where it has
one).

Conventions shared by all methods:

* **Learning rate.** One base learning rate and one schedule for every method
  (:func:`sparsejax.train.schedules.make_schedule`: ``constant``, ``cosine``, ``cosine_epoch``,
  ``step``, each with an optional linear warm-up). The transform is wrapped in
  :func:`optax.inject_hyperparams` with the learning rate as its only injected
  hyperparameter, so the trainer reads the current value from
  ``opt_state.hyperparams['learning_rate']``. ``rda`` and ``irda`` have no
  learning rate: their step is :math:`1/(\gamma\sqrt t)`, set by ``gamma``.
  ``prox_sgd`` and ``sqrt_t_prox_sgd`` take the same step by default
  (``step='inverse_sqrt'``, the iRDA paper's baselines, no momentum) and the
  learning rate and momentum only with ``step='lr'`` (this library's variant).
* **Momentum.** ``momentum=None`` picks each method's own default (the
  paper's); a number overrides it for the methods that have momentum and is
  ignored by those that have none (``grda``, ``rda``, ``irda``: dual averaging
  has no momentum buffer), so that one ``--momentum`` can be given to a
  comparison of several methods.
* **Which leaves are sparsified.** Every sparse method has the hyperparameter
  ``sparsify``: ``'weights'`` (the default: conv and dense kernels,
  :func:`sparsejax.tree.weights_only`) or ``'all'`` (biases and normalisation
  scales too, as gRDA's reference implementation does).
* **Preparing the model.** A method may need its own initialisation: iRDA's
  re-scaled uniform init (:func:`sparsejax.init.irda_uniform`, paper
  Section 3.5). :func:`prepare_model` applies it to a freshly built model
  *before* the optimizer is initialised and training starts (the command line
  calls it right after :func:`sparsejax.models.create`); it is deterministic in
  the seed, so a resumed run rebuilds the same initial model.

Example:
  >>> import jax.numpy as jnp
  >>> from sparsejax.train import methods
  >>> params = {'dense': {'kernel': jnp.ones((3, 2)), 'bias': jnp.zeros(2)}}
  >>> tx, extra = methods.make_optimizer('grda', {'c': 0.01}, learning_rate=0.1, momentum=None,
  ...                                    steps_per_epoch=10, epochs=2, params=params)
  >>> state = tx.init(params)
  >>> sorted(extra(state, params))
  ['threshold']
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

import sparsejax as sj
from sparsejax import constraints, pruning
from sparsejax._validation import check_number
from sparsejax.optim.reparam import MOMENTUM, WEIGHT_DECAY
from sparsejax.optim.sgd import pytorch_sgd
from sparsejax.optim.trainable_threshold import STR_S_INIT, STR_WEIGHT_DECAY
from sparsejax.patterns import check_pattern_shape, parse_pattern
from sparsejax.train.registry import (
    METHODS,
    Context,
    ExtraMetrics,
    HParam,
    MethodSpec,
    available_methods,
    describe,
    get_method,
    register,
    resolve_hparams,
)
from sparsejax.train.schedules import make_schedule
from sparsejax.tree import PyTree

__all__ = [
    "METHODS",
    "Context",
    "HParam",
    "MethodSpec",
    "available_methods",
    "describe",
    "get_method",
    "make_optimizer",
    "mask_update_schedule",
    "prepare_model",
    "resolve_hparams",
]

# --- helpers for builders and metrics ---------------------------------------------------------


def _mask(hp: Mapping[str, Any]) -> Any:
    """The ``mask`` of a transform from the ``sparsify`` hyperparameter."""
    return sj.tree.weights_only if hp["sparsify"] == "weights" else None


def _state_value(opt_state: PyTree, key: str) -> Any:
    """The field ``key`` of the (nested) optimizer state, by :func:`optax.tree_utils.tree_get`."""
    value = optax.tree_utils.tree_get(opt_state, key)
    if value is None:
        raise ValueError(f"no {key!r} in the optimizer state")
    return value


def _scalar(x: Any) -> jax.Array:
    """A float32 scalar: the value itself, or the mean of a per-leaf pytree of values."""
    leaves = [jnp.asarray(v, jnp.float32) for v in jax.tree.leaves(x)]
    return leaves[0] if len(leaves) == 1 else jnp.mean(jnp.stack(leaves))


def _sgd(ctx: Context, weight_decay: float, nesterov: bool) -> optax.GradientTransformation:
    """PyTorch's SGD (coupled weight decay, heavy-ball or Nesterov momentum)."""
    return pytorch_sgd(ctx.learning_rate, ctx.momentum or None, nesterov, weight_decay)


SPARSIFY = HParam(
    "sparsify", "weights",
    "which leaves are sparsified: 'weights' (conv and dense kernels) or 'all' "
    "(biases and normalisation scales too)",
    "the pruning literature's usual choice (kernels only); gRDA's reference code thresholds all",
    kind=("weights", "all"),
)
PATTERNS = ("unstructured", "1:2", "2:4", "1:4", "4:8", "2:8", "1:8", "1x4", "4x1", "2x2", "4x4",
            "8x8", "channel", "channel:l1")
PATTERN = HParam(
    "pattern", "unstructured",
    "sparsity pattern of the masks: 'unstructured', N:M along the input axis (e.g. '2:4'), "
    "RxC blocks (e.g. '4x4') or 'channel' / 'channel:l1' (whole output units)",
    "library default (unstructured, as in the papers)", kind=PATTERNS,
)
UNTILEABLE = HParam(
    "untileable", "error",
    "selected kernels the pattern cannot tile (an N:M input dimension not divisible by M, a "
    "block that does not divide the kernel): 'error' (a ValueError naming the leaf) or 'dense' "
    "(left out of the mask and trained dense, as NVIDIA's ASP leaves such layers)",
    "library default: a pattern is never silently weaker than asked", kind=("error", "dense"),
)


def _pattern_mask(hp: Mapping[str, Any]) -> Any:
    """The ``mask`` of a pattern method: :func:`_mask`, narrowed with ``untileable='dense'``
    to the selected leaves that ``pattern`` tiles (``sparsejax.patterns.check_pattern_shape``)."""
    base = _mask(hp)
    if hp["untileable"] == "error" or hp["pattern"] == "unstructured":
        return base
    structure = parse_pattern(hp["pattern"])

    def tiles(leaf: Any) -> bool:
        try:
            check_pattern_shape(structure, tuple(jnp.shape(leaf)))
        except ValueError:
            return False
        return True

    def select(params: PyTree) -> PyTree:
        flags = sj.tree.resolve_mask(base, params)
        return jax.tree.map(lambda f, x: bool(f) and tiles(x), flags, params)

    return select


NESTEROV = HParam("nesterov", False, "Nesterov momentum", "the papers use heavy-ball momentum",
                  kind=bool)


def _wd(default: float, source: str) -> HParam:
    return HParam("weight_decay", default, "coupled L2 weight decay (added to the gradient)",
                  source, ge=0)


def _reads(**fields: str) -> Callable[[dict], ExtraMetrics]:
    """Metrics that report state fields: ``_reads(threshold='threshold')`` logs each step's
    ``threshold`` field of the optimizer state (the mean, when it is held per leaf)."""

    def metrics(hp: dict[str, Any]) -> ExtraMetrics:
        del hp

        def extra(opt_state: PyTree, params: PyTree) -> dict[str, jax.Array]:
            del params
            return {name: _scalar(_state_value(opt_state, key)) for name, key in fields.items()}

        return extra

    return metrics


THRESHOLD = _reads(threshold="threshold")


# --- the baselines: SGD and gradual magnitude pruning -----------------------------------------

register(MethodSpec(
    name="sgd",
    summary="SGD with heavy-ball momentum: the dense baseline.",
    reference="Robbins and Monro (1951); the 'SGD' rows of every paper here",
    hparams=(
        NESTEROV,
        _wd(0.0, "library default: no regulariser, so that the baseline differs from the sparse "
                 "methods only by their sparsity mechanism"),
    ),
    build=lambda ctx, hp: _sgd(ctx, hp["weight_decay"], hp["nesterov"]),
    default_learning_rate=0.1,
    learning_rate_source="SFW study (Miao et al. ICLR 2022), Sec. 7.6: 'for both [SGD and "
                         "SFW], a learning rate of 0.1 is optimal'",
    default_momentum=0.9,
    momentum_source="the iRDA paper's SGD baseline is 'SGD with momentum' (Sec. 4.2, value not "
                    "given); 0.9 is the usual value, also the SFW study's (Sec. 7.6 table)",
    sparse=False,
))


def _build_gmp(ctx: Context, hp: dict[str, Any]) -> optax.GradientTransformation:
    begin = ctx.steps(hp["begin_fraction"] * ctx.epochs)
    end = max(begin, ctx.steps(hp["end_fraction"] * ctx.epochs))
    frequency = max(1, min(hp["frequency"], max(1, end - begin)))
    return pruning.gradual_pruning(
        _sgd(ctx, hp["weight_decay"], hp["nesterov"]),
        final_sparsity=hp["final_sparsity"],
        begin_step=begin,
        end_step=end,
        frequency=frequency,
        initial_sparsity=hp["initial_sparsity"],
        power=hp["power"],
        scope=hp["scope"],
        mask=_pattern_mask(hp),
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
        _wd(0.0, "as the sgd baseline"),
        SPARSIFY,
        PATTERN,
        UNTILEABLE,
    ),
    build=_build_gmp,
    metrics=_reads(target_sparsity="sparsity"),
    default_learning_rate=0.1,
    learning_rate_source="as the sgd baseline",
    default_momentum=0.9,
    momentum_source="as the sgd baseline",
))


# --- dual averaging: gRDA, RDA, iRDA ---------------------------------------------------------

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
    build=lambda ctx, hp: sj.grda(ctx.learning_rate, c=hp["c"], mu=hp["mu"], mask=_mask(hp)),
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
        t = jnp.maximum(_scalar(_state_value(opt_state, "RDAState").count), 1.0)
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
    build=lambda ctx, hp: sj.rda(hp["gamma"], hp["l1"], center=hp["center"], mask=_mask(hp)),
    metrics=_rda_metrics,
    default_learning_rate=None,
    default_momentum=None,
    prepare=_irda_prepare,
))


def _build_irda(ctx: Context, hp: dict[str, Any]) -> optax.GradientTransformation:
    retrain = ctx.steps(hp["retrain_fraction"] * ctx.epochs)
    return sj.irda(hp["gamma"], hp["l1"], retrain_step=retrain, center=hp["center"],
                   mask=_mask(hp))


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


# --- proximal SGD -------------------------------------------------------------------------------

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


def _prox_step(ctx: Context, hp: dict[str, Any]) -> tuple[Any, float | None]:
    """The SGD step and momentum of the prox-SGD methods, as ``hp['step']`` says."""
    if hp["step"] == "inverse_sqrt":
        return sj.inverse_sqrt(hp["gamma"]), None
    return ctx.learning_rate, ctx.momentum or None


def _build_prox_sgd(ctx: Context, hp: dict[str, Any]) -> optax.GradientTransformation:
    step, momentum = _prox_step(ctx, hp)
    return sj.prox_sgd(step, hp["l1"], momentum=momentum, nesterov=hp["nesterov"],
                       mask=_mask(hp))


def _build_sqrt_t_prox_sgd(ctx: Context, hp: dict[str, Any]) -> optax.GradientTransformation:
    step, momentum = _prox_step(ctx, hp)
    return sj.sqrt_t_prox_sgd(step, hp["gamma"], hp["l1"], momentum=momentum,
                              nesterov=hp["nesterov"], mask=_mask(hp))


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


# --- soft-threshold reparameterisation (Chen et al., ICLR 2023) -------------------------------

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
        _wd(wd_default, wd_source),
        SPARSIFY,
    )


def _reparam_kwargs(ctx: Context, hp: dict[str, Any]) -> dict[str, Any]:
    return dict(momentum=ctx.momentum or None, weight_decay=hp["weight_decay"],
                nesterov=hp["nesterov"], gradient=hp["gradient"],
                mask=_mask(hp))


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
        _wd(STR_WEIGHT_DECAY,
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
    metrics=_reads(threshold="threshold", l1="l1"),
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


# --- sfw: stochastic Frank-Wolfe (Miao et al., ICLR 2022) -------------------------------------


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
            mask=None if constrain_all else _mask(hp), num_samples=num_samples)


def _build_sfw(ctx: Context, hp: dict[str, Any]) -> optax.GradientTransformation:
    cons = _sfw_constraints(ctx.params, hp, ctx.sample_params)
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
    """Moves the model's initial params into their K-sparse polytopes (usually a no-op)."""
    del seed
    from flax import nnx

    state = nnx.state(model, nnx.Param)
    pure = nnx.to_pure_dict(state)
    cons = _sfw_constraints(pure, hp, sample_params)
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


# --- mask-based sparse training: static masks, SET, RigL, STE (sparsejax.pruning.dynamic) -----

def _pattern(hp: Mapping[str, Any]) -> str | None:
    return None if hp["pattern"] == "unstructured" else hp["pattern"]


def _dst_hparams(anneal_default: str, anneal_source: str, distribution_source: str) -> tuple[HParam, ...]:
    return (
        HParam("sparsity", 0.9, "the sparsity of the sparsified weights, from the first step",
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
        _wd(0.0, "as the sgd baseline"),
        SPARSIFY,
    )


def _build_static(ctx: Context, hp: dict[str, Any]) -> optax.GradientTransformation:
    return pruning.static_sparse(
        _sgd(ctx, hp["weight_decay"], hp["nesterov"]), hp["sparsity"],
        distribution=hp["distribution"], pattern=_pattern(hp), seed=hp["mask_seed"],
        mask=_pattern_mask(hp),
    )


def _dst_end(ctx: Context, hp: Mapping[str, Any]) -> int:
    return max(1, ctx.steps(hp["end_fraction"] * ctx.epochs))


def _dst_due(ctx: Context, hp: Mapping[str, Any]) -> Callable[[int], bool]:
    return functools.partial(pruning.dst_update_due, update_freq=hp["update_freq"],
                             end_step=_dst_end(ctx, hp))


def _dst_builder(factory: Callable[..., Any]) -> Callable[[Context, dict[str, Any]], Any]:
    def build(ctx: Context, hp: dict[str, Any]) -> optax.GradientTransformation:
        return factory(
            _sgd(ctx, hp["weight_decay"], hp["nesterov"]), hp["sparsity"],
            end_step=_dst_end(ctx, hp),
            update_freq=hp["update_freq"], drop_fraction=hp["drop_fraction"],
            anneal=hp["anneal"], distribution=hp["distribution"], pattern=_pattern(hp),
            seed=hp["mask_seed"], mask=_pattern_mask(hp),
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
        _wd(0.0, "as the sgd baseline"),
        SPARSIFY,
    ),
    build=_build_static,
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
    begin = _ste_begin(ctx, hp)
    end = max(begin, ctx.steps(hp["end_fraction"] * ctx.epochs))
    return pruning.ste_pruning(
        _sgd(ctx, hp["weight_decay"], hp["nesterov"]),
        final_sparsity=hp["final_sparsity"], begin_step=begin, end_step=end,
        frequency=hp["frequency"], power=hp["power"], sr_ste_decay=hp["sr_ste_decay"],
        scope=hp["scope"], pattern=_pattern(hp), mask=_pattern_mask(hp),
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
        _wd(0.0, "as the sgd baseline"),
        SPARSIFY,
    ),
    build=_build_ste,
    metrics=_reads(target_sparsity="sparsity"),
    mask_update_due=_ste_due,
    default_learning_rate=0.1,
    learning_rate_source="as the sgd baseline",
    default_momentum=0.9,
    momentum_source="as the sgd baseline",
))


# --- the public entry points ------------------------------------------------------------------


def prepare_model(method: str, model: Any, hparams: Mapping[str, Any] | None = None, *,
                  seed: int = 0, sample_params: Callable[[int], PyTree] | None = None) -> None:
    """Applies a method's own initialisation to a freshly built model, in place.

    ``irda`` (and ``rda`` with ``init_scale > 0``): the conv and dense
    kernels are re-drawn from :func:`sparsejax.init.irda_uniform` with scale
    ``init_scale`` (iRDA paper, Section 3.5), from ``seed``. ``sfw``: the
    params are moved into their K-sparse polytopes (built as
    :func:`make_optimizer` builds them, from ``sample_params``). Call it
    before the optimizer is initialised; it is deterministic, so a resumed
    run rebuilds the same initial model.

    Args:
      method: a registered method name.
      model: a Flax NNX model (changed in place).
      hparams: the method's hyperparameters (defaults filled in).
      seed: seed of the re-initialisation.
      sample_params: ``seed -> params``, fresh initialisations of the model
        (``sfw``; the same as given to :func:`make_optimizer`).

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from sparsejax.train.methods import prepare_model
      >>> layer = nnx.Linear(100, 4, rngs=nnx.Rngs(0))
      >>> prepare_model('irda', layer, {'init_scale': 10.0})
      >>> bool(jnp.abs(layer.kernel[...]).max() > 1.0)  # bound 10*sqrt(3/100) = 1.73
      True
    """
    spec = get_method(method)
    if spec.prepare is not None:
        spec.prepare(model, resolve_hparams(method, hparams), seed, sample_params)


def mask_update_schedule(method: str, hparams: Mapping[str, Any] | None, *,
                         steps_per_epoch: int, epochs: int) -> Callable[[int], bool] | None:
    """The host-side rule of the steps at which a method updates its mask, or ``None``.

    For :func:`sparsejax.train.fit`'s ``mask_update_due``: ``rigl`` and
    ``set`` (:func:`sparsejax.pruning.dst_update_due` with the run's
    ``update_freq`` and ``T_end``) and ``ste``
    (:func:`sparsejax.pruning.ste_update_due`); ``None`` for the other
    methods. With it the trainer compiles an ordinary step without the
    selection and a mask-update step; the computation does not change (up
    to rounding in the last bit: the programs are compiled separately).

    Args:
      method: one of :func:`available_methods`.
      hparams: the method's hyperparameters (as for :func:`make_optimizer`).
      steps_per_epoch: training steps per epoch.
      epochs: number of epochs.

    Returns:
      ``step -> bool`` for the 0-based step, or ``None``.

    Example:
      >>> from sparsejax.train.methods import mask_update_schedule
      >>> due = mask_update_schedule('rigl', {'update_freq': 10}, steps_per_epoch=20, epochs=2)
      >>> [s for s in range(40) if due(s)]  # 1-based steps 10, 20 (< T_end = 75% of 40)
      [9, 19]
      >>> mask_update_schedule('sgd', {}, steps_per_epoch=20, epochs=2) is None
      True
    """
    spec = get_method(method)
    if spec.mask_update_due is None:
        return None
    check_number("steps_per_epoch", steps_per_epoch, ge=1, integer=True)
    check_number("epochs", epochs, ge=1, integer=True)
    ctx = Context(learning_rate=None, momentum=None, steps_per_epoch=int(steps_per_epoch),
                  epochs=int(epochs), params=None)
    return spec.mask_update_due(ctx, resolve_hparams(method, hparams))


def make_optimizer(
    method: str,
    hparams: Mapping[str, Any] | None,
    *,
    learning_rate: float | None,
    momentum: float | None,
    steps_per_epoch: int,
    epochs: int,
    params: PyTree,
    schedule: str = "constant",
    warmup_steps: int = 0,
    decay_at: Sequence[float] = (0.5, 0.75),
    decay_factor: float = 0.1,
    sample_params: Callable[[int], PyTree] | None = None,
) -> tuple[optax.GradientTransformation, ExtraMetrics | None]:
    """Builds the Optax transform of a registered method and its ``extra_metrics``.

    Args:
      method: one of :func:`available_methods`.
      hparams: the method's hyperparameters to change from their defaults
        (numbers or command-line strings; see :func:`resolve_hparams`).
      learning_rate: the base learning rate (``None``: the method's default);
        ignored by methods without one (``rda``, ``irda``).
      momentum: in ``[0, 1)``; ``None``: the method's default. Ignored by
        methods without momentum (``grda``, ``rda``, ``irda``).
      steps_per_epoch: training steps per epoch (the schedules and the
        step-based hyperparameters, given in epochs or fractions of training,
        are converted with it).
      epochs: number of epochs.
      params: the params the transform will be initialised with (pure dict).
      schedule: the learning-rate schedule, one of
        :data:`sparsejax.train.schedules.SCHEDULES`.
      warmup_steps: linear warm-up steps of the schedule.
      decay_at: ``step`` schedule: fractions of training where the learning
        rate is multiplied by ``decay_factor``.
      decay_factor: ``step`` schedule: the factor.
      sample_params: ``seed -> params``, fresh initialisations of the model
        (``sfw`` sizes its polytopes from their mean norms; pass the same to
        :func:`prepare_model`); ``None``: ``params`` is the only draw.

    Returns:
      ``(optimizer, extra_metrics)``: the transform (wrapped in
      :func:`optax.inject_hyperparams` with ``learning_rate`` injected, for the
      methods that have one; update it as ``optimizer.update(grads, state,
      params)``) and ``extra_metrics(opt_state, params) -> {name: float32
      scalar}`` (the current threshold and the like; jit-compatible) or
      ``None`` for methods without one.

    Raises:
      ValueError: for an unknown method or hyperparameter, or a value out of
        range (naming the accepted names and ranges).

    Example:
      >>> import jax.numpy as jnp
      >>> from sparsejax.train.methods import make_optimizer
      >>> params = {'kernel': jnp.ones((2, 2))}
      >>> tx, extra = make_optimizer('sgd', {}, learning_rate=0.1, momentum=None,
      ...                            steps_per_epoch=5, epochs=1, params=params)
      >>> round(float(tx.init(params).hyperparams['learning_rate']), 6)
      0.1
    """
    spec = get_method(method)
    hp = resolve_hparams(method, hparams)
    check_number("steps_per_epoch", steps_per_epoch, ge=1, integer=True)
    check_number("epochs", epochs, ge=1, integer=True)
    momentum = spec.resolve_momentum(momentum)
    lr = spec.resolve_learning_rate(learning_rate)
    ctx = Context(learning_rate=None, momentum=momentum, steps_per_epoch=int(steps_per_epoch),
                  epochs=int(epochs), params=params, sample_params=sample_params)
    if spec.uses_learning_rate:
        lr_schedule = make_schedule(schedule, lr, steps_per_epoch=ctx.steps_per_epoch,
                                    epochs=ctx.epochs, warmup_steps=warmup_steps,
                                    decay_at=decay_at, decay_factor=decay_factor)

        def factory(learning_rate: Any) -> optax.GradientTransformation:
            return spec.build(dataclasses.replace(ctx, learning_rate=learning_rate), hp)

        factory(lr)  # builds once with numbers, so that bad values fail here, not inside jit
        tx = optax.inject_hyperparams(factory)(learning_rate=lr_schedule)
    else:
        tx = optax.with_extra_args_support(spec.build(ctx, hp))
    extra = spec.metrics(hp) if spec.metrics is not None else None
    return tx, extra

