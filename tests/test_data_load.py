"""Tests of sparsejax.data.load and Dataset: names, sources, splits, errors, local-file formats."""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

import sparsejax.data as sd
from sparsejax.data import (
    DATA_DIR_ENV,
    TFDS_DATA_DIR_ENV,
    Dataset,
    DatasetNotFoundError,
    datasets,
    fashion_mnist,
    load,
    tfds_io,
    write_idx,
)
from sparsejax.data.cifar import load_cifar, write_cifar
from sparsejax.data.datasets import SourceReader, _tfds_split, split_ranges


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No system Fashion-MNIST, no $SPARSEJAX_DATA_DIR, an empty TFDS data dir."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", tmp_path / "no-system-dir")
    monkeypatch.setenv(TFDS_DATA_DIR_ENV, str(tmp_path / "tfds-empty"))
    return tmp_path


def _write_mnist_like(folder: Path, n_train: int = 20, n_test: int = 8, seed: int = 0) -> dict[str, tuple]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, (n,), dtype=np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", x)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", y)
        out[split] = (x[..., None], y.astype(np.int32))
    return out


def _cifar_splits(name: str, n_train: int = 7, n_test: int = 3, seed: int = 0) -> dict[str, tuple]:
    rng = np.random.default_rng(seed)
    k = 10 if name == "cifar10" else 100
    splits = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        y = rng.integers(0, k, (n,))
        splits[split] = (x, y) if name == "cifar10" else (x, y, y // 5)
    return splits


# --- names, options, synthetic ----------------------------------------------------


def test_available_and_aliases() -> None:
    assert sd.available_datasets() == ("cifar10", "cifar100", "fashion_mnist", "imagenet2012", "mnist", "synthetic")
    with pytest.raises(ValueError, match="available: cifar10, cifar100, fashion_mnist"):
        load("svhn", "train")
    assert load("Synthetic", "train", num_examples=3).name == "synthetic"


def test_constants_per_dataset() -> None:
    infos = sd.DATASETS
    assert infos["fashion_mnist"].mean == (0.2860,) and infos["fashion_mnist"].std == (0.3530,)
    assert infos["mnist"].mean == (0.1307,) and infos["mnist"].std == (0.3081,)
    assert infos["cifar10"].image_shape == (32, 32, 3) and len(infos["cifar10"].std) == 3
    assert infos["cifar100"].num_classes == 100 and infos["imagenet2012"].num_classes == 1000
    assert [infos[n].augment for n in ("fashion_mnist", "mnist", "cifar10", "cifar100", "imagenet2012")] == [
        False, False, True, True, True,
    ]  # fmt: skip


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="source must be one of"):
        load("synthetic", "train", source="web")
    with pytest.raises(TypeError, match="unexpected keyword argument.*image_shape.*accepted: in_memory, augment"):
        load("fashion_mnist", "train", image_shape=(28, 28, 1))
    with pytest.raises(ValueError, match="split 'validation'"):
        load("synthetic", "validation")
    with pytest.raises(ValueError, match=r"\[start:stop\]"):
        load("synthetic", "train[5]")
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        load("synthetic", "train", num_classes=1)
    with pytest.raises(ValueError, match="image_shape"):
        load("synthetic", "train", image_shape=(28, 28))
    with pytest.raises(ValueError, match="no TFDS source"):
        load("synthetic", "train", source="tfds")


def test_augment_and_in_memory_must_be_bools(isolated: Path) -> None:
    # A string such as "false" is refused, not read as bool("false") == True.
    for value in ("false", "False", 0, 1, "yes"):
        with pytest.raises(ValueError, match="augment must be True or False"):
            load("synthetic", "train", num_examples=8, augment=value)
    assert load("synthetic", "train", num_examples=8, augment=True).augment is True
    assert load("synthetic", "train", num_examples=8, augment=np.bool_(True)).augment is True
    assert load("synthetic", "train", num_examples=8, augment=None).augment is False  # its default
    write_cifar(isolated / "src", "cifar10", _cifar_splits("cifar10"))
    assert load("cifar10", "train", data_dir=isolated / "src", augment=None).augment is True
    assert load("cifar10", "train", data_dir=isolated / "src", augment=False).augment is False
    with pytest.raises(ValueError, match="augment must be True or False"):
        load("cifar10", "train", data_dir=isolated / "src", augment="false")
    with pytest.raises(ValueError, match="in_memory must be True or False"):
        load("cifar10", "train", data_dir=isolated / "src", in_memory="no")


