"""Every Optax transform of the library, with small hyperparameters for the tests.

The interoperability battery (tests/test_interop.py) runs on every entry. A new
transform is added here, once, and gets the whole battery.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import optax

import sparsejax as sj
from sparsejax import pruning


@dataclasses.dataclass(frozen=True)
class Case:
    """One transform under test.

    Attributes:
      name: test id.
      factory: the public factory, called as ``factory(**hyper, **static)``.
      hyper: numeric hyperparameters; ``optax.inject_hyperparams`` injects these.
      static: other arguments (masks, inner optimizers, strings); passed as
        ``static_args`` to ``optax.inject_hyperparams``.
      schedule_arg: the argument that accepts an ``optax.Schedule`` (the
        learning rate, or what plays its role), or ``None``.
      covers: the public factories a battery wrapper builds on, when ``factory``
        is such a wrapper (it feeds the extra arguments a method needs).
    """

    name: str
    factory: Callable[..., optax.GradientTransformation]
    hyper: dict[str, Any]
    static: dict[str, Any] = dataclasses.field(default_factory=dict)
    schedule_arg: str | None = "learning_rate"
    covers: tuple[Callable[..., Any], ...] = ()

    def make(self, **overrides: Any) -> optax.GradientTransformation:
        return self.factory(**{**self.hyper, **self.static, **overrides})


CASES: list[Case] = [
    Case("dual_averaging", sj.dual_averaging, dict(learning_rate=0.1)),
    Case("dual_averaging_zero", sj.dual_averaging, dict(learning_rate=0.1), dict(center="zero")),
    Case("grda", sj.grda, dict(learning_rate=0.1, c=0.05, mu=0.6)),
    Case(
        "grda_weights_only",
        sj.grda,
        dict(learning_rate=0.1, c=0.05, mu=0.6),
        dict(mask=sj.tree.weights_only),
    ),
    Case("rda", sj.rda, dict(gamma=2.0, l1=0.01), schedule_arg="gamma"),
    Case("rda_init", sj.rda, dict(gamma=2.0, l1=0.01), dict(center="init"), schedule_arg="gamma"),
    Case("irda", sj.irda, dict(gamma=2.0, l1=0.01, retrain_step=2), schedule_arg="gamma"),
    Case("apply_soft_threshold", sj.apply_soft_threshold, dict(threshold=0.01), schedule_arg="threshold"),
    Case("freeze_zeros", sj.freeze_zeros, dict(start_step=1), schedule_arg=None),
    Case("prox_sgd", sj.prox_sgd, dict(learning_rate=0.1, l1=0.05)),
    Case("prox_sgd_momentum", sj.prox_sgd, dict(learning_rate=0.1, l1=0.05, momentum=0.9)),
    Case("sqrt_t_prox_sgd", sj.sqrt_t_prox_sgd, dict(learning_rate=0.1, gamma=2.0, l1=0.01)),
    Case("pytorch_sgd", sj.pytorch_sgd, dict(learning_rate=0.1, momentum=0.9, weight_decay=1e-3),
         dict(nesterov=True)),
]

# --- sparsejax.pruning: fixed-support retraining and gradual magnitude pruning ------------


def _prune_half(params: Any) -> Any:
    """The support keeping half of the kernels' weights by global magnitude (biases stay dense)."""
    return pruning.prune(params, 0.5, mask=sj.tree.weights_only)[1]


CASES += [
    Case("fixed_support", pruning.fixed_support, {}, dict(support=_prune_half), schedule_arg=None),
    Case(
        "fixed_support_packed",
        pruning.fixed_support,
        {},
        dict(support=_prune_half, packed=True),
        schedule_arg=None,
    ),
    Case(
        "gradual_pruning",
        pruning.gradual_pruning,
        dict(final_sparsity=0.6, begin_step=0, end_step=2, frequency=1),
        dict(inner=optax.sgd(0.1, momentum=0.9)),
        schedule_arg=None,
    ),
    Case(
        "gradual_pruning_global",
        pruning.gradual_pruning,
        dict(final_sparsity=0.6, begin_step=1, end_step=3, frequency=2, initial_sparsity=0.2),
        dict(inner=optax.chain(optax.add_decayed_weights(1e-2), optax.sgd(0.1)), scope="global"),
        schedule_arg=None,
    ),
    Case(
        "gradual_pruning_erk_adamw",
        pruning.gradual_pruning,
        dict(final_sparsity=0.5, begin_step=0, end_step=2, frequency=1, erk_power_scale=0.5),
        dict(inner=optax.adamw(1e-2, weight_decay=1e-2), distribution="erk"),
        schedule_arg=None,
    ),
]

