"""VGG-11/16/19 with a CIFAR head, with and without BatchNorm."""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence

import jax
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

__all__ = ["VGG", "VGG_CONFIGS", "vgg11", "vgg11_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]

#: Convolution widths of Simonyan & Zisserman's configurations A (11), D (16)
#: and E (19); ``"M"`` is a 2x2 max pool.
VGG_CONFIGS: dict[int, tuple[int | str, ...]] = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
         512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}


class VGG(PrunableModel):
    """VGG for small images: 3x3 convolutions, max pools, global pooling, a small classifier.

    The CIFAR variant used by the pruning literature: the convolution stack of
    the paper, then a global average pool (on 32x32 inputs the last feature map
    is 1x1, so this is the usual flatten) and a classifier that defaults to a
    single dense layer. Max pools use "same" padding, so 28x28 inputs work too
    (28 → 14 → 7 → 4 → 2 → 1). With BatchNorm the convolutions have no bias
    (redundant before BatchNorm); without it they do.

    Parameter counts with 10 classes: VGG-16-BN 14,724,042 (≈ 14.7M; PyTorch
    CIFAR implementations that keep the redundant conv biases report
    14,728,266), VGG-16 14,719,818, VGG-11-BN 9,228,362, VGG-19-BN 20,035,018.

    Variables: ``convs/{i}/conv/kernel`` (and ``conv/bias`` or
    ``bn/{scale,bias,mean,var}``), ``classifier/{j}/kernel|bias``.
    Prunable groups: the channels of every convolution, ``convs/{i}`` (read
    by the next convolution, or the first classifier layer), and the units of
    every hidden classifier layer, ``classifier/{j}``. Gates act after the
    ReLU and any pooling.

    Args:
      config: widths of the convolutions, with ``"M"`` for max pools.
      num_classes: size of the output.
      in_channels: channels of the input.
      batch_norm: BatchNorm after every convolution.
      classifier_hidden: widths of hidden classifier layers (default none;
        ``(512, 512)`` gives the three-layer CIFAR head).
      dropout_rate: dropout on the input of every classifier layer in
        training mode (default 0: no dropout layer).
      kernel_init: initializer of every kernel (default: He normal for the
        convolutions, LeCun normal for the dense layers).
      bn_momentum: BatchNorm running-average momentum.
      rngs: Flax random streams.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from sparsejax.models import VGG
      >>> model = VGG((8, 'M', 16, 'M'), 10, batch_norm=True, rngs=nnx.Rngs(0))
      >>> model(jnp.ones((2, 32, 32, 3))).shape
      (2, 10)
      >>> [g.name for g in model.prunable_groups()]
      ['convs/0', 'convs/1']

    References:
      Simonyan, Zisserman. "Very Deep Convolutional Networks for Large-Scale
      Image Recognition", ICLR 2015; BatchNorm: Ioffe, Szegedy, ICML 2015.
    """

    def __init__(
        self,
        config: Sequence[int | str],
        num_classes: int = 10,
        *,
        in_channels: int = 3,
        batch_norm: bool = False,
        classifier_hidden: Sequence[int] = (),
        dropout_rate: float = 0.0,
        kernel_init: nnx.Initializer | None = None,
        bn_momentum: float = BN_MOMENTUM,
        rngs: nnx.Rngs,
    ) -> None:
        check_num_classes(num_classes)
        widths = [v for v in config if v != "M"]
        if not widths or any(not isinstance(v, int) or v < 1 for v in widths):
            raise ValueError(f"config must hold positive widths and 'M', got {config}")
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must lie in [0, 1), got {dropout_rate}")
        convs, pool_after, c = [], [], in_channels
        for v in config:
            if v == "M":
                if not pool_after:
                    raise ValueError("config must not start with 'M'")
                pool_after[-1] = True
                continue
            convs.append(ConvBN(c, int(v), 3, batch_norm=batch_norm, kernel_init=kernel_init,
                                bn_momentum=bn_momentum, rngs=rngs))
            pool_after.append(False)
            c = int(v)
        self.convs = nnx.List(convs)
        self.pool_after = tuple(pool_after)
        dense = dense_init(kernel_init)
        dims = [c, *classifier_hidden, num_classes]
        self.classifier = nnx.List(
            [nnx.Linear(a, b, rngs=rngs, **dense) for a, b in zip(dims[:-1], dims[1:])]
        )
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs) if dropout_rate > 0 else None

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
        last = len(self.convs) - 1
        for i, conv in enumerate(self.convs):
            x = nnx.relu(conv(x))
            if self.pool_after[i]:
                x = max_pool(x, 2, 2, "SAME")
            if i == last:
                x = global_avg_pool(x)
            x = apply_gate(x, f"convs/{i}", gates, capture)
        for j, layer in enumerate(self.classifier):
            if self.dropout is not None:
                x = self.dropout(x)
            x = layer(x)
            if j < len(self.classifier) - 1:
                x = apply_gate(nnx.relu(x), f"classifier/{j}", gates, capture)
        return x

    def prunable_groups(self) -> tuple[PrunableGroup, ...]:
        """``convs/{i}`` and ``classifier/{j}`` (see the class docstring)."""
        groups = []
        last = len(self.convs) - 1
        for i, conv in enumerate(self.convs):
            consumer = f"convs/{i + 1}/conv/kernel" if i < last else "classifier/0/kernel"
            groups.append(PrunableGroup(
                f"convs/{i}", conv.out_features, conv.producer_axes(f"convs/{i}"),
                (UnitAxis(consumer, -2 if i < last else 0),),
            ))
        for j in range(len(self.classifier) - 1):
            groups.append(PrunableGroup(
                f"classifier/{j}", int(self.classifier[j].kernel.shape[-1]),
                (UnitAxis(f"classifier/{j}/kernel", -1), UnitAxis(f"classifier/{j}/bias", 0)),
                (UnitAxis(f"classifier/{j + 1}/kernel", 0),),
            ))
        return tuple(groups)


