"""sparsejax.export: structured shrink, sparse kernels and inference, N:M packing, storage."""

from __future__ import annotations

import json
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sparsejax.export import (
    FORMATS,
    CSRKernel,
    dense_bytes,
    eval_copy,
    is_nm,
    load_sparse,
    nm_compress,
    nm_metadata,
    nm_support,
    rule_format,
    save_sparse,
    shrink_structured,
    sparse_apply,
    sparse_matmul,
    sparsify,
    unit_norms,
)
from sparsejax.models import LeNet5, ResNet, create
from sparsejax.tree import path_str
from tests.test_models import TINY, _randomize, _tiny

pytestmark = pytest.mark.xdist_group("export")

TOL = dict(rtol=1e-5, atol=1e-5)


def _x(shape, n=3, seed=0):
    return jax.random.normal(jax.random.key(seed), (n, *shape))


# --------------------------------------------------------------------------- #
# Structured: the shrunk model equals the zeroed / gated dense model.


def _kill_units(model):
    """In every group: unit 0 loses its producer kernels (a constant unit), unit 1 every
    producer variable (outputs 0), the last unit every consumer slice (unread)."""
    groups = model.prunable_groups()
    state = nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))

    def edit(path, x):
        p = path_str(path)
        x = np.array(x)
        for g in groups:
            for spec in g.producers:
                if spec.path == p:
                    v = x.reshape(spec.view) if spec.view else x
                    v = np.moveaxis(v, spec.axis, 0)
                    if p.endswith("kernel"):
                        v[0] = 0.0
                    v[1] = 0.0
            for spec in g.consumers:
                if spec.path == p:
                    v = x.reshape(spec.view) if spec.view else x
                    np.moveaxis(v, spec.axis, 0)[g.size - 1] = 0.0
        return jnp.asarray(x)

    nnx.update(model, jax.tree_util.tree_map_with_path(edit, state))


@pytest.mark.parametrize("kind", [*TINY, "resnet_a"])
def test_shrink_zero_units_keeps_the_function(kind):
    if kind == "resnet_a":  # option-A shortcuts (resnet20/32/56)
        model, shape = ResNet("basic", (1, 1), (4, 6), 3, shortcut="A", rngs=nnx.Rngs(1)), (8, 8, 3)
    else:
        model, shape = _tiny(kind)
    _randomize(model, 0)
    _kill_units(model)
    x = _x(shape)
    small, info = shrink_structured(model, x)
    assert type(small) is type(model)
    np.testing.assert_allclose(small(x), eval_copy(model)(x), **TOL)
    for name, before, after in info.groups:
        # unit 1 (zero output) and the unread last unit always go.
        assert after <= before - 2, (name, before, after)
    assert info.max_abs_diff < 1e-5


def test_shrink_folds_a_constant_unit_into_dense_consumers():
    model = create("mlp", num_classes=3, input_shape=(5,), hidden=(6,), rngs=0)
    bias = model.layers[0].bias
    bias.set_value(jnp.full((6,), 0.7))
    k = model.layers[0].kernel
    k.set_value(k.get_value().at[:, 2].set(0.0))  # unit 2: relu(0.7), a constant
    x = _x((5,), n=4)
    small, info = shrink_structured(model, x)
    assert info.folded == (("layers/0", 2),)
    assert small.layers[0].kernel.shape == (5, 5)
    np.testing.assert_allclose(small(x), model(x), **TOL)
    # Without the fold the output would move by 0.7 * W2[2, :].
    assert float(jnp.abs(0.7 * model.layers[1].kernel.get_value()[2]).max()) > 1e-3


def test_shrink_keeps_one_unit_of_an_all_constant_group_without_folding_it():
    # Every hidden unit is constant and foldable; one must stay, and its constant
    # must then not be folded into the next bias as well (it would count twice).
    model = create("mlp", num_classes=3, input_shape=(5,), hidden=(6,), rngs=0)
    model.layers[0].bias.set_value(jnp.linspace(0.2, 0.7, 6))
    model.layers[0].kernel.set_value(jnp.zeros((5, 6)))
    x = _x((5,), n=4)
    small, info = shrink_structured(model, x)
    assert small.layers[0].kernel.shape == (5, 1)
    assert len(info.folded) == 5 and ("layers/0", 5) not in info.folded  # unit 5 kept
    np.testing.assert_allclose(small(x), model(x), **TOL)
    assert info.max_abs_diff < 1e-5

