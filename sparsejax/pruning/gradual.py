"""Gradual magnitude pruning (Zhu & Gupta): a polynomial sparsity schedule as an Optax wrapper."""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sparsejax._validation import check_choice, check_number, concrete_value, require_params
from sparsejax.patterns import Pattern, group_shape, parse_pattern
from sparsejax.pruning.distribution import layer_remove_counts
from sparsejax.pruning.magnitude import check_layerwise_room, check_not_all_removed
from sparsejax.pruning.pattern_masks import check_leaves, check_nonempty, pattern_keep
from sparsejax.pruning.support import Support
from sparsejax.tree import Mask, leaves_with_paths, resolve_mask
from sparsejax.pruning.retrain import masked_update
from sparsejax.pruning.saliency import saliency_scores, uniform_scores
from sparsejax.select import pruned_entries

__all__ = ["GradualPruningState", "gradual_pruning", "polynomial_sparsity"]


def polynomial_sparsity(
    final_sparsity: Any,
    begin_step: Any,
    end_step: Any,
    initial_sparsity: Any = 0.0,
    power: Any = 3,
) -> optax.Schedule:
    r"""Zhu & Gupta's sparsity schedule.

    .. math::

      s_t = s_f + (s_i - s_f)\Big(1 - \frac{t - t_0}{n\Delta t}\Big)^{p},
      \qquad t_0 \le t \le t_0 + n\Delta t,

    with :math:`n\Delta t` = ``end_step - begin_step`` and :math:`p = 3` in
    the paper; :math:`s_t = s_i` before :math:`t_0` and :math:`s_f` after the
    end. The schedule rises fast at first and levels off, when fewer weights
    are left to remove.

    Args:
      final_sparsity: :math:`s_f \in [0, 1)`.
      begin_step: :math:`t_0 \ge 0`.
      end_step: :math:`t_0 + n\Delta t \ge t_0`.
      initial_sparsity: :math:`s_i \in [0, 1)`.
      power: :math:`p > 0`.

    Returns:
      An :class:`optax.Schedule` ``count -> s_t`` (float32).

    Example:
      >>> import sparsejax as sj
      >>> schedule = sj.pruning.polynomial_sparsity(0.8, begin_step=10, end_step=20)
      >>> [round(float(schedule(t)), 3) for t in (0, 10, 15, 20, 30)]
      [0.0, 0.0, 0.7, 0.8, 0.8]

    References:
      Zhu and Gupta, *To prune, or not to prune: exploring the efficacy of
      pruning for model compression*, ICLR Workshop 2018 (arXiv:1710.01878), eq. (1).
    """

    def schedule(count: Any) -> jax.Array:
        t = jnp.asarray(count, jnp.float32)
        t0 = jnp.asarray(begin_step, jnp.float32)
        span = jnp.asarray(end_step, jnp.float32) - t0
        progress = jnp.where(
            span > 0,
            jnp.clip((t - t0) / jnp.where(span > 0, span, 1.0), 0.0, 1.0),
            jnp.where(t >= t0, 1.0, 0.0),
        )
        s_f = jnp.asarray(final_sparsity, jnp.float32)
        s_i = jnp.asarray(initial_sparsity, jnp.float32)
        return s_f + (s_i - s_f) * (1.0 - progress) ** jnp.asarray(power, jnp.float32)

    return schedule


class GradualPruningState(NamedTuple):
    """State of :func:`gradual_pruning`.

    Attributes:
      count: number of updates so far (int32).
      sparsity: the target sparsity of the last mask update (float32; 0 before
        the first one).
      support: the current support (boolean arrays, ``None`` for dense leaves).
      inner_state: the state of the wrapped optimizer.
    """

    count: jax.Array
    sparsity: jax.Array
    support: Support
    inner_state: optax.OptState


class _Hyper(NamedTuple):
    final_sparsity: jax.Array
    initial_sparsity: jax.Array
    begin_step: jax.Array
    end_step: jax.Array
    frequency: jax.Array
    power: jax.Array
    erk_power_scale: jax.Array


def _scores(
    score: str, weights: list[jax.Array], grads: list[jax.Array], seed: jax.Array, t: jax.Array
) -> list[jax.Array]:
    """The importance of each selected weight at a mask update (the lowest are removed)."""
    if score == "magnitude":
        return [jnp.abs(w) for w in weights]
    if score == "saliency":
        return saliency_scores(weights, grads)
    # "random": fresh at every update
    return uniform_scores(jax.random.fold_in(jax.random.PRNGKey(seed), t), [w.shape for w in weights])


