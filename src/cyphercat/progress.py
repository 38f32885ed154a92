"""Progress bars (rich) and logging for long runs, reachable from deep library code.

The CLI opens one :class:`Progress` around the audit; entering it makes it the current one, so a trainer
or an attack reports with ``get_progress().task(...)`` without a progress object threaded through every
signature. Outside such a block the current progress is a quiet one and every call is a no-op, which
keeps the library silent when used from Python or tests.

    with Progress(quiet=args.quiet):
        overall = get_progress().task("training models", total=n)
        for i in range(n):
            with get_progress().task(f"model {i}", total=epochs, transient=True) as bar:
                for _ in range(epochs):
                    bar.advance()
            overall.advance()
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from rich import progress as rp
from rich.console import Console
from rich.logging import RichHandler

T = TypeVar("T")
LOGGER = "cyphercat"
# One stderr console for bars and log lines, so log records print above the live bars instead of through them.
_console = Console(stderr=True)


class TaskHandle:
    """One bar. ``advance`` is cheap and thread-safe; a transient bar disappears when closed."""

    def __init__(self, owner: rp.Progress | None, task_id: Any = None, transient: bool = False):
        self._owner, self._id, self._transient = owner, task_id, transient

    def advance(self, n: float = 1) -> None:
        if self._owner is not None:
            self._owner.advance(self._id, n)

    def update(self, *, total: float | None = None, description: str | None = None,
               completed: float | None = None) -> None:
        if self._owner is not None:
            self._owner.update(self._id, total=total, description=description, completed=completed)

    def close(self) -> None:
        if self._owner is None:
            return
        if self._transient:
            self._owner.remove_task(self._id)
        else:
            task = self._owner.tasks[self._owner.task_ids.index(self._id)] if self._id in self._owner.task_ids else None
            if task is not None and task.total is not None:
                self._owner.update(self._id, completed=task.total)
        self._owner = None

    def __enter__(self) -> TaskHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Progress:
    """Rich progress bars, or nothing at all with ``quiet=True``. Use as a context manager."""

    def __init__(self, quiet: bool = False, console: Console | None = None):
        self.quiet = quiet
        self._rich: rp.Progress | None = None
        if not quiet:
            self._rich = rp.Progress(
                rp.SpinnerColumn(),
                rp.TextColumn("{task.description}", markup=False),
                rp.BarColumn(),
                rp.MofNCompleteColumn(),
                rp.TimeElapsedColumn(),
                rp.TimeRemainingColumn(),
                console=console or _console,
            )
        self._previous: Progress | None = None

    def __enter__(self) -> Progress:
        global _current
        self._previous, _current = _current, self
        if self._rich is not None:
            self._rich.start()
        return self

    def __exit__(self, *exc: object) -> None:
        global _current
        if self._rich is not None:
            self._rich.stop()
        _current = self._previous if self._previous is not None else _QUIET

    def task(self, description: str, total: float | None = None, transient: bool = False) -> TaskHandle:
        """A new bar; ``total=None`` shows a spinner until ``update(total=...)``."""
        if self._rich is None:
            return TaskHandle(None)
        return TaskHandle(self._rich, self._rich.add_task(description, total=total), transient)

    def track(self, iterable: Iterable[T], description: str, total: float | None = None) -> Iterator[T]:
        """Yield from ``iterable`` and advance a transient bar per item."""
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        with self.task(description, total=total, transient=True) as bar:
            for item in iterable:
                yield item
                bar.advance()


_QUIET = Progress(quiet=True)
_current: Progress = _QUIET


def get_progress() -> Progress:
    """The progress of the enclosing ``with Progress(...)`` block, or a quiet one."""
    return _current


def set_progress(progress: Progress | None) -> Progress:
    """Install ``progress`` as the current one (None = quiet); returns the previous one."""
    global _current
    previous, _current = _current, progress or _QUIET
    return previous


def setup_logging(quiet: bool = False, verbose: bool = False) -> logging.Logger:
    """Route the ``cyphercat`` logger to stderr through rich: WARNING when quiet, DEBUG when verbose,
    INFO otherwise. Calling it again replaces the handler instead of adding a second one."""
    logger = logging.getLogger(LOGGER)
    for h in [h for h in logger.handlers if getattr(h, "_cyphercat", False)]:
        logger.removeHandler(h)
    handler = RichHandler(console=_console, show_path=False, markup=False, rich_tracebacks=False,
                          show_time=verbose)
    handler._cyphercat = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    return logger
