r"""Mask-based sparse training around any optimizer: static masks, SET and RigL.

Each factory wraps an inner Optax optimizer and returns an
:class:`optax.GradientTransformationExtraArgs` whose state holds the support
(the mask: ``True`` = active, ``None`` for dense leaves). The mask is applied
*as part of the update* (an inactive weight gets :math:`-w`, so it is exactly
zero after ``optax.apply_updates``): no call after ``apply_updates``. Wrap the
whole optimizer (``rigl(optax.chain(...), ...)``): the transform then sees the
gradient (RigL grows by it) and resets the wrapped optimizer's buffers (momentum,
Adam's moments) at grown weights; a transform chained after another optimizer
would grow by that optimizer's updates and leave its buffers alone.

* :func:`static_sparse`: a fixed random mask, uniform or ERK per layer;
* :func:`set_` (Mocanu et al. 2018): every :math:`\Delta T` steps drop the
  smallest-magnitude active weights and regrow as many at random;
* :func:`rigl` (Evci et al. 2020): drop by magnitude, grow by the magnitude of
  the dense gradient, cosine-decayed drop fraction.

:func:`~sparsejax.pruning.ste_pruning` (magnitude pruning with the
straight-through estimator, :mod:`sparsejax.pruning.ste`) holds its mask the
same way and shares this module's helpers over the selected leaves.

Every mask has a sparsity pattern (``pattern=``, :mod:`sparsejax.patterns`):
unstructured, blocks or channels for all of them (RigL and SET then drop and
grow whole blocks or channels, with a block's score the sum of its entries'
scores), and N:M for :func:`static_sparse` (and STE).

References:
  Mocanu, Mocanu, Stone, Nguyen, Gibescu and Liotta, *Scalable training of
  artificial neural networks with adaptive sparse connectivity inspired by
  network science*, Nature Communications 2018; Evci, Gale, Menick, Castro and
  Elsen, *Rigging the Lottery: Making All Tickets Winners*, ICML 2020.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sparsejax._validation import check_choice, check_number, concrete_value, require_params
from sparsejax.patterns import Pattern, expand_groups, group_scores, parse_pattern
from sparsejax.pruning.pattern_masks import check_leaves, group_any, pattern_keep
from sparsejax.pruning.saliency import uniform_scores
from sparsejax.select import pruned_entries
from sparsejax.pruning.support import Support, map_support
from sparsejax.tree import Mask, PyTree, leaves_with_paths, resolve_mask

__all__ = [
    "SparseTrainingState",
    "cosine_drop_fraction",
    "dst_update_due",
    "reset_state_entries",
    "rigl",
    "set_",
    "static_sparse",
]


class SparseTrainingState(NamedTuple):
    """State of :func:`static_sparse`, :func:`set_` and :func:`rigl`.

    Attributes:
      count: number of updates so far (int32).
      support: the current mask (boolean arrays, ``None`` for dense leaves).
      inner_state: the state of the wrapped optimizer.
    """

    count: jax.Array
    support: Support
    inner_state: optax.OptState


def cosine_drop_fraction(alpha: Any, end_step: Any) -> optax.Schedule:
    r"""RigL's drop fraction: cosine decay from :math:`\alpha` to 0 at :math:`T_\text{end}`.

    .. math::

      f(t) = \frac{\alpha}{2}\Big(1 + \cos\frac{\pi \min(t, T_\text{end})}{T_\text{end}}\Big).

    Args:
      alpha: the initial fraction :math:`\alpha` (0.3 in the paper).
      end_step: :math:`T_\text{end}` (75% of training in the paper).

    Returns:
      A schedule ``t -> f(t)`` (float32).

    Example:
      >>> import sparsejax as sj
      >>> f = sj.pruning.cosine_drop_fraction(0.3, 100)
      >>> [round(float(f(t)), 4) for t in (0, 50, 100, 150)]
      [0.3, 0.15, 0.0, 0.0]

    References:
      Evci et al., *Rigging the Lottery: Making All Tickets Winners*, ICML 2020, eq. (1).
    """

    def schedule(count: Any) -> jax.Array:
        t = jnp.asarray(count, jnp.float32)
        end = jnp.asarray(end_step, jnp.float32)
        t = jnp.minimum(t, end)
        alpha_ = jnp.asarray(alpha, jnp.float32)
        return 0.5 * alpha_ * (1.0 + jnp.cos(jnp.pi * t / jnp.maximum(end, 1.0)))

    return schedule


def _state_matches(node: Any, treedef: Any, shapes: list[tuple[int, ...]]) -> bool:
    """Whether a subtree of an optimizer state is a params-shaped buffer (momentum, Adam moments)."""
    try:
        if jax.tree.structure(node) != treedef:
            return False
    except Exception:  # noqa: BLE001 - exotic nodes simply do not match
        return False
    leaves = jax.tree.leaves(node)
    return all(
        hasattr(x, "shape") and tuple(x.shape) == s and jnp.issubdtype(x.dtype, jnp.inexact)
        for x, s in zip(leaves, shapes)
    )


def reset_state_entries(inner_state: optax.OptState, params: PyTree, reset: PyTree) -> optax.OptState:
    """Sets to zero the entries of every params-shaped buffer of an optimizer state where ``reset`` is True.

    A buffer is a subtree of the state with the params' structure and leaf
    shapes (floating dtype): SGD's momentum trace, Adam's two moments, and so
    on, wherever they sit in a chain. This is RigL's reset of the optimizer's
    accumulators for grown connections (reference code: every slot of the
    wrapped optimizer is zeroed at the new connections). Buffers of another
    structure (e.g. inside ``optax.masked`` with a different mask) are left alone.

    Args:
      inner_state: the optimizer state.
      params: the params (for the structure and shapes).
      reset: a pytree with the params' structure: boolean arrays, or ``None``
        where nothing is reset.

    Returns:
      The state with those entries zeroed.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> import sparsejax as sj
      >>> params = {'w': jnp.ones(3)}
      >>> tx = optax.sgd(0.1, momentum=0.9)
      >>> _, state = tx.update({'w': jnp.ones(3)}, tx.init(params), params)
      >>> new = sj.pruning.reset_state_entries(state, params, {'w': jnp.array([True, False, False])})
      >>> new[0].trace['w']
      Array([0., 1., 1.], dtype=float32)
    """
    treedef = jax.tree.structure(params)
    shapes = [tuple(jnp.shape(x)) for x in jax.tree.leaves(params)]
    flags = treedef.flatten_up_to(reset)
    flags = [np.False_ if f is None else f for f in flags]

    def zero(node: Any) -> Any:
        if not _state_matches(node, treedef, shapes):
            return node
        leaves = treedef.flatten_up_to(node)
        return treedef.unflatten(
            [jnp.where(f, jnp.zeros_like(x), x) for x, f in zip(leaves, flags)]
        )

    return jax.tree.map(
        zero, inner_state, is_leaf=lambda n: _state_matches(n, treedef, shapes)
    )


# --- helpers over the selected leaves -------------------------------------------------------


def _selected(params: PyTree, mask: Mask) -> list[bool]:
    return jax.tree.leaves(resolve_mask(mask, params, nonempty=True))


def _check_pattern(pattern: Pattern, params: PyTree, flags: list[bool]) -> None:
    rows = [(path, x) for (path, x), s in zip(leaves_with_paths(params), flags) if s]
    check_leaves(pattern, [tuple(np.shape(x)) for _, x in rows], [p for p, _ in rows])


def _random_support(
    params: PyTree, flags: list[bool], sparsity: Any, distribution: str, power_scale: Any,
    pattern: Pattern, seed: int,
) -> Support:
    """A random mask of the selected leaves at ``sparsity`` (per-leaf counts uniform or ERK)."""
    leaves = jax.tree.leaves(params)
    chosen = [x for x, s in zip(leaves, flags) if s]
    scores = uniform_scores(jax.random.PRNGKey(seed), [jnp.shape(x) for x in chosen])
    keep = pattern_keep(scores, pattern, sparsity, "layerwise", distribution, power_scale)
    it = iter(keep)
    return jax.tree.unflatten(
        jax.tree.structure(params), [next(it) if s else None for s in flags]
    )


def _init_support(params, mask, pattern, sparsity, distribution, power_scale, seed):
    flags = _selected(params, mask)
    _check_pattern(pattern, params, flags)
    if sum(int(np.size(x)) for x, s in zip(jax.tree.leaves(params), flags) if s) == 0:
        raise ValueError("mask selects only empty leaves: there is no weight to sparsify; pass mask=")
    return _random_support(params, flags, sparsity, distribution, power_scale, pattern, seed)


def _masked(updates: PyTree, support: Support, params: PyTree, keep: PyTree | None = None) -> PyTree:
    """Updates where the support keeps (``keep`` overrides ``support`` as the kept set), ``-params`` elsewhere."""
    keep = support if keep is None else keep
    treedef = jax.tree.structure(support, is_leaf=lambda x: x is None)
    ks = treedef.flatten_up_to(keep)
    us = treedef.flatten_up_to(updates)
    ps = treedef.flatten_up_to(params)
    out = []
    for k, u, p in zip(ks, us, ps):
        if k is None or u is None:
            out.append(u)
        else:
            out.append(jnp.where(k, u, (-p).astype(u.dtype)))
    return treedef.unflatten(out)


def _support_grads(updates: PyTree, support: Support) -> PyTree:
    """``m * g``: the gradient where the support is active, 0 elsewhere (``None`` leaves unchanged).

    What the wrapped optimizer sees: the gradient of the masked network's loss with respect to
    the weights (the reference's forward uses ``mask * w``, so its gradient is ``mask * g``), so
    that transforms that mix entries (``clip_by_global_norm``, LARS/LAMB, Adafactor) see the
    norms of the active entries only. The active entries are ``g`` exactly; a non-finite
    entry (an overflow step) stays non-finite, as in the reference's product (``0 * nan``),
    so that an ``optax.apply_if_finite`` inside still skips that step. (Written as a select:
    XLA turns a product with a converted boolean into one, which would drop the ``nan``.)
    """
    return map_support(
        lambda m, g: g if m is None or g is None
        else jnp.where(m | ~jnp.isfinite(g), g, jnp.zeros_like(g)),
        support, updates,
    )


def _check_common(sparsity, distribution, erk_power_scale, seed):
    check_number("sparsity", sparsity, ge=0, lt=1)
    check_choice("distribution", distribution, ("uniform", "erk"))
    check_number("erk_power_scale", erk_power_scale, ge=0)
    # optax.inject_hyperparams passes a numeric default as an integer array
    if isinstance(seed, bool) or not (
        isinstance(seed, (int, np.integer))
        or (hasattr(seed, "dtype") and jnp.issubdtype(seed.dtype, jnp.integer) and jnp.ndim(seed) == 0)
    ):
        raise ValueError(f"seed must be an int, got {seed!r}")


def static_sparse(
    inner: optax.GradientTransformation,
    sparsity: float,
    *,
    distribution: str = "erk",
    erk_power_scale: float = 1.0,
    pattern: str | None = None,
    seed: int = 0,
    mask: Mask = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Static sparse training: a fixed random mask from the start, around any optimizer.

    ``init`` draws a random mask of the selected leaves with per-layer
    densities :math:`d_l` (uniform, or ERK as in RigL's "Static" baseline:
    :func:`~sparsejax.pruning.erk_densities`; the counts are rounded so that
    the selected leaves keep exactly :math:`N - \operatorname{round}(sN)`
    weights, rounding half to even). Every update is

    .. math::

      \text{update}_j = \begin{cases} u_j & m_j \\ -w_j & \lnot m_j \end{cases},

    so the inactive weights are exactly zero after the first step and stay zero.
    :math:`u` is the inner optimizer's update for the gradient :math:`m \odot g`
    (the gradient of the masked network, as in the reference code, whose
    forward pass uses :math:`m \odot w`): transforms that mix entries
    (``clip_by_global_norm``, LARS/LAMB, Adafactor) see the active entries only
    (a non-finite entry stays non-finite, :math:`0 \cdot \text{nan}`).

    ``init`` cannot change the params: start training from
    ``sj.pruning.apply_support(params, state.support)`` (as in the example),
    so that the first forward pass is the sparse network's; from the params
    given to ``init``, step 0 would train the dense network. The trainer
    (:func:`sparsejax.train.methods.prepare_model`) does this for you.

    Args:
      inner: the optimizer whose updates are masked.
      sparsity: :math:`s \in [0, 1)` of the selected weights.
      distribution: ``'erk'`` (the default, as in RigL's experiments) or ``'uniform'``.
      erk_power_scale: ERK's power (1: ERK, 0: uniform).
      pattern: sparsity pattern (:mod:`sparsejax.patterns`); for ``'N:M'`` every
        group keeps :math:`N` random entries and ``sparsity`` must be :math:`1 - N/M`.
      seed: seed of the random mask.
      mask: which leaves are sparse (default: every leaf; usually
        :func:`sparsejax.tree.weights_only`).

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`; ``update`` requires ``params``.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> import sparsejax as sj
      >>> params = {'kernel': jnp.ones((10, 10)), 'bias': jnp.ones(10)}
      >>> tx = sj.pruning.static_sparse(optax.sgd(0.1), 0.9, mask=sj.tree.weights_only)
      >>> state = tx.init(params)
      >>> params = sj.pruning.apply_support(params, state.support)  # sparse from step 0
      >>> updates, state = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
      >>> int(jnp.count_nonzero(optax.apply_updates(params, updates)['kernel']))
      10

    References:
      Evci et al., *Rigging the Lottery: Making All Tickets Winners*, ICML 2020
      (the "Static" baseline and ERK).
    """
    _check_common(sparsity, distribution, erk_power_scale, seed)
    structure = _check_nm_sparsity(parse_pattern(pattern), sparsity, "sparsity")

    def init_fn(params: optax.Params) -> SparseTrainingState:
        support = _init_support(params, mask, structure, sparsity, distribution, erk_power_scale, seed)
        return SparseTrainingState(jnp.zeros([], jnp.int32), support, inner.init(params))

    def update_fn(updates, state, params=None, **extra_args):
        require_params(params, "pruning.static_sparse")
        u, inner_state = optax.with_extra_args_support(inner).update(
            _support_grads(updates, state.support), state.inner_state, params, **extra_args
        )
        return _masked(u, state.support, params), SparseTrainingState(
            optax.safe_increment(state.count), state.support, inner_state
        )

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _check_nm_sparsity(structure: Pattern, sparsity: Any, name: str = "sparsity") -> Pattern:
    """Checks that an N:M ``pattern``'s sparsity ``1 - N/M`` is the ``sparsity`` asked for.

    ``name`` is the caller's argument, for the message (``final_sparsity`` in ``ste_pruning``).
    """
    if structure.kind == "n:m":
        s = concrete_value(sparsity)
        target = 1.0 - structure.n / structure.m
        if s is not None and abs(s - target) > 1e-6:
            raise ValueError(
                f"pattern {structure} has sparsity {target:g}; pass {name}={target:g}, got {sparsity!r}"
            )
    return structure


class _DSTHyper(NamedTuple):
    update_freq: jax.Array
    begin_step: jax.Array
    end_step: jax.Array
    drop_fraction: jax.Array


@functools.partial(jax.jit, static_argnames=("grow", "anneal", "pattern", "branch"))
def _dst_mask_update(
    t: jax.Array,
    old: list[jax.Array],
    weights: list[jax.Array],
    grads: list[jax.Array],
    hyper: _DSTHyper,
    grow: str,
    anneal: str,
    pattern: Pattern,
    key: jax.Array,
    branch: bool = True,
) -> tuple[jax.Array, list[jax.Array], list[jax.Array]]:
    """``(due, new support, newly grown)`` after step ``t`` (0-based).

    ``due`` is false where the schedule's update had a non-finite weight or
    (RigL) gradient: that update is skipped and the mask kept.

    ``branch``: the selection runs under ``lax.cond(due, ...)``; ``False``: it
    runs unconditionally and its results are kept where ``due`` (the program
    of the steps a caller announced with ``mask_update=True``).
    Jitted at module level, so that eager training loops compile it once.
    """
    tau = t + 1  # the paper's 1-based step
    due = (
        (tau >= hyper.begin_step)
        & (tau < hyper.end_step)
        & (((tau - hyper.begin_step) % hyper.update_freq) == 0)
    )
    if anneal == "cosine":
        fraction = cosine_drop_fraction(hyper.drop_fraction, hyper.end_step)(tau)
    else:
        fraction = jnp.asarray(hyper.drop_fraction, jnp.float32)

    def update() -> tuple[list[jax.Array], list[jax.Array], jax.Array]:
        # A non-finite score would rank above every finite one (NaN gradients grown first):
        # such an update is skipped, the mask kept.
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in
                                    weights + (grads if grow == "gradient" else [])]))
        shapes = [m.shape for m in old]
        active = [group_any(m, pattern) for m in old]
        gshapes = [a.shape for a in active]
        sizes = jnp.asarray([math.prod(s) for s in gshapes], jnp.int32)
        n_active = jnp.stack([jnp.sum(a, dtype=jnp.int32) for a in active])
        n_drop = jnp.floor(n_active.astype(jnp.float32) * fraction).astype(jnp.int32)
        # Drop: keep the n_active - n_drop largest |w| among the active groups.
        drop_scores = [
            jnp.where(a, group_scores(jnp.abs(w), pattern), -jnp.inf) for a, w in zip(active, weights)
        ]
        dropped = pruned_entries(drop_scores, sizes - n_active + n_drop, True)
        kept = [~d.reshape(s) for d, s in zip(dropped, gshapes)]
        # Grow n_drop groups among those not kept, by |gradient| (RigL) or at random (SET).
        if grow == "gradient":
            raw = [group_scores(jnp.abs(g), pattern) for g in grads]
        else:
            raw = uniform_scores(jax.random.fold_in(key, t), gshapes)
        grow_scores = [jnp.where(k, -jnp.inf, r) for k, r in zip(kept, raw)]
        not_grown = pruned_entries(grow_scores, sizes - n_drop, True)
        grown = [~ng.reshape(s) & ~k for ng, k, s in zip(not_grown, kept, gshapes)]
        new = [expand_groups(k | g, pattern, s) for k, g, s in zip(kept, grown, shapes)]
        fresh = [expand_groups(g, pattern, s) & ~m for g, s, m in zip(grown, shapes, old)]
        new = [jnp.where(finite, n, o) for n, o in zip(new, old)]
        fresh = [f & finite for f in fresh]
        return new, fresh, finite

    def skip() -> tuple[list[jax.Array], list[jax.Array], jax.Array]:
        return list(old), [jnp.zeros_like(m) for m in old], jnp.asarray(False)

    if branch:
        new, fresh, finite = jax.lax.cond(due, update, skip)
    else:
        new, fresh, finite = update()
        new = [jnp.where(due, n, o) for n, o in zip(new, old)]
        fresh = [f & due for f in fresh]
    return due & finite, new, fresh


