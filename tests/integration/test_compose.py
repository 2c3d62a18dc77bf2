"""`kubeloop init --compose` on the real cluster: the example compose projects (the seed's
todo app; web + PostgreSQL + worker) translated by the real CLI, then run by the dev loop
as generated: every service up, the app on the compose file's localhost port, a saved
source file live in the same pod, the database's named volume surviving a pod restart."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from kubeloop.cluster import seed_base_image
from kubeloop.compose._translate import VOLUME_ROOT
from kubeloop.devloop import open_session
from kubeloop.devloop.dev import DevLoop
from kubeloop.kube import Kube
from kubeloop.proc import run
from tests.integration.conftest import eventually
from tests.integration.test_core_loop import get_json

EXAMPLES = Path(__file__).parents[2] / "examples"


@dataclass
class Running:
    folder: Path
    namespace: str
    url: str
    loop: DevLoop
    kube: Kube


async def _seed(cluster_name: str) -> None:
    for image in ("redis:7", "postgres:15", "debian:bookworm-slim"):
        await seed_base_image(image, cluster_name, quiet=True)


@contextlib.asynccontextmanager
async def _start(example: str, tmp: Path, local_port: int, host_port: int,
                 cluster_name: str) -> AsyncIterator[Running]:  # fmt: skip
    project = f"ct-{uuid.uuid4().hex[:8]}"
    folder = tmp / example
    shutil.copytree(EXAMPLES / example, folder)
    compose = folder / "compose.yaml"
    compose.write_text(compose.read_text().replace(f'"{host_port}:', f'"{local_port}:'))
    result = await run([sys.executable, "-m", "kubeloop", "init", "--compose", "--name",
                        project, str(folder)])  # fmt: skip
    assert "next: kubeloop dev" in result.stdout + result.stderr
    assert (folder / "kubeloop.yaml").exists()
    session = await open_session(folder / "kubeloop.yaml", cluster=cluster_name)
    session.config.project.dev.cleanup = True
    loop = DevLoop(session, printer=lambda *_: None)  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    kube = await Kube.connect(session.cluster.kubeconfig, session.cluster.context)
    try:

        def forwarding_and_syncing() -> bool:
            if task.done():
                task.result()  # raise what stopped it
            ready = bool(loop.forwarders) and all(f.ready.is_set() for f in loop.forwarders)
            return ready and bool(loop.syncers) and all(s.pods for s in loop.syncers)

        await eventually(forwarding_and_syncing, 240, 0.2)
        yield Running(folder, project, f"http://127.0.0.1:{local_port}", loop, kube)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        await session.close()
        await kube.delete({"apiVersion": "v1", "kind": "Namespace",
                           "metadata": {"name": project}}, grace_seconds=0)  # fmt: skip
        await kube.close()
        shutil.rmtree(Path(VOLUME_ROOT) / project, ignore_errors=True)


async def _post(url: str, body: str) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        (await client.post(url, content=body)).raise_for_status()


@pytest.fixture(scope="module")
async def todo(tmp_path_factory: pytest.TempPathFactory, cluster_name: str,
               docker_engine: None) -> AsyncIterator[Running]:  # fmt: skip
    await _seed(cluster_name)
    async with _start("compose-todo", tmp_path_factory.mktemp("todo"), 18461, 8080,
                      cluster_name) as running:  # fmt: skip
        yield running


@pytest.fixture(scope="module")
async def notes(tmp_path_factory: pytest.TempPathFactory, cluster_name: str,
                docker_engine: None) -> AsyncIterator[Running]:  # fmt: skip
    await _seed(cluster_name)
    async with _start("compose-pg", tmp_path_factory.mktemp("notes"), 18462, 8081,
                      cluster_name) as running:  # fmt: skip
        yield running


async def _pods(running: Running, app: str) -> list[dict[str, object]]:
    listed = await running.kube.request("GET", f"/api/v1/namespaces/{running.namespace}/pods",
                                        params={"labelSelector": f"app={app}"})  # fmt: skip
    assert listed is not None
    # Pods on their way out (the rollout that put dev mode's supervisor in) do not count.
    return [p for p in listed["items"] if not p["metadata"].get("deletionTimestamp")]


async def _only_pod(running: Running, app: str) -> dict[str, object]:
    pods = await _pods(running, app)
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]  # type: ignore[index]
    return pods[0]


async def _edit_is_live(running: Running, source: str, app: str) -> None:
    """A saved source file answers on localhost from the same pod: synced, the process
    restarted, nothing rebuilt."""
    before = (await eventually(lambda: _only_pod(running, app), 30))["metadata"]["name"]  # type: ignore[index]
    path = running.folder / "app" / source
    marker = f"edited-{running.namespace}"
    path.write_text(path.read_text().replace('GREETING = "', f'GREETING = "{marker}-'))

    async def edited() -> bool:
        reply = await get_json(running.url + "/")
        assert str(reply["app"]).startswith(marker), reply
        return True

    await eventually(edited, 30, 0.1)
    assert (await _only_pod(running, app))["metadata"]["name"] == before  # type: ignore[index]


@pytest.mark.timeout(420)
async def test_todo_app_writes_to_the_primary_and_reads_from_the_replica(todo: Running) -> None:
    for app in ("redis-master", "redis-replica", "frontend"):
        pods = await _pods(todo, app)
        assert pods and all(
            c["ready"]
            for p in pods
            for c in p["status"]["containerStatuses"]  # type: ignore[index]
        ), app
    await _post(todo.url + "/todos", "buy milk")

    async def replicated() -> bool:
        reply = await get_json(todo.url + "/todos")
        assert reply["todos"] == ["buy milk"], reply
        return True

    await eventually(replicated, 20)  # read through the replica's Service by name


async def test_todo_frontend_source_edit_is_live(todo: Running) -> None:
    await _edit_is_live(todo, "server.py", "frontend")


@pytest.mark.timeout(420)
async def test_notes_web_and_worker_start_after_a_healthy_database(notes: Running) -> None:
    for app in ("web", "worker"):
        pod = await eventually(lambda app=app: _only_pod(notes, app), 30)  # type: ignore[misc]
        status = pod["status"]
        waited = status["initContainerStatuses"][0]  # type: ignore[index]
        assert waited["name"] == "wait-for-db"
        assert waited["state"]["terminated"]["exitCode"] == 0
        # Started once the database answered: no crash while it initialised.
        assert status["containerStatuses"][0]["restartCount"] == 0, status  # type: ignore[index]
    secret = await notes.kube.get(f"/api/v1/namespaces/{notes.namespace}/secrets/db-env")
    assert secret is not None and "POSTGRES_PASSWORD" in secret["data"]
    await _post(notes.url + "/notes", "three little words")

    async def counted() -> list[object]:
        reply = await get_json(notes.url + "/notes")
        assert reply["notes"] == [{"id": 1, "body": "three little words", "words": 3}], reply
        return list(reply["notes"])  # type: ignore[call-overload]

    await eventually(counted, 20)


@pytest.mark.timeout(300)
async def test_notes_database_keeps_its_data_across_a_pod_restart(notes: Running) -> None:
    await _post(notes.url + "/notes", "kept")
    old = await eventually(lambda: _only_pod(notes, "db"), 30)
    name = old["metadata"]["name"]  # type: ignore[index]
    # As `kubectl rollout restart`: with the Recreate strategy the old pod is gone before
    # the new one mounts the volume.
    await notes.kube.request(
        "PATCH", f"/apis/apps/v1/namespaces/{notes.namespace}/deployments/db",
        body={"spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": str(uuid.uuid4())}}}}},
        content_type="application/merge-patch+json",
    )  # fmt: skip

    async def new_db_ready() -> bool:
        pods = await _pods(notes, "db")
        assert [p["metadata"]["name"] for p in pods] != [name]  # type: ignore[index]
        assert len(pods) == 1 and pods[0]["status"]["containerStatuses"][0]["ready"]  # type: ignore[index]
        return True

    await eventually(new_db_ready, 120, 0.5)

    async def still_there() -> bool:
        bodies = [n["body"] for n in (await get_json(notes.url + "/notes"))["notes"]]  # type: ignore[attr-defined]
        assert "kept" in bodies, bodies
        return True

    await eventually(still_there, 30, 0.5)


async def test_notes_web_source_edit_is_live(notes: Running) -> None:
    await _edit_is_live(notes, "web.py", "web")


async def test_the_helm_chart_renders_what_the_raw_manifests_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--helm` writes a chart that real Helm renders to the same objects as the raw
    manifests, a Compose profile included only in its kubeloop environment."""
    from kubeloop.config.loader import load
    from kubeloop.render import render
    from tests.integration.tools import ensure_helm

    helm = await ensure_helm()
    monkeypatch.setenv("PATH", f"{helm.parent}:{os.environ['PATH']}")
    rendered: dict[tuple[bool, str | None], list[tuple[str, str]]] = {}
    for as_chart in (False, True):
        folder = tmp_path / ("chart" if as_chart else "raw") / "notes"
        shutil.copytree(EXAMPLES / "compose-pg", folder)
        compose = folder / "compose.yaml"
        compose.write_text(compose.read_text().replace(
            "volumes:\n  pgdata:", "  admin:\n    image: debian:bookworm-slim\n"
            "    profiles: [debug]\n    expose: [\"9000\"]\nvolumes:\n  pgdata:"))  # fmt: skip
        argv = [sys.executable, "-m", "kubeloop", "init", "--compose", "--name", "notes",
                str(folder), *(["--helm"] if as_chart else [])]  # fmt: skip
        await run(argv)
        for environment in (None, "debug"):
            objects = await render(load(folder / "kubeloop.yaml", environment))
            rendered[(as_chart, environment)] = sorted(
                (o["kind"], yaml.safe_dump(o["spec"] if "spec" in o else o.get("data")))
                for o in objects
            )  # fmt: skip
    for environment in (None, "debug"):
        assert rendered[(True, environment)] == rendered[(False, environment)]
    names = [y for _, y in rendered[(True, "debug")]]
    assert len(rendered[(True, "debug")]) == len(rendered[(True, None)]) + 2  # admin's two
    assert any("admin" in y for y in names)
