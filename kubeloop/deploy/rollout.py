"""Waiting for workloads to roll out, and saying why a pod fails when it does."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable

from kubeloop.core import Obj
from kubeloop.errors import KubeloopError
from kubeloop.kube import Kube, label_selector

WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")
FATAL_WAITING = {
    "ImagePullBackOff": "the image cannot be pulled",
    "ErrImagePull": "the image cannot be pulled",
    "InvalidImageName": "the image name is invalid",
    "CrashLoopBackOff": "the container keeps crashing",
    "CreateContainerConfigError": "the container's configuration is wrong",
    "CreateContainerError": "the container cannot be created",
    "RunContainerError": "the container cannot start",
}


class RolloutError(KubeloopError):
    pass


def _path(obj: Obj) -> str:
    group = obj["apiVersion"]
    ns = obj["metadata"]["namespace"]
    plural = {"Deployment": "deployments", "StatefulSet": "statefulsets",
              "DaemonSet": "daemonsets"}[obj["kind"]]  # fmt: skip
    return f"/apis/{group}/namespaces/{ns}/{plural}/{obj['metadata']['name']}"


def progress_of(obj: Obj) -> tuple[bool, str]:
    """(done, 'ready/desired') for a Deployment, StatefulSet or DaemonSet."""
    status = obj.get("status") or {}
    generation = obj["metadata"].get("generation", 0)
    observed = status.get("observedGeneration", 0) >= generation
    if obj["kind"] == "DaemonSet":
        want = status.get("desiredNumberScheduled", 0)
        ready = status.get("numberReady", 0)
        updated = status.get("updatedNumberScheduled", 0)
        return observed and ready == want and updated == want, f"{ready}/{want}"
    want = (obj.get("spec") or {}).get("replicas", 1)
    ready = status.get("readyReplicas", 0)
    updated = status.get("updatedReplicas", 0)
    total = status.get("replicas", 0)
    done = observed and updated == want and ready == want and total == want
    return done, f"{ready}/{want}"


async def _pods_of(kube: Kube, obj: Obj) -> list[Obj]:
    labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    selector = label_selector(labels)
    ns = obj["metadata"]["namespace"]
    listing = await kube.request("GET", f"/api/v1/namespaces/{ns}/pods",
                                 params={"labelSelector": selector})  # fmt: skip
    return list(listing.get("items", []))


async def pod_problem(kube: Kube, pod: Obj, probe_grace: float = 20) -> str | None:
    """Why a pod cannot become ready, with its last log lines; None while it may."""
    name, ns = pod["metadata"]["name"], pod["metadata"]["namespace"]
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "Unschedulable":
            return f"pod {name} cannot be scheduled: {condition.get('message', '')}"
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason", "")
        if reason in FATAL_WAITING:
            logs = await last_logs(
                kube, ns, name, container["name"], previous=reason == "CrashLoopBackOff"
            )
            detail = waiting.get("message", "")
            return (f"pod {name}, container {container['name']}: {FATAL_WAITING[reason]} "
                    f"({reason}{': ' + detail if detail else ''})" + logs)  # fmt: skip
        running = (container.get("state") or {}).get("running")
        if running and not container.get("ready"):
            started = running.get("startedAt", "")
            age = time.time() - _parse_time(started) if started else 0
            if age > probe_grace:
                events = await _events(kube, ns, name, "Unhealthy")
                if events:
                    logs = await last_logs(kube, ns, name, container["name"])
                    return (f"pod {name}, container {container['name']}: readiness probe keeps "
                            f"failing: {events[-1]}" + logs)  # fmt: skip
    return None


def _parse_time(stamp: str) -> float:

    return dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()


async def _events(kube: Kube, ns: str, pod: str, reason: str) -> list[str]:
    listing = await kube.request(
        "GET", f"/api/v1/namespaces/{ns}/events",
        params={"fieldSelector": f"involvedObject.name={pod},reason={reason}"},
    )  # fmt: skip
    return [e.get("message", "") for e in listing.get("items", [])]


async def last_logs(kube: Kube, ns: str, pod: str, container: str, previous: bool = False,
                    lines: int = 20) -> str:  # fmt: skip
    params = {"container": container, "tailLines": str(lines)}
    if previous:
        params["previous"] = "true"
    try:
        text = (await kube.request("GET", f"/api/v1/namespaces/{ns}/pods/{pod}/log",
                                   params=params)).get("text", "")  # fmt: skip
    except KubeloopError:
        return ""
    if not text.strip():
        return ""
    shown = "\n".join(f"    | {line}" for line in text.rstrip().splitlines()[-lines:])
    return f"\n  last log lines:\n{shown}"


async def _service_has_endpoints(kube: Kube, svc: Obj) -> bool:
    """A Service whose selector matches pods counts as ready once one endpoint is ready:
    until then, clients of the Service get 'connection refused'."""
    ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
    selector = label_selector(svc["spec"]["selector"])
    pods = await kube.request("GET", f"/api/v1/namespaces/{ns}/pods",
                              params={"labelSelector": selector})  # fmt: skip
    if not pods.get("items"):
        return True  # nothing behind it (yet): not ours to wait for
    return await has_ready_endpoint(kube, ns, name)


async def has_ready_endpoint(kube: Kube, namespace: str, service: str) -> bool:
    slices = await kube.request(
        "GET", f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
        params={"labelSelector": f"kubernetes.io/service-name={service}"},
    )  # fmt: skip
    return any(
        (endpoint.get("conditions") or {}).get("ready")
        for item in slices.get("items", [])
        for endpoint in item.get("endpoints") or []
    )


REVISION = "deployment.kubernetes.io/revision"


def _controller(obj: Obj) -> Obj | None:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return next((ref for ref in refs if ref.get("controller")), None)


def _revision(obj: Obj) -> str | None:
    return (obj["metadata"].get("annotations") or {}).get(REVISION)


def _observed(workload: Obj) -> bool:
    """Whether the workload's controller has acted on its latest spec."""
    generation = workload["metadata"].get("generation", 0)
    return bool((workload.get("status") or {}).get("observedGeneration", 0) >= generation)


