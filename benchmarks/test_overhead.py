"""What ``kubeloop test`` adds over a bare ``kubectl exec`` of the same command.

Usage: python benchmarks/test_overhead.py [--rounds N]

A scratch copy of examples/add is deployed in its own namespace; then, alternating in
each round, the real CLI ``kubeloop test unit`` (pytest in the dev container with a JUnit
report read back; ``in: dev``) and ``kubectl exec -n NS deployment/add -- [env K=V] <the same
pytest command>``, each timed from process start to exit. The figure is the difference
of the medians (goal: at most 300 ms). The lint entry (pyflakes3) is measured the same
way. To show where the difference goes, the same entry is also run from the library (no
process start) against the same exec (``library_overhead_ms``), and the start-up alone is
timed: Python with kubeloop's imports and the config loaded (``startup_ms``), and a bare
``python -c pass`` (``python_ms``). The last line is one JSON object; ``measure_test_overhead`` returns the same dict
(benchmarks/build.py reports it too).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kubeloop.build import ensure_docker_engine
from kubeloop.cluster import create_cluster, get_cluster, seed_base_image
from kubeloop.config import load
from kubeloop.config.schema import TestEntry
from kubeloop.core import kubectl_command
from kubeloop.devloop import open_session
from kubeloop.testrun import Target, run_entry

ROOT = Path(__file__).parents[1]
CLUSTER = "kubeloop"
# What `kubeloop test` does before its exec: start Python, import, load the config.
STARTUP = ("import sys, asyncio, kubeloop.cli, kubeloop.testrun; from pathlib import Path; "
           "from kubeloop.config import load; load(Path(sys.argv[1]))")  # fmt: skip


def _scratch(namespace: str, parent: Path) -> Path:
    folder = parent / "add"
    shutil.copytree(ROOT / "examples" / "add", folder)
    config = folder / "kubeloop.yaml"
    lines = [f"namespace: {namespace}" if line.startswith("namespace:") else line
             for line in config.read_text().splitlines()]  # fmt: skip
    config.write_text("\n".join(lines).replace("localPort: 8000", "localPort: 0") + "\n")
    return config


def _with_env(entry: TestEntry) -> list[str]:
    """The entry's command with its variables set, as the bare exec runs it."""
    pairs = [f"{name}={value}" for name, value in entry.env.items()]
    return ["env", *pairs, *entry.command] if pairs else list(entry.command)


async def _timed(argv: list[str]) -> float:
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                   stdout=asyncio.subprocess.DEVNULL,
                                                   stderr=asyncio.subprocess.PIPE)  # fmt: skip
    _, err = await process.communicate()
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:6])}... exited {process.returncode}: "
                           f"{err.decode(errors='replace')[-800:]}")  # fmt: skip
    return elapsed


async def measure_test_overhead(rounds: int = 20, cluster: str = CLUSTER,
                                namespace: str | None = None,
                                entries: tuple[str, ...] = ("unit", "lint")) -> dict[str, Any]:  # fmt: skip
    """Deploy examples/add in a scratch namespace, time ``kubeloop test NAME`` against a
    bare ``kubectl exec`` of the entry's command, alternating, ``rounds`` times each;
    remove what was deployed. ``test_overhead_ms`` is the first entry's difference of
    medians."""
    namespace = namespace or f"bench-test-{os.getpid()}"
    info = get_cluster(cluster)
    figures: dict[str, Any] = {"rounds": rounds}
    with tempfile.TemporaryDirectory() as scratch:
        config_path = _scratch(namespace, Path(scratch))
        session = await open_session(config_path, cluster=cluster)
        try:
            await session.deploy(quiet=True)
            config = load(config_path)
            by_name = {e.name: e for e in config.project.test}

            def bare_of(entry: TestEntry) -> list[str]:
                return [kubectl_command(), "--kubeconfig", info.kubeconfig, "--context",
                        info.context, "exec", "-n", namespace, f"deployment/{entry.workload}",
                        "--", *_with_env(entry)]  # fmt: skip

            for name in entries:
                entry = by_name[name]
                cli = [sys.executable, "-m", "kubeloop", "test", name, "--config",
                       str(config_path), "--cluster", cluster]  # fmt: skip
                bare = bare_of(entry)
                await _timed(cli)  # warm: page cache, the pod's first exec
                await _timed(bare)
                ours, theirs = [], []
                for _ in range(rounds):
                    ours.append(await _timed(cli))
                    theirs.append(await _timed(bare))
                ours_ms = statistics.median(ours) * 1000
                bare_ms = statistics.median(theirs) * 1000
                figures[f"{name}_kubeloop_test_ms"] = round(ours_ms, 1)
                figures[f"{name}_kubectl_exec_ms"] = round(bare_ms, 1)
                figures[f"{name}_overhead_ms"] = round(ours_ms - bare_ms, 1)
                figures[f"{name}_kubeloop_test_max_ms"] = round(max(ours) * 1000, 1)
                figures[f"{name}_kubectl_exec_max_ms"] = round(max(theirs) * 1000, 1)
            # Where the difference goes: the same run from the library (no process start,
            # no imports, config loaded once) against the same bare exec.
            entry = by_name[entries[0]]
            target = Target(info.kubeconfig, info.context, namespace, config.project.name)
            library, bare_again = [], []
            for _ in range(rounds):
                started = time.perf_counter()
                result = await run_entry(entry, target, lambda _n, _l: None)
                library.append(time.perf_counter() - started)
                if not result.ok:
                    raise RuntimeError(result.line())
                bare_again.append(await _timed(bare_of(entry)))
            figures["library_run_ms"] = round(statistics.median(library) * 1000, 1)
            figures["library_kubectl_exec_ms"] = round(statistics.median(bare_again) * 1000, 1)
            figures["library_overhead_ms"] = round(
                figures["library_run_ms"] - figures["library_kubectl_exec_ms"], 1
            )
            startup = [sys.executable, "-c", STARTUP, str(config_path)]
            figures["startup_ms"] = round(
                statistics.median([await _timed(startup) for _ in range(rounds)]) * 1000, 1
            )
            figures["python_ms"] = round(
                statistics.median([await _timed([sys.executable, "-c", "pass"])
                                   for _ in range(rounds)]) * 1000, 1
            )  # fmt: skip
        finally:
            await session.delete()
            await session.kube.delete({"apiVersion": "v1", "kind": "Namespace",
                                       "metadata": {"name": namespace}}, grace_seconds=0)  # fmt: skip
            await session.close()
    figures["test_overhead_ms"] = figures[f"{entries[0]}_overhead_ms"]
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--cluster", default=CLUSTER)
    args = parser.parse_args()
    await create_cluster(args.cluster, provider="native", quiet=True)
    await seed_base_image("python:3.11-slim", args.cluster, quiet=True)
    await ensure_docker_engine(quiet=True)
    figures = await measure_test_overhead(args.rounds, args.cluster)
    for key, value in figures.items():
        print(f"{key}: {value}", file=sys.stderr)
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
