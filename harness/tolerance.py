"""How `compare` judges a noisy metric: the tolerance and the significance level.

Apart from compare itself so that the command line can say what
`--tolerance` means without importing pandas and scipy to print its help.
"""
from __future__ import annotations

import math

from harness.errors import UsageError

DEFAULT_TOLERANCE = 0.10  # the minimum factor minus one: medians must differ by more than 10 %
DEFAULT_ALPHA = 0.05      # the one-sided Mann-Whitney U test's significance level
TOLERANCE_HELP = ("minimum factor minus one for noisy metrics (RSS, time), as a fraction: 0.1 (the default) "
                  "means the current median must exceed the baseline's by more than 10%%, in addition to "
                  "a significant Mann-Whitney U test over the repeats")


def check_settings(tolerance: float, alpha: float = DEFAULT_ALPHA) -> None:
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance >= 0):
        raise UsageError("--tolerance is the minimum factor minus one, a fraction (0.1: the current median must "
                         f"exceed the baseline's by more than 10%); it must be at least 0, got {tolerance!r}")
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise UsageError(f"alpha is the test's significance level, a probability between 0 and 1, got {alpha!r}")
