"""``kubeloop debug``: a debugger in a running container (Python: debugpy; Go: Delve;
Node: its inspector; JVM: JDWP), forwarded to this machine, no image rebuild.

The container must run under kubeloop's supervisor (dev mode: a sync rule with
``restart: process``), which restarts the app in place. kubeloop's agent writes the
debugger into ``/tmp/kubeloop-debug/<language>``; while that folder exists the supervisor
starts the app under it (agent/src/debugger.go), which kubeloop asks for at once (SIGHUP).
The debugger listens on the pod's loopback only; a local port carries each connection
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
from pathlib import Path

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
from kubeloop.config import SyncSpec
from kubeloop.core import Obj, WaitTimeout, wait_until
from kubeloop.debug._ide import path_mappings, vscode_config, write_launch_json
from kubeloop.debug._languages import Language, language
from kubeloop.debug._payload import ensure_payload
from kubeloop.errors import KubeloopError
from kubeloop.kube import Kube
from kubeloop.kube.workloads import find_workload, running_pods
from kubeloop.proc import port_owner
from kubeloop.sync.devmode import AGENT

DEBUG_ROOT = "/tmp/kubeloop-debug"  # the supervisor looks there (src/debugger.go)
READY_TIMEOUT = 30.0
HINTS = {
    "python": "the image needs CPython 3.8+, and the app must start with python",
    "node": "the app must start with node, and nothing else in it may take port 9229",
    "go": "the app must be a Go program; pass --lang python, node or jvm if it is not",
    "jvm": "the app must start with java, and nothing else in it may take port 5005",
}


@dataclass
class DebugSpec:
    workload: str
    namespace: str = "default"
    container: str | None = None
    local_port: int | None = None  # default: the language's usual port (0: any free one)
    language: str = "auto"  # auto (from the app's command), python, node or go
    mappings: list[tuple[str, str]] = field(default_factory=list)  # (local, container)
    # The project's sync rules (and kubeloop.yaml's folder): the IDE's source mappings
    # when no mappings are given.
    sync: list[SyncSpec] = field(default_factory=list)
    project_root: Path | None = None
    write_launch_json: Path | None = None  # merge the entry into this folder's .vscode


def supervised(container: Obj) -> bool:
    return bool((container.get("command") or [None])[0] == AGENT)


def app_argv(container: Obj) -> list[str]:
    """The app's command in a supervised container: ``AGENT supervise -- CMD...``."""
    command = list(container.get("command") or []) + list(container.get("args") or [])
    return command[command.index("--") + 1 :] if "--" in command else command[1:]