# --- soft-threshold reparameterisation (Chen et al., ICLR 2023) ---------------------------

CASES += [
    Case("lats", sj.lats, dict(learning_rate=0.1, l1=0.5)),
    Case(
        "lats_plain_sgd_all_leaves",
        sj.lats,
        dict(learning_rate=0.1, l1=0.5, weight_decay=0.0, start_step=1),
        dict(momentum=None, mask=None),
    ),
    Case(
        "lats_exact_f32_latent",
        sj.lats,
        dict(learning_rate=0.1, l1=0.5, momentum=0.9),
        dict(gradient="exact", latent_dtype="float32", mask=sj.tree.weights_only),
    ),
    Case(
        "slats",
        sj.slats,
        dict(learning_rate=0.1, final_threshold=0.2, total_steps=3),
        dict(mask=sj.tree.weights_only),
    ),
    Case(
        "lats_epochwise",
        sj.lats_epochwise,
        dict(learning_rate=0.1, final_threshold=0.2, num_epochs=2, steps_per_epoch=2, start_step=1),
        dict(mask=sj.tree.weights_only),
    ),
    Case(
        "pgh",
        sj.pgh,
        dict(learning_rate=0.1, final_threshold=0.2, total_steps=3, beta=0.1),
        dict(mask=sj.tree.weights_only),
    ),
    Case(
        "stds_linear",
        sj.stds,
        dict(learning_rate=0.1, final_threshold=0.2, total_steps=3),
        dict(shape="linear", gradient="exact", mask=sj.tree.weights_only),
    ),
    Case(
        "fixed_threshold_reparam",
        sj.fixed_threshold_reparam,
        dict(learning_rate=0.1, threshold=0.1),
        dict(mask=sj.tree.weights_only),
    ),
    Case(
        "str",
        sj.str_reparam,
        dict(learning_rate=0.1, s_init=-2.0, weight_decay=0.01),
        dict(mask=sj.tree.weights_only),
    ),
    Case(
        "lats_continuation",
        sj.lats_continuation,
        dict(learning_rate=0.1, target_sparsity=0.3, l1=0.5, interval=1, growth=2.0),
        dict(mask=sj.tree.weights_only),
    ),
    Case(
        "lats_prune_at_init",
        sj.lats_prune_at_init,
        dict(learning_rate=0.1, l1=1.0, prune_steps=1),
        dict(mask=sj.tree.weights_only),
    ),
    Case(
        "lats_prune_at_init_rewind",
        sj.lats_prune_at_init,
        dict(learning_rate=0.1, l1=1.0, prune_steps=2),
        dict(rewind=True, mask=None),
    ),
    Case(
        "soft_threshold_reparam_adam",
        sj.soft_threshold_reparam,
        dict(threshold=0.05),
        dict(inner=optax.adam(0.01), gradient="exact", mask=sj.tree.weights_only),
        schedule_arg="threshold",
    ),
]

# --- Frank-Wolfe family (Miao et al., ICLR 2022; Pokutta et al. 2020) ---------------------

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from sparsejax import constraints as C  # noqa: E402
from sparsejax.optim.frank_wolfe import one_shot_fw, saga_fw, sfw, svrf  # noqa: E402
from sparsejax.optim.loss_adaptive import loss_adaptive_learning_rate  # noqa: E402


