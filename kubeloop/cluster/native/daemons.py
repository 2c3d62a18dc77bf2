"""Host processes of the native cluster: start detached, record, check, stop.

Each component runs in its own session (it outlives the ``kubeloop`` command that
started it) with its output in a log file. A pid file holds the pid and the process'
start time, so a recycled pid is never mistaken for our process.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kubeloop.core import WaitTimeout, wait_until
from kubeloop.errors import KubeloopError


@dataclass(frozen=True)
class Daemon:
    name: str
    argv: tuple[str, ...]
    pid_dir: Path
    log_dir: Path
    env: tuple[tuple[str, str], ...] = ()

    @property
    def pid_file(self) -> Path:
        return self.pid_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime) comes after the parenthesised command, which may hold spaces.
    return stat.rsplit(")", 1)[1].split()[19]


def fingerprint(daemon: Daemon) -> str:
    """A hash of the command line and of the small files it names (configs, certs,
    kubeconfigs; the binary by path only)."""
    digest = hashlib.sha256("\0".join(daemon.argv).encode())
    for arg in daemon.argv[1:]:
        path = Path(arg.split("=", 1)[-1])
        try:
            if path.is_absolute() and path.is_file() and path.stat().st_size < 1 << 20:
                digest.update(path.read_bytes())
        except OSError:
            continue
    return digest.hexdigest()[:16]


def _pid_record(daemon: Daemon) -> list[str]:
    try:
        return daemon.pid_file.read_text().split()
    except OSError:
        return []


def started_with(daemon: Daemon) -> str | None:
    """The fingerprint the running process was started with (None: an older kubeloop
    started it, which recorded none)."""
    record = _pid_record(daemon)
    return record[2] if len(record) > 2 else None


def running_pid(daemon: Daemon) -> int | None:
    try:
        pid_text, started = _pid_record(daemon)[:2]
        pid = int(pid_text)
    except ValueError:
        return None
    if _start_time(pid) != started:
        return None
    try:
        if Path(f"/proc/{pid}/status").read_text().find("State:\tZ") >= 0:
            return None
    except OSError:
        return None
    return pid


def start(daemon: Daemon) -> int:
    """Start ``daemon`` unless it already runs; return its pid."""
    existing = running_pid(daemon)
    if existing is not None:
        return existing
    daemon.pid_dir.mkdir(parents=True, exist_ok=True)
    daemon.log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **dict(daemon.env)}
    with daemon.log_file.open("ab") as log:
        try:
            process = subprocess.Popen(
                daemon.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                env=env,
            )
        except OSError as exc:
            raise KubeloopError(f"cannot start {daemon.name}: {exc}") from exc
    started = _start_time(process.pid) or "0"
    daemon.pid_file.write_text(f"{process.pid} {started} {fingerprint(daemon)}\n")
    return process.pid


def exited_early(daemon: Daemon) -> str | None:
    """If the daemon died, the tail of its log (where it says why)."""
    if running_pid(daemon) is not None:
        return None
    return log_tail(daemon.log_file)


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.strip().splitlines()[-lines:])


async def stop(daemons: Sequence[Daemon], grace: float = 3.0) -> None:
    """SIGTERM all, wait up to ``grace`` seconds, then SIGKILL what is left."""
    pids = {d.name: p for d in daemons if (p := running_pid(d)) is not None}
    for pid in pids.values():
        _signal_group(pid, signal.SIGTERM)
    with contextlib.suppress(WaitTimeout):
        await wait_until(lambda: not any(_alive(p) for p in pids.values()), grace, 0.05,
                         "components to stop")  # fmt: skip
    for pid in pids.values():
        if _alive(pid):
            _signal_group(pid, signal.SIGKILL)
    for daemon in daemons:
        daemon.pid_file.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in state


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
