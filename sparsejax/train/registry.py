"""The registry's vocabulary: hyperparameters, method specifications and the lookup functions.

:mod:`sparsejax.train.methods` fills :data:`METHODS` with the library's methods; a
study may :func:`register` its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import optax

from sparsejax._validation import check_choice, check_number, describe_range
from sparsejax.tree import PyTree

__all__ = [
    "METHODS",
    "Context",
    "ExtraMetrics",
    "HParam",
    "MethodSpec",
    "available_methods",
    "describe",
    "get_method",
    "register",
    "resolve_hparams",
]

ExtraMetrics = Callable[[PyTree, PyTree], Mapping[str, Any]]

# --- hyperparameters ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class HParam:
    """One hyperparameter of a method.

    Attributes:
      name: its name (``--hp name=value`` on the command line).
      default: the default value.
      help: what it does.
      source: where the default comes from: the paper (section or table), the reference
        code, or "library default" where neither gives a value.
      kind: ``float``, ``int``, ``bool`` or a tuple of accepted strings.
      gt, ge, lt, le: the accepted range of a number (strict or not).
      optional: whether ``None`` is accepted (``"none"`` on the command line).
    """

    name: str
    default: Any
    help: str
    source: str
    kind: Any = float
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    optional: bool = False

    def range_text(self) -> str:
        """The accepted values, in words (e.g. ``'> 0 and < 1'``)."""
        if isinstance(self.kind, tuple):
            return "one of " + ", ".join(repr(c) for c in self.kind)
        if self.kind is bool:
            return "true or false"
        text = describe_range(self.gt, self.ge, self.lt, self.le)
        text = ("an integer " if self.kind is int else "") + text
        return text + (" (or none)" if self.optional else "")

    def parse(self, value: Any, method: str) -> Any:
        """Converts ``value`` (a number, a bool or a command-line string) and checks its range.

        Raises:
          ValueError: naming the method, the hyperparameter and the accepted values.
        """
        where = f"method {method!r}: hyperparameter {self.name}"
        if isinstance(value, str):
            text = value.strip()
            if self.optional and text.lower() in ("none", "null", ""):
                return None
            if isinstance(self.kind, tuple):
                value = text
            elif self.kind is bool:
                if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(f"{where} must be true or false, got {value!r}")
                value = text.lower() in ("true", "1", "yes")
            else:
                try:
                    value = float(text)
                except ValueError:
                    raise ValueError(
                        f"{where} must be {self.range_text()}, got {value!r}"
                    ) from None
        if value is None:
            if self.optional:
                return None
            raise ValueError(f"{where} must be {self.range_text()}, got None")
        if isinstance(self.kind, tuple):
            try:
                check_choice(self.name, value, self.kind)
            except ValueError as e:
                raise ValueError(f"method {method!r}: {e}") from None
            return value
        if self.kind is bool:
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{where} must be true or false, got {value!r}")
            return bool(value)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
            raise ValueError(f"{where} must be {self.range_text()}, got {value!r}")
        try:
            check_number(self.name, value, gt=self.gt, ge=self.ge, lt=self.lt, le=self.le,
                         integer=self.kind is int)
        except ValueError:
            raise ValueError(f"{where} must be {self.range_text()}, got {value!r}") from None
        return int(value) if self.kind is int else float(value)


# --- what a builder gets ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Context:
    """What a method's builder needs besides its hyperparameters.

    Attributes:
      learning_rate: the learning rate (a float32 array injected by
        :func:`optax.inject_hyperparams`, or a number/schedule for methods
        that are not wrapped).
      momentum: the momentum to use (already resolved; ``None`` for none).
      steps_per_epoch: training steps per epoch.
      epochs: number of epochs.
      params: the params the optimizer will be initialised with (a pure dict).
      sample_params: ``seed -> params`` (pure dict), fresh initialisations of
        the model, for methods that size something from the expected init
        (``sfw``'s polytopes); ``None`` when the caller has none.
    """

    learning_rate: Any
    momentum: float | None
    steps_per_epoch: int
    epochs: int
    params: PyTree
    sample_params: Callable[[int], PyTree] | None = None

    @property
    def total_steps(self) -> int:
        """``steps_per_epoch * epochs``."""
        return self.steps_per_epoch * self.epochs

    def steps(self, epochs: float, *, minimum: int = 0) -> int:
        """``epochs`` (a float) in steps, rounded, at least ``minimum``."""
        return max(minimum, int(round(epochs * self.steps_per_epoch)))


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """A registered training method.

    Attributes:
      name: the registry name.
      summary: one line on what it is.
      reference: the paper (and where in it the defaults come from).
      hparams: its hyperparameters.
      build: ``build(context, hparams) -> optax transform``.
      metrics: ``metrics(hparams) -> extra_metrics(opt_state, params) -> dict`` or ``None``.
      default_learning_rate: the base learning rate used when none is given
        (``None``: the method has no learning rate).
      learning_rate_source: where that value comes from.
      default_momentum: the momentum used when none is given; ``None``: the
        method has no momentum (a given momentum is ignored).
      momentum_source: where that value comes from.
      prepare: ``prepare(model, hparams, seed, sample_params)``, changing the
        freshly built model in place before training (e.g. iRDA's init;
        ``sample_params`` as in :class:`Context`, possibly ``None``), or ``None``.
      sparse: whether the method produces exact zeros.
      mask_update_due: ``mask_update_due(context, hparams) -> (step -> bool)``:
        the host-side rule of the steps at which the transform updates its
        mask (for :func:`sparsejax.train.fit`'s ``mask_update_due``), or
        ``None`` for methods without such steps.
    """

    name: str
    summary: str
    reference: str
    hparams: tuple[HParam, ...]
    build: Callable[[Context, dict[str, Any]], optax.GradientTransformation]
    metrics: Callable[[dict[str, Any]], ExtraMetrics] | None = None
    default_learning_rate: float | None = 0.1
    learning_rate_source: str = ""
    default_momentum: float | None = None
    momentum_source: str = ""
    prepare: Callable[[Any, dict[str, Any], int], None] | None = None
    sparse: bool = True
    mask_update_due: Callable[[Context, dict[str, Any]], Callable[[int], bool]] | None = None

    def hparam(self, name: str) -> HParam:
        """The hyperparameter called ``name``.

        Raises:
          ValueError: naming the accepted hyperparameters.
        """
        for h in self.hparams:
            if h.name == name:
                return h
        names = ", ".join(h.name for h in self.hparams) or "none"
        raise ValueError(
            f"method {self.name!r} has no hyperparameter {name!r}; accepted: {names}"
        )

    @property
    def uses_learning_rate(self) -> bool:
        """Whether the shared learning rate and its schedule apply to this method."""
        return self.default_learning_rate is not None

    @property
    def uses_momentum(self) -> bool:
        """Whether a momentum applies to this method."""
        return self.default_momentum is not None

    def resolve_learning_rate(self, learning_rate: float | None) -> float | None:
        """The base learning rate a run uses: ``learning_rate``, else the default; ``None`` if unused.

        Raises:
          ValueError: for a negative or non-finite learning rate.
        """
        if not self.uses_learning_rate:
            return None
        if learning_rate is None:
            return self.default_learning_rate
        check_number("learning_rate", learning_rate, ge=0)
        return float(learning_rate)

    def resolve_momentum(self, momentum: float | None) -> float | None:
        """The momentum a run uses: ``momentum``, else the default; ``None`` if the method has none.

        Raises:
          ValueError: for a momentum outside ``[0, 1)``.
        """
        if momentum is not None:
            check_number("momentum", momentum, ge=0, lt=1)
        if not self.uses_momentum:
            return None
        return self.default_momentum if momentum is None else float(momentum)


METHODS: dict[str, MethodSpec] = {}
"""Every registered method, by name (see :func:`available_methods`)."""


def register(spec: MethodSpec) -> None:
    """Adds ``spec`` to :data:`METHODS` (a name may be registered once)."""
    if spec.name in METHODS:  # pragma: no cover - programming error
        raise ValueError(f"method {spec.name!r} registered twice")
    METHODS[spec.name] = spec


def available_methods() -> tuple[str, ...]:
    """The names of the registered methods, sorted.

    Example:
      >>> from sparsejax.train.registry import available_methods
      >>> {'sgd', 'gmp', 'grda', 'irda', 'lats'} <= set(available_methods())
      True
    """
    return tuple(sorted(METHODS))


def get_method(method: str) -> MethodSpec:
    """The :class:`MethodSpec` called ``method``.

    Raises:
      ValueError: for an unknown name, listing the known ones.

    Example:
      >>> from sparsejax.train.registry import get_method
      >>> get_method('grda').hparam('mu').default
      0.51
    """
    if method not in METHODS:
        raise ValueError(
            f"unknown method {method!r}; available methods: {', '.join(available_methods())}"
        )
    return METHODS[method]


def resolve_hparams(method: str, hparams: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The full, checked hyperparameters of ``method``: the defaults updated with ``hparams``.

    Values may be numbers, bools, strings of choices, or command-line strings
    (``'1e-3'``, ``'true'``, ``'none'``); they come back typed.

    Args:
      method: a registered method name.
      hparams: the values to change (a subset of the method's hyperparameters).

    Returns:
      A dict with every hyperparameter of the method, in declaration order.

    Raises:
      ValueError: for an unknown method or hyperparameter, or a value out of range.

    Example:
      >>> from sparsejax.train.registry import resolve_hparams
      >>> resolve_hparams('grda', {'c': '1e-3'})
      {'c': 0.001, 'mu': 0.51, 'sparsify': 'weights'}
    """
    spec = get_method(method)
    given = dict(hparams or {})
    for name in given:
        spec.hparam(name)  # raises for an unknown name
    out = {}
    for h in spec.hparams:
        out[h.name] = h.parse(given[h.name], method) if h.name in given else h.default
    return out


def describe(method: str) -> str:
    """A plain-text description of a method and its hyperparameters (defaults, ranges, sources).

    Example:
      >>> from sparsejax.train.registry import describe
      >>> print(describe('sgd').splitlines()[0])
      sgd: SGD with heavy-ball momentum: the dense baseline.
    """
    spec = get_method(method)
    lines = [f"{spec.name}: {spec.summary}", f"  reference: {spec.reference}"]
    if spec.uses_learning_rate:
        lines.append(f"  learning rate: default {spec.default_learning_rate:g} "
                     f"({spec.learning_rate_source})")
    else:
        lines.append("  learning rate: none (the step size is set by gamma; --lr and "
                     "--schedule do not apply)")
    if spec.uses_momentum:
        lines.append(f"  momentum: default {spec.default_momentum:g} ({spec.momentum_source})")
    else:
        lines.append("  momentum: none (a given momentum is ignored)")
    for h in spec.hparams:
        lines.append(f"  {h.name} = {h.default!r}  [{h.range_text()}]")
        lines.append(f"      {h.help}")
        lines.append(f"      default from: {h.source}")
    return "\n".join(lines)
