"""``builder: cluster`` on the real cluster: a rootless BuildKit pod builds both examples
(the add service and a multi-stage Go service with build args) with no Docker engine,
buildah or podman on PATH, pushes to the cluster's registry, and the deployments answer.
Also: cache reuse and incremental context, a failing Dockerfile step, admission
refusing the builder, and the builder pod replaced in the middle of a build."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubeloop.build.cluster import NAME, build_in_cluster, ensure_builder
from kubeloop.cluster import ClusterInfo, seed_base_image
from kubeloop.devloop import open_session
from kubeloop.errors import KubeloopError
from kubeloop.kube import Kube
from tests.integration.conftest import enforce_baseline, eventually
from tests.integration.test_core_loop import (
    NEW_SERVICE_SECONDS,
    copy_example,
    get_json,
    service_url,
)

ENGINES = ("docker", "dockerd", "buildah", "podman")


@pytest.fixture(scope="module", autouse=True)
def no_container_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """PATH holds every command of the real one but the container engines."""
    folder = tmp_path_factory.mktemp("bin")
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            target = folder / entry.name
            if entry.name in ENGINES or target.exists() or not os.access(entry.path, os.X_OK):
                continue
            target.symlink_to(entry.path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", str(folder))
        assert all(shutil.which(engine) is None for engine in ENGINES)
        yield


@pytest.fixture(scope="module", autouse=True)
async def builder_ready(no_container_engine: None, cluster: ClusterInfo, cluster_name: str) -> None:
    """The cold work, outside the tests' time limit (a fixture's time is not counted): the
    base images seeded, BuildKit compiled (minutes on a cold 2-core machine), the builder
    image pushed and its pod running."""
    for base in ("golang:1.19", "debian:bookworm-slim"):
        await seed_base_image(base, cluster_name, quiet=True)
    kube = await Kube.connect(cluster.kubeconfig, cluster.context)
    try:
        await ensure_builder(cluster, kube, quiet=True)
    finally:
        await kube.close()


def in_cluster(folder: Path, image: str) -> None:
    config = folder / "kubeloop.yaml"
    text = config.read_text()
    if "builder: cluster" not in text:
        text = text.replace(f"  - image: {image}\n", f"  - image: {image}\n    builder: cluster\n")
    config.write_text(text)
    assert "builder: cluster" in config.read_text()


def reference(cluster: ClusterInfo, name: str) -> str:
    return f"{cluster.registry}/kl-test-build/{name}"


async def test_both_examples_build_in_the_cluster_and_answer(
    tmp_path: Path, namespace: str, kube: Kube, cluster: ClusterInfo, cluster_name: str
) -> None:
    for name, image in (("add", "add"), ("goservice", "goservice")):
        folder = copy_example(name, tmp_path, namespace)
        in_cluster(folder, image)
        # A file of its own: a new content tag, so the build runs (its steps may be cached).
        (folder / "build-id.txt").write_text(namespace)
        session = await open_session(folder / "kubeloop.yaml", cluster=cluster_name)
        try:
            timings = await session.build()
            assert timings.built == [image]
            # What the builder pushed is found by its content tag: no second build.
            assert (await session.build()).built == []
            await session.deploy(quiet=True)
        finally:
            await session.close()
    add = await service_url(kube, namespace, "add")
    assert (await eventually(lambda: get_json(f"{add}/add/2/3"), NEW_SERVICE_SECONDS))["sum"] == 5
    go = await service_url(kube, namespace, "goservice")
    square = await eventually(lambda: get_json(f"{go}/square/7"), NEW_SERVICE_SECONDS)
    assert square == {"square": 49}
    hello = await get_json(f"{go}/")
    # The build args of kubeloop.yaml reached the first stage's go build.
    assert hello["version"] == "1.0.0"
    assert hello["greeting"] == "hello from the cluster"


async def test_rebuild_reuses_the_cache_and_sends_only_what_changed(
    tmp_path: Path, namespace: str, cluster: ClusterInfo
) -> None:
    folder = copy_example("add", tmp_path, namespace)
    (folder / "app" / "data.bin").write_bytes(os.urandom(2_000_000))
    server = folder / "app" / "server.py"
    server.write_text(server.read_text() + f"\n# {namespace} 1\n")
    first = await build_in_cluster(cluster, folder, f"{reference(cluster, 'add')}:{namespace}-1")
    assert first.context_bytes > 2_000_000
    server.write_text(server.read_text() + f"\n# {namespace} 2\n")
    lines: list[str] = []
    second = await build_in_cluster(cluster, folder, f"{reference(cluster, 'add')}:{namespace}-2",
                                    on_line=lines.append)  # fmt: skip
    # The second build reports its cached steps: all but the COPY of the changed folder.
    assert any(step.startswith("[2/5] RUN apt-get") for step in second.cached_steps)
    assert not any("COPY app/" in step for step in second.cached_steps)
    assert any(line.endswith(" CACHED") for line in lines)
    assert second.context_bytes < 100_000, second  # one changed file, not the 2 MB again


async def test_a_failing_step_is_named_with_its_output(
    tmp_path: Path, cluster: ClusterInfo
) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM python:3.11-slim\nRUN echo preparing-the-step && echo it-broke >&2 && exit 3\n"
    )
    with pytest.raises(KubeloopError) as failed:
        await build_in_cluster(cluster, tmp_path, f"{reference(cluster, 'broken')}:x")
    message = str(failed.value)
    assert "RUN echo preparing-the-step" in message
    assert "exit code: 3" in message
    assert "it-broke" in message  # the step's own output
    assert "Dockerfile" in (failed.value.hint or "")


async def test_admission_refusing_the_builder_is_explained(
    namespace: str, kube: Kube, cluster: ClusterInfo
) -> None:
    await enforce_baseline(kube, namespace)
    with pytest.raises(KubeloopError) as refused:
        await ensure_builder(cluster, kube, namespace)
    assert f"refused the in-cluster builder's pod in namespace {namespace}" in str(refused.value)
    assert "baseline" in str(refused.value)  # the cluster's own reason
    assert "Unconfined" in (refused.value.hint or "")
    assert await kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{NAME}") is None


async def test_builder_replaced_mid_build_is_reported_and_the_next_build_works(
    tmp_path: Path, namespace: str, kube: Kube, cluster: ClusterInfo, cluster_name: str
) -> None:
    # A builder of its own (in the test's namespace): the shared one keeps its cache.
    await seed_base_image("debian:bookworm-slim", cluster_name, quiet=True)
    (tmp_path / "Dockerfile").write_text(
        f"FROM debian:bookworm-slim\nRUN echo {namespace} && sleep 60\n"
    )
    started = asyncio.Event()

    def watch(line: str) -> None:
        if f"RUN echo {namespace}" in line:
            started.set()

    build = asyncio.create_task(
        build_in_cluster(
            cluster,
            tmp_path,
            f"{reference(cluster, 'slow')}:{namespace}",
            on_line=watch,
            namespace=namespace,
        )
    )
    await asyncio.wait_for(started.wait(), 120)
    builder = await ensure_builder(cluster, kube, namespace)
    await kube.delete({"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": builder.pod, "namespace": namespace}},
                      grace_seconds=0)  # fmt: skip
    with pytest.raises(KubeloopError) as failed:
        await asyncio.wait_for(build, 120)
    assert f"builder (pod {builder.pod}) restarted during the build" in str(failed.value)
    (tmp_path / "Dockerfile").write_text(f"FROM debian:bookworm-slim\nRUN echo {namespace}\n")
    again = await build_in_cluster(cluster, tmp_path, f"{reference(cluster, 'slow')}:again",
                                   namespace=namespace)  # fmt: skip
    assert again.reference.endswith(":again")
