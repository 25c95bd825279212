"""LeNet-5 and the small Conv-2 CNN (two convolutions, three dense layers)."""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence

import jax
from flax import nnx

from sparsejax.models._layers import (
    check_input_shape,
    check_num_classes,
    default_conv_init,
    dense_init,
    max_pool,
)
from sparsejax.models.groups import Gates, PrunableGroup, PrunableModel, UnitAxis, apply_gate

__all__ = ["LeNet5", "SmallCNN", "lenet5", "small_cnn"]


def _dense_groups(
    prefix: str, layers: Sequence[nnx.Linear], start: int = 0
) -> list[PrunableGroup]:
    """Hidden-unit groups of the consecutive dense layers ``prefix/{i}``."""
    return [
        PrunableGroup(
            name=f"{prefix}/{i}",
            size=int(layers[i].kernel.shape[-1]),
            producers=(UnitAxis(f"{prefix}/{i}/kernel", -1), UnitAxis(f"{prefix}/{i}/bias", 0)),
            consumers=(UnitAxis(f"{prefix}/{i + 1}/kernel", 0),),
        )
        for i in range(start, len(layers) - 1)
    ]


class LeNet5(PrunableModel):
    """LeNet-5 with ReLU and max pooling (the variant of the pruning literature).

    ``conv1`` 5x5, 6 channels, padding 2 → max pool 2 → ``conv2`` 5x5, 16
    channels, no padding → max pool 2 → ``fc1`` 120 → ``fc2`` 84 → ``fc3``. On
    28x28x1 inputs the flattened feature map is 5·5·16 = 400 and the model has
    61,706 parameters, the count usually quoted for LeNet-5 (the same as on 32x32
    inputs without padding). LeCun et al.'s original has about 60,000 trainable
    parameters: its C3 layer connects each of its 16 maps to only some of
    C1's 6 maps, and its output layer is RBF units; here every layer is fully
    connected and the output is linear.

    Prunable groups: ``conv1`` (6 channels, read by ``conv2``), ``conv2`` (16
    channels, read by ``fc1`` through the view ``(h, w, 16, 120)``), ``fc1``
    (120 units), ``fc2`` (84 units). Gates act after the activation and the pooling.

    Args:
      num_classes: size of the output.
      input_shape: ``(height, width, channels)`` of one example, at least 12x12.
      kernel_init: initializer of every kernel (default: He normal for the
        convolutions, LeCun normal for the dense layers).
      rngs: Flax random streams.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from sparsejax.models import LeNet5
      >>> LeNet5(rngs=nnx.Rngs(0))(jnp.ones((2, 28, 28, 1))).shape
      (2, 10)

    References:
      LeCun, Bottou, Bengio, Haffner. "Gradient-based learning applied to
      document recognition", Proc. IEEE 1998.
    """

    def __init__(
        self,
        num_classes: int = 10,
        input_shape: Sequence[int] = (28, 28, 1),
        *,
        kernel_init: nnx.Initializer | None = None,
        rngs: nnx.Rngs,
    ) -> None:
        check_num_classes(num_classes)
        h, w, c = check_input_shape(input_shape, "LeNet5")
        fh, fw = (h // 2 - 4) // 2, (w // 2 - 4) // 2
        if fh < 1 or fw < 1:
            raise ValueError(f"LeNet5 needs inputs of at least 12x12, got {input_shape}")
        conv_init = kernel_init or default_conv_init()
        dense = dense_init(kernel_init)
        self.conv1 = nnx.Conv(c, 6, (5, 5), padding=2, kernel_init=conv_init, rngs=rngs)
        self.conv2 = nnx.Conv(6, 16, (5, 5), padding="VALID", kernel_init=conv_init, rngs=rngs)
        self.fc1 = nnx.Linear(fh * fw * 16, 120, rngs=rngs, **dense)
        self.fc2 = nnx.Linear(120, 84, rngs=rngs, **dense)
        self.fc3 = nnx.Linear(84, num_classes, rngs=rngs, **dense)
        self.feature_hw = (fh, fw)

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
        x = apply_gate(max_pool(nnx.relu(self.conv1(x)), 2, 2), "conv1", gates, capture)
        x = apply_gate(max_pool(nnx.relu(self.conv2(x)), 2, 2), "conv2", gates, capture)
        x = x.reshape(x.shape[0], -1)
        x = apply_gate(nnx.relu(self.fc1(x)), "fc1", gates, capture)
        x = apply_gate(nnx.relu(self.fc2(x)), "fc2", gates, capture)
        return self.fc3(x)

    def prunable_groups(self) -> tuple[PrunableGroup, ...]:
        """``conv1``, ``conv2``, ``fc1``, ``fc2`` (see the class docstring)."""
        fh, fw = self.feature_hw
        c2, f1 = int(self.conv2.kernel.shape[-1]), int(self.fc1.kernel.shape[-1])

        def own(name: str) -> tuple[UnitAxis, ...]:
            return (UnitAxis(f"{name}/kernel", -1), UnitAxis(f"{name}/bias", 0))

        return (
            PrunableGroup("conv1", int(self.conv1.kernel.shape[-1]), own("conv1"),
                          (UnitAxis("conv2/kernel", -2),)),
            PrunableGroup("conv2", c2, own("conv2"),
                          (UnitAxis("fc1/kernel", 2, view=(fh, fw, c2, f1)),)),
            PrunableGroup("fc1", f1, own("fc1"), (UnitAxis("fc2/kernel", 0),)),
            PrunableGroup("fc2", int(self.fc2.kernel.shape[-1]), own("fc2"),
                          (UnitAxis("fc3/kernel", 0),)),
        )


class SmallCNN(PrunableModel):
    """A small CNN: 3x3 convolutions with max pooling, then dense layers.

    The defaults are the Conv-2 network of Frankle & Carbin (2019): two 3x3
    convolutions with 64 channels ("same" padding, ReLU), a 2x2 max pool, and
    dense layers 256, 256 and the output — 4,301,642 parameters on CIFAR-10
    (the paper's Figure 2 says 4.3M). ``features=(64, 64, 128, 128)`` gives
    their Conv-4 (a pool after every ``pool_every=2`` convolutions).

    Variables: ``convs/{i}/kernel|bias``, ``fcs/{j}/kernel|bias``.
    Prunable groups: every convolution's channels ``convs/{i}`` (the last one
    read by ``fcs/0`` through the view ``(h, w, c, out)``) and every hidden
    dense layer's units ``fcs/{j}``. Gates act after the activation and any pooling.

    Args:
      num_classes: size of the output.
      input_shape: ``(height, width, channels)`` of one example.
      features: output channels of the convolutions.
      hidden: widths of the hidden dense layers.
      pool_every: a 2x2 max pool after every this many convolutions.
      kernel_init: initializer of every kernel (default: He normal for the
        convolutions, LeCun normal for the dense layers).
      rngs: Flax random streams.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from sparsejax.models import SmallCNN
      >>> SmallCNN(features=(8, 8), hidden=(16,), rngs=nnx.Rngs(0))(jnp.ones((2, 32, 32, 3))).shape
      (2, 10)

    References:
      Frankle, Carbin. "The Lottery Ticket Hypothesis: Finding Sparse,
      Trainable Neural Networks", ICLR 2019.
    """

    def __init__(
        self,
        num_classes: int = 10,
        input_shape: Sequence[int] = (32, 32, 3),
        *,
        features: Sequence[int] = (64, 64),
        hidden: Sequence[int] = (256, 256),
        pool_every: int = 2,
        kernel_init: nnx.Initializer | None = None,
        rngs: nnx.Rngs,
    ) -> None:
        check_num_classes(num_classes)
        h, w, c = check_input_shape(input_shape, "SmallCNN")
        if not features or any(f < 1 for f in features) or any(f < 1 for f in hidden):
            raise ValueError(
                f"SmallCNN needs positive widths, got features={features}, hidden={hidden}"
            )
        if pool_every < 1:
            raise ValueError(f"pool_every must be a positive integer, got {pool_every}")
        conv_init = kernel_init or default_conv_init()
        dense = dense_init(kernel_init)
        chans = [c, *features]
        self.convs = nnx.List(
            [nnx.Conv(a, b, (3, 3), padding=1, kernel_init=conv_init, rngs=rngs)
             for a, b in zip(chans[:-1], chans[1:])]
        )
        self.pool_after = tuple(
            (i + 1) % pool_every == 0 or i == len(features) - 1 for i in range(len(features))
        )
        for pooled in self.pool_after:
            if pooled:
                h, w = h // 2, w // 2
        if h < 1 or w < 1:
            raise ValueError(
                f"input_shape {input_shape} is too small for {sum(self.pool_after)} pools"
            )
        self.feature_hw = (h, w)
        widths = [h * w * features[-1], *hidden, num_classes]
        self.fcs = nnx.List(
            [nnx.Linear(a, b, rngs=rngs, **dense) for a, b in zip(widths[:-1], widths[1:])]
        )

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
        for i, conv in enumerate(self.convs):
            x = nnx.relu(conv(x))
            if self.pool_after[i]:
                x = max_pool(x, 2, 2)
            x = apply_gate(x, f"convs/{i}", gates, capture)
        x = x.reshape(x.shape[0], -1)
        for j, fc in enumerate(self.fcs[:-1]):
            x = apply_gate(nnx.relu(fc(x)), f"fcs/{j}", gates, capture)
        return self.fcs[-1](x)

    def prunable_groups(self) -> tuple[PrunableGroup, ...]:
        """``convs/{i}`` and ``fcs/{j}`` (see the class docstring)."""
        groups = []
        last = len(self.convs) - 1
        for i, conv in enumerate(self.convs):
            size = int(conv.kernel.shape[-1])
            if i < last:
                consumer = UnitAxis(f"convs/{i + 1}/kernel", -2)
            else:
                fh, fw = self.feature_hw
                out = int(self.fcs[0].kernel.shape[-1])
                consumer = UnitAxis("fcs/0/kernel", 2, view=(fh, fw, size, out))
            groups.append(PrunableGroup(
                f"convs/{i}", size,
                (UnitAxis(f"convs/{i}/kernel", -1), UnitAxis(f"convs/{i}/bias", 0)),
                (consumer,),
            ))
        groups.extend(_dense_groups("fcs", self.fcs))
        return tuple(groups)


def lenet5(
    num_classes: int = 10,
    input_shape: Sequence[int] = (28, 28, 1),
    *,
    rngs: nnx.Rngs,
    **kwargs,
) -> LeNet5:
    """Builds :class:`LeNet5` (61,706 parameters on 28x28x1 inputs, 10 classes).

    Example:
      >>> from flax import nnx
      >>> from sparsejax.models import lenet5
      >>> [g.name for g in lenet5(rngs=nnx.Rngs(0)).prunable_groups()]
      ['conv1', 'conv2', 'fc1', 'fc2']
    """
    return LeNet5(num_classes, input_shape, rngs=rngs, **kwargs)


def small_cnn(
    num_classes: int = 10,
    input_shape: Sequence[int] = (32, 32, 3),
    *,
    rngs: nnx.Rngs,
    **kwargs,
) -> SmallCNN:
    """Builds :class:`SmallCNN` (by default Frankle & Carbin's Conv-2).

    Example:
      >>> from flax import nnx
      >>> from sparsejax.models import small_cnn
      >>> [g.size for g in small_cnn(input_shape=(28, 28, 1), rngs=nnx.Rngs(0)).prunable_groups()]
      [64, 64, 256, 256]
    """
    return SmallCNN(num_classes, input_shape, rngs=rngs, **kwargs)
