"""What kubeloop applied for a project: a ConfigMap in the project's namespace, so that
objects that leave the render can be pruned and 'kubeloop delete' removes exactly them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kubeloop.kube import Kube


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


def ref_of(obj: dict[str, Any]) -> Ref:
    meta = obj["metadata"]
    return Ref(obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])


def _configmap(project: str, namespace: str, refs: list[Ref] | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"kubeloop-inventory-{project}", "namespace": namespace,
                     "labels": {"app.kubernetes.io/managed-by": "kubeloop"}},
    }  # fmt: skip
    if refs is not None:
        body["data"] = {"objects": json.dumps([r.__dict__ for r in sorted(refs)])}
    return body


async def read(kube: Kube, project: str, namespace: str) -> list[Ref]:
    found = await kube.get(
        f"/api/v1/namespaces/{namespace}/configmaps/kubeloop-inventory-{project}"
    )
    if not found:
        return []
    return [Ref(**item) for item in json.loads(found.get("data", {}).get("objects", "[]"))]


async def write(kube: Kube, project: str, namespace: str, refs: list[Ref]) -> None:
    await kube.apply(_configmap(project, namespace, refs))


async def remove(kube: Kube, project: str, namespace: str) -> None:
    await kube.delete(_configmap(project, namespace, None))
