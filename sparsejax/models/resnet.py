"""ResNets: CIFAR ResNet-20/32/56 and ResNet-18/34/50 with a CIFAR or ImageNet stem."""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from sparsejax.models._layers import (
    BN_MOMENTUM,
    ConvBN,
    check_input_shape,
    check_num_classes,
    dense_init,
    global_avg_pool,
    max_pool,
)
from sparsejax.models.groups import Gates, PrunableGroup, PrunableModel, UnitAxis, apply_gate

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "resnet18",
    "resnet20",
    "resnet32",
    "resnet34",
    "resnet50",
    "resnet56",
]

Stem = Literal["cifar", "imagenet"]


def _shortcut_a(x: jax.Array, stride: int, out_channels: int) -> jax.Array:
    """He et al.'s option A: subsample and zero-pad the channels (no parameters)."""
    if stride > 1:
        x = x[:, ::stride, ::stride, :]
    extra = out_channels - x.shape[-1]
    if extra:
        x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
    return x


def _projection(
    in_features: int, out: int, stride: int, shortcut: str, kw: dict
) -> ConvBN | None:
    """Option B's 1x1 conv-BN projection where the shape changes; ``None`` otherwise
    (identity, or option A's parameter-free shortcut)."""
    needs = stride != 1 or in_features != out
    return ConvBN(in_features, out, 1, stride, **kw) if needs and shortcut == "B" else None


def _add_residual(block: nnx.Module, x: jax.Array, y: jax.Array) -> jax.Array:
    """``relu(y + shortcut(x))`` for a block with ``shortcut`` and ``stride`` attributes."""
    if block.shortcut is not None:
        s = block.shortcut(x)
    else:
        s = _shortcut_a(x, block.stride, y.shape[-1])
    return nnx.relu(y + s)


class BasicBlock(nnx.Module):
    """Two 3x3 conv-BN layers and a residual connection (ResNet-18/34, CIFAR ResNets).

    Variables: ``conv1``, ``conv2`` (each ``conv/kernel`` and ``bn/*``), and
    ``shortcut`` (a 1x1 conv-BN, option B) where the shape changes. The
    prunable group ``{prefix}/conv1`` is conv1's output channels, read by conv2.
    """

    expansion = 1

    def __init__(self, in_features: int, planes: int, stride: int, *, shortcut: str,
                 kernel_init: nnx.Initializer | None, bn_momentum: float, rngs: nnx.Rngs) -> None:
        kw = dict(kernel_init=kernel_init, bn_momentum=bn_momentum, rngs=rngs)
        self.conv1 = ConvBN(in_features, planes, 3, stride, **kw)
        self.conv2 = ConvBN(planes, planes, 3, **kw)
        self.shortcut = _projection(in_features, planes, stride, shortcut, kw)
        self.stride = stride

    def __call__(self, x: jax.Array, prefix: str, gates: Gates | None,
                 capture: MutableMapping[str, jax.Array] | None) -> jax.Array:
        h = apply_gate(nnx.relu(self.conv1(x)), f"{prefix}/conv1", gates, capture)
        return _add_residual(self, x, self.conv2(h))

    def groups(self, prefix: str) -> list[PrunableGroup]:
        return [PrunableGroup(f"{prefix}/conv1", self.conv1.out_features,
                              self.conv1.producer_axes(f"{prefix}/conv1"),
                              (UnitAxis(f"{prefix}/conv2/conv/kernel", -2),))]