def _fw_constraints(params: Any) -> Any:
    """A constraint for every leaf of any battery tree (trees.make_params, its masked and
    partitioned subtrees, the NNX MLP): K-sparse polytopes for kernels, L2 balls for
    vectors, L-inf balls for scalars. A callable, because the battery's trees differ."""

    def leaf(x: Any) -> C.Constraint:
        if jnp.ndim(x) > 1:
            return C.k_sparse_polytope(k_frac=0.25, radius=0.5)
        if jnp.ndim(x) == 1:
            return C.l2_ball(1.5)
        return C.linf_ball(1.0)

    return jax.tree.map(leaf, params)


def _fw_lp_constraints(params: Any) -> Any:
    return jax.tree.map(lambda x: C.lp_ball(3.0, radius=2.0) if jnp.ndim(x) else C.l1_ball(1.0), params)


def _with_extra_args(inner: optax.GradientTransformation, make_extra: Callable[..., dict]):
    """Feeds ``inner`` extra args computed leafwise from the gradients (the battery calls
    ``tx.update(grads, state, params)`` with none), so masking, MultiSteps averaging and
    sharding see consistent values."""

    def update_fn(updates, state, params=None, **extra_args):
        return inner.update(updates, state, params, **make_extra(updates), **extra_args)

    return optax.GradientTransformationExtraArgs(inner.init, update_fn)


def svrf_battery(learning_rate, constraints):
    """SVRF with a synthetic snapshot: grads at the snapshot 0.5 g, full snapshot gradient 0.25 g."""
    scaled = lambda s, t: jax.tree.map(lambda g: (s * g).astype(g.dtype), t)  # noqa: E731
    return _with_extra_args(
        svrf(learning_rate, constraints),
        lambda g: dict(snapshot_grads=scaled(0.5, g), snapshot_full_grads=scaled(0.25, g)),
    )


def saga_fw_battery(learning_rate, constraints):
    """SAGA-FW on samples 0 and 2 of 3 with per-sample gradients 1.5 g and 0.5 g (num_samples
    is fixed here: optax.inject_hyperparams would inject a numeric default as an array)."""
    per_sample = lambda t: jax.tree.map(lambda g: jnp.stack([1.5 * g, 0.5 * g]), t)  # noqa: E731
    return _with_extra_args(
        saga_fw(learning_rate, constraints, num_samples=3),
        lambda g: dict(indices=jnp.array([0, 2]), per_sample_grads=per_sample(g)),
    )


def loss_adaptive_sfw_battery(learning_rate, constraints):
    """The loss-driven learning rate around SFW, one-step epochs so that the step decay and
    both branches of the loss test happen within the battery's few steps; the "loss" is
    the gradients' squared norm."""
    loss = lambda t: sum(jnp.sum(jnp.square(g.astype(jnp.float32))) for g in jax.tree.leaves(t))  # noqa: E731
    return _with_extra_args(
        loss_adaptive_learning_rate(
            sfw,
            learning_rate,
            steps_per_epoch=1,
            decay_epochs=(2,),
            warmup_epochs=0,
            adapt_every=1,
            short_window=1,
            long_window=2,
            lag=0,
            epoch_loss="mean",
            constraints=constraints,
        ),
        lambda g: dict(value=loss(g)),
    )


CASES += [
    Case("sfw", sfw, dict(learning_rate=0.1, momentum=0.9), dict(constraints=_fw_constraints)),
    Case(
        "sfw_diameter",
        sfw,
        dict(learning_rate=0.5, momentum=0.5),
        dict(constraints=_fw_constraints, rescale="diameter"),
    ),
    Case(
        "sfw_no_rescale_lp",
        sfw,
        dict(learning_rate=0.2, momentum=0.0),
        dict(constraints=_fw_lp_constraints, rescale=None),
    ),
    Case("one_shot_fw", one_shot_fw, dict(learning_rate=0.2, rho=0.5), dict(constraints=_fw_constraints)),
    Case("svrf", svrf_battery, dict(learning_rate=0.2), dict(constraints=_fw_constraints),
         covers=(svrf,)),
    Case("saga_fw", saga_fw_battery, dict(learning_rate=0.2), dict(constraints=_fw_constraints),
         covers=(saga_fw,)),
    Case(
        "loss_adaptive_sfw",
        loss_adaptive_sfw_battery,
        dict(learning_rate=0.3),
        dict(constraints=_fw_constraints),
        covers=(loss_adaptive_learning_rate, sfw),
    ),
]

