"""Live sync speed on the native cluster, against two baselines measured in the same run:
(a) ``kubectl cp`` per change, (b) a tar stream into ``kubectl exec ... tar x`` per change
(the mechanism Skaffold and Tilt use).

Usage: python benchmarks/sync.py [--saves N] [--baseline-saves N]

Figures: save → content live in the container for one small file (p50, p99), the initial
sync of 10,000 files / 100 MB, change → new process answering HTTP with restart
'process' (examples/add), and for two-way sync, a file written in the container → the
local copy, following the agent's change reports against polling every second (how
kubeloop did it before). The last line is one JSON object with all figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from kubeloop.cluster import ClusterInfo, create_cluster, seed_base_image
from kubeloop.core import kubectl_command
from kubeloop.devloop import open_session
from kubeloop.kube import Kube
from kubeloop.sync import Batch, Syncer, SyncRule

ROOT = Path(__file__).parents[1]
NAMESPACE = "bench-sync"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def start_pod(kube: Kube) -> str:
    await kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    await kube.apply({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "target", "namespace": NAMESPACE},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "target"}},
                 "template": {"metadata": {"labels": {"app": "target"}},
                              "spec": {"terminationGracePeriodSeconds": 0, "containers": [
                                  {"name": "app", "image": "python:3.11-slim",
                                   "command": ["sleep", "infinity"]}]}}},
    })  # fmt: skip
    deployment = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/target"
    await kube.wait_for(deployment, lambda d: d.get("status", {}).get("readyReplicas") == 1,
                        "target ready", 90)  # fmt: skip
    pods = await kube.request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods",
                              params={"labelSelector": "app=target"})  # fmt: skip
    return str(next(p["metadata"]["name"] for p in pods["items"]
                    if not p["metadata"].get("deletionTimestamp")))  # fmt: skip


async def kubeloop_saves(syncer: Syncer, folder: Path, saves: int) -> list[float]:
    """Save → the agent confirmed the write, through the real watch loop."""
    batches: asyncio.Queue[Batch] = asyncio.Queue()
    syncer.on_batch = batches.put_nowait
    stop = asyncio.Event()
    task = asyncio.create_task(syncer.run(stop))
    while not syncer.pods:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)  # let the watcher settle
    times = []
    target = folder / "main.py"
    for index in range(saves):
        saved = time.perf_counter()
        target.write_text(f"print({index})\n")
        await asyncio.wait_for(batches.get(), 10)
        times.append(time.perf_counter() - saved)
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, 30)
    return times


def baseline_saves(kubeconfig: str, pod: str, folder: Path, saves: int, how: str) -> list[float]:
    kubectl = [kubectl_command(), "--kubeconfig", kubeconfig, "-n", NAMESPACE]
    target = folder / "main.py"
    times = []
    for index in range(saves):
        saved = time.perf_counter()
        target.write_text(f"print('baseline {index}')\n")
        if how == "kubectl-cp":
            subprocess.run([*kubectl, "cp", str(target), f"{pod}:/bench/main.py", "-c", "app"],
                           check=True, capture_output=True)  # fmt: skip
        else:
            tar = subprocess.Popen(["tar", "cf", "-", "-C", str(folder), "main.py"],
                                   stdout=subprocess.PIPE)  # fmt: skip
            subprocess.run([*kubectl, "exec", "-i", pod, "-c", "app", "--", "tar", "xf", "-",
                            "-C", "/bench"], stdin=tar.stdout, check=True, capture_output=True)  # fmt: skip
            tar.wait()
        times.append(time.perf_counter() - saved)
    return times


async def two_way_pulls(kube: Kube, info: ClusterInfo, folder: Path, writes: int,
                        poll: bool) -> list[float]:  # fmt: skip
    """A file written in the container → the same file complete on the local disk."""
    folder.mkdir()
    syncer = Syncer(kube, info, NAMESPACE, "app=target",
                    [SyncRule(folder, "/twoway", two_way=True)], poll_remote=poll)  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(syncer.run(stop, pull_interval=1.0))
    while not syncer.pods:
        await asyncio.sleep(0.02)
    await asyncio.sleep(1.5)  # past the first full look
    stream = next(iter(syncer.pods.values())).stream
    times = []
    for index in range(writes):
        # A random pause, so that writes do not fall into step with a poll.
        await asyncio.sleep(random.uniform(0, 1.0))
        local = folder / f"generated_{index}.py"
        written = time.perf_counter()
        futures = await stream.send_many([("W", f"/twoway/{local.name}", 0o644, b"x = 1\n")])
        await stream.wait_all(futures, "write in the container")
        while not local.exists():
            await asyncio.sleep(0.001)
        times.append(time.perf_counter() - written)
    stop.set()
    await asyncio.wait_for(task, 30)
    return times


def make_tree(folder: Path, files: int = 10_000, size: int = 10_000) -> None:
    for index in range(files):
        sub = folder / f"d{index // 100:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{index:05d}.bin").write_bytes(os.urandom(size))


async def initial_sync(kube: Kube, info: object, folder: Path, dest: str) -> tuple[float, int]:
    # Start from clean page-cache writeback, as tar_initial does: ext4 makes new files
    # wait for earlier dirty data, which would charge one method for the other's writes.
    os.sync()
    syncer = Syncer(kube, info, NAMESPACE, "app=target", [SyncRule(folder, dest)])  # type: ignore[arg-type]
    started = time.perf_counter()
    await syncer.refresh_pods()
    elapsed = time.perf_counter() - started
    (synced,) = syncer.pods.values()
    listing = await synced.stream.listing(dest)
    await synced.stream.close()
    return elapsed, sum(1 for e in listing.values() if e.kind == "F")


def tar_initial(kubeconfig: str, pod: str, folder: Path) -> float:
    kubectl = [kubectl_command(), "--kubeconfig", kubeconfig, "-n", NAMESPACE]
    started = time.perf_counter()
    subprocess.run(
        [*kubectl, "exec", pod, "-c", "app", "--", "mkdir", "-p", "/tarbench"], check=True
    )
    tar = subprocess.Popen(["tar", "cf", "-", "-C", str(folder), "."], stdout=subprocess.PIPE)
    subprocess.run([*kubectl, "exec", "-i", pod, "-c", "app", "--", "tar", "xf", "-", "-C",
                    "/tarbench"], stdin=tar.stdout, check=True, capture_output=True)  # fmt: skip
    tar.wait()
    return time.perf_counter() - started


async def process_restart(work: Path, kube: Kube, runs: int) -> list[float]:
    folder = work / "add"
    shutil.copytree(ROOT / "examples" / "add", folder)
    config = folder / "kubeloop.yaml"
    config.write_text(config.read_text().replace("namespace: add", f"namespace: {NAMESPACE}"))
    session = await open_session(config, cluster="kubeloop")
    times = []
    try:
        await session.deploy(quiet=True, dev_mode=True)
        # The app folder's rule (the add example syncs its tests too).
        syncer = next(s for s in session.syncers() if s.rules[0].remote == "/app")
        stop = asyncio.Event()
        task = asyncio.create_task(syncer.run(stop))
        while not syncer.pods:
            await asyncio.sleep(0.02)
        pod = await kube.get(f"/api/v1/namespaces/{NAMESPACE}/pods/{next(iter(syncer.pods))}")
        assert pod is not None
        url = f"http://{pod['status']['podIP']}:8000/add/2/3"
        server = folder / "app" / "server.py"
        async with httpx.AsyncClient(timeout=1) as client:
            for index in range(runs):
                key = f"sum_{index}"
                text = server.read_text()
                text = text.replace(f'"sum_{index - 1}":', '"sum":') if index else text
                server.write_text(text.replace('"sum":', f'"{key}":'))
                saved = time.perf_counter()
                while time.perf_counter() - saved < 10:
                    try:
                        if key in (await client.get(url)).json():
                            break
                    except (httpx.HTTPError, ValueError):
                        pass
                    await asyncio.sleep(0.005)
                times.append(time.perf_counter() - saved)
                await asyncio.sleep(0.3)
        stop.set()
        await asyncio.wait_for(task, 30)
    finally:
        await session.delete()
        await session.close()
    return times


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--saves", type=int, default=100)
    parser.add_argument("--baseline-saves", type=int, default=20)
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--initial-runs", type=int, default=3)
    parser.add_argument("--pulls", type=int, default=20)
    args = parser.parse_args()
    info = await create_cluster("kubeloop", provider="native", quiet=True)
    await seed_base_image("python:3.11-slim", "kubeloop", quiet=True)
    kube = await Kube.connect(info.kubeconfig, info.context)
    figures: dict[str, float | int] = {}
    try:
        pod = await start_pod(kube)
        with tempfile.TemporaryDirectory(prefix="kubeloop-sync-bench-") as work:
            small = Path(work) / "small"
            small.mkdir()
            (small / "main.py").write_text("print()\n")
            syncer = Syncer(kube, info, NAMESPACE, "app=target", [SyncRule(small, "/bench")])
            ours = await kubeloop_saves(syncer, small, args.saves)
            cp = baseline_saves(info.kubeconfig, pod, small, args.baseline_saves, "kubectl-cp")
            tar = baseline_saves(info.kubeconfig, pod, small, args.baseline_saves, "tar")
            for name, values in (("kubeloop", ours), ("kubectl_cp", cp), ("tar_exec", tar)):
                figures[f"save_{name}_p50_ms"] = round(percentile(values, 50) * 1000, 1)
                figures[f"save_{name}_p99_ms"] = round(percentile(values, 99) * 1000, 1)
            figures["save_p50_speedup_vs_tar_exec"] = round(
                percentile(tar, 50) / percentile(ours, 50), 1
            )
            figures["save_p50_speedup_vs_kubectl_cp"] = round(
                percentile(cp, 50) / percentile(ours, 50), 1
            )

            big = Path(work) / "big"
            make_tree(big)
            await initial_sync(kube, info, small, "/warm")  # the agent is attached already
            ours_initial, tar_initial_times = [], []
            for run in range(args.initial_runs):  # alternate, so neither always goes first
                seconds, files = await initial_sync(kube, info, big, f"/initial{run}")
                ours_initial.append(seconds)
                tar_initial_times.append(tar_initial(info.kubeconfig, pod, big))
            figures["initial_10k_files_100mb_kubeloop_s_median"] = round(
                statistics.median(ours_initial), 2
            )
            figures["initial_10k_files_100mb_kubeloop_s_max"] = round(max(ours_initial), 2)
            figures["initial_files_in_container"] = files
            figures["initial_10k_files_100mb_tar_exec_s_median"] = round(
                statistics.median(tar_initial_times), 2)  # fmt: skip
            figures["initial_speedup_vs_tar_exec"] = round(
                statistics.median(tar_initial_times) / statistics.median(ours_initial), 2)  # fmt: skip
            unchanged, _ = await initial_sync(kube, info, big, "/initial0")
            figures["resync_unchanged_10k_files_s"] = round(unchanged, 2)

            watched = await two_way_pulls(kube, info, Path(work) / "tw-watch", args.pulls, False)
            polled = await two_way_pulls(kube, info, Path(work) / "tw-poll", args.pulls, True)
            figures["two_way_pull_watch_p50_ms"] = round(percentile(watched, 50) * 1000, 1)
            figures["two_way_pull_watch_p99_ms"] = round(percentile(watched, 99) * 1000, 1)
            figures["two_way_pull_poll_1s_p50_ms"] = round(percentile(polled, 50) * 1000, 1)
            figures["two_way_pull_speedup_vs_poll"] = round(
                percentile(polled, 50) / percentile(watched, 50), 1)  # fmt: skip

            restarts = await process_restart(Path(work), kube, args.restarts)
            figures["restart_process_http_p50_ms"] = round(percentile(restarts, 50) * 1000)
            figures["restart_process_http_max_ms"] = round(max(restarts) * 1000)
    finally:
        await kube.delete(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        )
        await kube.close()
    for key, value in figures.items():
        print(f"{key:>40}: {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