class Bottleneck(nnx.Module):
    """1x1 (reduce) → 3x3 (stride) → 1x1 (expand x4) conv-BN layers and a residual.

    The stride is on the 3x3 convolution (ResNet v1.5, as in torchvision).
    Prunable groups: ``{prefix}/conv1`` (read by conv2) and ``{prefix}/conv2``
    (read by conv3).
    """

    expansion = 4

    def __init__(self, in_features: int, planes: int, stride: int, *, shortcut: str,
                 kernel_init: nnx.Initializer | None, bn_momentum: float, rngs: nnx.Rngs) -> None:
        kw = dict(kernel_init=kernel_init, bn_momentum=bn_momentum, rngs=rngs)
        out = planes * self.expansion
        self.conv1 = ConvBN(in_features, planes, 1, **kw)
        self.conv2 = ConvBN(planes, planes, 3, stride, **kw)
        self.conv3 = ConvBN(planes, out, 1, **kw)
        self.shortcut = _projection(in_features, out, stride, shortcut, kw)
        self.stride = stride

    def __call__(self, x: jax.Array, prefix: str, gates: Gates | None,
                 capture: MutableMapping[str, jax.Array] | None) -> jax.Array:
        h = apply_gate(nnx.relu(self.conv1(x)), f"{prefix}/conv1", gates, capture)
        h = apply_gate(nnx.relu(self.conv2(h)), f"{prefix}/conv2", gates, capture)
        return _add_residual(self, x, self.conv3(h))

    def groups(self, prefix: str) -> list[PrunableGroup]:
        return [
            PrunableGroup(f"{prefix}/{a}", getattr(self, a).out_features,
                          getattr(self, a).producer_axes(f"{prefix}/{a}"),
                          (UnitAxis(f"{prefix}/{b}/conv/kernel", -2),))
            for a, b in (("conv1", "conv2"), ("conv2", "conv3"))
        ]


class ResNet(PrunableModel):
    """A residual network of basic or bottleneck blocks.

    Stem ``"cifar"``: a 3x3 stride-1 conv-BN-ReLU. Stem ``"imagenet"``: a 7x7
    stride-2 conv-BN-ReLU and a 3x3 stride-2 max pool. Then stages of blocks
    (the first block of each stage after the first has stride 2), global
    average pooling and a dense layer ``fc``. Convolutions have no bias.

    Variables: ``stem/conv/kernel``, ``stem/bn/*``, ``blocks/{i}/conv{k}/...``,
    ``blocks/{i}/shortcut/...``, ``fc/kernel|bias``; blocks are numbered
    through all stages.

    Prunable groups: the inner channels of every block, ``blocks/{i}/conv1``
    (and ``blocks/{i}/conv2`` for bottlenecks). The channels of the residual
    stream (stem, last conv of each block, shortcuts) are not prunable groups.
    Gates act after the inner BN-ReLU.

    Args:
      block: ``"basic"`` or ``"bottleneck"``.
      stage_sizes: number of blocks per stage.
      widths: planes of each stage (a bottleneck outputs 4x as many channels).
      num_classes: size of the output.
      in_channels: channels of the input.
      stem: ``"cifar"`` or ``"imagenet"``.
      stem_width: channels of the stem (default ``widths[0]``).
      shortcut: ``"A"`` (He et al.'s parameter-free subsample-and-zero-pad
        shortcut, used by the CIFAR ResNets of the paper) or ``"B"`` (1x1
        conv-BN projections where the shape changes).
      kernel_init: initializer of the conv kernels (default He normal; the
        dense layer is LeCun normal unless this is given).
      bn_momentum: BatchNorm running-average momentum.
      rngs: Flax random streams.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from sparsejax.models import ResNet
      >>> model = ResNet('basic', (1, 1), (8, 16), 10, shortcut='A', rngs=nnx.Rngs(0))
      >>> model(jnp.ones((2, 32, 32, 3))).shape
      (2, 10)
      >>> [g.name for g in model.prunable_groups()]
      ['blocks/0/conv1', 'blocks/1/conv1']

    References:
      He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition",
      CVPR 2016.
    """

    def __init__(
        self,
        block: Literal["basic", "bottleneck"],
        stage_sizes: Sequence[int],
        widths: Sequence[int],
        num_classes: int = 10,
        *,
        in_channels: int = 3,
        stem: Stem = "cifar",
        stem_width: int | None = None,
        shortcut: Literal["A", "B"] = "B",
        kernel_init: nnx.Initializer | None = None,
        bn_momentum: float = BN_MOMENTUM,
        rngs: nnx.Rngs,
    ) -> None:
        check_num_classes(num_classes)
        blocks = {"basic": BasicBlock, "bottleneck": Bottleneck}
        if block not in blocks:
            raise ValueError(f"block must be 'basic' or 'bottleneck', got {block!r}")
        if stem not in ("cifar", "imagenet"):
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' or 'B', got {shortcut!r}")
        if len(stage_sizes) != len(widths) or not stage_sizes or min(stage_sizes) < 1:
            raise ValueError(
                f"stage_sizes and widths must be non-empty and of equal length, got "
                f"{tuple(stage_sizes)} and {tuple(widths)}"
            )
        cls = blocks[block]
        kw = dict(kernel_init=kernel_init, bn_momentum=bn_momentum, rngs=rngs)
        c = stem_width or widths[0]
        if stem == "cifar":
            self.stem = ConvBN(in_channels, c, 3, 1, **kw)
        else:
            self.stem = ConvBN(in_channels, c, 7, 2, padding=3, **kw)
        self.stem_pool = stem == "imagenet"
        layers = []
        for s, (n, planes) in enumerate(zip(stage_sizes, widths)):
            for b in range(n):
                stride = 2 if s > 0 and b == 0 else 1
                layers.append(cls(c, planes, stride, shortcut=shortcut, **kw))
                c = planes * cls.expansion
        self.blocks = nnx.List(layers)
        dense = dense_init(kernel_init)
        self.fc = nnx.Linear(c, num_classes, rngs=rngs, **dense)

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
        x = nnx.relu(self.stem(x))
        if self.stem_pool:
            x = max_pool(x, 3, 2, 1)
        for i, blk in enumerate(self.blocks):
            x = blk(x, f"blocks/{i}", gates, capture)
        return self.fc(global_avg_pool(x))

    def prunable_groups(self) -> tuple[PrunableGroup, ...]:
        """The inner channels of every block (see the class docstring)."""
        return tuple(g for i, blk in enumerate(self.blocks) for g in blk.groups(f"blocks/{i}"))


