r"""Stochastic Frank-Wolfe transforms: SFW, One-Shot FW, SVRF, SAGA-FW, and SFW-Init.

Frank-Wolfe methods keep every parameter leaf inside a convex set :math:`C`
(a K-sparse polytope, an Lp ball, ...; see :mod:`sparsejax.constraints`)
without projections: each step calls the set's linear minimisation oracle
(LMO) on a gradient estimate :math:`d` and moves to a convex combination of
the current point and the LMO's answer,

.. math::

  v = \arg\min_{v \in C}\,\langle d, v\rangle, \qquad
  p \leftarrow (1-\eta)\,p + \eta\,v, \quad \eta \in [0, 1],

so iterates that start feasible stay feasible. The step acts in parameter
space, so it is written as an update (``new - params``, as every
parameter-space step of sparsejax): these transforms need ``params`` and take the raw gradients
(they are whole optimizers, not post-processors).

Every leaf a Frank-Wolfe transform sees needs a constraint. Leaves without one
(``None`` or :func:`sparsejax.constraints.unconstrained` in the constraint
pytree: biases, normalisation scales, ...) raise a ``ValueError``; train them
with another optimizer through :func:`optax.partition`
(:func:`sparsejax.constraints.partition_labels` builds the labels):

.. code-block:: python

  cons = constraints_from_init(sample_params, 'k_sparse', k_frac=0.05, value=15.0,
                               mask=sparsejax.tree.weights_only)
  tx = optax.partition(
      {'frank_wolfe': sfw(0.1, cons), 'unconstrained': optax.sgd(0.01, momentum=0.9)},
      lambda params: partition_labels(cons, params))

(Passing the unconstrained leaves' gradients through unchanged, as
:func:`optax.masked` does, would make ``apply_updates`` *ascend* on them, so
that is not offered.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sparsejax._validation import as_schedule, check_choice, check_number, require_params
from sparsejax.optim._common import compute_dtype, tree_compute_dtype
from sparsejax.constraints import (
    Constraint,
    ConstraintTree,
    Unconstrained,
    leaf_constraints,
)
from sparsejax.tree import PyTree, broadcast_prefix, path_str

__all__ = [
    "FrankWolfeState",
    "SAGAFWState",
    "SFWInitResult",
    "SVRFState",
    "frank_wolfe_step_size",
    "one_shot_fw",
    "saga_fw",
    "sfw",
    "sfw_init",
    "svrf",
]

Rescale = Literal["gradient", "diameter"] | None
_RESCALES = ("gradient", "diameter", None)


class FrankWolfeState(NamedTuple):
    """State of :func:`sfw` and :func:`one_shot_fw`.

    Attributes:
      count: number of updates so far (int32).
      momentum: the averaged gradient :math:`m_t` (:math:`d_t` for One-Shot
        FW), in each param's dtype.
    """

    count: jax.Array
    momentum: optax.Updates


class SVRFState(NamedTuple):
    """State of :func:`svrf`.

    Attributes:
      count: number of updates so far (int32).
    """

    count: jax.Array


class SAGAFWState(NamedTuple):
    """State of :func:`saga_fw`.

    Attributes:
      count: number of updates so far (int32).
      table: for each leaf, the last gradient seen for every sample,
        shape ``(num_samples, *leaf.shape)`` (zeros at first).
      table_mean: the mean of ``table`` over the samples.
    """

    count: jax.Array
    table: optax.Updates
    table_mean: optax.Updates


# --- shared pieces ---------------------------------------------------------------------------


def _is_free(c: Constraint | None) -> bool:
    return c is None or isinstance(c, Unconstrained)


def _check_constraints(constraints: ConstraintTree) -> None:
    """Construction-time check that ``constraints`` can be a constraint pytree."""
    if constraints is None:
        raise ValueError(
            "constraints is None: a Frank-Wolfe transform needs a constraint for every leaf "
            "(see sparsejax.constraints)"
        )
    if isinstance(constraints, Constraint) or callable(constraints):
        return
    is_leaf = lambda x: x is None or isinstance(x, Constraint)  # noqa: E731
    for leaf in jax.tree.leaves(constraints, is_leaf=is_leaf):
        if not is_leaf(leaf):
            raise ValueError(
                "constraints must be a sparsejax.constraints object, a pytree of them (None for "
                f"unconstrained leaves) or a callable params -> such a pytree; found {leaf!r}"
            )


def _constraints_for(constraints: ConstraintTree, params: PyTree, transform: str) -> list[Constraint]:
    """One constraint per leaf of ``params``; a clear error for unconstrained leaves."""
    cons = leaf_constraints(constraints, params)
    paths = [path_str(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
    free = [name for name, c in zip(paths, cons) if _is_free(c)]
    if free:
        raise ValueError(
            f"sparsejax.{transform} needs a constraint for every leaf it updates, but "
            f"{free[:5]} have none. Train those leaves with another optimizer through "
            "optax.partition, with labels from sparsejax.constraints.partition_labels."
        )
    return cons  # type: ignore[return-value]


def _leaf_step(
    p: jax.Array, d: jax.Array, c: Constraint, lr: jax.Array, rescale: Rescale
) -> jax.Array:
    """``eta * (v - p)`` with ``v = LMO(d)`` and ``eta = clip(lr * factor, 0, 1)``.

    Computed in float32, or in float64 where the params or the direction are float64.
    """
    dt = jnp.promote_types(compute_dtype(p.dtype), compute_dtype(d.dtype))
    pw = p.astype(dt)
    dw = d.astype(dt)
    v = c.lmo(dw).astype(dt)
    if rescale == "diameter":
        diam = c.diameter(np.shape(p))
        factor = jnp.asarray(1.0 / diam if diam > 0 else 1.0, dt)
    elif rescale == "gradient":
        den = jnp.linalg.norm((pw - v).reshape(-1))
        num = jnp.linalg.norm(dw.reshape(-1))
        factor = jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)
    else:
        factor = jnp.ones([], dt)
    eta = jnp.clip(jnp.asarray(lr, dt) * factor, 0.0, 1.0)
    new = (1.0 - eta) * pw + eta * v
    return (new - pw).astype(p.dtype)


def _fw_updates(
    params: PyTree, directions: PyTree, cons: list[Any], lr: jax.Array, rescale: Rescale
) -> PyTree:
    """Frank-Wolfe step of every leaf (unconstrained leaves: zero update)."""
    p_leaves, treedef = jax.tree.flatten(params)
    d_leaves = jax.tree.leaves(directions)
    if len(d_leaves) != len(p_leaves):
        raise ValueError("the gradients and the params have different structures")
    out = [
        jnp.zeros_like(p) if _is_free(c) else _leaf_step(p, d, c, lr, rescale)
        for p, d, c in zip(p_leaves, d_leaves, cons)
    ]
    return treedef.unflatten(out)


def _variance_reduced(g: jax.Array, old: jax.Array, mean: jax.Array) -> jax.Array:
    """``g - old + mean`` (SVRF's and SAGA-FW's estimate) in the widest compute dtype of the three."""
    dt = jnp.promote_types(
        jnp.promote_types(compute_dtype(g.dtype), compute_dtype(old.dtype)), compute_dtype(mean.dtype)
    )
    return g.astype(dt) - old.astype(dt) + mean.astype(dt)


def _align_extra(extra: Any, like: PyTree, name: str, transform: str) -> PyTree:
    """``extra`` with ``like``'s structure.

    ``optax.masked`` / ``optax.partition`` hand extra args over unmasked; where
    ``like`` has an ``optax.MaskedNode`` the full tree's subtree is dropped.
    """
    if extra is None:
        raise ValueError(
            f"sparsejax.{transform} needs the extra argument {name}=... in tx.update "
            "(see its docstring)"
        )
    if jax.tree.structure(extra) == jax.tree.structure(like):
        return extra
    is_masked = lambda x: isinstance(x, optax.MaskedNode)  # noqa: E731
    treedef = jax.tree.structure(like, is_leaf=is_masked)
    try:
        subtrees = treedef.flatten_up_to(extra)
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"sparsejax.{transform}: {name} must have the gradients' structure\n"
            f"  {name}: {jax.tree.structure(extra)}\n  grads: {jax.tree.structure(like)}"
        ) from e
    likes = jax.tree.leaves(like, is_leaf=is_masked)
    return treedef.unflatten(
        [optax.MaskedNode() if is_masked(x) else sub for x, sub in zip(likes, subtrees)]
    )


def _check_rescale(rescale: Any) -> None:
    check_choice("rescale", rescale, _RESCALES)


def frank_wolfe_step_size(shift: float = 1.0, scale: float = 2.0) -> optax.Schedule:
    r"""The open-loop Frank-Wolfe step size :math:`\eta_t = \mathrm{scale}/(t + \mathrm{shift})`.

    With :math:`t = \mathrm{count} + 1 = 1, 2, \dots`; the defaults give the
    classical :math:`2/(t+1)` (first step 1); One-Shot FW / stochastic
    conditional gradient use ``shift=8``. Use it as the ``learning_rate`` of a
    transform with ``rescale=None``.

    Args:
      shift: ``>= 0``.
      scale: ``> 0``.

    Returns:
      A schedule ``count -> eta`` in the default float dtype (float64 under
      ``jax_enable_x64``, float32 otherwise).

    Example:
      >>> import sparsejax as sj
      >>> [float(sj.frank_wolfe_step_size()(c)) for c in range(3)]
      [1.0, 0.6666666865348816, 0.5]
    """
    check_number("shift", shift, ge=0)
    check_number("scale", scale, gt=0)

    def schedule(count: jax.Array) -> jax.Array:
        # the default float dtype: float64 under jax_enable_x64, float32 otherwise
        dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
        t = jnp.asarray(count, dtype) + 1
        return jnp.asarray(scale, dtype) / (t + shift)

    return schedule


# --- SFW and One-Shot FW ----------------------------------------------------------------------


def _averaged_fw(
    transform: str,
    learning_rate: optax.ScalarOrSchedule,
    constraints: ConstraintTree,
    keep: Callable[[jax.Array], jax.Array],
    first_is_gradient: bool,
    rescale: Rescale,
) -> optax.GradientTransformationExtraArgs:
    """``m <- keep*m + (1-keep)*g`` (``m = g`` at the first step if asked), then an FW step on ``m``."""
    lr = as_schedule(learning_rate)

    def init_fn(params: optax.Params) -> FrankWolfeState:
        momentum = jax.tree.map(jnp.zeros_like, params)
        return FrankWolfeState(count=jnp.zeros([], jnp.int32), momentum=momentum)

    def update_fn(
        updates: optax.Updates,
        state: FrankWolfeState,
        params: optax.Params | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, FrankWolfeState]:
        del extra_args
        require_params(params, transform)
        cons = _constraints_for(constraints, params, transform)
        dtype = tree_compute_dtype(params)
        eta = jnp.asarray(lr(state.count), dtype)
        rho = jnp.asarray(keep(state.count), dtype)
        first = state.count == 0

        def average(m: jax.Array, g: jax.Array) -> jax.Array:
            dt = jnp.promote_types(compute_dtype(m.dtype), compute_dtype(g.dtype))
            gw = g.astype(dt)
            r = jnp.asarray(rho, dt)
            avg = r * m.astype(dt) + (1.0 - r) * gw
            return jnp.where(first, gw, avg) if first_is_gradient else avg

        averaged = jax.tree.map(average, state.momentum, updates)
        new_updates = _fw_updates(params, averaged, cons, eta, rescale)
        momentum = jax.tree.map(lambda m, old: m.astype(old.dtype), averaged, state.momentum)
        return new_updates, FrankWolfeState(optax.safe_increment(state.count), momentum)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def sfw(
    learning_rate: optax.ScalarOrSchedule,
    constraints: ConstraintTree,
    momentum: optax.ScalarOrSchedule = 0.9,
    rescale: Rescale = "gradient",
) -> optax.GradientTransformationExtraArgs:
    r"""Stochastic Frank-Wolfe with momentum and learning-rate rescaling (SFW pruning's optimizer).

    For every leaf :math:`p` with constraint set :math:`C` and gradient :math:`g_t`:

    .. math::

      m_0 = g_0, \qquad m_t = \rho\, m_{t-1} + (1-\rho)\, g_t, \qquad
      v_t = \arg\min_{v \in C} \langle m_t, v\rangle,

      \eta_t = \mathrm{clip}(\alpha_t s_t, 0, 1), \qquad
      s_t = \begin{cases}
        \|m_t\|_2 / \|p_t - v_t\|_2 & \texttt{rescale='gradient'} \ (0 \text{ if } p_t = v_t)\\
        1/D(C) & \texttt{rescale='diameter'}\\
        1 & \texttt{rescale=None}
      \end{cases}

      p_{t+1} = (1-\eta_t)\, p_t + \eta_t v_t, \qquad
      \text{emitted update} = p_{t+1} - p_t .

    :math:`D(C)` is the set's L2 diameter (a zero diameter counts as 1). The
    step size is computed leaf by leaf. Iterates stay in :math:`C` when they
    start there (use :func:`sparsejax.constraints.make_feasible` on the
    initial params).

    Args:
      learning_rate: :math:`\alpha_t \ge 0`, a scalar or a schedule. SFW
        pruning uses 1.0 with ``rescale='gradient'`` (0.1 on small nets) and
        :func:`sparsejax.optim.loss_adaptive.loss_adaptive_learning_rate`.
      constraints: one constraint per leaf (see
        :func:`sparsejax.constraints.leaf_constraints`): a constraint object
        for all leaves, a constraint pytree, or a callable
        ``params -> constraint pytree``. Every leaf needs one (see the module
        docstring for unconstrained leaves). Under ``optax.inject_hyperparams``
        pass a callable through ``static_args=('constraints',)``: it calls every
        callable argument with the step count, as a schedule.
      momentum: :math:`\rho \in [0, 1)`, a scalar or a schedule; 0 gives
        plain SFW on :math:`g_t`.
      rescale: ``'gradient'`` (default, as in SFW pruning), ``'diameter'`` or
        ``None``.

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`; ``update`` requires ``params``.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> import sparsejax as sj
      >>> params = {'w': jnp.array([0.5, 0.0, -0.5])}
      >>> tx = sj.sfw(0.5, sj.constraints.k_sparse_polytope(k=1, radius=1.0), rescale=None)
      >>> updates, state = tx.update({'w': jnp.array([0.1, -2.0, 0.3])}, tx.init(params), params)
      >>> optax.apply_updates(params, updates)['w']  # halfway to v = (0, 1, 0)
      Array([ 0.25,  0.5 , -0.25], dtype=float32)

    References:
      Miao, Luo, Chen, Liu, Wang, *Learning Pruning-Friendly Networks via
      Frank-Wolfe: One-Shot, Any-Sparsity, and No Retraining*, ICLR 2022;
      Pokutta, Spiegel, Zimmer, *Deep Neural Network Training with
      Frank-Wolfe*, 2020.
    """
    check_number("learning_rate", learning_rate, ge=0, scalar=True)
    check_number("momentum", momentum, ge=0, lt=1, scalar=True)
    _check_rescale(rescale)
    _check_constraints(constraints)
    return _averaged_fw("sfw", learning_rate, constraints, as_schedule(momentum), True, rescale)


def _one_shot_rho(count: jax.Array) -> jax.Array:
    t = jnp.asarray(count, jax.dtypes.canonicalize_dtype(jnp.float64)) + 1
    return 4.0 / (t + 8.0) ** (2.0 / 3.0)


def one_shot_fw(
    learning_rate: optax.ScalarOrSchedule,
    constraints: ConstraintTree,
    rho: optax.ScalarOrSchedule = _one_shot_rho,
    rescale: Rescale = None,
) -> optax.GradientTransformationExtraArgs:
    r"""One-Shot Frank-Wolfe: one stochastic gradient per step, averaged with a step-dependent weight.

    With :math:`t = \mathrm{count} + 1`:

    .. math::

      d_0 = 0, \qquad d_t = (1-\rho_t)\, d_{t-1} + \rho_t\, g_t, \qquad
      v_t = \arg\min_{v \in C}\langle d_t, v\rangle, \qquad
      p_{t+1} = (1-\eta_t) p_t + \eta_t v_t,

    with :math:`\eta_t` from ``learning_rate`` (and ``rescale`` as in
    :func:`sfw`). The averaging weight decays more slowly than the step size,
    so the averaged gradient's variance vanishes without larger batches.

    Args:
      learning_rate: :math:`\eta_t`, a scalar or a schedule; the analysis uses
        ``frank_wolfe_step_size(shift=8)``, i.e. :math:`2/(t+8)`.
      constraints: as in :func:`sfw`.
      rho: :math:`\rho_t \in (0, 1]`, a scalar or a schedule; default
        :math:`4/(t+8)^{2/3}` (Mokhtari, Hassani and Karbasi's choice; see
        ``FIDELITY.md``).
      rescale: ``None`` (default), ``'gradient'`` or ``'diameter'``.

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`; ``update`` requires ``params``.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> import sparsejax as sj
      >>> params = {'w': jnp.zeros(2)}
      >>> tx = sj.one_shot_fw(0.5, sj.constraints.l1_ball(1.0), rho=0.5)
      >>> updates, _ = tx.update({'w': jnp.array([1.0, -3.0])}, tx.init(params), params)
      >>> optax.apply_updates(params, updates)['w']
      Array([0. , 0.5], dtype=float32)

    References:
      Chen, Harshaw, Hassani, Karbasi, *Projection-Free Online Optimization
      with Stochastic Gradient: From Convexity to Submodularity*, ICML 2018;
      Mokhtari, Hassani, Karbasi, *Stochastic Conditional Gradient Methods*,
      JMLR 2020.
    """
    check_number("learning_rate", learning_rate, ge=0, scalar=True)
    check_number("rho", rho, gt=0, le=1, scalar=True)
    _check_rescale(rescale)
    _check_constraints(constraints)
    rho_ = as_schedule(rho)
    return _averaged_fw(
        "one_shot_fw", learning_rate, constraints, lambda c: 1.0 - rho_(c), False, rescale
    )


# --- variance-reduced variants ----------------------------------------------------------------


def svrf(
    learning_rate: optax.ScalarOrSchedule,
    constraints: ConstraintTree,
    rescale: Rescale = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Stochastic variance-reduced Frank-Wolfe (SVRF) for finite sums :math:`f = \frac1n\sum_i f_i`.

    With a snapshot point :math:`\tilde x` whose full gradient
    :math:`\nabla f(\tilde x)` is known, each step uses the unbiased,
    variance-reduced estimate on the minibatch :math:`I`

    .. math::

      d_t = \nabla f_I(x_t) - \nabla f_I(\tilde x) + \nabla f(\tilde x), \qquad
      v_t = \arg\min_{v \in C}\langle d_t, v\rangle, \qquad
      x_{t+1} = (1-\eta_t) x_t + \eta_t v_t .

    The caller owns the snapshot (it is data-dependent; Hazan and Luo's whole
    algorithm, with its schedules, is
    :func:`sparsejax.optim.fw_finite_sum.svrf_run`): every few steps set
    :math:`\tilde x` to the current params and compute the full gradient
    there; at every step compute the minibatch gradient at :math:`\tilde x`
    too (two gradient evaluations per step). Pass both as extra arguments::

      updates, state = tx.update(grads, state, params,
                                 snapshot_grads=g_batch_at_snapshot,
                                 snapshot_full_grads=full_grad_at_snapshot)

    Args:
      learning_rate: :math:`\eta_t`, a scalar or a schedule (Hazan and Luo use
        :math:`2/(k+1)` restarted at each snapshot, e.g.
        ``lambda c: 2 / (c % epoch_len + 2)``).
      constraints: as in :func:`sfw`.
      rescale: ``None`` (default), ``'gradient'`` or ``'diameter'``.

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`; ``update`` requires
      ``params`` and the extra arguments ``snapshot_grads`` and
      ``snapshot_full_grads`` (pytrees like the gradients). Not for
      ``optax.MultiSteps``: it averages the gradients of its micro-batches but
      hands on the extra arguments of the last one only, so the estimate would
      mix batches.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> import sparsejax as sj
      >>> params = {'w': jnp.zeros(2)}
      >>> tx = sj.svrf(1.0, sj.constraints.l1_ball(1.0))
      >>> g, g_snap, full = {'w': jnp.array([1.0, 0.0])}, {'w': jnp.array([1.0, 0.0])}, {'w': jnp.array([0.0, -1.0])}
      >>> updates, _ = tx.update(g, tx.init(params), params, snapshot_grads=g_snap, snapshot_full_grads=full)
      >>> optax.apply_updates(params, updates)['w']
      Array([0., 1.], dtype=float32)

    References:
      Hazan and Luo, *Variance-Reduced and Projection-Free Stochastic
      Optimization*, ICML 2016; Reddi, Sra, Póczos, Smola, *Stochastic
      Frank-Wolfe Methods for Nonconvex Optimization*, Allerton 2016.
    """
    check_number("learning_rate", learning_rate, ge=0, scalar=True)
    _check_rescale(rescale)
    _check_constraints(constraints)
    lr = as_schedule(learning_rate)

    def init_fn(params: optax.Params) -> SVRFState:
        del params
        return SVRFState(count=jnp.zeros([], jnp.int32))

    def update_fn(
        updates: optax.Updates,
        state: SVRFState,
        params: optax.Params | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, SVRFState]:
        require_params(params, "svrf")
        cons = _constraints_for(constraints, params, "svrf")
        snap = _align_extra(extra_args.get("snapshot_grads"), updates, "snapshot_grads", "svrf")
        full = _align_extra(
            extra_args.get("snapshot_full_grads"), updates, "snapshot_full_grads", "svrf"
        )
        direction = jax.tree.map(_variance_reduced, updates, snap, full)
        eta = jnp.asarray(lr(state.count), tree_compute_dtype(params))
        new_updates = _fw_updates(params, direction, cons, eta, rescale)
        return new_updates, SVRFState(optax.safe_increment(state.count))

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def saga_fw(
    learning_rate: optax.ScalarOrSchedule,
    constraints: ConstraintTree,
    num_samples: int,
    rescale: Rescale = None,
) -> optax.GradientTransformationExtraArgs:
    r"""SAGA Frank-Wolfe for finite sums :math:`f = \frac1n\sum_{i=1}^n f_i`.

    Keeps a table :math:`\alpha_i` of the last gradient seen for every sample
    and uses the SAGA estimate on the minibatch :math:`I` (size :math:`b`):

    .. math::

      d_t = \frac1b\sum_{i\in I}\big(\nabla f_i(x_t) - \alpha_i\big)
            + \frac1n\sum_{j=1}^n \alpha_j, \qquad
      \alpha_i \leftarrow \nabla f_i(x_t)\ (i \in I),

      v_t = \arg\min_{v \in C}\langle d_t, v\rangle, \qquad
      x_{t+1} = (1-\eta_t) x_t + \eta_t v_t .

    The first term uses the transform's input ``grads`` (the minibatch mean
    :math:`\frac1b\sum_{i\in I}\nabla f_i(x_t)`). The table starts at zero,
    which keeps the estimate unbiased; to start from :math:`\nabla f_i(x_0)` as
    Reddi et al. do, replace ``table`` and ``table_mean`` in the state after
    ``init`` (:func:`sparsejax.optim.fw_finite_sum.saga_fw_run` runs the whole
    algorithm that way). The table costs ``num_samples`` copies of the params.

    Args:
      learning_rate: :math:`\eta_t`, a scalar or a schedule.
      constraints: as in :func:`sfw`.
      num_samples: :math:`n`, the number of summands (an integer ``>= 1``).
      rescale: ``None`` (default), ``'gradient'`` or ``'diameter'``.

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`; ``update`` requires
      ``params`` and the extra arguments ``indices`` (int array of shape
      ``(b,)``, the samples of the minibatch, in ``[0, num_samples)``) and
      ``per_sample_grads`` (a pytree like the gradients whose leaves have a
      leading axis of size ``b``, e.g. from ``jax.vmap(jax.grad(loss))``). Not
      for ``optax.MultiSteps``, which hands on the last micro-batch's extra
      arguments only.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> import sparsejax as sj
      >>> params = {'w': jnp.zeros(2)}
      >>> tx = sj.saga_fw(1.0, sj.constraints.l1_ball(1.0), num_samples=4)
      >>> per_sample = {'w': jnp.array([[1.0, 0.0], [0.0, -3.0]])}
      >>> grads = {'w': per_sample['w'].mean(0)}
      >>> updates, state = tx.update(grads, tx.init(params), params,
      ...                            indices=jnp.array([0, 2]), per_sample_grads=per_sample)
      >>> optax.apply_updates(params, updates)['w'], state.table_mean['w']
      (Array([0., 1.], dtype=float32), Array([ 0.25, -0.75], dtype=float32))

    References:
      Reddi, Sra, Póczos, Smola, *Stochastic Frank-Wolfe Methods for
      Nonconvex Optimization*, Allerton 2016; Defazio, Bach, Lacoste-Julien,
      *SAGA*, NeurIPS 2014.
    """
    check_number("learning_rate", learning_rate, ge=0, scalar=True)
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)):
        raise ValueError(
            f"num_samples must be a Python integer >= 1 (with optax.inject_hyperparams, pass it "
            f"in static_args), got {num_samples!r}"
        )
    check_number("num_samples", num_samples, ge=1, integer=True)
    _check_rescale(rescale)
    _check_constraints(constraints)
    lr = as_schedule(learning_rate)
    n = int(num_samples)

    def init_fn(params: optax.Params) -> SAGAFWState:
        table = jax.tree.map(lambda p: jnp.zeros((n,) + jnp.shape(p), jnp.result_type(p)), params)
        mean = jax.tree.map(jnp.zeros_like, params)
        return SAGAFWState(count=jnp.zeros([], jnp.int32), table=table, table_mean=mean)

    def update_fn(
        updates: optax.Updates,
        state: SAGAFWState,
        params: optax.Params | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, SAGAFWState]:
        require_params(params, "saga_fw")
        cons = _constraints_for(constraints, params, "saga_fw")
        if extra_args.get("indices") is None:
            raise ValueError(
                "sparsejax.saga_fw needs the extra argument indices=... (the minibatch's sample "
                "indices) in tx.update"
            )
        idx = jnp.asarray(extra_args["indices"]).astype(jnp.int32).reshape(-1)
        per_sample = _align_extra(
            extra_args.get("per_sample_grads"), updates, "per_sample_grads", "saga_fw"
        )

        def leaf(g, psg, table, mean):
            if jnp.shape(psg) != (idx.shape[0],) + jnp.shape(g):
                raise ValueError(
                    "saga_fw: per_sample_grads leaves must have shape (len(indices), *grad.shape), "
                    f"got {jnp.shape(psg)} for a gradient of shape {jnp.shape(g)}"
                )
            dt = compute_dtype(table.dtype)
            direction = _variance_reduced(g, table[idx].astype(dt).mean(0), mean)
            new_table = table.at[idx].set(psg.astype(table.dtype))
            new_mean = new_table.astype(dt).mean(0).astype(mean.dtype)
            return direction, new_table, new_mean

        out = jax.tree.map(leaf, updates, per_sample, state.table, state.table_mean)
        treedef = jax.tree.structure(updates)
        parts = treedef.flatten_up_to(out)
        direction = treedef.unflatten([x[0] for x in parts])
        table = treedef.unflatten([x[1] for x in parts])
        mean = treedef.unflatten([x[2] for x in parts])
        eta = jnp.asarray(lr(state.count), tree_compute_dtype(params))
        new_updates = _fw_updates(params, direction, cons, eta, rescale)
        return new_updates, SAGAFWState(optax.safe_increment(state.count), table, mean)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# --- SFW-Init -------------------------------------------------------------------------------


