"""One exception type for every user-facing mistake.

The CLI turns a :class:`CyphercatError` into one line on stderr and exit code 2, so each message
names the field at fault and the fix, and never needs a traceback to be understood.
"""

from __future__ import annotations


class CyphercatError(ValueError):
    """A problem with the user's input (spec, data, model, cache, flags), with the fix in the message."""

    def __init__(self, field: str, problem: str, fix: str | None = None):
        self.field = field
        self.problem = problem
        self.fix = fix
        msg = f"{field}: {problem}"
        if fix:
            msg += f" -> {fix}"
        super().__init__(msg)


class GateFailed(Exception):
    """Raised after all outputs are written when a ``--fail-if`` condition holds (exit code 3)."""

    def __init__(self, failures: list[str]):
        self.failures = failures
        super().__init__("; ".join(failures))
