"""What a sync rule is and what kubeloop knows of its folder and of each pod."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubeloop.agent import AgentStream, Attached, RemoteEntry
from kubeloop.sync._local import Ignore, LocalEntry, scan

Op = tuple[str, str, int, Path | str | bytes | None]


@dataclass(frozen=True)
class SyncRule:
    local: Path
    remote: str
    excludes: tuple[str, ...] = ()
    restart: str = "none"  # none | process (SIGHUP to the supervisor) | container (SIGTERM)
    two_way: bool = False  # bring container-side changes back (see Syncer.pull)

    def remote_path(self, rel: str) -> str:
        return f"{self.remote.rstrip('/')}/{rel}" if rel else self.remote


@dataclass
class Batch:
    """What one change batch did."""

    paths: list[str]
    written: int
    deleted: int
    pods: int
    seconds: float


@dataclass
class PodSync:
    pod: str
    stream: AgentStream
    attached: Attached | None = None
    sent_files: int = 0


@dataclass
class RuleState:
    """What kubeloop knows of one rule's folder."""

    rule: SyncRule
    ignore: Ignore
    local: dict[str, LocalEntry] | None = None  # None until scanned
    # Two-way rules: the digest both sides agreed on last, per file.
    agreed: dict[str, str] = field(default_factory=dict)
    agreed_known: bool = False

    def scanned(self) -> dict[str, LocalEntry]:
        if self.local is None:
            self.local = scan(self.rule.local, self.ignore)
        return self.local

    def drop(self, rel: str, table: dict[str, Any]) -> None:
        """Forget rel and everything under it."""
        for known in [k for k in table if k == rel or k.startswith(rel + "/")]:
            del table[known]


def _op(rule: SyncRule, rel: str, entry: LocalEntry | None) -> Op:
    target = rule.remote_path(rel)
    if entry is None:
        return ("D", target, 0, None)
    if entry.kind == "D":
        return ("M", target, entry.mode, None)
    if entry.kind == "L":
        return ("L", target, 0, entry.digest)
    return ("W", target, entry.mode, rule.local / rel)


def _record_sent(state: RuleState, fresh: dict[str, LocalEntry], digests: dict[str, str]) -> None:
    for rel, entry in fresh.items():
        sent = digests.get(state.rule.remote_path(rel))
        if entry.kind == "F" and sent and sent != entry.digest:
            fresh[rel] = LocalEntry("F", entry.mode, sent)


def _within(rel: str, scope: set[str] | None) -> bool:
    return scope is None or any(rel == s or rel.startswith(s + "/") for s in scope)


def _same(local: LocalEntry, remote: RemoteEntry | None) -> bool:
    if remote is None or remote.kind != local.kind:
        return False
    if local.kind == "D":
        return True
    return remote.digest == local.digest and (local.kind == "L" or remote.mode == local.mode)


def _topmost(paths: Iterable[str]) -> list[str]:
    chosen: list[str] = []
    for rel in sorted(paths):
        if not any(rel.startswith(parent + "/") for parent in chosen):
            chosen.append(rel)
    return chosen
