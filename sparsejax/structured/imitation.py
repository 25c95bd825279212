r"""Greedy local and global imitation: shared pieces (result type, checks, evaluation).

Ye, Wu and Liu (NeurIPS 2020) prune a trained network one layer at a time by
replacing the layer's mean-field sum over its ``N`` units (neurons or
channels) by a sparse convex combination,

.. math::

  F_\ell(z) = \frac{1}{N}\sum_{i=1}^N \sigma(\theta_i, z)
  \quad\longrightarrow\quad
  f_{\ell,A}(z) = \sum_{i=1}^N a_i\, \sigma(\theta_i, z),
  \qquad A \in \Omega_N,\ \|A\|_0 \le n,

chosen greedily so that the pruned network imitates the original one. On the
models of :mod:`sparsejax.models` a layer is a prunable group and
:math:`\sigma(\theta_i, z)` is ``N`` times unit ``i``'s contribution to the
group's consumers; the weights :math:`a` act through the group's gate
``g = N·a`` (:mod:`sparsejax.models.groups`), so the original network is
``a_i = 1/N``, i.e. gate 1, and a unit with ``a_i = 0`` can be removed
physically (:func:`sparsejax.structured.shrink`).

* :func:`~sparsejax.structured.local_imitation` (eqs. 2-5) imitates the layer's
  own output, from a Gram matrix of per-unit contributions computed with one
  forward pass: every greedy step is closed-form;
* :func:`~sparsejax.structured.global_imitation` (eqs. 6-8, §2.2.1) imitates the
  network's output, evaluating candidate gate vectors with ``jax.vmap``,
  with the Taylor acceleration past ``k = 25``; the fixed step of eq. 8 or
  a Gauss-Newton line search over the step (eq. 7).

Both return an :class:`ImitationResult`. This module holds what they share:
the result type and its greedy path (:func:`simplex_step`, :func:`imitation_result`),
the argument checks, and the model as compiled pure functions evaluated on
fixed data (:func:`compiled`, :class:`Evaluator`).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from sparsejax._validation import check_choice, check_number
from sparsejax.models.groups import Gates, PrunableGroup, PrunableModel

__all__ = ["ImitationResult", "output_discrepancy"]

#: Per-example losses between the outputs ``y`` of a pruned network and targets ``t``.
PerExample = Callable[[jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class ImitationResult:
    """The outcome of pruning one group by greedy imitation (or forward selection).

    The greedy path is stored as the picks and steps of
    :math:`a(k+1) = (1-\\gamma_k)\\,a(k) + \\gamma_k e_{i_k}`, starting from
    :math:`a(0) = e_{i_0}` (``gammas[0] = 1``); :meth:`weights_at` replays it.

    Attributes:
      group: the group's name.
      size: its number of units ``N``.
      method: ``'local'``, ``'local_fixed'``, ``'global'``, ``'global_taylor'``,
        ``'global_line_search'``, ``'global_line_search_taylor'`` or ``'gfs'``.
      indices: the kept units at the returned step, ascending.
      weights: their weights :math:`a_i` (positive, summing to 1), float64.
      step: the returned step ``k`` (the first that met ``eps`` or the stopping
        rule, otherwise the one with the smallest discrepancy).
      converged: whether ``eps`` or the stopping rule was met.
      history: the discrepancy after every step ``k = 0, 1, ...``.
      support: the number of units with nonzero weight after every step.
      picks: the unit :math:`i_k` of every step.
      gammas: the step :math:`\\gamma_k` of every step.
    """

    group: str
    size: int
    method: str
    indices: np.ndarray
    weights: np.ndarray
    step: int
    converged: bool
    history: np.ndarray
    support: np.ndarray
    picks: np.ndarray
    gammas: np.ndarray

    @property
    def n(self) -> int:
        """The number of kept units."""
        return int(self.indices.size)

    @property
    def discrepancy(self) -> float:
        """The discrepancy at the returned step."""
        return float(self.history[self.step])

    @property
    def gate(self) -> np.ndarray:
        """The gate ``N·a`` over all ``N`` units (zero on removed ones), float32."""
        g = np.zeros(self.size, np.float64)
        g[self.indices] = self.size * self.weights
        return g.astype(np.float32)

    def weights_at(self, k: int) -> np.ndarray:
        """The full weight vector :math:`a(k)` (length ``N``, float64) after step ``k``."""
        if not 0 <= k < len(self.picks):
            raise ValueError(f"k must lie in [0, {len(self.picks)}), got {k}")
        return _replay(self.size, self.picks[: k + 1], self.gammas[: k + 1])

    def best_with_at_most(self, n: int) -> float:
        """The smallest discrepancy along the path among steps with at most ``n`` units.

        ``inf`` if no step had so few units.
        """
        ok = self.support <= n
        return float(np.min(self.history[ok])) if np.any(ok) else float("inf")


def _replay(size: int, picks: np.ndarray, gammas: np.ndarray) -> np.ndarray:
    a = np.zeros(size, np.float64)
    for i, g in zip(picks, gammas):
        a = simplex_step(a, int(i), float(g))
    return a


def simplex_step(a: np.ndarray, i: int, gamma: float) -> np.ndarray:
    """``(1 - gamma) a + gamma e_i``, with exact zeros for removed units and sum 1."""
    lo = -a[i] / (1.0 - a[i]) if 0.0 < a[i] < 1.0 else 0.0
    new = (1.0 - gamma) * a
    new[i] += gamma
    if a[i] > 0.0 and gamma <= lo:
        new[i] = 0.0  # removed (the bound of U_i)
    new[np.abs(new) < 1e-15] = 0.0
    np.maximum(new, 0.0, out=new)
    return new / new.sum()


def imitation_result(
    group: str,
    size: int,
    method: str,
    picks: Sequence[int],
    gammas: Sequence[float],
    history: Sequence[float],
    support: Sequence[int],
    met: int | None,
) -> ImitationResult:
    """The :class:`ImitationResult` of a greedy path, read at its returned step.

    ``picks``, ``gammas``, ``history`` and ``support`` hold one entry per step
    (``gammas[0] = 1``); the returned step is ``met`` (the first step that met
    the stopping rule) or, when ``met`` is ``None``, the step with the smallest
    discrepancy. Its weights are replayed from the path with :func:`simplex_step`.
    """
    history_arr = np.asarray(history, np.float64)
    step = met if met is not None else int(np.argmin(history_arr))
    picks_arr = np.asarray(picks, np.int64)
    gammas_arr = np.asarray(gammas, np.float64)
    a = _replay(size, picks_arr[: step + 1], gammas_arr[: step + 1])
    idx = np.flatnonzero(a > 0)
    return ImitationResult(
        group=group, size=size, method=method, indices=idx, weights=a[idx], step=step,
        converged=met is not None, history=history_arr, support=np.asarray(support, np.int64),
        picks=picks_arr, gammas=gammas_arr,
    )


# --------------------------------------------------------------------------- #
# Checks.


def check_model(model: Any) -> PrunableModel:
    """Raises ``TypeError`` unless ``model`` is a :class:`~sparsejax.models.PrunableModel`."""
    if not isinstance(model, PrunableModel):
        raise TypeError(
            "greedy imitation prunes the groups of a sparsejax.models.PrunableModel (a model of "
            f"the zoo, sparsejax.models.create(...)), got {type(model).__name__}"
        )
    return model


def check_group(model: PrunableModel, group: str) -> PrunableGroup:
    """The group called ``group`` (``ValueError`` listing the known ones otherwise)."""
    return model.group(group)


def check_budget(n: int | None, size: int, group: str) -> int:
    """``n`` checked against ``[1, size]`` (``None`` means ``size``)."""
    if n is None:
        return size
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= size:
        raise ValueError(
            f"n (the number of units to keep) must be an integer in [1, {size}] for group "
            f"{group!r} of {size} units, got {n!r}"
        )
    return int(n)


def check_steps(max_steps: int | None, default: int) -> int:
    """``max_steps`` checked to be a positive integer (``None`` means ``default``)."""
    if max_steps is None:
        return default
    check_number("max_steps", max_steps, ge=1, integer=True)
    return int(max_steps)


def check_data(x: Any, name: str = "x") -> jax.Array:
    """Imitation data as an array with a non-empty leading (example) axis."""
    if x is None:
        raise ValueError(f"{name} (the imitation data) must be an array of examples, got None")
    arr = jnp.asarray(x)
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise ValueError(
            f"{name} (the imitation data) must hold at least one example along its first "
            f"axis, got shape {tuple(arr.shape)}"
        )
    return arr


def check_gates_for(model: PrunableModel, gates: Gates | None, group: str) -> dict[str, jax.Array]:
    """The fixed gates of the other groups, checked; the pruned group may not be among them."""
    gates = dict(gates or {})
    if group in gates:
        raise ValueError(
            f"gates= holds the fixed gates of the other groups; it must not hold the gate of "
            f"the group being pruned, {group!r}"
        )
    model.check_gates(gates)
    return {k: jnp.asarray(v, jnp.float32) for k, v in gates.items()}


def check_minibatch(minibatch: int | None) -> int | None:
    """``minibatch`` checked to be ``None`` or a positive integer."""
    if minibatch is not None:
        check_number("minibatch", minibatch, ge=1, integer=True)
        return int(minibatch)
    return None


class MiniBatches:
    """Fresh mini-batches of example indices, one per greedy step (Algorithm 1, line 4).

    Every :meth:`draw` returns ``min(size, count)`` distinct indices drawn
    uniformly without replacement from ``range(count)``, independently of the
    previous draws, from a NumPy generator seeded with ``seed`` (so a run is
    reproducible).
    """

    def __init__(self, count: int, size: int, seed: int = 0) -> None:
        check_number("seed", seed, ge=0, integer=True)
        self.count, self.size = int(count), min(int(size), int(count))
        self.rng = np.random.default_rng(int(seed))

    def draw(self) -> np.ndarray:
        """The indices of the next mini-batch."""
        return self.rng.choice(self.count, size=self.size, replace=False)


# --------------------------------------------------------------------------- #
# The model as a pure function, and data in fixed-size chunks.


def functional(model: nnx.Module) -> tuple[Any, Any]:
    """``(graphdef, state)`` of the model in evaluation mode (BatchNorm running stats, no dropout)."""
    view = nnx.view(model, deterministic=True, use_running_average=True, raise_if_not_found=False)
    return nnx.split(view)


@dataclasses.dataclass(frozen=True)
class Chunks:
    """Data in chunks of a fixed size (the last one padded, with a 0/1 mask)."""

    xs: list[jax.Array]
    masks: list[jax.Array]
    count: int


def chunk(x: jax.Array, batch_size: int) -> Chunks:
    """Splits ``x`` along axis 0 into chunks of ``min(batch_size, len(x))`` rows."""
    check_number("batch_size", batch_size, ge=1, integer=True)
    m = int(x.shape[0])
    b = min(int(batch_size), m)
    xs, masks = [], []
    for start in range(0, m, b):
        part = x[start : start + b]
        k = part.shape[0]
        if k < b:
            part = jnp.concatenate([part, jnp.zeros((b - k, *x.shape[1:]), x.dtype)])
        xs.append(part)
        masks.append(jnp.asarray(np.arange(b) < k, jnp.float32))
    return Chunks(xs, masks, m)


def per_example_loss(kind: str | PerExample) -> PerExample:
    """Per-example losses ``loss(y, t) -> (batch,)``.

    ``'mse'``: squared error summed over the outputs; ``'cross_entropy'``:
    :math:`\\mathrm{KL}(\\mathrm{softmax}(t)\\,\\|\\,\\mathrm{softmax}(y))`, the cross-entropy of
    ``y``'s softmax against ``t``'s minus the entropy of ``t``'s (0 when ``y == t``);
    ``'labels'``: cross-entropy of the logits ``y`` against integer labels ``t``;
    a callable is used as it is.
    """
    if callable(kind):
        return kind
    check_choice("criterion", kind, ("mse", "cross_entropy", "labels"))
    if kind == "mse":
        def mse(y: jax.Array, t: jax.Array) -> jax.Array:
            d = (y - t.reshape(y.shape).astype(y.dtype)).reshape(y.shape[0], -1)
            return jnp.sum(d * d, axis=-1)
        return mse
    if kind == "cross_entropy":
        def kl(y: jax.Array, t: jax.Array) -> jax.Array:
            logp = jax.nn.log_softmax(t, axis=-1)
            return jnp.sum(jnp.exp(logp) * (logp - jax.nn.log_softmax(y, axis=-1)), axis=-1)
        return kl

    def labels(y: jax.Array, t: jax.Array) -> jax.Array:
        return optax.softmax_cross_entropy_with_integer_labels(y, t.astype(jnp.int32))
    return labels


def outputs_shape(graphdef: Any, state: Any, x: jax.Array,
                  gates: Mapping[str, jax.Array] | None = None) -> tuple[int, ...]:
    """The shape of the model's output for one example of ``x`` (traced, not run)."""
    out = compiled(graphdef, "outputs", "", None)
    spec = jax.ShapeDtypeStruct((1, *x.shape[1:]), x.dtype)
    return tuple(jax.eval_shape(out, state, spec, dict(gates or {})).shape[1:])


