"""Tests of the input pipeline sparsejax.data.batches: shuffling, augmentation, sharding, resume."""

from __future__ import annotations

import threading
import time

import jax
import numpy as np
import pytest

from sparsejax.data import Batches, Dataset, batches, crop_and_flip, load, normalize
from sparsejax.data.datasets import ArrayReader


def _ds(n: int = 50, shape: tuple[int, int, int] = (6, 5, 3), augment: bool = False, seed: int = 0) -> Dataset:
    ds = load("synthetic", "train", num_examples=n, image_shape=shape, num_classes=5, seed=seed, augment=augment)
    # Distinct mean/std per channel so a channel mix-up shows.
    return Dataset(ds.name, ds.split, ds.num_classes, ds.image_shape, (0.1, 0.5, 0.9)[: shape[2]],
                   (0.2, 0.3, 0.4)[: shape[2]], augment, reader=ds.reader)  # fmt: skip


def _mk(ds: Dataset, batch_size: int, **kw) -> Batches:
    kw.setdefault("process_index", 0)
    kw.setdefault("process_count", 1)
    return batches(ds, batch_size, **kw)


def _all(b: Batches, epoch: int, start: int = 0) -> list[dict[str, np.ndarray]]:
    return list(b.epoch(epoch, start))


def _assert_batches_equal(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            assert x[k].dtype == y[k].dtype
            np.testing.assert_array_equal(x[k], y[k])


def _expected_images(ds: Dataset, idx: np.ndarray) -> np.ndarray:
    x = ds[idx]["image"].astype(np.float64) / 255.0
    return (x - np.array(ds.mean)) / np.array(ds.std)


# --- training batches --------------------------------------------------------------


def test_train_batches_shapes_and_epoch_permutation() -> None:
    ds = _ds(50)
    b = _mk(ds, 8, train=True, seed=1)
    assert len(b) == 6 and b.batch_size == 8 and b.local_batch_size == 8 and not b.augment
    out = _all(b, 0)
    assert len(out) == 6
    for batch in out:
        assert batch["image"].shape == (8, 6, 5, 3) and batch["image"].dtype == np.float32
        assert batch["label"].dtype == np.int32 and batch["mask"].dtype == np.float32
        np.testing.assert_array_equal(batch["mask"], 1.0)
    idx = np.concatenate([b.indices(0, i) for i in range(6)])
    assert len(set(idx.tolist())) == 48  # each example at most once; 2 dropped
    # The batches hold exactly those examples, normalised per channel.
    for i, batch in enumerate(out):
        np.testing.assert_allclose(batch["image"], _expected_images(ds, b.indices(0, i)), rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(batch["label"], ds[b.indices(0, i)]["label"])
    # A new order every epoch; the same for the same seed; another for another seed.
    assert not np.array_equal(b.indices(0, 0), b.indices(1, 0))
    np.testing.assert_array_equal(_mk(ds, 8, train=True, seed=1).indices(3, 2), b.indices(3, 2))
    assert not np.array_equal(_mk(ds, 8, train=True, seed=2).indices(0, 0), b.indices(0, 0))


def test_shuffling_is_uniform_enough() -> None:
    """Over many epochs every example lands in the first batch about equally often."""
    b = _mk(_ds(20), 5, train=True, seed=0)
    counts = np.bincount(np.concatenate([b.indices(e, 0) for e in range(400)]), minlength=20)
    assert counts.min() > 50 and counts.max() < 150  # expectation 100


def test_resume_mid_epoch_is_identical() -> None:
    ds = _ds(40, augment=True)
    b = _mk(ds, 8, train=True, seed=3)
    full = _all(b, 2)
    _assert_batches_equal(_all(b, 2, start=3), full[3:])
    _assert_batches_equal(_all(_mk(ds, 8, train=True, seed=3), 2, start=1), full[1:])
    assert _all(b, 2, start=len(b)) == []
    with pytest.raises(ValueError, match="start"):
        b.epoch(0, start=len(b) + 1)
    with pytest.raises(ValueError, match="epoch"):
        b.epoch(-1)


def test_prefetch_and_workers_do_not_change_batches() -> None:
    ds = _ds(60, augment=True)
    ref = _all(_mk(ds, 8, train=True, prefetch=0), 1)
    _assert_batches_equal(_all(_mk(ds, 8, train=True, prefetch=3, num_workers=3), 1), ref)
    _assert_batches_equal(_all(_mk(ds, 8, train=True, prefetch=1), 1), ref)
    ev = _all(_mk(ds, 16, train=False, prefetch=0), 0)
    _assert_batches_equal(_all(_mk(ds, 16, train=False, prefetch=4, num_workers=2), 0), ev)


# --- augmentation ---------------------------------------------------------------------


def test_crop_and_flip_matches_definition() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 7, 6, 3), dtype=np.uint8)
    oy, ox = rng.integers(0, 9, (2, 30))
    flip = rng.random(30) < 0.5
    out = crop_and_flip(x, oy, ox, flip, pad=4)
    padded = np.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0)))
    for i in range(30):
        want = padded[i, oy[i] : oy[i] + 7, ox[i] : ox[i] + 6]
        np.testing.assert_array_equal(out[i], want[:, ::-1] if flip[i] else want)
    np.testing.assert_array_equal(crop_and_flip(x, np.full(30, 4), np.full(30, 4), np.zeros(30, bool)), x)
    # Other dtypes and a single channel too.
    xf = x[..., :1].astype(np.float32)
    np.testing.assert_array_equal(crop_and_flip(xf, oy, ox, flip)[..., 0], out[..., 0].astype(np.float32))


