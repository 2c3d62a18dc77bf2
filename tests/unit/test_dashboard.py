"""The dashboard's pure logic: the hub's rows, event log and bounds; workload rows from
API objects; the session records `kubeloop ui` reads; the server's checks."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from kubeloop.build import BuildResult, Built
from kubeloop.config import Artifact
from kubeloop.dashboard import (
    Dashboard,
    DashboardServer,
    Hub,
    RunningDashboard,
    choose,
    dashboard_for,
    dashboard_url,
    running,
)
from kubeloop.dashboard.hub import MAX_LINE
from kubeloop.dashboard.live import workload_row
from kubeloop.dashboard.sessions import _start_time, record
from kubeloop.errors import KubeloopError


def events(hub: Hub, since: int = 0) -> list[dict[str, object]]:
    encoded = hub.since(since)
    assert encoded is not None
    return [json.loads(e) for e in encoded]


def test_rows_are_sent_only_when_they_change() -> None:
    hub = Hub()
    hub.update("artifacts", "add", {"status": "building"})
    hub.update("artifacts", "add", {"status": "building"})
    hub.patch("artifacts", "add", status="built", seconds=1.5)
    hub.update("artifacts", "gone", None)  # never there: nothing to say
    sent = events(hub)
    assert [e["v"] for e in sent] == [{"status": "building"}, {"status": "built", "seconds": 1.5}]
    hub.update("artifacts", "add", None)
    assert events(hub, 2)[0]["v"] is None and hub.rows["artifacts"] == {}
    with pytest.raises(ValueError, match="unknown dashboard section"):
        hub.update("nope", "x", {})


def test_a_reader_that_falls_behind_is_told_to_start_over() -> None:
    hub = Hub(log_lines=10, events=100)
    for n in range(250):
        hub.log("web-5d8f-abcde", f"line {n}")
    assert hub.since(0) is None  # those events are gone: take a snapshot
    assert len(events(hub, 150)) == 100
    assert hub.since(251) is None  # from the future
    snapshot = hub.snapshot()
    assert snapshot["seq"] == 250 and len(snapshot["logs"]) == 10
    assert snapshot["logs"][-1]["line"] == "line 249" and snapshot["logs"][-1]["w"] == "web"


def test_untrusted_lines_are_cut_and_notes_capped() -> None:
    hub = Hub()
    hub.log("pod/c", "x" * (MAX_LINE * 3))
    assert len(hub.logs[0]["line"]) == MAX_LINE and hub.logs[0]["src"] == "pod/c"
    for n in range(80):
        hub.note(f"event {n}")
    notes = hub.rows["notes"]
    assert len(notes) == 50 and notes[max(notes)]["text"] == "event 79"


async def test_wait_returns_on_a_new_event_or_the_timeout() -> None:
    hub = Hub()
    started = asyncio.get_running_loop().time()
    await hub.wait(0, 0.05)
    assert asyncio.get_running_loop().time() - started >= 0.04
    waiter = asyncio.create_task(hub.wait(0, 5))
    await asyncio.sleep(0.01)
    hub.log("p", "hello")
    await asyncio.wait_for(waiter, 1)


async def test_commands_are_the_offered_ones_only() -> None:
    hub = Hub()

    async def rebuild(_action: str, target: str) -> str:
        return f"rebuilt {target}"

    hub.commands["rebuild"] = rebuild
    assert await hub.run_command("rebuild", "add") == "rebuilt add"
    with pytest.raises(ValueError, match="unknown action 'rm'; offered: rebuild"):
        await hub.run_command("rm", "-rf")


def _pod(
    name: str, phase: str, ready: bool, restarts: int = 0, **meta: object
) -> dict[str, object]:
    return {"metadata": {"name": name, "ownerReferences": [{"kind": "ReplicaSet"}], **meta},
            "status": {"phase": phase, "containerStatuses": [
                {"name": "app", "ready": ready, "restartCount": restarts,
                 "state": {"running": {}} if ready else {"waiting": {"reason": "CrashLoopBackOff"}}}]}}  # fmt: skip


def test_workload_rows_say_rollout_and_pods() -> None:
    deployment = {"metadata": {"name": "web", "generation": 2},
                  "spec": {"replicas": 2},
                  "status": {"observedGeneration": 2, "readyReplicas": 1, "updatedReplicas": 2}}  # fmt: skip
    pods = [_pod("web-5d8f-aaaaa", "Running", True), _pod("web-5d8f-bbbbb", "Running", False, 3),
            _pod("webhook-7c-ccccc", "Running", True),
            _pod("web-5d8f-ddddd", "Running", True, deletionTimestamp="now")]  # fmt: skip
    row = workload_row("Deployment", deployment, pods)
    assert row["rollout"] == "rolling out (2/2 updated, 1 ready)"
    assert row["pods_by_name"] == ["web-5d8f-aaaaa", "web-5d8f-bbbbb", "web-5d8f-ddddd"]
    failing = row["pods"][1]
    assert failing["restarts"] == 3 and failing["waiting"] == "CrashLoopBackOff"
    assert row["pods"][2]["phase"] == "Terminating"
    deployment["status"]["readyReplicas"] = 2  # type: ignore[index]
    assert workload_row("Deployment", deployment, pods)["rollout"] == "rolled out"


def test_session_records_are_found_and_stale_ones_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBELOOP_STATE_DIR", str(tmp_path))
    with pytest.raises(KubeloopError, match="no `kubeloop dev` session is running"):
        choose()
    me = os.getpid()
    path = record(RunningDashboard("http://127.0.0.1:1/?token=t", "add", "ns", "/src", me,
                                   _start_time(me)))  # fmt: skip
    assert path.stat().st_mode & 0o777 == 0o600  # it holds the token
    # A record left by a killed dev whose pid now belongs to another process (pid 1 here):
    # not taken for a dev session (`kubeloop ui` would signal it), and removed.
    reused = record(RunningDashboard("", "old", "n", "/", 1, "12345"))
    garbage = path.parent / "7.json"
    garbage.write_text("{not json")
    assert [d.project for d in running()] == ["add"] and not reused.exists()
    assert garbage.exists()  # not a record kubeloop could read: left alone
    assert choose("add").pid == me
    with pytest.raises(KubeloopError, match="for project 'other'"):
        choose("other")
    record(RunningDashboard("", "shop", "ns", "/src", me, _start_time(me)))
    assert choose("shop").url == ""  # the same process: its record replaced


async def test_the_server_checks_token_and_host() -> None:
    hub = Hub()
    server = DashboardServer(hub)
    url = await server.start()
    base, token = url.split("/?token=")
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            assert (await client.get(base + "/")).status_code == 403
            page = await client.get(url)
            assert page.status_code == 200 and "/static/app.js" in page.text
            assert "default-src 'self'" in page.headers["Content-Security-Policy"]
            assert (await client.get(base + "/static/app.js")).status_code == 200
            assert (await client.get(base + "/static/../server.py")).status_code == 404
            host = {"Host": f"attacker.example:{server.port}"}
            assert (await client.get(url, headers=host)).status_code == 403
            bad = await client.post(base + "/api/command", content=b"[",
                                    headers={"X-Kubeloop-Token": token})  # fmt: skip
            assert bad.status_code == 400
    finally:
        await server.close()


async def test_a_taken_port_is_a_clear_error() -> None:
    first = DashboardServer(Hub())
    await first.start()
    try:
        with pytest.raises(KubeloopError, match=f"cannot listen on 127.0.0.1:{first.port}"):
            await DashboardServer(Hub(), first.port).start()
    finally:
        await first.close()


async def test_closing_the_server_ends_open_event_streams_at_once() -> None:
    hub = Hub()
    server = DashboardServer(hub)
    url = await server.start()
    base, token = url.split("/?token=")
    client = httpx.AsyncClient(timeout=5)
    async with client, client.stream("GET", f"{base}/api/events?token={token}") as stream:
        hub.log("web-5d8f-aaaaa", "first")
        lines = stream.aiter_lines()
        assert "first" in await anext(lines) + await anext(lines)
        started = asyncio.get_running_loop().time()
        await server.close()
        async for _ in lines:  # the stream ends
            pass
    assert asyncio.get_running_loop().time() - started < 0.5  # not the 1 s shutdown grace


def test_builds_show_as_started_built_cached_or_failed() -> None:
    hub = Hub()
    dashboard = Dashboard(hub, DashboardServer(hub))  # not listening: only the hooks
    dashboard.on_build("started", ["web", "worker"])
    assert {k: r["status"] for k, r in hub.rows["artifacts"].items()} == {
        "web": "building", "worker": "building"}  # fmt: skip
    built = [Built(Artifact(image="web"), BuildResult("reg/web:kl-1", "kl-1", True), 2.345),
             Built(Artifact(image="worker"), BuildResult("reg/worker:kl-2", "kl-2", False), 0.1)]  # fmt: skip
    dashboard.on_build("done", built)
    web, worker = hub.rows["artifacts"]["web"], hub.rows["artifacts"]["worker"]
    assert (web["status"], web["seconds"], web["cached"], web["builds"]) == (
        "built",
        2.35,
        False,
        1,
    )
    assert (worker["status"], worker["cached"], worker["image"]) == (
        "cached",
        True,
        "reg/worker:kl-2",
    )
    dashboard.on_build("failed", (["web"], "Dockerfile:3: unknown instruction"))
    assert hub.rows["artifacts"]["web"]["status"] == "failed"
    assert hub.rows["artifacts"]["web"]["builds"] == 1  # the last good one is still counted
    note = next(iter(hub.rows["notes"].values()))
    assert note["level"] == "error" and "unknown instruction" in note["text"]


async def test_kubeloop_ui_has_a_dev_without_a_dashboard_open_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SIGUSR1 path, in this process: a dev loop's record without a URL; asking for
    it opens the dashboard, wires it to the loop and records the URL."""
    monkeypatch.setenv("KUBELOOP_STATE_DIR", str(tmp_path))
    project = SimpleNamespace(name="shop", artifacts=[], test=[])
    session = SimpleNamespace(config=SimpleNamespace(project=project, root=tmp_path),
                              namespace="shop", cluster=SimpleNamespace(name="kubeloop"),
                              last_built={}, on_build=None)  # fmt: skip
    attached: list[Dashboard] = []
    loop = SimpleNamespace(session=session, attach_dashboard=attached.append)
    opened: list[str] = []
    async with dashboard_for(loop, None, opened.append):  # type: ignore[arg-type]
        assert choose("shop").url == ""
        url = await dashboard_url("shop", timeout=5)
        assert opened == [url] and attached and attached[0].url == url
        assert session.on_build == attached[0].on_build  # later builds are shown
        assert await dashboard_url("shop") == url  # asked again: the same one
        async with httpx.AsyncClient(timeout=5) as client:
            assert (await client.get(url)).status_code == 200
    assert running() == []  # the record went with it
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(timeout=5) as client:
            await client.get(url)
