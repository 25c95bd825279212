r"""Whole-network greedy structured pruning (Ye, Wu, Liu 2020, Alg. 2), GFS, and physical shrinking.

* :func:`greedy_prune` prunes the prunable groups of a model one after the
  other, from the input (Algorithm 2): for each group it runs local and
  global imitation with the same stopping rule (the loss of the pruned network
  may exceed the unpruned network's by at most ``tolerance``, so the rise
  never accumulates past it) and keeps the result that keeps fewer units (the
  smaller discrepancy to the network before this group on ties);
* :func:`gfs` is the greedy forward selection baseline of Ye et al. (ICML
  2020): units added one at a time, uniform weights, each chosen to minimise
  the network's loss;
* :func:`shrink` removes the unchosen units and folds the weights
  ``a_i·N`` into the consumers, giving a smaller model of the same class;
  :func:`shrink_summary` / :func:`format_shrink_summary` compare parameters,
  MACs and FLOPs before and after.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from sparsejax._validation import check_choice, check_number
from sparsejax.models.costs import macs, param_count, xla_flops
from sparsejax.models.groups import Gates, PrunableModel, fold_gates, keep_units
from sparsejax.structured.imitation import (
    Evaluator,
    ImitationResult,
    MiniBatches,
    PerExample,
    check_budget,
    check_data,
    check_gates_for,
    check_group,
    check_labels,
    check_minibatch,
    check_model,
    check_softmax_outputs,
    check_steps,
    chunk,
    compiled,
    functional,
    outputs_shape,
)
from sparsejax.structured.imitation_global import global_imitation, greedy_fixed_step
from sparsejax.structured.imitation_local import local_imitation

__all__ = [
    "GreedyPruneResult",
    "ShrinkSummary",
    "format_shrink_summary",
    "gfs",
    "greedy_prune",
    "shrink",
    "shrink_summary",
]


def _loss_kind(loss: str | PerExample, with_labels: bool) -> str | PerExample:
    """The per-example loss of :func:`~sparsejax.structured.imitation.per_example_loss` to use."""
    if callable(loss):
        return loss
    check_choice("loss", loss, ("cross_entropy", "mse"))
    if loss == "cross_entropy" and with_labels:
        return "labels"
    return loss


def gfs(
    model: PrunableModel,
    group: str,
    x: Any,
    y: Any = None,
    *,
    loss: str | PerExample = "cross_entropy",
    n: int | None = None,
    eps: float = 0.0,
    max_steps: int | None = None,
    gates: Gates | None = None,
    batch_size: int = 256,
    candidate_batch: int | None = None,
    stop_fn: Callable[[np.ndarray], bool] | None = None,
    minibatch: int | None = None,
    seed: int = 0,
) -> ImitationResult:
    r"""Greedy forward selection (GFS): adds units one at a time with uniform weights.

    .. math::

      S_{k+1} = S_k \cup \{\arg\min_{i \notin S_k} L(f_{S_k \cup \{i\}})\},
      \qquad f_S = \frac{1}{|S|} \sum_{i \in S} \sigma(\theta_i, \cdot),

    i.e. the gate is ``N/|S|`` on the selected units. :math:`L` is the
    network's loss on ``(x, y)`` — cross-entropy with integer labels or squared
    error to targets — or, without ``y``, its discrepancy to the unpruned
    network's outputs (KL divergence or squared error).

    Args:
      model: a :class:`~sparsejax.models.PrunableModel` (evaluated in eval mode).
      group: the group to prune.
      x: the data, examples along the first axis.
      y: integer class labels of shape ``(m,)`` (``loss='cross_entropy'``) or
        regression targets (``'mse'``); ``None`` to imitate the unpruned
        network's outputs.
      loss: ``'cross_entropy'``, ``'mse'`` or ``loss(outputs, y) -> (batch,)``
        (a model with one output needs ``'mse'`` or a callable).
      n: the most units to select, in ``[1, N]`` (default ``N``).
      eps: stop as soon as the loss is at most this (default 0).
      max_steps: the most units added after the first (default ``n - 1``).
      gates: fixed gates of other groups.
      batch_size: examples per forward pass.
      candidate_batch: candidate gate vectors per vmapped call.
      stop_fn: optional ``stop_fn(gate) -> bool`` checked after every step.
      minibatch: examples drawn afresh for every step (``None``: all of ``x``).
      seed: seed of the mini-batch draws.

    Returns:
      An :class:`~sparsejax.structured.ImitationResult` with ``method='gfs'``
      and uniform weights.

    Raises:
      TypeError: if ``model`` is not a ``PrunableModel``.
      ValueError: for an unknown group, ``n`` outside ``[1, N]`` or empty data;
        for ``loss='cross_entropy'`` on a model with one output (its softmax is
        constant: pass ``loss='mse'``) or with ``y`` that is not integer class
        labels of shape ``(m,)`` (one-hot labels included).

    Example:
      >>> import jax, numpy as np
      >>> from sparsejax.models import create
      >>> from sparsejax.structured import gfs
      >>> model = create('mlp', num_classes=3, input_shape=(4,), hidden=(12,), rngs=0)
      >>> x = jax.random.normal(jax.random.key(0), (32, 4))
      >>> y = jax.random.randint(jax.random.key(1), (32,), 0, 3)
      >>> r = gfs(model, 'layers/0', x, y, n=4)
      >>> r.n <= 4 and bool(np.allclose(r.weights, 1 / r.n))
      True

    References:
      Ye, Gong, Nie, Zhou, Klivans, Liu. "Good Subnetworks Provably Exist:
      Pruning via Greedy Forward Selection", ICML 2020.
    """
    model = check_model(model)
    spec = check_group(model, group)
    n = check_budget(n, spec.size, group)
    x = check_data(x)
    check_number("eps", eps, ge=0.0)
    max_steps = check_steps(max_steps, max(n - 1, 1))
    other = check_gates_for(model, gates, group)
    minibatch = check_minibatch(minibatch)
    evaluator = Evaluator(model, group, x, loss=_loss_kind(loss, y is not None), targets=y,
                          gates=other, batch_size=batch_size, candidate_batch=candidate_batch,
                          name="loss")
    sampler = None if minibatch is None else MiniBatches(evaluator.count, minibatch, seed)
    return greedy_fixed_step(evaluator, n=n, eps=eps, max_steps=max_steps, taylor_start=None,
                             taylor_top=1, stop_fn=stop_fn, method="gfs", replace=False,
                             sampler=sampler)


# --------------------------------------------------------------------------- #
# Algorithm 2.


@dataclasses.dataclass(frozen=True)
class GreedyPruneResult:
    """The outcome of :func:`greedy_prune`.

    Attributes:
      selections: ``{group: ImitationResult}`` of the groups that were pruned,
        in pruning order (:func:`shrink` takes this result or this dict).
      candidates: ``{group: {method: ImitationResult}}``, every run per group.
      chosen: ``{group: method}`` (``'none'`` where no run met the rule and the
        group was kept whole).
      losses: ``{group: (loss before, loss after)}`` for every visited group.
      base_loss: the loss of the unpruned network.
      final_loss: the loss of the pruned network.
      sizes: ``{group: N}``.
      limits: ``{group: the largest loss its stopping rule allowed}``.
    """

    selections: dict[str, ImitationResult]
    candidates: dict[str, dict[str, ImitationResult]]
    chosen: dict[str, str]
    losses: dict[str, tuple[float, float]]
    base_loss: float
    final_loss: float
    sizes: dict[str, int]
    limits: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def gates(self) -> dict[str, np.ndarray]:
        """``{group: N·a}`` for the pruned groups."""
        return {k: r.gate for k, r in self.selections.items()}

    @property
    def keep(self) -> dict[str, np.ndarray]:
        """``{group: kept unit indices}`` for the pruned groups."""
        return {k: r.indices for k, r in self.selections.items()}

    def table(self) -> str:
        """A plain-text table: per group, method chosen, units kept of each run, losses."""
        methods = sorted({m for c in self.candidates.values() for m in c})
        head = ["group", "units", "kept", "chosen", *methods, "loss before", "loss after"]
        rows = []
        for name, (before, after) in self.losses.items():
            r = self.selections.get(name)
            kept = r.n if r is not None else self.sizes[name]
            runs = []
            for m in methods:
                c = self.candidates.get(name, {}).get(m)
                runs.append("-" if c is None else f"{c.n}{'' if c.converged else '*'}")
            rows.append([name, str(self.sizes[name]), str(kept), self.chosen[name], *runs,
                         f"{before:.4g}", f"{after:.4g}"])
        return _format_rows(head, rows) + "\n(* = the stopping rule was not met)"


def _format_rows(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[j]) for r in rows)) if rows else len(h)
              for j, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) if j == 0 else h.rjust(w)
                       for j, (h, w) in enumerate(zip(head, widths)))]
    for r in rows:
        lines.append("  ".join(c.ljust(w) if j == 0 else c.rjust(w)
                               for j, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(line.rstrip() for line in lines)


def _outputs(model: PrunableModel, x: Any, batch_size: int) -> Any:
    """The model's outputs on ``x`` (evaluation mode, no gates), in chunks."""
    data = chunk(x, batch_size)
    graphdef, state = functional(model)
    out = compiled(graphdef, "outputs", "", None)
    return jnp.concatenate([out(state, xb, {}) for xb in data.xs])[: data.count]


