"""``kubeloop dev``: build, deploy, then watch; rebuild and redeploy only what changed,
with port-forwards and merged logs running throughout."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watchfiles import awatch

from kubeloop import ui
from kubeloop.config import load
from kubeloop.core import Obj
from kubeloop.deploy.apply import ensure_namespace
from kubeloop.devloop.logs import LogStreamer, Printer, rich_printer
from kubeloop.devloop.portforward import Forwarder
from kubeloop.devloop.session import Session, Timings
from kubeloop.errors import KubeloopError
from kubeloop.guard import Guard
from kubeloop.sync.attach import ensure_agent_image

if TYPE_CHECKING:
    from kubeloop.bridge import Bridge
    from kubeloop.dashboard import Dashboard
    from kubeloop.debug import Debugger

ALWAYS_IGNORED = {".git", ".venv", "venv", "node_modules", "__pycache__", ".mypy_cache",
                  ".pytest_cache", ".ruff_cache", ".idea", ".vscode"}  # fmt: skip


@dataclass
class Iteration:
    """What one change caused, with kubeloop's own share of the time."""

    changed: list[str]
    rebuilt: list[str]
    total: float
    build: float
    rollout: float

    @property
    def overhead(self) -> float:
        return self.total - self.build - self.rollout


@dataclass
class DevLoop:
    session: Session
    printer: Printer = rich_printer
    on_iteration: Callable[[Iteration], None] = lambda _: None
    forwarders: list[Forwarder] = field(default_factory=list)
    syncers: list[Any] = field(default_factory=list)
    guard: Guard | None = None
    rolled_out: asyncio.Event = field(default_factory=asyncio.Event)
    bridges: list[Bridge] = field(default_factory=list)
    dashboard: Dashboard | None = None  # see attach_dashboard
    deploying: asyncio.Lock = field(default_factory=asyncio.Lock)  # a change vs. a button
    _started: bool = field(default=False, init=False, repr=False)  # syncers made, logs next
    debug: bool = False  # `dev --debug`: the wrapped workloads run under their debuggers
    debuggers: dict[str, tuple[asyncio.Task[None], Debugger]] = field(default_factory=dict)

    def attach_dashboard(self, dashboard: Dashboard) -> None:
        """The web dashboard (kubeloop.dashboard): opened before the start (`dev --ui`),
        it is wired in at start; opened later (`kubeloop ui`), at once."""
        self.dashboard = dashboard
        if self._started:
            dashboard.start(self)

    def affected(self, paths: set[str]) -> tuple[set[str], bool]:
        """(artifacts whose context holds a changed file, whether manifests changed)."""
        root = self.session.config.root
        synced = [(root / spec.src).resolve() for spec in self.session.config.project.sync]
        artifacts: set[str] = set()
        redeploy = False
        for raw in paths:
            path = Path(raw).resolve()
            if any(path == folder or path.is_relative_to(folder) for folder in synced):
                continue  # live-synced into the containers: no rebuild
            if path == self.session.config.path:
                redeploy = True
                continue
            owners = {
                artifact.image
                for artifact in self.session.config.project.artifacts
                if path.is_relative_to((root / artifact.context).resolve())
            }
            artifacts |= owners
            if not owners:
                redeploy = True  # manifests, templates, values files
        return artifacts, redeploy

    def _watch_filter(self, _change: object, path: str) -> bool:
        parts = set(Path(path).parts)
        ignored = ALWAYS_IGNORED | set(self.session.config.project.dev.ignore)
        return not (parts & ignored) and not path.endswith((".swp", "~", ".tmp"))

    async def iterate(self, changed: set[str]) -> Iteration | None:
        artifacts, redeploy = self.affected(changed)
        if not artifacts and not redeploy:
            return None
        if self.session.config.path.as_posix() in changed:
            self.session.config = load(self.session.config.path, self.session.config.environment)
        started = time.monotonic()
        async with self.deploying:
            timings = await self.session.deploy(only=artifacts or set(), quiet=True, dev_mode=True)
        iteration = Iteration(sorted(changed), timings.built, time.monotonic() - started,
                              timings.build, timings.rollout)  # fmt: skip
        self.on_iteration(iteration)
        return iteration

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        tasks: list[asyncio.Task[Any]] = []
        try:
            await self._start(stop, tasks)
            await self._debug()
            await self._watch(stop)
        finally:
            tasks += [task for task, _ in self.debuggers.values()]
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self._finish()

    async def _start(self, stop: asyncio.Event, tasks: list[asyncio.Task[Any]]) -> None:
        """The start-up, with what does not depend on each other at once: the guard with
        the build and render; once applied, port-forwards (each opens on the first ready
        pod of the new version), logs, and sync (attached as soon as a pod is ready)
        while the rest rolls out, Services get endpoints and kube-proxy routes them."""
        session = self.session
        objects, timings = await self._prepare_with_guard(tasks)
        with ui.step(f"deploying {session.config.project.name} to {session.namespace}") as step:
            await session.apply(objects, timings)  # a stop from here on still undoes it
            self.syncers = session.syncers(ui.info)
            self._started = True
            if self.dashboard is not None:
                self.dashboard.start(self)
            tasks += self._tests_on_sync()
            tasks.append(asyncio.create_task(LogStreamer(
                session.kube, session.namespace, session.config.project.name,
                lambda prefix, colour, line: self.printer(prefix, colour, line),  # may change
            ).run()))  # fmt: skip
            tasks += [asyncio.create_task(f.run()) for f in self._forwarders()]
            tasks.append(asyncio.create_task(self._sync_when_ready(stop, tasks)))
            await session.wait(objects, timings, step.detail)
        session.timeline.mark("rolled out")
        self.rolled_out.set()
        self.bridges = session.bridges(ui.info)
        tasks += [asyncio.create_task(self._bridge(b)) for b in self.bridges]

    async def _prepare_with_guard(
        self, tasks: list[asyncio.Task[Any]]
    ) -> tuple[list[Obj], Timings]:
        """Build and render while the guard starts; nothing is applied before it runs."""
        guard = asyncio.create_task(self._start_guard())
        try:
            prepared = await self.session.prepare(dev_mode=True)
        finally:
            # Even when the build fails: a guard that started is ended by _finish.
            self.guard = await guard
            if self.guard is not None:
                tasks.append(asyncio.create_task(self.guard.keep_alive()))
        return prepared

    def _forwarders(self) -> list[Forwarder]:
        session = self.session

        def event(text: str) -> None:
            ui.info(text)
            session.timeline.mark(text)

        for spec in session.config.project.port_forward:
            self.forwarders.append(Forwarder(spec, session.namespace, session.kube,
                                             session.cluster.kubeconfig,
                                             session.cluster.context, event))  # fmt: skip
        return self.forwarders

    async def _sync_when_ready(self, stop: asyncio.Event, tasks: list[asyncio.Task[Any]]) -> None:
        """Attach sync once a port-forward has a ready pod (or, without forwards, once
        rolled out): attaching earlier adds the agent's container to pods still starting,
        which slows their start, or to old pods about to go."""
        ready = [asyncio.create_task(f.ready.wait()) for f in self.forwarders]
        try:
            if ready:
                await asyncio.wait(ready, return_when=asyncio.FIRST_COMPLETED)
            else:
                await self.rolled_out.wait()
        finally:
            for waiter in ready:
                waiter.cancel()
        tasks += [asyncio.create_task(syncer.run(stop)) for syncer in self.syncers]

    def _tests_on_sync(self) -> list[asyncio.Task[Any]]:
        """``test:`` entries with ``on: sync`` run after each sync settles (kubeloop.testrun),
        their results in dev's output; other listeners of the batches keep theirs."""
        from kubeloop.testrun import OnSync

        runner = OnSync.for_session(self.session)
        if runner is None:
            return []
        for syncer in self.syncers:
            syncer.on_batch = runner.after(syncer.on_batch)
        return [asyncio.create_task(runner.run())]

    async def _bridge(self, bridge: Bridge) -> None:
        """A ``bridge:`` entry for as long as dev runs; its command ending or failing is
        reported, and dev goes on."""
        try:
            code = await bridge.run()
            ui.warn(f"bridge {bridge.spec.workload}: the local command exited ({code}); "
                    "its pods have their traffic back")  # fmt: skip
        except KubeloopError as exc:
            ui.warn(f"bridge {bridge.spec.workload}: {exc.message}"
                    + (f"\n  fix: {exc.hint}" if exc.hint else ""))  # fmt: skip

    async def _debug(self) -> None:
        """``dev --debug``: every workload dev mode wrapped runs under its language's
        debugger (kubeloop.debug), forwarded here: the first on the language's usual port,
        the others on free ones, each kept across restarts of the debugger, which a
        deploy does (its pods may be new ones)."""
        if not self.debug:
            return
        from kubeloop.debug import Debugger, DebugSpec

        ports: dict[str, int | None] = {}
        for workload, (task, debugger) in self.debuggers.items():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            ports[workload] = debugger.local_port or None
        self.debuggers.clear()
        project, session = self.session.config.project, self.session
        for index, workload in enumerate(sorted(session.dev_changed)):
            port = ports.get(workload, None if index == 0 else 0)
            spec = DebugSpec(workload, session.namespace, local_port=port,
                             sync=list(project.sync), project_root=session.config.root)  # fmt: skip
            debugger = Debugger(session.kube, session.cluster, spec, on_event=ui.info)
            self.debuggers[workload] = (asyncio.create_task(self._debugger(debugger)), debugger)

    async def _debugger(self, debugger: Debugger) -> None:
        try:
            await debugger.run()
        except KubeloopError as exc:
            ui.warn(f"debug {debugger.spec.workload}: {exc.message}"
                    + (f"\n  fix: {exc.hint}" if exc.hint else ""))  # fmt: skip

    async def _watch(self, stop: asyncio.Event) -> None:

        session = self.session
        project = session.config.project
        ui.info(f"[bold]watching {session.config.root}[/bold] — Ctrl-C to stop")
        async for changes in awatch(session.config.root, watch_filter=self._watch_filter,
                                    debounce=project.dev.debounce_ms, step=10,
                                    stop_event=stop):  # fmt: skip
            paths = {path for _change, path in changes}
            try:
                iteration = await self.iterate(paths)
            except KubeloopError as exc:
                ui.warn(f"{exc.message}" + (f"\n  fix: {exc.hint}" if exc.hint else ""))
                continue
            if iteration:
                await self._debug()  # the pods may be new ones
                rebuilt = ", ".join(iteration.rebuilt) or "nothing rebuilt"
                ui.info(f"[green]updated[/green] in {iteration.total:.1f}s ({rebuilt}; "
                        f"kubeloop overhead {iteration.overhead:.2f}s)")  # fmt: skip

    async def _start_guard(self) -> Guard | None:
        """The in-cluster guard that undoes dev mode's change should dev be killed (see
        guard.py); started before any workload is changed."""
        project = self.session.config.project
        if project.dev.keep_changes or not any(s.restart != "none" for s in project.sync):
            return None

        await ensure_namespace(self.session.kube, self.session.namespace)
        guard = Guard(self.session.kube, self.session.namespace, project.name,
                      await ensure_agent_image(self.session.cluster), on_event=ui.warn)  # fmt: skip
        await guard.start()
        return guard

    async def _finish(self) -> None:
        """What dev leaves behind: nothing it deployed (cleanup), or what it deployed
        without its dev-mode change (the default), or both as they are (keepChanges)."""
        dev = self.session.config.project.dev
        if dev.cleanup:
            removed = await self.session.delete()
            ui.info(f"removed {len(removed)} objects that dev deployed")
        elif not dev.keep_changes:
            for name in await self.session.undo_dev_mode():
                ui.info(f"restored {name} (dev mode's change undone; keep it with --keep)")
        if self.guard is not None:
            await self.guard.end()


