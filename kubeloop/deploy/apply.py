"""Deploy: server-side apply in dependency order, prune by inventory, wait."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from kubeloop.deploy import inventory
from kubeloop.deploy.inventory import Ref, ref_of
from kubeloop.deploy.rollout import wait_rollout
from kubeloop.kube import Kube

Obj = dict[str, Any]
# Objects others depend on go first.
ORDER = ("Namespace", "CustomResourceDefinition", "ServiceAccount", "ClusterRole", "Role",
         "ClusterRoleBinding", "RoleBinding", "Secret", "ConfigMap", "PersistentVolumeClaim",
         "Service")  # fmt: skip


@dataclass
class DeployResult:
    applied: list[Ref] = field(default_factory=list)
    pruned: list[Ref] = field(default_factory=list)


def _rank(obj: Obj) -> int:
    kind = obj.get("kind", "")
    return ORDER.index(kind) if kind in ORDER else len(ORDER)


async def _fill_namespaces(kube: Kube, objects: list[Obj], namespace: str) -> None:
    for obj in objects:
        _, namespaced = await kube._resource(obj["apiVersion"], obj["kind"])
        meta = obj.setdefault("metadata", {})
        if namespaced:
            meta.setdefault("namespace", namespace)
        else:
            meta.pop("namespace", None)


async def ensure_namespace(kube: Kube, namespace: str) -> None:
    """Create the namespace if needed, and wait for its default service account: until
    the controller manager makes it, every pod in the namespace is refused."""
    if await kube.get(f"/api/v1/namespaces/{namespace}") is None:
        await kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    await kube.wait_for(
        f"/api/v1/namespaces/{namespace}/serviceaccounts/default",
        lambda _: True, f"the default service account of namespace {namespace}", 60,
        interval=0.05,
    )  # fmt: skip


async def deploy(
    kube: Kube,
    objects: list[Obj],
    project: str,
    namespace: str,
    *,
    prune: bool = True,
    timeout: float = 120,
    wait: bool = True,
    on_progress: Any = lambda _: None,
) -> DeployResult:
    await ensure_namespace(kube, namespace)
    await _fill_namespaces(kube, objects, namespace)
    result = DeployResult()
    previous = await inventory.read(kube, project, namespace)
    ranks = sorted({_rank(o) for o in objects})
    for rank in ranks:
        batch = [o for o in objects if _rank(o) == rank]
        await asyncio.gather(*(kube.apply(o) for o in batch))
        result.applied += [ref_of(o) for o in batch]
    current = set(result.applied)
    # Record the union first: an interrupted prune must not forget what is still there.
    await inventory.write(kube, project, namespace, sorted(current | set(previous)))
    if prune:
        for ref in sorted(set(previous) - current, key=lambda r: -_rank(r.as_object())):
            await kube.delete(ref.as_object())
            result.pruned.append(ref)
    await inventory.write(kube, project, namespace, sorted(current))
    if wait:
        await wait_rollout(kube, objects, timeout, on_progress)
    return result


async def delete_project(kube: Kube, project: str, namespace: str) -> list[Ref]:
    """Delete exactly what kubeloop deployed for ``project``."""
    refs = await inventory.read(kube, project, namespace)
    for ref in sorted(refs, key=lambda r: -_rank(r.as_object())):
        if ref.kind == "Namespace":
            continue  # a namespace may hold things kubeloop did not make
        await kube.delete(ref.as_object())
    await inventory.remove(kube, project, namespace)
    return refs
