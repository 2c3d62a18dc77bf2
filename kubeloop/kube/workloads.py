"""Finding a workload the user names (``deployment/web``, ``pod/x``, or a Deployment's
name) and its running pods: what the bridge and the debugger start from."""

from __future__ import annotations

from kubeloop.core import Obj
from kubeloop.errors import KubeloopError
from kubeloop.kube.client import Kube, label_selector

KINDS = {"deployment": ("apps/v1", "deployments"), "deploy": ("apps/v1", "deployments"),
         "statefulset": ("apps/v1", "statefulsets"), "sts": ("apps/v1", "statefulsets"),
         "daemonset": ("apps/v1", "daemonsets"), "replicaset": ("apps/v1", "replicasets"),
         "pod": ("v1", "pods")}  # fmt: skip


async def find_workload(kube: Kube, namespace: str, reference: str) -> Obj:
    kind, _, name = reference.rpartition("/")
    kind = (kind or "deployment").lower()
    if kind not in KINDS:
        raise KubeloopError(f"cannot use a {kind} here",
                            "name a deployment, statefulset, daemonset, replicaset or pod")  # fmt: skip
    version, plural = KINDS[kind]
    prefix = "/api/v1" if version == "v1" else f"/apis/{version}"
    found = await kube.get(f"{prefix}/namespaces/{namespace}/{plural}/{name}")
    if found is None:
        raise KubeloopError(f"{kind} {name} not found in namespace {namespace}",
                            "check the name (kubectl get all -n NAMESPACE)")  # fmt: skip
    return found


async def running_pods(kube: Kube, namespace: str, workload: Obj) -> list[Obj]:
    """The workload's pods that run and are not on their way out."""
    if workload.get("kind") == "Pod":
        candidates = [workload]
    else:
        labels = (workload["spec"].get("selector") or {}).get("matchLabels") or {}
        listing = await kube.request("GET", f"/api/v1/namespaces/{namespace}/pods",
                                     params={"labelSelector": label_selector(labels)})  # fmt: skip
        candidates = listing.get("items", [])
    return [p for p in candidates if (p.get("status") or {}).get("phase") == "Running"
            and not p["metadata"].get("deletionTimestamp")]  # fmt: skip
