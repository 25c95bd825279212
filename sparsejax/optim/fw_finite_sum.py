r"""Frank-Wolfe algorithms for finite sums: SVRF and SAGA-FW outer loops, plain SFW / One-Shot FW runs.

:func:`sparsejax.optim.frank_wolfe.svrf` and :func:`~sparsejax.optim.frank_wolfe.saga_fw`
are single steps that need data-dependent extras (a snapshot's full gradient,
a per-sample gradient table). The functions here are the algorithms around
them, for :math:`f(x) = \frac1n\sum_{i=1}^n f_i(x)` over a dataset held as a
pytree of arrays with a leading axis of size :math:`n`:

* :func:`svrf_run`: Hazan and Luo's SVRF (snapshot, full gradient, inner
  loop of :math:`N_t` steps with :math:`\gamma_k = 2/(k+1)` restarted at each
  snapshot and :math:`m_k` growing);
* :func:`saga_fw_run`: Reddi et al.'s SAGA-FW (the per-sample table
  initialised at :math:`\nabla f_i(x_0)`);
* :func:`stochastic_fw_run`: any minibatch Frank-Wolfe transform
  (:func:`~sparsejax.optim.frank_wolfe.sfw`,
  :func:`~sparsejax.optim.frank_wolfe.one_shot_fw`) on fixed-size minibatches.

Each counts the per-sample gradient evaluations (IFO calls) and returns the
iterates at requested evaluation counts, so that methods can be compared at
an equal gradient budget. ``loss_fn(params, batch)`` returns the vector of
per-example losses of a batch (leading axis the examples).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sparsejax._validation import check_number
from sparsejax.constraints import ConstraintTree, leaf_constraints
from sparsejax.optim.frank_wolfe import frank_wolfe_step_size, one_shot_fw, saga_fw, sfw, svrf
from sparsejax.tree import PyTree

__all__ = ["METHODS", "FiniteSumRun", "run_method", "saga_fw_run", "stochastic_fw_run", "svrf_run"]

LossFn = Callable[[PyTree, Any], jax.Array]
_CHUNK = 256
METHODS = ("sfw", "one_shot_fw", "svrf", "saga_fw")


class FiniteSumRun(NamedTuple):
    """What the finite-sum runs return.

    Attributes:
      params: the last iterate.
      evaluations: the per-sample gradient evaluations spent at each recorded
        iterate (increasing; the first entry is the start).
      iterates: the recorded iterates (params pytrees), one per entry of
        ``evaluations``.
      steps: the number of Frank-Wolfe steps taken (LMO calls).
    """

    params: PyTree
    evaluations: list[int]
    iterates: list[PyTree]
    steps: int


def _num_examples(data: Any) -> int:
    sizes = {int(np.shape(x)[0]) for x in jax.tree.leaves(data)}
    if len(sizes) != 1:
        raise ValueError(f"data leaves need one common leading size (the examples), got {sizes}")
    return sizes.pop()


def _take(data: Any, idx: np.ndarray) -> Any:
    return jax.tree.map(lambda x: jnp.asarray(np.asarray(x)[idx]), data)


class _Grads:
    """Jitted mean gradients over index sets, in fixed-size chunks (one compilation)."""

    def __init__(self, loss_fn: LossFn, data: Any):
        self.data = jax.tree.map(np.asarray, data)
        self.n = _num_examples(data)

        def chunk_grad(params, batch, weights):
            return jax.grad(lambda p: jnp.sum(weights * loss_fn(p, batch)))(params)

        self._chunk = jax.jit(chunk_grad)
        self._per_sample = jax.jit(jax.vmap(
            jax.grad(lambda p, x: loss_fn(p, jax.tree.map(lambda a: a[None], x))[0]),
            in_axes=(None, 0)))

    def mean(self, params: PyTree, idx: np.ndarray) -> PyTree:
        """:math:`\\frac1{|I|}\\sum_{i\\in I}\\nabla f_i` (indices may repeat)."""
        total = jax.tree.map(jnp.zeros_like, params)
        m = len(idx)
        for start in range(0, m, _CHUNK):
            part = idx[start:start + _CHUNK]
            pad = _CHUNK - len(part)
            weights = np.concatenate([np.ones(len(part)), np.zeros(pad)]).astype(np.float32)
            part = np.concatenate([part, np.zeros(pad, part.dtype)])
            g = self._chunk(params, _take(self.data, part), jnp.asarray(weights))
            total = jax.tree.map(jnp.add, total, g)
        return jax.tree.map(lambda t: t / m, total)

    def full(self, params: PyTree) -> PyTree:
        return self.mean(params, np.arange(self.n))

    def per_sample(self, params: PyTree, idx: np.ndarray) -> PyTree:
        return self._per_sample(params, _take(self.data, idx))


class _Recorder:
    def __init__(self, record_at: Sequence[int]):
        self.marks = sorted(int(r) for r in record_at)
        self.evaluations: list[int] = []
        self.iterates: list[PyTree] = []

    def __call__(self, evals: int, params: PyTree, force: bool = False) -> None:
        due = False
        while self.marks and evals >= self.marks[0]:
            self.marks.pop(0)
            due = True
        if due or force:
            self.evaluations.append(int(evals))
            self.iterates.append(params)


def _check_budget(budget: int) -> int:
    check_number("budget", budget, ge=1, integer=True)
    return int(budget)


def svrf_run(
    loss_fn: LossFn,
    params: PyTree,
    data: Any,
    constraints: ConstraintTree,
    *,
    budget: int,
    batch_scale: float = 96.0,
    seed: int = 0,
    record_at: Sequence[int] = (),
    init_at_vertex: bool = True,
    learning_rate: optax.ScalarOrSchedule | None = None,
) -> FiniteSumRun:
    r"""Stochastic variance-reduced Frank-Wolfe (Hazan and Luo's Algorithm 1) for a finite sum.

    .. math::

      w_0 = \mathrm{LMO}(\nabla f(x)) \ (x = \texttt{params}), \qquad
      \text{for } t = 1, 2, \dots:\ x_0 = w_{t-1},\ \text{full } \nabla f(x_0),

      \text{for } k = 1..N_t:\quad
      \tilde\nabla_k = \frac1{m_k}\sum_{i \in I_k}\big(\nabla f_i(x_{k-1}) - \nabla f_i(x_0)\big)
                       + \nabla f(x_0),\quad
      x_k = (1-\gamma_k)x_{k-1} + \gamma_k\,\mathrm{LMO}(\tilde\nabla_k),

      w_t = x_{N_t}, \qquad \gamma_k = \frac2{k+1}, \quad m_k = \lceil c\,(k+1)\rceil,
      \quad N_t = 2^{t+3} - 2,

    with :math:`I_k` drawn uniformly with replacement and :math:`c = 96` in
    the analysis. A snapshot costs :math:`n` gradient evaluations, an inner
    step :math:`2 m_k`, and :math:`w_0` the :math:`n` of its full gradient.
    The run stops before the step that would exceed ``budget`` evaluations.

    Args:
      loss_fn: ``(params, batch) -> per-example losses``.
      params: a starting point (feasible, or only used for the first LMO).
      data: the finite sum's examples, a pytree of arrays with leading axis n.
      constraints: as in :func:`sparsejax.sfw`.
      budget: the per-sample gradient evaluations allowed (:math:`w_0`'s
        full gradient included), ``>= n`` with ``init_at_vertex``, else ``>= 1``.
      batch_scale: :math:`c > 0`.
      seed: seed of the sampling.
      record_at: evaluation counts at which the iterate is recorded (the
        first iterate reached at or past each).
      init_at_vertex: start from :math:`w_0 = \mathrm{LMO}(\nabla f(x))` as the
        algorithm states (``n`` evaluations), or from ``params`` itself.
      learning_rate: ``None`` (the analysis' :math:`\gamma_k = 2/(k+1)`), or
        another :math:`\gamma_k`, a number or a schedule of the inner step
        count (restarted at each snapshot), e.g. the constant step of Reddi
        et al.'s nonconvex SVFW.

    Returns:
      A :class:`FiniteSumRun` (the start ``params`` at 0 evaluations and the
      last iterate are always recorded; with ``init_at_vertex`` also
      :math:`w_0`, at :math:`n`).

    Raises:
      ValueError: with ``init_at_vertex``, for a ``budget`` below :math:`n`.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> from sparsejax.optim.fw_finite_sum import svrf_run
      >>> data = {'a': jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])}
      >>> loss = lambda p, b: (b['a'] @ p['w'] - 1.0) ** 2
      >>> run = svrf_run(loss, {'w': jnp.zeros(2)}, data, sj.constraints.l1_ball(1.0),
      ...                budget=3000, batch_scale=1.0)
      >>> [round(float(x), 1) for x in run.params['w']]  # the optimum (0.5, 0.5) on the l1 sphere
      [0.5, 0.5]

    References:
      Hazan and Luo, *Variance-Reduced and Projection-Free Stochastic
      Optimization*, ICML 2016, Algorithm 1 and Theorem 1.
    """
    budget = _check_budget(budget)
    check_number("batch_scale", batch_scale, gt=0)
    grads = _Grads(loss_fn, data)
    n = grads.n
    if init_at_vertex and budget < n:
        raise ValueError(f"budget must cover the full gradient of w0 = LMO(grad f(params)) "
                         f"(n = {n}), got {budget}; or pass init_at_vertex=False")
    rng = np.random.default_rng(seed)
    rec = _Recorder(record_at)
    cons = leaf_constraints(constraints, params)
    evals, steps = 0, 0
    rec(0, params, force=True)
    if init_at_vertex:
        g = grads.full(params)
        evals += n
        leaves, treedef = jax.tree.flatten(params)
        params = treedef.unflatten([c.lmo(x).astype(p.dtype) for c, x, p in
                                    zip(cons, jax.tree.leaves(g), leaves)])
        rec(evals, params, force=True)
    lr = (lambda count: 2.0 / (count + 2.0)) if learning_rate is None else learning_rate
    tx = svrf(lr, constraints)
    step = jax.jit(lambda g, s, p, sg, fg: tx.update(g, s, p, snapshot_grads=sg,
                                                     snapshot_full_grads=fg))
    t = 0
    while evals + n <= budget:
        t += 1
        snapshot = params
        full = grads.full(snapshot)
        evals += n
        state = tx.init(params)  # gamma_k = 2/(k+1) restarts at every snapshot
        stop = False
        for k in range(1, 2 ** (t + 3) - 1):
            m = math.ceil(batch_scale * (k + 1))
            if evals + 2 * m > budget:
                stop = True
                break
            idx = rng.integers(0, n, size=m)
            updates, state = step(grads.mean(params, idx), state, params,
                                  grads.mean(snapshot, idx), full)
            params = optax.apply_updates(params, updates)
            evals += 2 * m
            steps += 1
            rec(evals, params)
        if stop:
            break
    rec(evals, params, force=not rec.evaluations or rec.evaluations[-1] != evals)
    return FiniteSumRun(params, rec.evaluations, rec.iterates, steps)


def saga_fw_run(
    loss_fn: LossFn,
    params: PyTree,
    data: Any,
    constraints: ConstraintTree,
    *,
    budget: int,
    batch_size: int | None = None,
    learning_rate: optax.ScalarOrSchedule | None = None,
    seed: int = 0,
    record_at: Sequence[int] = (),
) -> FiniteSumRun:
    r"""SAGA Frank-Wolfe (Reddi et al.) for a finite sum, its table initialised at :math:`\nabla f_i(x_0)`.

    .. math::

      \alpha_i = \nabla f_i(x_0)\ (i = 1..n), \qquad
      d_t = \frac1b\sum_{i\in I_t}\big(\nabla f_i(x_t) - \alpha_i\big) + \frac1n\sum_j \alpha_j,

      x_{t+1} = (1-\gamma_t) x_t + \gamma_t\,\mathrm{LMO}(d_t), \qquad
      \alpha_i \leftarrow \nabla f_i(x_t)\ (i \in I_t),

    :math:`I_t` of size :math:`b` drawn uniformly with replacement. The table
    costs :math:`n` evaluations at the start (and :math:`n` copies of the
    params in memory), a step :math:`b`. Defaults: :math:`b = \lceil n^{2/3}\rceil`
    (Reddi et al.'s choice) and :math:`\gamma_t = 2/(t+2)` (the convex
    open-loop rate; their nonconvex analysis uses a constant
    :math:`\gamma`, pass it as ``learning_rate``).

    Args:
      loss_fn: ``(params, batch) -> per-example losses``.
      params: the feasible starting point :math:`x_0`.
      data: the examples, a pytree of arrays with leading axis n.
      constraints: as in :func:`sparsejax.sfw`.
      budget: the per-sample gradient evaluations allowed (the table's
        initialisation included), ``>= n``.
      batch_size: :math:`b \ge 1` (default :math:`\lceil n^{2/3}\rceil`).
      learning_rate: :math:`\gamma_t`, a number or schedule of the step count.
      seed: seed of the sampling.
      record_at: evaluation counts at which the iterate is recorded.

    Returns:
      A :class:`FiniteSumRun`.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> from sparsejax.optim.fw_finite_sum import saga_fw_run
      >>> data = {'a': jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])}
      >>> loss = lambda p, b: (b['a'] @ p['w'] - 1.0) ** 2
      >>> run = saga_fw_run(loss, {'w': jnp.zeros(2)}, data, sj.constraints.l1_ball(1.0),
      ...                   budget=600, batch_size=2)
      >>> [round(float(x), 1) for x in run.params['w']]
      [0.5, 0.5]

    References:
      Reddi, Sra, Póczos, Smola, *Stochastic Frank-Wolfe Methods for
      Nonconvex Optimization*, Allerton 2016 (SAGA-FW); Defazio, Bach,
      Lacoste-Julien, *SAGA*, NeurIPS 2014.
    """
    budget = _check_budget(budget)
    grads = _Grads(loss_fn, data)
    n = grads.n
    if budget < n:
        raise ValueError(f"budget must cover the table's initialisation (n = {n}), got {budget}")
    b = math.ceil(n ** (2.0 / 3.0)) if batch_size is None else batch_size
    check_number("batch_size", b, ge=1, integer=True)
    lr = (lambda count: 2.0 / (count + 2.0)) if learning_rate is None else learning_rate
    rng = np.random.default_rng(seed)
    rec = _Recorder(record_at)
    rec(0, params, force=True)
    tx = saga_fw(lr, constraints, num_samples=n)
    state = tx.init(params)
    # alpha_i = grad f_i(x0), in chunks of the per-sample gradient function
    rows = [grads.per_sample(params, np.arange(s, min(n, s + _CHUNK))) for s in range(0, n, _CHUNK)]
    table = jax.tree.map(lambda *xs: jnp.concatenate(xs), *rows)
    table = jax.tree.map(lambda t, old: t.astype(old.dtype), table, state.table)
    state = state._replace(table=table, table_mean=jax.tree.map(lambda t: t.mean(0), table))
    evals, steps = n, 0

    def one(params, state, idx, batch):
        psg = jax.vmap(jax.grad(lambda p, x: loss_fn(p, jax.tree.map(lambda a: a[None], x))[0]),
                       in_axes=(None, 0))(params, batch)
        g = jax.tree.map(lambda x: x.mean(0), psg)
        updates, state = tx.update(g, state, params, indices=idx, per_sample_grads=psg)
        return optax.apply_updates(params, updates), state

    step = jax.jit(one)
    while evals + b <= budget:
        idx = rng.integers(0, n, size=b)
        params, state = step(params, state, jnp.asarray(idx), _take(grads.data, idx))
        evals += b
        steps += 1
        rec(evals, params)
    rec(evals, params, force=rec.evaluations[-1] != evals)
    return FiniteSumRun(params, rec.evaluations, rec.iterates, steps)


def stochastic_fw_run(
    loss_fn: LossFn,
    params: PyTree,
    data: Any,
    tx: optax.GradientTransformation,
    *,
    budget: int,
    batch_size: int,
    seed: int = 0,
    record_at: Sequence[int] = (),
) -> FiniteSumRun:
    r"""A minibatch Frank-Wolfe transform run on a finite sum until a gradient budget is spent.

    Each step draws :math:`b` examples uniformly with replacement, passes
    their mean gradient to ``tx`` (e.g. :func:`sparsejax.sfw` with
    ``learning_rate=frank_wolfe_step_size()``, or
    :func:`sparsejax.one_shot_fw`) and costs :math:`b` evaluations.

    Args:
      loss_fn: ``(params, batch) -> per-example losses``.
      params: the feasible starting point.
      data: the examples, a pytree of arrays with leading axis n.
      tx: the transform (its ``update`` takes ``params``).
      budget: the per-sample gradient evaluations allowed.
      batch_size: :math:`b \ge 1`.
      seed: seed of the sampling.
      record_at: evaluation counts at which the iterate is recorded.

    Returns:
      A :class:`FiniteSumRun`.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> from sparsejax.optim.fw_finite_sum import stochastic_fw_run
      >>> data = {'a': jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])}
      >>> loss = lambda p, b: (b['a'] @ p['w'] - 1.0) ** 2
      >>> tx = sj.sfw(sj.frank_wolfe_step_size(), sj.constraints.l1_ball(1.0), momentum=0.0, rescale=None)
      >>> run = stochastic_fw_run(loss, {'w': jnp.zeros(2)}, data, tx, budget=60, batch_size=3)
      >>> run.steps, run.evaluations[-1]
      (20, 60)

    References:
      Hazan and Luo, ICML 2016 (SFW, their Appendix B); Reddi et al.,
      Allerton 2016 (Algorithm 2); Chen et al., ICML 2018 (One-Shot FW).
    """
    budget = _check_budget(budget)
    check_number("batch_size", batch_size, ge=1, integer=True)
    grads = _Grads(loss_fn, data)
    n = grads.n
    rng = np.random.default_rng(seed)
    rec = _Recorder(record_at)
    rec(0, params, force=True)
    state = tx.init(params)

    def one(params, state, batch):
        g = jax.grad(lambda p: jnp.mean(loss_fn(p, batch)))(params)
        updates, state = tx.update(g, state, params)
        return optax.apply_updates(params, updates), state

    step = jax.jit(one)
    evals, steps = 0, 0
    while evals + batch_size <= budget:
        idx = rng.integers(0, n, size=batch_size)
        params, state = step(params, state, _take(grads.data, idx))
        evals += batch_size
        steps += 1
        rec(evals, params)
    rec(evals, params, force=rec.evaluations[-1] != evals)
    return FiniteSumRun(params, rec.evaluations, rec.iterates, steps)


def run_method(
    method: str,
    loss_fn: LossFn,
    params: PyTree,
    data: Any,
    constraints: ConstraintTree,
    *,
    budget: int,
    batch_size: int = 64,
    svrf_batch_scale: float = 96.0,
    saga_batch_size: int | None = None,
    learning_rate: optax.ScalarOrSchedule | None = None,
    seed: int = 0,
    record_at: Sequence[int] = (),
) -> FiniteSumRun:
    r"""One of the four finite-sum Frank-Wolfe methods by name, with its analysis' default constants.

    * ``'sfw'``: :func:`stochastic_fw_run` with :func:`sparsejax.sfw`
      (:math:`\gamma_t = 2/(t+2)`, no momentum, no rescaling; Reddi et al.'s
      Algorithm 2 with a fixed minibatch ``batch_size``);
    * ``'one_shot_fw'``: :func:`stochastic_fw_run` with
      :func:`sparsejax.one_shot_fw` (:math:`\eta_t = 2/(t+8)`,
      :math:`\rho_t = 4/(t+8)^{2/3}`, minibatch ``batch_size``);
    * ``'svrf'``: :func:`svrf_run` with :math:`m_k = \lceil c(k+1)\rceil`,
      :math:`c` = ``svrf_batch_scale`` (96 in Hazan and Luo's Theorem 1);
    * ``'saga_fw'``: :func:`saga_fw_run` with :math:`b` = ``saga_batch_size``
      (default :math:`\lceil n^{2/3}\rceil`) and :math:`\gamma_t = 2/(t+2)`.

    ``learning_rate`` replaces every method's Frank-Wolfe step size (SFW's
    :math:`\gamma_t`, One-Shot FW's :math:`\eta_t`, SVRF's :math:`\gamma_k`,
    SAGA-FW's :math:`\gamma_t`), e.g. by the constant
    :math:`\gamma \propto 1/\sqrt T` of Reddi et al.'s nonconvex analyses;
    One-Shot FW keeps its :math:`\rho_t`.

    Every method starts from ``params`` (SVRF from the vertex
    :math:`\mathrm{LMO}(\nabla f(\texttt{params}))`, as its Algorithm 1
    states) and stops before exceeding ``budget`` per-sample gradients.

    Args:
      method: one of :data:`METHODS`.
      loss_fn: ``(params, batch) -> per-example losses``.
      params: the feasible starting point.
      data: the examples, a pytree of arrays with leading axis n.
      constraints: as in :func:`sparsejax.sfw`.
      budget: the per-sample gradient evaluations allowed.
      batch_size: the minibatch of ``'sfw'`` and ``'one_shot_fw'``.
      svrf_batch_scale: SVRF's :math:`c > 0`.
      saga_batch_size: SAGA-FW's :math:`b` (``None``: :math:`\lceil n^{2/3}\rceil`).
      learning_rate: ``None`` (each method's default above) or the step size
        of every method, a number or a schedule of the step count.
      seed: seed of the sampling.
      record_at: evaluation counts at which the iterate is recorded.

    Returns:
      A :class:`FiniteSumRun`.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> from sparsejax.optim.fw_finite_sum import run_method
      >>> data = {'a': jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])}
      >>> loss = lambda p, b: (b['a'] @ p['w'] - 1.0) ** 2
      >>> run = run_method('sfw', loss, {'w': jnp.zeros(2)}, data, sj.constraints.l1_ball(1.0),
      ...                  budget=60, batch_size=3)
      >>> run.steps
      20

    References:
      Hazan and Luo, ICML 2016 (SVRF, SFW); Reddi, Sra, Póczos, Smola,
      Allerton 2016 (SFW, SAGA-FW); Chen et al., ICML 2018 (One-Shot FW).
    """
    if method == "sfw":
        lr = frank_wolfe_step_size() if learning_rate is None else learning_rate
        tx = sfw(lr, constraints, momentum=0.0, rescale=None)
    elif method == "one_shot_fw":
        lr = frank_wolfe_step_size(shift=8.0) if learning_rate is None else learning_rate
        tx = one_shot_fw(lr, constraints)
    elif method == "svrf":
        return svrf_run(loss_fn, params, data, constraints, budget=budget,
                        batch_scale=svrf_batch_scale, seed=seed, record_at=record_at,
                        learning_rate=learning_rate)
    elif method == "saga_fw":
        return saga_fw_run(loss_fn, params, data, constraints, budget=budget,
                           batch_size=saga_batch_size, learning_rate=learning_rate, seed=seed,
                           record_at=record_at)
    else:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return stochastic_fw_run(loss_fn, params, data, tx, budget=budget, batch_size=batch_size,
                             seed=seed, record_at=record_at)
