"""The agent binary (built from ``src/`` with Go, static, for the node's architecture) and
the image that carries it into pods (pushed once per agent version and architecture)."""

from __future__ import annotations

import asyncio
import functools
import os
import platform
import shutil
from pathlib import Path

from kubeloop.agent._version import packaged_name, source_version, sources
from kubeloop.errors import KubeloopError
from kubeloop.images.registry import ImageConfig, manifest_exists, push_files
from kubeloop.paths import cache_dir
from kubeloop.proc import run

_build_lock: asyncio.Lock | None = None
PACKAGED = Path(__file__).parent / "bin"  # prebuilt agents, in a wheel (see setup.py)


@functools.cache
def agent_version() -> str:
    return source_version()


def go_arch(machine: str | None = None) -> str:
    machine = machine or platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


async def agent_binary(arch: str | None = None) -> Path:
    """The static agent for linux/``arch`` (default: this machine's), built when the cache
    does not hold this version yet."""
    global _build_lock
    arch = arch or go_arch()
    packaged = PACKAGED / packaged_name(agent_version(), arch)
    if packaged.is_file():  # an installed wheel: no Go needed
        return packaged
    target = cache_dir() / "agent" / f"{agent_version()}-{arch}" / "kubeloop-agent"
    if target.exists():
        return target
    _build_lock = _build_lock or asyncio.Lock()
    async with _build_lock:
        if not target.exists():
            await _build(arch, target)
    return target


async def _build(arch: str, target: Path) -> None:
    go = shutil.which("go")
    if go is None:
        raise KubeloopError(f"kubeloop's agent for linux/{arch} must be built once, but Go "
                            "is not installed",
                            "install kubeloop from its wheel (it carries the agents for "
                            "amd64 and arm64), or install Go 1.24 or newer")  # fmt: skip
    work = target.parent / "src"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for path in sources():
        shutil.copy(path, work / path.name)
    # Pinned: the pod's platform, not the developer's (a Mac builds a Linux agent).
    env = {**os.environ, "CGO_ENABLED": "0", "GOOS": "linux", "GOARCH": arch,
           "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod -buildvcs=false"}  # fmt: skip
    out = target.with_name(".kubeloop-agent.partial")
    await run([go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(out), "."],
              env=env, cwd=work, timeout=900)  # fmt: skip
    out.replace(target)


async def ensure_agent_image(registry: str, registry_for_pods: str | None = None,
                             arch: str | None = None) -> str:  # fmt: skip
    """Push the agent image (once per version and architecture); return the reference
    pods use."""
    arch = arch or go_arch()
    tag = f"{agent_version()}-{arch}"
    push_ref = f"{registry}/kubeloop/agent:{tag}"
    if not await manifest_exists(push_ref):
        binary = await agent_binary(arch)
        await push_files(push_ref, {"kubeloop-agent": (binary.read_bytes(), 0o755)},
                         ImageConfig(entrypoint=["/kubeloop-agent"], cmd=["idle"],
                                     architecture=arch))  # fmt: skip
    return f"{registry_for_pods or registry}/kubeloop/agent:{tag}"
