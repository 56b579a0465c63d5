"""dezero-memlab's harness: run memory experiments on DeZero-style engines.

The command line is `python -m harness` (see harness.cli); from Python,
`harness.run(...)` and `harness.load(...)` (see harness.api).
"""
from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # Imported on first use, so `python -m harness.trial` starts without
    # pandas and matplotlib in the measured process.
    if name in ("run", "load", "Run"):
        from harness import api

        return getattr(api, name)
    raise AttributeError(name)


__all__ = ["run", "load", "Run"]