def test_shrink_by_norm_equals_the_gated_model():
    model, shape = _tiny("vgg_bn")
    _randomize(model, 1)
    x = _x(shape)
    norms = unit_norms(model, ord=1)
    threshold = min(float(np.median(np.concatenate(list(norms.values())))),
                    0.99 * min(float(v.max()) for v in norms.values()))  # no group emptied
    small, info = shrink_structured(model, x, criterion="l1", threshold=threshold)
    gates = {n: (v > threshold).astype(np.float32) for n, v in norms.items()}
    np.testing.assert_allclose(small(x), eval_copy(model)(x, gates=gates), **TOL)
    assert {n: a for n, _, a in info.groups} == {n: int(g.sum()) for n, g in gates.items()}
    assert sum(a for _, _, a in info.groups) < sum(b for _, b, _ in info.groups)
    with pytest.raises(ValueError, match="criterion"):
        shrink_structured(model, x, criterion="l3")


# --------------------------------------------------------------------------- #
# Sparse kernels and inference.


def _kernel_with_holes(rng, k=13, n=7, density=0.3):
    w = (rng.normal(size=(k, n)) * (rng.random((k, n)) < density)).astype(np.float32)
    w[4, :] = 0.0  # an input no output reads
    w[:, 2] = 0.0  # an output reading nothing
    return w


@pytest.mark.parametrize("fmt", FORMATS)
def test_sparse_matmul_equals_dense(fmt):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 3, 13)).astype(np.float32))
    for w in (_kernel_with_holes(rng), np.zeros((13, 7), np.float32)):
        k = CSRKernel.from_dense(w)
        np.testing.assert_array_equal(k.todense(), w)
        y = sparse_matmul(x, k, fmt)
        np.testing.assert_allclose(y, np.asarray(x) @ w, **TOL)
    with pytest.raises(ValueError, match="unknown sparse format"):
        sparse_matmul(x, k, "csc")


def test_sparse_matmul_promotes_like_a_dense_product():
    w = _kernel_with_holes(np.random.default_rng(0))
    x = jax.random.normal(jax.random.key(0), (2, 13)).astype(jnp.bfloat16)
    for fmt in FORMATS:
        y = sparse_matmul(x, CSRKernel.from_dense(w), fmt)
        assert y.dtype == (x @ w).dtype == jnp.float32, fmt
        np.testing.assert_allclose(y, np.asarray(x, np.float32) @ w, **TOL)

def test_bf16_sparse_products_are_summed_in_float32_as_the_dense_matmul():
    """A bf16 kernel of 4,096 inputs at half density: rounding to bf16 after every addition
    gave 0.13 of the largest output as error, against 0.003 for the dense bf16 matmul (which
    accumulates in float32); every format now errs as the dense product does."""
    rng = np.random.default_rng(0)
    w = np.where(rng.random((4096, 64)) < 0.5, rng.normal(size=(4096, 64)) / 64, 0.0)
    w16 = jnp.asarray(w, jnp.bfloat16)
    x16 = jnp.asarray(rng.uniform(0.0, 1.0, (4, 4096)), jnp.bfloat16)
    exact = np.asarray(x16, np.float64) @ np.asarray(w16, np.float64)
    scale = np.abs(exact).max()
    dense_error = np.abs(np.asarray(x16 @ w16, np.float64) - exact).max() / scale
    assert dense_error < 0.01
    kernel = CSRKernel.from_dense(np.asarray(w16))
    for fmt in FORMATS:
        y = sparse_matmul(x16, kernel, fmt)
        assert y.dtype == jnp.bfloat16, fmt
        error = np.abs(np.asarray(y, np.float64) - exact).max() / scale
        assert error <= 2 * dense_error, (fmt, error, dense_error)


