r"""Greedy local imitation (Ye, Wu, Liu 2020, §2.1, eqs. 2-5): closed-form steps on a Gram matrix.

Local imitation prunes a layer so that its own output imitates the original
layer's output. With :math:`s_i(z) = \sigma(\theta_i, z)` (``N`` times unit
``i``'s contribution to the group's consumers, before their bias) and
:math:`F_\ell = \frac1N\sum_i s_i`, the local discrepancy of weights
:math:`a` on the simplex is a quadratic form in a Gram matrix,

.. math::

  \bar{\mathbb{D}}(a) = \mathbb{E}_z \Big\| \sum_i a_i s_i(z) - F_\ell(z) \Big\|^2
  = (a - u)^\top G\, (a - u), \qquad
  G_{ij} = \mathbb{E}_z \langle s_i(z), s_j(z) \rangle,\ u = \tfrac{1}{N}\mathbf{1},

so one forward pass (to capture the group's activations) and one Gram
computation give every later step in closed form, with no further forward
passes (the paper's Appendix 5.1). :func:`contribution_gram` computes
:math:`G` (in float64), :func:`local_imitation_from_gram` runs the greedy
steps on it and :func:`local_imitation` does both.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.nnx.nn.linear import canonicalize_padding

from sparsejax._validation import check_choice, check_number
from sparsejax.models.groups import Gates, PrunableModel, UnitAxis, module_at
from sparsejax.structured.imitation import (
    ImitationResult,
    MiniBatches,
    check_budget,
    check_data,
    check_gates_for,
    check_group,
    check_minibatch,
    check_model,
    check_steps,
    chunk,
    compiled,
    functional,
    imitation_result,
    simplex_step,
)

__all__ = ["contribution_gram", "local_discrepancy", "local_imitation", "local_imitation_from_gram"]

#: Entries of the per-unit contributions materialised at once when computing a Gram matrix.
_GRAM_ELEMENTS = 1 << 24


# --------------------------------------------------------------------------- #
# Per-unit contributions to a consumer and their Gram matrix.


def _grouped_conv_ok(module: Any, spec: UnitAxis, kernel: jax.Array) -> bool:
    """Whether a consumer is a plain 2-D convolution reading the units on its input axis."""
    if not isinstance(module, nnx.Conv) or module.feature_group_count != 1 or kernel.ndim != 4:
        return False
    if spec.view is not None or spec.axis % 4 != 2 or getattr(module, "mask", None) is not None:
        return False
    pad = canonicalize_padding(module.padding, 2)
    return not isinstance(pad, str) or pad in ("SAME", "VALID")


def _contributions(module: Any, spec: UnitAxis, h: jax.Array, size: int) -> jax.Array:
    """``(b, N, L)``: unit ``i``'s contribution to the consumer's output (without its bias)."""
    kernel = module.kernel[...]
    b = h.shape[0]
    if spec.view is not None and isinstance(module, nnx.Linear):
        view = tuple(spec.view)
        axis = spec.axis % len(view)
        w = jnp.moveaxis(kernel.reshape(view), axis, -2).reshape(-1, size, view[-1])
        hv = jnp.moveaxis(h.reshape(b, *view[:-1]), axis + 1, -1).reshape(b, -1, size)
        return jnp.einsum("brn,rno->bno", hv, w)
    if _grouped_conv_ok(module, spec, kernel):
        # One grouped convolution: group i reads channel i with kernel[:, :, i, :].
        out = kernel.shape[-1]
        grouped = kernel.reshape(*kernel.shape[:2], 1, size * out)

        def tup(v: Any) -> tuple[int, int]:
            return (1, 1) if v is None else (v, v) if isinstance(v, int) else tuple(v)

        y = jax.lax.conv_general_dilated(
            h, grouped, tup(module.strides), canonicalize_padding(module.padding, 2),
            lhs_dilation=tup(module.input_dilation), rhs_dilation=tup(module.kernel_dilation),
            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=size,
        )
        return jnp.moveaxis(y.reshape(b, -1, size, out), 2, 1).reshape(b, size, -1)

    # Any other consumer: apply it to one unit at a time (it is linear up to its bias).
    zero = module(jnp.zeros_like(h))

    def one(e: jax.Array) -> jax.Array:
        return (module(h * e) - zero).reshape(b, -1)

    return jnp.moveaxis(jax.vmap(one)(jnp.eye(size, dtype=h.dtype)), 0, 1)


@functools.lru_cache(maxsize=64)
def _gram_fn(graphdef: Any, group: str, consumers: tuple[UnitAxis, ...], size: int,
             sub: int) -> Callable[..., Any]:
    """Jitted ``(state, h, mask) -> sum over the chunk of <c_i, c_j>`` in float64."""

    def gram(state: Any, h: jax.Array, mask: jax.Array) -> jax.Array:
        model = nnx.merge(graphdef, state)
        h = h * mask.reshape(-1, *([1] * (h.ndim - 1))).astype(h.dtype)
        total = jnp.zeros((size, size), jnp.float64)
        for spec in consumers:
            module = module_at(model, spec.path.rsplit("/", 1)[0])
            if isinstance(module, nnx.Linear) and spec.view is None and h.ndim >= 2:
                # <c_i, c_j> = h_i h_j <W_i, W_j>: no contributions needed.
                hf = h.reshape(-1, size).astype(jnp.float64)
                w = jnp.moveaxis(module.kernel[...], spec.axis, 0).reshape(size, -1)
                w = w.astype(jnp.float64)
                total = total + (hf.T @ hf) * (w @ w.T)
                continue
            parts = h.reshape(-1, sub, *h.shape[1:])

            def body(acc: jax.Array, hb: jax.Array, module: Any = module,
                     spec: UnitAxis = spec) -> tuple[jax.Array, None]:
                c = _contributions(module, spec, hb, size).astype(jnp.float64)
                return acc + jnp.einsum("bnl,bml->nm", c, c), None

            total, _ = jax.lax.scan(body, total, parts)
        return total

    return jax.jit(gram)


def _contribution_size(model: PrunableModel, spec: UnitAxis, h_shape: tuple[int, ...],
                       size: int) -> int:
    """Entries of the contributions of one example (for sub-batching)."""
    module = module_at(model, spec.path.rsplit("/", 1)[0])
    c = jax.eval_shape(lambda h: _contributions(module, spec, h, size),
                       jax.ShapeDtypeStruct((1, *h_shape[1:]), jnp.float32))
    return int(np.prod(c.shape))


def contribution_gram(
    model: PrunableModel,
    group: str,
    x: Any,
    *,
    gates: Gates | None = None,
    batch_size: int = 256,
) -> np.ndarray:
    r"""The Gram matrix of the units' contributions to the layer output, in float64.

    .. math::

      G_{ij} = \frac{1}{m} \sum_{n=1}^m \big\langle s_i(x_n), s_j(x_n) \big\rangle,
      \qquad s_i = N \cdot W_i h_i,

    where :math:`h_i` is unit ``i``'s activation (captured in one evaluation-mode
    forward pass) and :math:`W_i h_i` its contribution to the output of the
    group's consumers (a dense layer, a convolution, a dense layer reading a
    flattened feature map; any other consumer is applied to one unit at a
    time). For a dense consumer :math:`G = N^2 (H^\top H / m) \odot (W W^\top)`;
    for a convolution the contributions of all units come from one grouped
    convolution. The products are accumulated in float64, so discrepancies far
    below float32's resolution of :math:`\|F_\ell\|^2` stay exact.

    Args:
      model: a :class:`~sparsejax.models.PrunableModel`.
      group: the name of one of its prunable groups.
      x: the imitation data, examples along the first axis.
      gates: fixed gates of *other* groups applied in the forward pass (for
        layer-wise pruning, the layers pruned so far).
      batch_size: examples per forward pass.

    Returns:
      ``G``, a float64 NumPy array of shape ``(N, N)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from sparsejax.models import create
      >>> from sparsejax.structured import contribution_gram
      >>> model = create('mlp', num_classes=2, input_shape=(3,), hidden=(4,), rngs=0)
      >>> g = contribution_gram(model, 'layers/0', jnp.ones((8, 3)))
      >>> g.shape, g.dtype, bool((g == g.T).all())
      ((4, 4), dtype('float64'), True)

    References:
      Ye, Wu, Liu. "Greedy Optimization Provably Wins the Lottery: Logarithmic
      Number of Winning Tickets is Enough", NeurIPS 2020, §2.1 and Appendix 5.1.
    """
    model = check_model(model)
    check_group(model, group)  # validates the group name
    x = check_data(x)
    other = check_gates_for(model, gates, group)
    graphdef, state = functional(model)
    capture = compiled(graphdef, "capture", group, None)
    hs = [capture(state, xb, other) for xb in chunk(x, batch_size).xs]
    return _gram_of_activations(model, group, jnp.concatenate(hs)[: x.shape[0]], batch_size)


def _gram_of_activations(model: PrunableModel, group: str, h_all: jax.Array,
                         batch_size: int) -> np.ndarray:
    """:func:`contribution_gram` from the group's captured activations ``(m, ..., N)``."""
    spec = check_group(model, group)
    size = spec.size
    if h_all.shape[-1] != size:
        raise ValueError(f"group {group!r}: captured activations of shape {h_all.shape}, "
                         f"expected {size} units on the last axis")
    graphdef, state = functional(model)
    data = chunk(h_all, batch_size)
    total = None
    fn = None
    for h, mb in zip(data.xs, data.masks):
        if fn is None:
            per = max(_contribution_size(model, c, tuple(h.shape), size) for c in spec.consumers)
            b = h.shape[0]
            sub = max(1, min(b, _GRAM_ELEMENTS // max(per, 1)))
            while b % sub:
                sub -= 1
            with jax.enable_x64(True):
                fn = _gram_fn(graphdef, group, spec.consumers, size, sub)
        with jax.enable_x64(True):
            part = fn(state, h, mb)
        total = part if total is None else total + part
    return np.asarray(total, np.float64) * (size * size / data.count)


def local_discrepancy(
    model: PrunableModel,
    group: str,
    x: Any,
    gate: Any,
    *,
    gates: Gates | None = None,
    batch_size: int = 256,
) -> float:
    r"""The local (layer-output) discrepancy of a gate, by forward passes (a reference for tests).

    .. math::

      \bar{\mathbb{D}} = \frac1m \sum_n \big\| C(g \odot h(x_n)) - C(h(x_n)) \big\|^2,

    where :math:`C` is the group's consumer (bias cancels) and :math:`h` the
    group's activations; with ``gate = N·a`` this is
    :math:`(a-u)^\top G (a-u)` of :func:`contribution_gram`, computed in float32.

    Args:
      model: a :class:`~sparsejax.models.PrunableModel`.
      group: the group's name.
      x: the data.
      gate: the gate vector ``(N,)``.
      gates: fixed gates of other groups.
      batch_size: examples per forward pass.

    Returns:
      The discrepancy.

    Example:
      >>> import jax.numpy as jnp
      >>> from sparsejax.models import create
      >>> from sparsejax.structured import local_discrepancy
      >>> model = create('mlp', num_classes=2, input_shape=(3,), hidden=(4,), rngs=0)
      >>> local_discrepancy(model, 'layers/0', jnp.ones((8, 3)), jnp.ones(4))
      0.0

    References:
      Ye, Wu, Liu. "Greedy Optimization Provably Wins the Lottery: Logarithmic
      Number of Winning Tickets is Enough", NeurIPS 2020, eq. (2).
    """
    model = check_model(model)
    spec = check_group(model, group)
    x = check_data(x)
    other = check_gates_for(model, gates, group)
    g = jnp.asarray(gate, jnp.float32)
    if g.shape != (spec.size,):
        raise ValueError(f"gate must have shape ({spec.size},), got {g.shape}")
    data = chunk(x, batch_size)
    graphdef, state = functional(model)
    capture = compiled(graphdef, "capture", group, None)
    merged = nnx.merge(graphdef, state)
    total = 0.0
    for xb, mb in zip(data.xs, data.masks):
        h = capture(state, xb, other)
        for c in spec.consumers:
            module = module_at(merged, c.path.rsplit("/", 1)[0])
            hv = h.reshape(h.shape[0], -1) if c.view is not None else h
            gv = (h * g).reshape(h.shape[0], -1) if c.view is not None else h * g
            d = (module(gv) - module(hv)).reshape(h.shape[0], -1)
            total += float(jnp.sum(jnp.sum(d * d, axis=-1) * mb))
    return total / data.count


# --------------------------------------------------------------------------- #
# The greedy steps.


def local_imitation_from_gram(
    gram: Any,
    *,
    n: int | None = None,
    eps: float = 0.0,
    step: str = "line_search",
    max_steps: int | None = None,
    group: str = "",
    stop_fn: Callable[[np.ndarray], bool] | None = None,
) -> ImitationResult:
    r"""Greedy local imitation on a Gram matrix: closed-form steps, no forward passes.

    Starting from the single best unit (eq. 3),
    :math:`a(0) = e_{i_0}`, :math:`i_0 = \arg\min_i \bar{\mathbb{D}}(e_i)`,
    each step moves to :math:`a + \gamma (e_i - a)`. The discrepancy is
    quadratic in :math:`\gamma`,

    .. math::

      \bar{\mathbb{D}}(a + \gamma d_i) = \bar{\mathbb{D}}(a) + 2\gamma\, p_i + \gamma^2 q_i,
      \quad d_i = e_i - a,\ p_i = d_i^\top G (a - u),\ q_i = d_i^\top G\, d_i,

    so for every unit at once:

    * ``step='line_search'`` (eq. 4): :math:`\gamma_i = \mathrm{clip}(-p_i/q_i, U_i)`
      with :math:`U_i = [0, 1]` for a unit not yet chosen and
      :math:`[-a_i/(1-a_i), 1]` for a chosen one (so a step adds, removes or
      re-weights a unit), and the unit with the largest decrease is taken;
      the discrepancy never increases;
    * ``step='fixed'`` (eq. 5): :math:`\gamma = 1/(k+1)` after ``k`` picks,
      :math:`a = (k\,a + e_i)/(k+1)`, the best unit is taken.

    Once ``n`` units are chosen only they are candidates. The iteration stops
    when the discrepancy is at most ``eps``, ``stop_fn`` says so, no step
    decreases it (line search), or after ``max_steps`` steps.

    Args:
      gram: the Gram matrix :math:`G` of :func:`contribution_gram`, ``(N, N)``.
      n: the most units to keep, in ``[1, N]`` (default ``N``).
      eps: stop as soon as the discrepancy is at most this (default 0: never).
      step: ``'line_search'`` or ``'fixed'``.
      max_steps: the most steps after the first pick (default ``2·n``).
      group: the group's name, stored in the result.
      stop_fn: optional ``stop_fn(gate) -> bool`` called after every step with
        the gate ``N·a`` (e.g. a rule on the training loss); ``True`` stops.

    Returns:
      An :class:`~sparsejax.structured.ImitationResult` (``method`` ``'local'`` or
      ``'local_fixed'``): the first step meeting ``eps`` or ``stop_fn``, else
      the step with the smallest discrepancy.

    Example:
      >>> import numpy as np
      >>> from sparsejax.structured import local_imitation_from_gram
      >>> s = np.array([[2.0, 0.0], [0.0, 2.0], [3.0, 1.0], [1.0, 3.0]])  # 4 units, 2 outputs
      >>> r = local_imitation_from_gram(s @ s.T, n=2)   # the mean (1.5, 1.5) from 2 units
      >>> r.n, r.weights, r.discrepancy
      (2, array([0.5, 0.5]), 0.0)

    References:
      Ye, Wu, Liu. "Greedy Optimization Provably Wins the Lottery: Logarithmic
      Number of Winning Tickets is Enough", NeurIPS 2020, eqs. (2)-(5).
    """
    g = _check_gram(gram)
    size = g.shape[0]
    n = check_budget(n, size, group)
    check_number("eps", eps, ge=0.0)
    check_choice("step", step, ("line_search", "fixed"))
    max_steps = check_steps(max_steps, 2 * n)
    return _local_greedy(lambda: g, size, n=n, eps=eps, step=step, max_steps=max_steps,
                         group=group, stop_fn=stop_fn, stochastic=False)


def _check_gram(gram: Any) -> np.ndarray:
    g = np.asarray(gram, np.float64)
    if g.ndim != 2 or g.shape[0] != g.shape[1] or g.shape[0] == 0:
        raise ValueError(f"gram must be a square (N, N) matrix with N >= 1, got {g.shape}")
    return 0.5 * (g + g.T)


class _Quadratic:
    """The local discrepancy ``(a - u)^T G (a - u)`` of one Gram matrix and its pieces."""

    def __init__(self, g: np.ndarray) -> None:
        size = g.shape[0]
        self.g = g
        self.u = np.full(size, 1.0 / size)
        self.gu = g @ self.u
        self.ugu = float(self.u @ self.gu)
        self.diag = np.diag(g).copy()
        self.scale = max(float(np.max(np.abs(self.diag))), 1e-300)

    def __call__(self, a: np.ndarray) -> float:
        d = a - self.u
        return max(float(d @ self.g @ d), 0.0)


def _local_greedy(
    grams: Callable[[], np.ndarray],
    size: int,
    *,
    n: int,
    eps: float,
    step: str,
    max_steps: int,
    group: str,
    stop_fn: Callable[[np.ndarray], bool] | None,
    stochastic: bool,
) -> ImitationResult:
    """The greedy loop of local imitation; ``grams()`` gives the Gram matrix of each step.

    ``stochastic=False``: one Gram matrix for every step (``grams`` is called once);
    a line-search step that decreases nothing ends the run. ``stochastic=True``:
    every step (the first pick included) calls ``grams()`` for the Gram matrix of a
    fresh mini-batch, ``history`` holds the discrepancy on that mini-batch, and a
    mini-batch on which no step decreases it is skipped (it counts as one of
    ``max_steps``).
    """
    quad = _Quadratic(_check_gram(grams()))
    i0 = int(np.argmin(quad.diag - 2.0 * quad.gu + quad.ugu))
    a = np.zeros(size)
    a[i0] = 1.0
    picks, gammas, history, support = [i0], [1.0], [quad(a)], [1]
    met = 0 if (history[0] <= eps or (stop_fn is not None and stop_fn(size * a))) else None
    k = 1
    tries = 0
    while met is None and tries < max_steps:
        tries += 1
        if stochastic:
            quad = _Quadratic(_check_gram(grams()))
        g, gu, diag = quad.g, quad.gu, quad.diag
        ga = g @ a
        r = ga - gu
        p = r - float(a @ r)
        q = np.maximum(diag - 2.0 * ga + float(a @ ga), 0.0)
        chosen = a > 0
        allowed = chosen if chosen.sum() >= n else np.ones(size, bool)
        if step == "fixed":
            gamma = np.full(size, 1.0 / (k + 1))
        else:
            lo = np.where(chosen & (a < 1.0), -a / np.maximum(1.0 - a, 1e-300), 0.0)
            curved = q > 1e-14 * quad.scale
            safe_q = np.where(curved, q, 1.0)
            gamma = np.where(curved, np.clip(-p / safe_q, lo, 1.0), 0.0)
        delta = np.where(allowed, 2.0 * gamma * p + gamma * gamma * q, np.inf)
        i = int(np.argmin(delta))
        current = quad(a)
        if step == "line_search" and not delta[i] < -1e-13 * max(current, 1e-300):
            if stochastic:
                continue  # no decrease on this mini-batch: draw another
            break  # no step decreases the discrepancy: converged
        a = simplex_step(a, i, float(gamma[i]))
        picks.append(i)
        gammas.append(float(gamma[i]))
        history.append(quad(a))
        support.append(int(np.count_nonzero(a)))
        k += 1
        if history[-1] <= eps or (stop_fn is not None and stop_fn(size * a)):
            met = len(history) - 1
    return imitation_result(group, size, "local" if step == "line_search" else "local_fixed",
                            picks, gammas, history, support, met)


def local_imitation(
    model: PrunableModel,
    group: str,
    x: Any,
    *,
    n: int | None = None,
    eps: float = 0.0,
    step: str = "line_search",
    max_steps: int | None = None,
    gates: Gates | None = None,
    batch_size: int = 256,
    stop_fn: Callable[[np.ndarray], bool] | None = None,
    minibatch: int | None = None,
    seed: int = 0,
) -> ImitationResult:
    r"""Prunes one group by greedy local imitation of its layer output (eqs. 2-5).

    Computes :func:`contribution_gram` (one forward pass over ``x`` and one
    Gram matrix) and runs :func:`local_imitation_from_gram` on it:

    .. math::

      [i_k, \gamma_k] = \arg\min_{i,\ \gamma \in U_i}
      \bar{\mathbb{D}}\big[(1-\gamma) f_{\ell,A(k)} + \gamma\,\sigma(\theta_i, \cdot),\ F_\ell\big].

    The weights :math:`a` of the result act as the gate ``N·a``
    (``result.gate``); :func:`sparsejax.structured.shrink` removes the other units.

    The layer output imitated is the consumers' raw output (before their bias
    and before a BatchNorm that follows them, as in the zoo's BatchNorm
    models), the paper's :math:`w_1 \sigma(w_2 z)` taken literally; the kept
    units therefore depend on how such a BatchNorm is parameterised: scaling a
    consumer's output channel together with its BatchNorm's running statistics
    leaves the network unchanged but changes the selection.

    **Mini-batches** (Algorithm 1, line 4): with ``minibatch=b`` every greedy
    step (the first pick of eq. 3 included) draws ``b`` fresh examples of
    ``x``, computes their Gram matrix (one forward pass of ``b`` examples) and
    takes the closed-form step on it; ``history`` is then the discrepancy on
    each step's mini-batch, and a mini-batch on which no step decreases it is
    skipped (it counts as one of ``max_steps``) instead of ending the run.
    ``minibatch=None`` uses one Gram matrix of all of ``x`` for every step.

    Args:
      model: a :class:`~sparsejax.models.PrunableModel` (evaluated in eval mode).
      group: the name of the group to prune (``model.prunable_groups()``).
      x: the imitation data, examples along the first axis.
      n: the most units to keep, in ``[1, N]`` (default ``N``).
      eps: stop at a local discrepancy of at most this (default 0).
      step: ``'line_search'`` (eq. 4) or ``'fixed'`` (:math:`\gamma = 1/(k+1)`, eq. 5).
      max_steps: the most steps after the first pick (default ``2·n``).
      gates: fixed gates of other groups (layers pruned before this one).
      batch_size: examples per forward pass.
      stop_fn: optional ``stop_fn(gate) -> bool`` checked after every step.
      minibatch: examples drawn afresh for every greedy step (``None``: all of ``x``).
      seed: seed of the mini-batch draws.

    Returns:
      An :class:`~sparsejax.structured.ImitationResult`.

    Raises:
      TypeError: if ``model`` is not a ``PrunableModel``.
      ValueError: for an unknown group (the message lists the known ones), ``n``
        outside ``[1, N]``, or empty data.

    Example:
      >>> import jax
      >>> from sparsejax.models import create
      >>> from sparsejax.structured import local_imitation
      >>> model = create('mlp', num_classes=1, input_shape=(4,), hidden=(16,), rngs=0)
      >>> x = jax.random.normal(jax.random.key(0), (64, 4))
      >>> r = local_imitation(model, 'layers/0', x, n=8)
      >>> r.n <= 8 and bool(abs(r.weights.sum() - 1) < 1e-12)
      True
      >>> bool(r.history[r.step] <= r.history[0])
      True

    References:
      Ye, Wu, Liu. "Greedy Optimization Provably Wins the Lottery: Logarithmic
      Number of Winning Tickets is Enough", NeurIPS 2020, §2.1.
    """
    model = check_model(model)
    spec = check_group(model, group)
    check_budget(n, spec.size, group)
    minibatch = check_minibatch(minibatch)
    if minibatch is None:
        g = contribution_gram(model, group, x, gates=gates, batch_size=batch_size)
        return local_imitation_from_gram(g, n=n, eps=eps, step=step, max_steps=max_steps,
                                         group=group, stop_fn=stop_fn)
    x = check_data(x)
    n = check_budget(n, spec.size, group)
    check_number("eps", eps, ge=0.0)
    check_choice("step", step, ("line_search", "fixed"))
    max_steps = check_steps(max_steps, 2 * n)
    sampler = MiniBatches(int(x.shape[0]), minibatch, seed)
    # The group's activations do not depend on its weights a: captured once, and
    # every step's Gram matrix is that of a fresh mini-batch of them.
    other = check_gates_for(model, gates, group)
    graphdef, state = functional(model)
    capture = compiled(graphdef, "capture", group, None)
    h_all = jnp.concatenate([capture(state, xb, other)
                             for xb in chunk(x, batch_size).xs])[: x.shape[0]]

    def grams() -> np.ndarray:
        idx = jnp.asarray(sampler.draw())
        return _gram_of_activations(model, group, h_all[idx], batch_size)

    return _local_greedy(grams, spec.size, n=n, eps=eps, step=step, max_steps=max_steps,
                         group=group, stop_fn=stop_fn, stochastic=True)
