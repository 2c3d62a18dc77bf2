"""Adding and removing kubeloop's entries in the user's kubeconfig, touching nothing else."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from kubeloop.errors import KubeloopError

try:
    from yaml import CSafeLoader as Loader
except ImportError:  # pragma: no cover - PyYAML without libyaml
    from yaml import SafeLoader as Loader  # type: ignore[assignment]


def _load(path: Path) -> dict[str, Any]:
    if not path.exists() or not path.read_text().strip():
        return {"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [], "contexts": []}
    try:
        data = yaml.load(path.read_text(), Loader=Loader)
    except yaml.YAMLError as exc:
        raise KubeloopError(f"{path} is not valid YAML: {exc}",
                            f"repair {path}; kubeloop will not overwrite it") from exc  # fmt: skip
    if not isinstance(data, dict):
        raise KubeloopError(f"{path} is not a kubeconfig", f"repair or move {path}")
    return data


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".kubeconfig-")
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump(data, handle, default_flow_style=False)
    os.chmod(temp, 0o600)
    os.replace(temp, path)


def _upsert(items: list[dict[str, Any]], entry: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in items if i.get("name") != entry["name"]] + [entry]


def merge(path: Path, source: dict[str, Any], switch: bool = True) -> None:
    """Add the cluster, user and context of a one-context kubeconfig ``source``."""
    data = _load(path)
    for key in ("clusters", "users", "contexts"):
        current = data.get(key) or []
        for entry in source.get(key) or []:
            current = _upsert(current, entry)
        data[key] = current
    if switch or not data.get("current-context"):
        data["current-context"] = source["current-context"]
    _write(path, data)


def remove(path: Path, context: str) -> None:
    """Remove ``context`` and the cluster and user it names, if kubeloop added them."""
    if not path.exists():
        return
    data = _load(path)
    entry = next((c for c in data.get("contexts") or [] if c.get("name") == context), None)
    if entry is None:
        return
    cluster = entry.get("context", {}).get("cluster")
    user = entry.get("context", {}).get("user")
    data["contexts"] = [c for c in data.get("contexts") or [] if c.get("name") != context]
    data["clusters"] = [c for c in data.get("clusters") or [] if c.get("name") != cluster]
    data["users"] = [u for u in data.get("users") or [] if u.get("name") != user]
    if data.get("current-context") == context:
        data["current-context"] = ""
    _write(path, data)


def server_of(path: Path, context: str | None = None) -> str | None:
    """The API server address ``context`` (default: the current one) names, if any."""
    try:
        data = _load(path)
        name = context or data["current-context"]
        entry = next(c["context"] for c in data["contexts"] if c["name"] == name)
        return str(next(c["cluster"]["server"] for c in data["clusters"]
                        if c["name"] == entry["cluster"]))  # fmt: skip
    except (OSError, KubeloopError, KeyError, TypeError, StopIteration):
        return None


def contexts(path: Path) -> list[str]:
    return [c.get("name", "") for c in _load(path).get("contexts") or []]
