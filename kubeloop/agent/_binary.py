"""The agent binary (built from ``src/`` with Go, static, for the node's architecture) and
the image that carries it into pods (pushed once per agent version and architecture)."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import platform
import shutil
from pathlib import Path

from kubeloop.errors import KubeloopError
from kubeloop.images.registry import ImageConfig, manifest_exists, push_files
from kubeloop.paths import cache_dir
from kubeloop.proc import run

SOURCE = Path(__file__).parent / "src"
_build_lock: asyncio.Lock | None = None


def _sources() -> list[Path]:
    return sorted(p for p in SOURCE.iterdir()
                  if p.name in ("go.mod", "go.sum") or (p.suffix == ".go"
                                                        and not p.name.endswith("_test.go")))  # fmt: skip


@functools.cache
def agent_version() -> str:
    """The hash of the agent's sources: an edited agent is rebuilt and re-pushed."""
    digest = hashlib.sha256()
    for path in _sources():
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def go_arch(machine: str | None = None) -> str:
    machine = machine or platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


async def agent_binary(arch: str | None = None) -> Path:
    """The static agent for linux/``arch`` (default: this machine's), built when the cache
    does not hold this version yet."""
    global _build_lock
    arch = arch or go_arch()
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
        raise KubeloopError("kubeloop's agent must be built once, but Go is not installed",
                            "install Go 1.24 or newer (https://go.dev/dl)")  # fmt: skip
    work = target.parent / "src"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for path in _sources():
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