def test_synthetic_deterministic_shapes_and_distinct_splits() -> None:
    a = load("synthetic", "train", num_examples=64, image_shape=(12, 10, 3), num_classes=4, seed=3)
    b = load("synthetic", "train", num_examples=64, image_shape=(12, 10, 3), num_classes=4, seed=3)
    test = load("synthetic", "test", num_examples=64, image_shape=(12, 10, 3), num_classes=4, seed=3)
    other = load("synthetic", "train", num_examples=64, image_shape=(12, 10, 3), num_classes=4, seed=4)
    xa, ya = a.arrays()
    assert xa.shape == (64, 12, 10, 3) and xa.dtype == np.uint8 and ya.dtype == np.int32
    assert a.image_shape == (12, 10, 3) and a.num_classes == 4 and len(a.mean) == len(a.std) == 3
    np.testing.assert_array_equal(xa, b.arrays()[0])
    np.testing.assert_array_equal(ya, b.arrays()[1])
    assert set(ya.tolist()) == {0, 1, 2, 3}
    assert not np.array_equal(xa, test.arrays()[0]) and not np.array_equal(xa, other.arrays()[0])
    # No test image is a copy of a training image.
    flat_train = {row.tobytes() for row in xa.reshape(64, -1)}
    assert not any(row.tobytes() in flat_train for row in test.arrays()[0].reshape(64, -1))
    # Slices are slices of the full split.
    half = load("synthetic", "train[:50%]", num_examples=64, image_shape=(12, 10, 3), num_classes=4, seed=3)
    np.testing.assert_array_equal(half.arrays()[0], xa[:32])


def test_synthetic_seed_must_fit_32_bits() -> None:
    # numpy splits a larger seed into 32-bit words: seed 1 + 10 * 2**32 would draw its class
    # templates from the stream of seed 1's examples at num_classes=10, image_shape=(10, 28, 28).
    assert load("synthetic", "train", num_examples=4, seed=2**32 - 1).source == f"synthetic(seed={2**32 - 1})"
    for seed in (2**32, 1 + 10 * 2**32, 2**70, -1, True, 1.0):
        with pytest.raises(ValueError, match=r"seed must be an integer in 0\.\.2\*\*32 - 1"):
            load("synthetic", "train", num_examples=4, seed=seed)


def test_synthetic_is_learnable_and_train_test_share_a_distribution() -> None:
    """A nearest-class-mean classifier fit on train does well on test (chance: 10%)."""
    x, y = load("synthetic", "train").arrays()
    xt, yt = load("synthetic", "test").arrays()
    assert 0.4 < x.mean() / 255 < 0.6 and abs(x.mean() - xt.mean()) < 2
    means = np.stack([x[y == c].reshape(-1, 784).mean(0) for c in range(10)])
    dist = ((xt.reshape(-1, 784)[:, None, :].astype(np.float32) - means[None]) ** 2).sum(-1)
    accuracy = (dist.argmin(1) == yt).mean()
    assert 0.6 < accuracy, accuracy
    # Harder with more noise: the option works.
    xn, _ = load("synthetic", "train", noise=40.0).arrays()
    assert xn.std() > 0 and not np.array_equal(xn, x)


# --- Dataset ------------------------------------------------------------------------


