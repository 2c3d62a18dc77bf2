"""From a docker-compose project to the Kubernetes dev loop, timed on the native cluster,
beside ``docker compose up`` of the same project in the same run.

Usage: python benchmarks/compose.py [--edits N] [--no-baseline]

The project is ``examples/compose-todo`` (the seed's todo app: a Redis primary, a Redis
replica and a Python frontend with its source bind-mounted), copied to a scratch folder.

- ``compose_to_ready_s``: from ``kubeloop init --compose`` (the real CLI) through
  ``kubeloop dev`` until every Deployment is Ready and the frontend answers on the
  compose file's localhost port; ``compose_to_answer_s``: until that first answer;
- ``edit_to_answer_ms``: a saved ``app/server.py`` → the new answer on localhost (synced,
  the process restarted under kubeloop's supervisor; polled every 5 ms), N edits;
- baseline (Debian's ``docker-compose`` package, installed when missing; skipped with
  ``--no-baseline``): ``docker-compose up -d --build`` → first answer on localhost, and a
  save → ``docker-compose restart frontend`` → the new answer (the bind mount shows the
  file at once; the process must be restarted to run it).

The last line is one JSON object with all figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from kubeloop import apt
from kubeloop.build import ensure_docker_engine
from kubeloop.cluster import create_cluster, seed_base_image
from kubeloop.kube import Kube
from kubeloop.proc import run

EXAMPLE = Path(__file__).parents[1] / "examples" / "compose-todo"
KUBELOOP_PORT = 18481
COMPOSE_PORT = 18482


async def answer(port: int) -> str | None:
    """The frontend's "app" field, or None while nothing answers."""
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            reply = await client.get(f"http://127.0.0.1:{port}/")
        return str(reply.json()["app"])
    except (httpx.HTTPError, ValueError, KeyError):
        return None


async def _answers(port: int, greeting: str | None = None) -> bool:
    got = await answer(port)
    return got is not None if greeting is None else got == greeting


async def wait_for(condition: object, timeout: float, interval: float = 0.005) -> float:
    """Seconds until ``condition()`` (sync or async) is truthy."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        value = condition()  # type: ignore[operator]
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return time.perf_counter() - start
        await asyncio.sleep(interval)
    raise TimeoutError(f"not within {timeout:.0f}s")


def copy_project(target: Path, port: int) -> Path:
    folder = target / "todo"
    shutil.copytree(EXAMPLE, folder)
    compose = folder / "compose.yaml"
    compose.write_text(compose.read_text().replace('"8080:8080"', f'"{port}:8080"'))
    return folder


def edit(folder: Path, greeting: str) -> None:
    server = folder / "app" / "server.py"
    text = server.read_text()
    start = text.index('GREETING = "')
    end = text.index('"', start + len('GREETING = "'))
    server.write_text(text[:start] + f'GREETING = "{greeting}' + text[end:])


async def all_ready(kube: Kube, namespace: str) -> bool:
    listed = await kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments")
    items = (listed or {}).get("items") or []
    return len(items) == 3 and all(
        (d.get("status") or {}).get("readyReplicas") == d["spec"]["replicas"]
        and (d.get("status") or {}).get("updatedReplicas") == d["spec"]["replicas"]
        for d in items
    )


async def kubeloop_run(work: Path, edits: int, kube: Kube) -> dict[str, float]:
    folder = copy_project(work / "kubeloop", KUBELOOP_PORT)
    project = f"bench-compose-{uuid.uuid4().hex[:6]}"
    start = time.perf_counter()
    await run([sys.executable, "-m", "kubeloop", "init", "--compose", "--name", project,
               str(folder)])  # fmt: skip
    init_s = time.perf_counter() - start
    dev = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubeloop", "dev", "--cleanup", cwd=folder,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        await wait_for(lambda: _answers(KUBELOOP_PORT), 300, 0.02)
        to_answer = time.perf_counter() - start
        await wait_for(lambda: all_ready(kube, project), 300, 0.05)
        to_ready = time.perf_counter() - start
        # Sync attaches behind the first answer: an edit before it would wait for it.
        await asyncio.sleep(2)
        times = []
        for i in range(edits):
            greeting = f"todo-{i}"
            edit(folder, greeting)
            times.append(await wait_for(lambda g=greeting: _answers(KUBELOOP_PORT, g), 30))
            await asyncio.sleep(0.3)
    finally:
        os.killpg(dev.pid, signal.SIGINT)
        await asyncio.wait_for(dev.wait(), 60)
        await kube.delete({"apiVersion": "v1", "kind": "Namespace",
                           "metadata": {"name": project}}, grace_seconds=0)  # fmt: skip
    ms = sorted(t * 1000 for t in times)
    return {"init_s": round(init_s, 3), "compose_to_answer_s": round(to_answer, 2),
            "compose_to_ready_s": round(to_ready, 2),
            "edit_to_answer_ms_p50": round(statistics.median(ms), 1),
            "edit_to_answer_ms_max": round(ms[-1], 1)}  # fmt: skip


async def compose_run(work: Path, edits: int) -> dict[str, float]:
    folder = copy_project(work / "compose", COMPOSE_PORT)
    name = f"benchcompose{uuid.uuid4().hex[:6]}"
    base = ["docker-compose", "-p", name]
    start = time.perf_counter()
    try:
        await run([*base, "up", "-d", "--build"], cwd=folder, timeout=600)
        await wait_for(lambda: _answers(COMPOSE_PORT), 120, 0.02)
        up = time.perf_counter() - start
        times = []
        for i in range(edits):
            greeting = f"todo-{i}"
            begin = time.perf_counter()
            edit(folder, greeting)
            await run([*base, "restart", "-t", "1", "frontend"], cwd=folder, timeout=120)
            await wait_for(lambda g=greeting: _answers(COMPOSE_PORT, g), 30)
            times.append(time.perf_counter() - begin)
    finally:
        await run([*base, "down", "-v", "-t", "1"], cwd=folder, timeout=300, check=False)
    ms = sorted(t * 1000 for t in times)
    return {"docker_compose_up_to_answer_s": round(up, 2),
            "docker_compose_edit_to_answer_ms_p50": round(statistics.median(ms), 1),
            "docker_compose_edit_to_answer_ms_max": round(ms[-1], 1)}  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edits", type=int, default=10)
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    info = await create_cluster("kubeloop", provider="native", quiet=True)
    await ensure_docker_engine(quiet=True)
    for image in ("python:3.11-slim", "redis:7", "debian:bookworm-slim"):
        await seed_base_image(image, "kubeloop", quiet=True)
    kube = await Kube.connect(info.kubeconfig, info.context)
    results: dict[str, object] = {"edits": args.edits}
    with tempfile.TemporaryDirectory(prefix="bench-compose-") as work:
        try:
            results.update(await kubeloop_run(Path(work), args.edits, kube))
        finally:
            await kube.close()
        if not args.no_baseline:
            await apt.install(apt.missing({"docker-compose": "docker-compose"}), quiet=True)
            results.update(await compose_run(Path(work), args.edits))
    for key, value in results.items():
        print(f"{key:40} {value}")
    print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main())
