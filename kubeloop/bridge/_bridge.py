"""``kubeloop bridge``: one workload's traffic for a port goes to a command on the
developer's machine, which in turn reaches the cluster as the pod would.

Inbound ("steal"): in every pod of the workload, kubeloop's agent (an ephemeral
container with NET_ADMIN, reused across sessions) redirects new connections to the port
to itself and carries them over its stream to the local command; the pods keep running,
so giving the traffic back is instant. If kubeloop is killed, its stream ends and the
agent gives the port back at once; if kubeloop freezes (the laptop sleeps, the network
drops), the agent gives it back 5 s after the last heartbeat; if the agent itself dies,
the redirect expires 8 s after its last renewal. Connections from the node (probes)
are never taken.

"personal": the same redirect, but the pod's router (one per pod, shared by every
developer's session) reads each HTTP request (HTTP/1.1 or h2c) and sends those carrying
this session's header here; the others, and the kubelet's probes, reach the app.

"swap": the app container is replaced by the agent (see _swap.py), for a workload that
must not run twice or where the cluster refuses NET_ADMIN.

Outbound: the command runs in namespaces of its own (see _local.py) with the pod's
environment, resolver settings and mounted files.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase as fnmatch
from pathlib import Path

from kubeloop.agent import (
    NET,
    SWAP,
    SWAP_ROUTER,
    AgentError,
    AgentStream,
    Attached,
    Channel,
    cluster_agent_image,
    ensure_agent,
    node_arch,
    open_stream,
    splice,
)
from kubeloop.bridge._context import PodContext, pod_context
from kubeloop.bridge._local import LocalCommand
from kubeloop.bridge._proxy import ProxiedCommand
from kubeloop.bridge._swap import Swap
from kubeloop.cluster import ClusterInfo
from kubeloop.config import BridgeEntry
from kubeloop.core import Obj
from kubeloop.errors import KubeloopError
from kubeloop.kube import Kube
from kubeloop.kube.workloads import find_workload, running_pods
from kubeloop.paths import cache_dir

HEARTBEAT = 2.0
MODES = ("steal", "personal", "swap")
SESSION_HEADER = "X-Kubeloop-Session"


@dataclass
class BridgeSpec:
    workload: str  # KIND/NAME or NAME (a Deployment)
    port: int  # the container port whose traffic comes to the local command
    command: list[str]
    namespace: str = "default"
    local_port: int | None = None  # where the command listens (default: port)
    container: str | None = None
    env: dict[str, str] = field(default_factory=dict)  # set or override variables
    cwd: Path | None = None  # where the command runs (default: the current folder)
    mode: str = "steal"  # steal | personal | swap
    header: tuple[str, str] | None = None  # personal: (name, value) routed here
    outbound: str = "auto"  # auto | namespace | proxy (see _start_local)
    env_include: list[str] = field(default_factory=list)  # the pod's variables to take
    env_exclude: list[str] = field(default_factory=list)  # ... and to leave (fnmatch)

    @classmethod
    def from_config(cls, entry: BridgeEntry, namespace: str, folder: Path) -> BridgeSpec:
        header = parse_header(entry.header) if entry.header else None
        return cls(entry.workload, entry.port, list(entry.command), namespace,
                   entry.local_port, entry.container, dict(entry.env), folder,
                   entry.mode, header, entry.outbound, list(entry.env_include),
                   list(entry.env_exclude))  # fmt: skip

    def pod_env(self, env: dict[str, str]) -> dict[str, str]:
        """The pod's variables the command gets: those matching an include pattern (all
        when there is none) and no exclude pattern (shell-style: ``AWS_*``)."""
        return {name: value for name, value in env.items()
                if (not self.env_include or any(fnmatch(name, p) for p in self.env_include))
                and not any(fnmatch(name, p) for p in self.env_exclude)}  # fmt: skip

    def route(self) -> tuple[str, str, str]:
        """(mode, header, value) as the agent's router takes them."""
        if self.mode != "personal":
            return self.mode, "", ""
        name, value = self.header or (SESSION_HEADER, default_session())
        return self.mode, name, value


@dataclass
class _Link:
    pod: str
    stream: AgentStream