def test_dataset_random_access() -> None:
    ds = load("synthetic", "train", num_examples=10)
    x, y = ds.arrays()
    one = ds[3]
    assert one["image"].shape == (28, 28, 1) and int(one["label"]) == y[3]
    np.testing.assert_array_equal(ds[-1]["image"], x[9])
    batch = ds[np.array([[0, 9], [2, 2]])]
    assert batch["image"].shape == (2, 2, 28, 28, 1) and batch["label"].tolist() == [[y[0], y[9]], [y[2], y[2]]]
    np.testing.assert_array_equal(ds[2:5]["image"], x[2:5])
    assert ds[[]]["image"].shape == (0, 28, 28, 1)
    with pytest.raises(IndexError):
        ds[np.array([10])]
    with pytest.raises(TypeError, match="integers"):
        ds[np.array([0.5])]
    assert "synthetic" in repr(ds) and ds.in_memory


def test_dataset_from_arrays_and_validation() -> None:
    x = np.zeros((4, 3, 3), np.uint8)
    x[1] = 255
    ds = Dataset.from_arrays(x, np.array([0, 2, 1, 0]))
    assert ds.image_shape == (3, 3, 1) and ds.num_classes == 3 and ds.mean == (0.25,)
    with pytest.raises(ValueError, match="uint8"):
        Dataset.from_arrays(x.astype(np.float32), np.zeros(4, int))
    with pytest.raises(ValueError, match=r"labels must be in 0..1"):
        Dataset.from_arrays(x, np.array([0, 1, 2, 0]), num_classes=2)
    with pytest.raises(ValueError, match="one value per channel"):
        Dataset("d", "train", 2, (3, 3, 1), (0.5, 0.5), (0.2, 0.2), False, reader=ds.reader)


def test_dataset_from_arrays_augment_must_be_a_bool() -> None:
    x, y = np.zeros((4, 3, 3, 1), np.uint8), np.array([0, 1, 0, 1])
    for value in ("False", "false", 0, 1, "yes"):
        with pytest.raises(ValueError, match="augment must be True or False"):
            Dataset.from_arrays(x, y, augment=value)  # type: ignore[arg-type]
    assert Dataset.from_arrays(x, y, augment=True).augment is True
    assert Dataset.from_arrays(x, y, augment=np.bool_(True)).augment is True
    assert Dataset.from_arrays(x, y).augment is False and Dataset.from_arrays(x, y, augment=None).augment is False


def test_documented_sources_and_splits_match_the_code() -> None:
    synthetic = load("synthetic", "train", num_examples=2)
    assert f"``{synthetic.source!r}``" in Dataset.__doc__
    arrays = Dataset.from_arrays(np.zeros((2, 1, 1, 1), np.uint8), np.array([0, 1]))
    assert f"``{arrays.source!r}``" in Dataset.__doc__
    # DatasetInfo.splits is keyed by our split names; the TFDS names are in tfds_splits.
    assert "brackets" not in sd.DatasetInfo.__doc__
    assert all(set(info.splits) == {"train", "test"} for info in sd.DATASETS.values())
    assert f"``{sd.DATASETS['imagenet2012'].tfds_splits!r}``" in sd.DatasetInfo.__doc__


# --- splits ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "split,expected",
    [
        ("train", [("train", 0, 100)]),
        ("train[:10%]", [("train", 0, 10)]),
        ("train[10%:]", [("train", 10, 100)]),
        ("test[-5:]", [("test", 45, 50)]),
        ("test[:-5]", [("test", 0, 45)]),
        ("train[2:7]+test", [("train", 2, 7), ("test", 0, 50)]),
        ("test[33%:67%]", [("test", 16, 34)]),  # round(16.5) == 16, round(33.5) == 34 (to even, as TFDS)
    ],
)
def test_split_ranges(split: str, expected: list) -> None:
    assert split_ranges(split, {"train": 100, "test": 50}) == expected


