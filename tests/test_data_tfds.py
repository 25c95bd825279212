"""The TFDS path, for real and offline: prepare TFDS datasets from local files, load them by name.

These tests build tiny datasets from IDX files and CIFAR pickles written to a
temporary folder, then read them back through TFDS (``tfds.data_source``) and
compare with the file loaders; the images are encoded once with TensorFlow (the
``tf`` extra, which CI installs) and otherwise with PIL. One slow test does the
same with the real Fashion-MNIST files.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sparsejax.data as sd
from sparsejax.data import (
    DATA_DIR_ENV,
    TFDS_DATA_DIR_ENV,
    fashion_mnist,
    load,
    prepare_tfds,
    tfds_io,
    write_idx,
)
from sparsejax.data.cifar import write_cifar

pytestmark = [
    # TensorFlow and TFDS are imported by the tests, not at collection, and all these tests run
    # on one xdist worker: one process pays for importing TensorFlow, not every worker.
    pytest.mark.xdist_group("tfds"),
    pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="needs TensorFlow (the tf extra)"),
]


@pytest.fixture(scope="module")
def tfds():
    return tfds_io.import_tfds()


def _write_idx_split(folder: Path, prefix: str, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
    write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, (n,), dtype=np.uint8))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small Fashion-MNIST IDX files, prepared as the TFDS dataset ``fashion_mnist``."""
    root = tmp_path_factory.mktemp("tfds")
    src = root / "idx"
    src.mkdir()
    _write_idx_split(src, "train", 40, seed=0)
    _write_idx_split(src, "t10k", 16, seed=1)
    data_dir = root / "tfds"
    path = prepare_tfds("fashion_mnist", data_dir=data_dir, source_dir=src, use_tensorflow=True)
    return {"src": src, "data_dir": data_dir, "path": path, "root": root}


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", tmp_path / "no-system-dir")
    monkeypatch.setenv(TFDS_DATA_DIR_ENV, str(tmp_path / "tfds-empty"))


def test_prepare_writes_an_array_record_tfds_dataset(prepared: dict[str, Path]) -> None:
    path = prepared["path"]
    assert path == prepared["data_dir"] / "fashion_mnist" / "3.0.1"
    info = json.loads((path / "dataset_info.json").read_text())
    assert info["name"] == "fashion_mnist" and info["fileFormat"] == "array_record"
    assert {s["name"]: int(sum(map(int, s["shardLengths"]))) for s in info["splits"]} == {"train": 40, "test": 16}
    assert list(path.glob("fashion_mnist-train.array_record-*"))
    assert not (prepared["data_dir"] / "downloads").exists()  # nothing downloaded, no scratch left


@pytest.mark.parametrize("split", ["train", "test", "train[:25%]", "test[3:-2]", "train[30:]+test[:4]"])
def test_load_by_name_equals_the_files(prepared: dict[str, Path], split: str) -> None:
    via_tfds = load("fashion_mnist", split, source="tfds", data_dir=prepared["data_dir"])
    via_files = load("fashion_mnist", split, source="files", data_dir=prepared["src"])
    assert via_tfds.source == f"tfds:{prepared['path']}" and via_files.source.startswith("files:")
    x1, y1 = via_tfds.arrays()
    x2, y2 = via_files.arrays()
    assert x1.dtype == x2.dtype == np.uint8 and y1.dtype == y2.dtype == np.int32
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert via_tfds.class_names == sd.CLASS_NAMES
    assert (via_tfds.mean, via_tfds.std, via_tfds.image_shape) == (via_files.mean, via_files.std, via_files.image_shape)


def test_tfds_itself_loads_it_by_name_without_download(prepared: dict[str, Path], tfds) -> None:
    source = tfds.data_source("fashion_mnist", split="test", data_dir=str(prepared["data_dir"]), download=False)
    x, y = load("fashion_mnist", "test", source="files", data_dir=prepared["src"]).arrays()
    assert len(source) == 16
    np.testing.assert_array_equal(source[5]["image"], x[5])
    assert source[5]["label"] == y[5]
    builder = tfds.builder("fashion_mnist", data_dir=str(prepared["data_dir"]))
    assert type(builder).__module__.startswith("tensorflow_datasets")  # the registered, official builder


