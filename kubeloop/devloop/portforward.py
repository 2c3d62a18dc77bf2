"""Port-forwards that outlive pods.

kubectl port-forward binds to one pod and, when that pod goes away in a rollout, keeps
running while every new connection fails. So kubeloop resolves the resource to a ready
pod itself, forwards to that pod, watches it, and moves the forward to a current ready
pod as soon as the old one is deleted, terminating or no longer ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

from kubeloop.config import PortForward
from kubeloop.core import Obj, kubectl_command
from kubeloop.deploy.rollout import pod_is_current
from kubeloop.errors import KubeloopError
from kubeloop.kube import Kube, label_selector
from kubeloop.kube.client import pod_is_ready
from kubeloop.proc import port_free, port_owner, spawn_tethered

# Seconds to wait before listing again when a pod watch cannot be used.
FIRST_POLL = 0.05


def _container_port(pod: Obj, target: int | str) -> int:
    if isinstance(target, int) or str(target).isdigit():
        return int(target)
    for container in pod["spec"]["containers"]:
        for port in container.get("ports") or []:
            if port.get("name") == target:
                return int(port["containerPort"])
    raise KubeloopError(f"pod {pod['metadata']['name']} has no port named '{target}'")


def _usable(pod: Obj) -> bool:
    return pod_is_ready(pod) and not pod["metadata"].get("deletionTimestamp")


class Forwarder:
    def __init__(self, spec: PortForward, namespace: str, kube: Kube, kubeconfig: str,
                 context: str, on_event: Callable[[str], None] = lambda _: None) -> None:  # fmt: skip
        self.spec = spec
        self.namespace = spec.namespace or namespace
        self.kube = kube
        self.kubeconfig = kubeconfig
        self.context = context
        self.on_event = on_event
        self.local_port = spec.local_port or spec.port
        self.ready = asyncio.Event()
        self.current_pod: str | None = None
        self.moves = 0
        self._listed: tuple[str, str, str] | None = None  # (key, selector, resourceVersion)
        self._busy_told = False

    async def _selector_and_target(self) -> tuple[str, int | str]:
        kind, _, name = self.spec.resource.partition("/")
        ns = self.namespace
        if kind in ("service", "svc"):
            svc = await self.kube.get(f"/api/v1/namespaces/{ns}/services/{name}")
            if svc is None:
                raise KubeloopError(f"service {name} not found in {ns}")
            for port in svc["spec"].get("ports", []):
                if port["port"] == self.spec.port:
                    target = port.get("targetPort", port["port"])
                    break
            else:
                raise KubeloopError(f"service {name} has no port {self.spec.port}")
            selector = svc["spec"].get("selector") or {}
        elif kind in ("deployment", "deploy", "statefulset", "daemonset"):
            plural = {"deploy": "deployments"}.get(kind, kind + "s")
            workload = await self.kube.get(f"/apis/apps/v1/namespaces/{ns}/{plural}/{name}")
            if workload is None:
                raise KubeloopError(f"{kind} {name} not found in {ns}")
            selector = workload["spec"]["selector"].get("matchLabels") or {}
            target = self.spec.port
        elif kind == "pod":
            return f"metadata.name={name}", self.spec.port
        else:
            raise KubeloopError(f"cannot forward to '{self.spec.resource}'",
                                "use service/NAME, deployment/NAME or pod/NAME")  # fmt: skip
        return label_selector(selector), target

    async def pick_pod(self) -> tuple[str, int] | None:
        """A ready pod of the latest pod template, the newest first. Before this forward
        first opened, only such a pod will do: right after dev's apply the old version's
        pods are still ready, and a first request must never reach one. Later (say, a
        rollout that fails) a ready pod of the old version is better than none."""
        selector, target = await self._selector_and_target()
        key = "fieldSelector" if selector.startswith("metadata.name=") else "labelSelector"
        pods = await self.kube.request("GET", f"/api/v1/namespaces/{self.namespace}/pods",
                                       params={key: selector})  # fmt: skip
        self._listed = (key, selector, str((pods.get("metadata") or {}).get("resourceVersion")))
        ready = sorted((p for p in pods.get("items", []) if _usable(p)),
                       key=lambda p: p["metadata"]["creationTimestamp"], reverse=True)  # fmt: skip
        for pod in ready:
            if await pod_is_current(self.kube, pod):
                return pod["metadata"]["name"], _container_port(pod, target)
        if not ready or self.current_pod is None:
            return None
        return ready[0]["metadata"]["name"], _container_port(ready[0], target)

    async def _pod_change(self, timeout: float) -> None:
        """Until a pod the forward selects becomes usable (a watch from the last listing)
        or ``timeout`` passes: a poll would add its interval to every start."""
        if self._listed is None:
            await asyncio.sleep(FIRST_POLL)
            return
        key, selector, version = self._listed
        params = {key: selector, "watch": "true", "resourceVersion": version}
        path = f"/api/v1/namespaces/{self.namespace}/pods"
        with contextlib.suppress(TimeoutError, KubeloopError, OSError, ValueError):
            async with asyncio.timeout(timeout):
                async for line in self.kube.stream_lines(path, params):
                    event = json.loads(line)
                    if event.get("type") == "ERROR":  # e.g. the version expired: list again
                        await asyncio.sleep(FIRST_POLL)
                        return
                    if _usable(event.get("object") or {}):
                        return

    async def _still_good(self, pod: str) -> bool:
        found = await self.kube.get(f"/api/v1/namespaces/{self.namespace}/pods/{pod}")
        return found is not None and _usable(found)

    async def run(self, interval: float = 0.2) -> None:
        while True:
            try:
                picked = await self.pick_pod()
            except KubeloopError as exc:
                self.on_event(f"port-forward {self.spec.resource}: {exc.message}")
                picked = None
            if picked is None:
                if self.current_pod:
                    await asyncio.sleep(interval * 2)
                else:  # the start-up's wait: at once when a pod changes
                    await self._pod_change(timeout=1.0)
                continue
            pod, port = picked
            if not await self._local_port_free(interval):
                continue
            process = await spawn_tethered(
                kubectl_command(), "--kubeconfig", self.kubeconfig, "--context", self.context,
                "port-forward", "-n", self.namespace, "--address", "127.0.0.1", f"pod/{pod}",
                f"{self.local_port}:{port}",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            try:
                await self._serve(process, pod, interval)
            finally:
                self.ready.clear()
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()

    async def _local_port_free(self, interval: float) -> bool:
        """kubectl would fail to listen and be restarted again and again: say once who
        holds the port, then wait for it quietly."""
        if port_free(self.local_port):
            self._busy_told = False
            return True
        if not self._busy_told:
            self._busy_told = True
            self.on_event(f"port-forward {self.spec.resource}: local port {self.local_port} is "
                          f"in use by {port_owner(self.local_port)}; waiting for it (or set "
                          "localPort in kubeloop.yaml)")  # fmt: skip
        await asyncio.sleep(max(interval, 1.0))
        return False

    async def _serve(self, process: asyncio.subprocess.Process, pod: str, interval: float) -> None:
        assert process.stdout is not None
        first = await process.stdout.readline()
        if not first.startswith(b"Forwarding from"):
            await asyncio.sleep(interval)
            return
        if self.current_pod and self.current_pod != pod:
            self.moves += 1
        self.current_pod = pod
        self.ready.set()
        self.on_event(f"forwarding 127.0.0.1:{self.local_port} -> {self.spec.resource} "
                      f"(pod {pod})")  # fmt: skip
        drain = asyncio.create_task(process.stdout.read())  # keep kubectl's pipe empty
        try:
            while process.returncode is None:
                await asyncio.sleep(interval)
                if not await self._still_good(pod):
                    return  # deleted, terminating or unready: move to a current pod
        finally:
            drain.cancel()