def test_split_ranges_errors() -> None:
    with pytest.raises(ValueError, match="outside"):
        split_ranges("train[:101]", {"train": 100})
    with pytest.raises(ValueError, match="integers"):
        split_ranges("train[:1.5]", {"train": 100})
    for bad in ("train[.:]", "train[-.%:]", "train[:1__0]"):
        with pytest.raises(ValueError, match=r"split 'train\[.*is not a number"):
            split_ranges(bad, {"train": 100})


# Accepted and refused exactly as TFDS (tensorflow_datasets.core.splits) accepts and refuses them,
# with TFDS's results: its grammar has no spaces but around '+', absolute bounds are integers
# (underscores allowed), percentages may be fractional but lie in -100..100.
@pytest.mark.parametrize(
    "split,expected",
    [
        ("train + test[:10%]", [("train", 0, 100), ("test", 0, 5)]),
        ("train\t+test", [("train", 0, 100), ("test", 0, 50)]),
        ("train[1_0:2_0]", [("train", 10, 20)]),
        ("test[12.5%:]", [("test", 6, 50)]),
        ("test[.5%:5.%]", [("test", 0, 2)]),
        ("train[10%:50]", [("train", 10, 50)]),  # one bound in percent: both are
        ("test[5:10%]", [("test", 2, 5)]),
        ("test[-100%:]", [("test", 0, 50)]),
        ("test[:100%]", [("test", 0, 50)]),
        ("train[-0:]", [("train", 0, 100)]),
        ("train[:-0]", [("train", 0, 0)]),
        ("test[-0%:]", [("test", 0, 50)]),
        ("train[50%:10%]", [("train", 50, 50)]),
    ],
)
def test_split_ranges_accept_tfds_grammar(split: str, expected: list) -> None:
    assert split_ranges(split, {"train": 100, "test": 50}) == expected


@pytest.mark.parametrize(
    "split,message",
    [
        (" train", "spaces are allowed only around '+'"),
        ("train ", "spaces are allowed only around '+'"),
        ("train[ 5 : 10 ]", "spaces are allowed only around '+'"),
        ("train[%:]", "[start:stop]"),
        ("train[:%]", "[start:stop]"),
        ("train[:]", "[start:stop]"),
        ("train[1e2:]", "[start:stop]"),
        ("train[]", "expected one of"),
        ("train[+5:]", "expected one of"),
        ("train+", "expected one of"),
        ("test[:101%]", "percentages must be in -100%..100%, got 101%"),  # round(50.5) == 50 would fit
        ("test[-100.5%:]", "percentages must be in -100%..100%"),
        ("train[3.0:]", "absolute bounds must be integers, got '3.0'"),
        ("train[1shard:2shard]", "slices by shard are not supported"),
    ],
)
def test_split_ranges_refuse_what_tfds_refuses(split: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"split {split!r}: ") + ".*" + re.escape(message)):
        split_ranges(split, {"train": 100, "test": 50})


def test_split_checked_before_any_source_is_read(isolated: Path) -> None:
    # The files source would otherwise accept what the TFDS source refuses.
    _write_mnist_like(isolated / "fm")
    for split in (" train", "train[ 2 : 5 ]", "test[:101%]", "test[%:]"):
        for source in ("files", "tfds"):
            with pytest.raises(ValueError, match=re.escape(f"split {split!r}")):
                load("fashion_mnist", split, data_dir=isolated / "fm", source=source)


def test_imagenet_test_split_is_tfds_validation() -> None:
    info = sd.DATASETS["imagenet2012"]
    assert _tfds_split("test", info) == "validation"
    assert _tfds_split("train[:1%]+test[:50%]", info) == "train[:1%]+validation[:50%]"
    assert _tfds_split("test", sd.DATASETS["cifar10"]) == "test"


# --- Fashion-MNIST and MNIST from files ------------------------------------------------