def test_auto_prefers_the_prepared_dataset_and_never_downloads(
    prepared: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tfds
) -> None:
    calls = []
    real = tfds.data_source

    def spy(*args, **kwargs):
        calls.append(kwargs.get("download"))
        return real(*args, **kwargs)

    monkeypatch.setattr(tfds, "data_source", spy)
    ds = load("fashion_mnist", "train", data_dir=prepared["data_dir"])
    assert ds.source.startswith("tfds:") and calls == [False]
    # $TFDS_DATA_DIR is where TFDS datasets are looked for without data_dir.
    monkeypatch.setenv(TFDS_DATA_DIR_ENV, str(prepared["data_dir"]))
    assert load("fashion_mnist", "test", source="tfds").source == f"tfds:{prepared['path']}"
    assert calls == [False, False]


def test_tfds_source_without_prepared_dataset(isolated: None, tmp_path: Path) -> None:
    with pytest.raises(sd.DatasetNotFoundError) as info:
        load("fashion_mnist", "train", source="tfds", data_dir=tmp_path / "nothing")
    msg = str(info.value)
    assert str(tmp_path / "nothing" / "fashion_mnist") in msg and "prepare_tfds('fashion_mnist')" in msg
    assert "files" not in msg.split("Looked in:")[1].split("How to get it")[0]  # only the TFDS place


def test_prepare_reuses_and_overwrites(prepared: dict[str, Path], tmp_path: Path) -> None:
    data_dir = tmp_path / "tfds"
    src = tmp_path / "idx"
    src.mkdir()
    _write_idx_split(src, "train", 6, seed=5)
    _write_idx_split(src, "t10k", 4, seed=6)
    path = prepare_tfds("fashion_mnist", data_dir=data_dir, source_dir=src)
    stamp = (path / "dataset_info.json").stat().st_mtime_ns
    _write_idx_split(src, "train", 9, seed=7)  # new source data
    assert prepare_tfds("fashion_mnist", data_dir=data_dir, source_dir=src) == path  # already there: kept
    assert (path / "dataset_info.json").stat().st_mtime_ns == stamp
    assert len(load("fashion_mnist", "train", source="tfds", data_dir=data_dir)) == 6
    prepare_tfds("fashion_mnist", data_dir=data_dir, source_dir=src, overwrite=True)
    x, y = load("fashion_mnist", "train", source="tfds", data_dir=data_dir).arrays()
    xf, yf = load("fashion_mnist", "train", source="files", data_dir=src).arrays()
    assert len(y) == 9
    np.testing.assert_array_equal(x, xf)
    np.testing.assert_array_equal(y, yf)


def test_pil_and_tensorflow_encodings_agree(prepared: dict[str, Path], tmp_path: Path) -> None:
    path = prepare_tfds("fashion_mnist", data_dir=tmp_path, source_dir=prepared["src"])  # PIL
    for split in ("train", "test"):
        x, y = load("fashion_mnist", split, source="tfds", data_dir=tmp_path).arrays()
        xf, yf = load("fashion_mnist", split, source="tfds", data_dir=prepared["data_dir"]).arrays()
        np.testing.assert_array_equal(x, xf)
        np.testing.assert_array_equal(y, yf)
    assert path.name == "3.0.1"


def test_prepare_and_read_without_importing_tensorflow(prepared: dict[str, Path], tmp_path: Path) -> None:
    code = f"""
import sys
import sparsejax.data as sd
sd.prepare_tfds('fashion_mnist', data_dir={str(tmp_path)!r}, source_dir={str(prepared['src'])!r})
ds = sd.load('fashion_mnist', 'test', source='tfds', data_dir={str(tmp_path)!r})
assert len(ds) == 16 and ds.source.startswith('tfds:'), ds
sys.exit(3 if 'tensorflow' in sys.modules else 0)
"""
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == ""  # quiet: no progress bars or banners


