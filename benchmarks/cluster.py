"""Native cluster speed: warm create → node Ready → first pod Running, delete, and
(with --cold) obtaining every binary from an empty cache.

Usage: python benchmarks/cluster.py [--runs N] [--cold]

Each figure is also given as a ratio to its budget from the issue (60 s warm create,
10 s delete) and to a baseline measured in the same run: a no-op ``create`` on the
healthy cluster, i.e. what checking a running cluster costs. The last line is one JSON
object with all figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time

from kubeloop.cluster import create_cluster, delete_cluster, list_records
from kubeloop.cluster.native.binaries import ensure_binaries
from kubeloop.kube import Kube

NAME = os.environ.get("KUBELOOP_TEST_CLUSTER", "kubeloop")
PAUSE_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "bench-first-pod", "namespace": "default"},
    "spec": {
        "terminationGracePeriodSeconds": 0,
        "containers": [{"name": "pause", "image": "localhost:5000/pause:3.10"}],
    },
}


async def first_pod_running(kubeconfig: str) -> None:
    kube = await Kube.connect(kubeconfig)
    try:
        await kube.apply(PAUSE_POD)
        await kube.wait_pod_running("default", "bench-first-pod", timeout=120)
        await kube.delete(PAUSE_POD, grace_seconds=0)
    finally:
        await kube.close()


async def one_cycle() -> dict[str, float]:
    started = time.monotonic()
    info = await create_cluster(NAME, provider="native", quiet=True)
    ready = time.monotonic() - started
    await first_pod_running(info.kubeconfig)
    to_pod = time.monotonic() - started
    noop_started = time.monotonic()
    await create_cluster(NAME, provider="native", quiet=True)
    noop = time.monotonic() - noop_started
    deleted = time.monotonic()
    await delete_cluster(NAME, quiet=True)
    return {"create_ready": ready, "create_first_pod": to_pod, "noop_create": noop,
            "delete": time.monotonic() - deleted}  # fmt: skip


async def cold_binaries() -> float:
    with tempfile.TemporaryDirectory(prefix="kubeloop-cold-") as cache:
        os.environ["KUBELOOP_CACHE_DIR"] = cache
        os.environ["GOCACHE"] = os.path.join(cache, "go-build")
        started = time.monotonic()
        await ensure_binaries(quiet=True)
        elapsed = time.monotonic() - started
        del os.environ["KUBELOOP_CACHE_DIR"], os.environ["GOCACHE"]
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="also time binaries from empty caches")
    args = parser.parse_args()
    had_cluster = any(r.name == NAME for r in list_records())
    await create_cluster(NAME, provider="native", quiet=True)  # warm: binaries cached
    await delete_cluster(NAME, quiet=True)
    cycles = [await one_cycle() for _ in range(args.runs)]
    figures: dict[str, float | str] = {"runs": args.runs}
    for key in cycles[0]:
        values = [c[key] for c in cycles]
        figures[f"{key}_s_median"] = round(statistics.median(values), 3)
        figures[f"{key}_s_max"] = round(max(values), 3)
    baseline = float(figures["noop_create_s_median"])
    figures["create_first_pod_vs_budget_60s"] = round(
        float(figures["create_first_pod_s_max"]) / 60, 3
    )
    figures["delete_vs_budget_10s"] = round(float(figures["delete_s_max"]) / 10, 3)
    figures["create_first_pod_vs_noop_create"] = round(
        float(figures["create_first_pod_s_median"]) / max(baseline, 1e-3), 1
    )
    if args.cold:
        figures["cold_binaries_s"] = round(await cold_binaries(), 1)
        figures["cold_note"] = "empty kubeloop cache and Go build cache; Go module cache kept"
    if had_cluster:
        await create_cluster(NAME, provider="native", quiet=True)
    for key, value in figures.items():
        print(f"{key:>36}: {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
