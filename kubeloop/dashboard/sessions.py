"""How ``kubeloop ui`` finds a running dev session's dashboard, or asks for one.

Every ``kubeloop dev`` leaves a small record (one file per process, readable by its
owner only: the URL holds the token) under the user state directory while it runs. A
session started with ``--ui`` records its URL at once; one without it opens the
dashboard when ``kubeloop ui`` sends it SIGUSR1, then records the URL. Nothing of the
web server is imported until then, so a dev without a page pays for none of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs

from kubeloop.core import WaitTimeout, wait_until
from kubeloop.errors import KubeloopError

if TYPE_CHECKING:
    from kubeloop.dashboard.live import Dashboard
    from kubeloop.devloop.dev import DevLoop

ASK = signal.SIGUSR1


@dataclass
class RunningDashboard:
    url: str  # empty until the dashboard is open
    project: str
    namespace: str
    root: str
    pid: int
    started: str  # the process's start time (/proc), so a reused pid is not taken for it


def state_dir() -> Path:
    override = os.environ.get("KUBELOOP_STATE_DIR")
    path = Path(override) if override else Path(platformdirs.user_state_dir("kubeloop"))
    path = path / "dashboards"
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise KubeloopError(f"cannot create {path}: {exc.strerror}",
                            "make it writable, or point KUBELOOP_STATE_DIR elsewhere") from exc  # fmt: skip
    return path


def _start_time(pid: int) -> str:
    """Field 22 of /proc/PID/stat (after the command name, which may hold spaces)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]


def _same_process(entry: RunningDashboard) -> bool:
    if entry.started:
        return _start_time(entry.pid) == entry.started
    if Path("/proc/self/stat").exists():
        return False  # written where start times can be read: not by a dev session
    try:  # no /proc (macOS): alive is all there is to know
        os.kill(entry.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def record(entry: RunningDashboard) -> Path:
    path = state_dir() / f"{entry.pid}.json"
    # Written aside and renamed: `kubeloop ui` may be reading it at that moment.
    partial = path.with_suffix(".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(json.dumps(asdict(entry)))
    os.replace(partial, path)
    return path


def running() -> list[RunningDashboard]:
    """The records of dev sessions still running; those of ended ones (a killed
    process leaves its record) are removed: kubeloop wrote them."""
    found = []
    for path in sorted(state_dir().glob("*.json")):
        try:
            entry = RunningDashboard(**json.loads(path.read_text()))
            entry.pid = int(entry.pid)
        except (OSError, ValueError, TypeError):
            continue
        if path.stem == str(entry.pid) and _same_process(entry):
            found.append(entry)
        else:
            path.unlink(missing_ok=True)
    return found


def choose(project: str | None = None) -> RunningDashboard:
    """The one running dev session (of ``project`` when given), or a clear error."""
    found = running()
    if project is not None:
        found = [d for d in found if d.project == project]
    if not found:
        raise KubeloopError(
            "no `kubeloop dev` session is running"
            + (f" for project {project!r}" if project else ""),
            "start one (`kubeloop dev`, or `kubeloop dev --ui` to open the dashboard at once)",
        )
    if len(found) > 1:
        names = ", ".join(f"{d.project} (pid {d.pid})" for d in found)
        raise KubeloopError(f"several dev sessions are running: {names}",
                            "name one with `kubeloop ui --project NAME`")  # fmt: skip
    return found[0]


async def dashboard_url(project: str | None = None, timeout: float = 20.0) -> str:
    """The URL of a running session's dashboard; a session without one is asked to
    open it (SIGUSR1), and its URL awaited."""
    entry = choose(project)
    if entry.url:
        return entry.url
    os.kill(entry.pid, ASK)

    def opened() -> str:
        again = [d for d in running() if d.pid == entry.pid]
        if not again:
            raise KubeloopError(f"the dev session (pid {entry.pid}) ended")
        return again[0].url

    try:
        await wait_until(lambda: bool(opened()), timeout, 0.1, "the dashboard")
    except WaitTimeout:
        raise KubeloopError(f"the dev session (pid {entry.pid}) did not open its dashboard "
                            f"within {timeout:.0f}s",
                            "look at its terminal for an error; or restart it with "
                            "`kubeloop dev --ui`") from None  # fmt: skip
    return opened()


@contextlib.asynccontextmanager
async def dashboard_for(loop: DevLoop, port: int | None,
                        on_open: Callable[[str], None]) -> AsyncIterator[None]:  # fmt: skip
    """For as long as ``loop`` runs: its record, and its dashboard, opened now (a
    ``port``: ``dev --ui``) or when ``kubeloop ui`` asks."""
    session = loop.session
    entry = RunningDashboard("", session.config.project.name, session.namespace,
                             str(session.config.root), os.getpid(), _start_time(os.getpid()))  # fmt: skip
    opened: list[Dashboard] = []
    asked: set[asyncio.Task[None]] = set()

    async def open_dashboard(port: int) -> None:
        from kubeloop.dashboard.live import Dashboard

        if opened:
            return
        dashboard = await Dashboard.open(port)
        opened.append(dashboard)
        dashboard.watch_session(session)
        loop.attach_dashboard(dashboard)
        entry.url = dashboard.url
        _try_record(entry, loud=True)
        on_open(dashboard.url)

    async def on_request() -> None:
        try:
            await open_dashboard(0)
        except KubeloopError as exc:
            from kubeloop import ui

            ui.warn(f"dashboard: {exc.message}")

    events = asyncio.get_running_loop()
    if port is not None:
        await open_dashboard(port)
    else:
        # The handler goes in before the record: SIGUSR1 would otherwise end the process.
        events.add_signal_handler(ASK, lambda: asked.add(asyncio.create_task(on_request())))
    path = _try_record(entry, loud=False)  # with --ui, open_dashboard has said it
    try:
        yield
    finally:
        if port is None:
            events.remove_signal_handler(ASK)
        for task in asked:
            task.cancel()
        await asyncio.gather(*asked, return_exceptions=True)
        if path is not None:
            path.unlink(missing_ok=True)
        for dashboard in opened:
            await dashboard.close()


def _try_record(entry: RunningDashboard, loud: bool) -> Path | None:
    """A state directory that cannot be written does not stop dev: `kubeloop ui` just
    cannot find this session (said when a dashboard is open, whose URL dev printed)."""
    try:
        return record(entry)
    except (KubeloopError, OSError) as exc:
        if loud:
            from kubeloop import ui

            ui.warn(f"dashboard: `kubeloop ui` will not find this session ({exc})")
        return None
