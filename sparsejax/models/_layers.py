"""Building blocks shared by the zoo's convolutional models (private)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from sparsejax.models import _init
from sparsejax.models.groups import UnitAxis

# PyTorch's BatchNorm defaults (momentum 0.1 there is 0.9 here), as in the
# reference implementations the papers trained with.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def default_conv_init() -> nnx.Initializer:
    """He et al. (2015) truncated-normal initialisation (fan-in), for ReLU networks."""
    return _init.he_normal()


def dense_init(kernel_init: nnx.Initializer | None) -> dict:
    """``kernel_init`` for the dense layers of the conv nets (default: LeCun normal, as Flax)."""
    return {"kernel_init": kernel_init or _init.lecun_normal()}


def check_input_shape(input_shape: Sequence[int], name: str) -> tuple[int, int, int]:
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or any(d < 1 for d in shape):
        raise ValueError(f"{name} needs input_shape=(height, width, channels), got {input_shape}")
    return shape  # type: ignore[return-value]


def check_num_classes(num_classes: int) -> None:
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes}")


def max_pool(x: jax.Array, window: int, stride: int, padding: int | str = 0) -> jax.Array:
    """Max pooling over the spatial axes of an NHWC tensor (pads with -inf)."""
    pad = padding if isinstance(padding, str) else ((padding, padding), (padding, padding))
    return nnx.max_pool(x, (window, window), strides=(stride, stride), padding=pad)


def global_avg_pool(x: jax.Array) -> jax.Array:
    """Mean over the spatial axes: ``(n, h, w, c) -> (n, c)``."""
    return jnp.mean(x, axis=(1, 2))


def bn_axes(prefix: str) -> tuple[UnitAxis, ...]:
    """The per-channel variables of the BatchNorm at ``prefix``."""
    return tuple(UnitAxis(f"{prefix}/{n}", 0) for n in ("scale", "bias", "mean", "var"))


class ConvBN(nnx.Module):
    """A convolution followed by an optional BatchNorm (no activation).

    Variables: ``conv/kernel`` ``(k, k, in/groups, out)``, ``conv/bias`` (only
    without BatchNorm, unless asked), ``bn/{scale,bias,mean,var}``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int,
        stride: int = 1,
        *,
        groups: int = 1,
        padding: int | str | None = None,
        batch_norm: bool = True,
        use_bias: bool | None = None,
        kernel_init: nnx.Initializer | None = None,
        bn_momentum: float = BN_MOMENTUM,
        rngs: nnx.Rngs,
    ) -> None:
        self.conv = nnx.Conv(
            in_features,
            out_features,
            (kernel_size, kernel_size),
            strides=stride,
            padding=kernel_size // 2 if padding is None else padding,
            feature_group_count=groups,
            use_bias=(not batch_norm) if use_bias is None else use_bias,
            kernel_init=kernel_init or default_conv_init(),
            rngs=rngs,
        )
        self.bn = (
            nnx.BatchNorm(out_features, momentum=bn_momentum, epsilon=BN_EPSILON, rngs=rngs)
            if batch_norm
            else None
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.conv(x)
        return y if self.bn is None else self.bn(y)

    @property
    def out_features(self) -> int:
        return int(self.conv.kernel.shape[-1])

    def producer_axes(self, prefix: str) -> tuple[UnitAxis, ...]:
        """The variables holding one slice per output channel (``prefix`` = this module's path)."""
        axes = [UnitAxis(f"{prefix}/conv/kernel", -1)]
        if self.conv.bias is not None:
            axes.append(UnitAxis(f"{prefix}/conv/bias", 0))
        if self.bn is not None:
            axes.extend(bn_axes(f"{prefix}/bn"))
        return tuple(axes)