def test_fashion_mnist_from_files(isolated: Path) -> None:
    want = _write_mnist_like(isolated / "fm")
    for source in ("files", "auto"):
        ds = load("fashion_mnist", "train", data_dir=isolated / "fm", source=source)
        x, y = ds.arrays()
        np.testing.assert_array_equal(x, want["train"][0])
        np.testing.assert_array_equal(y, want["train"][1])
        assert ds.source == f"files:{isolated / 'fm'}"
    ds = load("fashion-mnist", "test[2:]", data_dir=isolated / "fm")
    assert (ds.name, ds.split, len(ds), ds.num_classes, ds.image_shape) == ("fashion_mnist", "test[2:]", 6, 10, (28, 28, 1))
    assert ds.mean == (0.2860,) and not ds.augment and ds.class_names[0] == "T-shirt/top"
    np.testing.assert_array_equal(ds.arrays()[1], want["test"][1][2:])
    # The environment variable is looked in too.
    isolated_env = isolated / "fm"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(DATA_DIR_ENV, str(isolated_env))
        assert len(load("fashion_mnist", "train")) == 20


def test_split_slice_checked_against_actual_size(isolated: Path) -> None:
    _write_mnist_like(isolated / "fm")
    with pytest.raises(ValueError, match="outside a split of 20"):
        load("fashion_mnist", "train[:30]", data_dir=isolated / "fm")


