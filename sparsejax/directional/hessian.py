"""Hessian-vector products of a loss on parameter pytrees, and the exact Hessian of small nets.

Everything here is pure JAX on a loss function and a parameter pytree (nested
dicts, lists, ``nnx.State`` as a pure dict, ...): no Flax. Two kinds of loss
are accepted wherever a loss is asked for:

* a callable ``f(params) -> scalar`` (the data, if any, closed over). As with
  ``jax.jit``, it must be a pure function: the programs built from it are
  compiled once per function object and parameter shapes and reused, so an
  array it reads from outside its arguments is the one it saw at the first
  call. For other data pass another function object (``functools.partial(
  loss_fn, batch=batch)`` builds a new one, compiled again) or a
  :class:`DatasetLoss`, whose data are arguments of the compiled programs;
* a :class:`DatasetLoss`: the mean of per-example losses over a dataset,
  evaluated batch by batch inside one jitted program, exact over a padded last
  batch.

Hessian-vector products are computed forward-over-reverse
(``jax.jvp`` of ``jax.grad``), which costs about as much as two to three
gradients and never forms the Hessian.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from sparsejax.directional._util import check_same_structure, num_params
from sparsejax.tree import PyTree

__all__ = ["DatasetLoss", "Loss", "exact_hessian", "hvp"]

def hvp(fun: Callable[..., jax.Array], params: PyTree, v: PyTree, *args: Any) -> PyTree:
    r"""Hessian-vector product of a scalar function, forward-over-reverse.

    .. math::

      \nabla^2 f(w)\, v = \frac{d}{d\epsilon}\Big|_{\epsilon=0} \nabla f(w + \epsilon v),

    computed as ``jax.jvp(jax.grad(f), (w,), (v,))``: one forward-mode pass
    through the reverse-mode gradient, never forming :math:`\nabla^2 f`.

    Args:
      fun: ``fun(params, *args) -> scalar``.
      params: the point :math:`w` (any pytree of floating arrays).
      v: the direction, a pytree with the structure and shapes of ``params``.
      *args: further arguments of ``fun`` (held fixed).

    Returns:
      :math:`\nabla^2 f(w) v`, a pytree like ``params``.

    Raises:
      ValueError: if ``v`` does not have the structure and shapes of ``params``.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> f = lambda p: jnp.sum(p['w'] ** 3)
      >>> sj.directional.hvp(f, {'w': jnp.array([1.0, 2.0])}, {'w': jnp.array([1.0, 1.0])})['w']
      Array([ 6., 12.], dtype=float32)

    References:
      Pearlmutter, *Fast exact multiplication by the Hessian*, Neural
      Computation, 1994.
    """
    check_same_structure(params, v, "params", "v")
    return jax.jvp(lambda p: jax.grad(fun)(p, *args), (params,), (v,))[1]


class DatasetLoss:
    r"""The mean of per-example losses over a dataset, with jitted value, gradient and HVP.

    .. math::

      L(w) = \frac1N \sum_{i=1}^N \ell(w; z_i),

    evaluated in batches of ``batch_size`` examples by a :func:`jax.lax.scan`
    inside one jitted program (compiled once per params shape and dtype). The
    last batch is padded with copies of the first examples whose weight is 0,
    so the mean is exact over the :math:`N` examples (and the padding rows
    cannot produce NaNs in the derivatives). The data is moved to the device
    once, at construction.

    Args:
      loss_fn: ``loss_fn(params, batch) -> per-example losses`` of shape
        ``(batch_size,)``, not their mean (the weights of the padding rows
        need them), e.g. ``optax.softmax_cross_entropy_with_integer_labels(
        logits, batch['label'])``. ``batch`` has the structure of ``data``.
      data: a pytree of arrays (e.g. ``{'image': x, 'label': y}``) whose
        leaves share their leading (example) axis.
      batch_size: examples per batch (default: all of them in one batch).

    Attributes:
      num_examples: :math:`N`.
      batch_size: examples per batch.
      num_batches: :math:`\lceil N / \text{batch\_size} \rceil`.

    Raises:
      ValueError: for an empty dataset, leaves with different leading sizes,
        or a ``batch_size`` below 1; at the first call, if ``loss_fn`` does not
        return one loss per example.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> x = jnp.arange(5.0)
      >>> loss = sj.directional.DatasetLoss(lambda p, b: 0.5 * (p['w'] * b) ** 2, x, batch_size=2)
      >>> params = {'w': jnp.array(2.0)}
      >>> float(loss.value(params)), float(loss.hvp(params, {'w': jnp.array(1.0)})['w'])  # mean of x**2
      (12.0, 6.0)

    References:
      Ghorbani, Krishnan and Xiao, *An Investigation into Neural Net
      Optimization via Hessian Eigenvalue Density*, ICML 2019 (full-dataset
      Hessian-vector products).
    """

    def __init__(
        self,
        loss_fn: Callable[[PyTree, PyTree], jax.Array],
        data: PyTree,
        batch_size: int | None = None,
    ) -> None:
        if not callable(loss_fn):
            raise ValueError(f"loss_fn must be callable (params, batch) -> losses, got {loss_fn!r}")
        leaves = jax.tree.leaves(data)
        if not leaves:
            raise ValueError("data holds no array: pass a pytree of arrays with a leading example axis")
        sizes = sorted({int(np.shape(x)[0]) if np.ndim(x) else -1 for x in leaves})
        if len(sizes) != 1 or sizes[0] < 0:
            raise ValueError(
                "every leaf of data must have the same leading (example) axis, got leading sizes "
                f"{[np.shape(x)[:1] for x in leaves]}"
            )
        n = sizes[0]
        if n == 0:
            raise ValueError("data is empty (0 examples): the mean loss over it is undefined")
        if batch_size is None:
            batch_size = n
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        b = min(int(batch_size), n)
        nb = math.ceil(n / b)
        index = np.arange(nb * b) % n  # the padding repeats the first examples, with weight 0
        self.loss_fn = loss_fn
        self.num_examples, self.batch_size, self.num_batches = n, b, nb
        self.data = jax.tree.map(
            lambda x: jnp.asarray(x)[index].reshape(nb, b, *np.shape(x)[1:]), data)
        self.weights = jnp.asarray((np.arange(nb * b) < n).reshape(nb, b), jnp.float32)
        self._value = jax.jit(self._mean_value)
        self._grad = jax.jit(self._mean_grad)
        self._hvp = jax.jit(self._mean_hvp)
        self._programs: dict[Any, Any] = {}  # the spectral functions' compiled programs

    def __repr__(self) -> str:
        return (f"DatasetLoss({getattr(self.loss_fn, '__name__', 'loss_fn')}, "
                f"{self.num_examples} examples in {self.num_batches} batches of {self.batch_size})")

    # --- the traced pieces ------------------------------------------------------------------

    def batch_sum(self, params: PyTree, batch: PyTree, weights: jax.Array) -> jax.Array:
        """``sum_i weights_i * loss_i`` over one (padded) batch; traced by the jitted methods."""
        losses = self.loss_fn(params, batch)
        if jnp.shape(losses) != (self.batch_size,):
            raise ValueError(
                f"loss_fn must return one loss per example, shape ({self.batch_size},), got shape "
                f"{jnp.shape(losses)}: return the unreduced losses (e.g. "
                "optax.softmax_cross_entropy_with_integer_labels(...) without .mean()), which "
                "DatasetLoss averages exactly over the dataset"
            )
        return jnp.sum(losses * weights.astype(losses.dtype))

    def _scan(self, fn: Callable, init: Any, data: PyTree, weights: jax.Array) -> Any:
        def body(acc, xs):
            out = fn(*xs)
            return jax.tree.map(jnp.add, acc, out), None

        return jax.lax.scan(body, init, (data, weights))[0]

    def _mean_value(self, params: PyTree, data: PyTree, weights: jax.Array) -> jax.Array:
        shape = jax.eval_shape(self.batch_sum, params, jax.tree.map(lambda x: x[0], data), weights[0])
        total = self._scan(lambda b, m: self.batch_sum(params, b, m),
                           jnp.zeros(shape.shape, shape.dtype), data, weights)
        return total / self.num_examples

    def _mean_grad(self, params: PyTree, data: PyTree, weights: jax.Array) -> PyTree:
        grad = jax.grad(self.batch_sum)
        total = self._scan(lambda b, m: grad(params, b, m), jax.tree.map(jnp.zeros_like, params),
                           data, weights)
        return jax.tree.map(lambda g: g / self.num_examples, total)

    def _mean_hvp(self, params: PyTree, v: PyTree, data: PyTree, weights: jax.Array) -> PyTree:
        def one(b: PyTree, m: jax.Array) -> PyTree:
            return jax.jvp(lambda p: jax.grad(self.batch_sum)(p, b, m), (params,), (v,))[1]

        total = self._scan(one, jax.tree.map(jnp.zeros_like, params), data, weights)
        return jax.tree.map(lambda h: h / self.num_examples, total)

    # --- the public, jitted methods ---------------------------------------------------------

    def value(self, params: PyTree) -> jax.Array:
        """:math:`L(w)`, the exact mean loss over the dataset."""
        return self._value(params, self.data, self.weights)

    def grad(self, params: PyTree) -> PyTree:
        r""":math:`\nabla L(w)`, a pytree like ``params``."""
        return self._grad(params, self.data, self.weights)

    def hvp(self, params: PyTree, v: PyTree) -> PyTree:
        r""":math:`\nabla^2 L(w)\, v` (forward-over-reverse), a pytree like ``params``.

        Raises:
          ValueError: if ``v`` does not have the structure and shapes of ``params``.
        """
        check_same_structure(params, v, "params", "v")
        return self._hvp(params, v, self.data, self.weights)


Loss = Callable[[PyTree], jax.Array] | DatasetLoss
"""What the Hessian functions accept as a loss: ``f(params) -> scalar`` or a :class:`DatasetLoss`."""


class HessianOperator:
    """The Hessian of a loss at fixed params as a jitted map on flat vectors (internal).

    ``op(x)`` is :math:`\\nabla^2 L(w)\\,x` for a flat vector ``x`` (the params
    raveled by :func:`jax.flatten_util.ravel_pytree`). The data and params are
    passed to the compiled programs as arguments, never baked in, and the
    compiled programs (Hessian-vector product, Lanczos step, quadratic form,
    exact Hessian) are kept per loss and params signature: a second spectral
    computation on the same loss compiles nothing.
    """

    # Compiled programs per callable loss; a DatasetLoss keeps its own (``_programs``). The
    # programs of a callable refer to it weakly, so the cache never keeps a loss alive.
    _cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __init__(self, loss: Loss, params: PyTree) -> None:
        if not jax.tree.leaves(params):
            raise ValueError("params holds no array: there is no Hessian to compute")
        if not (isinstance(loss, DatasetLoss) or callable(loss)):
            raise ValueError(f"loss must be a DatasetLoss or a callable params -> scalar, got {loss!r}")
        flat, self.unravel = ravel_pytree(params)
        if not jnp.issubdtype(flat.dtype, jnp.floating):
            raise ValueError(f"params must be floating point, got dtype {flat.dtype}")
        self.size, self.dtype, self.params = int(flat.size), flat.dtype, params
        if isinstance(loss, DatasetLoss):
            self.operands = (params, loss.data, loss.weights)
            self._value = lambda: loss.value(params)
        else:
            self.operands = params
            self._value = lambda: loss(params)
        signature = (jax.tree.structure(params),
                     tuple((jnp.shape(x), jnp.result_type(x)) for x in jax.tree.leaves(params)))
        if isinstance(loss, DatasetLoss):
            per_loss = loss._programs
        else:
            try:
                per_loss = self._cache.setdefault(loss, {})
            except TypeError:  # not weakly referenceable: no cache
                per_loss = {}
        if signature not in per_loss:
            per_loss[signature] = {"apply": self._make_apply(loss, flat.dtype, self.unravel)}
        self.compiled = per_loss[signature]
        self.apply = self.compiled["apply"]

    @staticmethod
    def _make_apply(loss: Loss, dtype: Any, unravel: Callable) -> Callable:
        def ravel(tree: PyTree) -> jax.Array:
            return ravel_pytree(tree)[0].astype(dtype)

        if isinstance(loss, DatasetLoss):
            def apply(ops: Any, x: jax.Array) -> jax.Array:
                p, d, m = ops
                return ravel(loss._mean_hvp(p, unravel(x), d, m))
        else:
            try:
                ref = weakref.ref(loss)
            except TypeError:  # not weakly referenceable (then not cached either)
                ref = lambda: loss  # noqa: E731

            def apply(ops: Any, x: jax.Array) -> jax.Array:
                fn = ref()
                return ravel(jax.jvp(lambda p: jax.grad(fn)(p), (ops,), (unravel(x),))[1])
        return apply

    def program(self, name: str, make: Callable[[Callable], Callable]) -> Callable:
        """The jitted program ``name`` built by ``make(apply)``, compiled once per loss and signature."""
        fn = self.compiled.get(name)
        if fn is None:
            fn = self.compiled[name] = jax.jit(make(self.apply))
        return fn

    @property
    def matvec(self) -> Callable:
        return self.program("matvec", lambda apply: apply)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.matvec(self.operands, x)

    def check_finite_loss(self) -> float:
        """The loss at the params; raises ``ValueError`` if it is NaN or infinite."""
        value = self._value()
        if jnp.ndim(value) != 0:
            raise ValueError(f"the loss must be a scalar, got shape {jnp.shape(value)}")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(
                f"the loss at these params is {value}: the Hessian of a non-finite loss is "
                "undefined (check the params for NaN/inf and the loss for log(0) or overflow)"
            )
        return value


def check_finite(values: Any, what: str) -> None:
    """Raises the ``ValueError`` of a Hessian computation that met NaN or infinity."""
    if not bool(np.all(np.isfinite(np.asarray(values)))):
        raise ValueError(
            f"{what} are not finite: the loss is finite at these params but its second "
            "derivatives are not (overflow in the model, or a loss that is not twice "
            "differentiable in floating point here)"
        )


def exact_hessian(loss: Loss, params: PyTree, *, max_params: int = 5000,
                  chunk_size: int = 256) -> jax.Array:
    r"""The full Hessian matrix of a loss, for nets of up to a few thousand parameters.

    .. math::

      H_{:,i} = \nabla^2 L(w)\, e_i, \qquad H \leftarrow \tfrac12 (H + H^\top),

    one Hessian-vector product per coordinate (``chunk_size`` at a time, with
    :func:`jax.vmap`), in the order of :func:`jax.flatten_util.ravel_pytree`
    (leaves in ``jax.tree.leaves`` order, each row-major).

    Args:
      loss: a :class:`DatasetLoss` or a callable ``params -> scalar``.
      params: the point :math:`w`.
      max_params: refuse larger nets (the matrix has :math:`d^2` entries).
      chunk_size: Hessian-vector products computed together.

    Returns:
      The symmetric :math:`d \times d` Hessian, in the params' (promoted) dtype.

    Raises:
      ValueError: for more than ``max_params`` parameters, or a loss or
        Hessian that is not finite.

    Example:
      >>> import jax.numpy as jnp
      >>> import sparsejax as sj
      >>> f = lambda p: p['a'] ** 2 * p['b']
      >>> sj.directional.exact_hessian(f, {'a': jnp.array(1.0), 'b': jnp.array(3.0)})
      Array([[6., 2.],
             [2., 0.]], dtype=float32)
    """
    op = HessianOperator(loss, params)
    d = op.size
    if d > max_params:
        raise ValueError(
            f"params hold {d} parameters, more than max_params={max_params}: the exact Hessian "
            f"would hold {d * d:,} entries. Use sparsejax.directional.top_eigenpairs (Lanczos) "
            "instead, or raise max_params"
        )
    if num_params(params) != d:
        raise ValueError("params must hold only array leaves")
    op.check_finite_loss()
    chunk = d if d <= chunk_size else max(1, int(chunk_size))

    def make(apply: Callable) -> Callable:
        def build(ops: Any, eye: jax.Array) -> jax.Array:
            return jax.lax.map(lambda e: apply(ops, e), eye, batch_size=chunk)
        return build

    h = op.program(f"exact_hessian_{chunk}", make)(op.operands, jnp.eye(d, dtype=op.dtype))
    h = 0.5 * (h + h.T)
    check_finite(h, "the Hessian's entries")
    return h