@dataclass
class Debugger:
    kube: Kube
    cluster: ClusterInfo
    spec: DebugSpec
    on_event: Callable[[str], None] = lambda _: None
    stream: AgentStream | None = None
    pod: str = ""
    language: Language | None = None
    local_port: int = 0  # where the IDE attaches
    mappings: list[tuple[str, str]] = field(default_factory=list)  # what the IDE is told
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
        self.mappings = self._mappings(pod, container)
        if not supervised(container):
            raise KubeloopError(
                f"container {container['name']} of {self.spec.workload} does not run under "
                "kubeloop's supervisor, which starts the app with the debugger",
                "run 'kubeloop dev' with a sync rule 'restart: process' for it",
            )
        self.language = language(self.spec.language, app_argv(container))
        await self._listen()  # a busy local port fails here, before any change
        arch = await node_arch(self.kube, pod)
        image = await cluster_agent_image(self.cluster, arch)
        attached = await ensure_agent(self.kube, self.spec.namespace, self.pod,
                                      container["name"], image, APP)  # fmt: skip
        self.stream = await open_stream(self.cluster, self.spec.namespace, attached)
        await self._send_debugger(arch)
        self._changed = True
        # Killed (SIGKILL, a crash): the agent takes the debugger out when the stream ends.
        await self.stream.undo_at_close(self.folder, signal.SIGHUP)
        since = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        await self.stream.signal(signal.SIGHUP)  # the supervisor restarts the app with it
        await self._wait_ready(since, container["name"])
        self.ready.set()
        return time.monotonic() - started

    def _mappings(self, pod: Obj, container: Obj) -> list[tuple[str, str]]:
        if self.spec.mappings:
            return self.spec.mappings
        first = pod["spec"]["containers"][0]["name"] == container["name"]
        if self.spec.project_root is not None:
            labels = pod["metadata"].get("labels") or {}
            found = path_mappings(self.spec.sync, self.spec.project_root, labels,
                                  container["name"], first)  # fmt: skip
            if found:
                return found
        return [("${workspaceFolder}", container.get("workingDir") or ".")]

    async def _listen(self) -> None:
        assert self.language is not None
        port = self.language.port if self.spec.local_port is None else self.spec.local_port
        try:
            self._server = await asyncio.start_server(self._forward, "127.0.0.1", port)
        except OSError as exc:
            raise KubeloopError(f"local port {port} is not free: in use by {port_owner(port)}",
                                "choose another with --port (0: any free one)") from exc  # fmt: skip
        self.local_port = self._server.sockets[0].getsockname()[1]

    @property
    def folder(self) -> str:
        assert self.language is not None
        return f"{DEBUG_ROOT}/{self.language.folder}"

    async def _send_debugger(self, arch: str) -> None:
        assert self.stream is not None and self.language is not None
        payload = await ensure_payload(self.language, arch)
        await self.stream.bind(DEBUG_ROOT)
        folders = {self.folder, *(f"{self.folder}/{p}".rsplit("/", 1)[0] for p, _, _ in payload)}
        ops: list[Op] = [("M", folder, 0o755, None) for folder in sorted(folders, key=len)]
        ops += [("W", f"{self.folder}/{path}", mode, source) for path, source, mode in payload]
        sent = await self.stream.send_many(ops)
        await self.stream.wait_all(sent, "send the debugger")

    async def _wait_ready(self, since: str, container: str) -> None:
        """Until the app's log says the debugger listens (debugpy's sitecustomize, Node and
        Delve each print a line). Not by connecting: a connection is a debugging session,
        and a probe's would be the IDE's lost (debugpy serves one client)."""
        assert self.language is not None
        lang, path = self.language, f"/api/v1/namespaces/{self.spec.namespace}/pods/{self.pod}/log"

        async def listening() -> bool:
            log = await self.kube.request("GET", path,
                                          params={"container": container, "sinceTime": since})  # fmt: skip
            for line in str(log.get("text", "")).splitlines():
                if line.startswith(lang.ready):
                    return True
                if line.startswith(lang.failed):
                    raise KubeloopError(f"the {lang.name} debugger did not start in {self.pod}: "
                                        f"{line[:500]}", HINTS[lang.name])  # fmt: skip
            return False

        try:
            await wait_until(listening, READY_TIMEOUT, 0.2, f"the {lang.name} debugger")
        except WaitTimeout:
            raise KubeloopError(
                f"the {lang.name} debugger did not start in {self.pod} within {READY_TIMEOUT:.0f}s",
                f"see the app's log (kubectl logs); {HINTS[lang.name]}",
            ) from None

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.stream is None:
            writer.close()
            return
        try:
            assert self.language is not None
            channel = await self.stream.dial(f"127.0.0.1:{self.language.port}")
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
                sent = await self.stream.send_many([("D", self.folder, 0, None)])
                await self.stream.wait_all(sent, "remove the debugger")
                await self.stream.signal(signal.SIGHUP)
                await self.stream.undo_at_close("", 0)
            self._changed = False
        if self.stream is not None:
            await self.stream.close()
            self.stream = None

    async def run(self) -> None:
        """Debug until cancelled (Ctrl-C), then undo."""
        try:
            took = await self.start()
            assert self.language is not None
            config = vscode_config(self.spec.workload, self.local_port, self.mappings,
                                   self.language.name)  # fmt: skip
            self.on_event(f"debug: the {self.language.name} debugger in {self.pod} answers on "
                          f"127.0.0.1:{self.local_port} ({took:.1f}s); attach your IDE. VS "
                          f"Code launch.json entry:\n{json.dumps(config, indent=2)}")  # fmt: skip
            if self.spec.write_launch_json is not None:
                written = write_launch_json(self.spec.write_launch_json, config)
                self.on_event(f"debug: wrote the entry {config['name']!r} into {written}")
            await asyncio.Event().wait()
        finally:
            await self.stop()