def _mask_update_flag(extra_args: dict[str, Any], name: str) -> bool | None:
    """Pops the ``mask_update`` extra argument (``None``, ``True`` or ``False``) and checks it."""
    flag = extra_args.pop("mask_update", None)
    if flag is not None and not isinstance(flag, (bool, np.bool_)):
        raise TypeError(
            f"pruning.{name}: mask_update must be None, True or False (a Python bool: it selects "
            f"the compiled program), got {type(flag).__name__}")
    return None if flag is None else bool(flag)


def dst_update_due(step: int, *, update_freq: int, end_step: int, begin_step: int = 0) -> bool:
    r"""Whether :func:`rigl` / :func:`set_` update the mask at the 0-based ``step`` (on the host).

    The same rule the transforms apply to their own step count: an update at
    the 1-based step :math:`\tau = \text{step} + 1` with
    :math:`\tau \ge t_0`, :math:`\tau < T_\text{end}` and
    :math:`(\tau - t_0) \bmod \Delta T = 0`. A training loop that knows
    ``step`` on the host passes ``mask_update=dst_update_due(step, ...)`` to
    ``update`` and compiles two programs, one for each answer (see
    :func:`rigl`: "host-scheduled mask updates").

    Args:
      step: the number of updates made before this one (>= 0).
      update_freq: :math:`\Delta T`, as given to the transform.
      end_step: :math:`T_\text{end}`, as given to the transform.
      begin_step: :math:`t_0`, as given to the transform.

    Returns:
      ``True`` where the transform updates its mask at this step.

    Example:
      >>> from sparsejax.pruning import dst_update_due
      >>> [s for s in range(10) if dst_update_due(s, update_freq=3, end_step=8)]
      [2, 5]
    """
    for name, value, low in (("step", step, 0), ("update_freq", update_freq, 1),
                             ("end_step", end_step, 1), ("begin_step", begin_step, 0)):
        check_number(name, value, ge=low, integer=True)
    tau = int(step) + 1
    return begin_step <= tau < end_step and (tau - begin_step) % update_freq == 0


