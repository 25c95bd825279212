"""Flax NNX model zoo.

Every model takes NHWC inputs, starts in training mode (``model.eval()`` /
``model.train()`` switch BatchNorm and dropout), names its weights
``.../kernel`` (the only leaves with ``ndim > 1``, so
:func:`sparsejax.tree.weights_only` selects exactly the conv and dense
kernels), and declares its prunable groups with gates for structured pruning
(:mod:`sparsejax.models.groups`). Build them by name with :func:`create`.
"""

from sparsejax.models.costs import LayerMacs, macs, param_count, xla_flops
from sparsejax.models.groups import (
    Gates,
    PrunableGroup,
    PrunableModel,
    UnitAxis,
    apply_gate,
    fold_gates,
    keep_units,
    module_at,
    take_units,
)
from sparsejax.models.lenet import LeNet5, SmallCNN, lenet5, small_cnn
from sparsejax.models.mlp import MLP, lenet_300_100, mlp
from sparsejax.models.mobilenet_v2 import (
    MOBILENET_V2_SETTINGS,
    InvertedResidual,
    MobileNetV2,
    mobilenet_v2,
)
from sparsejax.models.registry import ModelSpec, available, create, register
from sparsejax.models.resnet import (
    BasicBlock,
    Bottleneck,
    ResNet,
    resnet18,
    resnet20,
    resnet32,
    resnet34,
    resnet50,
    resnet56,
)
from sparsejax.models.vgg import VGG, VGG_CONFIGS, vgg11, vgg11_bn, vgg16, vgg16_bn, vgg19, vgg19_bn
from sparsejax.models.wide_resnet import WideBlock, WideResNet, wrn28_10

__all__ = [
    "MLP",
    "MOBILENET_V2_SETTINGS",
    "VGG",
    "VGG_CONFIGS",
    "BasicBlock",
    "Bottleneck",
    "Gates",
    "InvertedResidual",
    "LayerMacs",
    "LeNet5",
    "MobileNetV2",
    "ModelSpec",
    "PrunableGroup",
    "PrunableModel",
    "ResNet",
    "SmallCNN",
    "UnitAxis",
    "WideBlock",
    "WideResNet",
    "apply_gate",
    "available",
    "create",
    "fold_gates",
    "keep_units",
    "lenet5",
    "lenet_300_100",
    "macs",
    "mlp",
    "mobilenet_v2",
    "module_at",
    "param_count",
    "register",
    "resnet18",
    "resnet20",
    "resnet32",
    "resnet34",
    "resnet50",
    "resnet56",
    "small_cnn",
    "take_units",
    "vgg11",
    "vgg11_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
    "wrn28_10",
    "xla_flops",
]
