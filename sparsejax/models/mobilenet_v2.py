"""MobileNetV2: inverted residual blocks with linear bottlenecks."""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Literal

import jax
from flax import nnx

from sparsejax.models._layers import (
    BN_MOMENTUM,
    ConvBN,
    check_input_shape,
    check_num_classes,
    dense_init,
    global_avg_pool,
)
from sparsejax.models.groups import Gates, PrunableGroup, PrunableModel, UnitAxis, apply_gate

__all__ = ["MOBILENET_V2_SETTINGS", "InvertedResidual", "MobileNetV2", "mobilenet_v2"]

#: ``(expansion t, channels c, repeats n, stride s)`` of each stage (the paper's Table 2).
MOBILENET_V2_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _divisible(v: float, divisor: int = 8) -> int:
    """Rounds ``v`` to a multiple of ``divisor``, never more than 10% below ``v``."""
    rounded = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * v else rounded


class InvertedResidual(nnx.Module):
    """1x1 expansion conv-BN-ReLU6 (when ``t > 1``) → 3x3 depthwise conv-BN-ReLU6
    → 1x1 projection conv-BN (linear), with a residual when the shape is kept.

    Variables: ``expand`` (absent when ``t == 1``), ``depthwise``, ``project``,
    each ``conv/kernel`` and ``bn/*``.
    """

    def __init__(self, in_features: int, out_features: int, stride: int, expansion: int, *,
                 kernel_init: nnx.Initializer | None, bn_momentum: float, rngs: nnx.Rngs) -> None:
        kw = dict(kernel_init=kernel_init, bn_momentum=bn_momentum, rngs=rngs)
        hidden = int(round(in_features * expansion))
        self.expand = ConvBN(in_features, hidden, 1, **kw) if expansion != 1 else None
        self.depthwise = ConvBN(hidden, hidden, 3, stride, groups=hidden, **kw)
        self.project = ConvBN(hidden, out_features, 1, **kw)
        self.residual = stride == 1 and in_features == out_features

    def __call__(self, x: jax.Array, prefix: str, gates: Gates | None,
                 capture: MutableMapping[str, jax.Array] | None) -> jax.Array:
        h = x if self.expand is None else nnx.relu6(self.expand(x))
        h = nnx.relu6(self.depthwise(h))
        h = apply_gate(h, f"{prefix}/depthwise", gates, capture)
        y = self.project(h)
        return x + y if self.residual else y


