"""The agent's version: a hash of its sources. Standard library only, so that the
wheel's build step (setup.py) computes the same version without kubeloop's dependencies."""

from __future__ import annotations

import hashlib
from pathlib import Path

SOURCE = Path(__file__).parent / "src"


def sources() -> list[Path]:
    return sorted(p for p in SOURCE.iterdir()
                  if p.name in ("go.mod", "go.sum") or (p.suffix == ".go"
                                                        and not p.name.endswith("_test.go")))  # fmt: skip


def source_version() -> str:
    """An edited agent gets a new version: it is rebuilt and re-pushed."""
    digest = hashlib.sha256()
    for path in sources():
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def packaged_name(version: str, arch: str) -> str:
    """The file name of a prebuilt agent inside the wheel (kubeloop/agent/bin/)."""
    return f"kubeloop-agent-{version}-linux-{arch}"
