"""``kubeloop debug``: a debugger in a running Python container, forwarded to this
machine, no image rebuild.

The container must run under kubeloop's supervisor (dev mode: a sync rule with
``restart: process``), which restarts the app in place. kubeloop's agent writes debugpy and
a sitecustomize that starts it into ``/tmp/kubeloop-debug/python``; the supervisor puts
that folder on the app's PYTHONPATH at its next start, which kubeloop asks for at once
(SIGHUP). debugpy listens on the pod's loopback only; a local port carries each connection
over the agent's stream to it. When the session ends the folder goes and the app restarts
without the debugger. A sync-triggered restart keeps it: the debugger comes back on the
same port and the IDE re-attaches.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kubeloop.agent import (
    APP,
    AgentError,
    AgentStream,
    Op,
    cluster_agent_image,
    ensure_agent,
    node_arch,
    open_stream,
    splice,
    target_container,
)
from kubeloop.cluster import ClusterInfo
from kubeloop.core import Obj, WaitTimeout, wait_until
from kubeloop.debug._payload import ensure_payload
from kubeloop.errors import KubeloopError
from kubeloop.kube import Kube
from kubeloop.kube.workloads import find_workload, running_pods
from kubeloop.sync.devmode import AGENT

DEBUG_ROOT = "/tmp/kubeloop-debug"
DEBUG_DIR = f"{DEBUG_ROOT}/python"  # the supervisor looks for it (src/main.go)
READY_TIMEOUT = 30.0


@dataclass
class DebugSpec:
    workload: str
    namespace: str = "default"
    container: str | None = None
    local_port: int = 5678
    remote_port: int = 5678
    mappings: list[tuple[str, str]] = field(default_factory=list)  # (local, container)


def supervised(container: Obj) -> bool:
    return bool((container.get("command") or [None])[0] == AGENT)


def vscode_config(name: str, port: int, mappings: list[tuple[str, str]]) -> dict[str, object]:
    """A VS Code launch.json entry that attaches to the forwarded port."""
    return {
        "name": f"kubeloop: {name}", "type": "debugpy", "request": "attach",
        "connect": {"host": "127.0.0.1", "port": port}, "justMyCode": False,
        "pathMappings": [{"localRoot": local, "remoteRoot": remote} for local, remote in mappings],
    }  # fmt: skip


@dataclass
class Debugger:
    kube: Kube
    cluster: ClusterInfo
    spec: DebugSpec
    on_event: Callable[[str], None] = lambda _: None
    stream: AgentStream | None = None
    pod: str = ""
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # debugpy answers
    _server: asyncio.AbstractServer | None = None
    _changed: bool = False

    async def start(self) -> float:
        """Make the app debuggable and forward its port; seconds until debugpy answered."""
        started = time.monotonic()
        workload = await find_workload(self.kube, self.spec.namespace, self.spec.workload)
        pods = await running_pods(self.kube, self.spec.namespace, workload)
        if not pods:
            raise KubeloopError(f"{self.spec.workload} has no running pod to debug",
                                "wait for it to start (kubectl get pods)")  # fmt: skip
        pod = pods[0]
        self.pod = pod["metadata"]["name"]
        container = target_container(pod, self.spec.container)
        if not supervised(container):
            raise KubeloopError(
                f"container {container['name']} of {self.spec.workload} does not run under "
                "kubeloop's supervisor, which starts the app with the debugger",
                "run 'kubeloop dev' with a sync rule 'restart: process' for it",
            )
        await self._listen()  # a busy local port fails here, before any change
        image = await cluster_agent_image(self.cluster, await node_arch(self.kube, pod))
        attached = await ensure_agent(self.kube, self.spec.namespace, self.pod,
                                      container["name"], image, APP)  # fmt: skip
        self.stream = await open_stream(self.cluster, self.spec.namespace, attached)
        await self._send_debugger()
        self._changed = True
        since = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        await self.stream.signal(signal.SIGHUP)  # the supervisor restarts the app with it
        await self._wait_ready(since, container["name"])
        self.ready.set()
        return time.monotonic() - started

    async def _listen(self) -> None:
        try:
            self._server = await asyncio.start_server(self._forward, "127.0.0.1",
                                                      self.spec.local_port)  # fmt: skip
        except OSError as exc:
            raise KubeloopError(
                f"local port {self.spec.local_port} is not free: {exc.strerror}",
                "choose another with --port",
            ) from exc
        self.spec.local_port = self._server.sockets[0].getsockname()[1]

    async def _send_debugger(self) -> None:
        assert self.stream is not None
        payload = await ensure_payload()
        await self.stream.bind(DEBUG_ROOT)
        folders = sorted({f"{DEBUG_DIR}/{p}".rsplit("/", 1)[0] for p, _ in payload}, key=len)
        ops: list[Op] = [("M", folder, 0o755, None) for folder in folders]
        ops += [("W", f"{DEBUG_DIR}/{path}", 0o644, source) for path, source in payload]
        sent = await self.stream.send_many(ops)
        await self.stream.wait_all(sent, "send the debugger")

    async def _wait_ready(self, since: str, container: str) -> None:
        """Until the app says debugpy listens (its sitecustomize writes it to the log once
        listen() returned). Not by connecting: a connection is a debugging session to
        debugpy, and a probe's would be the IDE's lost."""
        path = f"/api/v1/namespaces/{self.spec.namespace}/pods/{self.pod}/log"

        async def listening() -> bool:
            log = await self.kube.request("GET", path,
                                          params={"container": container, "sinceTime": since})  # fmt: skip
            for line in str(log.get("text", "")).splitlines():
                if line.startswith("kubeloop debug: debugpy listens"):
                    return True
                if line.startswith("kubeloop debug: debugpy not started"):
                    raise KubeloopError(f"the debugger did not start in {self.pod}: {line}")
            return False

        try:
            await wait_until(listening, READY_TIMEOUT, 0.2, "debugpy")
        except WaitTimeout:
            raise KubeloopError(
                f"debugpy did not start in {self.pod} within {READY_TIMEOUT:.0f}s",
                "see the app's log (kubectl logs): the image needs CPython 3.8+, and "
                "the app must start with python",
            ) from None

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.stream is None:
            writer.close()
            return
        try:
            channel = await self.stream.dial(f"127.0.0.1:{self.spec.remote_port}")
        except AgentError as exc:
            self.on_event(f"debug: cannot reach the debugger in {self.pod}: {exc}")
            writer.close()
            return
        await splice(channel, reader, writer)

    async def stop(self) -> None:
        """The app runs on without the debugger (restarted); nothing is left in the pod."""
        if self._server is not None:
            self._server.close()
        if self.stream is not None and self._changed:
            with contextlib.suppress(AgentError, KubeloopError):
                sent = await self.stream.send_many([("D", DEBUG_DIR, 0, None)])
                await self.stream.wait_all(sent, "remove the debugger")
                await self.stream.signal(signal.SIGHUP)
            self._changed = False
        if self.stream is not None:
            await self.stream.close()
            self.stream = None

    async def run(self) -> None:
        """Debug until cancelled (Ctrl-C), then undo."""
        try:
            took = await self.start()
            mappings = self.spec.mappings or [("${workspaceFolder}", ".")]
            config = vscode_config(self.spec.workload, self.spec.local_port, mappings)
            self.on_event(f"debug: debugpy in {self.pod} answers on 127.0.0.1:"
                          f"{self.spec.local_port} ({took:.1f}s); attach your IDE. VS Code "
                          f"launch.json entry:\n{json.dumps(config, indent=2)}")  # fmt: skip
            await asyncio.Event().wait()
        finally:
            await self.stop()
