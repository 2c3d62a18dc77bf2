"""What every cluster provider offers, and the records of clusters kubeloop manages."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from kubeloop.errors import KubeloopError
from kubeloop.paths import config_dir


@dataclass
class ClusterInfo:
    """How to reach a cluster and its registry."""

    name: str
    provider: str
    kubeconfig: str  # path of a kubeconfig file holding ``context``
    context: str
    registry: str | None = None  # where builders push, e.g. "localhost:5000"
    registry_for_pods: str | None = None  # how pods name that registry (often the same)
    details: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


@dataclass
class ComponentStatus:
    name: str
    running: bool
    healthy: bool
    detail: str = ""


@dataclass
class ClusterStatus:
    info: ClusterInfo
    reachable: bool
    node_ready: bool
    components: list[ComponentStatus] = field(default_factory=list)
    message: str = ""

    @property
    def healthy(self) -> bool:
        return self.reachable and self.node_ready and all(c.healthy for c in self.components)


class Provider(Protocol):
    name: str

    async def create(self, name: str, quiet: bool = False) -> ClusterInfo: ...

    async def delete(self, info: ClusterInfo, quiet: bool = False) -> None: ...

    async def status(self, info: ClusterInfo) -> ClusterStatus: ...


def _records() -> Path:
    path = config_dir() / "clusters"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_record(info: ClusterInfo) -> None:
    target = _records() / f"{info.name}.json"
    temp = target.with_suffix(".tmp")
    temp.write_text(info.to_json())
    temp.replace(target)


def load_record(name: str) -> ClusterInfo | None:
    path = _records() / f"{name}.json"
    if not path.exists():
        return None
    try:
        return ClusterInfo(**json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise KubeloopError(f"the record of cluster '{name}' ({path}) is damaged: {exc}",
                            f"delete {path} and create the cluster again") from exc  # fmt: skip


def list_records() -> list[ClusterInfo]:
    """Every cluster kubeloop created or adopted, by name."""
    found = []
    for path in sorted(_records().glob("*.json")):
        record = load_record(path.stem)
        if record is not None:
            found.append(record)
    return found


def remove_record(name: str) -> None:
    (_records() / f"{name}.json").unlink(missing_ok=True)
