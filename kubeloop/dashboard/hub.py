"""The dashboard's state: rows by section, a bounded log buffer, and one bounded,
numbered event log that every open page reads from at its own pace.

One shared buffer instead of a queue per page: a page that falls behind (a log flood,
a slow tab) does not grow memory; it is told to start again from a snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

Row = dict[str, Any]
Command = Callable[[str, str], Awaitable[str]]  # (action, target) -> what happened

SECTIONS = ("session", "artifacts", "workloads", "sync", "forwards", "bridges", "debuggers",
            "tests", "notes")  # fmt: skip
MAX_LINE = 4096  # a container's log line is untrusted: longer lines are cut
MAX_KEY = 253


class UnknownCommand(ValueError):
    """An action the dashboard does not offer."""


class Hub:
    """What the dev loop publishes to; cheap enough to call on every log line."""

    def __init__(self, log_lines: int = 5000, events: int = 20000) -> None:
        self.rows: dict[str, dict[str, Row]] = {section: {} for section in SECTIONS}
        self.logs: deque[dict[str, Any]] = deque(maxlen=log_lines)
        self._events: deque[str] = deque(maxlen=events)
        self._next = 0  # sequence number of the next event
        self._wakeup = asyncio.Event()
        self.commands: dict[str, Command] = {}
        self._notes = itertools.count()

    # --- publishing ---------------------------------------------------------------------

    def _publish(self, event: dict[str, Any]) -> None:
        event["ts"] = time.time()
        self._events.append(json.dumps(event, separators=(",", ":")))
        self._next += 1
        self._wakeup.set()

    def update(self, section: str, key: str, row: Row | None) -> None:
        """Set (or remove, with None) one row; nothing is sent when it did not change."""
        if section not in self.rows:
            raise ValueError(f"unknown dashboard section {section!r}")
        key = key[:MAX_KEY]
        rows = self.rows[section]
        if row is None:
            if rows.pop(key, None) is None:
                return
        elif rows.get(key) == row:
            return
        else:
            rows[key] = row
        self._publish({"t": "row", "s": section, "k": key, "v": row})

    def patch(self, section: str, key: str, **fields: Any) -> None:
        """Change some fields of a row (created when missing)."""
        self.update(section, key, {**self.rows[section].get(key, {}), **fields})

    def log(self, source: str, line: str) -> None:
        """One log line of a pod (``source`` is pod or pod/container)."""
        pod = source.split("/", 1)[0]
        workload = pod.rsplit("-", 2)[0] if pod.count("-") >= 2 else pod
        entry = {"t": "log", "src": source[:MAX_KEY], "w": workload[:MAX_KEY],
                 "line": line[:MAX_LINE]}  # fmt: skip
        self.logs.append(entry)
        self._publish(dict(entry))

    def note(self, text: str, level: str = "info") -> None:
        """Something the terminal says too (an error, a sync event); the last 50 kept."""
        key = f"{next(self._notes):08d}"
        self.update("notes", key, {"text": text[:MAX_LINE], "level": level,
                                   "at": round(time.time(), 3)})  # fmt: skip
        notes = self.rows["notes"]
        while len(notes) > 50:
            self.update("notes", min(notes), None)

    def result(self, request: str, ok: bool, text: str) -> None:
        """The outcome of a button, for the page that pressed it (and the others)."""
        self._publish({"t": "result", "id": request[:64], "ok": ok, "text": text[:MAX_LINE]})

    # --- reading ------------------------------------------------------------------------

    @property
    def position(self) -> int:
        return self._next

    def snapshot(self) -> dict[str, Any]:
        """Everything a page needs to start, and where its event stream begins."""
        return {"rows": self.rows, "logs": list(self.logs), "seq": self._next}

    def since(self, seq: int) -> list[str] | None:
        """The events from ``seq`` on, encoded; None when some are no longer kept (the
        reader fell behind and must start again from a snapshot)."""
        first = self._next - len(self._events)
        if seq < first or seq > self._next:
            return None
        return list(itertools.islice(self._events, seq - first, None))

    async def wait(self, seq: int, timeout: float) -> None:
        """Until there are events from ``seq`` on, ``timeout`` seconds, or ``wake``."""
        if seq < self._next:
            return
        self._wakeup.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout)

    def wake(self) -> None:
        """End every ``wait`` now (the server is closing)."""
        self._wakeup.set()

    # --- buttons ------------------------------------------------------------------------

    async def run_command(self, action: str, target: str) -> str:
        handler = self.commands.get(action)
        if handler is None:
            raise UnknownCommand(
                f"unknown action {action!r}; offered: {', '.join(sorted(self.commands)) or 'none'}"
            )
        return await handler(action, target)
