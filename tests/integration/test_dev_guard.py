"""Dev mode's change to a workload is undone in the cluster when `kubeloop dev` is
killed (the guard pod, after the lease's renewals stop), and the guard leaves with a
clean stop."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from kubeloop.kube import Kube
from kubeloop.sync.devmode import ORIGINAL
from tests.integration.conftest import eventually
from tests.integration.test_core_loop import copy_example


async def dev_cli(config: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubeloop", "dev", "--config", str(config),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip


def wrapped(deployment: dict[str, Any] | None) -> bool:
    if deployment is None:
        return False
    command = deployment["spec"]["template"]["spec"]["containers"][0].get("command") or []
    return "supervise" in command and ORIGINAL in (deployment["metadata"].get("annotations") or {})


async def guards(kube: Kube, namespace: str) -> list[str]:
    pods = await kube.request("GET", f"/api/v1/namespaces/{namespace}/pods",
                              params={"labelSelector": "kubeloop.dev/guard"})  # fmt: skip
    return [p["metadata"]["name"] for p in pods["items"]
            if not p["metadata"].get("deletionTimestamp")]  # fmt: skip


async def test_a_killed_dev_is_undone_in_the_cluster(
    tmp_path: Path, kube: Kube, namespace: str, docker_engine: None
) -> None:
    config = copy_example("add", tmp_path, namespace) / "kubeloop.yaml"
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/add"
    lease = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/kubeloop-dev-add"

    process = await dev_cli(config)
    try:
        await eventually(lambda: _wrapped(kube, path), 120, 0.5)
        assert await guards(kube, namespace) and await kube.get(lease) is not None
        os.killpg(process.pid, signal.SIGKILL)
        killed = time.monotonic()
        await eventually(lambda: _restored(kube, path), 40, 0.5)
        assert time.monotonic() - killed < 30
        await eventually(lambda: _gone(kube, namespace, lease), 30, 0.5)
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()

    # A clean stop: dev restores the workload itself and the guard goes at once.
    process = await dev_cli(config)
    await eventually(lambda: _wrapped(kube, path), 120, 0.5)
    os.killpg(process.pid, signal.SIGINT)
    assert await asyncio.wait_for(process.wait(), 60) == 130
    assert not wrapped(await kube.get(path))
    assert await guards(kube, namespace) == [] and await kube.get(lease) is None


async def _wrapped(kube: Kube, path: str) -> bool:
    return wrapped(await kube.get(path))


async def _restored(kube: Kube, path: str) -> bool:
    found = await kube.get(path)
    return found is not None and not wrapped(found)


async def _gone(kube: Kube, namespace: str, lease: str) -> bool:
    return await kube.get(lease) is None and not await guards(kube, namespace)
