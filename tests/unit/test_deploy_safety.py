"""What prune and delete may touch, decided on the live object (a fake API here; the
real cluster in tests/integration/test_deploy_safety.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubeloop.deploy import inventory
from kubeloop.deploy.apply import delete_if_ours
from kubeloop.deploy.inventory import ADOPTED, Entry, Ref
from kubeloop.errors import KubeloopError
from kubeloop.kube import KubeError

OURS = {"app.kubernetes.io/managed-by": "kubeloop", "kubeloop.dev/project": "shop"}
CM = Ref("v1", "ConfigMap", "ns", "c")
NS = Ref("v1", "Namespace", "", "space")


class FakeKube:
    """Enough of Kube for prune/delete: one live object per path, requests recorded."""

    def __init__(self, live: dict[str, Any] | None = None, delete_status: int | None = None):
        self.live = live
        self.delete_status = delete_status
        self.requests: list[tuple[str, str, Any]] = []

    async def object_path(self, obj: dict[str, Any]) -> str:
        return f"/{obj['kind']}/{obj['metadata']['name']}"

    async def get(self, path: str) -> dict[str, Any] | None:
        return self.live

    async def request(self, method: str, path: str, *, body: Any = None, **_: Any) -> Any:
        self.requests.append((method, path, body))
        if self.delete_status:
            raise KubeError("refused", status=self.delete_status)
        return {}


def live(labels: dict[str, str], **annotations: str) -> dict[str, Any]:
    return {"metadata": {"labels": labels, "annotations": annotations, "uid": "u1",
                         "resourceVersion": "7"}}  # fmt: skip


async def test_only_our_labelled_live_objects_are_deleted_with_preconditions() -> None:
    kube = FakeKube(live(OURS))
    assert await delete_if_ours(kube, Entry(CM), "shop") is None  # type: ignore[arg-type]
    method, path, body = kube.requests[0]
    assert (method, path) == ("DELETE", "/ConfigMap/c")
    assert body["preconditions"] == {"uid": "u1", "resourceVersion": "7"}


@pytest.mark.parametrize(
    ("entry", "labels", "annotations", "reason"),
    [
        (Entry(CM, adopted=True), OURS, {}, "it existed before kubeloop adopted it"),
        (Entry(CM), OURS, {ADOPTED: "shop"}, "it existed before kubeloop adopted it"),
        (Entry(CM), {}, {}, "it does not carry kubeloop's labels for project 'shop'"),
        (Entry(CM), {**OURS, "kubeloop.dev/project": "other"}, {}, "does not carry"),
        (Entry(CM), {**OURS, "app.kubernetes.io/managed-by": "Helm"}, {}, "does not carry"),
        (Entry(NS), OURS, {}, "kubeloop did not create this namespace"),
    ],
    ids=[
        "adopted-entry",
        "adopted-annotation",
        "no-labels",
        "other-project",
        "other-manager",
        "namespace-not-created",
    ],
)
async def test_what_is_left_in_place(
    entry: Entry, labels: dict[str, str], annotations: dict[str, str], reason: str
) -> None:
    kube = FakeKube(live(labels, **annotations))
    assert reason in str(await delete_if_ours(kube, entry, "shop"))  # type: ignore[arg-type]
    assert kube.requests == []  # nothing deleted


async def test_a_created_namespace_gone_or_changed_objects() -> None:
    kube = FakeKube(live(OURS))
    assert await delete_if_ours(kube, Entry(NS, created=True), "shop") is None  # type: ignore[arg-type]
    assert await delete_if_ours(FakeKube(None), Entry(CM), "shop") is None  # type: ignore[arg-type]
    changed = FakeKube(live(OURS), delete_status=409)  # the preconditions failed
    assert "changed while kubeloop was checking" in str(
        await delete_if_ours(changed, Entry(CM), "shop")  # type: ignore[arg-type]
    )


def test_adoption_and_creation_are_never_forgotten() -> None:
    assert Entry(CM, adopted=True).merged(Entry(CM)) == Entry(CM, adopted=True)
    assert Entry(NS, created=True).merged(Entry(NS, adopted=True)) == Entry(NS, True, True)
    assert Entry(CM).merged(Entry(CM)) == Entry(CM)


@pytest.mark.parametrize(
    ("configmap", "message"),
    [
        ({"metadata": {"labels": {}}, "data": {"objects": "[]"}}, "not written by kubeloop"),
        ({"metadata": {"labels": OURS}, "data": {"objects": "{nope"}}, "cannot be read"),
        ({"metadata": {"labels": OURS}, "data": {"objects": '[{"kind": "x"}]'}}, "cannot be read"),
        ({"metadata": {"labels": OURS}, "data": {"objects": '"text"'}}, "cannot be read"),
    ],
    ids=["foreign", "not-json", "missing-fields", "not-a-list"],
)
async def test_an_inventory_kubeloop_did_not_write_is_refused(
    configmap: dict[str, Any], message: str
) -> None:
    with pytest.raises(KubeloopError, match=message) as caught:
        await inventory.read(FakeKube(configmap), "shop", "ns")  # type: ignore[arg-type]
    assert caught.value.hint and "will not delete anything" in caught.value.hint


async def test_old_inventories_read_as_neither_adopted_nor_created() -> None:
    old = [{"api_version": "v1", "kind": "Namespace", "namespace": "", "name": "space"}]
    configmap = {"metadata": {"labels": {"app.kubernetes.io/managed-by": "kubeloop"}},
                 "data": {"objects": json.dumps(old)}}  # fmt: skip
    entries = await inventory.read(FakeKube(configmap), "shop", "ns")  # type: ignore[arg-type]
    assert entries == [Entry(NS)]  # so the namespace is never deleted