def _sparse_lenet(seed=0):
    """A tiny LeNet-5 (convs with padding 2 and VALID) with ~30% dense kernels,
    an empty output channel, an empty input row, and a 100% sparse fc2."""
    model = LeNet5(3, (16, 16, 3), rngs=nnx.Rngs(seed))
    rng = np.random.default_rng(seed)
    for path, var in nnx.iter_graph(model):
        if path and path[-1] == "kernel":
            w = np.asarray(var.get_value())
            w = w * (rng.random(w.shape) < 0.3)
            w[..., 0] = 0.0
            var.set_value(jnp.asarray(w))
    model.fc2.kernel.set_value(jnp.zeros_like(model.fc2.kernel.get_value()))
    return model


@pytest.fixture(scope="module")
def lenet():
    return _sparse_lenet(), _x((16, 16, 3), n=2)


@pytest.mark.parametrize("fmt", ["bcsr", "bcoo", "segment"])
def test_sparse_model_equals_dense_model(lenet, fmt):
    model, x = lenet
    sparse, report = sparsify(model, x, policy=fmt, max_density=1.0)
    assert set(report.formats().values()) == {fmt}
    assert type(sparse.conv1).__name__ == "SparseConv" and type(sparse.fc2).__name__ == "SparseLinear"
    np.testing.assert_allclose(sparse(x), eval_copy(model)(x), **TOL)


def test_sparse_conv_with_strides_and_projections():
    model, shape = _tiny("resnet")  # stride-2 3x3 convs (padding 1), 1x1 projections
    _randomize(model, 2)
    rng = np.random.default_rng(3)
    for path, var in nnx.iter_graph(model):
        if path and path[-1] == "kernel":
            w = np.asarray(var.get_value())
            var.set_value(jnp.asarray(w * (rng.random(w.shape) < 0.4)))
    x = _x(shape, n=2)
    y = sparse_apply(model, x, policy="bcsr", max_density=1.0)
    np.testing.assert_allclose(y, eval_copy(model)(x), **TOL)


class _Net(nnx.Module):
    """A conv and a dense layer with ~30% dense kernels, of the given dtypes."""

    def __init__(self, **dtypes):
        self.conv = nnx.Conv(3, 4, (3, 3), strides=2, rngs=nnx.Rngs(0), **dtypes)
        self.fc = nnx.Linear(4, 5, rngs=nnx.Rngs(1), **dtypes)
        rng = np.random.default_rng(0)
        for layer in (self.conv, self.fc):
            k = layer.kernel
            k.set_value(k.get_value() * jnp.asarray(rng.random(k.shape) < 0.3, k.get_value().dtype))
            layer.bias.set_value(jnp.asarray(rng.normal(size=layer.bias.shape),
                                             layer.bias.get_value().dtype))

    def __call__(self, x):
        return self.fc(self.conv(x).mean((-3, -2)))


# JAX's BCSR product has no bf16 CPU kernel and says so; its fallback is what is tested here
@pytest.mark.filterwarnings("ignore:bcsr_dot_general cpu lowering not available")
@pytest.mark.parametrize("case", ["bf16 input", "bf16 layer dtype", "f64 params"])
def test_sparse_layers_compute_in_the_dense_layers_dtype(case):
    x64 = case == "f64 params"
    with jax.enable_x64(x64):
        layer_dtypes = {"bf16 input": {}, "bf16 layer dtype": {"dtype": jnp.bfloat16},
                        "f64 params": {"param_dtype": jnp.float64}}[case]
        model = _Net(**layer_dtypes)
        x = _x((7, 7, 3), n=2).astype(jnp.bfloat16 if case == "bf16 input" else jnp.float32)
        want = model(x)
        assert want.dtype == {"bf16 input": jnp.float32, "bf16 layer dtype": jnp.bfloat16,
                              "f64 params": jnp.float64}[case]
        tol = dict(rtol=2e-2, atol=2e-2) if want.dtype == jnp.bfloat16 else TOL
        for fmt in ("bcsr", "bcoo", "segment"):
            sparse, _ = sparsify(model, x, policy=fmt, max_density=1.0)
            assert type(sparse.conv).__name__ == "SparseConv"
            got = sparse(x)
            assert got.dtype == want.dtype, (fmt, got.dtype)
            np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64),
                                       **tol)


