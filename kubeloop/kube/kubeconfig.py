"""Reading kubeconfig files: fast lookups for every command, never a write (editing the
user's kubeconfig is kubeloop.cluster.kubeconfig's job)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kubeloop.errors import KubeloopError

try:
    from yaml import CSafeLoader as Loader
except ImportError:  # pragma: no cover - PyYAML without libyaml
    from yaml import SafeLoader as Loader  # type: ignore[assignment]


def read(path: Path) -> dict[str, Any]:
    """The kubeconfig at ``path`` as plain data (an empty one when the file is absent).
    Its values are whatever YAML holds: the file is the user's."""
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


def server_of(path: Path, context: str | None = None) -> str | None:
    """The API server address ``context`` (default: the current one) names, if any."""
    try:
        data = read(path)
        name = context or data["current-context"]
        entry = next(c["context"] for c in data["contexts"] if c["name"] == name)
        return str(next(c["cluster"]["server"] for c in data["clusters"]
                        if c["name"] == entry["cluster"]))  # fmt: skip
    except (OSError, KubeloopError, KeyError, TypeError, StopIteration):
        return None


def contexts(path: Path) -> list[str]:
    return [c.get("name", "") for c in read(path).get("contexts") or []]
