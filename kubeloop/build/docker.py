"""Build with Docker and push to the cluster's registry, tagged by content."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from kubeloop.errors import KubeloopError
from kubeloop.ignore import DockerIgnore
from kubeloop.images.registry import manifest_exists
from kubeloop.images.seed import is_docker_hub_name, registry_reference
from kubeloop.proc import run


@dataclass(frozen=True)
class BuildResult:
    image: str  # full reference with tag, as pods should use it
    tag: str
    built: bool  # False when the content tag was already in the registry


def content_tag(context: Path, dockerfile: str = "Dockerfile") -> str:
    """A tag from the bytes ``docker build`` would send (the context, as its
    .dockerignore filters it, and the Dockerfile): same sources, same tag."""
    ignore = DockerIgnore.from_context(context)
    digest = hashlib.sha256()
    for folder, dirs, files in os.walk(context):
        base = Path(folder).relative_to(context).as_posix()
        base = "" if base == "." else base + "/"
        dirs.sort()
        if ignore and not ignore.has_exclusions:  # nothing below an excluded folder counts
            dirs[:] = [d for d in dirs if not ignore.excluded(base + d)]
        for name in sorted(files):
            relative = base + name
            path = Path(folder, name)
            if ignore.excluded(relative) or not path.is_file():
                continue
            digest.update(relative.encode() + b"\0" + oct(path.stat().st_mode & 0o111).encode())
            digest.update(path.read_bytes())
    # Docker reads the Dockerfile even when .dockerignore leaves it out of the context.
    digest.update(dockerfile.encode())
    with contextlib.suppress(OSError):
        digest.update((context / dockerfile).read_bytes())
    return "kl-" + digest.hexdigest()[:16]


def has_buildx() -> bool:
    """Whether the docker CLI finds its buildx plugin, where the CLI itself looks."""
    config = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    folders = [config / "cli-plugins"] + [
        Path(prefix) / "docker/cli-plugins"
        for prefix in ("/usr/local/lib", "/usr/local/libexec", "/usr/lib", "/usr/libexec")
    ]
    return any((folder / "docker-buildx").exists() for folder in folders)


def builder_env() -> dict[str, str]:
    """Environment for ``docker build``: BuildKit when the buildx plugin exists, else the
    classic builder (the CLI defaults to BuildKit and fails without the plugin, as on
    Debian 12)."""
    return {"DOCKER_CLI_HINTS": "false"} | ({} if has_buildx() else {"DOCKER_BUILDKIT": "0"})


def base_images(dockerfile: Path) -> list[str]:
    """Images named in FROM lines, without build stages and scratch."""
    stages: set[str] = set()
    images: list[str] = []
    for line in dockerfile.read_text().splitlines():
        parts = line.split()
        if len(parts) < 2 or parts[0].upper() != "FROM":
            continue
        words = [w for w in parts[1:] if not w.startswith("--")]
        if not words:
            continue
        image = words[0]
        if len(words) >= 3 and words[1].upper() == "AS":
            stages.add(words[2].lower())
        if image.lower() not in stages and image != "scratch" and "$" not in image:
            images.append(image)
    return images


async def ensure_bases_in_docker(dockerfile: Path, registry: str) -> None:
    """Give the local Docker engine the Dockerfile's Docker Hub base images from the
    cluster registry (where 'kubeloop cluster seed-image' put them), so a build works
    offline even when the engine started after the seeding."""

    for image in base_images(dockerfile):
        if not is_docker_hub_name(image):
            continue
        if (await run(["docker", "image", "inspect", image], check=False)).returncode == 0:
            continue
        mirrored = registry_reference(image, registry)
        if await manifest_exists(mirrored):
            await run(["docker", "pull", "-q", mirrored], timeout=600)
            await run(["docker", "tag", mirrored, image])


async def build_and_push(
    context: Path, repository: str, registry: str, dockerfile: str = "Dockerfile"
) -> BuildResult:
    """Build ``context`` as ``registry/repository:<content tag>`` and push it."""
    if shutil.which("docker") is None:
        raise KubeloopError("the docker builder needs the docker CLI", "install docker")
    if not (context / dockerfile).exists():
        raise KubeloopError(
            f"no {dockerfile} in {context}", "add one, or point at the right context"
        )
    tag = content_tag(context, dockerfile)
    image = f"{registry}/{repository}:{tag}"

    if await manifest_exists(image):
        return BuildResult(image, tag, built=False)
    env = builder_env()
    await ensure_bases_in_docker(context / dockerfile, registry)
    await run(["docker", "build", "-q", "-f", str(context / dockerfile), "-t", image, str(context)],
              env={**os.environ, **env}, timeout=1800)  # fmt: skip
    await run(["docker", "push", "-q", image], timeout=900)
    return BuildResult(image, tag, built=True)