def test_crop_and_flip_checks_its_arguments() -> None:
    x = np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1)
    ok, no = np.array([0]), np.array([False])
    # Offsets outside 0..2*pad used to wrap around (negative) or fail deep inside numpy.
    for bad in (np.array([-1]), np.array([3])):
        with pytest.raises(ValueError, match=r"offset_y must be in 0\.\.2 \(0\.\.2\*pad for pad=1\)"):
            crop_and_flip(x, bad, ok, no, pad=1)
        with pytest.raises(ValueError, match=r"offset_x must be in 0\.\.2"):
            crop_and_flip(x, ok, bad, no, pad=1)
    with pytest.raises(ValueError, match=r"offset_x must be \[n=1\] integers"):
        crop_and_flip(x, ok, np.array([0.5]), no, pad=1)
    with pytest.raises(ValueError, match=r"offset_y must be \[n=1\] integers"):
        crop_and_flip(x, np.array([0, 1]), ok, no, pad=1)
    with pytest.raises(ValueError, match=r"flip must be \[n=1\] booleans"):
        crop_and_flip(x, ok, ok, np.array([True, False]), pad=1)
    with pytest.raises(ValueError, match=r"images must be \[n, H, W, C\]"):
        crop_and_flip(x[0], ok, ok, no, pad=1)
    with pytest.raises(ValueError, match="pad must be"):
        crop_and_flip(x, ok, ok, no, pad=-1)
    # The bounds themselves are fine; pad=0 with offset 0 is the identity.
    corner = crop_and_flip(x, np.array([2]), np.array([2]), no, pad=1)[0, :, :, 0]
    np.testing.assert_array_equal(corner[:2, :2], [[5, 6], [9, 10]])
    np.testing.assert_array_equal(crop_and_flip(x, ok, ok, no, pad=0), x)
    assert crop_and_flip(x[:0], ok[:0], ok[:0], no[:0]).shape == (0, 4, 4, 1)


