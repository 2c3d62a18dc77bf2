"""Where kubeloop keeps things: caches (safe to delete) and state (owned by clusters)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from kubeloop.errors import KubeloopError


def cache_dir() -> Path:
    """Heavy reusable artefacts (compiled binaries, base image root filesystems).

    ``KUBELOOP_CACHE_DIR`` overrides; the default is the user cache directory, never
    the repository.
    """
    override = os.environ.get("KUBELOOP_CACHE_DIR")
    path = Path(override) if override else Path(platformdirs.user_cache_dir("kubeloop"))
    return _ensure(path, "KUBELOOP_CACHE_DIR")


def _ensure(path: Path, variable: str) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KubeloopError(f"cannot create {path}: {exc.strerror}",
                            f"make it writable, or point {variable} elsewhere") from exc  # fmt: skip
    return path


def config_dir() -> Path:
    """Per-user records of the clusters kubeloop created or adopted."""
    override = os.environ.get("KUBELOOP_CONFIG_DIR")
    path = Path(override) if override else Path(platformdirs.user_config_dir("kubeloop"))
    return _ensure(path, "KUBELOOP_CONFIG_DIR")


def default_kubeconfig() -> Path:
    first = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    return Path(first) if first else Path.home() / ".kube" / "config"