def _vgg(depth: int, batch_norm: bool, num_classes: int, input_shape: Sequence[int],
         rngs: nnx.Rngs, kwargs: dict) -> VGG:
    _, _, c = check_input_shape(input_shape, f"vgg{depth}")
    return VGG(VGG_CONFIGS[depth], num_classes, in_channels=c, batch_norm=batch_norm,
               rngs=rngs, **kwargs)


def vgg11(num_classes: int = 10, input_shape: Sequence[int] = (32, 32, 3), *,
          rngs: nnx.Rngs, **kwargs) -> VGG:
    """VGG-11 (configuration A) without BatchNorm; ``kwargs`` go to :class:`VGG`.

    Example:
      >>> from flax import nnx
      >>> from sparsejax.models import vgg11
      >>> len(nnx.eval_shape(lambda: vgg11(rngs=nnx.Rngs(0))).prunable_groups())
      8
    """
    return _vgg(11, False, num_classes, input_shape, rngs, kwargs)


def vgg11_bn(num_classes: int = 10, input_shape: Sequence[int] = (32, 32, 3), *,
             rngs: nnx.Rngs, **kwargs) -> VGG:
    """VGG-11 with BatchNorm; ``kwargs`` go to :class:`VGG`.

    Example:
      >>> from flax import nnx
      >>> from sparsejax.models import vgg11_bn
      >>> nnx.eval_shape(lambda: vgg11_bn(rngs=nnx.Rngs(0))).convs[0].bn.num_features
      64
    """
    return _vgg(11, True, num_classes, input_shape, rngs, kwargs)


def vgg16(num_classes: int = 10, input_shape: Sequence[int] = (32, 32, 3), *,
          rngs: nnx.Rngs, **kwargs) -> VGG:
    """VGG-16 (configuration D) without BatchNorm; ``kwargs`` go to :class:`VGG`.

    Example:
      >>> from flax import nnx
      >>> from sparsejax.models import vgg16
      >>> len(nnx.eval_shape(lambda: vgg16(rngs=nnx.Rngs(0))).convs)
      13
    """
    return _vgg(16, False, num_classes, input_shape, rngs, kwargs)


def vgg16_bn(num_classes: int = 10, input_shape: Sequence[int] = (32, 32, 3), *,
             rngs: nnx.Rngs, **kwargs) -> VGG:
    """VGG-16 with BatchNorm (14,724,042 parameters with 10 classes); ``kwargs`` go to :class:`VGG`.

    Example:
      >>> from flax import nnx
      >>> from sparsejax.models import vgg16_bn, param_count
      >>> param_count(nnx.eval_shape(lambda: vgg16_bn(rngs=nnx.Rngs(0))))
      14724042
    """
    return _vgg(16, True, num_classes, input_shape, rngs, kwargs)


def vgg19(num_classes: int = 10, input_shape: Sequence[int] = (32, 32, 3), *,
          rngs: nnx.Rngs, **kwargs) -> VGG:
    """VGG-19 (configuration E) without BatchNorm; ``kwargs`` go to :class:`VGG`.

    Example:
      >>> from flax import nnx
      >>> from sparsejax.models import vgg19
      >>> len(nnx.eval_shape(lambda: vgg19(rngs=nnx.Rngs(0))).convs)
      16
    """
    return _vgg(19, False, num_classes, input_shape, rngs, kwargs)


def vgg19_bn(num_classes: int = 10, input_shape: Sequence[int] = (32, 32, 3), *,
             rngs: nnx.Rngs, **kwargs) -> VGG:
    """VGG-19 with BatchNorm; ``kwargs`` go to :class:`VGG`.

    Example:
      >>> from flax import nnx
      >>> from sparsejax.models import vgg19_bn
      >>> model = nnx.eval_shape(lambda: vgg19_bn(num_classes=100, rngs=nnx.Rngs(0)))
      >>> model.classifier[0].kernel.shape
      (512, 100)
    """
    return _vgg(19, True, num_classes, input_shape, rngs, kwargs)
