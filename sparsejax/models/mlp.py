"""Multi-layer perceptrons: LeNet-300-100 and configurable widths."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
from flax import nnx

__all__ = ["MLP", "lenet_300_100"]


class MLP(nnx.Module):
    """A fully connected ReLU network on flattened inputs.

    Parameters are named ``layers/{i}/kernel`` and ``layers/{i}/bias``, so the
    default pruning filter (:func:`sparsejax.tree.weights_only`) selects the
    kernels and leaves the biases dense.

    Args:
      in_features: size of the flattened input.
      hidden: widths of the hidden layers.
      num_classes: size of the output.
      activation: the hidden non-linearity.
      kernel_init: initializer of every kernel (default: Flax's LeCun normal).
      rngs: Flax random streams.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from sparsejax.models import MLP
      >>> model = MLP(784, (300, 100), 10, rngs=nnx.Rngs(0))
      >>> model(jnp.ones((2, 28, 28, 1))).shape
      (2, 10)
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        num_classes: int,
        *,
        activation: Callable[[jax.Array], jax.Array] = nnx.relu,
        kernel_init: nnx.Initializer | None = None,
        rngs: nnx.Rngs,
    ) -> None:
        if in_features < 1 or num_classes < 1 or any(h < 1 for h in hidden):
            raise ValueError(
                f"MLP widths must be positive, got in_features={in_features}, "
                f"hidden={tuple(hidden)}, num_classes={num_classes}"
            )
        widths = [in_features, *hidden, num_classes]
        extra = {} if kernel_init is None else {"kernel_init": kernel_init}
        self.layers = nnx.List(
            [nnx.Linear(a, b, rngs=rngs, **extra) for a, b in zip(widths[:-1], widths[1:])]
        )
        self.activation = activation

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape(x.shape[0], -1)
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        return self.layers[-1](x)


def lenet_300_100(
    num_classes: int = 10,
    input_shape: Sequence[int] = (28, 28, 1),
    *,
    rngs: nnx.Rngs,
    **kwargs,
) -> MLP:
    """LeNet-300-100 (LeCun et al., 1998): two hidden layers of 300 and 100 units.

    Example:
      >>> from flax import nnx
      >>> from sparsejax.models import lenet_300_100
      >>> sum(x.size for x in jax.tree.leaves(nnx.state(lenet_300_100(rngs=nnx.Rngs(0)), nnx.Param)))
      266610
    """
    return MLP(math.prod(input_shape), (300, 100), num_classes, rngs=rngs, **kwargs)
