"""The model registry: ``create(name, ...)`` and the list of names."""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Sequence

from flax import nnx

from sparsejax.models.groups import PrunableModel
from sparsejax.models.lenet import lenet5, small_cnn
from sparsejax.models.mlp import lenet_300_100, mlp
from sparsejax.models.mobilenet_v2 import mobilenet_v2
from sparsejax.models.resnet import resnet18, resnet20, resnet32, resnet34, resnet50, resnet56
from sparsejax.models.vgg import vgg11, vgg11_bn, vgg16, vgg16_bn, vgg19, vgg19_bn
from sparsejax.models.wide_resnet import wrn28_10

__all__ = ["ModelSpec", "available", "create", "register"]

Builder = Callable[..., PrunableModel]

MNIST_SHAPE = (28, 28, 1)
CIFAR_SHAPE = (32, 32, 3)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registered model.

    Attributes:
      name: the registry name.
      builder: ``builder(num_classes, input_shape, *, rngs, **kwargs) -> model``.
      input_shape: the default ``(height, width, channels)``.
    """

    name: str
    builder: Builder
    input_shape: tuple[int, ...]


_REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, builder: Builder, input_shape: Sequence[int] = CIFAR_SHAPE) -> None:
    """Adds a model to the registry (for experiments with their own models).

    Args:
      name: the name ``create`` will know it by.
      builder: ``builder(num_classes, input_shape, *, rngs, **kwargs) -> model``.
      input_shape: the default input shape of one example.

    Raises:
      ValueError: if the name is taken.

    Example:
      >>> from sparsejax.models import register, available, mlp
      >>> register('tiny_mlp', lambda n, s, *, rngs, **kw: mlp(n, s, hidden=(8,), rngs=rngs, **kw))
      >>> 'tiny_mlp' in available()
      True
    """
    if name in _REGISTRY:
        raise ValueError(f"a model named {name!r} is already registered")
    _REGISTRY[name] = ModelSpec(name, builder, tuple(input_shape))


def available() -> tuple[str, ...]:
    """The registered model names, sorted.

    Example:
      >>> from sparsejax.models import available
      >>> 'resnet20' in available() and 'vgg16_bn' in available()
      True
    """
    return tuple(sorted(_REGISTRY))


def create(
    name: str,
    num_classes: int = 10,
    input_shape: Sequence[int] | None = None,
    *,
    rngs: nnx.Rngs | int,
    **kwargs,
) -> PrunableModel:
    """Builds a registered model.

    Models start in training mode (BatchNorm uses batch statistics, dropout is
    active); call ``model.eval()`` / ``model.train()`` to switch, or use
    ``nnx.view(model, use_running_average=True, deterministic=True)``.

    Args:
      name: one of :func:`available` (``mlp``, ``lenet_300_100``, ``lenet5``,
        ``small_cnn``, ``vgg11``/``vgg16``/``vgg19`` and their ``_bn``
        variants, ``resnet20``/``resnet32``/``resnet56``,
        ``resnet18``/``resnet34``/``resnet50``, ``wrn28_10``, ``mobilenet_v2``).
      num_classes: size of the output.
      input_shape: shape of one example, ``(height, width, channels)``;
        default 28x28x1 for the MLPs and LeNet-5, 32x32x3 for the others.
      rngs: Flax random streams, or an integer seed.
      **kwargs: passed to the model's builder (e.g. ``stem='imagenet'`` for
        ``resnet18/34/50`` and ``mobilenet_v2``, ``hidden=`` for ``mlp``,
        ``kernel_init=``, ``dropout_rate=``, ``shortcut=``).

    Returns:
      The model, a :class:`~sparsejax.models.PrunableModel`.

    Raises:
      ValueError: for an unknown name (listing the known ones) or keyword
        arguments the model does not take (e.g. ``hidden=`` for
        ``lenet_300_100``, whose widths are fixed, or ``dropout_rate=`` for a
        model without dropout).

    Example:
      >>> import jax.numpy as jnp
      >>> from sparsejax.models import create
      >>> model = create('lenet5', num_classes=10, rngs=0)
      >>> model(jnp.ones((2, 28, 28, 1))).shape
      (2, 10)
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available models: {', '.join(available())}")
    spec = _REGISTRY[name]
    if isinstance(rngs, numbers.Integral) and not isinstance(rngs, bool):
        rngs = nnx.Rngs(int(rngs))
    elif not isinstance(rngs, nnx.Rngs):
        raise TypeError(f"create({name!r}): rngs must be an nnx.Rngs or an integer seed, "
                        f"got {type(rngs).__name__}")
    shape = spec.input_shape if input_shape is None else tuple(input_shape)
    try:
        return spec.builder(num_classes, shape, rngs=rngs, **kwargs)
    except TypeError as e:
        if not any(m in str(e) for m in _ARGUMENT_ERRORS):
            raise
        raise ValueError(
            f"create({name!r}): {e} (keyword arguments given: {sorted(kwargs) or 'none'}; see "
            f"the docstring of sparsejax.models.{getattr(spec.builder, '__name__', name)})"
        ) from None


# How Python words a call's bad keyword arguments (an unknown name, a name the
# builder fixes itself, a missing one).
_ARGUMENT_ERRORS = ("unexpected keyword argument", "multiple values for",
                    "missing 1 required", "required keyword-only argument")


for _name, _builder, _shape in [
    ("mlp", mlp, MNIST_SHAPE),
    ("lenet_300_100", lenet_300_100, MNIST_SHAPE),
    ("lenet5", lenet5, MNIST_SHAPE),
    ("small_cnn", small_cnn, CIFAR_SHAPE),
    ("vgg11", vgg11, CIFAR_SHAPE),
    ("vgg11_bn", vgg11_bn, CIFAR_SHAPE),
    ("vgg16", vgg16, CIFAR_SHAPE),
    ("vgg16_bn", vgg16_bn, CIFAR_SHAPE),
    ("vgg19", vgg19, CIFAR_SHAPE),
    ("vgg19_bn", vgg19_bn, CIFAR_SHAPE),
    ("resnet20", resnet20, CIFAR_SHAPE),
    ("resnet32", resnet32, CIFAR_SHAPE),
    ("resnet56", resnet56, CIFAR_SHAPE),
    ("resnet18", resnet18, CIFAR_SHAPE),
    ("resnet34", resnet34, CIFAR_SHAPE),
    ("resnet50", resnet50, CIFAR_SHAPE),
    ("wrn28_10", wrn28_10, CIFAR_SHAPE),
    ("mobilenet_v2", mobilenet_v2, CIFAR_SHAPE),
]:
    register(_name, _builder, _shape)