@pytest.mark.parametrize("shape", [(7, 7, 3), (2, 2, 7, 7, 3)])
def test_sparse_conv_takes_the_batch_axes_nnx_conv_takes(shape):
    model = _Net()
    conv = model.conv
    x = jax.random.normal(jax.random.key(0), shape)
    sparse, report = sparsify(conv, x, policy="segment", max_density=1.0)
    assert report.formats() == {"": "segment"}
    assert sparse(x).shape == conv(x).shape
    np.testing.assert_allclose(sparse(x), conv(x), **TOL)
    sparse, _ = sparsify(model, x, policy="bcsr", max_density=1.0)  # inside a model
    np.testing.assert_allclose(sparse(x), model(x), **TOL)


def test_sparsify_a_bare_layer():
    layer = _Net().fc
    x = _x((4,), n=2)
    sparse, report = sparsify(layer, x, policy="bcsr", max_density=1.0)
    assert type(sparse).__name__ == "SparseLinear"
    assert report.formats() == {"": "bcsr"}
    np.testing.assert_allclose(sparse(x), layer(x), **TOL)
    np.testing.assert_allclose(sparse_apply(layer, x, policy="segment", max_density=1.0),
                               layer(x), **TOL)

def test_measured_choice_is_the_fastest_and_never_slower_than_dense(lenet):
    model, x = lenet
    sparse, report = sparsify(model, x, policy="measure", max_density=1.0, rounds=3)
    assert "nm" not in report.formats().values() or nm_support()[0]
    for c in report.layers:
        assert c.seconds, c
        if not report.fell_back:
            assert c.fmt == min(c.seconds, key=c.seconds.get), c
    if any(c.fmt != "dense" for c in report.layers):
        assert report.sparse_seconds < report.dense_seconds
    if report.fell_back:
        assert all(c.fmt == "dense" for c in report.layers)
        assert report.sparse_seconds >= report.dense_seconds
    np.testing.assert_allclose(sparse(x), eval_copy(model)(x), **TOL)


def test_rule():
    assert rule_format(0.5, 128, "cpu") == "dense"
    assert rule_format(0.01, 1, "cpu") != "dense"
    assert rule_format(0.01, 1, "cpu", size=400 * 120) == "dense"  # small layers lost
    assert rule_format(0.01, 128, "cpu", kind="conv") == "dense"
    assert rule_format(0.01, 128, "gpu") == "dense"  # nothing measured there
    with pytest.raises(ValueError, match="policy"):
        sparsify(create("mlp", num_classes=2, input_shape=(3,), hidden=(4,), rngs=0),
                 jnp.ones((1, 3)), policy="fastest")


# --------------------------------------------------------------------------- #
# N:M.


def _reference_metadata(mask):
    """jax's nm_pack encoding, computed the slow way: per 16 entries, the kept
    positions (mod 4), position t weighted 4**t."""
    out = []
    for row in np.asarray(mask):
        vals = []
        for i in range(0, row.size, 16):
            idx = np.nonzero(row[i:i + 16])[0] % 4
            vals.append(sum(int(j) * 4 ** t for t, j in enumerate(idx)))
        out.append(vals)
    return np.array(out, np.uint16)


def test_nm_compress_and_metadata():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(32, 3)).astype(np.float32)
    blocks = w.T.reshape(3, 8, 4)
    order = np.argsort(-np.abs(blocks), axis=-1)
    np.put_along_axis(blocks, order[..., 2:], 0.0, axis=-1)
    blocks[0, 1] = [0.0, 0.0, 0.0, 5.0]  # a block with one nonzero
    w = blocks.reshape(3, 32).T.copy()
    assert is_nm(w) and not is_nm(np.ones((32, 3)))
    values, mask = nm_compress(w)
    assert values.shape == (3, 16) and mask.sum() == 3 * 16
    dense = np.zeros((3, 32), np.float32)
    dense[mask] = values.reshape(-1)
    np.testing.assert_array_equal(dense.T, w)
    np.testing.assert_array_equal(nm_metadata(mask), _reference_metadata(mask))
    with pytest.raises(ValueError, match="2:4"):
        nm_compress(np.ones((8, 2)))


