"""Merged, colour-prefixed logs of every pod of a project, following new pods."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from kubeloop.core import PROJECT_LABEL
from kubeloop.errors import KubeloopError
from kubeloop.kube import Kube

COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "red")
Printer = Callable[[str, str, str], None]  # (prefix, colour, line)


def rich_printer(prefix: str, colour: str, line: str) -> None:
    from rich.markup import escape

    from kubeloop.ui import console

    console().print(f"[{colour}]{escape(prefix)}[/{colour}] {escape(line)}", soft_wrap=True)


class LogStreamer:
    """One asyncio task per container stream; a poller adds streams for new pods."""

    def __init__(self, kube: Kube, namespace: str, project: str, printer: Printer = rich_printer,
                 since_seconds: int = 5) -> None:  # fmt: skip
        self.kube = kube
        self.namespace = namespace
        self.selector = f"{PROJECT_LABEL}={project}"
        self.printer = printer
        self.since_seconds = since_seconds
        self._streams: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._colours: dict[str, str] = {}

    def _colour(self, key: str) -> str:
        if key not in self._colours:
            self._colours[key] = COLOURS[len(self._colours) % len(COLOURS)]
        return self._colours[key]

    async def run(self, interval: float = 0.5) -> None:
        try:
            while True:
                await self._refresh()
                await asyncio.sleep(interval)
        finally:
            for task in self._streams.values():
                task.cancel()
            await asyncio.gather(*self._streams.values(), return_exceptions=True)

    async def _refresh(self) -> None:
        try:
            pods = await self.kube.request("GET", f"/api/v1/namespaces/{self.namespace}/pods",
                                           params={"labelSelector": self.selector})  # fmt: skip
        except KubeloopError:
            return
        for pod in pods.get("items", []):
            name = pod["metadata"]["name"]
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                key = (name, status["name"])
                started = (status.get("state") or {}).get("running") is not None
                task = self._streams.get(key)
                if started and (task is None or task.done()):
                    self._streams[key] = asyncio.create_task(self._follow(name, status["name"]))

    async def _follow(self, pod: str, container: str) -> None:
        workload = pod.rsplit("-", 2)[0] if pod.count("-") >= 2 else pod
        prefix = f"{pod}/{container}" if container != workload else pod
        colour = self._colour(workload)
        params = {"container": container, "follow": "true", "sinceSeconds": str(self.since_seconds)}
        with contextlib.suppress(KubeloopError, OSError):
            async for line in self.kube.stream_lines(
                f"/api/v1/namespaces/{self.namespace}/pods/{pod}/log", params
            ):
                self.printer(prefix, colour, line)