class SFWInitResult(NamedTuple):
    """What :func:`sfw_init` returns.

    Attributes:
      params: the rescaled initialisation, made feasible.
      scales: the learned scale of every leaf (float32 scalars; 1 for
        unconstrained leaves).
      losses: the objective (loss on ``batch_b`` after one SFW step) at each
        iteration, before that iteration's scale update, shape ``(steps,)``.
    """

    params: PyTree
    scales: PyTree
    losses: jax.Array


def sfw_init(
    loss_fn: Callable[[PyTree, Any], jax.Array],
    params: PyTree,
    constraints: ConstraintTree,
    batch_a: Any,
    batch_b: Any,
    *,
    learning_rate: float = 0.1,
    rescale: Rescale = "gradient",
    scale_learning_rate: float = 0.1,
    steps: int = 10,
    min_scale: float | PyTree = 1e-2,
    stacked: bool = False,
) -> SFWInitResult:
    r"""SFW-Init: learn one scale per leaf so the first SFW step from the rescaled init works best.

    With :math:`\beta` one scale per leaf and :math:`\theta^\beta = \beta\odot\theta_0`,

    .. math::

      \theta_1(\beta) = \mathrm{SFW}_{A}(\theta^\beta) \ (\text{one step on batch } A,\ m_0 = g),
      \qquad
      \min_\beta\ L\big(B;\ \theta_1(\beta)\big),

      \beta \leftarrow \mathrm{clip}\big(\beta - \kappa\,\nabla_\beta L,\ \beta_{\min},\ \beta_{\max}\big),

    where :math:`B` is a second, overlapping minibatch (the paper replaces
    half of :math:`A`), :math:`\beta_{\min}` = ``min_scale`` and
    :math:`\beta_{\max}` the largest scale keeping :math:`\beta\theta_0` in
    the set (:meth:`sparsejax.constraints.Constraint.max_scale`). The result
    is made feasible at the end. The gradient flows through the rescaled
    point and the step size (with ``rescale='gradient'`` also through
    :math:`\|g\|`, a second derivative); the LMO's answer is piecewise
    constant. Unconstrained leaves keep scale 1 and take no step.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``.
      params: the plain initialisation :math:`\theta_0`.
      constraints: as in :func:`sfw`.
      batch_a: the batch of the SFW step, or (with ``stacked``) one per
        iteration stacked along a leading axis.
      batch_b: the overlapping evaluation batch (same layout).
      learning_rate: the SFW step's learning rate :math:`\alpha` (use the one
        you will train with).
      rescale: the SFW step's rescaling (see :func:`sfw`).
      scale_learning_rate: :math:`\kappa > 0`.
      steps: number of iterations, ``>= 1``.
      min_scale: :math:`\beta_{\min} > 0`, a number or a pytree prefix of the
        params (e.g. separate bounds for weights and biases).
      stacked: ``batch_a``/``batch_b`` hold one batch per iteration along
        their leading axis (fresh batches each iteration, as in the paper).

    Returns:
      An :class:`SFWInitResult` ``(params, scales, losses)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import sparsejax as sj
      >>> params = {'w': jnp.array([0.5, -0.5])}
      >>> loss = lambda p, x: jnp.sum((p['w'] - x) ** 2)
      >>> res = sj.sfw_init(loss, params, sj.constraints.l2_ball(2.0), jnp.array([1.0, -1.0]),
      ...                jnp.array([1.0, -1.0]), learning_rate=0.0, steps=20)
      >>> res.scales['w'] > 1.5  # with no step, scaling alone moves towards the target
      Array(True, dtype=bool)

    References:
      Miao et al., *Learning Pruning-Friendly Networks via Frank-Wolfe:
      One-Shot, Any-Sparsity, and No Retraining*, ICLR 2022, Algorithm 3.
    """
    check_number("learning_rate", learning_rate, ge=0, scalar=True)
    check_number("scale_learning_rate", scale_learning_rate, gt=0, scalar=True)
    check_number("steps", steps, ge=1, integer=True)
    check_number("min_scale", min_scale, gt=0)
    _check_rescale(rescale)
    _check_constraints(constraints)
    cons = leaf_constraints(constraints, params)
    leaves, treedef = jax.tree.flatten(params)
    free = [_is_free(c) for c in cons]
    lows = treedef.flatten_up_to(broadcast_prefix(min_scale, params, what="min_scale"))
    lows = jnp.asarray([1.0 if f else float(lo) for f, lo in zip(free, lows)], jnp.float32)
    highs = jnp.stack(
        [
            jnp.ones([], jnp.float32) if f else jnp.asarray(c.max_scale(x), jnp.float32)
            for f, c, x in zip(free, cons, leaves)
        ]
    ) if leaves else jnp.zeros([0], jnp.float32)
    highs = jnp.where(jnp.asarray(free, bool), 1.0, jnp.maximum(highs, lows))
    trainable = jnp.asarray([not f for f in free], jnp.float32)
    lr = jnp.asarray(learning_rate, jnp.float32)

    def scaled(beta: jax.Array) -> PyTree:
        return treedef.unflatten(
            [(x.astype(jnp.float32) * beta[i]).astype(x.dtype) for i, x in enumerate(leaves)]
        )

    def objective(beta: jax.Array, ba: Any, bb: Any) -> jax.Array:
        p0 = scaled(beta)
        g = jax.grad(loss_fn)(p0, ba)
        p1 = optax.apply_updates(p0, _fw_updates(p0, g, cons, lr, rescale))
        return loss_fn(p1, bb)

    @jax.jit
    def step(beta: jax.Array, ba: Any, bb: Any) -> tuple[jax.Array, jax.Array]:
        value, grad = jax.value_and_grad(objective)(beta, ba, bb)
        beta = jnp.clip(beta - scale_learning_rate * trainable * grad, lows, highs)
        return beta, value

    beta = jnp.clip(jnp.ones(len(leaves), jnp.float32), lows, highs)
    losses = []
    for t in range(int(steps)):
        if stacked:
            ba, bb = jax.tree.map(lambda x: x[t], (batch_a, batch_b))
        else:
            ba, bb = batch_a, batch_b
        beta, value = step(beta, ba, bb)
        losses.append(value)
    new_params = treedef.unflatten(
        [x if f else c.make_feasible(x) for x, f, c in zip(jax.tree.leaves(scaled(beta)), free, cons)]
    )
    scales = treedef.unflatten([beta[i] for i in range(len(leaves))])
    return SFWInitResult(new_params, scales, jnp.stack(losses))