def _auto_stem(stem: Stem | None, input_shape: Sequence[int]) -> Stem:
    if stem is not None:
        return stem
    return "imagenet" if min(input_shape[0], input_shape[1]) >= 128 else "cifar"


def _cifar_resnet(depth: int, num_classes: int, input_shape: Sequence[int], rngs: nnx.Rngs,
                  kwargs: dict) -> ResNet:
    _, _, c = check_input_shape(input_shape, f"resnet{depth}")
    n = (depth - 2) // 6
    kwargs.setdefault("shortcut", "A")
    return ResNet("basic", (n, n, n), (16, 32, 64), num_classes, in_channels=c, rngs=rngs, **kwargs)


def _resnet(block: Literal["basic", "bottleneck"], stages: tuple[int, ...], name: str,
            num_classes: int, input_shape: Sequence[int], stem: Stem | None, rngs: nnx.Rngs,
            kwargs: dict) -> ResNet:
    shape = check_input_shape(input_shape, name)
    return ResNet(block, stages, (64, 128, 256, 512), num_classes, in_channels=shape[2],
                  stem=_auto_stem(stem, shape), rngs=rngs, **kwargs)


def resnet20(num_classes: int = 10, input_shape: Sequence[int] = (32, 32, 3), *,
             rngs: nnx.Rngs, **kwargs) -> ResNet:
    """CIFAR ResNet-20 (3 stages of 3 basic blocks, 16/32/64 channels, option-A shortcuts).

    269,722 parameters with 10 classes (the paper's Table 6: 0.27M).

    Example:
      >>> from flax import nnx
      >>> from sparsejax.models import resnet20, param_count
      >>> param_count(nnx.eval_shape(lambda: resnet20(rngs=nnx.Rngs(0))))
      269722

    References:
      He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition", CVPR 2016, §4.2.
    """
    return _cifar_resnet(20, num_classes, input_shape, rngs, kwargs)


