"""The input pipeline: shuffled, augmented, normalised, prefetched, per-host batches.

:func:`batches` turns a :class:`~sparsejax.data.Dataset` into a
:class:`Batches`, whose :meth:`Batches.epoch` yields numpy batches
``{'image': float32 [b, H, W, C], 'label': int32 [b], 'mask': float32 [b]}``.

Everything is a function of ``(seed, epoch, batch index)``, never of what ran
before, so

* every host computes the same *global* batch and materialises only its own
  rows ``[process_index * b : (process_index + 1) * b]`` (``b`` the local batch
  size): N processes together see exactly the batches one process sees;
* a run resumed at batch ``k`` of an epoch (``epoch(e, start=k)``) continues
  exactly as if it had not stopped.

Training (``train=True``): a fresh permutation of the examples per epoch
(``numpy`` PCG64 seeded by ``(seed, epoch)``), the last incomplete batch
dropped, and, when augmenting, a random crop of the image zero-padded by 4
pixels plus a random horizontal flip, drawn per example from
``(seed, epoch, batch index)``. Evaluation (``train=False``): the dataset in
order, no augmentation, the last batch padded to full size with ``mask = 0``
on the padding rows, so batch shapes never change.

Normalisation maps a ``uint8`` pixel :math:`v` of channel :math:`c` to

.. math::

  \\frac{v / 255 - \\mu_c}{\\sigma_c}

with the dataset's per-channel ``mean`` and ``std``. All of it is vectorised
numpy; a background thread (or a few, for datasets read from disk) prepares the
next ``prefetch`` batches while the caller trains on the current one.
"""

from __future__ import annotations

import collections
import itertools
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from sparsejax._validation import check_number
from sparsejax.data.datasets import _SEED_LIMIT, Dataset, _bool_option, _seed_option

__all__ = ["PAD", "Batches", "batches", "crop_and_flip", "normalize"]

PAD = 4
"""Zero padding (pixels per side) before the random crop."""

_PERMUTATION_TAG = 0x5348_5546  # separate random streams for shuffling and augmentation
_AUGMENT_TAG = 0x4155_474D


def normalize(
    images: np.ndarray, mean: float | Sequence[float], std: float | Sequence[float]
) -> np.ndarray:
    """``uint8`` images to ``float32`` ``(v / 255 - mean) / std``, per channel.

    Args:
      images: ``uint8`` ``[..., C]``.
      mean: ``C`` means on the 0..1 scale, or one number for every channel.
      std: ``C`` standard deviations (> 0) on the 0..1 scale, or one number
        for every channel.

    Returns:
      ``float32`` array of the same shape.

    Raises:
      ValueError: ``images`` without a channel axis, ``mean`` or ``std``
        neither a number nor ``C`` numbers, or a ``std`` that is not > 0.

    Example:
      >>> import numpy as np
      >>> from sparsejax.data import normalize
      >>> normalize(np.array([[0, 255]], np.uint8)[..., None], [0.5], [0.25]).ravel()
      array([-2.,  2.], dtype=float32)
    """
    images = np.asarray(images)
    if images.ndim == 0:
        raise ValueError("images must have a channel axis ([..., C]), got a scalar")
    c = images.shape[-1]
    mean, std = _per_channel("mean", mean, c), _per_channel("std", std, c)
    if not np.all(std > 0):
        raise ValueError(f"std must be > 0, got {std.tolist()}")
    scale = (1.0 / (255.0 * std)).astype(np.float32)
    offset = (-mean / std).astype(np.float32)
    return _affine(images, scale, offset)


def _per_channel(name: str, value: float | Sequence[float], channels: int) -> np.ndarray:
    """``value`` as ``channels`` finite float64 numbers; one number is used for every channel."""
    try:
        arr = np.asarray(value)
    except ValueError:  # a ragged sequence
        arr = np.asarray(None)
    if (
        arr.dtype.kind not in "iuf"
        or arr.ndim > 1
        or (arr.ndim == 1 and len(arr) != channels)
        or not np.all(np.isfinite(arr))
    ):
        raise ValueError(
            f"{name} must be one finite number or {channels} (one per channel of images [..., {channels}]), "
            f"got {value!r}"
        )
    return np.broadcast_to(arr.astype(np.float64), (channels,))


