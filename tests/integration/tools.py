"""Developer tools some tests need, built from their Go modules through the module proxy
(no release download can be reached here) and cached in kubeloop's cache dir."""

from __future__ import annotations

import os
from pathlib import Path

from kubeloop.paths import cache_dir
from kubeloop.proc import run


async def go_tool(name: str, package: str, version: str) -> Path:
    """``go install package@version`` once; the path of the binary ``name``."""
    target = cache_dir() / "tools" / f"{name}-{version}"
    if not (target / name).exists():
        target.mkdir(parents=True, exist_ok=True)
        await run(["go", "install", f"{package}@{version}"],
                  env={**os.environ, "GOBIN": str(target), "CGO_ENABLED": "0",
                       "GOTOOLCHAIN": "local"}, timeout=1500)  # fmt: skip
    return target / name


async def ensure_helm() -> Path:
    return await go_tool("helm", "helm.sh/helm/v3/cmd/helm", "v3.19.5")


async def ensure_buildx() -> Path:
    return await go_tool("buildx", "github.com/docker/buildx/cmd/buildx", "v0.38.2")