async def run_dev(config_path: Path | None, environment: str | None, cluster: str | None, *,
                  cleanup: bool | None = None, keep: bool | None = None,
                  verbose: bool = False, ui_port: int | None = None,
                  debug: bool = False) -> None:  # fmt: skip
    """``kubeloop dev``: open the session, run the loop until stopped, close. With
    ``verbose``, the start-up's timeline is printed as it happens; with ``ui_port``
    (0: a free one), the web dashboard runs alongside (without, `kubeloop ui` opens it);
    with ``debug``, each workload dev mode wraps runs under its debugger."""
    from kubeloop.deploy.timeline import Timeline
    from kubeloop.devloop.session import open_session

    def show(line: str) -> None:
        ui.console().print(f"[dim]timeline[/dim] {line}", soft_wrap=True)

    timeline = Timeline(show if verbose else None)
    timeline.mark("python started, kubeloop imported")
    session = await open_session(config_path, environment, cluster, timeline=timeline)
    try:
        if cleanup is not None:
            session.config.project.dev.cleanup = cleanup
        if keep is not None:
            session.config.project.dev.keep_changes = keep
        from kubeloop.dashboard import dashboard_for

        loop = DevLoop(session, debug=debug)
        async with dashboard_for(loop, ui_port,
                                 lambda url: ui.info(f"[bold]dashboard[/bold]: {url}")):  # fmt: skip
            await loop.run()
    finally:
        await session.close()