def crop_and_flip(
    images: np.ndarray,
    offset_y: np.ndarray,
    offset_x: np.ndarray,
    flip: np.ndarray,
    pad: int = PAD,
) -> np.ndarray:
    """Crops each image out of its zero-padded copy and optionally mirrors it, vectorised.

    Image ``i`` becomes ``padded[i, oy:oy+H, ox:ox+W]`` (``padded`` has
    ``pad`` zero pixels on each side), flipped left-right where ``flip[i]``.
    ``offset = pad`` with no flip is the identity.

    Args:
      images: ``[n, H, W, C]``.
      offset_y: ``[n]`` integers in ``0..2*pad``.
      offset_x: ``[n]`` integers in ``0..2*pad``.
      flip: ``[n]`` booleans.
      pad: zero padding per side, an integer >= 0.

    Returns:
      The augmented images, same shape and dtype.

    Raises:
      ValueError: ``images`` not 4-d, offsets or ``flip`` not ``[n]``, offsets
        not integers in ``0..2*pad``, or a bad ``pad``.

    Example:
      >>> import numpy as np
      >>> from sparsejax.data import crop_and_flip
      >>> x = np.arange(4, dtype=np.uint8).reshape(1, 1, 4, 1)
      >>> crop_and_flip(x, np.array([1]), np.array([2]), np.array([True]), pad=1)[0, :, :, 0]
      array([[0, 3, 2, 1]], dtype=uint8)
    """
    pad = _check_int("pad", pad, ge=0)
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be [n, H, W, C], got shape {images.shape}")
    n, h, w, c = images.shape
    offset_y = _check_offsets("offset_y", offset_y, n, pad)
    offset_x = _check_offsets("offset_x", offset_x, n, pad)
    flip = np.asarray(flip)
    if flip.shape != (n,):
        raise ValueError(f"flip must be [n={n}] booleans (one per image), got shape {flip.shape}")
    flip = flip.astype(bool, copy=False)
    # Rows of the zero-padded images with pixels flattened into (W + 2 pad) * C values:
    # every crop row is then one contiguous window of W * C values, so the gather
    # copies whole rows instead of single values.
    padded = np.zeros((n, h + 2 * pad, (w + 2 * pad) * c), images.dtype)
    padded[:, pad : pad + h, pad * c : (pad + w) * c] = images.reshape(n, h, w * c)
    windows = sliding_window_view(padded, w * c, axis=2)
    rows = offset_y[:, None] + np.arange(h)
    out = windows[np.arange(n)[:, None], rows, (offset_x * c)[:, None]]
    if flip.any():  # mirror whole pixels (C values at a time, as one void item)
        pixels = out.view(np.dtype((np.void, c * images.dtype.itemsize)))
        pixels[flip] = pixels[flip][:, :, ::-1]
    return out.reshape(n, h, w, c)


def _check_offsets(name: str, offsets: np.ndarray, n: int, pad: int) -> np.ndarray:
    """``offsets`` as ``[n]`` integers in ``0..2*pad``, else a ``ValueError``."""
    offsets = np.asarray(offsets)
    if offsets.shape != (n,) or not np.issubdtype(offsets.dtype, np.integer):
        raise ValueError(
            f"{name} must be [n={n}] integers (one per image), got {offsets.dtype} of shape {offsets.shape}"
        )
    if n and (offsets.min() < 0 or offsets.max() > 2 * pad):
        raise ValueError(
            f"{name} must be in 0..{2 * pad} (0..2*pad for pad={pad}), "
            f"got values from {offsets.min()} to {offsets.max()}"
        )
    return offsets.astype(np.intp, copy=False)