def check_softmax_outputs(kind: Any, shape: tuple[int, ...], name: str = "criterion",
                          note: str = "") -> None:
    """Refuses a cross-entropy loss on outputs that are not class logits (last axis of size 1).

    A softmax over one output is identically 1, so the cross-entropy and the KL
    divergence are identically 0 there: every unit would look removable.
    """
    if not isinstance(kind, str) or kind not in ("cross_entropy", "labels"):
        return
    if len(shape) == 0 or shape[-1] < 2:
        raise ValueError(
            f"{name}='cross_entropy'{note} compares softmaxes over the last axis of the model's "
            f"outputs, which have shape {shape} per example: over a single output the "
            "cross-entropy is identically 0, so every unit would look removable. For a "
            f"model with one output (regression) pass {name}='mse'"
        )


def check_labels(y: Any, count: int, num_classes: int) -> None:
    """Checks that ``y`` holds ``count`` integer class labels in ``[0, num_classes)``."""
    t = np.asarray(y)
    fix = ("; for regression targets pass loss='mse'"
           if t.ndim != 2 or t.shape[0] != count
           else "; for one-hot or probability labels pass their class indices, y.argmax(-1)")
    if t.shape != (count,):
        raise ValueError(
            f"y must hold one entry per example, an integer class label: shape ({count},) "
            f"for the cross-entropy loss; got shape {tuple(t.shape)}{fix}"
        )
    if t.dtype.kind not in "biuf" or (t.dtype.kind == "f" and not np.all(t == np.round(t))):
        raise ValueError(
            f"y must hold integer class labels for the cross-entropy loss, got dtype {t.dtype}"
            f"{'' if t.dtype.kind != 'f' else ' with non-integer values'}{fix}"
        )
    if t.size and (t.min() < 0 or t.max() >= num_classes):
        raise ValueError(
            f"y must hold class labels in [0, {num_classes}) (the model has {num_classes} "
            f"outputs), got labels from {t.min()} to {t.max()}"
        )


