"""``kubeloop debug`` speed on the native cluster, beside a baseline from the same run.

Usage: python benchmarks/debug.py [--rounds N] [--requests N]

- ``debug_ready_s``: from ``Debugger.start()`` (a Python service already running under
  kubeloop's dev-mode supervisor) to the DAP ``initialized`` event on the forwarded local
  port, i.e. the moment an IDE can set breakpoints. Median of N rounds, each ended (the
  debugger removed, the app restarted without it) before the next, so each is warm but
  starts from a service with no debugger.
- ``rebuild_baseline_s``: the way without kubeloop: a second Dockerfile that adds debugpy
  and starts the app under ``python -m debugpy --listen``, rebuilt after a one-line code
  change (the docker engine's layer cache is warm), pushed to the cluster's registry,
  rolled out, ``kubectl port-forward`` to the debug port, until the same DAP
  ``initialized``. Median of N rounds.
- ``request_overhead_ms``: p50 of a small GET from a client pod to the service with the
  debugger attached (a DAP client attached, no breakpoint) minus the p50 without it.

The last line is one JSON object with all figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kubeloop.build import build_and_push, ensure_docker_engine
from kubeloop.cluster import ClusterInfo, get_cluster, seed_base_image
from kubeloop.core import kubectl_command, wait_until
from kubeloop.debug import Debugger, DebugSpec
from kubeloop.debug._payload import debugpy_folder
from kubeloop.deploy.apply import ensure_namespace
from kubeloop.kube import Kube

ROOT = Path(__file__).parents[1]
NAMESPACE = "bench-debug"
BASELINE_PORT = 18678

# The service, the workload shape and the DAP client are the debug tests' own.
sys.path.insert(0, str(ROOT))
test_debug = importlib.import_module("tests.integration.test_debug")
Dap = importlib.import_module("tests.integration.dap").Dap

# Run in the client pod: N GETs (a new connection each: the service speaks HTTP/1.0),
# their p50 in ms as JSON.
CLIENT = """\
import json, statistics, sys, time, urllib.request
times = []
for _ in range(int(sys.argv[2])):
    start = time.perf_counter()
    urllib.request.urlopen(sys.argv[1], timeout=10).read()
    times.append((time.perf_counter() - start) * 1000)
print(json.dumps({"p50_ms": statistics.median(times)}))
"""

BASELINE_DOCKERFILE = """\
FROM python:3.11-slim
COPY debugpy/ /opt/debugpy/debugpy/
ENV PYTHONPATH=/opt/debugpy
COPY server.py /app/server.py
CMD ["python3", "-m", "debugpy", "--listen", "0.0.0.0:5678", "/app/server.py"]
"""


async def setup(kube: Kube, info: ClusterInfo) -> None:
    """The supervised service (as ``kubeloop dev`` runs it), its Service and a client pod,
    in a new namespace (one left by an interrupted run goes first)."""
    await drop_namespace(kube)
    await ensure_namespace(kube, NAMESPACE)
    await test_debug.run_supervised(kube, info, NAMESPACE, test_debug.workload(NAMESPACE),
                                    {"server.py": test_debug.SERVER})  # fmt: skip


async def drop_namespace(kube: Kube) -> None:
    await kube.delete({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})

    async def gone() -> bool:
        return await kube.get(f"/api/v1/namespaces/{NAMESPACE}") is None

    await wait_until(gone, 120, 0.5, f"namespace {NAMESPACE} deleted")


async def client_p50(info: ClusterInfo, url: str, requests: int) -> float:
    argv = [kubectl_command(), "--kubeconfig", info.kubeconfig, "-n", NAMESPACE, "exec",
            "client", "--", "python3", "-c", CLIENT, url, str(requests)]  # fmt: skip
    done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True,
                                   timeout=300)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"client pod: {done.stderr[-2000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["p50_ms"])


async def attach(port: int) -> tuple[Any, asyncio.Future[Any]]:
    """A DAP client attaching through ``port``, once ``initialized`` arrived, and the
    attach request's answer to come."""
    dap = await Dap.connect(port)
    await dap.request("initialize", adapterID="debugpy", clientID="kubeloop-bench",
                      linesStartAt1=True, columnsStartAt1=True, pathFormat="path")  # fmt: skip
    attached = dap.send("attach", justMyCode=False)
    await dap.event("initialized")
    return dap, attached


async def kubeloop_round(kube: Kube, info: ClusterInfo, requests: int | None) -> dict[str, float]:
    debugger = Debugger(kube, info, DebugSpec("web", NAMESPACE, local_port=0))
    started = time.perf_counter()
    await debugger.start()
    figures: dict[str, float] = {}
    try:
        dap, attached = await attach(debugger.local_port)
        figures["ready_s"] = time.perf_counter() - started
        try:
            await dap.request("configurationDone")
            await asyncio.wait_for(attached, 20)
            if requests:
                figures["attached_p50_ms"] = await client_p50(info, "http://web/", requests)
        finally:
            await dap.close()
    finally:
        await debugger.stop()
    return figures