@functools.partial(jax.jit, static_argnames=("scope", "distribution", "pattern", "score"))
def _maybe_update_support(
    t: jax.Array,
    sparsity: jax.Array,
    old: list[jax.Array],
    params: list[jax.Array],
    updates: list[jax.Array],
    hyper: _Hyper,
    scope: str,
    distribution: str,
    pattern: Pattern = Pattern("unstructured"),
    grads: list[jax.Array] | None = None,
    score: str = "magnitude",
    seed: jax.Array | int = 0,
) -> tuple[list[jax.Array], jax.Array]:
    """The support after step ``t``: recomputed on the steps of the schedule, else ``old``.

    Jitted at module level, so that eager (un-jitted) training loops compile it once.
    """
    due = (
        (t >= hyper.begin_step)
        & (t <= hyper.end_step)
        & ((((t - hyper.begin_step) % hyper.frequency) == 0) | (t == hyper.end_step))
    )

    def recompute() -> tuple[list[jax.Array], jax.Array]:
        s = polynomial_sparsity(
            hyper.final_sparsity, hyper.begin_step, hyper.end_step,
            hyper.initial_sparsity, hyper.power,
        )(t)
        weights = [p.astype(jnp.float32) + u.astype(jnp.float32) for p, u in zip(params, updates)]
        importance = _scores(score, weights, grads, seed, t)
        if pattern.kind != "unstructured":
            keep = pattern_keep(importance, pattern, s, scope, distribution,
                                hyper.erk_power_scale, keep_old=old)
            return keep, s
        total = sum(int(w.size) for w in weights)
        k = jnp.round(s * jnp.float32(total)).astype(jnp.int32)
        # Weights pruned before score below everything, and every count is at least
        # what is pruned already, so they stay pruned.
        scores = [jnp.where(m, x, -jnp.inf) for m, x in zip(old, importance)]
        removed = jnp.stack([jnp.sum(~m, dtype=jnp.int32) for m in old])
        if scope == "global":
            counts = jnp.reshape(jnp.maximum(k, jnp.sum(removed)), (1,))
        else:
            shapes = [w.shape for w in weights]
            counts = layer_remove_counts(shapes, k, distribution, hyper.erk_power_scale,
                                         at_least=removed)
        pruned = pruned_entries(scores, counts, scope == "layerwise")
        return [~p.reshape(w.shape) for p, w in zip(pruned, weights)], s

    return jax.lax.cond(due, recompute, lambda: (list(old), sparsity))


def _check_final_count(
    final_sparsity: float | None, pattern: Pattern, shapes: list[tuple[int, ...]], scope: str
) -> None:
    r"""Refuses a final sparsity whose last mask update would prune a whole selected leaf.

    The counts are those of the mask update at ``end_step`` (float32, round half
    to even): :math:`K = \operatorname{round}(s_f N)` of the :math:`N` weights,
    blocks or channels; ``scope='layerwise'`` leaves every non-empty leaf at
    least one of them while :math:`K \le \sum_l (n_l - 1)`.
    """
    if final_sparsity is None or pattern.kind == "n:m":  # N:M removes M - N < M of each group
        return
    sizes = [math.prod(group_shape(pattern, shape)) for shape in shapes]
    total = sum(sizes)
    what = {"unstructured": "weights", "block": "blocks", "channel": "channels"}[pattern.kind]
    k = int(np.round(np.float32(final_sparsity) * np.float32(total)))
    check_not_all_removed("final_sparsity", final_sparsity, k, total, what)
    if scope == "layerwise":
        check_layerwise_room("final_sparsity", final_sparsity, k, sizes, what)