def greedy_prune(
    model: PrunableModel,
    x: Any,
    y: Any = None,
    *,
    tolerance: float,
    budget: str = "total",
    groups: Sequence[str] | None = None,
    method: str = "best",
    loss: str | PerExample = "cross_entropy",
    criterion: str | None = None,
    local_step: str = "line_search",
    global_step: str = "fixed",
    max_steps: int | None = None,
    taylor_start: int | None = 25,
    taylor_top: int = 5,
    minibatch: int | None = None,
    seed: int = 0,
    batch_size: int = 256,
    candidate_batch: int | None = None,
    log: Callable[[str], None] | None = None,
) -> GreedyPruneResult:
    r"""Prunes a network group by group from the input (Algorithm 2 of Ye, Wu, Liu 2020).

    For the ``j``-th group :math:`\ell_j` (``j = 1..J``), with the groups before
    it already pruned (their gates fixed), every run stops at the first step
    whose network satisfies the stopping rule on the loss,

    .. math::

      L\big(f^{(j)}_{A}\big) - L(F) \le \tau_j, \qquad
      \tau_j = \text{tolerance} \ (\texttt{budget='total'}) \quad\text{or}\quad
      \tau_j = \tfrac{j}{J}\,\text{tolerance} \ (\texttt{budget='even'}),

    where :math:`F` is the *unpruned* network and :math:`L` the loss on
    ``(x, y)`` (without ``y``: the discrepancy to :math:`F`'s outputs). The
    rule is measured against the unpruned network, not the network before the
    group, so the loss of the pruned network never exceeds
    :math:`L(F) + \text{tolerance}`, however many groups are pruned (the
    paper's criterion: the gap between the training loss before and after
    pruning is at most :math:`\epsilon`). ``'total'`` lets each group use what
    the groups before it left of the tolerance; ``'even'`` (this library's
    option) gives group ``j`` a cumulative share ``j/J`` of it.

    With ``method='best'`` local imitation (:func:`local_imitation`) and global
    imitation (:func:`global_imitation`, with the same rule) are both run and
    the one keeping fewer units is taken; if both keep the same number, the one
    with the smaller discrepancy (``criterion``) to the network before this
    group is taken (§2.4). A group for which no run meets the rule is kept whole.

    With ``minibatch=b`` every greedy step of every run chooses its unit on
    ``b`` examples of ``x`` drawn afresh (Algorithm 1, line 4); the stopping
    rule and the tie-break are measured on all of ``x``.

    Args:
      model: a :class:`~sparsejax.models.PrunableModel` (evaluated in eval mode).
      x: the data used for imitation and for the stopping rule.
      y: integer class labels of shape ``(m,)`` (``loss='cross_entropy'``) or
        regression targets (``'mse'``), or ``None`` to measure the loss as the
        discrepancy to the unpruned outputs.
      tolerance: the most the loss of the pruned network may exceed the
        unpruned network's, ``>= 0``.
      budget: ``'total'`` (default, the paper's rule) or ``'even'``: how the
        tolerance is shared among the groups (see above).
      groups: names of the groups to prune, in order (default: all, in the
        model's forward order).
      method: ``'best'`` (Algorithm 2), ``'local'``, ``'global'`` or ``'gfs'``.
      loss: ``'cross_entropy'``, ``'mse'`` or ``loss(outputs, y) -> (batch,)``
        (a model with one output, e.g. a regression, needs ``'mse'`` or a callable).
      criterion: the discrepancy global imitation minimises and ties are broken
        by, ``'mse'`` or ``'cross_entropy'`` (default: ``'mse'`` for
        ``loss='mse'``, else ``'cross_entropy'``, a callable ``loss`` included;
        a model with one output needs ``'mse'``).
      local_step: ``'line_search'`` or ``'fixed'`` (see :func:`local_imitation`).
      global_step: ``'fixed'`` (eq. 8, the paper's) or ``'line_search'`` (eq. 7;
        see :func:`global_imitation`).
      max_steps: the most greedy steps per run (default ``2·N``; GFS ``N - 1``).
      taylor_start: past this many picks global imitation ranks by the Taylor
        approximation (``None``: exact, as the paper's §3.1).
      taylor_top: how many top-ranked units it evaluates exactly.
      minibatch: examples drawn afresh for every greedy step (``None``: all of ``x``).
      seed: seed of the mini-batch draws.
      batch_size: examples per forward pass.
      candidate_batch: candidate gate vectors per vmapped call.
      log: optional ``log(line)`` for progress (e.g. ``print``).

    Returns:
      A :class:`GreedyPruneResult`; ``shrink(model, result)`` builds the smaller model.

    Raises:
      TypeError: if ``model`` is not a ``PrunableModel``.
      ValueError: for unknown groups, empty data, a negative tolerance or an
        unknown method; for a cross-entropy ``loss`` or ``criterion`` on a model
        with one output (the softmax of one output is constant, so the loss
        would not rise: pass ``'mse'``); for ``y`` that is not integer class
        labels of shape ``(m,)`` with ``loss='cross_entropy'`` (one-hot labels
        included).

    Example:
      >>> import jax
      >>> from sparsejax.models import create
      >>> from sparsejax.structured import greedy_prune, shrink
      >>> model = create('mlp', num_classes=3, input_shape=(4,), hidden=(8,), rngs=0)
      >>> x = jax.random.normal(jax.random.key(0), (32, 4))
      >>> result = greedy_prune(model, x, tolerance=0.05)   # discrepancy to the outputs
      >>> kept = result.selections['layers/0'].n if result.selections else 8
      >>> shrink(model, result).layers[0].kernel.shape == (4, kept)
      True
      >>> bool(result.final_loss - result.base_loss <= 0.05)
      True

    References:
      Ye, Wu, Liu. "Greedy Optimization Provably Wins the Lottery: Logarithmic
      Number of Winning Tickets is Enough", NeurIPS 2020, §2.4, §3.2 and
      Algorithms 1-2; Ye et al., "Good Subnetworks Provably Exist", ICML 2020 (GFS).
    """
    model = check_model(model)
    x = check_data(x)
    check_number("tolerance", tolerance, ge=0.0)
    check_choice("budget", budget, ("total", "even"))
    check_choice("method", method, ("best", "local", "global", "gfs"))
    check_choice("local_step", local_step, ("line_search", "fixed"))
    check_choice("global_step", global_step, ("fixed", "line_search"))
    minibatch = check_minibatch(minibatch)
    check_number("seed", seed, ge=0, integer=True)
    loss_kind = _loss_kind(loss, y is not None)
    default_criterion = criterion is None
    if criterion is None:
        criterion = "mse" if loss == "mse" else "cross_entropy"
    check_choice("criterion", criterion, ("mse", "cross_entropy"))
    all_groups = [g.name for g in model.prunable_groups()]
    names = list(all_groups if groups is None else groups)
    for name in names:
        check_group(model, name)
    if len(set(names)) != len(names):
        raise ValueError(f"groups must be distinct, got {names}")
    if names:  # a cross-entropy on one output is identically 0: nothing would seem to matter
        shape = outputs_shape(*functional(model), x)
        check_softmax_outputs(loss_kind, shape, "loss")
        if method in ("best", "global"):  # global imitation and the tie-break use criterion
            check_softmax_outputs(criterion, shape, "criterion",
                                  " (the default unless loss='mse')" if default_criterion else "")
        if loss_kind == "labels":
            check_labels(y, int(x.shape[0]), shape[-1])
    emit = log or (lambda _: None)
    runs_for = {"best": ("local", "global"), "local": ("local",), "global": ("global",),
                "gfs": ("gfs",)}[method]
    # Without y the rule's loss is the discrepancy to the *unpruned* network's outputs.
    targets = y if y is not None or not names else _outputs(model, x, batch_size)

    fixed: dict[str, np.ndarray] = {}
    selections: dict[str, ImitationResult] = {}
    candidates: dict[str, dict[str, ImitationResult]] = {}
    chosen: dict[str, str] = {}
    losses: dict[str, tuple[float, float]] = {}
    limits: dict[str, float] = {}
    sizes: dict[str, int] = {}
    base_loss = None
    for j, name in enumerate(names):
        size = model.group(name).size
        sizes[name] = size
        other = check_gates_for(model, fixed, name)
        rule = Evaluator(model, name, x, loss=loss_kind, targets=targets, gates=other,
                         batch_size=batch_size, candidate_batch=candidate_batch, name="loss")
        before = rule.loss(np.ones(size, np.float32))
        if base_loss is None:
            base_loss = before
        share = 1.0 if budget == "total" else (j + 1) / len(names)
        limit = base_loss + share * tolerance
        limits[name] = limit

        def stop(gate: np.ndarray, rule: Evaluator = rule, limit: float = limit) -> bool:
            return rule.loss(gate) <= limit

        steps = check_steps(max_steps, 2 * size)
        runs: dict[str, ImitationResult] = {}
        for r_i, run in enumerate(runs_for):
            run_seed = seed + 1000 * j + r_i
            if run == "local":
                runs[run] = local_imitation(model, name, x, step=local_step, max_steps=steps,
                                            gates=other, batch_size=batch_size, stop_fn=stop,
                                            minibatch=minibatch, seed=run_seed)
            elif run == "global":
                runs[run] = global_imitation(
                    model, name, x, criterion=criterion, step=global_step, max_steps=steps,
                    taylor_start=taylor_start, taylor_top=taylor_top, gates=other,
                    batch_size=batch_size, candidate_batch=candidate_batch, stop_fn=stop,
                    minibatch=minibatch, seed=run_seed)
            else:
                sampler = None if minibatch is None else MiniBatches(rule.count, minibatch,
                                                                     run_seed)
                runs[run] = greedy_fixed_step(
                    rule, n=size, eps=0.0, max_steps=check_steps(max_steps, max(size - 1, 1)),
                    taylor_start=None, taylor_top=1, stop_fn=stop, method="gfs", replace=False,
                    sampler=sampler)
        candidates[name] = runs
        ok = {m: r for m, r in runs.items() if r.converged and r.n < size}
        if ok:
            fewest = min(r.n for r in ok.values())
            tied = [m for m, r in ok.items() if r.n == fewest]
            best = tied[0]
            if len(tied) > 1:  # §2.4: the smaller discrepancy to the network before this group
                disc = Evaluator(model, name, x, loss=criterion, gates=other,
                                 batch_size=batch_size, candidate_batch=candidate_batch)
                best = min(tied, key=lambda m: (disc.loss(ok[m].gate), m))
            after = rule.loss(ok[best].gate)
            selections[name] = ok[best]
            fixed[name] = ok[best].gate
            chosen[name] = best
        else:
            after, chosen[name] = before, "none"
        losses[name] = (before, after)
        emit(f"{name}: {size} -> {selections[name].n if name in selections else size} units "
             f"({chosen[name]}; " + ", ".join(f"{m} {r.n}" for m, r in runs.items())
             + f"), loss {before:.4g} -> {after:.4g} (limit {limit:.4g})")
    final = losses[names[-1]][1] if names else float("nan")
    return GreedyPruneResult(selections, candidates, chosen, losses,
                             float("nan") if base_loss is None else float(base_loss),
                             float(final), sizes, limits)


