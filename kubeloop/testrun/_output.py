"""What runs around a test command in the container, and reading what comes back.

The command runs under a small POSIX ``sh`` script (no other tool needed in the image
beyond ``rm``, ``cat`` and ``sleep``, which every Debian or Alpine image has):

- variables are exported first (``kubectl exec`` cannot set any);
- a stale JUnit report is removed before the run, so a command that fails before writing
  one is not credited with the last run's results;
- with ``watch`` (exec), the script reads its stdin (kept on fd 3: a background job's
  stdin would be /dev/null): ``kubectl exec -i`` closes it when
  kubeloop stops or gives up on a timeout (even killed, its stream ends), and the
  command is then stopped. Killing ``kubectl`` alone would leave it running in the pod;
- after the command, the report follows on stdout behind a line with a marker chosen
  per run, so it comes back on the same stream as the output (one ``exec``, or the
  Job's log), without a second round trip.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

from kubeloop.testrun._junit import MAX_REPORT

SCRIPT = r"""j=$1; m=$2; w=$3; shift 3
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do export "$1"; shift; done
shift
[ -n "$j" ] && rm -f -- "$j"
exec 3<&0
"$@" 3<&- &
p=$!
if [ "$w" = 1 ]; then
  (while read -r _; do :; done; kill -TERM "$p" 2>/dev/null; sleep 2; kill -KILL "$p" 2>/dev/null) <&3 &
  g=$!
fi
exec 3<&-
wait "$p"; c=$?
# Reaped here: an orphan would wait on the app's process 1, which may never reap it.
[ -n "$g" ] && kill "$g" 2>/dev/null && wait "$g" 2>/dev/null
if [ -n "$j" ] && [ -f "$j" ]; then printf '\n%s\n' "$m"; cat -- "$j"; fi
exit "$c"
"""
VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_LINE = 16 << 10  # characters of one output line shown; longer ones are split
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def new_marker() -> str:
    return f"kubeloop-junit-{secrets.token_hex(12)}"


def wrapped(command: list[str], env: dict[str, str], junit: str | None, marker: str,
            watch: bool) -> list[str]:  # fmt: skip
    """The argv to run in the container: ``sh -c SCRIPT`` around ``command``."""
    for name in env:
        if not VARIABLE.match(name):
            raise ValueError(f"'{name}' is not a valid variable name")
    pairs = [f"{name}={value}" for name, value in env.items()]
    return ["sh", "-c", SCRIPT, "kubeloop-test", junit or "", marker, "1" if watch else "0",
            *pairs, "--", *command]  # fmt: skip


def clean(line: str) -> str:
    """A line from a container, safe to print: no terminal escapes, no control
    characters (tabs stay)."""
    return _CONTROL.sub("", _ANSI.sub("", line))


class Output:
    """Splits a command's bytes into printable lines and, after the marker line, keeps
    the JUnit report (at most ``MAX_REPORT`` bytes; ``overflow`` tells when there was
    more). Feed it from one stream; call ``close`` at its end."""

    def __init__(self, on_line: Callable[[str], None], marker: str | None = None) -> None:
        self.on_line = on_line
        self.marker = marker.encode() if marker else None
        self.report: bytearray | None = None
        self.overflow = False
        self._partial = b""
        self._blank = False  # an empty line held back: the script puts one before the marker

    def feed(self, data: bytes) -> None:
        if self.report is not None:
            self._keep(data)
            return
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for index, raw in enumerate(lines):
            if self.marker is not None and raw.rstrip(b"\r") == self.marker:
                self.report = bytearray()
                self._blank = False
                self._keep(b"\n".join(lines[index + 1 :]) + b"\n" + self._partial
                           if index + 1 < len(lines) else self._partial)  # fmt: skip
                self._partial = b""
                return
            self._line(raw)
        while len(self._partial) > MAX_LINE * 4:  # a long line without newline: show parts
            self._line(self._partial[: MAX_LINE * 4])
            self._partial = self._partial[MAX_LINE * 4 :]

    def close(self) -> None:
        if self.report is None and self._partial:
            self._line(self._partial)
        self._partial = b""
        if self._blank:
            self._emit("")
            self._blank = False

    def _keep(self, data: bytes) -> None:
        assert self.report is not None
        room = MAX_REPORT + 1 - len(self.report)
        if len(data) > room:
            self.overflow = True
        self.report += data[: max(room, 0)]

    def _line(self, raw: bytes) -> None:
        text = clean(raw.decode(errors="replace").rstrip("\r"))
        if self._blank:
            self._emit("")
            self._blank = False
        if not text:
            self._blank = True
            return
        self._emit(text)

    def _emit(self, text: str) -> None:
        for start in range(0, max(len(text), 1), MAX_LINE):
            self.on_line(text[start : start + MAX_LINE])