class MobileNetV2(PrunableModel):
    """MobileNetV2: a stride-2 3x3 conv-BN-ReLU6 stem with 32 channels, the
    inverted-residual stages of :data:`MOBILENET_V2_SETTINGS`, a 1x1
    conv-BN-ReLU6 ``head`` with 1280 channels, global average pooling, dropout
    and a dense ``classifier``.

    With ``stem="cifar"`` the stem and the second stage have stride 1 (the
    usual CIFAR adaptation; same parameters). 3,504,872 parameters for
    ImageNet (1000 classes, width 1.0), as torchvision's implementation
    (the paper's Table 4: 3.4M); 2,236,682 with 10 classes.

    Prunable groups: the expansion (hidden) channels of every block,
    ``blocks/{i}/depthwise`` — producers the expansion conv-BN and the
    depthwise conv-BN (for the first block, which has no expansion conv, the
    stem conv-BN instead; that group exists only while the block has no
    residual), consumer the projection conv — and ``head`` (read by the
    classifier). Gates act on the depthwise output after its ReLU6.

    Args:
      num_classes: size of the output.
      in_channels: channels of the input.
      stem: ``"imagenet"`` or ``"cifar"``.
      width_mult: channel multiplier (channels rounded to multiples of 8).
      settings: the stages, ``(t, c, n, s)`` each.
      head_features: channels of the last 1x1 convolution (default
        ``1280 * max(1, width_mult)``, rounded to a multiple of 8).
      dropout_rate: dropout before the classifier in training mode (0.2 as in
        the TF-Slim and torchvision implementations).
      kernel_init: initializer of the conv kernels (default He normal; the
        classifier is LeCun normal unless this is given).
      bn_momentum: BatchNorm running-average momentum.
      rngs: Flax random streams.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from sparsejax.models import MobileNetV2
      >>> model = MobileNetV2(10, stem='cifar', settings=((1, 8, 1, 1), (6, 8, 1, 1)),
      ...                     head_features=32, rngs=nnx.Rngs(0))
      >>> model.eval()
      >>> model(jnp.ones((2, 32, 32, 3))).shape
      (2, 10)
      >>> [g.name for g in model.prunable_groups()]
      ['blocks/0/depthwise', 'blocks/1/depthwise', 'head']

    References:
      Sandler, Howard, Zhu, Zhmoginov, Chen. "MobileNetV2: Inverted Residuals
      and Linear Bottlenecks", CVPR 2018.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        *,
        in_channels: int = 3,
        stem: Literal["cifar", "imagenet"] = "imagenet",
        width_mult: float = 1.0,
        settings: Sequence[tuple[int, int, int, int]] = MOBILENET_V2_SETTINGS,
        head_features: int | None = None,
        dropout_rate: float = 0.2,
        kernel_init: nnx.Initializer | None = None,
        bn_momentum: float = BN_MOMENTUM,
        rngs: nnx.Rngs,
    ) -> None:
        check_num_classes(num_classes)
        if stem not in ("cifar", "imagenet"):
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must lie in [0, 1), got {dropout_rate}")
        if not settings or any(len(s) != 4 or min(s) < 1 for s in settings):
            raise ValueError(
                f"settings must be non-empty (t, c, n, s) tuples of positive ints, got {settings}"
            )
        kw = dict(kernel_init=kernel_init, bn_momentum=bn_momentum, rngs=rngs)
        c = _divisible(32 * width_mult)
        self.stem = ConvBN(in_channels, c, 3, 1 if stem == "cifar" else 2, **kw)
        blocks = []
        for k, (t, ch, n, s) in enumerate(settings):
            out = _divisible(ch * width_mult)
            if stem == "cifar" and k == 1:
                s = 1
            for b in range(n):
                blocks.append(InvertedResidual(c, out, s if b == 0 else 1, t, **kw))
                c = out
        self.blocks = nnx.List(blocks)
        last = head_features or _divisible(1280 * max(1.0, width_mult))
        self.head = ConvBN(c, last, 1, **kw)
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs) if dropout_rate > 0 else None
        dense = dense_init(kernel_init)
        self.classifier = nnx.Linear(last, num_classes, rngs=rngs, **dense)

    def __call__(
        self,
        x: jax.Array,
        *,
        gates: Gates | None = None,
        capture: MutableMapping[str, jax.Array] | None = None,
    ) -> jax.Array:
        """Returns the logits of an NHWC batch ``x``.

        ``gates`` and ``capture`` are described in :mod:`sparsejax.models.groups`.
        """
        self.check_gates(gates)
        x = nnx.relu6(self.stem(x))
        for i, blk in enumerate(self.blocks):
            x = blk(x, f"blocks/{i}", gates, capture)
        x = global_avg_pool(nnx.relu6(self.head(x)))
        x = apply_gate(x, "head", gates, capture)
        if self.dropout is not None:
            x = self.dropout(x)
        return self.classifier(x)

    def prunable_groups(self) -> tuple[PrunableGroup, ...]:
        """The expansion channels of every block and the head (see the class docstring)."""
        groups = []
        for i, blk in enumerate(self.blocks):
            p = f"blocks/{i}"
            if blk.expand is not None:
                producers = blk.expand.producer_axes(f"{p}/expand")
            elif i == 0 and not blk.residual:
                producers = self.stem.producer_axes("stem")
            else:  # the hidden channels are the residual stream: not prunable alone
                continue
            groups.append(PrunableGroup(
                f"{p}/depthwise", blk.depthwise.out_features,
                producers + blk.depthwise.producer_axes(f"{p}/depthwise"),
                (UnitAxis(f"{p}/project/conv/kernel", -2),),
            ))
        groups.append(PrunableGroup("head", self.head.out_features, self.head.producer_axes("head"),
                                    (UnitAxis("classifier/kernel", 0),)))
        return tuple(groups)


def mobilenet_v2(num_classes: int = 10, input_shape: Sequence[int] = (32, 32, 3), *,
                 stem: Literal["cifar", "imagenet"] | None = None, rngs: nnx.Rngs,
                 **kwargs) -> MobileNetV2:
    """Builds :class:`MobileNetV2`; ``stem=None`` picks ``"imagenet"`` for inputs of at
    least 128 pixels on the shorter side and ``"cifar"`` otherwise.

    Example:
      >>> from flax import nnx
      >>> from sparsejax.models import mobilenet_v2, param_count
      >>> param_count(nnx.eval_shape(lambda: mobilenet_v2(1000, (224, 224, 3), rngs=nnx.Rngs(0))))
      3504872

    References:
      Sandler, Howard, Zhu, Zhmoginov, Chen. "MobileNetV2: Inverted Residuals
      and Linear Bottlenecks", CVPR 2018.
    """
    h, w, c = check_input_shape(input_shape, "mobilenet_v2")
    if stem is None:
        stem = "imagenet" if min(h, w) >= 128 else "cifar"
    return MobileNetV2(num_classes, in_channels=c, stem=stem, rngs=rngs, **kwargs)
