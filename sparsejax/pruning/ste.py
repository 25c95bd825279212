r"""Magnitude pruning with the straight-through estimator (STE), around any optimizer.

:func:`ste_pruning` keeps the dense weights in its state and gives the
forward pass the masked ones: the mask is the top of the dense weights'
magnitudes (per layer or global, any pattern of :mod:`sparsejax.patterns`,
N:M included) at a sparsity that follows the gradual schedule of Zhu and
Gupta; the dense weights are updated with the gradient of the sparse forward
pass (the straight-through estimator), optionally with SR-STE's decay of the
pruned weights. :func:`ste_update_due` is its mask-update rule on the host,
:func:`ste_dense_params` reads the dense weights back. The masks are applied
as part of the update, as in :mod:`sparsejax.pruning.dynamic` (whose helpers
over the selected leaves this module shares).

References:
  Bengio, Léonard and Courville 2013 (straight-through estimator); Zhou et al.,
  *Learning N:M Fine-grained Structured Sparse Neural Networks From Scratch*,
  ICLR 2021 (SR-STE); Zhu and Gupta, *To prune, or not to prune*, ICLR-W 2018.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sparsejax._validation import check_choice, check_number, concrete_value, require_params
from sparsejax.patterns import parse_pattern
from sparsejax.pruning.dynamic import (
    _check_nm_sparsity,
    _check_pattern,
    _mask_update_flag,
    _selected,
)
from sparsejax.pruning.gradual import polynomial_sparsity
from sparsejax.pruning.pattern_masks import pattern_keep
from sparsejax.pruning.support import Support
from sparsejax.tree import Mask, PyTree

__all__ = ["STEState", "ste_dense_params", "ste_pruning", "ste_update_due"]


def ste_update_due(step: int, *, begin_step: int, frequency: int = 1) -> bool:
    r"""Whether :func:`ste_pruning` recomputes its mask at the 0-based ``step`` (on the host).

    The transform's own rule: :math:`\text{step} \ge t_0` and
    :math:`(\text{step} - t_0) \bmod \Delta t = 0`. Pass
    ``mask_update=ste_update_due(step, ...)`` to ``update`` to skip the
    selection on the other steps (see :func:`~sparsejax.pruning.dst_update_due`).

    Args:
      step: the number of updates made before this one (>= 0).
      begin_step: :math:`t_0`, as given to :func:`ste_pruning`.
      frequency: :math:`\Delta t`, as given to :func:`ste_pruning`.

    Returns:
      ``True`` where the mask is recomputed at this step.

    Example:
      >>> from sparsejax.pruning import ste_update_due
      >>> [s for s in range(8) if ste_update_due(s, begin_step=2, frequency=3)]
      [2, 5]
    """
    for name, value, low in (("step", step, 0), ("begin_step", begin_step, 0),
                             ("frequency", frequency, 1)):
        check_number(name, value, ge=low, integer=True)
    return step >= begin_step and (step - begin_step) % frequency == 0


class STEState(NamedTuple):
    """State of :func:`ste_pruning`.

    Attributes:
      count: number of updates so far (int32).
      sparsity: the target sparsity of the last mask update (float32).
      support: the current mask (the forward pass sees ``params``, which are
        the dense weights times this mask).
      hidden: the dense weights at the masked-out entries (zero elsewhere),
        ``None`` for dense leaves: the dense weights are
        ``where(support, params, hidden)``.
      inner_state: the state of the wrapped optimizer.
    """

    count: jax.Array
    sparsity: jax.Array
    support: Support
    hidden: PyTree
    inner_state: optax.OptState


class _STEHyper(NamedTuple):
    final_sparsity: jax.Array
    initial_sparsity: jax.Array
    begin_step: jax.Array
    end_step: jax.Array
    frequency: jax.Array
    power: jax.Array
    erk_power_scale: jax.Array


@functools.partial(jax.jit, static_argnames=("pattern", "scope", "distribution", "branch"))
def _ste_mask(t, sparsity, old, dense, hyper: _STEHyper, pattern, scope, distribution,
              branch=True):
    due = (t >= hyper.begin_step) & (((t - hyper.begin_step) % hyper.frequency) == 0)

    def recompute():
        s = polynomial_sparsity(
            hyper.final_sparsity, hyper.begin_step, hyper.end_step,
            hyper.initial_sparsity, hyper.power,
        )(t)
        keep = pattern_keep([jnp.abs(w) for w in dense], pattern, s, scope, distribution,
                            hyper.erk_power_scale)
        return keep, s

    if branch:
        return jax.lax.cond(due, recompute, lambda: (list(old), sparsity))
    keep, s = recompute()  # mask_update=True: no control flow, kept where due
    return [jnp.where(due, k, o) for k, o in zip(keep, old)], jnp.where(due, s, sparsity)


def ste_pruning(
    inner: optax.GradientTransformation,
    final_sparsity: float,
    begin_step: int,
    end_step: int,
    frequency: int = 1,
    initial_sparsity: float = 0.0,
    power: float = 3,
    sr_ste_decay: float = 0.0,
    *,
    scope: str = "layerwise",
    distribution: str = "uniform",
    erk_power_scale: float = 1.0,
    pattern: str | None = None,
    mask: Mask = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Magnitude pruning with the straight-through estimator (STE), optionally SR-STE.

    The transform keeps dense weights :math:`\tilde w` (the params at the
    active entries, the rest in its state) and makes the params equal to the
    masked weights :math:`w = m \odot \tilde w`, so the forward pass (and the
    gradient :math:`g = \nabla L(w)` the caller computes at the params) sees
    the sparse network. The gradient goes straight through to the dense weights:

    .. math::

      \tilde w_{t+1} = \tilde w_t + \text{inner}\big(g_t + \lambda_W (\lnot m_t) \odot
      \tilde w_t\big), \qquad
      m_{t+1} = \operatorname{TopK}(|\tilde w_{t+1}|, s_t), \qquad
      w_{t+1} = m_{t+1} \odot \tilde w_{t+1},

    with :math:`\lambda_W` = ``sr_ste_decay`` (SR-STE's decay of the pruned
    weights; 0 is plain STE) and :math:`s_t` Zhu & Gupta's schedule
    (:func:`~sparsejax.pruning.polynomial_sparsity`), the mask recomputed every
    ``frequency`` steps from ``begin_step`` on (and going on after
    ``end_step`` at :math:`s_f`). Unlike gradual pruning, masked weights keep
    training and come back when they grow. The inner optimizer sees the dense
    weights as its ``params`` (weight decay acts on them). The dense weights are
    :func:`ste_dense_params` of the params and the state. The SR-STE term is
    computed in the params' compute dtype (float32, float64 for float64 params).

    The mask starts all True (:math:`m_0 = 1`): the first mask is computed
    after the step ``begin_step`` (from the dense weights that step produces),
    so the forward passes up to and including step ``begin_step`` see the
    dense network; with ``begin_step=0`` only step 0 is dense. (SR-STE's
    reference code computes the N:M mask inside every forward pass, step 0's
    included; from step 1 on the two agree.)

    Args:
      inner: the optimizer (wrap the whole chain).
      final_sparsity: :math:`s_f \in [0, 1)`; with an ``'N:M'`` pattern it must
        be :math:`1 - N/M` (then :math:`\operatorname{round}(s_t M)` entries of
        every group are masked).
      begin_step: first step (0-based) of the mask.
      end_step: step at which :math:`s_f` is reached.
      frequency: steps between mask updates (1: every step).
      initial_sparsity: :math:`s_i`.
      power: the schedule's exponent (3).
      sr_ste_decay: :math:`\lambda_W \ge 0` (SR-STE uses 2e-4).
      scope: ``'layerwise'`` or ``'global'``.
      distribution: ``'uniform'`` or ``'erk'`` (layer-wise).
      erk_power_scale: ERK's power.
      pattern: sparsity pattern (:mod:`sparsejax.patterns`), N:M included.
      mask: which leaves are sparse (default: every leaf).

    Returns:
      An :class:`optax.GradientTransformationExtraArgs` with state :class:`STEState`;
      ``update`` requires ``params`` and takes the extra argument
      ``mask_update`` (``None``, ``True``, ``False``) with the meaning given
      in :func:`rigl` and :func:`ste_update_due` as the host-side rule.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> import sparsejax as sj
      >>> params = {'kernel': jnp.array([[1.0, -2.0], [0.5, 3.0]])}
      >>> tx = sj.pruning.ste_pruning(optax.sgd(1.0), 0.5, begin_step=0, end_step=0)
      >>> state = tx.init(params)
      >>> updates, state = tx.update({'kernel': jnp.array([[0.0, 0.0], [-1.0, 0.0]])}, state, params)
      >>> optax.apply_updates(params, updates)['kernel']
      Array([[ 0., -2.],
             [ 0.,  3.]], dtype=float32)
      >>> sj.pruning.ste_dense_params(optax.apply_updates(params, updates), state)['kernel']
      Array([[ 1. , -2. ],
             [ 1.5,  3. ]], dtype=float32)

    References:
      Bengio, Léonard and Courville, *Estimating or Propagating Gradients
      Through Stochastic Neurons*, 2013 (STE); Zhu and Gupta 2018 (schedule);
      Zhou et al., *Learning N:M Fine-grained Structured Sparse Neural Networks
      From Scratch*, ICLR 2021 (SR-STE, eq. 6).
    """
    check_number("final_sparsity", final_sparsity, ge=0, lt=1)
    check_number("initial_sparsity", initial_sparsity, ge=0, lt=1)
    check_number("begin_step", begin_step, ge=0, integer=True)
    check_number("end_step", end_step, ge=0, integer=True)
    check_number("frequency", frequency, ge=1, integer=True)
    check_number("power", power, gt=0)
    check_number("sr_ste_decay", sr_ste_decay, ge=0)
    check_number("erk_power_scale", erk_power_scale, ge=0)
    t0, t1 = concrete_value(begin_step), concrete_value(end_step)
    if t0 is not None and t1 is not None and t1 < t0:
        raise ValueError(f"end_step must be >= begin_step, got {end_step} < {begin_step}")
    check_choice("scope", scope, ("global", "layerwise"))
    check_choice("distribution", distribution, ("uniform", "erk"))
    if scope == "global" and distribution != "uniform":
        raise ValueError(f"distribution={distribution!r} needs scope='layerwise'")
    structure = _check_nm_sparsity(parse_pattern(pattern), final_sparsity, "final_sparsity")

    def init_fn(params: optax.Params) -> STEState:
        flags = _selected(params, mask)
        _check_pattern(structure, params, flags)
        support = jax.tree.unflatten(
            jax.tree.structure(params),
            [jnp.ones(jnp.shape(x), bool) if s else None for x, s in zip(jax.tree.leaves(params), flags)],
        )
        hidden = jax.tree.map(lambda m, p: None if m is None else jnp.zeros_like(p), support, params,
                              is_leaf=lambda x: x is None)
        return STEState(jnp.zeros([], jnp.int32), jnp.zeros([], jnp.float32), support, hidden,
                        inner.init(params))

    def update_fn(updates, state, params=None, **extra_args):
        require_params(params, "pruning.ste_pruning")
        flag = _mask_update_flag(extra_args, "ste_pruning")
        treedef = jax.tree.structure(state.support, is_leaf=lambda x: x is None)
        ms = treedef.flatten_up_to(state.support)
        hs = treedef.flatten_up_to(state.hidden)
        ps = treedef.flatten_up_to(params)
        gs = treedef.flatten_up_to(updates)
        dense = [p if m is None else jnp.where(m, p, h) for m, p, h in zip(ms, ps, hs)]

        def sr_ste(m: jax.Array, h: jax.Array) -> jax.Array:
            # in the params' compute dtype: float32 for bf16/f16/f32, float64 for float64 params
            dt = jnp.promote_types(h.dtype, jnp.float32)
            decay = jnp.asarray(sr_ste_decay, dt)
            return decay * jnp.where(m, jnp.zeros((), dt), h.astype(dt))

        # The SR-STE term reads the hidden values (the dense weights where masked), not `dense`:
        # each loop then reads only the arrays it needs (see the ordinary step below).
        grads = [
            g if m is None or g is None else g + sr_ste(m, h).astype(g.dtype)
            for m, g, h in zip(ms, gs, hs)
        ]
        u, inner_state = optax.with_extra_args_support(inner).update(
            treedef.unflatten(grads), state.inner_state, treedef.unflatten(dense), **extra_args
        )
        us = treedef.flatten_up_to(u)
        new_dense = [None if m is None else (d + du).astype(d.dtype) for m, d, du in zip(ms, dense, us)]
        hyper = _STEHyper(
            final_sparsity=jnp.asarray(final_sparsity, jnp.float32),
            initial_sparsity=jnp.asarray(initial_sparsity, jnp.float32),
            begin_step=jnp.asarray(begin_step, jnp.int32),
            end_step=jnp.asarray(end_step, jnp.int32),
            frequency=jnp.asarray(frequency, jnp.int32),
            power=jnp.asarray(power, jnp.float32),
            erk_power_scale=jnp.asarray(erk_power_scale, jnp.float32),
        )
        old = [m for m in ms if m is not None]
        chosen = [d for d in new_dense if d is not None]
        if flag is False:  # the caller guarantees that the mask is not recomputed now
            keep, s = old, state.sparsity
        else:
            keep, s = _ste_mask(state.count, state.sparsity, old, chosen, hyper, structure, scope,
                                distribution, branch=flag is None)
        it = iter(keep)
        out_u, out_m, out_h = [], [], []
        for m, p, h, du, nd in zip(ms, ps, hs, us, new_dense):
            if m is None:
                out_u.append(du)
                out_m.append(None)
                out_h.append(None)
                continue
            k = next(it)
            out_m.append(k)
            if flag is False:
                # The mask stays: the params move by the inner update where active and stay 0
                # elsewhere, the hidden values by it where masked (h + du is the dense weight
                # there). The same values as the general form below, written so that the
                # params' loop reads no hidden value and the hidden values' loop no param:
                # nothing to materialise before the donated buffers are overwritten.
                out_u.append(jnp.where(m, du, (-p).astype(du.dtype)))
                out_h.append(jnp.where(m, jnp.zeros_like(h), (h + du).astype(h.dtype)))
                continue
            # Active before and after: the inner update itself (p + du is the dense weight);
            # newly active: the dense value (p is 0); masked: -p.
            step = jnp.where(m, du, nd.astype(du.dtype))
            out_u.append(jnp.where(k, step, (-p).astype(du.dtype)))
            out_h.append(jnp.where(k, jnp.zeros_like(nd), nd))
        return treedef.unflatten(out_u), STEState(
            optax.safe_increment(state.count), jnp.asarray(s, jnp.float32),
            treedef.unflatten(out_m), treedef.unflatten(out_h), inner_state,
        )

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def ste_dense_params(params: PyTree, state: Any) -> PyTree:
    """The dense weights of :func:`ste_pruning`: the params where active, the state's hidden values elsewhere.

    ``state`` may be the :class:`STEState` or any optimizer state containing
    exactly one (e.g. inside ``optax.chain`` or ``inject_hyperparams``).

    Example:
      >>> import jax.numpy as jnp, optax
      >>> import sparsejax as sj
      >>> tx = sj.pruning.ste_pruning(optax.sgd(1.0), 0.5, begin_step=0, end_step=0)
      >>> state = tx.init({'w': jnp.array([1.0, 2.0])})
      >>> sj.pruning.ste_dense_params({'w': jnp.array([1.0, 2.0])}, state)['w']
      Array([1., 2.], dtype=float32)
    """
    found = [s for s in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, STEState))
             if isinstance(s, STEState)]
    if len(found) != 1:
        raise ValueError(f"state must contain exactly one STEState, found {len(found)}")
    st = found[0]
    treedef = jax.tree.structure(st.support, is_leaf=lambda x: x is None)
    ms = treedef.flatten_up_to(st.support)
    hs = treedef.flatten_up_to(st.hidden)
    ps = treedef.flatten_up_to(params)
    return treedef.unflatten([p if m is None else jnp.where(m, p, h) for m, p, h in zip(ms, ps, hs)])
