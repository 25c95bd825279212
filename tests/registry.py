"""Every Optax transform of the library, with small hyperparameters for the tests.

The interoperability battery (tests/test_interop.py) runs on every entry. A new
transform is added here, once, and gets the whole battery.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import optax

import sparsejax as sj


@dataclasses.dataclass(frozen=True)
class Case:
    """One transform under test.

    Attributes:
      name: test id.
      factory: the public factory, called as ``factory(**hyper, **static)``.
      hyper: numeric hyperparameters; ``optax.inject_hyperparams`` injects these.
      static: other arguments (masks, inner optimizers, strings); passed as
        ``static_args`` to ``optax.inject_hyperparams``.
      schedule_arg: the argument that accepts an ``optax.Schedule`` (the
        learning rate, or what plays its role), or ``None``.
    """

    name: str
    factory: Callable[..., optax.GradientTransformation]
    hyper: dict[str, Any]
    static: dict[str, Any] = dataclasses.field(default_factory=dict)
    schedule_arg: str | None = "learning_rate"

    def make(self, **overrides: Any) -> optax.GradientTransformation:
        return self.factory(**{**self.hyper, **self.static, **overrides})


CASES: list[Case] = [
    Case("dual_averaging", sj.dual_averaging, dict(learning_rate=0.1)),
    Case("dual_averaging_zero", sj.dual_averaging, dict(learning_rate=0.1), dict(center="zero")),
    Case("grda", sj.grda, dict(learning_rate=0.1, c=0.05, mu=0.6)),
    Case(
        "grda_weights_only",
        sj.grda,
        dict(learning_rate=0.1, c=0.05, mu=0.6),
        dict(mask=sj.tree.weights_only),
    ),
    Case("rda", sj.rda, dict(gamma=2.0, l1=0.01), schedule_arg="gamma"),
    Case("rda_init", sj.rda, dict(gamma=2.0, l1=0.01), dict(center="init"), schedule_arg="gamma"),
    Case("irda", sj.irda, dict(gamma=2.0, l1=0.01, retrain_step=2), schedule_arg="gamma"),
    Case("soft_threshold", sj.soft_threshold, dict(threshold=0.01), schedule_arg="threshold"),
    Case("freeze_zeros", sj.freeze_zeros, dict(start_step=1), schedule_arg=None),
    Case("prox_sgd", sj.prox_sgd, dict(learning_rate=0.1, l1=0.05)),
    Case("prox_sgd_momentum", sj.prox_sgd, dict(learning_rate=0.1, l1=0.05, momentum=0.9)),
    Case("sqrt_t_prox_sgd", sj.sqrt_t_prox_sgd, dict(learning_rate=0.1, gamma=2.0, l1=0.01)),
]