@functools.lru_cache(maxsize=64)
def compiled(graphdef: Any, kind: str, group: str, loss: Any) -> Callable[..., Any]:
    """Jitted pure functions of a model (cached across calls and model instances)."""

    def apply(state: Any, x: jax.Array, gates: Gates) -> jax.Array:
        return nnx.merge(graphdef, state)(x, gates=gates)

    if kind == "outputs":
        return jax.jit(lambda state, x, gates: apply(state, x, gates))
    if kind == "capture":
        def capture(state: Any, x: jax.Array, gates: Gates) -> jax.Array:
            d: dict[str, jax.Array] = {}
            nnx.merge(graphdef, state)(x, gates=gates, capture=d)
            return d[group]
        return jax.jit(capture)
    fn = per_example_loss(loss)

    def total(state: Any, x: jax.Array, t: jax.Array, m: jax.Array, gates: Gates,
              g: jax.Array) -> jax.Array:
        return jnp.sum(fn(apply(state, x, {**gates, group: g}), t) * m)

    if kind == "loss":
        return jax.jit(total)
    if kind == "grad":
        return jax.jit(jax.grad(total, argnums=5))
    candidates = jax.vmap(total, in_axes=(None, None, None, None, None, 0))
    if kind == "candidates":
        return jax.jit(candidates)
    if kind.startswith("taylor"):  # "taylor:<top>": rank by the derivative, evaluate the top
        top = int(kind.split(":")[1])

        def taylor(state: Any, x: jax.Array, t: jax.Array, m: jax.Array, gates: Gates,
                   a: jax.Array, allowed: jax.Array, gamma: jax.Array) -> tuple[Any, Any]:
            size = a.shape[0]
            g = size * a
            grad = jax.grad(total, argnums=5)(state, x, t, m, gates, g)
            deriv = jnp.where(allowed, grad - grad @ a, jnp.inf)
            _, idx = jax.lax.top_k(-deriv, top)
            cands = (1.0 - gamma) * g[None, :] + gamma * size * jax.nn.one_hot(idx, size)
            # one program: XLA computes the layers before the group once for both passes
            return idx, candidates(state, x, t, m, gates, cands)

        return jax.jit(taylor)
    if kind == "quadratic":  # Gauss-Newton model of the loss along gate directions
        def quadratic(state: Any, x: jax.Array, t: jax.Array, m: jax.Array, gates: Gates,
                      g: jax.Array, dirs: jax.Array) -> tuple[jax.Array, jax.Array]:
            y, jvp = jax.linearize(lambda gg: apply(state, x, {**gates, group: gg}), g)

            def along(d: jax.Array) -> tuple[jax.Array, jax.Array]:
                u = jvp(d)

                def phi(s: jax.Array) -> jax.Array:
                    return jnp.sum(fn(y + s * u, t) * m)

                return jax.jvp(jax.grad(phi), (jnp.float32(0.0),), (jnp.float32(1.0),))

            return jax.vmap(along)(dirs)

        return jax.jit(quadratic)
    raise ValueError(kind)


