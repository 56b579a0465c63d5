"""Errors a user can act on. The CLI prints them as one line and exits 2."""


class UsageError(ValueError):
    """Bad input: an unknown name, a malformed or out-of-range value. The
    message says what was wrong and what is allowed."""
