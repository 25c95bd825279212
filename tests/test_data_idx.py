"""Tests of the IDX reader and the offline Fashion-MNIST loader."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from sparsejax.data import (
    DATA_DIR_ENV,
    IDXError,
    fashion_mnist,
    find_fashion_mnist,
    load_fashion_mnist,
    read_idx,
    write_idx,
)


def _write_raw(path: Path, payload: bytes) -> Path:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(payload)
    return path


def _fake_split(folder: Path, prefix: str, n: int, seed: int = 0, gz: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Writes a small Fashion-MNIST-like split by hand (header bytes written explicitly)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=(n,), dtype=np.uint8)
    ext = ".gz" if gz else ""
    _write_raw(folder / f"{prefix}-images-idx3-ubyte{ext}",
               struct.pack(">IIII", 0x803, n, 28, 28) + images.tobytes())
    _write_raw(folder / f"{prefix}-labels-idx1-ubyte{ext}", struct.pack(">II", 0x801, n) + labels.tobytes())
    return images, labels


@pytest.fixture
def no_system_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Hides the system-wide files and the environment variable."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    hidden = tmp_path / "no-system-dir"
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", hidden)
    return hidden


# --- the IDX reader ---------------------------------------------------------------


def test_reads_hand_written_uint8_images(tmp_path: Path) -> None:
    data = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = _write_raw(tmp_path / "x-idx3-ubyte.gz", struct.pack(">IIII", 0x803, 2, 3, 4) + data.tobytes())
    out = read_idx(path, expected_magic=0x803)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, data)


def test_reads_big_endian_multibyte_types(tmp_path: Path) -> None:
    ints = np.array([1, -2, 70000, -(2**31)], dtype=">i4")
    floats = np.array([[1.5, -0.25]], dtype=">f4")
    p1 = _write_raw(tmp_path / "i.idx", struct.pack(">II", 0x0C01, 4) + ints.tobytes())
    p2 = _write_raw(tmp_path / "f.idx.gz", struct.pack(">III", 0x0D02, 1, 2) + floats.tobytes())
    out1, out2 = read_idx(p1), read_idx(p2)
    assert out1.dtype == np.int32 and out1.dtype.isnative
    assert out1.tolist() == [1, -2, 70000, -(2**31)]
    assert out2.dtype == np.float32 and out2.tolist() == [[1.5, -0.25]]


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_write_read_round_trip(tmp_path: Path, dtype: type, name: str) -> None:
    data = (np.random.default_rng(0).normal(size=(3, 2, 5)) * 50).astype(dtype)
    write_idx(tmp_path / name, data)
    out = read_idx(tmp_path / name)
    assert out.dtype == np.dtype(dtype) and out.shape == data.shape
    np.testing.assert_array_equal(out, data)


def test_write_idx_header_bytes(tmp_path: Path) -> None:
    write_idx(tmp_path / "l", np.array([7, 8], dtype=np.uint8))
    assert (tmp_path / "l").read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 8])


@pytest.mark.parametrize(
    "magic", [0x00010803, 0x00000703, 0x00000800, 0x12345678], ids=["high-bytes", "type", "ndim0", "junk"]
)
def test_bad_magic_number(tmp_path: Path, magic: int) -> None:
    path = _write_raw(tmp_path / "bad.gz", struct.pack(">II", magic, 1) + b"\0" * 16)
    with pytest.raises(IDXError, match="not an IDX file"):
        read_idx(path)


def test_unexpected_magic_number(tmp_path: Path) -> None:
    path = _write_raw(tmp_path / "labels.gz", struct.pack(">II", 0x801, 2) + b"\1\2")
    with pytest.raises(IDXError, match=r"0x00000801.*expected 0x00000803"):
        read_idx(path, expected_magic=0x803)


def test_truncated_and_trailing_data(tmp_path: Path) -> None:
    short = _write_raw(tmp_path / "short.gz", struct.pack(">III", 0x802, 2, 3) + b"\0" * 5)
    long = _write_raw(tmp_path / "long.gz", struct.pack(">III", 0x802, 2, 3) + b"\0" * 7)
    header = _write_raw(tmp_path / "header.gz", struct.pack(">II", 0x803, 2))
    tiny = _write_raw(tmp_path / "tiny", b"\0\0")
    with pytest.raises(IDXError, match="truncated"):
        read_idx(short)
    with pytest.raises(IDXError, match="trailing"):
        read_idx(long)
    with pytest.raises(IDXError, match="truncated header"):
        read_idx(header)
    with pytest.raises(IDXError, match="too short"):
        read_idx(tiny)


def test_not_gzip(tmp_path: Path) -> None:
    path = tmp_path / "plain-but-named.gz"
    path.write_bytes(struct.pack(">II", 0x801, 1) + b"\3")
    with pytest.raises(IDXError, match="gzip"):
        read_idx(path)


def test_corrupt_gzip_data_is_an_idx_error_naming_the_file(tmp_path: Path) -> None:
    # A valid gzip header followed by damaged deflate data: zlib's own error must not escape.
    path = tmp_path / "corrupt-images-idx3-ubyte.gz"
    write_idx(path, np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8))
    raw = bytearray(path.read_bytes())
    raw[30:60] = bytes(b ^ 0xFF for b in raw[30:60])
    path.write_bytes(bytes(raw))
    with pytest.raises(IDXError, match=r"corrupt-images-idx3-ubyte\.gz: cannot read as gzip"):
        read_idx(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope.gz")


def test_write_rejects_unsupported_dtype(tmp_path: Path) -> None:
    with pytest.raises(IDXError, match="dtype"):
        write_idx(tmp_path / "x", np.zeros(3, np.uint16))


# --- the Fashion-MNIST loader -----------------------------------------------------


def test_load_from_data_dir(tmp_path: Path, no_system_data: Path) -> None:
    images, labels = _fake_split(tmp_path, "t10k", 7, seed=1)
    x, y = load_fashion_mnist("test", data_dir=tmp_path)
    assert x.shape == (7, 28, 28, 1) and x.dtype == np.uint8
    assert y.shape == (7,) and y.dtype == np.int32
    np.testing.assert_array_equal(x[..., 0], images)
    np.testing.assert_array_equal(y, labels)


def test_uncompressed_files_accepted(tmp_path: Path, no_system_data: Path) -> None:
    _fake_split(tmp_path, "train", 3, gz=False)
    x, y = load_fashion_mnist("train", data_dir=str(tmp_path))
    assert x.shape == (3, 28, 28, 1) and y.shape == (3,)


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_system_data: Path) -> None:
    arg_dir, env_dir, sys_dir = tmp_path / "arg", tmp_path / "env", no_system_data
    for d, n in ((arg_dir, 2), (env_dir, 3), (sys_dir, 4)):
        d.mkdir()
        _fake_split(d, "train", n)
    monkeypatch.setenv(DATA_DIR_ENV, str(env_dir))
    assert len(load_fashion_mnist("train", data_dir=arg_dir)[1]) == 2
    assert len(load_fashion_mnist("train")[1]) == 3
    # A folder without the files is skipped, not an error.
    assert len(load_fashion_mnist("train", data_dir=tmp_path / "empty")[1]) == 3
    monkeypatch.delenv(DATA_DIR_ENV)
    assert len(load_fashion_mnist("train")[1]) == 4
    assert find_fashion_mnist("train")[0] == sys_dir / "train-images-idx3-ubyte.gz"


def test_missing_everywhere_lists_places_and_remedy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_system_data: Path
) -> None:
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    _fake_split(env_dir, "train", 2)  # the train split only: the test split is missing
    (env_dir / "t10k-labels-idx1-ubyte.gz").write_bytes(b"")
    monkeypatch.setenv(DATA_DIR_ENV, str(env_dir))
    with pytest.raises(FileNotFoundError) as info:
        load_fashion_mnist("test", data_dir=tmp_path / "given")
    msg = str(info.value)
    assert str(tmp_path / "given") in msg and "does not exist" in msg
    assert str(env_dir) in msg and "lacks t10k-images-idx3-ubyte.gz" in msg
    assert "t10k-labels" not in msg.split(str(env_dir))[1].split("\n")[0]
    assert str(no_system_data) in msg
    assert "apt-get install dataset-fashion-mnist" in msg and DATA_DIR_ENV in msg


def test_unknown_split(no_system_data: Path) -> None:
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist("validation")


def test_images_and_labels_must_agree(tmp_path: Path, no_system_data: Path) -> None:
    _fake_split(tmp_path, "train", 3)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    with pytest.raises(IDXError, match="3 images but .* 4 labels"):
        load_fashion_mnist("train", data_dir=tmp_path)


def test_label_range_and_image_shape_checked(tmp_path: Path, no_system_data: Path) -> None:
    _fake_split(tmp_path, "train", 3)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([0, 10, 1], np.uint8))
    with pytest.raises(IDXError, match="0..9"):
        load_fashion_mnist("train", data_dir=tmp_path)
    _fake_split(tmp_path, "train", 3)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((3, 28, 27), np.uint8))
    with pytest.raises(IDXError, match="28x28"):
        load_fashion_mnist("train", data_dir=tmp_path)


def test_labels_file_with_images_magic(tmp_path: Path, no_system_data: Path) -> None:
    _fake_split(tmp_path, "train", 3)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros((3, 1, 1), np.uint8))
    with pytest.raises(IDXError, match="expected 0x00000801"):
        load_fashion_mnist("train", data_dir=tmp_path)


_REAL = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


@pytest.mark.skipif(not _REAL.exists(), reason="dataset-fashion-mnist is not installed")
@pytest.mark.parametrize("split,n", [("train", 60000), ("test", 10000)])
def test_real_fashion_mnist(split: str, n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    x, y = load_fashion_mnist(split)
    assert x.shape == (n, 28, 28, 1) and x.dtype == np.uint8
    assert y.shape == (n,) and y.dtype == np.int32
    assert y.min() == 0 and y.max() == 9
    assert np.all(np.bincount(y) == n // 10)  # Fashion-MNIST is exactly balanced
    assert x.max() == 255 and x.min() == 0 and 50 < x.mean() < 90
