"""What an experiment is: a definition, not a script.

An `Experiment` names its workload (a function of a `Workbench`), the
variants it applies to, its parameters with types and defaults, the probes
it enables, and its analytic model: the array bytes it expects per variant
and parameters, and the expectations `check` evaluates.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from harness.errors import UsageError
from harness.probes import DEFAULT_PROBES, TrialState


class Params(dict):
    """Parameter values by name, also readable as attributes (`p.size`)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass(frozen=True)
class Param:
    name: str
    type: type
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None

    def kind(self) -> str:
        return {int: "a whole number", float: "a number", str: "a string"}.get(self.type, self.type.__name__)

    def parse(self, text: str) -> Any:
        """Turn one command-line value into a checked value of this parameter."""
        if self.type is int:
            value = _parse_int(self.name, text)
        elif self.type is float:
            try:
                value = float(text)
            except ValueError:
                raise UsageError(f"parameter {self.name!r} takes a number, got {text!r}") from None
        else:
            value = text
        return self.validate(value)

    def validate(self, value: Any) -> Any:
        if self.type in (int, float) and isinstance(value, bool):
            raise UsageError(f"parameter {self.name!r} takes {self.kind()}, got {value!r}")
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            value = int(value)  # numpy's integers (np.int64) are whole numbers too
        elif isinstance(value, numbers.Real) and not isinstance(value, (bool, int, float)):
            value = float(value)
        if self.type in (int, float) and isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"parameter {self.name!r} takes {self.kind()}, got {value!r}")
        if self.type is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        if self.type is float and isinstance(value, int):
            value = float(value)
        if not isinstance(value, self.type):
            raise UsageError(
                f"parameter {self.name!r} takes {self.kind()}, got {value!r}"
            )
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(str(c) for c in self.choices)
            raise UsageError(f"parameter {self.name!r} must be one of: {allowed}; got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise UsageError(f"parameter {self.name!r} must be at least {self.minimum:g}; got {value!r}")
        return value


def _parse_int(name: str, text: str) -> int:
    # Sizes read best as 1e6; accept that when it is a whole number.
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        raise UsageError(f"parameter {name!r} takes a whole number, got {text!r}") from None
    if not math.isfinite(number) or not number.is_integer():
        raise UsageError(f"parameter {name!r} takes a whole number, got {text!r}")
    return int(number)


@dataclass(frozen=True)
class Ref:
    """An expected value read from another column of the same row, times `scale`
    (a Fraction keeps e.g. bytes-per-Function exact), plus `offset`."""

    column: str
    scale: Fraction = Fraction(1)
    offset: int = 0  # added after scaling, e.g. the bytes of the one graph still in use

    def resolve(self, row: Mapping[str, Any]) -> Any:
        value = row.get(self.column)
        if _missing(value):
            return None
        number = Fraction(int(value)) if float(value).is_integer() else Fraction(float(value))
        return number * self.scale + self.offset


@dataclass(frozen=True)
class Expectation:
    """A statement the analytic model makes about one trial's summary row.

    `relation` is "==" (exact: tracemalloc's numpy domain with the GC off, or
    a variant freed by reference counting alone), "<", "<=", ">=", ">" or "between"
    (`expected` is then a (low, high) pair). `expected` may be a `Ref`.
    """

    description: str
    metric: str
    relation: str
    expected: Any

    def expected_value(self, row: Mapping[str, Any]) -> Any:
        if isinstance(self.expected, Ref):
            return self.expected.resolve(row)
        return self.expected

    def holds(self, row: Mapping[str, Any]) -> bool:
        measured = row.get(self.metric)
        expected = self.expected_value(row)
        if _missing(measured) or expected is None:
            return False
        if self.relation == "==":
            return measured == expected
        if self.relation == "<=":
            return measured <= expected
        if self.relation == "<":
            return measured < expected
        if self.relation == ">":
            return measured > expected
        if self.relation == ">=":
            return measured >= expected
        if self.relation == "between":
            low, high = expected
            return low <= measured <= high
        raise ValueError(f"unknown relation {self.relation!r}")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


# Claims about trials side by side rather than one trial alone, stated as
# an experiment's `comparisons` and judged by harness.check:
# - `Ordering`: one variant against another at the same parameters
#   ("with the GC on, strongref's peak is above weakref's");
# - `Trend`: one metric along a swept parameter ("strongref's collections do
#   not change with the array size; its peak is proportional to it").


@dataclass(frozen=True)
class Ordering:
    """`metric` of the trials selected by `left` stands in `relation` to that
    of the trials selected by `right`. A selection maps columns (variant or a
    parameter) to values, e.g. {"variant": "strongref", "gc": "on"}. Trials
    are paired where they agree on the repeat and on every column that is not
    named in both selections (so left={"variant": "retain_grad", "op":
    "square"}, right={"variant": "weakref"} pairs with weakref's op=square)."""

    description: str
    metric: str
    relation: str
    left: Mapping[str, Any]
    right: Mapping[str, Any]


@dataclass(frozen=True)
class Trend:
    """Along the swept parameter `along`, for the trials selected by `select`
    (other parameters, variant and repeat equal): each trial's `metric` stands
    in `relation` to that of the trial with the next smaller `along`.
    `per_unit` divides the metric by `along` first, so "==" then says the
    metric is proportional to the parameter; `tolerance` lets "==" pass
    within that relative difference (0: exact)."""

    description: str
    metric: str
    relation: str
    along: str
    select: Mapping[str, Any] = field(default_factory=dict)
    per_unit: bool = False
    tolerance: float = 0.0


@dataclass(frozen=True)
class Expected:
    """The model's array bytes for one trial: held at the end, and the peak.
    None where the model makes no claim. `bound`: the figures are an upper
    bound, not a prediction (strongref with the GC on: what would be held if
    no collection ran) -- shown as a bound, never divided into a ratio."""

    numpy_bytes_final: int | None
    numpy_bytes_peak: int | None = None
    bound: bool = False
    # Where the model claims no peak: a ceiling on it for the memory guard
    # alone (never shown or checked as an expected figure).
    guard_peak: int | None = None


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    seed_step: str
    claim: str
    workload: Callable[["Workbench"], None]
    variants: tuple[str, ...]
    params: tuple[Param, ...]
    expected: Callable[[str, Params], Expected]
    expectations: Callable[[str, Params], list[Expectation]]
    probes: tuple[str, ...] = DEFAULT_PROBES
    # Parameters swept by default (name -> values) unless the user sets them.
    sweep: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    doc: str = ""
    # Statements comparing trials of one run (harness.check.Ordering, Trend),
    # e.g. "with the GC on, strongref's peak is above weakref's".
    comparisons: tuple[Any, ...] = ()
    # The engine ops a trial with these parameters calls: a user's engine that
    # lacks one is refused at plan time, not failed half-way.
    ops: Callable[[Params], frozenset[str]] = field(default=lambda p: frozenset({"square"}))
    # The trial's own summary figures, from the rows its workload recorded
    # (`Workbench.record`): exp_mlp's mean loss of its first and last epoch,
    # which an Expectation can then judge like any measured figure.
    recorded_figures: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None

    def param(self, name: str) -> Param:
        for param in self.params:
            if param.name == name:
                return param
        names = ", ".join(p.name for p in self.params)
        raise UsageError(f"experiment {self.name!r} has no parameter {name!r}; parameters: {names}")

    def defaults(self) -> Params:
        return Params({p.name: p.default for p in self.params})

    def default_values(self, name: str) -> list[Any]:
        """The values a trial plan takes for `name` when the user does not set it."""
        return list(self.sweep.get(name, (self.param(name).default,)))

    def expected_for(self, variant: str, params: Params) -> Expected:
        """The model's bytes for a trial of `variant`, an external one included."""
        from harness.model import modelled_as

        return self.expected(modelled_as(variant), params)


@dataclass
class Workbench:
    """What a workload is given: the engine, its parameters, a seeded random
    generator, and the sample points where probes read memory."""

    engine: Any
    params: Params
    rng: np.random.Generator
    state: TrialState
    on_sample: Callable[[int, str], None] = field(default=lambda iteration, phase: None)
    on_record: Callable[[dict[str, Any]], None] = field(default=lambda row: None)

    @property
    def iteration(self) -> int:
        return self.state.iteration

    def iterations(self, count: int) -> Iterator[int]:
        """`for i in bench.iterations(n)`: probes sample at the end of each iteration,
        while the loop body's variables are still bound, as in the seeds' loops."""
        for i in range(count):
            self.state.iteration = i
            yield i
            self.on_sample(i, "end")

    def sample(self, phase: str) -> None:
        """An extra sample point inside an iteration (e.g. "forward", "backward")."""
        self.on_sample(self.state.iteration, phase)

    def record(self, **fields: Any) -> None:
        """A row of the workload's own findings (e.g. a census of what the GC
        collected), written to the run's `records` table."""
        self.on_record({"iteration": self.state.iteration, **fields})

    def random_array(self, shape: int | tuple[int, ...]) -> np.ndarray:
        """Standard-normal data of the experiment's dtype, made without a temporary copy."""
        return self.rng.standard_normal(shape, dtype=np.dtype(self.params.get("dtype", "float64")))


# Parameters most experiments share. `gc` is applied by the trial runner:
# "off" disables the cyclic collector for the workload.
GC_PARAM = Param("gc", str, "on", "cyclic garbage collector during the workload", choices=("on", "off"))
SEED_PARAM = Param("seed", int, 0, "seed of the random arrays (repeat r uses seed + r)", minimum=0)
DTYPE_PARAM = Param("dtype", str, "float64", "array dtype", choices=("float64", "float32"))
