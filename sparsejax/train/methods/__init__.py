r"""The registry of training methods used by the trainer and the ``sparsejax`` command line.

Every method of the library is registered under a short name (``sgd``,
``gmp``, ``grda``, ``rda``, ``irda``, ``prox_sgd``, ``lats``, ...) with its
hyperparameters: a default taken from the paper (each with a ``source`` saying
where the value comes from), the accepted range and a help string.
:func:`make_optimizer` turns a name and a (partial) dict of hyperparameters
into an Optax transform and an ``extra_metrics`` callable for
:func:`sparsejax.train.fit` (the method's current threshold, where it has
one).

The registrations live in one module per family, imported by this package:
``baselines`` (``sgd``, ``gmp``), ``dual_averaging`` (``grda``, ``rda``,
``irda``), ``proximal`` (``prox_sgd``, ``sqrt_t_prox_sgd``),
``soft_threshold`` (``lats`` and its siblings, ``str``, ``stds``, ``pgh``),
``frank_wolfe`` (``sfw``) and ``mask_based`` (``static``, ``set``, ``rigl``,
``ste``); ``_common`` holds what they share (the ``sparsify`` and
``pattern`` hyperparameters, the SGD every baseline uses, the metrics that
read a state field). The vocabulary (:class:`HParam`, :class:`MethodSpec`,
:func:`register`, ...) is :mod:`sparsejax.train.registry`.

Conventions shared by all methods:

* **Learning rate.** One base learning rate and one schedule for every method
  (:func:`sparsejax.train.schedules.make_schedule`: ``constant``, ``cosine``, ``cosine_epoch``,
  ``step``, each with an optional linear warm-up). The transform is wrapped in
  :func:`optax.inject_hyperparams` with the learning rate as its only injected
  hyperparameter (in the params' compute dtype: float32 for bf16/f32 params,
  float64 for float64 ones), so the trainer reads the current value from
  ``opt_state.hyperparams['learning_rate']``. ``rda`` and ``irda`` have no
  learning rate: their step is :math:`1/(\gamma\sqrt t)`, set by ``gamma``.
  ``prox_sgd`` and ``sqrt_t_prox_sgd`` take the same step by default
  (``step='inverse_sqrt'``, the iRDA paper's baselines, no momentum) and have
  no learning rate then (nothing is injected, as for ``rda``); they take the
  learning rate, its schedule and momentum only with ``step='lr'`` (this
  library's variant). :func:`uses_learning_rate` says which case applies.
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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optax

from sparsejax._validation import check_number
from sparsejax.optim._common import tree_compute_dtype
from sparsejax.train.methods import (
    baselines,
    dual_averaging,
    frank_wolfe,
    mask_based,
    proximal,
    soft_threshold,
)
from sparsejax.train.registry import (
    METHODS,
    Context,
    ExtraMetrics,
    HParam,
    MethodSpec,
    available_methods,
    describe,
    get_method,
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
    "uses_learning_rate",
]

# The modules of the method families, imported for their registrations (each module's
# ``register`` calls fill METHODS).
_FAMILIES = (baselines, dual_averaging, proximal, soft_threshold, frank_wolfe, mask_based)
# Methods whose use of the learning rate depends on their hyperparameters: name -> rule(hparams).
_LEARNING_RATE_RULES = {**proximal.LEARNING_RATE_RULES}


def uses_learning_rate(method: str, hparams: Mapping[str, Any] | None = None) -> bool:
    r"""Whether a method, with these hyperparameters, takes the shared learning rate and schedule.

    ``False`` for the methods without one (``rda``, ``irda``) and for
    ``prox_sgd`` and ``sqrt_t_prox_sgd`` with ``step='inverse_sqrt'`` (their
    default: the step is :math:`1/(\gamma\sqrt t)`, set by ``gamma``, and
    momentum is unused too). When it is ``False``, :func:`make_optimizer`
    ignores ``learning_rate``, ``schedule`` and ``momentum`` and injects no
    learning rate.

    Args:
      method: one of :func:`available_methods`.
      hparams: the method's hyperparameters (as for :func:`make_optimizer`).

    Returns:
      Whether ``learning_rate`` and ``schedule`` of :func:`make_optimizer` apply.

    Example:
      >>> from sparsejax.train.methods import uses_learning_rate
      >>> uses_learning_rate('prox_sgd'), uses_learning_rate('prox_sgd', {'step': 'lr'})
      (False, True)
      >>> uses_learning_rate('sgd'), uses_learning_rate('rda')
      (True, False)
    """
    spec = get_method(method)
    if not spec.uses_learning_rate:
        return False
    rule = _LEARNING_RATE_RULES.get(spec.name)
    return True if rule is None else bool(rule(resolve_hparams(method, hparams)))


def prepare_model(method: str, model: Any, hparams: Mapping[str, Any] | None = None, *,
                  seed: int = 0, sample_params: Callable[[int], PyTree] | None = None) -> None:
    """Applies a method's own initialisation to a freshly built model, in place.

    ``irda`` (and ``rda`` with ``init_scale > 0``): the conv and dense
    kernels are re-drawn from :func:`sparsejax.init.irda_uniform` with scale
    ``init_scale`` (iRDA paper, Section 3.5), from ``seed``. ``sfw``: the
    params are moved into their K-sparse polytopes (built as
    :func:`make_optimizer` builds them, from ``sample_params``: pass both
    the same). Without ``sample_params`` the polytopes are sized from the
    params themselves, which must then lie inside already (as they do at the
    default ``radius_scale``); otherwise a ``ValueError`` asks for
    ``sample_params``, since :func:`make_optimizer` would size smaller
    polytopes from the shrunk params. ``static``, ``set`` and ``rigl``: the
    weights outside the initial mask (the one the optimizer's ``init`` draws,
    from ``mask_seed``) are zeroed, so that the first step trains the sparse
    network. Call it before the optimizer is
    initialised; it is deterministic, so a resumed run rebuilds the same
    initial model.

    Args:
      method: a registered method name.
      model: a Flax NNX model (changed in place).
      hparams: the method's hyperparameters (defaults filled in).
      seed: seed of the re-initialisation.
      sample_params: ``seed -> params``, fresh initialisations of the model
        (``sfw``; the same as given to :func:`make_optimizer`; e.g.
        ``lambda seed: params`` with the params before this call, for radii
        from that one initialisation).

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
        ignored by methods without one (``rda``, ``irda``, and ``prox_sgd``
        and ``sqrt_t_prox_sgd`` with their default ``step='inverse_sqrt'``;
        see :func:`uses_learning_rate`), as are ``schedule`` and its settings.
      momentum: in ``[0, 1)``; ``None``: the method's default. Ignored by
        methods without momentum (``grda``, ``rda``, ``irda``, and
        ``prox_sgd`` and ``sqrt_t_prox_sgd`` with ``step='inverse_sqrt'``).
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
        :func:`prepare_model`); ``None``: ``params`` is the only draw (and
        must lie in the polytopes sized from it).

    Returns:
      ``(optimizer, extra_metrics)``: the transform (wrapped in
      :func:`optax.inject_hyperparams` with ``learning_rate`` injected, in
      the params' compute dtype (float32, or float64 for float64 params), for
      the methods that have one, see :func:`uses_learning_rate`; update it as
      ``optimizer.update(grads, state, params)``) and
      ``extra_metrics(opt_state, params) -> {name: float32 scalar}`` (the
      current threshold and the like; jit-compatible) or ``None`` for methods
      without one.

    Raises:
      ValueError: for an unknown method or hyperparameter, or a value out of
        range (naming the accepted names and ranges); ``sfw`` without
        ``sample_params``: for params outside the polytopes sized from them.

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
    if uses_learning_rate(method, hp):
        lr_schedule = make_schedule(schedule, lr, steps_per_epoch=ctx.steps_per_epoch,
                                    epochs=ctx.epochs, warmup_steps=warmup_steps,
                                    decay_at=decay_at, decay_factor=decay_factor)

        def factory(learning_rate: Any) -> optax.GradientTransformation:
            return spec.build(dataclasses.replace(ctx, learning_rate=learning_rate), hp)

        factory(lr)  # builds once with numbers, so that bad values fail here, not inside jit
        # the params' compute dtype (not optax's default, the params' own): bf16 params would
        # otherwise get a bf16 learning rate (0.1 -> 0.100097656) in the steps and the logs
        tx = optax.inject_hyperparams(factory, hyperparam_dtype=tree_compute_dtype(params))(
            learning_rate=lr_schedule)
    else:
        tx = optax.with_extra_args_support(spec.build(ctx, hp))
    extra = spec.metrics(hp) if spec.metrics is not None else None
    return tx, extra