@dataclass
class Bridge:
    kube: Kube
    cluster: ClusterInfo
    spec: BridgeSpec
    on_event: Callable[[str], None] = lambda _: None
    context: PodContext | None = None
    links: dict[str, _Link] = field(default_factory=dict)
    local: LocalCommand | ProxiedCommand | None = None
    swap: Swap | None = None
    served: int = 0
    started: float = field(default_factory=time.monotonic)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    # --- the workload ------------------------------------------------------------------

    async def _workload(self) -> Obj:
        return await find_workload(self.kube, self.spec.namespace, self.spec.workload)

    async def _pods(self, workload: Obj) -> list[Obj]:
        return await running_pods(self.kube, self.spec.namespace, workload)

    def _container(self, pod: Obj) -> Obj:
        containers = pod["spec"]["containers"]
        name = self.spec.container or containers[0]["name"]
        target = next((c for c in containers if c["name"] == name), None)
        if target is None:
            raise KubeloopError(f"{self.spec.workload} has no container '{name}'",
                                f"containers: {', '.join(c['name'] for c in containers)}")  # fmt: skip
        ports = [p["containerPort"] for p in target.get("ports") or []]
        if ports and self.spec.port not in ports:
            raise KubeloopError(
                f"container {name} of {self.spec.workload} does not expose port {self.spec.port}",
                f"its ports: {', '.join(map(str, ports))}",
            )
        return dict(target)

    # --- pods ----------------------------------------------------------------------------

    async def _attach(self, pod: Obj, image: str) -> None:
        name = pod["metadata"]["name"]
        if self.swap is not None:  # the agent is the container itself
            attached = Attached(name, self.swap.container, "", SWAP)
        else:
            attached = await ensure_agent(self.kube, self.spec.namespace, name,
                                          self.spec.container, image, NET)  # fmt: skip
        stream = await open_stream(self.cluster, self.spec.namespace, attached)
        stream.on_accept = self._on_accept
        mode, header, value = self.spec.route()
        try:
            await stream.steal(self.spec.port, (pod.get("status") or {}).get("hostIP"),
                               mode, header, value)  # fmt: skip
        except AgentError as exc:
            await stream.close()
            raise KubeloopError(f"cannot bridge port {self.spec.port} of pod {name}: {exc}",
                                "the pod is unchanged") from exc  # fmt: skip
        except BaseException:
            await stream.close()
            raise
        self.links[name] = _Link(name, stream)
        what = (
            f"requests with {header}: {value}" if mode == "personal" else f"port {self.spec.port}"
        )
        self.on_event(f"bridge: pod {name} now sends {what} here")

    def _on_accept(self, channel: Channel, _port: int, peer: str) -> None:
        task = asyncio.get_running_loop().create_task(self._inbound(channel, peer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _inbound(self, channel: Channel, peer: str) -> None:
        assert self.local is not None
        port = self.spec.local_port or self.spec.port
        deadline = time.monotonic() + 10  # the command may still be starting
        while True:
            try:
                reader, writer = await self.local.connect(port)
                break
            except OSError:
                if time.monotonic() > deadline or self.local.process is None \
                        or self.local.process.returncode is not None:  # fmt: skip
                    self.on_event(f"bridge: nothing listens on local port {port}; "
                                  f"a connection from {peer} was refused")  # fmt: skip
                    await channel.reset()
                    return
                await asyncio.sleep(0.05)
        self.served += 1
        await splice(channel, reader, writer)

    async def _live_pods(self, workload: Obj) -> list[Obj]:
        if self.swap is not None:
            return (await self.swap.swapped_pods())[0]
        return await self._pods(workload)

    async def _image(self, pod: Obj) -> str:
        return await cluster_agent_image(self.cluster, await node_arch(self.kube, pod))

    async def _keep_up(self, workload: Obj, image: str) -> None:
        """Heartbeats for every pod's agent; new pods (a rollout, a scale-up) bridged
        too; dropped streams opened again."""
        while True:
            await asyncio.sleep(HEARTBEAT)
            for name, link in list(self.links.items()):
                try:
                    await asyncio.wait_for(link.stream.ping(), HEARTBEAT * 2)
                except (AgentError, TimeoutError):
                    await link.stream.close()
                    del self.links[name]
                    self.on_event(f"bridge: lost the agent in {name}; reconnecting")
            with contextlib.suppress(KubeloopError):
                for pod in await self._live_pods(workload):
                    if pod["metadata"]["name"] not in self.links:
                        await self._attach(pod, image)
            if self.local is not None and self.links and not self.local.agent.alive:
                self.local.agent = next(iter(self.links.values())).stream

    # --- running -------------------------------------------------------------------------

    async def _start_local(self, agent: AgentStream,
                           env: dict[str, str]) -> LocalCommand | ProxiedCommand:  # fmt: skip
        """The command in namespaces of its own (every program's connections reach the
        cluster), or, where this machine does not allow that, with proxy variables."""
        resolv = await agent.resolv_conf()
        if self.spec.outbound != "proxy":
            local = LocalCommand(agent)
            try:
                await local.start(self.spec.command, env, resolv, self.spec.cwd)
                return local
            except KubeloopError as exc:
                await local.stop()
                if self.spec.outbound == "namespace":
                    raise
                self.on_event(f"bridge: {exc.message}; falling back to a proxy: only programs "
                              "that honour HTTP_PROXY / ALL_PROXY reach the cluster")  # fmt: skip
        proxied = ProxiedCommand(agent)
        await proxied.start(self.spec.command, env, resolv, self.spec.cwd)
        return proxied

    async def run(self) -> int:
        """Bridge until the local command exits (its exit code) or this is cancelled;
        the pods get their traffic back at once either way."""
        workload = await self._workload()
        pods = await self._pods(workload)
        if not pods:
            raise KubeloopError(f"{self.spec.workload} has no running pod to bridge",
                                "wait for it to start (kubectl get pods)")  # fmt: skip
        container = self._container(pods[0])
        root = (
            cache_dir() / "bridge" / f"{self.spec.namespace}-{self.spec.workload.replace('/', '-')}"
        )
        self.context = await pod_context(self.kube, self.spec.namespace, pods[0], container, root)
        image = await self._image(pods[0])
        keeper: asyncio.Task[None] | None = None
        try:
            if self.spec.mode == "swap":
                self.swap = Swap(self.kube, self.spec.namespace, workload, container["name"],
                                 image, SWAP_ROUTER, self.on_event)  # fmt: skip
                pods = await self.swap.start()
            for pod in pods:
                await self._attach(pod, image)
            first = next(iter(self.links.values())).stream
            env = {**os.environ, **self.spec.pod_env(self.context.env), **self.spec.env}
            self.local = await self._start_local(first, env)
            self.started = time.monotonic()
            keeper = asyncio.get_running_loop().create_task(self._keep_up(workload, image))
            outbound = ("its own network namespace" if isinstance(self.local, LocalCommand)
                        else "a proxy (HTTP_PROXY, ALL_PROXY)")  # fmt: skip
            self.on_event(f"bridge: {self.spec.workload} port {self.spec.port} -> local port "
                          f"{self.spec.local_port or self.spec.port} ({len(self.links)} pods; "
                          f"{len(self.context.env)} variables, files under {root}; the "
                          f"command reaches the cluster through {outbound})")  # fmt: skip
            code = await self.local.wait()
            if time.monotonic() - self.started < 2 and code != 0:
                raise KubeloopError(f"the local command exited at once (exit {code})",
                                    "run it by itself to see why; the cluster is unchanged")  # fmt: skip
            return code
        finally:
            if keeper is not None:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
            for task in list(self._tasks):
                task.cancel()
            if self.local is not None:
                await self.local.stop()
            for link in self.links.values():
                await link.stream.close()  # the agent gives the port back at once
            self.links.clear()
            if self.swap is not None:
                await self.swap.restore()


def parse_port(text: str) -> tuple[int, int | None]:
    """``8000`` or ``8000:8001`` (container port : local port)."""
    remote, _, local = text.partition(":")
    try:
        ports = (int(remote), int(local) if local else None)
    except ValueError:
        raise KubeloopError(f"'{text}' is not PORT or PORT:LOCALPORT") from None
    if not all(1 <= p <= 65535 for p in ports if p is not None):
        raise KubeloopError(f"'{text}': ports are 1 to 65535")
    return ports


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an HTTP header name (RFC 9110)


def parse_header(text: str) -> tuple[str, str]:
    """``NAME: VALUE``, ``NAME=VALUE``, or a VALUE for the X-Kubeloop-Session header."""
    for sep in (":", "="):
        name, found, value = text.partition(sep)
        if found:
            break
    else:
        name, value = SESSION_HEADER, text
    name, value = name.strip(), value.strip()
    if not _TOKEN.fullmatch(name) or not value or "\n" in value \
            or "\r" in value or len(name) > 128 or len(value) > 128:  # fmt: skip
        raise KubeloopError(f"'{text}' is not a header to route by",
                            "write NAME: VALUE, e.g. 'X-Kubeloop-Session: alice'")  # fmt: skip
    return name, value


def default_session() -> str:
    """The value of X-Kubeloop-Session when none is given: the user's name."""
    return getpass.getuser() or "kubeloop"
