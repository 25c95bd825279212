"""Wide residual networks (WRN-d-k), e.g. WRN-28-10 for CIFAR."""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence

import jax
from flax import nnx

from sparsejax.models._layers import (
    BN_EPSILON,
    BN_MOMENTUM,
    bn_axes,
    check_input_shape,
    check_num_classes,
    default_conv_init,
    dense_init,
    global_avg_pool,
)
from sparsejax.models.groups import Gates, PrunableGroup, PrunableModel, UnitAxis, apply_gate

__all__ = ["WideBlock", "WideResNet", "wrn28_10"]


class WideBlock(nnx.Module):
    """Pre-activation block: BN-ReLU-conv3x3-BN-ReLU-dropout-conv3x3, plus the shortcut.

    Variables: ``bn1``, ``conv1/kernel``, ``bn2``, ``conv2/kernel`` and, where
    the shape changes, ``shortcut/kernel`` (a 1x1 conv on the pre-activated
    input). The prunable group ``{prefix}/conv1`` is conv1's output channels
    (producers conv1's kernel and bn2), read by conv2.
    """

    def __init__(self, in_features: int, out_features: int, stride: int, *, dropout_rate: float,
                 kernel_init: nnx.Initializer, bn_momentum: float, rngs: nnx.Rngs) -> None:
        def conv(a: int, b: int, k: int, s: int) -> nnx.Conv:
            return nnx.Conv(a, b, (k, k), strides=s, padding=k // 2, use_bias=False,
                            kernel_init=kernel_init, rngs=rngs)

        def bn(c: int) -> nnx.BatchNorm:
            return nnx.BatchNorm(c, momentum=bn_momentum, epsilon=BN_EPSILON, rngs=rngs)

        self.bn1 = bn(in_features)
        self.conv1 = conv(in_features, out_features, 3, stride)
        self.bn2 = bn(out_features)
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs) if dropout_rate > 0 else None
        self.conv2 = conv(out_features, out_features, 3, 1)
        needs = stride != 1 or in_features != out_features
        self.shortcut = conv(in_features, out_features, 1, stride) if needs else None

    def __call__(self, x: jax.Array, prefix: str, gates: Gates | None,
                 capture: MutableMapping[str, jax.Array] | None) -> jax.Array:
        o = nnx.relu(self.bn1(x))
        s = x if self.shortcut is None else self.shortcut(o)
        h = nnx.relu(self.bn2(self.conv1(o)))
        if self.dropout is not None:
            h = self.dropout(h)
        h = apply_gate(h, f"{prefix}/conv1", gates, capture)
        return self.conv2(h) + s

    def groups(self, prefix: str) -> list[PrunableGroup]:
        return [PrunableGroup(
            f"{prefix}/conv1", int(self.conv1.kernel.shape[-1]),
            (UnitAxis(f"{prefix}/conv1/kernel", -1), *bn_axes(f"{prefix}/bn2")),
            (UnitAxis(f"{prefix}/conv2/kernel", -2),),
        )]


class WideResNet(PrunableModel):
    """WRN-depth-k: a 3x3 conv with 16 channels, three stages of ``(depth-4)/6``
    pre-activation blocks with ``16k``, ``32k``, ``64k`` channels (strides 1, 2,
    2), BN-ReLU, global average pooling and a dense layer ``fc``.

    WRN-28-10 has 36,479,194 parameters with 10 classes (the paper: 36.5M).
    Convolutions have no bias.

    Variables: ``stem/kernel``, ``blocks/{i}/...``, ``bn/*``, ``fc/kernel|bias``.
    Prunable groups: ``blocks/{i}/conv1``, the inner channels of every block
    (gated after bn2-ReLU-dropout). The residual stream is not a group.

    Args:
      depth: ``6n + 4``.
      widen_factor: ``k``.
      num_classes: size of the output.
      in_channels: channels of the input.
      dropout_rate: dropout between the two convolutions of a block in
        training mode (the paper uses 0.3 in some runs; default 0: none).
      kernel_init: initializer of the conv kernels (default He normal; the
        dense layer is LeCun normal unless this is given).
      bn_momentum: BatchNorm running-average momentum.
      rngs: Flax random streams.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from sparsejax.models import WideResNet
      >>> model = WideResNet(10, 1, rngs=nnx.Rngs(0))
      >>> model(jnp.ones((2, 32, 32, 3))).shape
      (2, 10)
      >>> len(model.prunable_groups())
      3

    References:
      Zagoruyko, Komodakis. "Wide Residual Networks", BMVC 2016.
    """

    def __init__(
        self,
        depth: int = 28,
        widen_factor: int = 10,
        num_classes: int = 10,
        *,
        in_channels: int = 3,
        dropout_rate: float = 0.0,
        kernel_init: nnx.Initializer | None = None,
        bn_momentum: float = BN_MOMENTUM,
        rngs: nnx.Rngs,
    ) -> None:
        check_num_classes(num_classes)
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"depth must be 6n + 4 with n >= 1, got {depth}")
        if widen_factor < 1:
            raise ValueError(f"widen_factor must be a positive integer, got {widen_factor}")
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must lie in [0, 1), got {dropout_rate}")
        n = (depth - 4) // 6
        init = kernel_init or default_conv_init()
        self.stem = nnx.Conv(in_channels, 16, (3, 3), padding=1, use_bias=False,
                             kernel_init=init, rngs=rngs)
        blocks, c = [], 16
        for s, width in enumerate((16 * widen_factor, 32 * widen_factor, 64 * widen_factor)):
            for b in range(n):
                stride = 2 if s > 0 and b == 0 else 1
                blocks.append(WideBlock(c, width, stride, dropout_rate=dropout_rate,
                                        kernel_init=init, bn_momentum=bn_momentum, rngs=rngs))
                c = width
        self.blocks = nnx.List(blocks)
        self.bn = nnx.BatchNorm(c, momentum=bn_momentum, epsilon=BN_EPSILON, rngs=rngs)
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
        x = self.stem(x)
        for i, blk in enumerate(self.blocks):
            x = blk(x, f"blocks/{i}", gates, capture)
        return self.fc(global_avg_pool(nnx.relu(self.bn(x))))

    def prunable_groups(self) -> tuple[PrunableGroup, ...]:
        """The inner channels of every block (see the class docstring)."""
        return tuple(g for i, blk in enumerate(self.blocks) for g in blk.groups(f"blocks/{i}"))


def wrn28_10(num_classes: int = 10, input_shape: Sequence[int] = (32, 32, 3), *,
             rngs: nnx.Rngs, **kwargs) -> WideResNet:
    """WRN-28-10 (36,479,194 parameters with 10 classes); ``kwargs`` go to :class:`WideResNet`.

    Example:
      >>> from flax import nnx
      >>> from sparsejax.models import wrn28_10, param_count
      >>> param_count(nnx.eval_shape(lambda: wrn28_10(rngs=nnx.Rngs(0))))
      36479194

    References:
      Zagoruyko, Komodakis. "Wide Residual Networks", BMVC 2016.
    """
    _, _, c = check_input_shape(input_shape, "wrn28_10")
    return WideResNet(28, 10, num_classes, in_channels=c, rngs=rngs, **kwargs)
