"""Pure logic of dev's start-up: the timeline, concurrent steps, which pods are of the
latest template (a forward must not open on an old one), the derived image's tag."""

from __future__ import annotations

import asyncio

import pytest

from kubeloop.core import Obj
from kubeloop.deploy.rollout import REVISION, pod_is_current
from kubeloop.deploy.tasks import all_of
from kubeloop.deploy.timeline import Span, Timeline, _clock, format_span, process_start
from kubeloop.devloop.devimage import derived_tag


def test_timeline_records_phases_and_moments_from_the_process_start() -> None:
    lines: list[str] = []
    timeline = Timeline(lines.append)
    with timeline.phase("render"):
        pass
    timeline.mark("forwarding")
    assert [span.name for span in timeline.spans] == ["render", "forwarding"]
    render, forwarding = timeline.spans
    assert 0 <= render.start <= render.end <= forwarding.start == forwarding.end
    # Seconds since this process started (not since boot): at most its age, which in a
    # long test run can itself be many minutes.
    assert render.end <= _clock() - process_start() + 1e-6
    assert "render (" in lines[0] and "ms)" in lines[0] and lines[1].endswith("forwarding")
    assert process_start() <= timeline.origin + 1e-9


def test_a_phase_that_fails_is_still_recorded() -> None:
    timeline = Timeline()
    with pytest.raises(ValueError), timeline.phase("apply"):
        raise ValueError("refused")
    assert timeline.spans[0].name == "apply"


def test_span_format_shows_overlap() -> None:
    assert format_span(Span("build", 0.5, 0.75)) == "  0.750s  build (0.500s → 0.750s, 250 ms)"
    assert format_span(Span("rolled out", 2.0, 2.0)) == "  2.000s  rolled out"


async def test_all_of_returns_every_result_in_order() -> None:
    async def after(seconds: float, value: int) -> int:
        await asyncio.sleep(seconds)
        return value

    assert await all_of(after(0.02, 1), after(0.0, 2)) == [1, 2]


async def test_all_of_stops_the_other_steps_on_an_error() -> None:
    stopped = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            stopped.set()

    async def failing() -> None:
        raise RuntimeError("no registry")

    with pytest.raises(RuntimeError, match="no registry"):
        await all_of(slow(), failing())
    assert stopped.is_set()


class FakeKube:
    """Only ``get`` by path, from a dict of objects."""

    def __init__(self, objects: dict[str, Obj]) -> None:
        self.objects = objects

    async def get(self, path: str) -> Obj | None:
        return self.objects.get(path)


def owned(kind: str, name: str, **meta: object) -> Obj:
    return {"ownerReferences": [{"kind": kind, "name": name, "controller": True}], **meta}


def deployment(revision: str, generation: int = 2, observed: int = 2) -> Obj:
    return {"metadata": {"name": "add", "generation": generation,
                         "annotations": {REVISION: revision}},
            "status": {"observedGeneration": observed}}  # fmt: skip


def replicaset(name: str, revision: str) -> Obj:
    return {"metadata": {**owned("Deployment", "add"), "name": name,
                         "annotations": {REVISION: revision}}}  # fmt: skip


def pod(owner: str, kind: str = "ReplicaSet", **labels: str) -> Obj:
    return {"metadata": {**owned(kind, owner), "name": f"{owner}-x", "namespace": "ns",
                         "labels": labels}}  # fmt: skip


RS = "/apis/apps/v1/namespaces/ns/replicasets/"
DEPLOY = "/apis/apps/v1/namespaces/ns/deployments/add"


@pytest.mark.parametrize(
    ("live", "owner", "current"),
    [
        ({DEPLOY: deployment("2")}, "add-new", True),
        ({DEPLOY: deployment("2")}, "add-old", False),  # the version before the apply
        # The controller has not seen the apply yet: no pod can be told current.
        ({DEPLOY: deployment("1", generation=2, observed=1)}, "add-old", False),
        ({}, "add-new", False),  # the Deployment is gone
    ],
)
async def test_a_deployments_pod_is_current_when_its_replicaset_is_the_latest(
    live: dict[str, Obj], owner: str, current: bool
) -> None:
    objects = {RS + "add-new": replicaset("add-new", "2"),
               RS + "add-old": replicaset("add-old", "1"), **live}  # fmt: skip
    assert await pod_is_current(FakeKube(objects), pod(owner)) is current  # type: ignore[arg-type]


async def test_statefulset_and_daemonset_pods_compare_their_revision() -> None:
    sts = {"metadata": {"generation": 3}, "status": {"observedGeneration": 3,
                                                      "updateRevision": "db-2"}}  # fmt: skip
    ds = {"metadata": {"generation": 4}, "status": {"observedGeneration": 4}}
    kube = FakeKube({"/apis/apps/v1/namespaces/ns/statefulsets/db": sts,
                     "/apis/apps/v1/namespaces/ns/daemonsets/agent": ds})  # fmt: skip
    new = pod("db", "StatefulSet", **{"controller-revision-hash": "db-2"})
    old = pod("db", "StatefulSet", **{"controller-revision-hash": "db-1"})
    assert await pod_is_current(kube, new) and not await pod_is_current(kube, old)  # type: ignore[arg-type]
    daemon = pod("agent", "DaemonSet", **{"pod-template-generation": "4"})
    assert await pod_is_current(kube, daemon)  # type: ignore[arg-type]


async def test_a_bare_pod_is_its_own_latest_version() -> None:
    bare = {"metadata": {"name": "p", "namespace": "ns"}}
    assert await pod_is_current(FakeKube({}), bare)  # type: ignore[arg-type]


def test_the_derived_tag_is_the_same_for_the_same_sources_and_agent() -> None:
    tag = derived_tag("kl-5b703e5337c18b29", "0123456789abcdef")
    assert (
        tag
        == derived_tag("kl-5b703e5337c18b29", "0123456789abcdef")
        == "kl-5b703e5337c18b29-sv01234567"
    )
    assert derived_tag("kl-5b703e5337c18b29", "fedcba9876543210") != tag
    assert len(derived_tag("x" * 200, "0123456789")) <= 128
