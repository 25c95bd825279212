r"""Sparse inference: dense and conv layers replaced by compressed ones, where it pays.

:func:`sparsify` returns a copy of a model (in evaluation mode) in which each
``nnx.Linear`` and ``nnx.Conv`` whose kernel has density at most
``max_density`` is replaced by a :class:`SparseLinear` / :class:`SparseConv`
computing the same function from a compressed kernel
(:mod:`sparsejax.export.kernels`; a convolution is the product of its im2col
patches with the kernel matrix), or, for a 2:4 kernel where the backend has
it, the N:M product (:mod:`sparsejax.export.nm`). Which format each layer gets
is decided by ``policy``:

* ``"measure"`` (the default of :func:`sparsify`): each candidate layer is
  timed on its own input shape in every format and the fastest wins (dense
  included), then the whole sparse model is timed against the dense one and
  the dense model is returned when it is not faster: sparse inference is never
  chosen where it was measured to lose;
* ``"rule"`` (the default of :func:`sparse_apply`): a format is used only in
  the (rows, density) region where the benchmark table
  (``benchmarks/export.py``, :data:`CPU_RULE`) measured it faster than dense
  on a CPU; on other backends no rule was measured and every layer stays dense
  except 2:4 kernels with ``nm_spmm``;
* a format name (``"bcsr"``, ``"bcoo"``, ``"segment"``, ``"dense"``):
  every candidate layer in that format (for tests and benchmarks).

The choices, densities and times are returned in a :class:`SparseReport`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.nnx.nn.dtypes import promote_dtype

from sparsejax.export.kernels import FORMATS, CSRKernel, conv_matrix, conv_patches, matmul_arrays
from sparsejax.export.nm import is_nm, nm_compress, nm_matmul, nm_metadata, nm_support
from sparsejax.models.groups import module_at

__all__ = [
    "CPU_RULE",
    "LayerChoice",
    "SparseConv",
    "SparseLinear",
    "SparseReport",
    "eval_copy",
    "median_seconds",
    "rule_format",
    "sparse_apply",
    "sparsify",
]

# Where a sparse format beat the dense model on the CPU of benchmarks/README.md
# (benchmarks/export.py, 2026-12-05): (layer kind, fewest rows of the product, most
# rows, format, highest kernel density, fewest kernel entries K*N). Rows are the
# examples of a dense layer. The crossover table (one product alone) has BCSR
# winning up to density 0.2 at 128 rows and every format only at 0.01-0.05 at one
# row; inside the models the margins are thinner (fused dense layers, small
# layers), so the rule is stricter: LeNet-300-100 won 1.96x (bcsr, density 0.1,
# batch 128) and 1.08x (segment, density 0.01, batch 1) on its 784x300 layer,
# while sparse versions of LeNet-5's 400x120 and 120x84 layers and ResNet-20's
# 64x10 layer lost (0.84-0.97x, 0.91x in a recheck at batch 128): only layers of
# at least 100,000 entries qualify. Convolutions (im2col patches times
# the kernel matrix) lost to XLA's dense convolution at every density measured,
# so the rule keeps them dense.
CPU_RULE: tuple[tuple[str, int, float, str, float, int], ...] = (
    ("linear", 1, 8, "segment", 0.01, 100_000),
    ("linear", 9, math.inf, "bcsr", 0.1, 100_000),
)


class SparseArray(nnx.Variable):
    """The arrays of a compressed kernel (inference only: no gradient is taken)."""


def _set_arrays(module: nnx.Module, arrays: dict[str, Any]) -> None:
    module.names = tuple(sorted(arrays))
    for name, value in arrays.items():
        setattr(module, name, SparseArray(jnp.asarray(value)))


def _get_arrays(module: nnx.Module) -> dict[str, jax.Array]:
    return {name: getattr(module, name).get_value() for name in module.names}


def _weights_name(fmt: str) -> str:
    return {"nm": "values", "dense": "dense"}.get(fmt, "data")


def _affine(module: nnx.Module, x: jax.Array) -> jax.Array:
    """``x W + b`` in the dtype the replaced layer computes in.

    As ``nnx.Linear`` and ``nnx.Conv``: the input, the kernel and the bias are
    promoted with the layer's ``promote_dtype`` to its ``dtype`` when set, else
    to their common dtype.
    """
    arrays = _get_arrays(module)
    name = _weights_name(module.fmt)
    bias = None if module.bias is None else module.bias.get_value()
    x, arrays[name], bias = module.promote_dtype((x, arrays[name], bias), dtype=module.dtype)
    if module.fmt == "nm":
        y = nm_matmul(x, arrays["values"], arrays["metadata"]).astype(x.dtype)
    else:
        y = matmul_arrays(x, module.fmt, module.shape, arrays)
    return y if bias is None else y + bias


def _format_arrays(kernel: CSRKernel, fmt: str) -> dict[str, np.ndarray]:
    if fmt == "nm":
        values, mask = nm_compress(kernel.todense())
        return {"values": values, "metadata": nm_metadata(mask)}
    return kernel.arrays(fmt)


class SparseLinear(nnx.Module):
    """A dense layer ``x W + b`` whose kernel is compressed (replaces ``nnx.Linear``).

    The input, kernel and bias are promoted as in ``nnx.Linear``: to ``dtype``
    when set, else to their common dtype.

    Attributes:
      shape: ``(in_features, out_features)``.
      fmt: the format (one of :data:`~sparsejax.export.FORMATS` or ``"nm"``).
      density: the kernel's fraction of nonzeros.
      dtype: the computation dtype (``None``: inferred from the input and parameters).
      promote_dtype: the promotion function (``nnx.Linear``'s argument of that name).
    """

    def __init__(self, kernel: CSRKernel, bias: Any, fmt: str, *, dtype: Any = None,
                 promote_dtype: Callable[..., Any] = promote_dtype) -> None:
        self.shape = kernel.shape
        self.fmt = fmt
        self.density = kernel.density
        self.dtype = dtype
        self.promote_dtype = promote_dtype
        _set_arrays(self, _format_arrays(kernel, fmt))
        self.bias = None if bias is None else SparseArray(jnp.asarray(bias))

    def __call__(self, x: jax.Array) -> jax.Array:
        return _affine(self, x)


class SparseConv(nnx.Module):
    """A 2-D convolution (NHWC) computed as its im2col patches times a compressed kernel matrix.

    As ``nnx.Conv``: the input is ``(*batch, h, w, in)`` (several batch axes
    are flattened into one, none is added and removed again), and the input,
    kernel and bias are promoted to ``dtype`` when set, else to their common dtype.

    Attributes:
      kernel_shape: ``(kh, kw, in, out)``.
      strides, padding: as the replaced ``nnx.Conv`` (padding canonicalised).
      fmt: the format of the product.
      density: the kernel's fraction of nonzeros.
      dtype: the computation dtype (``None``: inferred from the input and parameters).
      promote_dtype: the promotion function (``nnx.Conv``'s argument of that name).
    """

    def __init__(self, kernel: np.ndarray, bias: Any, strides: tuple[int, int],
                 padding: str | tuple[tuple[int, int], ...], fmt: str, *, dtype: Any = None,
                 promote_dtype: Callable[..., Any] = promote_dtype) -> None:
        matrix = CSRKernel.from_dense(conv_matrix(kernel))
        self.kernel_shape = tuple(int(d) for d in kernel.shape)
        self.shape = matrix.shape
        self.strides = strides
        self.padding = padding
        self.fmt = fmt
        self.density = matrix.density
        self.dtype = dtype
        self.promote_dtype = promote_dtype
        _set_arrays(self, _format_arrays(matrix, fmt))
        self.bias = None if bias is None else SparseArray(jnp.asarray(bias))

    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = self.kernel_shape[:2]
        x4, batch = _one_batch_axis(x)
        patches = conv_patches(x4, (kh, kw), self.strides, self.padding)
        y = _affine(self, patches)
        return y.reshape(*batch, *y.shape[1:])


def _one_batch_axis(x: Any) -> tuple[Any, tuple[int, ...]]:
    """An ``(*batch, h, w, c)`` input as ``(prod(batch), h, w, c)``, and ``batch``."""
    if x.ndim < 3:
        raise ValueError(f"a 2-D convolution reads (*batch, height, width, channels), got "
                         f"shape {tuple(x.shape)}")
    batch = tuple(x.shape[:-3])
    if len(batch) == 1:
        return x, batch
    return x.reshape(math.prod(batch), *x.shape[-3:]), batch


def _pair(v: Any) -> tuple[int, int] | None:
    if v is None:
        return (1, 1)
    if isinstance(v, int):
        return (v, v)
    v = tuple(v)
    if len(v) == 1:
        return (int(v[0]), int(v[0]))
    return (int(v[0]), int(v[1])) if len(v) == 2 else None


def _conv_padding(p: Any) -> str | tuple[tuple[int, int], ...] | None:
    """``nnx.Conv``'s padding as ``conv_general_dilated_patches`` takes it (``None``: unsupported)."""
    if isinstance(p, str):
        return p.upper() if p.upper() in ("SAME", "VALID") else None
    if isinstance(p, int):
        return ((p, p), (p, p))
    pads = []
    for e in tuple(p):
        if isinstance(e, int):
            pads.append((e, e))
        else:
            e = tuple(e)
            if len(e) != 2:
                return None
            pads.append((int(e[0]), int(e[1])))
    if len(pads) == 1:
        pads = pads * 2
    return tuple(pads) if len(pads) == 2 else None


def _conv_settings(conv: nnx.Conv) -> tuple[tuple[int, int], Any] | None:
    """``(strides, padding)`` of a convolution the patch product can replace, else ``None``."""
    if conv.kernel.get_value().ndim != 4 or conv.feature_group_count != 1:
        return None
    if getattr(conv, "mask", None) is not None:
        return None
    if _pair(getattr(conv, "kernel_dilation", 1)) != (1, 1):
        return None
    if _pair(getattr(conv, "input_dilation", 1)) != (1, 1):
        return None
    strides, padding = _pair(conv.strides), _conv_padding(conv.padding)
    if strides is None or padding is None:
        return None
    return strides, padding


@dataclasses.dataclass(frozen=True)
class LayerChoice:
    """The format chosen for one layer and why.

    Attributes:
      path: the module's path in the model (``"fc1"``, ``"blocks/3/conv1/conv"``).
      kind: ``"linear"`` or ``"conv"``.
      kernel_shape: the kernel's shape.
      density: the kernel's fraction of nonzeros.
      rows: rows of the layer's matrix product in the example batch.
      fmt: the chosen format (``"dense"`` keeps the layer as it was).
      seconds: ``{format: median seconds}`` of the layer alone (``policy="measure"``), else empty.
      reason: how the format was chosen.
    """

    path: str
    kind: str
    kernel_shape: tuple[int, ...]
    density: float
    rows: int
    fmt: str
    seconds: dict[str, float]
    reason: str


@dataclasses.dataclass(frozen=True)
class SparseReport:
    """What :func:`sparsify` did.

    Attributes:
      layers: one :class:`LayerChoice` per dense or conv layer, in model order.
      policy: the policy used.
      nm: ``(available, reason)`` of the N:M product (:func:`~sparsejax.export.nm_support`).
      dense_seconds, sparse_seconds: median times of the whole dense and sparse
        model on the example batch (``policy="measure"``), else ``None``.
      fell_back: True when the sparse model was measured slower and the dense one returned.
      device: the device the choice was made on.
    """

    layers: tuple[LayerChoice, ...]
    policy: str
    nm: tuple[bool, str]
    dense_seconds: float | None
    sparse_seconds: float | None
    fell_back: bool
    device: str

    def formats(self) -> dict[str, str]:
        """``{layer path: chosen format}``."""
        return {c.path: c.fmt for c in self.layers}

    def __str__(self) -> str:
        lines = [f"sparse inference on {self.device}, policy {self.policy!r}; N:M: {self.nm[1]}"]
        lines.append(f"{'layer':28s} {'kernel':>18s} {'density':>8s} {'rows':>7s} {'format':>8s}  why")
        for c in self.layers:
            lines.append(f"{c.path:28s} {str(c.kernel_shape):>18s} {c.density:8.3f} {c.rows:7d} "
                         f"{c.fmt:>8s}  {c.reason}")
        if self.dense_seconds is not None and self.sparse_seconds is not None:
            lines.append(f"whole model: dense {self.dense_seconds * 1e3:.3f} ms, sparse "
                         f"{self.sparse_seconds * 1e3:.3f} ms"
                         + (" -> sparse slower, dense kept" if self.fell_back else ""))
        return "\n".join(lines)


def median_seconds(fn: Callable[..., Any], *args: Any, rounds: int = 20, warmup: int = 2,
                   min_seconds: float = 0.0) -> float:
    """Median wall time of ``fn(*args)`` (``block_until_ready``), warm-up calls excluded.

    Args:
      fn: the (usually jitted) function.
      *args: its arguments.
      rounds: timed calls (at least this many; more until ``min_seconds`` have passed).
      warmup: untimed calls first (compilation included).
      min_seconds: least total timed duration.

    Returns:
      The median of the timed calls, in seconds.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from sparsejax.export import median_seconds
      >>> median_seconds(jax.jit(jnp.sin), jnp.ones(4), rounds=3) > 0
      True
    """
    for _ in range(max(0, warmup)):
        jax.block_until_ready(fn(*args))
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max(1, rounds) or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def eval_copy(model: nnx.Module) -> nnx.Module:
    """An independent copy of ``model`` in evaluation mode (BatchNorm running averages, no dropout)."""
    view = nnx.view(model, use_running_average=True, deterministic=True, raise_if_not_found=False)
    return nnx.clone(view)


def rule_format(density: float, rows: int, platform: str | None = None,
                rule: Sequence[tuple[str, int, float, str, float, int]] = CPU_RULE,
                kind: str = "linear", size: int = 10**9) -> str:
    """The format the benchmark-derived rule picks for a kernel of ``density`` and ``rows`` rows.

    Args:
      density: the kernel's fraction of nonzeros.
      rows: rows of the matrix product (examples, times output positions for a conv).
      platform: the JAX platform (default: the default backend's); only ``"cpu"`` has a rule.
      rule: ``(layer kind, min rows, max rows, format, max density, min size)`` entries.
      kind: ``"linear"`` or ``"conv"``.
      size: the kernel's number of entries.

    Returns:
      A format of :data:`~sparsejax.export.FORMATS`, ``"dense"`` outside every entry.

    Example:
      >>> from sparsejax.export import rule_format
      >>> rule_format(0.05, 128, 'cpu'), rule_format(0.5, 128, 'cpu'), rule_format(0.05, 128, 'gpu')
      ('bcsr', 'dense', 'dense')
    """
    platform = platform or jax.default_backend()
    if platform != "cpu":
        return "dense"
    for layer_kind, lo, hi, fmt, max_density, min_size in rule:
        if (layer_kind == kind and lo <= rows <= hi and density <= max_density
                and size >= min_size):
            return fmt
    return "dense"


def _layers(model: nnx.Module) -> list[tuple[str, nnx.Module]]:
    return [("/".join(str(p) for p in path), m) for path, m in nnx.iter_modules(model)
            if isinstance(m, (nnx.Linear, nnx.Conv))]


def _replace(model: nnx.Module, path: str, new: Any) -> None:
    parent_path, _, last = path.rpartition("/")
    parent = module_at(model, parent_path)
    if isinstance(parent, (nnx.List, list)) and last.isdigit():
        parent[int(last)] = new
    else:
        setattr(parent, last, new)


class _Recorder:
    """Records the input shape of a layer while calling it (a static, non-module attribute)."""

    def __init__(self, layer: Any, shapes: dict[str, tuple[int, ...]], path: str) -> None:
        self.layer, self.shapes, self.path = layer, shapes, path

    def __call__(self, x: jax.Array) -> jax.Array:
        self.shapes[self.path] = tuple(x.shape)
        return self.layer(x)


def _input_shapes(model: nnx.Module, x: jax.Array) -> dict[str, tuple[int, ...]]:
    if isinstance(model, (nnx.Linear, nnx.Conv)):  # the model is a single layer (path "")
        return {"": tuple(x.shape)}
    probe = nnx.clone(model)
    shapes: dict[str, tuple[int, ...]] = {}
    for path, layer in _layers(probe):
        _replace(probe, path, _Recorder(layer, shapes, path))
    jax.eval_shape(lambda x: probe(x), x)
    return shapes


def _jitted(model: nnx.Module) -> tuple[Callable[..., jax.Array], Any]:
    graphdef, state = nnx.split(model)
    return jax.jit(lambda s, x: nnx.merge(graphdef, s)(x)), state


def _sparse_layer(layer: nnx.Module, kind: str, fmt: str) -> nnx.Module:
    kernel = np.asarray(layer.kernel.get_value())
    bias = None if layer.bias is None else np.asarray(layer.bias.get_value())
    promotion = dict(dtype=layer.dtype,
                     promote_dtype=getattr(layer, "promote_dtype", promote_dtype))
    if kind == "linear":
        return SparseLinear(CSRKernel.from_dense(kernel), bias, fmt, **promotion)
    strides, padding = _conv_settings(layer)
    return SparseConv(kernel, bias, strides, padding, fmt, **promotion)


def _rows(kind: str, in_shape: tuple[int, ...], layer: nnx.Module) -> int:
    if kind == "linear":
        return math.prod(in_shape[:-1])
    strides, padding = _conv_settings(layer)
    out = jax.eval_shape(
        lambda z: conv_patches(_one_batch_axis(z)[0], layer.kernel.get_value().shape[:2],
                               strides, padding),
        jax.ShapeDtypeStruct(in_shape, jnp.float32))
    return math.prod(out.shape[:-1])


def sparsify(
    model: nnx.Module,
    x: jax.Array,
    *,
    policy: str = "measure",
    max_density: float = 0.5,
    formats: Sequence[str] = ("bcsr", "bcoo", "segment"),
    nm: bool | None = None,
    rounds: int = 10,
) -> tuple[nnx.Module, SparseReport]:
    r"""A copy of ``model`` (evaluation mode) with sparse layers where they are faster.

    Every ``nnx.Linear`` and plain ``nnx.Conv`` (no grouping, dilation or mask)
    whose kernel density :math:`\mathrm{nnz}/\mathrm{size}` is at most
    ``max_density`` is a candidate; the others stay dense. ``model`` may itself
    be such a layer (its path in the report is ``""``). The output equals
    the dense model's (evaluation mode), in the same dtype, up to float
    summation order, except with the N:M product, which computes in bf16.

    Args:
      model: an NNX model (left unchanged).
      x: an example batch, of the batch size inference will use (formats are
        chosen for it; the products' speed depends on it).
      policy: ``"measure"``, ``"rule"`` or a format name (see the module docstring).
      max_density: candidates' highest density.
      formats: the formats ``"measure"`` tries (of :data:`~sparsejax.export.FORMATS`).
      nm: use the N:M product for 2:4 kernels: ``None`` where
        :func:`~sparsejax.export.nm_support` says it runs (and, with
        ``"measure"``, where it is faster), ``False`` never.
      rounds: timed calls per measurement.

    Returns:
      ``(sparse_model, report)``; call ``sparse_model(x)``.

    Raises:
      ValueError: for an unknown policy or format, or ``max_density`` outside [0, 1].

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np
      >>> from sparsejax.models import create
      >>> from sparsejax.export import sparsify
      >>> model = create('mlp', num_classes=3, input_shape=(40,), hidden=(30,), rngs=0)
      >>> k = model.layers[0].kernel
      >>> k.set_value(k.get_value() * (np.random.default_rng(0).random(k.shape) < 0.05))
      >>> x = jnp.ones((4, 40))
      >>> small, report = sparsify(model, x, policy='bcsr')
      >>> report.formats()['layers/0'], type(small.layers[0]).__name__
      ('bcsr', 'SparseLinear')
      >>> bool(jnp.allclose(small(x), model(x), atol=1e-5))
      True
    """
    known = ("measure", "rule", *FORMATS)
    if policy not in known:
        raise ValueError(f"unknown policy {policy!r}; the policies are {known}")
    bad = sorted(set(formats) - set(FORMATS))
    if bad:
        raise ValueError(f"unknown formats {bad}; the formats are {FORMATS}")
    if not 0.0 <= max_density <= 1.0:
        raise ValueError(f"max_density must lie in [0, 1], got {max_density}")
    nm_ok, nm_why = nm_support()
    use_nm = nm_ok and nm is not False
    dense = eval_copy(model)
    sparse = nnx.clone(dense)
    shapes = _input_shapes(dense, x)
    device = f"{jax.devices()[0].platform} ({jax.devices()[0].device_kind})"
    choices = []
    for path, layer in _layers(dense):
        if path not in shapes:  # not called in the forward pass
            continue
        kind = "linear" if isinstance(layer, nnx.Linear) else "conv"
        kernel = np.asarray(layer.kernel.get_value())
        density = float(np.count_nonzero(kernel)) / max(1, kernel.size)
        seconds: dict[str, float] = {}
        if kind == "conv" and _conv_settings(layer) is None:
            choices.append(LayerChoice(path, kind, kernel.shape, density, 0, "dense", seconds,
                                       "grouped/dilated/masked conv: kept dense"))
            continue
        rows = _rows(kind, shapes[path], layer)
        matrix = kernel if kind == "linear" else conv_matrix(kernel)
        two_four = use_nm and matrix.shape[0] % 16 == 0 and is_nm(matrix)
        if density > max_density and not two_four:
            fmt, reason = "dense", f"density above max_density={max_density:g}"
        elif policy in FORMATS:
            fmt, reason = policy, "forced by policy"
        elif policy == "rule":
            if two_four:
                fmt, reason = "nm", "2:4 kernel, " + nm_why
            else:
                fmt = rule_format(density, rows, kind=kind, size=kernel.size)
                reason = ("benchmark rule (CPU_RULE)" if jax.default_backend() == "cpu"
                          else "no measured rule on this backend: dense")
        else:
            cands = ["dense", *formats] + (["nm"] if two_four else [])
            z = jnp.zeros(shapes[path], x.dtype)
            for f in cands:
                fn, state = _jitted(layer if f == "dense" else _sparse_layer(layer, kind, f))
                seconds[f] = median_seconds(fn, state, z, rounds=rounds)
            fmt = min(seconds, key=seconds.get)
            reason = "fastest measured"
        if fmt != "dense":
            if path:
                _replace(sparse, path, _sparse_layer(layer, kind, fmt))
            else:  # the model is this one layer
                sparse = _sparse_layer(layer, kind, fmt)
        choices.append(LayerChoice(path, kind, tuple(kernel.shape), density, rows, fmt, seconds,
                                   reason))
    dense_s = sparse_s = None
    fell_back = False
    if policy == "measure" and any(c.fmt != "dense" for c in choices):
        fd, sd = _jitted(dense)
        fs, ss = _jitted(sparse)
        dense_s = median_seconds(fd, sd, x, rounds=rounds)
        sparse_s = median_seconds(fs, ss, x, rounds=rounds)
        if sparse_s >= dense_s:
            fell_back = True
            sparse = dense
            choices = [dataclasses.replace(c, fmt="dense", reason=c.reason + "; whole model "
                                           "slower sparse: dense kept") if c.fmt != "dense" else c
                       for c in choices]
    report = SparseReport(tuple(choices), policy, (nm_ok, nm_why), dense_s, sparse_s, fell_back,
                          device)
    return sparse, report


def sparse_apply(model: nnx.Module, x: jax.Array, *, policy: str = "rule",
                 **kwargs: Any) -> jax.Array:
    """Evaluation-mode outputs of ``model`` on ``x`` through sparse inference.

    A model already holding sparse layers (from :func:`sparsify`) is applied
    as it is; otherwise it is sparsified first with ``policy`` (default: the
    benchmark rule, which measures nothing). To apply a model many times, call
    :func:`sparsify` once and reuse its result.

    Args:
      model: an NNX model, dense or sparsified.
      x: the batch.
      policy: as in :func:`sparsify`.
      **kwargs: further :func:`sparsify` arguments.

    Returns:
      The outputs, equal to the dense model's to float summation order.

    Example:
      >>> import jax.numpy as jnp
      >>> from sparsejax.models import create
      >>> from sparsejax.export import sparse_apply
      >>> model = create('mlp', num_classes=3, input_shape=(4,), hidden=(8,), rngs=0)
      >>> sparse_apply(model, jnp.ones((2, 4)), policy='segment').shape
      (2, 3)
    """
    if any(isinstance(m, (SparseLinear, SparseConv)) for _, m in nnx.iter_modules(model)):
        return model(x)
    sparse, _ = sparsify(model, x, policy=policy, **kwargs)
    return sparse(x)
