"""Errors a user can act on: the CLI prints each as one line (exit 2 for bad input, 1 when results could not be written)."""
from __future__ import annotations

from typing import Any


class UsageError(ValueError):
    """Bad input: an unknown name, a malformed or out-of-range value. The
    message says what was wrong and what is allowed; `detail`, when set (a
    plugin's import traceback), is shown with --debug."""

    def __init__(self, message: str = "", detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class ResultsNotWritten(OSError):
    """The trials ran but their tables could not all be written (a full disk);
    `summary` is what was measured, for the caller to show."""

    def __init__(self, error: OSError, summary: Any) -> None:
        where = f" ({error.filename})" if error.filename else ""
        super().__init__(f"writing the results failed: {error.strerror or error}{where}")
        self.errno = error.errno
        self.summary = summary
