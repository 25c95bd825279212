"""Flax NNX model zoo."""

from sparsejax.models.mlp import MLP, lenet_300_100

__all__ = ["MLP", "lenet_300_100"]
