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
            await self._watch(stop)
        finally:
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
            tasks.append(asyncio.create_task(LogStreamer(
                session.kube, session.namespace, session.config.project.name, self.printer
            ).run()))  # fmt: skip
            tasks += [asyncio.create_task(f.run()) for f in self._forwarders()]
            tasks.append(asyncio.create_task(self._sync_when_ready(stop, tasks)))
            await session.wait(objects, timings, step.detail)
        session.timeline.mark("rolled out")
        self.rolled_out.set()
        tasks += [asyncio.create_task(self._bridge(b)) for b in session.bridges(ui.info)]

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
                  verbose: bool = False) -> None:  # fmt: skip
    """``kubeloop dev``: open the session, run the loop until stopped, close. With
    ``verbose``, the start-up's timeline is printed as it happens."""
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
        await DevLoop(session).run()
    finally:
        await session.close()
