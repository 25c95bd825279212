"""A synthetic, learnable image-classification dataset for tests and examples.

Each class has a fixed random *template*: a smooth pattern (Gaussian noise on a
grid 4x coarser than the image, upsampled bilinearly) with zero mean and unit
standard deviation. An example of class :math:`c` is

.. math::

  x = \\operatorname{clip}\\Bigl(0.5 + 0.25\\,\\frac{a\\,T_c + \\sigma\\,\\varepsilon}
      {\\sqrt{\\mathbb{E}[a^2] + \\sigma^2}},\\ 0,\\ 1\\Bigr),

with a random amplitude :math:`a \\sim U(0.5, 1.5)`, pixel noise
:math:`\\varepsilon \\sim N(0, I)` and
:math:`\\sigma = \\text{noise}\\cdot\\sqrt{HWC / 784}` (``noise = 7`` by
default), stored as ``uint8`` (``round(255 x)``). Scaling the noise with the
image size keeps the difficulty about the same for every ``image_shape``: a
linear classifier reaches 75-90 % test accuracy (chance: ``1/num_classes``)
within about a hundred SGD steps, while any single pixel is mostly noise. The
templates depend only on ``seed`` (and the shape and class count), so the train
and test splits share a distribution; their examples are drawn from different
streams and differ. Pixel values have mean about 0.5 and standard deviation
about 0.24.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DEFAULT_NOISE", "DEFAULT_NUM_EXAMPLES", "synthetic_arrays"]

DEFAULT_NUM_EXAMPLES = {"train": 2048, "test": 512}
"""Examples per split when ``num_examples`` is not given."""

_TAG = 0x5EED_DA7A  # separates these random streams from the pipeline's
_SPLIT_IDS = {"train": 0, "test": 1}
DEFAULT_NOISE = 7.0
"""Noise level ``noise`` (the pixel-noise standard deviation relative to the template, at 784 values)."""


def _upsample(low: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling of ``[K, h, w, C]`` to ``[K, height, width, C]`` (align corners)."""
    _, h, w, _ = low.shape
    ys = np.linspace(0.0, h - 1, height)
    xs = np.linspace(0.0, w - 1, width)
    y0 = np.clip(np.floor(ys).astype(int), 0, max(h - 2, 0))
    x0 = np.clip(np.floor(xs).astype(int), 0, max(w - 2, 0))
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy = (ys - y0)[None, :, None, None]
    wx = (xs - x0)[None, None, :, None]
    top = low[:, y0][:, :, x0] * (1 - wx) + low[:, y0][:, :, x1] * wx
    bottom = low[:, y1][:, :, x0] * (1 - wx) + low[:, y1][:, :, x1] * wx
    return top * (1 - wy) + bottom * wy


def _templates(image_shape: tuple[int, int, int], num_classes: int, seed: int) -> np.ndarray:
    height, width, channels = image_shape
    rng = np.random.default_rng([_TAG, seed, num_classes, height, width, channels])
    low = rng.normal(size=(num_classes, max(2, height // 4), max(2, width // 4), channels))
    t = _upsample(low, height, width)
    t -= t.mean(axis=(1, 2, 3), keepdims=True)
    t /= t.std(axis=(1, 2, 3), keepdims=True) + 1e-12
    return t.astype(np.float32)


def synthetic_arrays(
    split: str,
    num_examples: int,
    image_shape: tuple[int, int, int] = (28, 28, 1),
    num_classes: int = 10,
    seed: int = 0,
    noise: float = DEFAULT_NOISE,
) -> tuple[np.ndarray, np.ndarray]:
    """The examples of a synthetic split (class templates plus noise), deterministically.

    Args:
      split: ``'train'`` or ``'test'`` (different examples, same templates).
      num_examples: number of examples, >= 1.
      image_shape: ``(height, width, channels)``, each >= 1.
      num_classes: number of classes, >= 2.
      seed: non-negative integer choosing the templates and the examples.
      noise: the noise level (see the module docstring); larger is harder.

    Returns:
      ``(images, labels)``: ``uint8`` ``[num_examples, *image_shape]`` and
      ``int32`` ``[num_examples]`` in ``0..num_classes-1`` (uniformly drawn).

    Example:
      >>> from sparsejax.data.synthetic import synthetic_arrays
      >>> x, y = synthetic_arrays('train', 6, image_shape=(8, 8, 3), num_classes=3)
      >>> x.shape, x.dtype, y.tolist()
      ((6, 8, 8, 3), dtype('uint8'), [2, 2, 0, 2, 1, 1])
    """
    if split not in _SPLIT_IDS:
        raise ValueError(f"split must be one of {sorted(_SPLIT_IDS)}, got {split!r}")
    templates = _templates(image_shape, num_classes, seed)
    rng = np.random.default_rng([_TAG, seed, num_classes, *image_shape, _SPLIT_IDS[split] + 1])
    labels = rng.integers(0, num_classes, size=num_examples).astype(np.int32)
    amplitude = rng.uniform(0.5, 1.5, size=(num_examples, 1, 1, 1)).astype(np.float32)
    eps = rng.standard_normal(size=(num_examples, *image_shape), dtype=np.float32)
    sigma = float(noise) * np.sqrt(np.prod(image_shape) / 784.0)
    scale = np.float32(0.25 / np.sqrt(13.0 / 12.0 + sigma**2))  # E[a^2] = 13/12 for U(0.5, 1.5)
    x = 0.5 + scale * (amplitude * templates[labels] + np.float32(sigma) * eps)
    images = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8, order="C")
    return images, labels
