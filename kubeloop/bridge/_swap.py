"""The bridge's ``swap`` mode: the workload's pods run kubeloop's agent in place of the
app container, and the agent hands every connection to the developer's machine. For a
workload that must not run twice (a queue consumer, a scheduler), and where the cluster
refuses NET_ADMIN (the swapped agent listens on the port itself: no redirect needed).

The change is a patch of the pod template that carries the original template on the
object (the same record dev mode keeps, so ``kubeloop reset`` and ``kubeloop deploy``
put it back too). Before the patch, an in-cluster guard starts: if kubeloop stops
renewing its lease (killed, the laptop sleeps), the guard puts the template back by
itself within the lease's duration. A clean stop puts it back at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kubeloop.core import Obj, WaitTimeout, wait_until
from kubeloop.errors import KubeloopError
from kubeloop.guard import Guard
from kubeloop.kube import Kube, KubeError, label_selector
from kubeloop.sync.devmode import ORIGINAL, SUPERVISED_KINDS, reset

SWAPPED = "kubeloop.dev/swapped"  # on the swapped pods' template: tells them apart
GUARD_SECONDS = 15
ROLLOUT_TIMEOUT = 120.0


def swapped_container(original: Obj, image: str, router: str) -> Obj:
    """The app container, now the agent: same name, ports, resources and user, no probes
    or hooks (the app is not there to answer them)."""
    security = copy.deepcopy(original.get("securityContext") or {})
    if security.get("runAsNonRoot") and "runAsUser" not in security:
        security["runAsUser"] = 65534  # the agent image's user is root otherwise
    swapped: Obj = {
        "name": original["name"],
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/kubeloop-agent", "idle", "--router", router],
    }
    for key in ("ports", "resources", "volumeMounts"):
        if original.get(key):
            swapped[key] = copy.deepcopy(original[key])
    if security:
        swapped["securityContext"] = security
    return swapped


def swap_patch(workload: Obj, container: str, image: str, router: str) -> list[Obj]:
    """A JSON patch that records the template and swaps the container in one step, and
    fails if the workload changed since it was read."""
    template = workload["spec"]["template"]
    index = next(i for i, c in enumerate(template["spec"]["containers"]) if c["name"] == container)
    swapped = swapped_container(template["spec"]["containers"][index], image, router)
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    patch: list[Obj] = [
        {"op": "test", "path": "/metadata/resourceVersion",
         "value": workload["metadata"]["resourceVersion"]},
        {"op": "add", "path": "/metadata/annotations",
         "value": {**(workload["metadata"].get("annotations") or {}),
                   ORIGINAL: json.dumps(template, sort_keys=True)}},
        {"op": "replace", "path": f"/spec/template/spec/containers/{index}", "value": swapped},
        {"op": "add", "path": "/spec/template/metadata/annotations",
         "value": {**annotations, SWAPPED: "true"}},
    ]  # fmt: skip
    return patch


@dataclass
class Swap:
    kube: Kube
    namespace: str
    workload: Obj
    container: str
    agent_image: str
    router: str
    on_event: Callable[[str], None] = lambda _: None
    guard: Guard | None = None
    _changed: bool = field(default=False)
    _renewer: asyncio.Task[None] | None = None

    @property
    def kind_name(self) -> str:
        return f"{self.workload['kind'].lower()}/{self.workload['metadata']['name']}"

    @property
    def path(self) -> str:
        plural = SUPERVISED_KINDS[self.workload["kind"]]
        return f"/apis/apps/v1/namespaces/{self.namespace}/{plural}/{self.workload['metadata']['name']}"

    def check(self) -> None:
        if self.workload.get("kind") not in SUPERVISED_KINDS:
            raise KubeloopError(
                f"swap mode replaces a workload's pods, which a {self.workload.get('kind')} "
                "cannot have put back in place",
                "name a deployment, statefulset or daemonset, or use --mode steal",
            )
        if ORIGINAL in (self.workload["metadata"].get("annotations") or {}):
            raise KubeloopError(
                f"{self.kind_name} is already changed by kubeloop (dev mode, or another "
                "developer's swap)",
                "stop that session, or put it back with 'kubeloop reset'",
            )

    async def start(self) -> list[Obj]:
        """Guard, swap and wait until only swapped pods run; their list."""
        self.check()
        name = self.workload["metadata"]["name"]
        plural = SUPERVISED_KINDS[self.workload["kind"]]
        self.guard = Guard(self.kube, self.namespace, f"swap-{plural}-{name}"[:50],
                           self.agent_image, GUARD_SECONDS, self.on_event,
                           workload=f"{plural}/{name}")  # fmt: skip
        await self.guard.start()
        self._renewer = asyncio.get_running_loop().create_task(self.guard.keep_alive())
        try:
            patch = swap_patch(self.workload, self.container, self.agent_image, self.router)
            try:
                await self.kube.request("PATCH", self.path, body=json.dumps(patch),
                                        content_type="application/json-patch+json",
                                        params={"fieldManager": "kubeloop"})  # fmt: skip
            except KubeError as exc:
                raise KubeloopError(f"cannot swap {self.kind_name}: {exc.message}",
                                    "if it changed meanwhile, run the bridge again") from exc  # fmt: skip
            self._changed = True
            self.on_event(f"bridge: {self.kind_name} swapped (recorded on it; put back when "
                          f"this stops, or by the in-cluster guard {GUARD_SECONDS}s after "
                          "this machine goes silent)")  # fmt: skip
            return await self._wait_swapped()
        except BaseException:
            await self.restore()
            raise

    async def swapped_pods(self) -> tuple[list[Obj], int]:
        """Running swapped pods, and how many others (old, starting, ending) remain."""
        labels = self.workload["spec"]["selector"].get("matchLabels") or {}
        listing = await self.kube.request(
            "GET", f"/api/v1/namespaces/{self.namespace}/pods",
            params={"labelSelector": label_selector(labels)},
        )  # fmt: skip
        ready, others = [], 0
        for pod in listing.get("items", []):
            swapped = SWAPPED in (pod["metadata"].get("annotations") or {})
            running = (pod.get("status") or {}).get("phase") == "Running"
            if swapped and running and not pod["metadata"].get("deletionTimestamp"):
                ready.append(pod)
            elif not swapped or not running:
                others += 1
        return ready, others

    async def _wait_swapped(self) -> list[Obj]:
        """Until the app's pods are all gone (it must not run twice) and swapped ones run."""
        started = time.monotonic()
        seen: tuple[list[Obj], int] = ([], 0)
        told = False

        async def taken_over() -> bool:
            nonlocal seen, told
            seen = await self.swapped_pods()
            ready, others = seen
            if others and not told and time.monotonic() - started > 3:
                told = True
                self.on_event(f"bridge: waiting for {others} of the app's pods to stop (it "
                              "must not run twice; their termination grace period counts)")  # fmt: skip
            return bool(ready) and not others

        try:
            await wait_until(taken_over, ROLLOUT_TIMEOUT, 0.2, "the swapped pods")
        except WaitTimeout:
            raise KubeloopError(
                f"{self.kind_name}: the swapped pods did not take over within "
                f"{ROLLOUT_TIMEOUT:.0f}s ({len(seen[0])} running, {seen[1]} others left)",
                f"kubectl describe {self.kind_name} -n {self.namespace}; it is put back now",
            ) from None
        return seen[0]

    async def restore(self) -> None:
        """Put the template back (at once) and end the guard."""
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
        if self._changed:
            restored = await reset(self.kube, self.namespace, only={self.kind_name})
            if restored:
                self.on_event(f"bridge: {self.kind_name} put back")
            self._changed = False
        if self.guard is not None:
            await self.guard.end()
            self.guard = None


async def reset_swaps(kube: Kube, namespace: str) -> list[str]:
    """Put back every workload in ``namespace`` that a bridge left swapped (its session
    gone and its guard too): what ``kubeloop reset`` does for bridges."""
    swapped = set()
    for kind, plural in SUPERVISED_KINDS.items():
        listing = await kube.request("GET", f"/apis/apps/v1/namespaces/{namespace}/{plural}")
        for item in listing.get("items", []):
            template_meta = (item.get("spec") or {}).get("template", {}).get("metadata") or {}
            if SWAPPED in (template_meta.get("annotations") or {}):
                swapped.add(f"{kind.lower()}/{item['metadata']['name']}")
    return await reset(kube, namespace, only=swapped) if swapped else []
