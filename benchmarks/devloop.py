"""Core-loop speed on the native cluster, each figure beside a baseline from the same run.

Usage: python benchmarks/devloop.py [--iterations N]

- ``kubeloop --help`` (budget 150 ms) vs a bare ``python -c pass``;
- an unchanged-source ``kubeloop deploy`` (budget 2 s) vs ``kubectl apply --server-side``
  of the same rendered objects;
- one ``kubeloop dev`` iteration: file saved → new pod Ready; kubeloop's own overhead
  (total minus image build minus rollout; budget 1 s), and the total vs doing the same by
  hand (docker build, docker push, kubectl set image, kubectl rollout status);
- ``kubeloop dev`` start-up, the real command from a scratch copy of examples/add, as a
  user runs it: from the command's start to the first HTTP 200 on localhost through its
  port-forward (polled every 50 ms). Cold: images built, the Deployment and Service
  deleted before each start (budget: median 1.5 s, max 2.5 s); unchanged: the Deployment
  running as ``dev --keep`` left it (budget 0.7 s). Baseline, alternated with it: by hand,
  ``kubectl apply`` + ``kubectl rollout status`` + ``kubectl port-forward`` + first
  request, of the same app's rendered manifests.

The last line is one JSON object with all figures.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import random
import shutil
import signal
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
START_NAMESPACE = "bench-devstart"
START_PORT = 18512


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


def answered(port: int) -> bool:
    """One GET of the app through localhost:port: True on HTTP 200 (read to the end, as a
    client does; anything else, a refused or reset connection included, is False)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/add/1/2")
        response = connection.getresponse()
        response.read()
        return response.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def first_answer(port: int, started: float, process: subprocess.Popen[bytes]) -> float:
    while not answered(port):
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        if time.perf_counter() - started > 120:
            raise RuntimeError("no answer within 120 s")
        time.sleep(0.05)
    return time.perf_counter() - started


def start_copy(work: Path) -> Path:
    """examples/add as a user has it, in its own namespace and local port."""
    folder = work / "start" / "add"
    shutil.copytree(ROOT / "examples" / "add", folder)
    config = folder / "kubeloop.yaml"
    text = config.read_text().replace("namespace: add\n", f"namespace: {START_NAMESPACE}\n")
    config.write_text(text.replace("localPort: 8000", f"localPort: {START_PORT}"))
    return folder


def kubectl(kubeconfig: str, *args: str) -> list[str]:
    return [kubectl_command(), "--kubeconfig", kubeconfig, "-n", START_NAMESPACE, *args]


def remove_app(kubeconfig: str, phase: random.Random) -> None:
    """The app's Deployment and Service deleted, its pods gone, then a random pause.

    Why the pause: the kubelet notices a started container on its once-a-second relist,
    and the moment a pod is seen gone comes from such a relist too. A start right after
    it is in step with the relists and gets its pod seen sooner than a start at any other
    moment (by-hand starts measured 1.15 s that way, 1.66 s at random moments); a user's start is at a random
    moment, so each start here is too, for kubeloop and the baseline alike."""
    subprocess.run(kubectl(kubeconfig, "delete", "deployment/add", "service/add",
                           "--ignore-not-found", "--wait"), check=True, capture_output=True)  # fmt: skip
    subprocess.run(kubectl(kubeconfig, "wait", "--for=delete", "pod", "-l", "app=add",
                           "--timeout=60s"), capture_output=True)  # fmt: skip
    time.sleep(phase.uniform(0, 1))


def dev_start(folder: Path, *flags: str) -> float:
    """The real ``kubeloop dev`` until its first answer, then stopped as Ctrl-C does."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "kubeloop", "dev", *flags], cwd=folder,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)  # fmt: skip
    try:
        return first_answer(START_PORT, started, process)
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(120)


def manual_start(kubeconfig: str, manifests: Path) -> float:
    """The same by hand: apply, wait for the rollout, forward, ask."""
    started = time.perf_counter()
    subprocess.run(kubectl(kubeconfig, "apply", "-f", str(manifests)), check=True,
                   capture_output=True)  # fmt: skip
    subprocess.run(kubectl(kubeconfig, "rollout", "status", "deployment/add", "--timeout=120s"),
                   check=True, capture_output=True)  # fmt: skip
    forward = subprocess.Popen(kubectl(kubeconfig, "port-forward", "service/add",
                                       f"{START_PORT}:80"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        return first_answer(START_PORT, started, forward)
    finally:
        forward.kill()
        forward.wait()


def start_figures(work: Path, kubeconfig: str, runs: int) -> dict[str, float]:
    """Cold and unchanged dev start-ups, each alternated with the by-hand baseline."""
    folder = start_copy(work)
    rendered = work / "start" / "rendered.yaml"
    rendered.write_bytes(subprocess.run([sys.executable, "-m", "kubeloop", "render", "--images"],
                                        cwd=folder, check=True, capture_output=True).stdout)  # fmt: skip
    dev_start(folder)  # builds the images (warm from here on)
    phase = random.Random(7)
    cold, manual_cold = [], []
    for _ in range(runs):
        remove_app(kubeconfig, phase)
        cold.append(dev_start(folder))
        remove_app(kubeconfig, phase)
        manual_cold.append(manual_start(kubeconfig, rendered))
    remove_app(kubeconfig, phase)
    dev_start(folder, "--keep")  # dev mode's workload left in place: unchanged from now on
    unchanged = [dev_start(folder, "--keep") for _ in range(runs)]
    remove_app(kubeconfig, phase)
    subprocess.run(kubectl(kubeconfig, "apply", "-f", str(rendered)), check=True,
                   capture_output=True)  # fmt: skip
    manual_unchanged = [manual_start(kubeconfig, rendered) for _ in range(runs)]
    subprocess.run([sys.executable, "-m", "kubeloop", "delete"], cwd=folder, capture_output=True)
    subprocess.run([kubectl_command(), "--kubeconfig", kubeconfig, "delete", "namespace",
                    START_NAMESPACE, "--ignore-not-found", "--wait=false"], capture_output=True)  # fmt: skip
    figures = {
        "dev_start_cold_deploy_s_median": statistics.median(cold),
        "dev_start_cold_deploy_s_max": max(cold),
        "manual_start_cold_deploy_s_median": statistics.median(manual_cold),
        "manual_start_cold_deploy_s_max": max(manual_cold),
        "dev_start_unchanged_s_median": statistics.median(unchanged),
        "dev_start_unchanged_s_max": max(unchanged),
        "manual_start_unchanged_s_median": statistics.median(manual_unchanged),
    }
    return {key: round(value, 3) for key, value in figures.items()}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--starts", type=int, default=10, help="dev start-ups of each kind")
    parser.add_argument("--only-start", action="store_true", help="only the start-up figures")
    args = parser.parse_args()
    info = await create_cluster(CLUSTER, provider="native", quiet=True)
    await seed_base_image("python:3.11-slim", CLUSTER, quiet=True)
    await ensure_docker_engine(quiet=True)
    kubeloop = [sys.executable, "-m", "kubeloop"]
    figures: dict[str, float | int] = {}
    if args.only_start:
        with tempfile.TemporaryDirectory(prefix="kubeloop-bench-") as work:
            figures.update(start_figures(Path(work), info.kubeconfig, args.starts))
        report(figures)
        return

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
        figures.update(start_figures(Path(work), info.kubeconfig, args.starts))
    report(figures)


def report(figures: dict[str, float | int]) -> None:
    for key, value in figures.items():
        print(f"{key:>36}: {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
