"""Terminal output: one Rich console, and progress for long steps.

Everything here writes to stderr so that stdout stays clean for data (kubeconfig,
rendered YAML, JSON) that users pipe into other tools.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.status import Status

_console: Console | None = None


def console() -> Console:
    global _console
    if _console is None:
        # Start-up speed: rich loads on the first output, not when ui is imported
        # (kubeloop.cluster imports ui; `kubeloop cluster list` prints no Rich output).
        from rich.console import Console

        # Not a terminal (CI logs, a pipe): no wrapping at 80 columns, a line stays whole.
        _console = Console(stderr=True, highlight=False, soft_wrap=not sys.stderr.isatty())
    return _console


class Step:
    """A long step in progress: a spinner with elapsed time and the latest detail."""

    def __init__(self, title: str, status: Status | None) -> None:
        self.title = title
        self._status = status
        self._start = time.monotonic()

    def detail(self, text: str) -> None:
        if self._status is not None:
            elapsed = time.monotonic() - self._start
            text = text.strip().replace("[", r"\[")[:100]
            self._status.update(f"{self.title} [dim]({elapsed:.0f}s) {text}[/dim]")

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._start


@contextmanager
def step(title: str, quiet: bool = False) -> Iterator[Step]:
    """Show ``title`` with a spinner while the block runs, then a tick and the time."""
    out = console()
    if quiet:
        yield Step(title, None)
        return
    if out.is_terminal:
        with out.status(title) as status:
            current = Step(title, status)
            yield current
    else:
        out.print(f"… {title}")
        current = Step(title, None)
        yield current
    out.print(f"[green]✓[/green] {title} [dim]{current.elapsed:.1f}s[/dim]")


def info(message: str) -> None:
    """A line of kubeloop's own, which may carry Rich markup."""
    console().print(message)


def plain(message: str) -> None:
    """A line that holds text from elsewhere (a tool, a pod, the user): printed exactly,
    brackets included (Rich would read ``[stage-1 2/5]`` as markup and drop it)."""
    console().print(message, markup=False)


def warn(message: str) -> None:
    console().print(f"[yellow]warning:[/yellow] {escape(message)}")


def error(message: str, hint: str | None = None) -> None:
    console().print(f"[red]error:[/red] {escape(message)}")
    if hint:
        console().print(f"[bold]fix:[/bold] {escape(hint)}")


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)
