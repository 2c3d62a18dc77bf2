"""Prune and delete touch only what kubeloop may delete, checked on the live object: never
an object that existed before kubeloop adopted it, never a Namespace kubeloop did not
create, never an object without this project's labels (whatever the inventory says)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kubeloop.config import load
from kubeloop.deploy import delete_project, deploy
from kubeloop.deploy.apply import DeployResult
from kubeloop.deploy.inventory import Ref
from kubeloop.errors import KubeloopError
from kubeloop.kube import Kube
from kubeloop.render import render


def cm(name: str, namespace: str | None = None, **labels: str) -> dict[str, object]:
    meta: dict[str, object] = {"name": name, "labels": labels}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"v": name}}


class Project:
    """A raw-manifest project in a folder; ``deploy(*docs)`` renders and applies them."""

    def __init__(self, folder: Path, name: str, namespace: str, kube: Kube) -> None:
        self.folder, self.name, self.namespace, self.kube = folder, name, namespace, kube
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "kubeloop.yaml").write_text(
            f"name: {name}\nnamespace: {namespace}\nmanifests: {{raw: [objects.yaml]}}\n"
        )

    async def deploy(self, *docs: dict[str, object]) -> DeployResult:
        (self.folder / "objects.yaml").write_text("---\n".join(json.dumps(d) + "\n" for d in docs))
        objects = await render(load(self.folder / "kubeloop.yaml"))
        return await deploy(self.kube, objects, self.name, self.namespace, wait=False)

    async def inventory(self) -> list[dict[str, object]]:
        found = await self.kube.get(f"/api/v1/namespaces/{self.namespace}/configmaps/"
                                    f"kubeloop-inventory-{self.name}")  # fmt: skip
        assert found is not None
        return list(json.loads(found["data"]["objects"]))


async def exists(kube: Kube, namespace: str, name: str) -> bool:
    return await kube.get(f"/api/v1/namespaces/{namespace}/configmaps/{name}") is not None


async def namespace_alive(kube: Kube, name: str) -> bool:
    found = await kube.get(f"/api/v1/namespaces/{name}")
    return found is not None and not found["metadata"].get("deletionTimestamp")


@pytest.fixture
async def extra_namespaces(kube: Kube) -> AsyncIterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        await kube.delete({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


async def test_an_adopted_object_is_recorded_and_never_deleted(
    tmp_path: Path, namespace: str, kube: Kube
) -> None:
    await kube.apply(cm("pre", namespace, team="payments"))  # made by someone else, first
    project = Project(tmp_path / "p", "adopt", namespace, kube)
    result = await project.deploy(cm("pre"), cm("mine"))
    assert result.adopted == [Ref("v1", "ConfigMap", namespace, "pre")]
    entries = {e["name"]: e for e in await project.inventory()}
    assert entries["pre"]["adopted"] is True and entries["mine"]["adopted"] is False

    again = await project.deploy(cm("pre"), cm("mine"))  # now it carries our labels
    assert again.adopted == []  # already on record, and it stays adopted
    assert {e["name"]: e["adopted"] for e in await project.inventory()}["pre"] is True

    pruned = await project.deploy(cm("mine"))  # 'pre' left the render
    assert pruned.pruned == []
    assert pruned.kept == [(Ref("v1", "ConfigMap", namespace, "pre"),
                            "it existed before kubeloop adopted it")]  # fmt: skip
    assert await exists(kube, namespace, "pre")

    await project.deploy(cm("pre"), cm("mine"))
    deleted = await delete_project(kube, "adopt", namespace)
    assert deleted.deleted == [Ref("v1", "ConfigMap", namespace, "mine")]
    assert [r.name for r, _ in deleted.kept] == ["pre"]
    assert await exists(kube, namespace, "pre") and not await exists(kube, namespace, "mine")


async def test_a_tampered_inventory_deletes_nothing_that_is_not_ours(
    tmp_path: Path, namespace: str, kube: Kube
) -> None:
    await kube.apply(cm("victim", namespace))  # no labels at all
    await kube.apply(cm("neighbour", namespace, **{"app.kubernetes.io/managed-by": "kubeloop",
                                                   "kubeloop.dev/project": "other"}))  # fmt: skip
    project = Project(tmp_path / "p", "tamper", namespace, kube)
    await project.deploy(cm("mine"), cm("relabelled"))
    # Someone strips our labels from one object, and lists foreign ones in the inventory.
    await kube.request("PATCH", f"/api/v1/namespaces/{namespace}/configmaps/relabelled",
                       body={"metadata": {"labels": {"kubeloop.dev/project": None}}},
                       content_type="application/merge-patch+json")  # fmt: skip
    entries = await project.inventory()
    entries += [{"api_version": "v1", "kind": "ConfigMap", "namespace": namespace, "name": n}
                for n in ("victim", "neighbour")]  # fmt: skip
    entries.append({"api_version": "v1", "kind": "Namespace", "namespace": "", "name": namespace,
                    "created": True})  # fmt: skip
    await kube.request("PATCH", f"/api/v1/namespaces/{namespace}/configmaps/kubeloop-inventory-tamper",
                       body={"data": {"objects": json.dumps(entries)}},
                       content_type="application/merge-patch+json")  # fmt: skip

    result = await project.deploy(cm("mine"))  # prunes what left the render
    kept = {r.name: why for r, why in result.kept}
    assert (
        kept["victim"]
        == kept["neighbour"]
        == kept["relabelled"]
        == ("it does not carry kubeloop's labels for project 'tamper'")
    )
    assert kept[namespace] == "it does not carry kubeloop's labels for project 'tamper'"
    for name in ("victim", "neighbour", "relabelled", "mine"):
        assert await exists(kube, namespace, name), name
    assert await namespace_alive(kube, namespace)

    bad = f"/api/v1/namespaces/{namespace}/configmaps/kubeloop-inventory-tamper"
    await kube.request("PATCH", bad, body={"data": {"objects": "{not json"}},
                       content_type="application/merge-patch+json")  # fmt: skip
    with pytest.raises(KubeloopError, match="cannot be read"):
        await delete_project(kube, "tamper", namespace)
    assert await exists(kube, namespace, "mine")


async def test_namespaces_only_when_kubeloop_created_them(
    tmp_path: Path, namespace: str, kube: Kube, extra_namespaces: list[str]
) -> None:
    suffix = uuid.uuid4().hex[:6]
    theirs, ours = f"t-theirs-{suffix}", f"t-ours-{suffix}"
    extra_namespaces += [theirs, ours]
    await kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": theirs}})
    namespace_doc = {"apiVersion": "v1", "kind": "Namespace"}
    project = Project(tmp_path / "p", "spaces", namespace, kube)
    result = await project.deploy({**namespace_doc, "metadata": {"name": theirs}},
                                  {**namespace_doc, "metadata": {"name": ours}})  # fmt: skip
    assert [r.name for r in result.adopted] == [theirs]
    entries = {e["name"]: e for e in await project.inventory()}
    assert entries[ours]["created"] is True and entries[theirs]["created"] is False

    result = await project.deploy(cm("mine"))  # both namespaces left the render
    assert [r.name for r in result.pruned] == [ours]
    assert [(r.name, why) for r, why in result.kept] == [
        (theirs, "it existed before kubeloop adopted it")]  # fmt: skip
    assert await namespace_alive(kube, theirs)
    assert not await namespace_alive(kube, ours)


async def test_another_projects_object_is_not_taken_over(
    tmp_path: Path, namespace: str, kube: Kube
) -> None:
    first = Project(tmp_path / "a", "first", namespace, kube)
    await first.deploy(cm("shared"))
    second = Project(tmp_path / "b", "second", namespace, kube)
    with pytest.raises(KubeloopError, match="belongs to kubeloop project 'first'"):
        await second.deploy(cm("shared"))
    found = await kube.get(f"/api/v1/namespaces/{namespace}/configmaps/shared")
    assert found is not None and found["metadata"]["labels"]["kubeloop.dev/project"] == "first"
