"""The memory guard: refuse a trial the machine cannot hold, before it starts.

A trial's need is the analytic model's numpy peak for it
(`Experiment.expected_for(...).numpy_bytes_peak`) plus INTERPRETER_BYTES for the
trial's own interpreter (Python, numpy, pandas-free probes: about 100 MB
resident, measured). Trials that run at once (`--jobs N`) share the memory:
each may use an equal share of what is usable, which is the memory psutil
reports available minus a MARGIN left for everything else on the machine.

A trial that needs more is refused (one line with the estimate and the
available memory) unless the user forces it. A forced run's trials each run
under an address-space limit (RLIMIT_AS, set by the trial itself): their
share plus ADDRESS_SPACE_ALLOWANCE, the address space an idle trial maps
without using it (shared libraries, thread stacks: about 300 MB measured).
Running out then makes numpy raise MemoryError in the trial, which fails
the trial, not the machine. RLIMIT_AS rather than RLIMIT_DATA: both stop
numpy's large allocations here (numpy maps them anonymously), but the
address space also bounds stacks and file mappings.

Where the model makes no estimate (an external engine, a user's file
engine), the guard says so and does not refuse.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import psutil

from harness.errors import UsageError
from harness.experiment import Experiment, Params

INTERPRETER_BYTES = 150 * 2**20
ADDRESS_SPACE_ALLOWANCE = 512 * 2**20
MARGIN = 0.20  # of available memory, left to the rest of the machine


@dataclass(frozen=True)
class TrialNeed:
    variant: str
    params: dict[str, Any]
    numpy_bytes_peak: int | None  # None: the model makes no estimate

    @property
    def bytes(self) -> int | None:
        return None if self.numpy_bytes_peak is None else self.numpy_bytes_peak + INTERPRETER_BYTES

    def label(self) -> str:
        return f"{self.variant} " + " ".join(f"{k}={v}" for k, v in self.params.items())


@dataclass
class GuardReport:
    """What the guard found; recorded in meta.json as `memory_guard`."""

    available_bytes: int
    usable_bytes_per_trial: int
    jobs: int
    largest_need_bytes: int | None
    forced: bool
    memory_limit_bytes: int | None
    without_estimate: list[str] = field(default_factory=list)
    margin: float = MARGIN
    interpreter_bytes: int = INTERPRETER_BYTES

    def as_meta(self) -> dict[str, Any]:
        return asdict(self)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def trial_needs(experiment: Experiment, variants: list[str], param_sets: list[Params]) -> list[TrialNeed]:
    return [
        TrialNeed(variant, dict(params), experiment.expected_for(variant, Params(params)).numpy_bytes_peak)
        for params in param_sets
        for variant in variants
    ]


def check_memory(needs: list[TrialNeed], jobs: int, force: bool, available_bytes: int | None = None) -> GuardReport:
    """Refuse (UsageError) when a trial's estimated need exceeds its share of usable memory,
    unless forced; a forced run gets an address-space limit per trial."""
    available = psutil.virtual_memory().available if available_bytes is None else available_bytes
    concurrent = max(1, min(jobs, len(needs)))
    share = int(available * (1 - MARGIN)) // concurrent
    estimated = [need for need in needs if need.bytes is not None]
    largest = max(estimated, key=lambda need: need.bytes or 0, default=None)
    if largest is not None and largest.bytes > share and not force:
        together = f" (its share with --jobs {concurrent})" if concurrent > 1 else ""
        raise UsageError(
            f"memory guard: trial {largest.label()} needs an estimated {human_bytes(largest.bytes)} "
            f"(numpy peak {human_bytes(largest.numpy_bytes_peak or 0)} + {human_bytes(INTERPRETER_BYTES)} "
            f"interpreter), more than the {human_bytes(share)}{together} it may use of "
            f"{human_bytes(available)} available ({MARGIN:.0%} kept free); use smaller parameters, "
            f"or --force to run it under a memory limit"
        )
    return GuardReport(
        available_bytes=available,
        usable_bytes_per_trial=share,
        jobs=concurrent,
        largest_need_bytes=None if largest is None else largest.bytes,
        forced=force,
        memory_limit_bytes=share + ADDRESS_SPACE_ALLOWANCE if force else None,
        without_estimate=sorted({need.variant for need in needs if need.bytes is None}),
    )