# --------------------------------------------------------------------------- #
# Physical shrinking and summaries.


def _as_selections(
    selections: GreedyPruneResult | Mapping[str, ImitationResult] | Iterable[ImitationResult],
) -> dict[str, ImitationResult]:
    if isinstance(selections, GreedyPruneResult):
        return dict(selections.selections)
    if isinstance(selections, ImitationResult):
        return {selections.group: selections}
    if isinstance(selections, Mapping):
        out = dict(selections)
    else:
        out = {r.group: r for r in selections}
    for name, r in out.items():
        if not isinstance(r, ImitationResult):
            raise TypeError(f"selections[{name!r}] must be an ImitationResult, got "
                            f"{type(r).__name__}")
        if r.group and r.group != name:
            raise ValueError(f"selections[{name!r}] is the result for group {r.group!r}")
    return out


def shrink(
    model: PrunableModel,
    selections: GreedyPruneResult | Mapping[str, ImitationResult] | Iterable[ImitationResult],
) -> PrunableModel:
    r"""A smaller model of the same class keeping only the chosen units, weights folded in.

    For each group, the consumer kernels' input slices are multiplied by
    :math:`N a_i` (:func:`sparsejax.models.fold_gates`) and the units with
    :math:`a_i = 0` are removed from producers and consumers
    (:func:`sparsejax.models.keep_units`), so that in evaluation mode

    .. math::

      \mathrm{shrink}(F, A)(x) = F(x;\ \text{gates} = N a)

    up to float summation order, with fewer parameters and FLOPs.

    Args:
      model: a :class:`~sparsejax.models.PrunableModel` (left unchanged).
      selections: a :class:`GreedyPruneResult`, a ``{group: ImitationResult}``
        mapping, or a sequence of results.

    Returns:
      The shrunk model.

    Raises:
      TypeError: if ``model`` is not a ``PrunableModel``.
      ValueError: for an unknown group or a result of another size.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from sparsejax.models import create
      >>> from sparsejax.structured import local_imitation, shrink
      >>> model = create('mlp', num_classes=2, input_shape=(4,), hidden=(16,), rngs=0)
      >>> x = jax.random.normal(jax.random.key(0), (32, 4))
      >>> r = local_imitation(model, 'layers/0', x, n=5)
      >>> small = shrink(model, [r])
      >>> small.layers[0].kernel.shape == (4, r.n)
      True
      >>> bool(jnp.allclose(small(x), model(x, gates={'layers/0': r.gate}), atol=1e-5))
      True

    References:
      Ye, Wu, Liu. "Greedy Optimization Provably Wins the Lottery: Logarithmic
      Number of Winning Tickets is Enough", NeurIPS 2020.
    """
    model = check_model(model)
    sel = _as_selections(selections)
    for name, r in sel.items():
        size = check_group(model, name).size
        if r.size != size:
            raise ValueError(f"the result for group {name!r} has {r.size} units; the model's "
                             f"group has {size}")
    if not sel:
        return keep_units(model, {})
    folded = fold_gates(model, {name: r.gate for name, r in sel.items()})
    return keep_units(folded, {name: r.indices for name, r in sel.items()})