def test_prepare_errors(isolated: None, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tfds build imagenet2012"):
        prepare_tfds("imagenet2012", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="Fashion-MNIST .* not found"):
        prepare_tfds("fashion_mnist", data_dir=tmp_path, source_dir=tmp_path / "empty")
    assert not (tmp_path / "fashion_mnist").exists()


def test_mnist_and_cifar_prepared_from_local_files(tmp_path: Path, isolated: None, tfds) -> None:
    data_dir = tmp_path / "tfds"
    (tmp_path / "mnist").mkdir()
    _write_idx_split(tmp_path / "mnist", "train", 12, seed=2)
    _write_idx_split(tmp_path / "mnist", "t10k", 5, seed=3)
    rng = np.random.default_rng(0)
    cifar10 = {s: (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n))
               for s, n in (("train", 11), ("test", 4))}  # fmt: skip
    cifar100 = {s: (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 100, n), rng.integers(0, 20, n))
                for s, n in (("train", 6), ("test", 3))}  # fmt: skip
    names = [f"thing{i}" for i in range(10)]
    write_cifar(tmp_path / "cifar", "cifar10", cifar10, label_names=names)
    write_cifar(tmp_path / "cifar", "cifar100", cifar100)
    prepare_tfds("mnist", data_dir=data_dir, source_dir=tmp_path / "mnist")
    prepare_tfds("cifar10", data_dir=data_dir, source_dir=tmp_path / "cifar")
    path100 = prepare_tfds("cifar100", data_dir=data_dir, source_dir=tmp_path / "cifar")
    for name, src in (("mnist", tmp_path / "mnist"), ("cifar10", tmp_path / "cifar"), ("cifar100", tmp_path / "cifar")):
        for split in ("train", "test"):
            a = load(name, split, source="tfds", data_dir=data_dir)
            b = load(name, split, source="files", data_dir=src)
            np.testing.assert_array_equal(a.arrays()[0], b.arrays()[0])
            np.testing.assert_array_equal(a.arrays()[1], b.arrays()[1])
    assert load("cifar10", "test", source="tfds", data_dir=data_dir).class_names == tuple(names)
    # CIFAR-100 keeps its coarse labels and ids, as TFDS's own builder defines them.
    source = tfds.data_source("cifar100", split="train", data_dir=str(data_dir), download=False)
    assert [int(source[i]["coarse_label"]) for i in range(6)] == cifar100["train"][2].tolist()
    assert source[2]["id"] in (b"train_00002", "train_00002")
    assert path100.name == "3.0.2"


def test_tensorflow_is_tamed_and_jax_still_works(prepared: dict[str, Path]) -> None:
    import tensorflow as tf

    assert tf.config.get_visible_devices("GPU") == []
    assert 1 <= tf.config.threading.get_intra_op_parallelism_threads() <= 2
    assert os.environ.get("TF_CPP_MIN_LOG_LEVEL") is not None
    # JAX, in the same process after TensorFlow, still runs on all its devices.
    n = jax.device_count()
    mesh = jax.make_mesh((n,), ("d",))
    x = jax.device_put(jnp.arange(4.0 * n), jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("d")))
    assert float(jax.jit(lambda v: (v * 2).sum())(x)) == pytest.approx(4.0 * n * (4.0 * n - 1))


def test_split_ranges_agree_with_tfds(tfds) -> None:
    from tensorflow_datasets.core import splits as tfds_splits

    specs = ["train", "train[:33%]", "train[33%:67%]", "train[-7:]", "train[:-7]", "train[5%:-5%]",
             "train[2:9]", "train[12.5%:]", "train[:0]", "train[50%:50%]"]  # fmt: skip
    for n in (1, 7, 40, 101, 60000):
        infos = {"train": tfds_splits.SplitInfo(name="train", shard_lengths=[n], num_bytes=0, filename_template=None)}
        for spec in specs:
            try:
                (abs_instr,) = tfds_splits.ReadInstruction.from_spec(spec).to_absolute(infos)
            except ValueError:  # e.g. a bound outside the split: ours refuses it too
                with pytest.raises(ValueError):
                    sd.split_ranges(spec, {"train": n})
                continue
            start, stop, _ = slice(abs_instr.from_, abs_instr.to).indices(n)
            assert sd.split_ranges(spec, {"train": n}) == [("train", start, max(start, stop))], (spec, n)


_REAL = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


@pytest.mark.slow
@pytest.mark.skipif(not _REAL.exists(), reason="dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_through_tfds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Debian package's files, prepared as TFDS fashion_mnist and loaded by name (about 30 s)."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    path = prepare_tfds("fashion_mnist", data_dir=tmp_path)
    assert tfds_io.find_prepared("fashion_mnist", tmp_path) == path
    for split, n in (("test", 10000), ("train[:20%]", 12000)):
        x, y = load("fashion_mnist", split, source="tfds", data_dir=tmp_path).arrays()
        xf, yf = load("fashion_mnist", split, source="files").arrays()
        assert len(y) == n
        np.testing.assert_array_equal(x, xf)
        np.testing.assert_array_equal(y, yf)
