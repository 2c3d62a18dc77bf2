"""Shared fixtures and helpers of the integration tests, which run on the real native
cluster: created, or reused when it runs (creating is idempotent: a healthy cluster is a
fast no-op, a crashed one is repaired), so the same fixtures serve a cold CI machine and
a developer's warm one.

Order: tests marked ``disruptive`` (they crash, delete or recreate the shared cluster)
run after all others, whatever their file names; see pytest_collection_modifyitems.
"""

from __future__ import annotations

import inspect
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from kubeloop.build import ensure_docker_engine
from kubeloop.cluster import ClusterInfo, create_cluster, seed_base_image
from kubeloop.cluster.native.binaries import ensure_binaries
from kubeloop.core import WaitTimeout, wait_until
from kubeloop.deploy.apply import ensure_namespace
from kubeloop.kube import Kube
from kubeloop.proc import run

# Prefer the cluster_name fixture; the constant stays for module-level use.
CLUSTER = os.environ.get("KUBELOOP_TEST_CLUSTER", "kubeloop")
APPS = Path(__file__).parents[2] / "examples"
DISRUPTIVE = "disruptive"

T = TypeVar("T")


@dataclass
class Env:
    info: ClusterInfo
    kubectl: str

    def kubectl_argv(self, *args: str) -> list[str]:
        return [self.kubectl, "--kubeconfig", self.info.kubeconfig, *args]


@pytest.fixture(scope="session")
def cluster_name() -> str:
    """The name of the cluster the tests run on (KUBELOOP_TEST_CLUSTER, else kubeloop)."""
    return CLUSTER


@pytest.fixture(scope="session")
async def cluster(cluster_name: str) -> ClusterInfo:
    info = await create_cluster(cluster_name, provider="native", quiet=True)
    await seed_base_image("python:3.11-slim", cluster_name, quiet=True)
    return info


@pytest.fixture(scope="session")
async def env(cluster: ClusterInfo) -> Env:
    bins = await ensure_binaries(quiet=True)
    return Env(cluster, str(bins["kubectl"]))


@pytest.fixture(scope="session")
async def docker_engine() -> None:
    await ensure_docker_engine(quiet=True)


@pytest.fixture
async def kube(cluster: ClusterInfo) -> AsyncIterator[Kube]:
    client = await Kube.connect(cluster.kubeconfig, cluster.context)
    yield client
    await client.close()


@pytest.fixture
async def namespace(kube: Kube) -> AsyncIterator[str]:
    """A fresh namespace per test, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    await ensure_namespace(kube, name)
    yield name
    await kube.delete({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                      grace_seconds=0)  # fmt: skip


async def enforce_baseline(kube: Kube, namespace: str) -> None:
    """Pod Security 'baseline' enforced on the namespace, as managed clusters do."""
    await kube.request(
        "PATCH", f"/api/v1/namespaces/{namespace}",
        body={"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "baseline"}}},
        content_type="application/merge-patch+json",
    )  # fmt: skip


async def kubectl(env: Env, *args: str, timeout: float = 60) -> str:
    return (await run(env.kubectl_argv(*args), timeout=timeout)).stdout


async def eventually(
    condition: Callable[[], T | Awaitable[T]], timeout: float = 15.0, interval: float = 0.1
) -> T:
    """Call ``condition`` (plain or async) until it returns a truthy value, and return
    that value. An exception (a failed assert, a refused connection) counts as "not yet";
    after ``timeout`` seconds the last one is raised again, or an AssertionError naming
    the last value. For what a test waits on: a new Service answering, a file synced."""
    last: list[T] = []
    error: list[BaseException] = []

    async def holds() -> bool:
        error.clear()
        try:
            value = condition()
            if inspect.isawaitable(value):
                value = await value
        except Exception as exc:
            error.append(exc)
            return False
        last[:] = [value]
        return bool(value)

    try:
        await wait_until(holds, timeout, interval, "a test condition")
    except WaitTimeout:
        if error:
            raise error[0] from None
        raise AssertionError(
            f"not true within {timeout:.0f}s; last value: {last[0] if last else None!r}"
        ) from None
    return last[0]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{DISRUPTIVE}: crashes, deletes or recreates the shared cluster; runs last"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
    # Disruptive tests last, in their own order: every other test may assume the cluster
    # has been healthy since the session started.
    items.sort(key=lambda item: item.get_closest_marker(DISRUPTIVE) is not None)