# --- mask-based sparse training: static masks, SET, RigL, STE (sparsejax.pruning.dynamic) ---

CASES += [
    Case(
        "static_sparse",
        pruning.static_sparse,
        dict(sparsity=0.5),
        dict(inner=optax.sgd(0.1, momentum=0.9), mask=sj.tree.weights_only),
        schedule_arg=None,
    ),
    Case(
        "set_",
        pruning.set_,
        dict(sparsity=0.5, end_step=10, update_freq=2, drop_fraction=0.3),
        dict(inner=optax.sgd(0.1, momentum=0.9), mask=sj.tree.weights_only),
        schedule_arg=None,
    ),
    Case(
        "rigl",
        pruning.rigl,
        dict(sparsity=0.5, end_step=10, update_freq=2, drop_fraction=0.5),
        dict(inner=optax.sgd(0.1, momentum=0.9), mask=sj.tree.weights_only),
        schedule_arg=None,
    ),
    Case(
        "ste_pruning",
        pruning.ste_pruning,
        dict(final_sparsity=0.5, begin_step=0, end_step=2, frequency=1, sr_ste_decay=0.01),
        dict(inner=optax.sgd(0.1, momentum=0.9), mask=sj.tree.weights_only),
        schedule_arg=None,
    ),
]

#: The cases the 8-device test (tests/test_interop.py) runs: one per kind of state and
#: computation, because each costs seconds of compilation for 8 devices while the other
#: battery checks stay cheap on every case. A case belongs here when its update holds
#: something a sharded run could get wrong beyond element-wise arithmetic on per-parameter
#: buffers (momentum traces, RDA centres, latent weights, Adam moments and scalar states are
#: element-wise; grda stands for them all), or when it is its family's representative:
SHARDED_CASES: dict[str, str] = {
    "grda": "dual averaging with a cumulative threshold: per-parameter buffers, a count",
    "irda": "freezing of zeros after a step: a boolean per-parameter state",
    "fixed_support_packed": "bit-packed support: the packed axis must follow the parameters' sharding",
    "gradual_pruning_global": "global magnitude selection: a threshold over every leaf at once",
    "str": "trainable per-layer thresholds: a reduction over each leaf in the gradient",
    "lats_continuation": "a threshold driven by the global sparsity (a reduction over every leaf)",
    "sfw": "K-sparse polytope LMO (top-k per leaf) with gradient rescaling (global norms)",
    "sfw_no_rescale_lp": "Lp-ball LMO (a norm per leaf)",
    "saga_fw": "a per-sample gradient table indexed by the sample",
    "rigl": "per-layer drop/grow selections in a lax.cond and a reset of the momentum entries",
}


#: Cases that are another case's transform with other options. They run the battery's
#: checks of the state and the hyperparameters (jit without recompiling and equal to eager,
#: inject_hyperparams, dtypes, lax.cond; 8 devices where listed above); the composition
#: checks (schedules, MultiSteps, masked, partition, apply_if_finite, nnx.Optimizer), which
#: exercise the same update function through Optax's wrappers, run on the case named here.
VARIANT_OF: dict[str, str] = {
    "dual_averaging_zero": "dual_averaging",
    "grda_weights_only": "grda",
    "rda_init": "rda",
    "prox_sgd_momentum": "prox_sgd",
    "fixed_support_packed": "fixed_support",
    "gradual_pruning_global": "gradual_pruning",
    "gradual_pruning_erk_adamw": "gradual_pruning",
    "lats_plain_sgd_all_leaves": "lats",
    "lats_exact_f32_latent": "lats",
    "lats_prune_at_init_rewind": "lats_prune_at_init",
    "sfw_diameter": "sfw",
    "sfw_no_rescale_lp": "sfw",
}
