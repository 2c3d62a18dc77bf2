"""Image build speed: ``builder: cluster`` (rootless BuildKit in the cluster) against the
local Docker engine, in the same run, on the same Dockerfiles: examples/add (Python, one
layer of packages from apt) and examples/goservice (a multi-stage Go build with args).

Usage: python benchmarks/build.py [--runs N] [--test-rounds N] [--skip-test-overhead]

For each project and builder, from scratch copies of the example:

* cold: a build with the builder's cache ignored (``--no-cache`` for both), then pushed;
* warm: a one-line source change, rebuilt with the cache (the figure that matters while
  developing), then pushed;
* no-change: the same sources built again with the cache (what each builder costs when
  nothing changed; kubeloop itself skips such a build when the registry has the tag).

The local builder is ``docker build`` then ``docker push`` (as ``builder: docker`` runs
them); the cluster's is kubeloop's ``build_in_cluster`` (buildctl through ``kubectl
exec``, the push by the builder through kubeloop's relay). Each figure is the median of
``--runs``. ``warm_ratio`` is cluster / local for the warm rebuild of examples/add.
``test_overhead_ms`` comes from benchmarks/test_overhead.py (``kubeloop test`` against a
bare ``kubectl exec``). The last line is one JSON object with all figures.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from kubeloop.build import ensure_docker_engine
from kubeloop.build.cluster import build_in_cluster, ensure_builder
from kubeloop.build.docker import builder_env, ensure_bases_in_docker
from kubeloop.cluster import ClusterInfo, get_cluster, seed_base_image
from kubeloop.kube import Kube
from kubeloop.proc import run

ROOT = Path(__file__).parents[1]
CLUSTER = os.environ.get("KUBELOOP_TEST_CLUSTER", "kubeloop")
PROJECTS = {
    "add": ("app/server.py", {}),
    "goservice": ("main.go", {"VERSION": "1.0.0", "GREETING": "hello from the cluster"}),
}


async def timed(action: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await action()
    return time.perf_counter() - started


def touch(folder: Path, source: str, marker: str) -> None:
    path = folder / source
    comment = "#" if source.endswith(".py") else "//"
    path.write_text(path.read_text() + f"\n{comment} {marker}\n")


async def local_build(folder: Path, image: str, args: dict[str, str], no_cache: bool) -> None:
    argv = ["docker", "build", "-q", "-f", str(folder / "Dockerfile"), "-t", image,
            *[f"--build-arg={k}={v}" for k, v in args.items()],
            *(["--no-cache"] if no_cache else []), str(folder)]  # fmt: skip
    env = {**os.environ, **builder_env()}
    await run(argv, env=env, timeout=1800)
    await run(["docker", "push", "-q", image], timeout=900)


async def cluster_build(cluster: ClusterInfo, folder: Path, image: str, args: dict[str, str],
                        no_cache: bool) -> None:  # fmt: skip
    await build_in_cluster(cluster, folder, image, build_args=args, no_cache=no_cache)


async def build_once(cluster: ClusterInfo, builder: str, folder: Path, repository: str,
                     args: dict[str, str], no_cache: bool) -> float:  # fmt: skip
    image = f"{repository}:{uuid.uuid4().hex[:12]}"
    if builder == "local":
        return await timed(lambda: local_build(folder, image, args, no_cache))
    return await timed(lambda: cluster_build(cluster, folder, image, args, no_cache))


async def measure(cluster: ClusterInfo, project: str, builder: str, runs: int,
                  scratch: Path) -> dict[str, float]:  # fmt: skip
    source, args = PROJECTS[project]
    cold: list[float] = []
    warm: list[float] = []
    same: list[float] = []
    repository = f"{cluster.registry}/bench-build/{project}-{builder}"
    for run_number in range(runs):
        folder = scratch / f"{project}-{builder}-{run_number}"
        shutil.copytree(ROOT / "examples" / project, folder)
        touch(folder, source, f"cold {uuid.uuid4().hex}")
        cold.append(await build_once(cluster, builder, folder, repository, args, True))
        touch(folder, source, f"warm {uuid.uuid4().hex}")
        warm.append(await build_once(cluster, builder, folder, repository, args, False))
        same.append(await build_once(cluster, builder, folder, repository, args, False))
    return {"cold_s": round(statistics.median(cold), 3),
            "warm_s": round(statistics.median(warm), 3),
            "nochange_s": round(statistics.median(same), 3)}  # fmt: skip


def load_test_overhead() -> Any:
    """``measure_test_overhead`` from benchmarks/test_overhead.py, when it is there."""
    path = Path(__file__).with_name("test_overhead.py")
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("test_overhead_bench", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return getattr(module, "measure_test_overhead", None)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--test-rounds", type=int, default=20)
    parser.add_argument("--skip-test-overhead", action="store_true")
    options = parser.parse_args()
    cluster = get_cluster(CLUSTER)
    for base in ("python:3.11-slim", "golang:1.19", "debian:bookworm-slim"):
        await seed_base_image(base, CLUSTER, quiet=True)
    await ensure_docker_engine(quiet=True)
    for project in PROJECTS:
        await ensure_bases_in_docker(ROOT / "examples" / project / "Dockerfile",
                                     cluster.registry or "")  # fmt: skip
    kube = await Kube.connect(cluster.kubeconfig, cluster.context)
    try:
        await ensure_builder(cluster, kube)  # its start-up is not a build's cost
    finally:
        await kube.close()
    figures: dict[str, Any] = {"runs": options.runs}
    with tempfile.TemporaryDirectory(prefix="kubeloop-bench-build-") as scratch:
        for project in PROJECTS:
            for builder in ("local", "cluster"):
                result = await measure(cluster, project, builder, options.runs, Path(scratch))
                print(f"{project:10} {builder:8} cold {result['cold_s']:7.2f}s  warm "
                      f"{result['warm_s']:6.2f}s  no-change {result['nochange_s']:6.2f}s",
                      flush=True)  # fmt: skip
                for key, value in result.items():
                    figures[f"{builder}_{project}_{key}"] = value
    figures["cluster_warm_s"] = figures["cluster_add_warm_s"]
    figures["local_warm_s"] = figures["local_add_warm_s"]
    figures["warm_ratio"] = round(figures["cluster_warm_s"] / figures["local_warm_s"], 2)
    figures["go_warm_ratio"] = round(
        figures["cluster_goservice_warm_s"] / figures["local_goservice_warm_s"], 2
    )
    measure_test_overhead = None if options.skip_test_overhead else load_test_overhead()
    if measure_test_overhead is not None:
        overhead = await measure_test_overhead(rounds=options.test_rounds, cluster=CLUSTER)
        figures["test_overhead_ms"] = overhead["test_overhead_ms"]
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