def test_nm_is_chosen_only_where_supported():
    model = create("mlp", num_classes=4, input_shape=(32,), hidden=(16,), rngs=0)
    w = np.array(model.layers[0].kernel.get_value())
    w.reshape(8, 4, 16)[:, 2:, :] = 0.0  # 2:4 along the inputs
    model.layers[0].kernel.set_value(jnp.asarray(w))
    x = _x((32,), n=2)
    sparse, report = sparsify(model, x, policy="rule")
    ok, why = nm_support()
    assert report.nm == (ok, why)
    assert (report.formats()["layers/0"] == "nm") == ok
    if not ok:
        np.testing.assert_allclose(sparse(x), model(x), **TOL)


# --------------------------------------------------------------------------- #
# Storage.


def test_save_load_round_trip_and_size(lenet, tmp_path):
    model, x = lenet
    f = tmp_path / "w.npz"
    header = save_sparse(f, model)
    assert {e["storage"] for e in header["leaves"] if e["path"].endswith("kernel")} == {"csr"}
    loaded = load_sparse(f, LeNet5(3, (16, 16, 3), rngs=nnx.Rngs(9)))
    np.testing.assert_array_equal(loaded(x), model(x))
    assert f.stat().st_size < 0.6 * dense_bytes(model)
    # Rebuilt from the spec, without a template.
    spec = {"name": "lenet5", "num_classes": 3, "input_shape": [16, 16, 3]}
    save_sparse(f, model, spec=spec)
    np.testing.assert_array_equal(load_sparse(f)(x), model(x))


def test_damaged_or_mismatched_files_are_refused(lenet, tmp_path):
    model, _ = lenet
    f = tmp_path / "w.npz"
    save_sparse(f, model)
    template = LeNet5(3, (16, 16, 3), rngs=nnx.Rngs(0))
    # Flipped bytes in the middle: the zip CRC or the checksum catches it.
    raw = bytearray(f.read_bytes())
    mid = len(raw) // 2
    raw[mid:mid + 8] = bytes(255 - b for b in raw[mid:mid + 8])
    bad = tmp_path / "bad.npz"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="damaged|corrupted|not a readable"):
        load_sparse(bad, template)
    # Truncated.
    bad.write_bytes(f.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a readable"):
        load_sparse(bad, template)
    # A value changed behind the header's back: the checksum.
    with np.load(f) as z:
        files = {k: z[k] for k in z.files}
    key = next(k for k in files if k.endswith(".data"))
    files[key] = files[key] + 1.0
    np.savez(bad, **files)
    with pytest.raises(ValueError, match="corrupted.*checksum"):
        load_sparse(bad, template)
    # Another format version.
    header = json.loads(files["__header__"].tobytes())
    header["version"] = 99
    files[key] = files[key] - 1.0
    files["__header__"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(bad, **files)
    with pytest.raises(ValueError, match="version 99"):
        load_sparse(bad, template)
    # A foreign npz.
    np.savez(bad, a=np.ones(3))
    with pytest.raises(ValueError, match="__header__"):
        load_sparse(bad, template)
    # A template of another width.
    with pytest.raises(ValueError, match="does not match"):
        load_sparse(f, LeNet5(4, (16, 16, 3), rngs=nnx.Rngs(0)))
    assert zipfile.is_zipfile(f)


def test_an_edited_header_is_refused_and_version_1_files_still_load(tmp_path):
    """The checksum covers the header too: two same-shaped kernels whose paths are swapped in
    the header would otherwise load into each other's places without a word. A version-1
    file (checksum over the arrays only) still loads."""
    model = create("mlp", num_classes=8, input_shape=(8,), hidden=(8, 8), rngs=0)
    f = tmp_path / "w.npz"
    header = save_sparse(f, model)
    kernels = [i for i, e in enumerate(header["leaves"]) if e["path"].endswith("kernel")]
    a, b = kernels[:2]
    assert header["leaves"][a]["shape"] == header["leaves"][b]["shape"]
    with np.load(f) as z:
        files = {k: z[k] for k in z.files}
    edited = json.loads(files["__header__"].tobytes())
    leaves = edited["leaves"]
    leaves[a]["path"], leaves[b]["path"] = leaves[b]["path"], leaves[a]["path"]
    bad = tmp_path / "bad.npz"
    np.savez(bad, **{**files, "__header__": np.frombuffer(json.dumps(edited).encode(), np.uint8)})
    with pytest.raises(ValueError, match="corrupted: its header"):
        load_sparse(bad, model)
    # Version 1: the same file with the old checksum.
    from sparsejax.export.storage import _checksum

    old = json.loads(files["__header__"].tobytes())
    arrays = {k: v for k, v in files.items() if k != "__header__"}
    old.update(version=1, sha256=_checksum(arrays))
    v1 = tmp_path / "v1.npz"
    np.savez(v1, **{**arrays, "__header__": np.frombuffer(json.dumps(old).encode(), np.uint8)})
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 8)), jnp.float32)
    np.testing.assert_array_equal(load_sparse(v1, model)(x), model(x))


