"""The shared session fixture: create the native cluster, or reuse the running one.

Creating is idempotent (a healthy cluster is a fast no-op, a crashed one is repaired),
so the same fixture serves a cold CI machine and a developer's warm one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kubeloop.build import ensure_docker_engine
from kubeloop.cluster import ClusterInfo, create_cluster, seed_base_image
from kubeloop.cluster.native.binaries import ensure_binaries
from kubeloop.kube import Kube

CLUSTER = os.environ.get("KUBELOOP_TEST_CLUSTER", "kubeloop")
APPS = Path(__file__).parents[2] / "examples"


@dataclass
class Env:
    info: ClusterInfo
    kubectl: str

    def kubectl_argv(self, *args: str) -> list[str]:
        return [self.kubectl, "--kubeconfig", self.info.kubeconfig, *args]


@pytest.fixture(scope="session")
async def cluster() -> ClusterInfo:
    info = await create_cluster(CLUSTER, provider="native", quiet=True)
    await seed_base_image("python:3.11-slim", CLUSTER, quiet=True)
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
    from kubeloop.deploy.apply import ensure_namespace

    name = f"t-{uuid.uuid4().hex[:8]}"
    await ensure_namespace(kube, name)
    yield name
    await kube.delete({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                      grace_seconds=0)  # fmt: skip


async def kubectl(env: Env, *args: str, timeout: float = 60) -> str:
    from kubeloop.proc import run

    return (await run(env.kubectl_argv(*args), timeout=timeout)).stdout


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
