"""Build a project's artifacts: content tags, skip what the registry has, build the rest
in parallel with docker, buildah or podman, stream their output, push."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kubeloop.build.docker import BuildResult, builder_env, content_tag, ensure_bases_in_docker
from kubeloop.build.engine import ensure_docker_engine
from kubeloop.config import Artifact, LoadedConfig
from kubeloop.errors import KubeloopError
from kubeloop.images.registry import manifest_exists
from kubeloop.paths import cache_dir
from kubeloop.proc import run, run_streaming

OnLine = Callable[[str, str], None]  # (artifact image, output line)


@dataclass(frozen=True)
class Built:
    artifact: Artifact
    result: BuildResult
    seconds: float


def repository_for(project: str, image: str) -> str:
    return f"{project}/{image}"


def _build_argv(artifact: Artifact, context: Path, image: str) -> list[str]:
    dockerfile = str(context / artifact.dockerfile)
    args = [f"--build-arg={k}={v}" for k, v in artifact.build_args.items()]
    if artifact.target:
        args += ["--target", artifact.target]
    if artifact.builder == "docker":
        return ["docker", "build", "-f", dockerfile, "-t", image, *args, str(context)]
    # buildah and podman: Docker Hub names resolve to the cluster registry via the
    # registries.conf kubeloop writes (see _registries_conf), like the cluster does.
    tool = artifact.builder
    verb = ["bud"] if tool == "buildah" else ["build"]
    return [tool, *verb, "--layers", "-f", dockerfile, "-t", image, *args, str(context)]


def _push_argv(artifact: Artifact, image: str) -> list[str]:
    if artifact.builder == "docker":
        return ["docker", "push", "-q", image]
    return [artifact.builder, "push", "--tls-verify=false", image]


def _registries_conf(registry: str) -> Path:

    path = cache_dir() / "registries.conf"
    path.write_text(
        'unqualified-search-registries = ["docker.io"]\n'
        f'[[registry]]\nprefix = "docker.io"\nlocation = "{registry}"\ninsecure = true\n'
        f'[[registry]]\nlocation = "{registry}"\ninsecure = true\n'
    )
    return path


async def build_artifact(
    config: LoadedConfig, artifact: Artifact, registry: str, on_line: OnLine
) -> Built:
    loop = asyncio.get_running_loop()
    started = loop.time()
    context = (config.root / artifact.context).resolve()
    if not (context / artifact.dockerfile).exists():
        raise KubeloopError(f"artifact '{artifact.image}': no {artifact.dockerfile} in {context}",
                            "fix 'context' or 'dockerfile' in kubeloop.yaml")  # fmt: skip
    if artifact.builder != "cluster" and shutil.which(artifact.builder) is None:
        raise KubeloopError(f"artifact '{artifact.image}' uses the {artifact.builder} builder, "
                            f"which is not installed",
                            f"install {artifact.builder}, or set builder: in kubeloop.yaml")  # fmt: skip
    image, tag = _reference(config, artifact, registry)
    if await manifest_exists(image):
        return Built(artifact, BuildResult(image, tag, built=False), loop.time() - started)
    if artifact.builder == "cluster":
        from kubeloop.build.cluster import build_in_cluster, cluster_of_registry, pod_registry

        cluster = cluster_of_registry(registry)
        await build_in_cluster(cluster, context, pod_registry(cluster, image), artifact.dockerfile,
                               artifact.build_args, lambda line: on_line(artifact.image, line),
                               target=artifact.target)  # fmt: skip
        return Built(artifact, BuildResult(image, tag, built=True), loop.time() - started)
    if artifact.builder == "docker":
        await ensure_docker_engine(quiet=True)
        await ensure_bases_in_docker(context / artifact.dockerfile, registry)
    env = {**os.environ, **builder_env()}
    if artifact.builder != "docker":
        env["CONTAINERS_REGISTRIES_CONF"] = str(_registries_conf(registry))
    await run_streaming(_build_argv(artifact, context, image),
                        lambda line: on_line(artifact.image, line), env=env)  # fmt: skip
    await run(_push_argv(artifact, image), env=env, timeout=900)
    return Built(artifact, BuildResult(image, tag, built=True), loop.time() - started)


async def build_all(
    config: LoadedConfig,
    registry: str,
    only: set[str] | None = None,
    on_line: OnLine = lambda _i, _l: None,
) -> list[Built]:
    """Build (in parallel) every artifact, or those named in ``only``."""
    artifacts = [a for a in config.project.artifacts if only is None or a.image in only]
    return list(await asyncio.gather(*(build_artifact(config, a, registry, on_line)
                                       for a in artifacts)))  # fmt: skip


def _reference(config: LoadedConfig, artifact: Artifact, registry: str) -> tuple[str, str]:
    """(reference, tag) for the artifact's current sources: the tag hashes the context,
    the Dockerfile's name, the build arguments and the target stage."""
    context = (config.root / artifact.context).resolve()
    recipe = artifact.dockerfile + repr(sorted(artifact.build_args.items()))
    if artifact.target:  # (without one, the tags of before targets existed stay valid)
        recipe += f" --target {artifact.target}"
    tag = content_tag(context, recipe)
    return f"{registry}/{repository_for(config.project.name, artifact.image)}:{tag}", tag


async def reference_of(config: LoadedConfig, artifact: Artifact, registry: str) -> str:
    """The reference an artifact has for its current sources (built or not)."""
    return _reference(config, artifact, registry)[0]