class _Leaves(nnx.Module):
    """A kernel, a vector and a scalar of one dtype, and a float32 kernel with no outputs."""

    def __init__(self, dtype):
        rng = np.random.default_rng(0)
        w = np.where(rng.random((6, 4)) < 0.3, rng.normal(size=(6, 4)), 0.0)  # no -0.0
        self.fc = nnx.Dict({"kernel": nnx.Param(jnp.asarray(w.astype(dtype)))})
        self.v = nnx.Param(jnp.asarray(rng.normal(size=(5,)).astype(dtype)))
        self.s = nnx.Param(jnp.asarray(np.float32(2.5).astype(dtype)))
        self.empty = nnx.Dict({"kernel": nnx.Param(jnp.zeros((3, 0), jnp.float32))})


@pytest.mark.parametrize("dtype", ["bfloat16", "float8_e4m3fn", "float8_e5m2", "float16"])
def test_save_load_round_trips_every_float_dtype_exactly(dtype, tmp_path):
    dtype = jnp.dtype(dtype)
    model = _Leaves(dtype)
    f = tmp_path / "w.npz"
    header = save_sparse(f, model)
    assert {e["path"]: e["storage"] for e in header["leaves"]}["fc/kernel"] == "csr"
    loaded = load_sparse(f, _Leaves(jnp.float32 if dtype == jnp.float16 else jnp.float16))
    bits = lambda a: np.asarray(a).reshape(-1).view(np.uint8)  # noqa: E731
    for get in (lambda m: m.v, lambda m: m.s, lambda m: m.fc["kernel"]):
        got, want = get(loaded).get_value(), get(model).get_value()
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_array_equal(bits(got), bits(want))
    with np.load(f, allow_pickle=False) as z:  # no pickle anywhere
        assert all(z[k].dtype.kind in "uif" for k in z.files)


def test_save_load_kernel_without_outputs(tmp_path):
    f = tmp_path / "w.npz"
    model = _Leaves(jnp.float32)
    header = save_sparse(f, model)
    assert {e["path"]: e["shape"] for e in header["leaves"]}["empty/kernel"] == [3, 0]
    loaded = load_sparse(f, model)
    assert loaded.empty["kernel"].get_value().shape == (3, 0)
    np.testing.assert_array_equal(loaded.fc["kernel"].get_value(), model.fc["kernel"].get_value())


def test_load_sparse_refuses_a_npy_file(tmp_path):
    f = tmp_path / "w.npy"
    np.save(f, np.arange(3))
    with pytest.raises(ValueError, match="not a readable sparse export"):
        load_sparse(f)