def _affine(images: np.ndarray, scale: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """``images * scale + offset`` in float32, per channel (the last axis).

    Per-channel constants are tiled along the width so numpy's inner loop runs
    over W * C values rather than C (10x faster for RGB).
    """
    out = np.asarray(images).astype(np.float32, order="C")  # C order: the reshapes below are views
    c = out.shape[-1]
    if c == 1:
        out *= scale[0]
        out += offset[0]
        return out
    w = out.shape[-2] if out.ndim >= 2 else 1
    rows = out.reshape(-1, w * c)
    rows *= np.tile(scale, w)
    rows += np.tile(offset, w)
    return out


def _check_int(name: str, value: object, **bounds: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    check_number(name, value, integer=True, **bounds)
    return int(value)


def _check_epoch(epoch: object) -> int:
    # Below 2**32, like the seed: a larger epoch would be split into two 32-bit words of the
    # random streams' keys and repeat another (epoch, batch)'s augmentation.
    return _check_int("epoch", epoch, ge=0, lt=_SEED_LIMIT)


class Batches:
    """Batches of a dataset, epoch by epoch; see :func:`batches`.

    ``len(b)`` is the number of batches per epoch; :meth:`epoch` yields them.

    Attributes:
      dataset: the :class:`~sparsejax.data.Dataset`.
      batch_size: the global batch size (all processes together).
      local_batch_size: this process's rows of each batch.
      train: shuffle, drop the remainder and (maybe) augment; else evaluate in order with padding.
      seed: the seed of shuffling and augmentation.
      augment: whether random crop + flip is applied.
      process_index: this process's index.
      process_count: number of processes.
      prefetch: batches prepared ahead in the background (0: none).
      num_workers: threads preparing batches.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        *,
        train: bool,
        seed: int = 0,
        augment: bool | None = None,
        process_index: int = 0,
        process_count: int = 1,
        prefetch: int = 2,
        num_workers: int | None = None,
    ) -> None:
        if not isinstance(dataset, Dataset):
            raise ValueError(f"dataset must be a sparsejax.data.Dataset, got {type(dataset).__name__}")
        self.batch_size = _check_int("batch_size", batch_size, ge=1)
        self.process_count = _check_int("process_count", process_count, ge=1)
        self.process_index = _check_int("process_index", process_index, ge=0, lt=self.process_count)
        self.train = _bool_option("train", train, None)
        self.seed = _seed_option(seed)
        augment = _bool_option("augment", augment, dataset.augment)
        self.prefetch = _check_int("prefetch", prefetch, ge=0)
        if num_workers is None:
            num_workers = 1 if dataset.in_memory else min(8, os.cpu_count() or 1)
        self.num_workers = _check_int("num_workers", num_workers, ge=1)
        if self.batch_size % self.process_count:
            raise ValueError(
                f"batch_size ({self.batch_size}, the global batch size) must be divisible by "
                f"process_count ({self.process_count})"
            )
        n = len(dataset)
        if n == 0:
            raise ValueError(f"dataset {dataset.name!r} ({dataset.split}) is empty")
        if self.train and self.batch_size > n:
            raise ValueError(
                f"batch_size ({self.batch_size}) exceeds the {n} examples of {dataset.name!r} "
                f"({dataset.split}); training drops incomplete batches, so no batch would remain"
            )
        self.dataset = dataset
        self.augment = augment and self.train
        self.local_batch_size = self.batch_size // self.process_count
        self._num_examples = n
        self._num_batches = n // self.batch_size if self.train else -(-n // self.batch_size)
        self._lo = self.process_index * self.local_batch_size
        self._hi = self._lo + self.local_batch_size
        c = dataset.image_shape[2]
        std = np.asarray(dataset.std, np.float64)
        self._scale = (1.0 / (255.0 * std)).astype(np.float32).reshape(c)
        self._offset = (-np.asarray(dataset.mean, np.float64) / std).astype(np.float32).reshape(c)
        self._perm_cache: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._num_batches

    @property
    def num_examples(self) -> int:
        """Examples in the dataset (training uses ``len(self) * batch_size`` of them per epoch)."""
        return self._num_examples

    def __repr__(self) -> str:
        return (
            f"Batches({self.dataset.name}/{self.dataset.split}, batch_size={self.batch_size} "
            f"(local {self.local_batch_size}), {len(self)} per epoch, train={self.train}, "
            f"augment={self.augment}, process {self.process_index}/{self.process_count})"
        )

    def _permutation(self, epoch: int) -> np.ndarray:
        with self._lock:
            perm = self._perm_cache.get(epoch)
            if perm is None:
                rng = np.random.default_rng([_PERMUTATION_TAG, self.seed, epoch])
                perm = rng.permutation(self._num_examples)
                self._perm_cache[epoch] = perm
                while len(self._perm_cache) > 2:
                    self._perm_cache.popitem(last=False)
            return perm

    def indices(self, epoch: int, batch: int) -> np.ndarray:
        """The example indices of a global batch (``-1`` marks evaluation padding).

        Args:
          epoch: the epoch, ``0 <= epoch < 2**32``.
          batch: the batch within the epoch, ``0 <= batch < len(self)``.

        Returns:
          ``int64`` ``[batch_size]``.
        """
        return self._indices(*self._check_position(epoch, batch))

    def _check_position(self, epoch: int, batch: int) -> tuple[int, int]:
        return _check_epoch(epoch), _check_int("batch", batch, ge=0, lt=max(len(self), 1))

    def _indices(self, epoch: int, batch: int) -> np.ndarray:
        start = batch * self.batch_size
        if self.train:
            return self._permutation(epoch)[start : start + self.batch_size]
        out = np.full((self.batch_size,), -1, np.int64)
        idx = np.arange(start, min(start + self.batch_size, self._num_examples))
        out[: len(idx)] = idx
        return out

    def get(self, epoch: int, batch: int) -> dict[str, np.ndarray]:
        """This process's rows of one batch, computed synchronously (what :meth:`epoch` yields).

        Args:
          epoch: the epoch, ``0 <= epoch < 2**32``.
          batch: the batch within the epoch, ``0 <= batch < len(self)``.

        Returns:
          ``{'image': float32 [local, H, W, C], 'label': int32 [local], 'mask': float32 [local]}``.
        """
        return self._get(*self._check_position(epoch, batch))

    def _get(self, epoch: int, batch: int) -> dict[str, np.ndarray]:
        idx = self._indices(epoch, batch)[self._lo : self._hi]
        valid = idx >= 0
        local = self.local_batch_size
        if valid.all():
            data = self.dataset[idx]
            images, labels = data["image"], data["label"]
            mask = np.ones((local,), np.float32)
        else:
            h, w, c = self.dataset.image_shape
            images = np.zeros((local, h, w, c), np.uint8)
            labels = np.zeros((local,), np.int32)
            if valid.any():
                data = self.dataset[idx[valid]]
                images[valid], labels[valid] = data["image"], data["label"]
            mask = valid.astype(np.float32)
        if self.augment:
            rng = np.random.default_rng([_AUGMENT_TAG, self.seed, epoch, batch])
            offsets = rng.integers(0, 2 * PAD + 1, size=(2, self.batch_size))
            flips = rng.random(self.batch_size) < 0.5
            sl = slice(self._lo, self._hi)
            images = crop_and_flip(images, offsets[0, sl], offsets[1, sl], flips[sl], PAD)
        out = _affine(images, self._scale, self._offset)
        if not valid.all():
            out[~valid] = 0.0
        return {"image": out, "label": labels.astype(np.int32, copy=False), "mask": mask}

    def epoch(self, epoch: int, start: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """Yields batches ``start, start + 1, ..., len(self) - 1`` of an epoch.

        Args:
          epoch: the epoch, ``0 <= epoch < 2**32``; it seeds the shuffling and augmentation.
          start: the first batch, to resume mid-epoch (``0 <= start <= len(self)``).

        Returns:
          An iterator of ``{'image', 'label', 'mask'}`` dicts (see :func:`batches`).
        """
        epoch = _check_epoch(epoch)
        start = _check_int("start", start, ge=0, le=len(self))
        ids = range(start, len(self))
        if self.prefetch == 0:
            return (self._get(epoch, b) for b in ids)
        return self._prefetched(epoch, ids)

    def _prefetched(self, epoch: int, ids: range) -> Iterator[dict[str, np.ndarray]]:
        executor = ThreadPoolExecutor(self.num_workers, thread_name_prefix="sparsejax-data")
        todo = iter(ids)
        pending = collections.deque(
            executor.submit(self._get, epoch, b) for b in itertools.islice(todo, self.prefetch)
        )
        try:
            while pending:
                future = pending.popleft()
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append(executor.submit(self._get, epoch, nxt))
                yield future.result()
        finally:
            for future in pending:
                future.cancel()
            executor.shutdown(wait=False, cancel_futures=True)


def batches(
    dataset: Dataset,
    batch_size: int,
    *,
    train: bool,
    seed: int = 0,
    augment: bool | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
    prefetch: int = 2,
    num_workers: int | None = None,
) -> Batches:
    """The input pipeline over a dataset: see :mod:`sparsejax.data.pipeline`.

    Each batch is ``{'image': float32 [local, H, W, C]`` normalised with the
    dataset's mean and std, ``'label': int32 [local]``, ``'mask': float32
    [local]}`` (1 for real examples, 0 for evaluation padding), where
    ``local = batch_size // process_count``.

    Args:
      dataset: the :class:`~sparsejax.data.Dataset`.
      batch_size: the GLOBAL batch size (all processes together); must be
        divisible by ``process_count``.
      train: ``True``: shuffle per epoch from ``(seed, epoch)``, drop the last
        incomplete batch, augment; ``False``: in order, last batch padded.
        A bool (Python or numpy).
      seed: seed of shuffling and augmentation, an integer in ``0..2**32 - 1``.
      augment: random crop (zero padding 4) + horizontal flip when training,
        a bool; ``None`` (default): ``dataset.augment`` (CIFAR/ImageNet yes,
        MNIST-like no). Ignored when ``train=False``.
      process_index: this process's index (default ``jax.process_index()``).
      process_count: number of processes (default ``jax.process_count()``).
      prefetch: batches prepared ahead by background threads (0: synchronous).
      num_workers: threads preparing batches (default 1 for in-memory data,
        up to 8 for data read from disk).

    Returns:
      A :class:`Batches`: ``len()`` batches per epoch, ``.epoch(e, start=0)``.

    Raises:
      ValueError: a bad size, index or seed, a ``train`` or ``augment`` that is
        not a bool, ``batch_size`` not divisible by ``process_count``, or
        (training) larger than the dataset.

    Example:
      >>> from sparsejax.data import load, batches
      >>> ds = load('synthetic', 'test', num_examples=10)
      >>> b = batches(ds, 4, train=False, process_index=0, process_count=1)
      >>> len(b), [batch['mask'].tolist() for batch in b.epoch(0)][-1]
      (3, [1.0, 1.0, 0.0, 0.0])
      >>> train = batches(load('synthetic', 'train', num_examples=10), 4, train=True,
      ...                 process_index=0, process_count=1)
      >>> first = next(iter(train.epoch(0)))
      >>> first['image'].shape, first['image'].dtype, first['label'].dtype, len(train)
      ((4, 28, 28, 1), dtype('float32'), dtype('int32'), 2)
    """
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    return Batches(
        dataset, batch_size, train=train, seed=seed, augment=augment,
        process_index=process_index, process_count=process_count,
        prefetch=prefetch, num_workers=num_workers,
    )  # fmt: skip
