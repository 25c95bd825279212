"""Multi-layer perceptrons: LeNet-300-100 and configurable widths."""

from __future__ import annotations

import math
from collections.abc import Callable, MutableMapping, Sequence

import jax
from flax import nnx

from sparsejax.models.groups import Gates, PrunableGroup, PrunableModel, UnitAxis, apply_gate

__all__ = ["MLP", "lenet_300_100", "mlp"]


class MLP(PrunableModel):
    """A fully connected ReLU network on flattened inputs.

    Parameters are named ``layers/{i}/kernel`` and ``layers/{i}/bias``, so the
    default pruning filter (:func:`sparsejax.tree.weights_only`) selects the
    kernels and leaves the biases dense.

    Prunable groups: the units of every hidden layer, ``"layers/{i}"`` for
    ``i < len(hidden)``; producers ``layers/{i}/kernel`` (axis -1) and
    ``layers/{i}/bias``; consumer ``layers/{i+1}/kernel`` (axis 0). The gate
    multiplies the activations ``activation(layers[i](h))``.

    Args:
      in_features: size of the flattened input.
      hidden: widths of the hidden layers.
      num_classes: size of the output.
      activation: the hidden non-linearity (for the gate/zeroing equivalence of
        :mod:`sparsejax.models.groups`, one with ``activation(0) == 0``).
      kernel_init: initializer of every kernel (default: Flax's LeCun normal).
      dropout_rate: dropout on the hidden activations in training mode
        (default 0: no dropout layer at all).
      rngs: Flax random streams.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from sparsejax.models import MLP
      >>> model = MLP(784, (300, 100), 10, rngs=nnx.Rngs(0))
      >>> model(jnp.ones((2, 28, 28, 1))).shape
      (2, 10)

    References:
      LeCun, Bottou, Bengio, Haffner. "Gradient-based learning applied to
      document recognition", Proc. IEEE 1998.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        num_classes: int,
        *,
        activation: Callable[[jax.Array], jax.Array] = nnx.relu,
        kernel_init: nnx.Initializer | None = None,
        dropout_rate: float = 0.0,
        rngs: nnx.Rngs,
    ) -> None:
        if in_features < 1 or num_classes < 1 or any(h < 1 for h in hidden):
            raise ValueError(
                f"MLP widths must be positive, got in_features={in_features}, "
                f"hidden={tuple(hidden)}, num_classes={num_classes}"
            )
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must lie in [0, 1), got {dropout_rate}")
        widths = [in_features, *hidden, num_classes]
        extra = {} if kernel_init is None else {"kernel_init": kernel_init}
        self.layers = nnx.List(
            [nnx.Linear(a, b, rngs=rngs, **extra) for a, b in zip(widths[:-1], widths[1:])]
        )
        self.activation = activation
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs) if dropout_rate > 0 else None

    def __call__(
        self,
        x: jax.Array,
        *,
        gates: Gates | None = None,
        capture: MutableMapping[str, jax.Array] | None = None,
    ) -> jax.Array:
        """Returns the logits of a batch ``x`` (any trailing shape; it is flattened).

        Args:
          x: inputs of shape ``(batch, ...)``.
          gates: optional ``{group name: vector}`` (see :mod:`sparsejax.models.groups`).
          capture: optional dict receiving each group's activations before its gate.
        """
        self.check_gates(gates)
        x = x.reshape(x.shape[0], -1)
        for i, layer in enumerate(self.layers[:-1]):
            x = self.activation(layer(x))
            if self.dropout is not None:
                x = self.dropout(x)
            x = apply_gate(x, f"layers/{i}", gates, capture)
        return self.layers[-1](x)

    def prunable_groups(self) -> tuple[PrunableGroup, ...]:
        """The hidden units of each hidden layer (see the class docstring)."""
        return tuple(
            PrunableGroup(
                name=f"layers/{i}",
                size=int(self.layers[i].kernel.shape[-1]),
                producers=(UnitAxis(f"layers/{i}/kernel", -1), UnitAxis(f"layers/{i}/bias", 0)),
                consumers=(UnitAxis(f"layers/{i + 1}/kernel", 0),),
            )
            for i in range(len(self.layers) - 1)
        )


def mlp(
    num_classes: int = 10,
    input_shape: Sequence[int] = (28, 28, 1),
    *,
    hidden: Sequence[int] = (300, 100),
    rngs: nnx.Rngs,
    **kwargs,
) -> MLP:
    """An :class:`MLP` on inputs of ``input_shape`` with hidden widths ``hidden``.

    Args:
      num_classes: size of the output.
      input_shape: shape of one example (flattened by the model).
      hidden: widths of the hidden layers (default LeNet-300-100's).
      rngs: Flax random streams.
      **kwargs: passed to :class:`MLP` (``activation``, ``kernel_init``, ``dropout_rate``).

    Returns:
      The model.

    Example:
      >>> from flax import nnx
      >>> from sparsejax.models import mlp
      >>> model = nnx.eval_shape(lambda: mlp(hidden=(64, 32), rngs=nnx.Rngs(0)))
      >>> [g.size for g in model.prunable_groups()]
      [64, 32]
    """
    return MLP(math.prod(input_shape), tuple(hidden), num_classes, rngs=rngs, **kwargs)


def lenet_300_100(
    num_classes: int = 10,
    input_shape: Sequence[int] = (28, 28, 1),
    *,
    rngs: nnx.Rngs,
    **kwargs,
) -> MLP:
    """LeNet-300-100 (LeCun et al., 1998): two hidden layers of 300 and 100 units.

    266,610 parameters on 28x28 inputs with 10 classes
    (784·300 + 300 + 300·100 + 100 + 100·10 + 10).

    Args:
      num_classes: size of the output.
      input_shape: shape of one example (flattened by the model).
      rngs: Flax random streams.
      **kwargs: passed to :class:`MLP`.

    Returns:
      The model.

    Example:
      >>> from flax import nnx
      >>> from sparsejax.models import lenet_300_100
      >>> from sparsejax.models import param_count
      >>> param_count(lenet_300_100(rngs=nnx.Rngs(0)))
      266610

    References:
      LeCun, Bottou, Bengio, Haffner. "Gradient-based learning applied to
      document recognition", Proc. IEEE 1998.
    """
    return MLP(math.prod(input_shape), (300, 100), num_classes, rngs=rngs, **kwargs)