def test_not_found_names_every_place_and_remedy(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = isolated / "env"
    env.mkdir()
    monkeypatch.setenv(DATA_DIR_ENV, str(env))
    with pytest.raises(DatasetNotFoundError) as info:
        load("fashion_mnist", "train", data_dir=isolated / "given")
    err = info.value
    assert isinstance(err, FileNotFoundError) and err.name == "fashion_mnist"
    msg = str(err)
    assert str(isolated / "given" / "fashion_mnist") in msg and "prepared TFDS dataset" in msg
    assert str(isolated / "given") + " (data_dir argument): does not exist" in msg
    assert str(env) in msg and "lacks train-images-idx3-ubyte.gz" in msg
    assert str(isolated / "no-system-dir") in msg
    for remedy in ("apt-get install dataset-fashion-mnist", "tfds build fashion_mnist", "download=True",
                   "prepare_tfds('fashion_mnist')", DATA_DIR_ENV):  # fmt: skip
        assert remedy in msg, remedy
    assert len(err.places) == 4
    # Without data_dir, the TFDS place is $TFDS_DATA_DIR.
    with pytest.raises(DatasetNotFoundError, match=str(isolated / "tfds-empty")):
        load("fashion_mnist", "test", source="tfds")


def test_mnist_only_where_it_cannot_be_mistaken(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = isolated / "env"
    fm = _write_mnist_like(env, seed=1)  # Fashion-MNIST files directly in $SPARSEJAX_DATA_DIR ...
    monkeypatch.setenv(DATA_DIR_ENV, str(env))
    with pytest.raises(DatasetNotFoundError) as info:  # ... are not taken for MNIST
        load("mnist", "train")
    assert str(env / "mnist") in str(info.value) and "storage.googleapis.com/cvdf-datasets/mnist" in str(info.value)
    mn = _write_mnist_like(env / "mnist", seed=2)
    ds = load("mnist", "train")
    np.testing.assert_array_equal(ds.arrays()[0], mn["train"][0])
    assert not np.array_equal(ds.arrays()[0], fm["train"][0]) and ds.mean == (0.1307,)
    # data_dir itself, or its mnist/ sub-folder.
    np.testing.assert_array_equal(load("mnist", "test", data_dir=env / "mnist").arrays()[1], mn["test"][1])
    np.testing.assert_array_equal(load("mnist", "test", data_dir=env).arrays()[1], fm["test"][1])


# --- CIFAR from the python version ---------------------------------------------------------


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_folder_and_archive(isolated: Path, name: str) -> None:
    splits = _cifar_splits(name)
    folder = write_cifar(isolated / "src", name, splits, label_names=[f"n{i}" for i in range(10 if name == "cifar10" else 100)])
    ds = load(name, "train", data_dir=isolated / "src")
    x, y = ds.arrays()
    np.testing.assert_array_equal(x, splits["train"][0])  # channels-first rows became NHWC
    np.testing.assert_array_equal(y, splits["train"][1])
    assert ds.augment and ds.image_shape == (32, 32, 3) and ds.class_names[:2] == ("n0", "n1")
    assert ds.source == f"files:{folder}"
    # The .tar.gz archive is read without unpacking.
    archive_dir = isolated / "archive"
    archive_dir.mkdir()
    archive = archive_dir / sd.cifar.CIFAR_LAYOUT[name]["archive"]
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    ds = load(name, "test", data_dir=archive_dir)
    np.testing.assert_array_equal(ds.arrays()[0], splits["test"][0])
    assert ds.source == f"files:{archive}"


def test_cifar_not_found_and_corrupt(isolated: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load("cifar10", "train", data_dir=isolated / "nothing")
    msg = str(info.value)
    assert "cifar-10-batches-py" in msg and "cifar-10-python.tar.gz" in msg and "tfds build cifar10" in msg
    folder = write_cifar(isolated / "src", "cifar10", _cifar_splits("cifar10"))
    (folder / "data_batch_2").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="data_batch_2: not a CIFAR python batch"):
        load_cifar("cifar10", "train", data_dir=isolated / "src")


def test_cifar_damaged_archive_says_to_download_it_again(isolated: Path) -> None:
    folder = write_cifar(isolated / "src", "cifar10", _cifar_splits("cifar10"))
    (folder / "data_batch_3").unlink()
    lacking = isolated / "lacking" / "cifar-10-python.tar.gz"
    lacking.parent.mkdir()
    with tarfile.open(lacking, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    truncated = isolated / "truncated" / "cifar-10-python.tar.gz"
    truncated.parent.mkdir()
    truncated.write_bytes(lacking.read_bytes()[: lacking.stat().st_size // 2])
    html = isolated / "html" / "cifar-10-python.tar.gz"
    html.parent.mkdir()
    html.write_text("<html>404 Not Found</html>")
    cases = [(lacking, "train", "no member cifar-10-batches-py/data_batch_3"),
             (truncated, "train", "not a complete .tar.gz archive"),
             (truncated, "test", "not a complete .tar.gz archive"),
             (html, "train", "not a complete .tar.gz archive")]  # fmt: skip
    for archive, split, problem in cases:
        want = re.escape(f"{archive}: damaged CIFAR archive: ") + ".*" + re.escape(problem)
        want += ".*Delete it and download it again"
        with pytest.raises(ValueError, match=want):
            load("cifar10", split, data_dir=archive.parent)
        with pytest.raises(ValueError, match=want):
            load_cifar("cifar10", split, data_dir=archive.parent)


class _Boom:
    def __reduce__(self) -> tuple:
        return (print, ("pwned",))


def test_cifar_unpickler_refuses_code(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_cifar(isolated / "src", "cifar10", _cifar_splits("cifar10"))
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": _Boom(), b"labels": []}, protocol=2))
    with pytest.raises(ValueError, match=r"refusing to load (__builtin__|builtins)\.print"):
        load("cifar10", "test", data_dir=isolated / "src")
    assert "pwned" not in capsys.readouterr().out


# --- ImageNet, TFDS selection, download flag -----------------------------------------------


def test_imagenet_only_from_tfds(isolated: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load("imagenet", "train", source="files")
    assert "prepared TFDS dataset only" in str(info.value) and "tfds build imagenet2012" in str(info.value)
    with pytest.raises(ValueError, match="image_size must be an integer >= 8"):
        load("imagenet2012", "train", image_size=4)


def test_source_reader_resizes_and_centre_crops() -> None:
    class FakeSource:
        def __init__(self) -> None:
            big = np.zeros((300, 400, 3), np.uint8)
            big[:, 200:] = 200  # left half dark, right half bright
            self.items = [{"image": big, "label": 7}, {"image": np.full((64, 64, 3), 9, np.uint8), "label": 3}]

        def __len__(self) -> int:
            return 2

        def __getitems__(self, idx: list[int]) -> list[dict]:
            return [self.items[i] for i in idx]

    images, labels = SourceReader(FakeSource(), (64, 64, 3)).get(np.array([0, 1]))
    assert images.shape == (2, 64, 64, 3) and labels.tolist() == [7, 3]
    assert images[0, :, :20].max() == 0 and images[0, :, -20:].min() == 200  # the centre, both halves
    np.testing.assert_array_equal(images[1], 9)  # already the right size: unchanged


def test_download_false_never_reaches_tfds(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_open(name: str, split: str, data_dir: Path, *, download: bool, in_memory: bool) -> dict:
        calls.append((name, split, Path(data_dir), download))
        x = np.zeros((5, 28, 28, 1), np.uint8)
        return {"arrays": (x, np.arange(5, dtype=np.int32)), "label_names": (), "path": Path(data_dir) / name}

    monkeypatch.setattr(tfds_io, "open_prepared", fake_open)
    with pytest.raises(DatasetNotFoundError):
        load("mnist", "train", data_dir=isolated / "none")
    assert calls == []  # nothing prepared, no download allowed: TFDS is not even asked
    ds = load("mnist", "train", data_dir=isolated / "none", download=True)
    assert calls == [("mnist", "train", isolated / "none", True)] and len(ds) == 5
    assert ds.source.startswith("tfds:")


def test_prepared_tfds_dataset_is_preferred(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_mnist_like(isolated / "d")
    version = isolated / "d" / "fashion_mnist" / "3.0.1"
    version.mkdir(parents=True)
    (version / "dataset_info.json").write_text("{}")
    assert tfds_io.find_prepared("fashion_mnist", isolated / "d") == version
    seen = []

    def fake_open(name: str, split: str, data_dir: Path, *, download: bool, in_memory: bool) -> dict:
        seen.append((name, split, download))
        return {"arrays": (np.zeros((3, 28, 28, 1), np.uint8), np.zeros(3, np.int32)), "label_names": (), "path": version}

    monkeypatch.setattr(tfds_io, "open_prepared", fake_open)
    assert load("fashion_mnist", "train", data_dir=isolated / "d").source == f"tfds:{version}"
    assert seen == [("fashion_mnist", "train", False)]
    assert load("fashion_mnist", "train", data_dir=isolated / "d", source="files").source.startswith("files:")


def test_import_is_tensorflow_free() -> None:
    code = (
        "import sys, sparsejax.data as d; d.load('synthetic', 'train', num_examples=2); "
        "bad = [m for m in ('tensorflow', 'tensorflow_datasets') if m in sys.modules]; "
        "sys.exit(1 if bad else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


_REAL = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")


@pytest.mark.skipif(not _REAL.exists(), reason="dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_through_load(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setenv(TFDS_DATA_DIR_ENV, str(tmp_path))
    ds = load("fashion_mnist", "test")
    assert len(ds) == 10000 and ds.source == "files:/usr/share/datasets/fashion-mnist"
    x, _ = ds.arrays()
    assert abs(x.mean() / 255 - 0.2860) < 0.01  # the test split's mean is close to the training constant


# --- load_numpy: offline first, then a TFDS download -------------------------------------------


def _no_tfds(*args: object, **kwargs: object) -> dict:
    raise AssertionError("TFDS must not be asked")


def test_load_numpy_uses_local_files_without_downloading(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    want = _write_mnist_like(isolated / "fm")
    monkeypatch.setattr(tfds_io, "open_prepared", _no_tfds)
    monkeypatch.setattr(datasets, "_download_blocker", lambda key: pytest.fail("no download check expected"))
    x, y = sd.load_numpy("fashion_mnist", "train", data_dir=isolated / "fm")
    assert (x.dtype, y.dtype, x.shape) == (np.uint8, np.int32, (20, 28, 28, 1))
    np.testing.assert_array_equal(x, want["train"][0])
    np.testing.assert_array_equal(y, want["train"][1])
    x, y = sd.load_numpy("fashion_mnist", "test[:5]", data_dir=isolated / "fm")
    np.testing.assert_array_equal(y, want["test"][1][:5])
    x, y = sd.load_numpy("synthetic", "train", num_examples=6)
    assert x.shape == (6, 28, 28, 1) and y.dtype == np.int32


def test_load_numpy_without_download_names_every_place(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tfds_io, "open_prepared", _no_tfds)
    with pytest.raises(DatasetNotFoundError) as info:
        sd.load_numpy("fashion_mnist", "train", download=False, data_dir=isolated / "given")
    err = info.value
    msg = str(err)
    assert err.name == "fashion_mnist" and len(err.places) == 4  # TFDS folder, data_dir, system folder, download
    for place in err.places:
        assert place in msg
    assert str(isolated / "given" / "fashion_mnist") in msg and str(isolated / "no-system-dir") in msg
    assert "not attempted (download=False" in msg and "load_numpy(..., download=True)" in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "tfds build fashion_mnist" in msg


def test_load_numpy_wraps_a_failing_download(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def failing_open(name: str, split: str, data_dir: Path, *, download: bool, in_memory: bool) -> dict:
        calls.append((name, split, download))
        raise ConnectionError("Failed to establish a new connection: [Errno -2] Name or service not known")

    monkeypatch.setattr(tfds_io, "open_prepared", failing_open)
    monkeypatch.setattr(datasets, "_download_blocker", lambda key: None)
    with pytest.raises(DatasetNotFoundError) as info:
        sd.load_numpy("mnist", "test", data_dir=isolated / "none")
    assert calls == [("mnist", "test", True)]
    err = info.value
    assert isinstance(err.__cause__, ConnectionError)
    assert f"TFDS download into {isolated / 'none'}: failed: ConnectionError: Failed to establish" in str(err)
    assert "How to get it:" in str(err) and err.places[-1].startswith("  - TFDS download")


def test_load_numpy_download_succeeds_through_tfds(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_open(name: str, split: str, data_dir: Path, *, download: bool, in_memory: bool) -> dict:
        assert download
        x = np.full((4, 28, 28, 1), 7, np.uint8)
        return {"arrays": (x, np.arange(4, dtype=np.int32)), "label_names": (), "path": Path(data_dir) / name}

    monkeypatch.setattr(tfds_io, "open_prepared", fake_open)
    monkeypatch.setattr(datasets, "_download_blocker", lambda key: None)
    x, y = sd.load_numpy("mnist", "train", data_dir=isolated / "none")
    assert x.shape == (4, 28, 28, 1) and x.max() == 7 and y.tolist() == [0, 1, 2, 3]


def test_load_numpy_checks_tensorflow_and_network_before_downloading(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    monkeypatch.setattr(tfds_io, "open_prepared", _no_tfds)
    monkeypatch.setattr(datasets, "_tensorflow_importable", lambda: False)
    with pytest.raises(DatasetNotFoundError, match=r"TensorFlow is not installed.*sparsejax\[tf\]"):
        sd.load_numpy("cifar10", "train", data_dir=isolated / "none")

    def unreachable(address: tuple[str, int], timeout: float) -> socket.socket:
        raise OSError("[Errno 101] Network is unreachable")

    monkeypatch.setattr(datasets, "_tensorflow_importable", lambda: True)
    monkeypatch.setattr(socket, "create_connection", unreachable)
    for var in datasets._PROXY_ENV:
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(DatasetNotFoundError, match="no network access .*storage.googleapis.com:443 unreachable"):
        sd.load_numpy("cifar10", "train", data_dir=isolated / "none")
    with pytest.raises(DatasetNotFoundError, match="TFDS cannot download ImageNet"):
        sd.load_numpy("imagenet2012", "test", data_dir=isolated / "none")
