"""Where the time of a start-up goes: phases and moments, measured from the moment the
process started (so the interpreter's own start and the imports count too), printed as
they end by ``kubeloop dev -v``.

Phases may overlap (kubeloop runs independent work concurrently); each line shows its
start and end, so the overlap is visible.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


def _clock() -> float:
    """Seconds since boot, suspend included: the clock the kernel stamps processes with."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def process_start() -> float:
    """When this process started, on ``_clock``'s scale (Linux's /proc; elsewhere: now)."""
    try:
        with open(f"/proc/{os.getpid()}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        # Field 22 of stat(5), in clock ticks since boot; fields[0] here is field 3.
        return int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return _clock()


@dataclass(frozen=True)
class Span:
    name: str
    start: float  # seconds after the process started
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class Timeline:
    """Record with :meth:`phase` (a block) and :meth:`mark` (a moment); ``on_line`` gets
    each as it ends (``kubeloop dev -v`` prints them). Silent unless given ``on_line``."""

    on_line: Callable[[str], None] | None = None
    origin: float = field(default_factory=process_start)
    spans: list[Span] = field(default_factory=list)

    def now(self) -> float:
        return _clock() - self.origin

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = self.now()
        try:
            yield
        finally:
            self._add(Span(name, start, self.now()))

    def mark(self, name: str) -> None:
        moment = self.now()
        self._add(Span(name, moment, moment))

    def seen(self, name: str) -> bool:
        return any(span.name == name for span in self.spans)

    def _add(self, span: Span) -> None:
        self.spans.append(span)
        if self.on_line is not None:
            self.on_line(format_span(span))


def format_span(span: Span) -> str:
    if span.seconds == 0:
        return f"{span.end:7.3f}s  {span.name}"
    return f"{span.end:7.3f}s  {span.name} ({span.start:.3f}s → {span.end:.3f}s, {span.seconds * 1000:.0f} ms)"