def test_training_augmentation_is_random_crop_and_flip() -> None:
    ds = _ds(64, shape=(8, 8, 3), augment=True)
    b = _mk(ds, 64, train=True, seed=5)
    assert b.augment
    batch = b.get(0, 0)
    raw = ds[b.indices(0, 0)]["image"]
    padded = np.pad(raw, ((0, 0), (4, 4), (4, 4), (0, 0)))
    flips, shifts = 0, set()
    for i in range(64):
        candidates = {
            (dy, dx, f): padded[i, dy : dy + 8, dx : dx + 8][:, ::-1] if f else padded[i, dy : dy + 8, dx : dx + 8]
            for dy in range(9) for dx in range(9) for f in (False, True)
        }  # fmt: skip
        want = batch["image"][i]
        match = [k for k, c in candidates.items() if np.allclose(normalize(c, ds.mean, ds.std), want, atol=1e-5)]
        assert match, f"example {i} is no crop/flip of its image"
        flips += match[0][2]
        shifts.add(match[0][:2])
    assert 10 < flips < 54 and len(shifts) > 10
    # Different batches and epochs draw different crops; evaluation never augments.
    assert not np.array_equal(b.get(0, 0)["image"], _mk(ds, 64, train=True, seed=5, augment=False).get(0, 0)["image"])
    ev = _mk(ds, 64, train=False, augment=True)
    assert not ev.augment
    np.testing.assert_allclose(ev.get(0, 0)["image"], _expected_images(ds, np.arange(64)), rtol=1e-5, atol=1e-5)


def test_augment_default_follows_dataset() -> None:
    assert _mk(_ds(16, augment=True), 4, train=True).augment
    assert not _mk(_ds(16, augment=False), 4, train=True).augment
    assert _mk(_ds(16, augment=False), 4, train=True, augment=True).augment


# --- evaluation batches --------------------------------------------------------------------


def test_eval_batches_in_order_padded_with_mask() -> None:
    ds = _ds(21)
    b = _mk(ds, 8, train=False)
    assert len(b) == 3
    out = _all(b, 0)
    assert [x["image"].shape for x in out] == [(8, 6, 5, 3)] * 3
    np.testing.assert_array_equal(np.concatenate([x["mask"] for x in out]), [1.0] * 21 + [0.0] * 3)
    labels = np.concatenate([x["label"] for x in out])
    np.testing.assert_array_equal(labels[:21], ds.arrays()[1])
    np.testing.assert_array_equal(labels[21:], 0)
    np.testing.assert_array_equal(out[-1]["image"][5:], 0.0)
    np.testing.assert_allclose(out[-1]["image"][:5], _expected_images(ds, np.arange(16, 21)), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(b.indices(0, 2), [16, 17, 18, 19, 20, -1, -1, -1])
    # Every epoch is the same in evaluation.
    _assert_batches_equal(_all(b, 5), out)


def test_eval_batch_larger_than_dataset() -> None:
    b = _mk(_ds(3), 8, train=False)
    (only,) = _all(b, 0)
    assert only["mask"].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]


# --- several processes -------------------------------------------------------------------------


@pytest.mark.parametrize("train", [True, False])
def test_processes_together_give_the_single_process_batches(train: bool) -> None:
    ds = _ds(45, augment=True)
    single = _mk(ds, 8, train=train, seed=7)
    parts = [_mk(ds, 8, train=train, seed=7, process_index=p, process_count=4) for p in range(4)]
    assert all(p.local_batch_size == 2 and len(p) == len(single) for p in parts)
    for epoch in (0, 1):
        ref = _all(single, epoch)
        local = [_all(p, epoch) for p in parts]
        for i, batch in enumerate(ref):
            for key in ("image", "label", "mask"):
                np.testing.assert_array_equal(np.concatenate([local[p][i][key] for p in range(4)]), batch[key])