@dataclasses.dataclass(frozen=True)
class ShrinkSummary:
    """Sizes and costs of a model before and after :func:`shrink`.

    Attributes:
      groups: ``(name, units before, units after)`` for every group of the original.
      params: parameters (``nnx.Param`` entries) before and after.
      macs: multiply-accumulates of one example (dense count), before and after.
      flops: XLA's FLOPs of one example's forward pass, before and after.
    """

    groups: tuple[tuple[str, int, int], ...]
    params: tuple[int, int]
    macs: tuple[int, int]
    flops: tuple[float, float]

    def __str__(self) -> str:
        return format_shrink_summary(self)


def shrink_summary(
    before: PrunableModel, after: PrunableModel, input_shape: Sequence[int]
) -> ShrinkSummary:
    """Compares a model and its shrunk version: units per group, parameters, MACs and FLOPs.

    Args:
      before: the original model.
      after: the shrunk one (:func:`shrink`).
      input_shape: shape of one example.

    Returns:
      A :class:`ShrinkSummary` (``str()`` or :func:`format_shrink_summary` prints it).

    Example:
      >>> from sparsejax.models import create, keep_units
      >>> from sparsejax.structured import shrink_summary
      >>> model = create('mlp', num_classes=2, input_shape=(4,), hidden=(8,), rngs=0)
      >>> s = shrink_summary(model, keep_units(model, {'layers/0': range(2)}), (4,))
      >>> s.params, s.macs
      ((58, 16), (48, 12))

    References:
      Ye, Wu, Liu. "Greedy Optimization Provably Wins the Lottery: Logarithmic
      Number of Winning Tickets is Enough", NeurIPS 2020 (parameters and FLOPs
      of the pruned networks, Table 2).
    """
    check_model(before)
    check_model(after)
    sizes_after = {g.name: g.size for g in after.prunable_groups()}
    groups = tuple((g.name, g.size, sizes_after.get(g.name, 0)) for g in before.prunable_groups())
    return ShrinkSummary(
        groups=groups,
        params=(param_count(before), param_count(after)),
        macs=(sum(m.dense for m in macs(before, input_shape)),
              sum(m.dense for m in macs(after, input_shape))),
        flops=(xla_flops(before, input_shape), xla_flops(after, input_shape)),
    )


def format_shrink_summary(summary: ShrinkSummary) -> str:
    """A plain-text table of a :class:`ShrinkSummary`: units per group, then the totals.

    Example:
      >>> from sparsejax.structured import ShrinkSummary, format_shrink_summary
      >>> print(format_shrink_summary(ShrinkSummary((('fc', 8, 2),), (58, 22), (48, 12),
      ...                                           (120.0, 30.0))))
      group   before  after   kept
      fc           8      2  25.0%
      params      58     22  37.9%
      MACs        48     12  25.0%
      FLOPs      120     30  25.0%
    """
    rows = [[name, str(b), str(a), f"{a / b:.1%}" if b else "-"] for name, b, a in summary.groups]
    for label, (b, a) in (("params", summary.params), ("MACs", summary.macs),
                          ("FLOPs", summary.flops)):
        rows.append([label, f"{b:,.0f}", f"{a:,.0f}", f"{a / b:.1%}" if b else "-"])
    return _format_rows(["group", "before", "after", "kept"], rows)