def _dynamic(
    name: str,
    grow: str,
    inner: optax.GradientTransformation,
    sparsity: float,
    update_freq: int,
    drop_fraction: float,
    end_step: int,
    begin_step: int,
    anneal: str,
    distribution: str,
    erk_power_scale: float,
    pattern: str | None,
    seed: int,
    mask: Mask,
) -> optax.GradientTransformationExtraArgs:
    _check_common(sparsity, distribution, erk_power_scale, seed)
    check_number("update_freq", update_freq, ge=1, integer=True)
    check_number("drop_fraction", drop_fraction, ge=0, le=1)
    check_number("end_step", end_step, ge=1, integer=True)
    check_number("begin_step", begin_step, ge=0, integer=True)
    begin, end = concrete_value(begin_step), concrete_value(end_step)
    if begin is not None and end is not None and begin >= end:
        raise ValueError(
            f"{name}: begin_step={begin:g} >= end_step={end:g} leaves no step for a mask update; "
            "use static_sparse for a fixed mask"
        )
    check_choice("anneal", anneal, ("cosine", "constant"))
    structure = parse_pattern(pattern)
    if structure.kind == "n:m":
        raise ValueError(
            f"{name} does not support N:M patterns (dropping and growing would break the "
            "per-group count); use pattern=None, a block ('4x4') or 'channel', or "
            "static_sparse / ste_pruning for N:M"
        )

    def init_fn(params: optax.Params) -> SparseTrainingState:
        support = _init_support(params, mask, structure, sparsity, distribution, erk_power_scale, seed)
        return SparseTrainingState(jnp.zeros([], jnp.int32), support, inner.init(params))

    def update_fn(updates, state, params=None, **extra_args):
        require_params(params, f"pruning.{name}")
        flag = _mask_update_flag(extra_args, name)
        # The inner optimizer sees the gradient of the masked network (0 at the inactive
        # entries, the support in effect for this step); RigL grows by the unmasked one.
        u, inner_state = optax.with_extra_args_support(inner).update(
            _support_grads(updates, state.support), state.inner_state, params, **extra_args
        )
        if flag is False:  # the caller guarantees no mask update now: static sparse training's step
            return _masked(u, state.support, params), SparseTrainingState(
                optax.safe_increment(state.count), state.support, inner_state)
        old, treedef = jax.tree.flatten(state.support)
        flags = _selected(params, mask)
        chosen = [(p, g, du) for p, g, du, s in zip(
            jax.tree.leaves(params), jax.tree.leaves(updates), jax.tree.leaves(u), flags) if s]
        if grow == "gradient":
            # RigL: the mask update replaces the step; scores are taken at the current weights.
            weights = [p for p, _, _ in chosen]
        else:
            # SET: the step is taken, then the smallest of the new weights are dropped.
            weights = [(p + du).astype(p.dtype) for p, _, du in chosen]
        hyper = _DSTHyper(
            update_freq=jnp.asarray(update_freq, jnp.int32),
            begin_step=jnp.asarray(begin_step, jnp.int32),
            end_step=jnp.asarray(end_step, jnp.int32),
            drop_fraction=jnp.asarray(drop_fraction, jnp.float32),
        )
        due, new, fresh = _dst_mask_update(
            state.count, old, weights, [g for _, g, _ in chosen], hyper, grow, anneal, structure,
            jax.random.fold_in(jax.random.PRNGKey(seed), 1), branch=flag is None,
        )
        support = jax.tree.unflatten(treedef, new)
        fresh_tree = jax.tree.unflatten(treedef, fresh)
        # Weights active before and after the update keep their value and their optimizer
        # state (a dropped weight drawn again among the grown ones included, as the reference's
        # reinit_when_same=False); new connections start at zero with their state reset.
        stay = jax.tree.unflatten(treedef, [n & o for n, o in zip(new, old)])
        if grow == "gradient":
            # Mask update steps: no gradient step anywhere and the inner state does not advance.
            on_update = _masked(jax.tree.map(jnp.zeros_like, u), support, params, keep=stay)
            on_step = _masked(u, state.support, params)
            new_updates = jax.tree.map(lambda a, b: jnp.where(due, a, b), on_update, on_step)
            inner_state = jax.tree.map(
                lambda a, b: jnp.where(due, a, b), state.inner_state, inner_state
            )
        else:
            # SET: the step is taken where the weight stays; the rest is zero.
            new_updates = _masked(u, support, params, keep=stay)
        inner_state = reset_state_entries(inner_state, params, fresh_tree)
        return new_updates, SparseTrainingState(optax.safe_increment(state.count), support, inner_state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


_DST_START = """
    The wrapped optimizer receives :math:`m \\odot g` with the support in
    effect for the step: the gradient at the active entries, 0 elsewhere (the
    gradient of the masked network, as in the reference code, whose forward
    pass uses :math:`m \\odot w`; a non-finite entry stays non-finite), so
    transforms that mix entries (``clip_by_global_norm``, LARS/LAMB,
    Adafactor) see the active entries only.
    ``init`` cannot change the params: start training from
    ``sj.pruning.apply_support(params, state.support)`` (as in the example),
    so that the first forward pass is the sparse network's; from the params
    given to ``init``, step 0 would train the dense network. The trainer
    (:func:`sparsejax.train.methods.prepare_model`) does this for you.
"""

_DST_ARGS = """
    Args:
      inner: the optimizer whose updates are masked (wrap the whole chain).
      sparsity: :math:`s \\in [0, 1)` of the selected weights, kept throughout.
      update_freq: :math:`\\Delta T \\ge 1`, steps between mask updates.
      drop_fraction: :math:`\\alpha \\in [0, 1]`, the fraction of each layer's
        active weights dropped (and regrown) at an update.
      end_step: :math:`T_\\text{end}`: the last mask update is before it.
      begin_step: no mask update before this (1-based) step.
      anneal: ``'cosine'`` (:func:`cosine_drop_fraction`) or ``'constant'``.
      distribution: per-layer densities, ``'erk'`` or ``'uniform'``.
      erk_power_scale: ERK's power (1: ERK, 0: uniform).
      pattern: ``None`` (unstructured), blocks ``'RxC'`` or ``'channel'``
        (whole groups are dropped and grown; a group's score is the sum of its
        entries' scores). N:M is not supported (a ``ValueError``).
      seed: seed of the initial random mask (and of SET's random growth).
      mask: which leaves are sparse (default: every leaf; usually
        :func:`sparsejax.tree.weights_only`).

    Returns:
      An :class:`optax.GradientTransformationExtraArgs` with state
      :class:`SparseTrainingState`; ``update`` requires ``params``.

    Host-scheduled mask updates:
      By default the step decides on the device whether the mask is updated
      (a ``lax.cond`` in every step). A loop that knows the step number on the
      host may pass the extra argument ``mask_update`` to ``update`` (through
      ``optax.chain``, ``inject_hyperparams`` and the other Optax wrappers):
      ``mask_update=False`` promises that no update is due at this step, and
      the step is exactly static sparse training's (no selection, no
      control flow); ``mask_update=True`` runs the selection without
      control flow and keeps it where the schedule says so (a spurious
      ``True`` is harmless). :func:`dst_update_due` gives the answer, and
      :func:`sparsejax.train.fit` does this with ``mask_update_due=``. The
      computation is the default's (the same masks and updates; the
      programs are compiled separately, so inside a larger step XLA may
      round a few results differently in the last bit); a ``False`` where
      an update is due silently skips it, so the promise must hold (a transform wrapped
      in ``optax.MultiSteps`` counts its own steps: use the default there).
"""


_RIGL_DOC = (
    r"""RigL: drop the smallest weights, grow where the dense gradient is largest.

    The mask starts random (ERK densities by default). At the 1-based step
    :math:`t` with :math:`t \bmod \Delta T = 0` and :math:`t < T_\text{end}`,
    instead of the optimizer step, every sparse layer with :math:`a_l` active
    weights drops :math:`k_l = \lfloor f(t)\, a_l \rfloor` of them and grows
    as many:

    .. math::

      \mathbb{I}_\text{drop} = \operatorname{ArgTopK}(-|w| \text{ over active}, k_l), \qquad
      \mathbb{I}_\text{grow} = \operatorname{ArgTopK}(|\nabla_w L| \text{ over not kept}, k_l),

    with :math:`f(t) = \frac{\alpha}{2}(1 + \cos(\pi t / T_\text{end}))`.
    :math:`\nabla_w L` is the gradient passed to ``update`` (the dense
    gradient of the sparse network: JAX differentiates every entry). Grown
    weights start at zero and their entries of the inner optimizer's buffers
    (momentum, Adam moments: :func:`reset_state_entries`) are reset to zero;
    a weight dropped and regrown at once keeps its value. Every layer keeps
    exactly its number of active weights. On other steps the inner update is
    applied to the active weights and the inactive ones stay exactly zero.
    A mask update whose gradient or weights are not all finite (an overflow
    step of mixed-precision training) is skipped: the mask is kept and the
    step is an ordinary one (``optax.apply_if_finite`` then skips it too).

    A mask update takes the place of a gradient step: the transform's
    ``count`` advances, the inner optimizer's (and its learning-rate schedule)
    does not. Over :math:`T` calls of ``update`` the inner optimizer therefore
    takes :math:`T` minus the number of mask updates gradient steps, and its
    schedule, if sized to :math:`T`, does not reach its end. The reference code
    (``SparseRigLOptimizer``) instead trains all of its ``train_steps``
    gradient steps and spends one extra batch on each mask update (only
    ``apply_gradients`` increments its global step); to match it, size the
    inner schedule to the gradient steps, or give the loop that many more steps.
""" + _DST_START + _DST_ARGS + r"""
    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> import sparsejax as sj
      >>> params = {'kernel': jax.random.normal(jax.random.key(0), (8, 8)), 'bias': jnp.zeros(8)}
      >>> tx = sj.pruning.rigl(optax.sgd(0.1), 0.75, end_step=6, update_freq=2,
      ...                      mask=sj.tree.weights_only)
      >>> state = tx.init(params)
      >>> params = sj.pruning.apply_support(params, state.support)  # sparse from step 0
      >>> for step in range(5):
      ...   grads = jax.tree.map(lambda p: jnp.full_like(p, step + 1.0), params)
      ...   updates, state = tx.update(grads, state, params)
      ...   params = optax.apply_updates(params, updates)
      >>> int(jnp.count_nonzero(state.support['kernel'])), int(jnp.count_nonzero(params['kernel'])) <= 16
      (16, True)

    References:
      Evci, Gale, Menick, Castro and Elsen, *Rigging the Lottery: Making All
      Tickets Winners*, ICML 2020 (Algorithm 1; reference code google-research/rigl,
      ``SparseRigLOptimizer``).
    """
)


def rigl(
    inner: optax.GradientTransformation,
    sparsity: float,
    end_step: int,
    update_freq: int = 100,
    drop_fraction: float = 0.3,
    *,
    begin_step: int = 0,
    anneal: str = "cosine",
    distribution: str = "erk",
    erk_power_scale: float = 1.0,
    pattern: str | None = None,
    seed: int = 0,
    mask: Mask = None,
) -> optax.GradientTransformationExtraArgs:
    return _dynamic("rigl", "gradient", inner, sparsity, update_freq, drop_fraction, end_step,
                    begin_step, anneal, distribution, erk_power_scale, pattern, seed, mask)


rigl.__doc__ = _RIGL_DOC


_SET_DOC = (
    r"""SET (sparse evolutionary training): drop the smallest weights, regrow at random.

    The mask starts random (ERK by default; Mocanu et al. use Erdős–Rényi).
    At the 1-based step :math:`t` with :math:`t \bmod \Delta T = 0` and
    :math:`t < T_\text{end}`, after the optimizer step, every sparse layer with
    :math:`a_l` active weights drops the :math:`k_l = \lfloor \zeta a_l
    \rfloor` of smallest magnitude (:math:`\zeta` = ``drop_fraction``, 0.3 in
    the paper, constant unless ``anneal='cosine'``) and activates as many
    uniformly at random among the weights not kept, the dropped ones included.
    Newly grown weights start at zero with their inner optimizer buffers reset
    (as in RigL's reference code); a dropped weight drawn again stays as it was,
    value and buffers (the reference's ``reinit_when_same=False``), so a layer
    kept dense (by ERK, or at sparsity 0) trains as without SET. Every layer
    keeps exactly its number of active weights.
    A mask update whose new weights are not all finite is skipped (the mask
    is kept).
""" + _DST_START + _DST_ARGS + r"""
    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> import sparsejax as sj
      >>> params = {'kernel': jax.random.normal(jax.random.key(0), (8, 8))}
      >>> tx = sj.pruning.set_(optax.sgd(0.1), 0.5, end_step=10, update_freq=2)
      >>> state = tx.init(params)
      >>> params = sj.pruning.apply_support(params, state.support)  # sparse from step 0
      >>> for _ in range(4):
      ...   updates, state = tx.update({'kernel': jnp.ones((8, 8))}, state, params)
      ...   params = optax.apply_updates(params, updates)
      >>> int(jnp.count_nonzero(state.support['kernel']))
      32

    References:
      Mocanu et al., *Scalable training of artificial neural networks with
      adaptive sparse connectivity inspired by network science*, Nature
      Communications 9, 2383 (2018); reference code google-research/rigl
      (``SparseSETOptimizer``).
    """
)


def set_(
    inner: optax.GradientTransformation,
    sparsity: float,
    end_step: int,
    update_freq: int = 100,
    drop_fraction: float = 0.3,
    *,
    begin_step: int = 0,
    anneal: str = "constant",
    distribution: str = "erk",
    erk_power_scale: float = 1.0,
    pattern: str | None = None,
    seed: int = 0,
    mask: Mask = None,
) -> optax.GradientTransformationExtraArgs:
    return _dynamic("set_", "random", inner, sparsity, update_freq, drop_fraction, end_step,
                    begin_step, anneal, distribution, erk_power_scale, pattern, seed, mask)


set_.__doc__ = _SET_DOC