def test_each_process_reads_only_its_rows() -> None:
    ds = _ds(32)
    seen: list[np.ndarray] = []

    class Spy(ArrayReader):
        def get(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            seen.append(np.array(indices))
            return super().get(indices)

    spied = Dataset(ds.name, ds.split, ds.num_classes, ds.image_shape, ds.mean, ds.std, False,
                    reader=Spy(*ds.arrays()))  # fmt: skip
    b = _mk(spied, 8, train=True, process_index=1, process_count=4, prefetch=0)
    b.get(0, 2)
    assert len(seen) == 1 and len(seen[0]) == 2
    np.testing.assert_array_equal(seen[0], b.indices(0, 2)[2:4])


def test_default_process_index_and_count_from_jax() -> None:
    b = batches(_ds(16), 4, train=True)
    assert (b.process_index, b.process_count) == (jax.process_index(), jax.process_count())


def test_bad_arguments() -> None:
    ds = _ds(10)
    with pytest.raises(ValueError, match=r"batch_size \(6, the global batch size\) must be divisible by process_count \(4\)"):
        _mk(ds, 6, train=True, process_count=4)
    with pytest.raises(ValueError, match="process_index must be"):
        _mk(ds, 4, train=True, process_index=4, process_count=4)
    with pytest.raises(ValueError, match="exceeds the 10 examples"):
        _mk(ds, 11, train=True)
    with pytest.raises(ValueError, match="batch_size must be"):
        _mk(ds, 0, train=False)
    with pytest.raises(ValueError, match="seed must be"):
        _mk(ds, 2, train=True, seed=-1)
    with pytest.raises(ValueError, match="prefetch must be"):
        _mk(ds, 2, train=True, prefetch=-1)
    with pytest.raises(ValueError, match="batch must be"):
        _mk(ds, 2, train=True).get(0, 5)
    with pytest.raises(ValueError, match="Dataset"):
        batches(np.zeros((4, 2, 2, 1)), 2, train=True)  # type: ignore[arg-type]


def test_train_and_augment_must_be_bools() -> None:
    # A string such as "False" is refused, not read as bool("False") == True (shuffled, augmented).
    ds = _ds(16, augment=True)
    for value in ("False", "false", 0, 1, None):
        with pytest.raises(ValueError, match="train must be True or False"):
            _mk(ds, 4, train=value)
        with pytest.raises(ValueError, match="train must be True or False"):
            Batches(ds, 4, train=value)  # type: ignore[arg-type]
    for value in ("no", "False", 0, 1):
        with pytest.raises(ValueError, match="augment must be True or False"):
            _mk(ds, 4, train=True, augment=value)
        with pytest.raises(ValueError, match="augment must be True or False"):
            Batches(ds, 4, train=False, augment=value)  # type: ignore[arg-type]
    assert _mk(ds, 4, train=np.bool_(True)).train is True
    assert _mk(ds, 4, train=np.bool_(False)).train is False
    assert _mk(ds, 4, train=True, augment=None).augment is True  # the dataset's default
    assert _mk(ds, 4, train=True, augment=np.bool_(False)).augment is False


def test_seed_and_epoch_must_fit_32_bits() -> None:
    ds = _ds(64)
    # numpy splits a larger integer into 32-bit words: seed 2**32 at epoch 0 would shuffle as
    # seed 0 at epoch 1, and seed S as seed S % 2**32 at epoch S >> 32.
    for seed in (2**32, 1_700_000_000_123, 2**70):
        with pytest.raises(ValueError, match=r"seed must be an integer in 0\.\.2\*\*32 - 1"):
            _mk(ds, 8, train=True, seed=seed)
    b = _mk(ds, 8, train=True, seed=2**32 - 1)
    with pytest.raises(ValueError, match="epoch must be an integer >= 0 and < 4294967296"):
        b.indices(2**32, 0)
    with pytest.raises(ValueError, match="epoch must be"):
        b.epoch(2**32)
    # Seeds below 2**32 keep their shuffles: the permutation is still PCG64 seeded by (tag, seed, epoch).
    for seed, epoch in ((0, 0), (7, 3), (2**32 - 1, 2**32 - 1)):
        perm = np.random.default_rng([0x5348_5546, seed, epoch]).permutation(64)
        np.testing.assert_array_equal(_mk(ds, 8, train=True, seed=seed).indices(epoch, 1), perm[8:16])


# --- robustness ----------------------------------------------------------------------------------


def test_reader_errors_propagate_and_abandoned_epochs_stop_their_threads() -> None:
    ds = _ds(40)

    class Broken(ArrayReader):
        def get(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            if 3 in indices:
                raise RuntimeError("disk on fire")
            return super().get(indices)

    broken = Dataset(ds.name, ds.split, ds.num_classes, ds.image_shape, ds.mean, ds.std, False,
                     reader=Broken(*ds.arrays()))  # fmt: skip
    with pytest.raises(RuntimeError, match="disk on fire"):
        _all(_mk(broken, 4, train=False, prefetch=2), 0)
    before = threading.active_count()
    it = _mk(ds, 4, train=True, prefetch=3).epoch(0)
    next(it)
    it.close()  # abandoning an epoch must not leave threads behind
    deadline = time.monotonic() + 30
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() <= before


def test_normalize() -> None:
    x = np.arange(24, dtype=np.uint8).reshape(2, 2, 2, 3) * 10
    got = normalize(x, (0.1, 0.5, 0.9), (0.2, 0.3, 0.4))
    want = (x / 255.0 - np.array([0.1, 0.5, 0.9])) / np.array([0.2, 0.3, 0.4])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    # A non-contiguous input is normalised correctly too.
    np.testing.assert_allclose(normalize(np.asfortranarray(x), (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)), want, rtol=1e-6, atol=1e-6)


def test_normalize_takes_one_number_or_one_per_channel() -> None:
    rgb = np.arange(24, dtype=np.uint8).reshape(2, 2, 2, 3) * 10
    grey = rgb[..., :1]
    # One number applies to every channel.
    np.testing.assert_allclose(normalize(rgb, 0.5, 0.25), (rgb / 255.0 - 0.5) / 0.25, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(normalize(grey, 0.5, 0.25), (grey / 255.0 - 0.5) / 0.25, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(normalize(rgb, 0.5, (0.2, 0.3, 0.4)),
                               (rgb / 255.0 - 0.5) / np.array([0.2, 0.3, 0.4]), rtol=1e-6, atol=1e-6)  # fmt: skip
    # A count that is neither 1 number nor C used to fail inside numpy or be silently truncated.
    with pytest.raises(ValueError, match=r"mean must be one finite number or 3 \(one per channel"):
        normalize(rgb, [0.5], [0.25, 0.25, 0.25])
    with pytest.raises(ValueError, match=r"std must be one finite number or 1 \(one per channel"):
        normalize(grey, [0.5], [0.25, 1.0, 1.0])
    with pytest.raises(ValueError, match="mean must be one finite number or 1"):
        normalize(grey, [[0.5]], [0.25])
    with pytest.raises(ValueError, match="mean must be one finite number or 1"):
        normalize(grey, "0.5", [0.25])
    with pytest.raises(ValueError, match="std must be one finite number or 1"):
        normalize(grey, 0.5, float("nan"))
    with pytest.raises(ValueError, match=r"std must be > 0"):
        normalize(rgb, 0.5, (0.2, 0.0, 0.4))


def test_a_linear_model_learns_synthetic_data_through_the_pipeline() -> None:
    """Softmax regression, 200 SGD steps on pipeline batches: test accuracy far above chance (10%)."""
    train = batches(load("synthetic", "train"), 64, train=True, seed=0, process_index=0, process_count=1)
    test = batches(load("synthetic", "test"), 100, train=False, process_index=0, process_count=1)
    w, bias = np.zeros((784, 10), np.float32), np.zeros(10, np.float32)

    def accuracy() -> float:
        hits = total = 0.0
        for batch in test.epoch(0):
            pred = (batch["image"].reshape(len(batch["label"]), -1) @ w + bias).argmax(1)
            hits += float(((pred == batch["label"]) * batch["mask"]).sum())
            total += float(batch["mask"].sum())
        return hits / total

    before, step = accuracy(), 0
    for epoch in range(10):
        for batch in train.epoch(epoch):
            x = batch["image"].reshape(64, -1)
            z = x @ w + bias
            p = np.exp(z - z.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            p[np.arange(64), batch["label"]] -= 1.0
            w -= 0.01 * x.T @ p / 64
            bias -= 0.01 * p.mean(0)
            step += 1
        if step >= 200:
            break
    assert before < 0.3 and accuracy() > 0.6
