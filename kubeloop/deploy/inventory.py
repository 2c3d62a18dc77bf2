"""What kubeloop applied for a project: a ConfigMap in the project's namespace, so that
objects that leave the render can be pruned and 'kubeloop delete' removes exactly them.

Each entry also says how kubeloop came to hold the object, because that decides whether
kubeloop may ever delete it: ``adopted`` (it existed, without this project's label,
when kubeloop first applied it: prune and delete leave it) and, for Namespaces,
``created`` (kubeloop made it; a Namespace kubeloop did not make is never deleted).
The inventory is a hint, not an authority: before deleting anything kubeloop checks the
live object's labels (see kubeloop.deploy.apply).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kubeloop.core import MANAGED_BY, PROJECT_LABEL
from kubeloop.errors import KubeloopError
from kubeloop.kube import Kube

# On an object kubeloop adopted: the adoption outlives the inventory's entry (the object
# may leave the render and come back, or the inventory may be lost or edited).
ADOPTED = "kubeloop.dev/adopted"


@dataclass(frozen=True, order=True)
class Ref:
    api_version: str
    kind: str
    namespace: str  # "" for cluster-scoped objects
    name: str

    def as_object(self) -> dict[str, Any]:
        meta = {"name": self.name, **({"namespace": self.namespace} if self.namespace else {})}
        return {"apiVersion": self.api_version, "kind": self.kind, "metadata": meta}

    def __str__(self) -> str:
        return f"{self.kind.lower()}/{self.name}" + (
            f" -n {self.namespace}" if self.namespace else ""
        )


@dataclass(frozen=True)
class Entry:
    ref: Ref
    adopted: bool = False  # existed before kubeloop applied it: never deleted by kubeloop
    created: bool = False  # kubeloop created it (recorded for Namespaces)

    def merged(self, later: Entry) -> Entry:
        """What is known once ``later`` (this deploy's view) meets this older entry: an
        adoption or a creation, once recorded, is never forgotten."""
        return Entry(self.ref, self.adopted or later.adopted, self.created or later.created)


def ref_of(obj: dict[str, Any]) -> Ref:
    meta = obj["metadata"]
    return Ref(obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])


def is_ours(obj: dict[str, Any] | None, project: str) -> bool:
    """Whether a live object carries kubeloop's labels for ``project``."""
    labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
    return bool(labels.get(MANAGED_BY) == "kubeloop" and labels.get(PROJECT_LABEL) == project)


def was_adopted(obj: dict[str, Any] | None) -> bool:
    annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
    return ADOPTED in annotations


def name_of(project: str) -> str:
    return f"kubeloop-inventory-{project}"


def _configmap(project: str, namespace: str, entries: list[Entry] | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name_of(project), "namespace": namespace,
                     "labels": {MANAGED_BY: "kubeloop", PROJECT_LABEL: project}},
    }  # fmt: skip
    if entries is not None:
        items = [{**e.ref.__dict__, "adopted": e.adopted, "created": e.created}
                 for e in sorted(entries, key=lambda e: e.ref)]  # fmt: skip
        body["data"] = {"objects": json.dumps(items)}
    return body


def _bad(project: str, namespace: str, why: str) -> KubeloopError:
    return KubeloopError(
        f"the inventory ConfigMap {namespace}/{name_of(project)} {why}",
        "kubeloop will not delete anything by it; check who changed it, and delete it "
        "(kubectl delete configmap) to start a new one (objects it listed stay)",
    )


async def read(kube: Kube, project: str, namespace: str) -> list[Entry]:
    found = await kube.get(f"/api/v1/namespaces/{namespace}/configmaps/{name_of(project)}")
    if not found:
        return []
    labels = (found.get("metadata") or {}).get("labels") or {}
    if labels.get(MANAGED_BY) != "kubeloop":
        raise _bad(project, namespace, "exists but was not written by kubeloop")
    try:
        items = json.loads((found.get("data") or {}).get("objects", "[]"))
        return [Entry(Ref(str(i["api_version"]), str(i["kind"]), str(i["namespace"]),
                          str(i["name"])),
                      adopted=bool(i.get("adopted", False)), created=bool(i.get("created", False)))
                for i in items]  # fmt: skip
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise _bad(project, namespace, f"cannot be read ({exc})") from exc


async def write(kube: Kube, project: str, namespace: str, entries: list[Entry]) -> None:
    await kube.apply(_configmap(project, namespace, entries))


async def remove(kube: Kube, project: str, namespace: str) -> None:
    await kube.delete(_configmap(project, namespace, None))