def resnet32(num_classes: int = 10, input_shape: Sequence[int] = (32, 32, 3), *,
             rngs: nnx.Rngs, **kwargs) -> ResNet:
    """CIFAR ResNet-32 (5 basic blocks per stage; 464,154 parameters, paper: 0.46M).

    Example:
      >>> from flax import nnx
      >>> from sparsejax.models import resnet32
      >>> len(nnx.eval_shape(lambda: resnet32(rngs=nnx.Rngs(0))).blocks)
      15

    References:
      He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition", CVPR 2016, §4.2.
    """
    return _cifar_resnet(32, num_classes, input_shape, rngs, kwargs)


def resnet56(num_classes: int = 10, input_shape: Sequence[int] = (32, 32, 3), *,
             rngs: nnx.Rngs, **kwargs) -> ResNet:
    """CIFAR ResNet-56 (9 basic blocks per stage; 853,018 parameters, paper: 0.85M).

    Example:
      >>> from flax import nnx
      >>> from sparsejax.models import resnet56
      >>> len(nnx.eval_shape(lambda: resnet56(rngs=nnx.Rngs(0))).prunable_groups())
      27

    References:
      He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition", CVPR 2016, §4.2.
    """
    return _cifar_resnet(56, num_classes, input_shape, rngs, kwargs)


def resnet18(num_classes: int = 10, input_shape: Sequence[int] = (32, 32, 3), *,
             stem: Stem | None = None, rngs: nnx.Rngs, **kwargs) -> ResNet:
    """ResNet-18 (basic blocks 2-2-2-2, 64-512 channels, projection shortcuts).

    ``stem=None`` picks ``"imagenet"`` for inputs of at least 128 pixels on the
    shorter side and ``"cifar"`` otherwise. 11,173,962 parameters with the
    CIFAR stem and 10 classes; 11,689,512 with the ImageNet stem and 1000 classes
    (torchvision's count).

    Example:
      >>> from flax import nnx
      >>> from sparsejax.models import resnet18
      >>> nnx.eval_shape(lambda: resnet18(rngs=nnx.Rngs(0))).stem.conv.kernel.shape
      (3, 3, 3, 64)

    References:
      He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition", CVPR 2016.
    """
    return _resnet("basic", (2, 2, 2, 2), "resnet18", num_classes, input_shape, stem, rngs, kwargs)


def resnet34(num_classes: int = 10, input_shape: Sequence[int] = (32, 32, 3), *,
             stem: Stem | None = None, rngs: nnx.Rngs, **kwargs) -> ResNet:
    """ResNet-34 (basic blocks 3-4-6-3); 21,797,672 parameters on ImageNet (torchvision).

    Example:
      >>> from flax import nnx
      >>> from sparsejax.models import resnet34
      >>> m = nnx.eval_shape(lambda: resnet34(1000, (224, 224, 3), rngs=nnx.Rngs(0)))
      >>> m.stem.conv.kernel.shape, len(m.blocks)
      ((7, 7, 3, 64), 16)

    References:
      He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition", CVPR 2016.
    """
    return _resnet("basic", (3, 4, 6, 3), "resnet34", num_classes, input_shape, stem, rngs, kwargs)


def resnet50(num_classes: int = 10, input_shape: Sequence[int] = (32, 32, 3), *,
             stem: Stem | None = None, rngs: nnx.Rngs, **kwargs) -> ResNet:
    """ResNet-50 (bottleneck blocks 3-4-6-3, v1.5 strides); 25,557,032 parameters on ImageNet.

    Example:
      >>> from flax import nnx
      >>> from sparsejax.models import resnet50, param_count
      >>> param_count(nnx.eval_shape(lambda: resnet50(1000, (224, 224, 3), rngs=nnx.Rngs(0))))
      25557032

    References:
      He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition", CVPR 2016.
    """
    return _resnet("bottleneck", (3, 4, 6, 3), "resnet50", num_classes, input_shape, stem, rngs,
                   kwargs)
