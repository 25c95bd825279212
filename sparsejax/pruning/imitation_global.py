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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from sparsejax._validation import check_number
from sparsejax.models.groups import Gates, PrunableModel
from sparsejax.pruning.imitation import (
    Evaluator,
    ImitationResult,
    PerExample,
    _result,
    _step,
    check_budget,
    check_data,
    check_gates_for,
    check_group,
    check_model,
    check_steps,
)

__all__ = ["global_imitation"]


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
) -> ImitationResult:
    """The greedy loop shared by global imitation and forward selection.

    ``replace=True``: global imitation, ``a <- (1 - 1/(k+1)) a + e_i/(k+1)`` with
    repeats allowed. ``replace=False``: forward selection (GFS), each unit at
    most once, uniform weights ``1/|S|`` (the same update on distinct units).
    """
    size = evaluator.size
    onehots = np.eye(size, dtype=np.float32) * size
    first = evaluator.losses(onehots)
    i0 = int(np.argmin(first))
    a = np.zeros(size)
    a[i0] = 1.0
    picks, gammas, history, support = [i0], [1.0], [float(first[i0])], [1]
    met = 0 if (history[0] <= eps or (stop_fn is not None and stop_fn(size * a))) else None
    k = 1  # picks so far
    while met is None and len(picks) <= max_steps:
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
            cand, losses = evaluator.taylor_candidates(a, gamma, allowed, taylor_top)
        else:
            gates = np.repeat(((1.0 - gamma) * a * size)[None, :], cand.size, axis=0)
            gates[np.arange(cand.size), cand] += gamma * size
            losses = evaluator.losses(gates.astype(np.float32))
        j = int(np.argmin(losses))
        i = int(cand[j])
        a = _step(a, i, gamma)
        picks.append(i)
        gammas.append(gamma)
        history.append(float(losses[j]))
        support.append(int(np.count_nonzero(a)))
        k += 1
        if history[-1] <= eps or (stop_fn is not None and stop_fn(size * a)):
            met = len(history) - 1
    return _result(evaluator.group, size, method, picks, gammas, history, support, met)


def global_imitation(
    model: PrunableModel,
    group: str,
    x: Any,
    *,
    n: int | None = None,
    eps: float = 0.0,
    criterion: str | PerExample = "mse",
    max_steps: int | None = None,
    taylor_start: int | None = 25,
    taylor_top: int = 5,
    gates: Gates | None = None,
    batch_size: int = 256,
    candidate_batch: int | None = None,
    stop_fn: Callable[[np.ndarray], bool] | None = None,
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

    **Taylor acceleration** (§2.2.1): when more than ``taylor_start`` units
    have been picked, :math:`\mathbb{D}` after a step is
    :math:`\mathbb{D}(a) + \gamma_k\, \partial_\gamma \mathbb{D} + O(\gamma_k^2)`
    with :math:`\partial_\gamma \mathbb{D} = N (\nabla_g \mathbb{D})^\top (e_i - a)`
    for all :math:`i` from one backward pass; only the ``taylor_top`` units
    with the most negative derivative (the largest decrease) are evaluated
    exactly. The paper uses 25 and 5; ``taylor_start=None`` is exact global
    imitation.

    Args:
      model: a :class:`~sparsejax.models.PrunableModel` (evaluated in eval mode).
      group: the group to prune.
      x: the imitation data, examples along the first axis.
      n: the most units to keep, in ``[1, N]`` (default ``N``).
      eps: stop as soon as the discrepancy is at most this (default 0).
      criterion: ``'mse'``, ``'cross_entropy'`` or a callable
        ``loss(pruned_outputs, original_outputs) -> (batch,)``.
      max_steps: the most steps after the first pick (default ``2·n``).
      taylor_start: use the Taylor ranking past this many picks (``None``: never).
      taylor_top: the number of top-ranked units evaluated exactly.
      gates: fixed gates of other groups (layers pruned before this one).
      batch_size: examples per forward pass.
      candidate_batch: candidate gate vectors per vmapped call (default
        ``8192 // batch`` capped at ``N``).
      stop_fn: optional ``stop_fn(gate) -> bool`` checked after every step.

    Returns:
      An :class:`~sparsejax.pruning.ImitationResult` (``method`` ``'global'``
      or ``'global_taylor'``).

    Raises:
      TypeError: if ``model`` is not a ``PrunableModel``.
      ValueError: for an unknown group, ``n`` outside ``[1, N]``, empty data or
        bad thresholds.

    Example:
      >>> import jax
      >>> from sparsejax.models import create
      >>> from sparsejax.pruning import global_imitation
      >>> model = create('mlp', num_classes=1, input_shape=(4,), hidden=(16,), rngs=0)
      >>> x = jax.random.normal(jax.random.key(0), (64, 4))
      >>> r = global_imitation(model, 'layers/0', x, n=6)
      >>> r.n <= 6, r.method
      (True, 'global_taylor')

    References:
      Ye, Wu, Liu. "Greedy Optimization Provably Wins the Lottery: Logarithmic
      Number of Winning Tickets is Enough", NeurIPS 2020, §2.2 and §2.2.1.
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
    other = check_gates_for(model, gates, group)
    if isinstance(criterion, str) and criterion not in ("mse", "cross_entropy"):
        raise ValueError(f"criterion must be 'mse', 'cross_entropy' or a callable, got {criterion!r}")
    evaluator = Evaluator(model, group, x, loss=criterion, gates=other, batch_size=batch_size,
                          candidate_batch=candidate_batch)
    return greedy_fixed_step(
        evaluator, n=n, eps=eps, max_steps=max_steps, taylor_start=taylor_start,
        taylor_top=int(taylor_top), stop_fn=stop_fn,
        method="global" if taylor_start is None else "global_taylor",
    )
