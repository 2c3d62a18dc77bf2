"""Deploy: server-side apply in dependency order, prune by inventory, wait.

What kubeloop deletes (prune, 'kubeloop delete') is decided on the live object, just
before the delete: it must carry kubeloop's labels for this project, must not have
existed before kubeloop adopted it, and a Namespace must have been created by kubeloop.
The delete itself is conditional on the object being the one checked (uid and
resourceVersion preconditions), so a change in between makes kubeloop leave it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from kubeloop.core import MANAGED_BY, PROJECT_LABEL, Obj
from kubeloop.deploy import inventory
from kubeloop.deploy.inventory import ADOPTED, Entry, Ref, is_ours, ref_of, was_adopted
from kubeloop.deploy.rollout import wait_rollout
from kubeloop.deploy.tasks import all_of
from kubeloop.deploy.timeline import Timeline
from kubeloop.errors import KubeloopError
from kubeloop.kube import Kube, KubeError

# Objects others depend on go first.
ORDER = ("Namespace", "CustomResourceDefinition", "ServiceAccount", "ClusterRole", "Role",
         "ClusterRoleBinding", "RoleBinding", "Secret", "ConfigMap", "PersistentVolumeClaim",
         "Service")  # fmt: skip


@dataclass
class DeployResult:
    applied: list[Ref] = field(default_factory=list)
    pruned: list[Ref] = field(default_factory=list)
    adopted: list[Ref] = field(default_factory=list)  # found existing, now applied by us
    kept: list[tuple[Ref, str]] = field(default_factory=list)  # not pruned, and why


def _rank(obj: Obj) -> int:
    kind = obj.get("kind", "")
    return ORDER.index(kind) if kind in ORDER else len(ORDER)


async def _fill_namespaces(kube: Kube, objects: list[Obj], namespace: str) -> None:
    # One discovery request per kind at once (the client caches them per group version).
    kinds = {(obj["apiVersion"], obj["kind"]) for obj in objects}
    await all_of(*(kube._resource(api_version, kind) for api_version, kind in kinds))
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


async def _survey(kube: Kube, obj: Obj, project: str) -> Entry:
    """How this deploy comes to hold ``obj``, from the live object before applying."""
    ref = ref_of(obj)
    live = await kube.get(await kube.object_path(obj))
    if live is None:
        return Entry(ref, created=True)
    labels = (live.get("metadata") or {}).get("labels") or {}
    other = labels.get(PROJECT_LABEL)
    if other and other != project and labels.get(MANAGED_BY) == "kubeloop":
        raise KubeloopError(
            f"{ref} belongs to kubeloop project '{other}'; project '{project}' renders it too",
            "rename it in one of the projects, or deploy them to different namespaces",
        )
    return Entry(ref, adopted=was_adopted(live) or not is_ours(live, project))


async def _namespace_then_survey(kube: Kube, objects: list[Obj], namespace: str,
                                 project: str) -> list[Entry]:  # fmt: skip
    """The project's namespace made, then the Namespace objects read: one that
    ensure_namespace just made counts as existing, as when this ran first."""
    await ensure_namespace(kube, namespace)
    namespaces = [o for o in objects if o.get("kind") == "Namespace"]
    return list(await all_of(*(_survey(kube, o, project) for o in namespaces)))


async def _fill_then_survey(kube: Kube, objects: list[Obj], namespace: str,
                            project: str) -> list[Entry]:  # fmt: skip
    """Every other object read (concurrently with making the namespace: a GET in a
    namespace that does not exist yet finds nothing, as it should)."""
    await _fill_namespaces(kube, objects, namespace)
    others = [o for o in objects if o.get("kind") != "Namespace"]
    return list(await all_of(*(_survey(kube, o, project) for o in others)))


async def deploy(
    kube: Kube,
    objects: list[Obj],
    project: str,
    namespace: str,
    *,
    prune: bool = True,
    timeout: float = 120,
    wait: bool = True,
    on_progress: Callable[[str], None] = lambda _: None,
    timeline: Timeline | None = None,
) -> DeployResult:
    """Server-side apply ``objects`` for ``project`` into ``namespace`` (created if
    missing), record them in the inventory, prune what left the render, and with ``wait``
    wait for the rollout."""
    timeline = timeline or Timeline()
    with timeline.phase("apply: namespace, inventory and live objects read"):
        namespaces, read, others = await all_of(
            _namespace_then_survey(kube, objects, namespace, project),
            inventory.read(kube, project, namespace),
            _fill_then_survey(kube, objects, namespace, project),
        )
    result = DeployResult()
    previous: dict[Ref, Entry] = {e.ref: e for e in read}
    current: dict[Ref, Entry] = {}
    for entry in [*namespaces, *others]:
        known = previous.get(entry.ref)
        current[entry.ref] = known.merged(entry) if known else entry
        if current[entry.ref].adopted and not (known and known.adopted):
            result.adopted.append(entry.ref)
    # Record the union before anything changes: an adoption must be on record before the
    # apply puts our labels on the object, and an interrupted prune must not forget what
    # is still there. The object itself carries its adoption from the apply on.
    union = {**previous, **current}
    if union != previous:  # an unchanged record is not written again (start-up time)
        await inventory.write(kube, project, namespace, list(union.values()))
    for obj in objects:
        if current[ref_of(obj)].adopted:
            annotations = obj["metadata"].get("annotations") or {}
            obj["metadata"]["annotations"] = {**annotations, ADOPTED: project}
    with timeline.phase("apply: server-side apply"):
        for rank in sorted({_rank(o) for o in objects}):
            batch = [o for o in objects if _rank(o) == rank]
            await asyncio.gather(*(kube.apply(o) for o in batch))
            result.applied += [ref_of(o) for o in batch]
    if prune:
        gone = [e for ref, e in previous.items() if ref not in current]
        result.pruned, kept = await _remove(kube, gone, project)
        result.kept += kept
    if current != union:
        await inventory.write(kube, project, namespace, list(current.values()))
    if wait:
        await wait_rollout(kube, objects, timeout, on_progress)
    return result


async def delete_if_ours(kube: Kube, entry: Entry, project: str) -> str | None:
    """Delete the object if kubeloop may: None when deleted (or already gone), else why
    it was left in place."""
    if entry.adopted:
        return "it existed before kubeloop adopted it"
    if entry.ref.kind == "Namespace" and not entry.created:
        return "kubeloop did not create this namespace"
    path = await kube.object_path(entry.ref.as_object())
    live = await kube.get(path)
    if live is None:
        return None
    if was_adopted(live):
        return "it existed before kubeloop adopted it"
    if not is_ours(live, project):
        return f"it does not carry kubeloop's labels for project '{project}'"
    meta = live["metadata"]
    options = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background",
               "preconditions": {"uid": meta["uid"], "resourceVersion": meta["resourceVersion"]}}  # fmt: skip
    try:
        await kube.request("DELETE", path, body=options)
    except KubeError as exc:
        if exc.status == 404:
            return None
        if exc.status == 409:  # changed since the check: whatever changed it decides
            return "it changed while kubeloop was checking it"
        raise
    return None


@dataclass
class DeleteResult:
    deleted: list[Ref] = field(default_factory=list)
    kept: list[tuple[Ref, str]] = field(default_factory=list)


async def delete_project(kube: Kube, project: str, namespace: str) -> DeleteResult:
    """Delete what kubeloop deployed for ``project`` and may delete (see the module)."""
    entries = await inventory.read(kube, project, namespace)
    result = DeleteResult(*await _remove(kube, entries, project))
    await inventory.remove(kube, project, namespace)
    return result


async def _remove(kube: Kube, entries: list[Entry],
                  project: str) -> tuple[list[Ref], list[tuple[Ref, str]]]:  # fmt: skip
    """Delete what kubeloop may of ``entries``, dependents first: (deleted, kept with
    why)."""
    deleted: list[Ref] = []
    kept: list[tuple[Ref, str]] = []
    for entry in sorted(entries, key=lambda e: -_rank(e.ref.as_object())):
        reason = await delete_if_ours(kube, entry, project)
        if reason is None:
            deleted.append(entry.ref)
        else:
            kept.append((entry.ref, reason))
    return deleted, kept