class Evaluator:
    """Mean losses of the network with candidate gates of one group, on fixed data.

    The targets are given (labels, for a training loss) or are the outputs of
    the network with only the fixed ``gates`` of the other groups (for the
    discrepancy to the unpruned layer). Candidate gate vectors are evaluated
    with ``jax.vmap``: the part of the network before the group does not
    depend on the gate and is computed once per data chunk.

    A cross-entropy loss (``'cross_entropy'``, ``'labels'``) is refused on a
    model with one output (a ``ValueError`` naming ``name``, the argument the
    caller took the loss from), and ``'labels'`` needs integer class labels of
    shape ``(m,)``.
    """

    def __init__(
        self,
        model: PrunableModel,
        group: str,
        x: jax.Array,
        *,
        loss: str | PerExample,
        targets: Any = None,
        gates: Mapping[str, jax.Array] | None = None,
        batch_size: int = 256,
        candidate_batch: int | None = None,
        name: str = "criterion",
    ) -> None:
        self.group = group
        self.size = model.group(group).size
        self.graphdef, self.state = functional(model)
        self.gates = dict(gates or {})
        self.batch_size = int(batch_size)
        self.data = chunk(x, batch_size)
        self.loss_kind = loss
        if targets is None:
            out = compiled(self.graphdef, "outputs", group, None)
            self.targets = [out(self.state, xb, self.gates) for xb in self.data.xs]
            t = jnp.concatenate(self.targets)[: self.data.count]
        else:
            t = jnp.asarray(targets)
            if t.shape[0] != self.data.count:
                raise ValueError(
                    f"targets must have one entry per example ({self.data.count}), got "
                    f"shape {tuple(t.shape)}"
                )
            self.targets = chunk(t, batch_size).xs
        if isinstance(loss, str) and loss in ("cross_entropy", "labels"):
            shape = outputs_shape(self.graphdef, self.state, x, self.gates)
            check_softmax_outputs(loss, shape, name)
            if loss == "labels":
                check_labels(t, self.data.count, shape[-1])
        self._x, self._t = x, t
        b = self.data.xs[0].shape[0]
        if candidate_batch is None:
            candidate_batch = max(1, min(self.size, 8192 // b))
        check_number("candidate_batch", candidate_batch, ge=1, integer=True)
        self.candidate_batch = int(candidate_batch)

    @property
    def count(self) -> int:
        """The number of examples the losses are averaged over."""
        return self.data.count

    def subset(self, idx: np.ndarray) -> Evaluator:
        """The same evaluator on the examples ``idx`` of its data (and their targets).

        Used for the fresh mini-batch of every greedy step (Algorithm 1, line 4);
        the compiled programs are shared.
        """
        idx = jnp.asarray(np.asarray(idx, np.int64))
        out = copy.copy(self)
        out.data = chunk(self._x[idx], self.batch_size)
        out.targets = chunk(self._t[idx], self.batch_size).xs
        out._x, out._t = self._x[idx], self._t[idx]
        return out

    def _fn(self, kind: str) -> Callable[..., Any]:
        return compiled(self.graphdef, kind, self.group, self.loss_kind)

    def loss(self, gate: Any) -> float:
        """The mean loss with the group's gate ``gate``."""
        fn, g = self._fn("loss"), jnp.asarray(gate, jnp.float32)
        total = sum(fn(self.state, xb, tb, mb, self.gates, g)
                    for xb, tb, mb in zip(self.data.xs, self.targets, self.data.masks))
        return float(total) / self.data.count

    def grad(self, gate: Any) -> np.ndarray:
        """The derivative of :meth:`loss` with respect to the gate (one backward pass)."""
        fn, g = self._fn("grad"), jnp.asarray(gate, jnp.float32)
        total = sum(fn(self.state, xb, tb, mb, self.gates, g)
                    for xb, tb, mb in zip(self.data.xs, self.targets, self.data.masks))
        return np.asarray(total, np.float64) / self.data.count

    def taylor_candidates(self, a: np.ndarray, gamma: float, allowed: np.ndarray,
                          top: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``top`` allowed units with the most negative Taylor derivative, and their losses.

        The derivative of the loss along ``a -> a + gamma (e_i - a)`` at ``gamma = 0`` is
        ``N (grad_g - grad_g . a)``; with one data chunk the backward pass and the
        evaluation of the chosen candidates are one compiled program.
        """
        if len(self.data.xs) == 1:
            fn = self._fn(f"taylor:{top}")
            idx, losses = fn(self.state, self.data.xs[0], self.targets[0], self.data.masks[0],
                             self.gates, jnp.asarray(a, jnp.float32), jnp.asarray(allowed),
                             jnp.float32(gamma))
            return np.asarray(idx), np.asarray(losses, np.float64) / self.data.count
        grad = self.grad(self.size * a)
        deriv = np.where(allowed, grad - float(grad @ a), np.inf)
        idx = np.argsort(deriv, kind="stable")[:top]
        gates = np.repeat(((1.0 - gamma) * a * self.size)[None, :], idx.size, axis=0)
        gates[np.arange(idx.size), idx] += gamma * self.size
        return idx, self.losses(gates.astype(np.float32), chunk_size=top)

    def quadratic(self, a: np.ndarray, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r"""Slope and Gauss-Newton curvature of the loss along ``a -> a + gamma (e_i - a)``.

        For every ``i`` in ``units``: :math:`p_i = \partial_\gamma \mathbb{D}` and
        :math:`q_i = u_i^\top \nabla^2_y \ell\, u_i` at :math:`\gamma = 0`, with
        :math:`u_i` the change of the network output (one forward pass, then one
        Jacobian-vector product per unit). Both are means over the data.
        """
        fn, size = self._fn("quadratic"), self.size
        g = jnp.asarray(size * a, jnp.float32)
        ps, qs = [], []
        for start in range(0, units.size, self.candidate_batch):
            part = units[start : start + self.candidate_batch]
            k = part.size
            dirs = size * (np.eye(size, dtype=np.float64)[part] - a[None, :])
            if k < self.candidate_batch:
                dirs = np.concatenate([dirs, np.zeros((self.candidate_batch - k, size))])
            d = jnp.asarray(dirs, jnp.float32)
            p = q = 0.0
            for xb, tb, mb in zip(self.data.xs, self.targets, self.data.masks):
                pb, qb = fn(self.state, xb, tb, mb, self.gates, g, d)
                p, q = p + np.asarray(pb, np.float64), q + np.asarray(qb, np.float64)
            ps.append(p[:k])
            qs.append(q[:k])
        return np.concatenate(ps) / self.data.count, np.concatenate(qs) / self.data.count

    def losses(self, candidates: np.ndarray, chunk_size: int | None = None) -> np.ndarray:
        """Mean losses for each row of ``candidates`` (``(C, N)`` gate vectors)."""
        c = int(candidates.shape[0])
        size = chunk_size or self.candidate_batch
        fn = self._fn("candidates")
        out = []
        for start in range(0, c, size):
            part = candidates[start : start + size]
            k = part.shape[0]
            if k < size:
                part = np.concatenate([part, np.ones((size - k, self.size), part.dtype)])
            g = jnp.asarray(part, jnp.float32)
            total = sum(fn(self.state, xb, tb, mb, self.gates, g)
                        for xb, tb, mb in zip(self.data.xs, self.targets, self.data.masks))
            out.append(np.asarray(total, np.float64)[:k])
        return np.concatenate(out) / self.data.count


def output_discrepancy(
    model: PrunableModel,
    x: Any,
    gates: Gates,
    *,
    criterion: str = "mse",
    batch_size: int = 256,
) -> float:
    r"""The network-output discrepancy between a gated model and the ungated one.

    .. math::

      \mathbb{D}[f_A, F] = \mathbb{E}_{x}\, \ell\big(f_A(x), F(x)\big),

    with :math:`\ell` the squared error summed over the outputs (``'mse'``)
    or :math:`\mathrm{KL}(\mathrm{softmax}\,F(x)\,\|\,\mathrm{softmax}\,f_A(x))`
    (``'cross_entropy'``: the cross-entropy between the pruned and original
    outputs minus its value at :math:`f_A = F`). The model runs in evaluation mode.

    Args:
      model: a :class:`~sparsejax.models.PrunableModel`.
      x: the data, examples along the first axis.
      gates: ``{group name: gate vector}`` of the pruned network.
      criterion: ``'mse'`` or ``'cross_entropy'``.
      batch_size: examples per forward pass.

    Returns:
      The discrepancy (a Python float).

    Raises:
      ValueError: for an unknown criterion, empty data, bad gates, or
        ``criterion='cross_entropy'`` on a model with one output (whose softmax
        is constant; use ``'mse'``).

    Example:
      >>> import jax.numpy as jnp
      >>> from sparsejax.models import create
      >>> from sparsejax.structured import output_discrepancy
      >>> model = create('mlp', num_classes=1, input_shape=(3,), hidden=(4,), rngs=0)
      >>> output_discrepancy(model, jnp.ones((5, 3)), {'layers/0': jnp.ones(4)})
      0.0

    References:
      Ye, Wu, Liu. "Greedy Optimization Provably Wins the Lottery: Logarithmic
      Number of Winning Tickets is Enough", NeurIPS 2020, eq. (1).
    """
    model = check_model(model)
    check_choice("criterion", criterion, ("mse", "cross_entropy"))
    x = check_data(x)
    model.check_gates(gates)
    data = chunk(x, batch_size)
    graphdef, state = functional(model)
    check_softmax_outputs(criterion, outputs_shape(graphdef, state, x), "criterion")
    out = compiled(graphdef, "outputs", "", None)
    fn = per_example_loss(criterion)
    g = {k: jnp.asarray(v, jnp.float32) for k, v in gates.items()}
    total = 0.0
    for xb, mb in zip(data.xs, data.masks):
        total += float(jnp.sum(fn(out(state, xb, g), out(state, xb, {})) * mb))
    return total / data.count
