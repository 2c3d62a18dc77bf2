"""Core-loop speed on the native cluster, each figure beside a baseline from the same run.

Usage: python benchmarks/devloop.py [--iterations N]

- ``kubeloop --help`` (budget 150 ms) vs a bare ``python -c pass``;
- an unchanged-source ``kubeloop deploy`` (budget 2 s) vs ``kubectl apply --server-side``
  of the same rendered objects;
- one ``kubeloop dev`` iteration: file saved → new pod Ready; kubeloop's own overhead
  (total minus image build minus rollout; budget 1 s), and the total vs doing the same by
  hand (docker build, docker push, kubectl set image, kubectl rollout status).

The last line is one JSON object with all figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kubeloop.build import ensure_docker_engine
from kubeloop.cluster import create_cluster, seed_base_image
from kubeloop.core import kubectl_command
from kubeloop.devloop import open_session
from kubeloop.devloop.dev import DevLoop, Iteration
from kubeloop.render import render_yaml

ROOT = Path(__file__).parents[1]
CLUSTER = "kubeloop"
NAMESPACE = "bench-devloop"


def timed(argv: list[str], runs: int, cwd: Path | None = None) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, cwd=cwd)
        times.append(time.perf_counter() - started)
    return times


def project_copy(work: Path) -> Path:
    folder = work / "add"
    shutil.copytree(ROOT / "examples" / "add", folder)
    config = folder / "kubeloop.yaml"
    text = config.read_text().replace("namespace: add", f"namespace: {NAMESPACE}")
    # This benchmark measures the rebuild-and-redeploy path; the example's sync rule would
    # send source edits straight into the container instead (benchmarks/sync.py covers it).
    text = text.split("\n# Saved Python files")[0] + "\n"
    config.write_text(text.replace("localPort: 8000", "localPort: 18511"))
    return folder


async def dev_iterations(folder: Path, count: int) -> list[tuple[float, Iteration]]:
    session = await open_session(folder / "kubeloop.yaml", cluster=CLUSTER)
    done: asyncio.Queue[Iteration] = asyncio.Queue()
    loop = DevLoop(session, printer=lambda *_: None, on_iteration=done.put_nowait)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    results = []
    try:
        while not loop.forwarders or not loop.forwarders[0].ready.is_set():
            await asyncio.sleep(0.05)
        server = folder / "app" / "server.py"
        for index in range(count):
            saved = time.perf_counter()
            server.write_text(server.read_text() + f"\n# bench edit {time.time()} {index}\n")
            iteration = await asyncio.wait_for(done.get(), 300)
            results.append((time.perf_counter() - saved, iteration))
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        await session.delete()
        await session.close()
    return results


async def manual_iteration(folder: Path, registry: str, kubeconfig: str) -> float:
    """The same change by hand: what a developer without kubeloop types."""
    server = folder / "app" / "server.py"
    server.write_text(server.read_text() + f"\n# manual edit {time.time()}\n")
    image = f"{registry}/bench/manual-add:{int(time.time() * 1000)}"
    kubectl = [kubectl_command(), "--kubeconfig", kubeconfig, "-n", NAMESPACE]
    started = time.perf_counter()
    env = {"DOCKER_BUILDKIT": "0"}
    import os

    subprocess.run(["docker", "build", "-q", "-t", image, str(folder)], check=True,
                   capture_output=True, env={**os.environ, **env})  # fmt: skip
    subprocess.run(["docker", "push", "-q", image], check=True, capture_output=True)
    subprocess.run([*kubectl, "set", "image", "deployment/add", f"add={image}"], check=True,
                   capture_output=True)  # fmt: skip
    subprocess.run([*kubectl, "rollout", "status", "deployment/add", "--timeout=120s"],
                   check=True, capture_output=True)  # fmt: skip
    return time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=3)
    args = parser.parse_args()
    info = await create_cluster(CLUSTER, provider="native", quiet=True)
    await seed_base_image("python:3.11-slim", CLUSTER, quiet=True)
    await ensure_docker_engine(quiet=True)
    kubeloop = [sys.executable, "-m", "kubeloop"]
    figures: dict[str, float | int] = {}

    help_times = timed([*kubeloop, "--help"], 10)
    python_times = timed([sys.executable, "-c", "pass"], 10)
    figures["help_ms_median"] = round(statistics.median(help_times) * 1000, 1)
    figures["python_startup_ms_median"] = round(statistics.median(python_times) * 1000, 1)
    figures["help_vs_python_startup"] = round(statistics.median(help_times)
                                              / statistics.median(python_times), 2)  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="kubeloop-bench-") as work:
        folder = project_copy(Path(work))
        subprocess.run([*kubeloop, "deploy", "--cluster", CLUSTER], check=True,
                       capture_output=True, cwd=folder)  # fmt: skip
        deploy_times = timed([*kubeloop, "deploy", "--cluster", CLUSTER], 5, cwd=folder)
        session = await open_session(folder / "kubeloop.yaml", cluster=CLUSTER)
        await session.build()
        rendered = Path(work) / "rendered.yaml"
        rendered.write_text(render_yaml(await session.render()))
        await session.close()
        apply_times = timed([kubectl_command(), "--kubeconfig", info.kubeconfig, "-n", NAMESPACE,
                             "apply", "--server-side", "--field-manager=bench", "-f",
                             str(rendered)], 5)  # fmt: skip
        figures["unchanged_deploy_s_median"] = round(statistics.median(deploy_times), 3)
        figures["unchanged_deploy_s_max"] = round(max(deploy_times), 3)
        figures["kubectl_apply_s_median"] = round(statistics.median(apply_times), 3)
        figures["unchanged_deploy_vs_kubectl_apply"] = round(
            statistics.median(deploy_times) / statistics.median(apply_times), 2)  # fmt: skip

        iterations = await dev_iterations(folder, args.iterations)
        overheads = [total - it.build - it.rollout for total, it in iterations]
        totals = [total for total, _ in iterations]
        figures["dev_iteration_s_median"] = round(statistics.median(totals), 3)
        figures["dev_build_s_median"] = round(
            statistics.median(it.build for _, it in iterations), 3
        )
        figures["dev_rollout_s_median"] = round(
            statistics.median(it.rollout for _, it in iterations), 3
        )
        figures["dev_overhead_s_median"] = round(statistics.median(overheads), 3)
        figures["dev_overhead_s_max"] = round(max(overheads), 3)

        subprocess.run([*kubeloop, "deploy", "--cluster", CLUSTER], check=True,
                       capture_output=True, cwd=folder)  # fmt: skip
        assert info.registry
        manual = [await manual_iteration(folder, info.registry, info.kubeconfig)
                  for _ in range(args.iterations)]  # fmt: skip
        figures["manual_iteration_s_median"] = round(statistics.median(manual), 3)
        figures["dev_iteration_vs_manual"] = round(statistics.median(totals)
                                                   / statistics.median(manual), 2)  # fmt: skip
        subprocess.run([*kubeloop, "delete", "--cluster", CLUSTER], capture_output=True, cwd=folder)
    for key, value in figures.items():
        print(f"{key:>36}: {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
