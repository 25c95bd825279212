r"""Greedy global imitation (Ye, Wu, Liu 2020, §2.2, eqs. 6-8) with the Taylor acceleration (§2.2.1).

Global imitation prunes a layer so that the *network's* output imitates the
original network's, with the fixed step :math:`\gamma_k = 1/(k+1)`:

.. math::

  i_k = \arg\min_{i}\ \mathbb{D}\Big[H_2 \circ \big((1-\gamma_k) f_{\ell,A(k)}
        + \gamma_k\, \sigma(\theta_i, \cdot)\big) \circ H_1,\ F\Big],
  \qquad a(k+1) = (1-\gamma_k)\, a(k) + \gamma_k e_{i_k}.

Every candidate is a gate vector ``N·a``; all of them are evaluated with
``jax.vmap`` over the gate, so the layers before the group (which do not
depend on the gate) run once per data chunk. Past ``k = taylor_start`` only
the ``taylor_top`` candidates with the most negative directional derivative
:math:`\partial_\gamma \mathbb{D}|_{\gamma=0} = N\,(\nabla_g \mathbb{D})^\top (e_i - a)`
(one backward pass for all of them) are evaluated exactly.

``step='line_search'`` solves eq. 7 instead, the problem eq. 8 simplifies:
the step of every candidate is searched over :math:`U_i` (so a unit can also
be re-weighted down or removed), by minimising a Gauss-Newton model of
:math:`\mathbb{D}` along :math:`e_i - a` and checking the best predicted
moves exactly. The fixed step keeps every weight a multiple of
:math:`1/(k+1)`, which in practice stalls the error (see
``experiments/greedy_figure1.py``); the line search does not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from sparsejax._validation import check_choice, check_number
from sparsejax.models.groups import Gates, PrunableModel
from sparsejax.structured.imitation import (
    Evaluator,
    ImitationResult,
    MiniBatches,
    PerExample,
    check_budget,
    check_data,
    check_gates_for,
    check_group,
    check_minibatch,
    check_model,
    check_steps,
    imitation_result,
    simplex_step,
)

__all__ = ["global_imitation"]


def _first_pick(
    evaluator: Evaluator, eps: float, stop_fn: Callable[[np.ndarray], bool] | None
) -> tuple[np.ndarray, list[int], list[float], list[float], list[int], int | None]:
    """The single unit whose network imitates best (eq. 6): ``a(0) = e_{i_0}``.

    Returns ``a``, the path lists (picks, gammas, history, support) started
    with it, and ``0`` if it already meets ``eps`` or ``stop_fn`` (else ``None``).
    """
    size = evaluator.size
    first = evaluator.losses(np.eye(size, dtype=np.float32) * size)
    i0 = int(np.argmin(first))
    a = np.zeros(size)
    a[i0] = 1.0
    history = [float(first[i0])]
    met = 0 if (history[0] <= eps or (stop_fn is not None and stop_fn(size * a))) else None
    return a, [i0], [1.0], history, [1], met


def _batch(evaluator: Evaluator, sampler: MiniBatches | None) -> Evaluator:
    """The evaluator of one greedy step: all the data, or a fresh mini-batch of it."""
    return evaluator if sampler is None else evaluator.subset(sampler.draw())


def greedy_fixed_step(
    evaluator: Evaluator,
    *,
    n: int,
    eps: float,
    max_steps: int,
    taylor_start: int | None,
    taylor_top: int,
    stop_fn: Callable[[np.ndarray], bool] | None,
    method: str,
    replace: bool = True,
    sampler: MiniBatches | None = None,
) -> ImitationResult:
    """The greedy loop shared by global imitation and forward selection.

    ``replace=True``: global imitation, ``a <- (1 - 1/(k+1)) a + e_i/(k+1)`` with
    repeats allowed. ``replace=False``: forward selection (GFS), each unit at
    most once, uniform weights ``1/|S|`` (the same update on distinct units).
    With a ``sampler`` every step (the first pick included) is chosen on a
    fresh mini-batch and ``history`` holds the discrepancy on that mini-batch.
    """
    size = evaluator.size
    a, picks, gammas, history, support, met = _first_pick(_batch(evaluator, sampler), eps,
                                                          stop_fn)
    k = 1  # picks so far
    while met is None and len(picks) <= max_steps:
        ev = _batch(evaluator, sampler)
        chosen = a > 0
        if replace:
            allowed = chosen if chosen.sum() >= n else np.ones(size, bool)
        else:
            if chosen.sum() >= n:
                break
            allowed = ~chosen
        cand = np.flatnonzero(allowed)
        gamma = 1.0 / (k + 1)
        if taylor_start is not None and k > taylor_start and cand.size > taylor_top:
            cand, losses = ev.taylor_candidates(a, gamma, allowed, taylor_top)
        else:
            gates = np.repeat(((1.0 - gamma) * a * size)[None, :], cand.size, axis=0)
            gates[np.arange(cand.size), cand] += gamma * size
            losses = ev.losses(gates.astype(np.float32))
        j = int(np.argmin(losses))
        i = int(cand[j])
        a = simplex_step(a, i, gamma)
        picks.append(i)
        gammas.append(gamma)
        history.append(float(losses[j]))
        support.append(int(np.count_nonzero(a)))
        k += 1
        if history[-1] <= eps or (stop_fn is not None and stop_fn(size * a)):
            met = len(history) - 1
    return imitation_result(evaluator.group, size, method, picks, gammas, history, support, met)


def greedy_line_search(
    evaluator: Evaluator,
    *,
    n: int,
    eps: float,
    max_steps: int,
    taylor_start: int | None,
    taylor_top: int,
    check_top: int,
    stop_fn: Callable[[np.ndarray], bool] | None,
    method: str,
    sampler: MiniBatches | None = None,
) -> ImitationResult:
    """Global imitation with a step searched over ``U_i`` (eq. 7), by a Gauss-Newton model.

    Every candidate ``i`` gets the step minimising the quadratic model
    ``D + gamma p_i + gamma^2 q_i / 2`` over ``U_i`` (``[0, 1]`` for a new unit,
    ``[-a_i/(1-a_i), 1]`` for a chosen one); the ``check_top`` units with the
    largest predicted decrease are evaluated exactly and the best is taken.
    When none decreases the discrepancy their steps are halved (at most 4
    times), then the iteration stops. With a ``sampler`` every step is chosen
    on a fresh mini-batch (compared with the current weights' discrepancy on
    that mini-batch); a mini-batch on which no step decreases it is skipped
    (it still counts as one of ``max_steps``) instead of stopping.
    """
    size = evaluator.size
    a, picks, gammas, history, support, met = _first_pick(_batch(evaluator, sampler), eps,
                                                          stop_fn)
    k = 1  # picks so far
    tries = 0
    while met is None and tries < max_steps:
        tries += 1
        ev = _batch(evaluator, sampler)
        current = history[-1] if sampler is None else ev.loss(size * a)
        chosen = a > 0
        allowed = chosen if chosen.sum() >= n else np.ones(size, bool)
        lo_all = np.where(chosen & (a < 1.0), -a / np.maximum(1.0 - a, 1e-300), 0.0)
        cand = np.flatnonzero(allowed)
        if taylor_start is not None and k > taylor_start and cand.size > taylor_top:
            # first order: the best rate of decrease over the feasible signs of gamma
            grad = ev.grad(size * a)
            slope = size * (grad - float(grad @ a))
            rate = np.where(slope < 0, -slope, np.where(lo_all < 0, slope, 0.0))
            cand = cand[np.argsort(-rate[cand], kind="stable")[:taylor_top]]
        p, q = ev.quadratic(a, cand)
        lo = lo_all[cand]
        curved = q > 1e-12 * max(abs(current), 1e-30)
        gamma = np.where(curved, np.clip(-p / np.where(curved, q, 1.0), lo, 1.0),
                         np.where(p < 0, 1.0, lo))
        predicted = gamma * p + 0.5 * gamma * gamma * q
        top = np.argsort(predicted, kind="stable")[:check_top]
        top = top[predicted[top] < 0]
        best = None
        for _ in range(5):
            if top.size == 0:
                break
            steps = [simplex_step(a, int(cand[j]), float(gamma[j])) for j in top]
            losses = ev.losses(np.stack(steps).astype(np.float32) * size,
                               chunk_size=check_top)  # one shape: one compilation
            j = int(np.argmin(losses))
            if losses[j] < current:
                best = (int(cand[top[j]]), float(gamma[top[j]]), steps[j], float(losses[j]))
                break
            gamma[top] *= 0.5
        if best is None:
            if sampler is not None:
                continue  # not on this mini-batch: draw another
            break  # no step decreases the discrepancy: converged
        i, step, a, value = best
        picks.append(i)
        gammas.append(step)
        history.append(value)
        support.append(int(np.count_nonzero(a)))
        k += 1
        if value <= eps or (stop_fn is not None and stop_fn(size * a)):
            met = len(history) - 1
    return imitation_result(evaluator.group, size, method, picks, gammas, history, support, met)


def global_imitation(
    model: PrunableModel,
    group: str,
    x: Any,
    *,
    n: int | None = None,
    eps: float = 0.0,
    criterion: str | PerExample = "mse",
    step: str = "fixed",
    max_steps: int | None = None,
    taylor_start: int | None = 25,
    taylor_top: int = 5,
    check_top: int = 5,
    gates: Gates | None = None,
    batch_size: int = 256,
    candidate_batch: int | None = None,
    stop_fn: Callable[[np.ndarray], bool] | None = None,
    minibatch: int | None = None,
    seed: int = 0,
) -> ImitationResult:
    r"""Prunes one group by greedy global imitation of the network output (eqs. 6-8).

    Starts from the single unit whose network best imitates the original
    (eq. 6), then adds units with the step :math:`\gamma_k = 1/(k+1)` (after
    ``k`` picks), choosing the one that minimises the network-output
    discrepancy (eq. 8),

    .. math::

      \mathbb{D}(a) = \frac1m \sum_n \ell\big(f_{a}(x_n),\ F(x_n)\big), \qquad
      \text{gate} = N a,

    with :math:`\ell` the squared error (``'mse'``) or the cross-entropy
    between the pruned and original outputs, less the original's entropy
    (``'cross_entropy'``, i.e. the KL divergence: same minimiser, 0 for the
    original). :math:`F` is the network with the fixed ``gates`` of the other
    groups and this group unpruned. A unit may be picked again (its weight
    grows); once ``n`` units are chosen only they are candidates.

    **Step** (``step``): ``'fixed'`` is eq. 8, the paper's algorithm, whose
    error the paper bounds by :math:`O(k^{-2})` only (Theorem 2); the
    weights stay multiples of :math:`1/(k+1)`, so late in the run new units
    enter with tiny weights and the error falls slowly. ``'line_search'``
    solves eq. 7, the problem eq. 8 approximates: every candidate gets the
    step :math:`\gamma_i \in U_i` (``[0, 1]`` for a new unit,
    :math:`[-a_i/(1-a_i), 1]` for a chosen one, so a step adds, re-weights
    or removes a unit, as in local imitation) minimising the Gauss-Newton
    model :math:`\mathbb{D} + \gamma p_i + \tfrac12 \gamma^2 q_i` (one
    Jacobian-vector product per candidate); the ``check_top`` best predicted
    moves are evaluated exactly and the best is taken (if none decreases
    :math:`\mathbb{D}` their steps are halved, at most 4 times, then the
    iteration stops), so the discrepancy never increases. On a network whose output is linear
    in the pruned layer this is exactly local imitation's line search.

    **Taylor acceleration** (§2.2.1): when more than ``taylor_start`` units
    have been picked, :math:`\mathbb{D}` after a step is
    :math:`\mathbb{D}(a) + \gamma_k\, \partial_\gamma \mathbb{D} + O(\gamma_k^2)`
    with :math:`\partial_\gamma \mathbb{D} = N (\nabla_g \mathbb{D})^\top (e_i - a)`
    for all :math:`i` from one backward pass; only the ``taylor_top`` units
    with the most negative derivative (the largest decrease) are evaluated
    exactly. The paper uses 25 and 5; ``taylor_start=None`` is exact global
    imitation. With ``step='line_search'`` the same first-order ranking (over
    the feasible signs of :math:`\gamma`) picks the ``taylor_top`` units
    whose Gauss-Newton step is computed.

    **Mini-batches** (Algorithm 1, line 4): with ``minibatch=b`` every greedy
    step (the first pick of eq. 6 included) draws ``b`` fresh examples of
    ``x`` and chooses its unit on them; ``history`` is then the discrepancy on
    each step's mini-batch. ``minibatch=None`` uses all of ``x`` at every step.
    The targets :math:`F(x)` are computed once on all of ``x``.

    Args:
      model: a :class:`~sparsejax.models.PrunableModel` (evaluated in eval mode).
      group: the group to prune.
      x: the imitation data, examples along the first axis.
      n: the most units to keep, in ``[1, N]`` (default ``N``).
      eps: stop as soon as the discrepancy is at most this (default 0).
      criterion: ``'mse'``, ``'cross_entropy'`` or a callable
        ``loss(pruned_outputs, original_outputs) -> (batch,)``.
      step: ``'fixed'`` (:math:`\gamma_k = 1/(k+1)`, eq. 8) or
        ``'line_search'`` (eq. 7, Gauss-Newton step over :math:`U_i`).
      max_steps: the most steps after the first pick (default ``2·n``).
      taylor_start: use the Taylor ranking past this many picks (``None``: never).
      taylor_top: the number of top-ranked units evaluated exactly.
      check_top: ``step='line_search'``: the number of best predicted moves
        evaluated exactly at every step.
      gates: fixed gates of other groups (layers pruned before this one).
      batch_size: examples per forward pass.
      candidate_batch: candidate gate vectors per vmapped call (default
        ``8192 // batch`` capped at ``N``).
      stop_fn: optional ``stop_fn(gate) -> bool`` checked after every step.
      minibatch: examples drawn afresh for every greedy step (``None``: all of ``x``).
      seed: seed of the mini-batch draws.

    Returns:
      An :class:`~sparsejax.structured.ImitationResult` (``method`` ``'global'``,
      ``'global_taylor'``, ``'global_line_search'`` or
      ``'global_line_search_taylor'``).

    Raises:
      TypeError: if ``model`` is not a ``PrunableModel``.
      ValueError: for an unknown group, ``n`` outside ``[1, N]``, empty data or
        bad thresholds.

    Example:
      >>> import jax
      >>> from sparsejax.models import create
      >>> from sparsejax.structured import global_imitation
      >>> model = create('mlp', num_classes=1, input_shape=(4,), hidden=(16,), rngs=0)
      >>> x = jax.random.normal(jax.random.key(0), (64, 4))
      >>> r = global_imitation(model, 'layers/0', x, n=6)
      >>> r.n <= 6, r.method
      (True, 'global_taylor')
      >>> s = global_imitation(model, 'layers/0', x, n=6, step='line_search')
      >>> s.n <= 6, bool(s.discrepancy <= s.history[0])
      (True, True)

    References:
      Ye, Wu, Liu. "Greedy Optimization Provably Wins the Lottery: Logarithmic
      Number of Winning Tickets is Enough", NeurIPS 2020, §2.2 (eqs. 6-8)
      and §2.2.1.
    """
    model = check_model(model)
    spec = check_group(model, group)
    n = check_budget(n, spec.size, group)
    x = check_data(x)
    check_number("eps", eps, ge=0.0)
    max_steps = check_steps(max_steps, 2 * n)
    if taylor_start is not None:
        check_number("taylor_start", taylor_start, ge=0, integer=True)
    check_number("taylor_top", taylor_top, ge=1, integer=True)
    check_choice("step", step, ("fixed", "line_search"))
    check_number("check_top", check_top, ge=1, integer=True)
    other = check_gates_for(model, gates, group)
    if isinstance(criterion, str) and criterion not in ("mse", "cross_entropy"):
        raise ValueError(f"criterion must be 'mse', 'cross_entropy' or a callable, got {criterion!r}")
    evaluator = Evaluator(model, group, x, loss=criterion, gates=other, batch_size=batch_size,
                          candidate_batch=candidate_batch)
    minibatch = check_minibatch(minibatch)
    sampler = None if minibatch is None else MiniBatches(evaluator.count, minibatch, seed)
    method = "global" if step == "fixed" else "global_line_search"
    if taylor_start is not None:
        method += "_taylor"
    if step == "line_search":
        return greedy_line_search(
            evaluator, n=n, eps=eps, max_steps=max_steps, taylor_start=taylor_start,
            taylor_top=int(taylor_top), check_top=int(check_top), stop_fn=stop_fn,
            method=method, sampler=sampler,
        )
    return greedy_fixed_step(
        evaluator, n=n, eps=eps, max_steps=max_steps, taylor_start=taylor_start,
        taylor_top=int(taylor_top), stop_fn=stop_fn, method=method, sampler=sampler,
    )
