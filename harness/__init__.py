"""dezero-memlab's harness: run memory experiments on DeZero-style engines.

The command line is `python -m harness` (see harness.cli); from Python,
`harness.run(...)` and `harness.load(...)` (see harness.api), and the parts
an experiment of your own is written with (`harness.Experiment`, `Param`,
`Expected`, `Expectation`, `Ordering`, ...: see harness.experiment).
"""
from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # Imported on first use, so `python -m harness.trial` starts without
    # pandas and matplotlib in the measured process.
    if name in ("run", "load", "Run"):
        from harness import api

        return getattr(api, name)
    if name in DEFINITION_NAMES:
        from harness import experiment

        return getattr(experiment, name)
    raise AttributeError(name)


DEFINITION_NAMES = ("Experiment", "Param", "Params", "Expected", "Expectation", "Ordering", "Trend", "Ref",
                    "Workbench", "GC_PARAM", "SEED_PARAM", "DTYPE_PARAM")
__all__ = ["run", "load", "Run", *DEFINITION_NAMES]
