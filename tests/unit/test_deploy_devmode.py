"""Dev mode's change to workloads: what is wrapped, what is recorded, and what `dev`
leaves when it stops (the real cluster: tests/integration/test_core_loop.py)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from kubeloop.config import SyncSpec, parse
from kubeloop.devloop.dev import DevLoop
from kubeloop.sync.devmode import AGENT, ORIGINAL, inject_supervisor


def workload(kind: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": kind.lower()},
            "spec": {"template": {"metadata": {"labels": {"app": "w"}}, "spec": {
                "containers": [{"name": "main", "image": "i", "command": ["run"]}]}}}}  # fmt: skip


async def test_only_workloads_whose_change_can_be_undone_are_wrapped() -> None:
    objects = [workload(k) for k in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")]
    before = copy.deepcopy(objects)
    skipped: list[str] = []
    spec = SyncSpec.model_validate({"selector": {"app": "w"}, "src": ".", "dest": "/app",
                                    "restart": "process"})  # fmt: skip
    changed = await inject_supervisor(objects, [spec], "agent:1", "localhost:5000",
                                      on_skip=skipped.append)  # fmt: skip
    assert changed == ["deployment/deployment", "statefulset/statefulset", "daemonset/daemonset"]
    assert [s.split(":")[0] for s in skipped] == ["replicaset/replicaset", "job/job"]
    for obj, original in zip(objects[:3], before[:3], strict=True):
        assert json.loads(obj["metadata"]["annotations"][ORIGINAL]) == original["spec"]["template"]
        assert obj["spec"]["template"]["spec"]["containers"][0]["command"][0] == AGENT
    assert objects[3:] == before[3:]  # untouched
    again = await inject_supervisor(objects, [spec], "agent:1", "localhost:5000")
    assert again == []  # already wrapped: the recorded original is not overwritten


class FakeSession:
    def __init__(self, text: str) -> None:
        self.config = parse(text, Path("/p/kubeloop.yaml"))
        self.calls: list[str] = []

    async def delete(self) -> list[str]:
        self.calls.append("delete")
        return []

    async def undo_dev_mode(self) -> list[str]:
        self.calls.append("undo")
        return []


@pytest.mark.parametrize(
    ("dev", "calls"),
    [("{}", ["undo"]), ("{keepChanges: true}", []), ("{cleanup: true}", ["delete"])],
    ids=["default-undoes", "keep", "cleanup-deletes"],
)
async def test_what_dev_leaves_when_it_stops(dev: str, calls: list[str]) -> None:
    session = FakeSession(f"name: p\nmanifests: {{raw: [a]}}\ndev: {dev}\n")
    await DevLoop(session)._finish()  # type: ignore[arg-type]
    assert session.calls == calls