def gradual_pruning(
    inner: optax.GradientTransformation,
    final_sparsity: float,
    begin_step: int,
    end_step: int,
    frequency: int = 100,
    initial_sparsity: float = 0.0,
    power: float = 3,
    *,
    scope: str = "layerwise",
    distribution: str = "uniform",
    erk_power_scale: float = 1.0,
    mask: Mask = None,
    pattern: str | None = None,
    score: str = "magnitude",
    seed: int = 0,
) -> optax.GradientTransformationExtraArgs:
    r"""Gradual magnitude pruning around any optimizer (Zhu & Gupta's schedule).

    The inner optimizer proposes updates :math:`u_t`; every :math:`\Delta t`
    = ``frequency`` steps from :math:`t_0` = ``begin_step`` to ``end_step``
    (and at ``end_step`` itself) the support are recomputed so that the
    smallest-magnitude weights of :math:`w_t + u_t` are removed, up to the
    sparsity

    .. math::

      s_t = s_f + (s_i - s_f)\Big(1 - \frac{t - t_0}{n\Delta t}\Big)^3

    (:func:`polynomial_sparsity`; weights pruned earlier stay pruned). The
    support live in the state and are applied as part of the update (pruned
    weights get :math:`-w_t`, so they are exactly zero after
    ``optax.apply_updates``; the others get :math:`u_t`): no extra call after
    ``apply_updates``. With ``score='saliency'`` the weights removed are those
    of smallest first-order saliency :math:`|(w_t + u_t) \odot g_t|`
    (:func:`~sparsejax.pruning.saliency_scores`, with :math:`g_t` the gradient
    passed to ``update``: the Taylor criterion on the same schedule), and with
    ``score='random'`` a uniformly random choice among the remaining weights,
    redrawn at every mask update (:func:`~sparsejax.pruning.random_scores`'s
    distribution; the control of a pruning study). It is jit-able: the mask update is a ``lax.cond`` and
    the state keeps its shapes. As it writes the final update, it goes last in
    a chain, or wraps the whole chain as ``inner``.

    Args:
      inner: the optimizer whose updates are masked, e.g. ``optax.sgd(0.1, 0.9)``.
      final_sparsity: :math:`s_f \in [0, 1)`, the share of the selected
        weights removed at the end; it must leave at least one weight (block,
        channel) of the selection, and with ``scope='layerwise'`` one of every
        selected leaf (else ``init`` raises a ``ValueError``).
      begin_step: :math:`t_0 \ge 0`, the step (counted from 0) of the first
        mask update (to :math:`s_i`).
      end_step: the step of the last mask update (to :math:`s_f`),
        :math:`t_0 + n\Delta t`.
      frequency: :math:`\Delta t \ge 1`, steps between mask updates.
      initial_sparsity: :math:`s_i \in [0, s_f]`.
      power: the exponent (3 in the paper).
      scope: ``'layerwise'`` (every leaf to :math:`s_t`, as in the paper) or
        ``'global'`` (one threshold over all selected leaves).
      distribution: with ``scope='layerwise'``, ``'uniform'`` or ``'erk'``
        (see :func:`sparsejax.pruning.erk_densities`).
      erk_power_scale: ERK's power scale.
      mask: which leaves are pruned: ``None`` (the default) for every leaf,
        a path regex, a pytree of booleans or a callable such as
        :func:`sparsejax.tree.weights_only` (the usual choice). With
        ``optax.inject_hyperparams``, list ``inner`` and ``mask`` in ``static_args``.
      pattern: sparsity pattern (:mod:`sparsejax.patterns`): ``None``
        (unstructured), blocks ``'RxC'`` or ``'channel'`` (the schedule then
        counts blocks or channels), or ``'N:M'``, where ``final_sparsity`` must
        be :math:`1 - N/M` and every group of :math:`M` loses
        :math:`\operatorname{round}(s_t M)` entries (2:4 is reached through 3:4).
      score: what is removed first: ``'magnitude'`` (the paper), ``'saliency'``
        (smallest :math:`|w \odot g|`; wrap the whole optimizer, so that
        ``update`` receives the gradient) or ``'random'``.
      seed: seed of ``score='random'``.

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`; ``update`` requires ``params``.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> import sparsejax as sj
      >>> params = {'kernel': jax.random.normal(jax.random.key(0), (20, 10)), 'bias': jnp.zeros(10)}
      >>> tx = sj.pruning.gradual_pruning(optax.sgd(0.01), final_sparsity=0.9,
      ...                              begin_step=0, end_step=4, frequency=2)
      >>> state = tx.init(params)
      >>> for _ in range(5):
      ...   updates, state = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
      ...   params = optax.apply_updates(params, updates)
      >>> round(float(jnp.mean(params['kernel'] == 0)), 4), round(float(state.sparsity), 4)
      (0.9, 0.9)

    References:
      Zhu and Gupta, *To prune, or not to prune: exploring the efficacy of
      pruning for model compression*, ICLR Workshop 2018 (arXiv:1710.01878).
    """
    check_number("final_sparsity", final_sparsity, ge=0, lt=1)
    check_number("initial_sparsity", initial_sparsity, ge=0, lt=1)
    check_number("begin_step", begin_step, ge=0, integer=True)
    check_number("end_step", end_step, ge=0, integer=True)
    check_number("frequency", frequency, ge=1, integer=True)
    check_number("power", power, gt=0)
    check_number("erk_power_scale", erk_power_scale, ge=0)
    check_choice("scope", scope, ("global", "layerwise"))
    check_choice("score", score, ("magnitude", "saliency", "random"))
    check_number("seed", seed, ge=0, integer=True)
    check_choice("distribution", distribution, ("uniform", "erk"))
    if scope == "global" and distribution != "uniform":
        raise ValueError(
            f"distribution={distribution!r} sets per-layer sparsities and needs scope='layerwise'"
        )
    structure = parse_pattern(pattern)
    if structure.kind == "n:m":
        s_f_value = concrete_value(final_sparsity)
        target = 1.0 - structure.n / structure.m
        if s_f_value is not None and abs(s_f_value - target) > 1e-6:
            raise ValueError(
                f"pattern {structure} has sparsity {target:g}; pass final_sparsity={target:g}"
            )
    t0, t1 = concrete_value(begin_step), concrete_value(end_step)
    if t0 is not None and t1 is not None and t1 < t0:
        raise ValueError(f"end_step must be >= begin_step, got {end_step} < {begin_step}")
    s_i, s_f = concrete_value(initial_sparsity), concrete_value(final_sparsity)
    if s_i is not None and s_f is not None and s_i > s_f:
        raise ValueError(
            f"initial_sparsity must be <= final_sparsity, got {initial_sparsity} > {final_sparsity}"
        )

    def init_fn(params: optax.Params) -> GradualPruningState:
        selected = resolve_mask(mask, params, nonempty=True)
        flags = jax.tree.leaves(selected)
        rows = [(path, x) for (path, x), f in zip(leaves_with_paths(params), flags) if f]
        if rows:
            shapes = [tuple(jnp.shape(x)) for _, x in rows]
            if structure.kind != "unstructured":
                check_leaves(structure, shapes, [p for p, _ in rows])
            else:
                check_nonempty(shapes)
            _check_final_count(concrete_value(final_sparsity), structure, shapes, scope)
        support = jax.tree.map(lambda p, s: jnp.ones(p.shape, bool) if s else None, params, selected)
        return GradualPruningState(
            count=jnp.zeros([], jnp.int32),
            sparsity=jnp.zeros([], jnp.float32),
            support=support,
            inner_state=inner.init(params),
        )

    def update_fn(
        updates: optax.Updates,
        state: GradualPruningState,
        params: optax.Params | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, GradualPruningState]:
        require_params(params, "pruning.gradual_pruning")
        inner_updates, inner_state = optax.with_extra_args_support(inner).update(
            updates, state.inner_state, params, **extra_args
        )
        t = state.count
        old, treedef = jax.tree.flatten(state.support)
        sparsity = state.sparsity
        support = state.support
        if old:
            selected = jax.tree.leaves(resolve_mask(mask, params, nonempty=True))
            triples = zip(jax.tree.leaves(params), jax.tree.leaves(inner_updates), selected)
            chosen = [(p, u) for p, u, s in triples if s]
            hyper = _Hyper(
                final_sparsity=jnp.asarray(final_sparsity, jnp.float32),
                initial_sparsity=jnp.asarray(initial_sparsity, jnp.float32),
                begin_step=jnp.asarray(begin_step, jnp.int32),
                end_step=jnp.asarray(end_step, jnp.int32),
                frequency=jnp.asarray(frequency, jnp.int32),
                power=jnp.asarray(power, jnp.float32),
                erk_power_scale=jnp.asarray(erk_power_scale, jnp.float32),
            )
            grads = [g for g, s in zip(jax.tree.leaves(updates), selected) if s]
            leaves, sparsity = _maybe_update_support(
                t, state.sparsity, old, [p for p, _ in chosen], [u for _, u in chosen],
                hyper, scope, distribution, structure, grads, score,
                jnp.asarray(seed, jnp.uint32),
            )
            support = jax.tree.unflatten(treedef, leaves)
        new_updates = masked_update(inner_updates, support, params)
        new_state = GradualPruningState(
            count=optax.safe_increment(t),
            sparsity=jnp.asarray(sparsity, jnp.float32),
            support=support,
            inner_state=inner_state,
        )
        return new_updates, new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
