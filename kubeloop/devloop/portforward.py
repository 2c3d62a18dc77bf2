"""Port-forwards that outlive pods.

kubectl port-forward binds to one pod and, when that pod goes away in a rollout, keeps
running while every new connection fails. So kubeloop resolves the resource to a ready
pod itself, forwards to that pod, watches it, and moves the forward to a current ready
pod as soon as the old one is deleted, terminating or no longer ready.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from kubeloop.config import PortForward
from kubeloop.core import Obj, kubectl_command
from kubeloop.errors import KubeloopError
from kubeloop.kube import Kube, label_selector
from kubeloop.kube.client import pod_is_ready
from kubeloop.proc import spawn_tethered


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
        selector, target = await self._selector_and_target()
        key = "fieldSelector" if selector.startswith("metadata.name=") else "labelSelector"
        pods = await self.kube.request("GET", f"/api/v1/namespaces/{self.namespace}/pods",
                                       params={key: selector})  # fmt: skip
        ready = [p for p in pods.get("items", []) if _usable(p)]
        if not ready:
            return None
        # The newest ready pod: after a rollout, that is the new version.
        newest = max(ready, key=lambda p: p["metadata"]["creationTimestamp"])
        return newest["metadata"]["name"], _container_port(newest, target)

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
                await asyncio.sleep(interval * 2)
                continue
            pod, port = picked
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