async def pod_is_current(kube: Kube, pod: Obj) -> bool:
    """Whether the pod runs its workload's latest pod template. Right after an apply that
    changed the template, the old pods are still Ready until new ones replace them: a
    port-forward opened on one would serve the old version (a stale pod)."""
    owner = _controller(pod)
    ns = pod["metadata"]["namespace"]
    labels = pod["metadata"].get("labels") or {}
    if owner is None:
        return True  # a bare pod is its own latest version
    if owner["kind"] == "ReplicaSet":
        replicaset = await kube.get(f"/apis/apps/v1/namespaces/{ns}/replicasets/{owner['name']}")
        parent = _controller(replicaset) if replicaset else None
        if replicaset is None or parent is None or parent["kind"] != "Deployment":
            return replicaset is not None
        deployment = await kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{parent['name']}")
        return (deployment is not None and _observed(deployment)
                and _revision(replicaset) == _revision(deployment))  # fmt: skip
    plural = {"StatefulSet": "statefulsets", "DaemonSet": "daemonsets"}.get(owner["kind"])
    if plural is None:
        return True  # a Job's or another controller's pod: no template revision to compare
    workload = await kube.get(f"/apis/apps/v1/namespaces/{ns}/{plural}/{owner['name']}")
    if workload is None or not _observed(workload):
        return False
    if owner["kind"] == "StatefulSet":
        return bool(
            labels.get("controller-revision-hash") == workload["status"].get("updateRevision")
        )
    return labels.get("pod-template-generation") == str(workload["metadata"].get("generation"))


def _just_crashed(pod: Obj, within: float = 30) -> bool:
    """A container that failed a moment ago and was started again: counted ready while it
    runs (no probe), it is not rolled out, and its next crash is explained."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        ended = (status.get("lastState") or {}).get("terminated") or {}
        finished = ended.get("finishedAt")
        if (
            ended.get("exitCode", 0) != 0
            and finished
            and time.time() - _parse_time(finished) < within
        ):
            return True
    return False


async def wait_rollout(
    kube: Kube,
    objects: list[Obj],
    timeout: float,
    on_progress: Callable[[str], None] = lambda _: None,
) -> None:
    """Wait until every workload in ``objects`` is rolled out; raise with the reason of
    the first failing pod."""
    workloads = [o for o in objects if o.get("kind") in WORKLOADS]
    services = [
        o for o in objects if o.get("kind") == "Service" and (o.get("spec") or {}).get("selector")
    ]
    if not workloads:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        states = []
        pending = []
        for obj in workloads:
            live = await kube.get(_path(obj))
            if live is None:
                raise RolloutError(f"{obj['kind']} {obj['metadata']['name']} disappeared")
            done, counts = progress_of(live)
            states.append(f"{obj['kind'].lower()}/{obj['metadata']['name']} {counts}")
            if not done or any(_just_crashed(p) for p in await _pods_of(kube, live)):
                pending.append(live)
        for svc in services:
            if not await _service_has_endpoints(kube, svc):
                states.append(f"service/{svc['metadata']['name']} 0 endpoints")
                pending.append(svc)
        on_progress(", ".join(states))
        if not pending:
            return
        for live in pending:
            if live.get("kind") == "Service":
                continue
            for pod in await _pods_of(kube, live):
                problem = await pod_problem(kube, pod)
                if problem:
                    raise RolloutError(
                        f"rollout failed: {problem}",
                        "fix it and run again; 'kubectl describe pod' has more",
                    )
        if loop.time() > deadline:
            raise RolloutError(
                f"rollout not finished after {timeout:.0f}s: {', '.join(states)}",
                "raise deploy.timeout in kubeloop.yaml, or check the pods",
            )
        await asyncio.sleep(0.1)