async def baseline_round(kube: Kube, info: ClusterInfo, context: Path, round_: int) -> float:
    """Edit a line, rebuild the debug image, roll it out, port-forward, attach."""
    (context / "server.py").write_text(f"# round {round_}\n{test_debug.SERVER}")
    started = time.perf_counter()
    built = await build_and_push(context, "bench-debug/rebuilt", info.registry)
    container = {"name": "web", "image": built.image, "ports": [{"containerPort": 5678}],
                 "readinessProbe": {"tcpSocket": {"port": 8000}, "periodSeconds": 1}}  # fmt: skip
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "rebuilt", "namespace": NAMESPACE},
        "spec": {"selector": {"matchLabels": {"app": "rebuilt"}},
                 "template": {"metadata": {"labels": {"app": "rebuilt"}},
                              "spec": {"terminationGracePeriodSeconds": 0,
                                       "containers": [container]}}},
    }  # fmt: skip
    applied = await kube.apply(deployment)
    generation = applied["metadata"]["generation"]

    def rolled_out(d: dict[str, Any]) -> bool:
        status = d.get("status", {})
        return bool(status.get("observedGeneration", 0) >= generation
                    and status.get("updatedReplicas") == 1 and status.get("replicas") == 1
                    and status.get("readyReplicas") == 1)  # fmt: skip

    await kube.wait_for(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/rebuilt",
                        rolled_out, "the rebuilt debug image rolled out", 300, 0.1)  # fmt: skip
    forward = await asyncio.create_subprocess_exec(
        kubectl_command(), "--kubeconfig", info.kubeconfig, "-n", NAMESPACE, "port-forward",
        "deploy/rebuilt", f"{BASELINE_PORT}:5678",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert forward.stdout is not None
        await asyncio.wait_for(forward.stdout.readline(), 30)  # "Forwarding from ..."
        dap, _ = await attach(BASELINE_PORT)
        took = time.perf_counter() - started
        await dap.close()
    finally:
        forward.terminate()
        await forward.wait()
    return took


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    info = get_cluster("kubeloop")
    await seed_base_image("python:3.11-slim", "kubeloop", quiet=True)
    await ensure_docker_engine()
    kube = await Kube.connect(info.kubeconfig, info.context)
    context = Path(tempfile.mkdtemp(prefix="kubeloop-bench-debug-"))
    try:
        await setup(kube, info)
        shutil.copytree(await debugpy_folder() / "debugpy", context / "debugpy")
        (context / "Dockerfile").write_text(BASELINE_DOCKERFILE)
        await kubeloop_round(kube, info, None)  # warm: agent container, debugpy sent once

        async def answers() -> bool:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                await client_p50(info, "http://web/", 1)
                return True
            return False

        ready, attached = [], []
        for _ in range(args.rounds):
            await wait_until(answers, 60, 0.5, "the service answering")
            figures = await kubeloop_round(kube, info, args.requests)
            ready.append(figures["ready_s"])
            attached.append(figures["attached_p50_ms"])
        await wait_until(answers, 60, 0.5, "the service answering without the debugger")
        plain = [await client_p50(info, "http://web/", args.requests) for _ in attached]
        await baseline_round(kube, info, context, 0)  # warm the layer cache and the image
        baseline = [await baseline_round(kube, info, context, r + 1) for r in range(args.rounds)]
    finally:
        shutil.rmtree(context, ignore_errors=True)
        with contextlib.suppress(Exception):
            await drop_namespace(kube)
        await kube.close()
    result = {
        "debug_ready_s": round(statistics.median(ready), 3),
        "debug_ready_s_runs": [round(r, 3) for r in ready],
        "rebuild_baseline_s": round(statistics.median(baseline), 3),
        "rebuild_baseline_s_runs": [round(b, 3) for b in baseline],
        "speedup": round(statistics.median(baseline) / statistics.median(ready), 1),
        "request_attached_p50_ms": round(statistics.median(attached), 3),
        "request_plain_p50_ms": round(statistics.median(plain), 3),
        "request_overhead_ms": round(statistics.median(attached) - statistics.median(plain), 3),
        "rounds": args.rounds,
        "requests": args.requests,
    }
    print(f"debugger ready (DAP initialized): {result['debug_ready_s']} s  "
          f"vs rebuild with debugpy + rollout + port-forward: {result['rebuild_baseline_s']} s "
          f"({result['speedup']}x)")  # fmt: skip
    print(
        f"request p50 with debugger attached {result['request_attached_p50_ms']} ms, "
        f"without {result['request_plain_p50_ms']} ms: +{result['request_overhead_ms']} ms"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
