"""Keep container paths equal to local folders, in every pod a selector picks.

One agent stream per container; a change batch is computed from content hashes (only
what differs is sent) and sent to all pods at once; new pods are found and brought up to
date; a dropped stream is re-opened and resynced."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubeloop.cluster import ClusterInfo
from kubeloop.errors import KubeloopError
from kubeloop.kube import Kube
from kubeloop.sync.attach import ensure_agent, ensure_agent_image, open_stream
from kubeloop.sync.local import Ignore, LocalEntry, entry_of, scan, walk
from kubeloop.sync.protocol import (
    WATCH_ENDED,
    WATCH_RESYNC,
    AgentError,
    AgentStream,
    RemoteEntry,
)

Obj = dict[str, Any]
SIGHUP, SIGTERM = 1, 15
SMALL_FILE = 1 << 20  # read, hash and send in one go; larger files are streamed
Future = asyncio.Future[tuple[str, bytes]]


@dataclass(frozen=True)
class SyncRule:
    local: Path
    remote: str
    excludes: tuple[str, ...] = ()
    restart: str = "none"  # none | process (SIGHUP to the supervisor) | container (SIGTERM)
    two_way: bool = False  # bring container-side changes back (see Syncer.pull)


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
    sent_files: int = 0


@dataclass
class Syncer:
    kube: Kube
    cluster: ClusterInfo
    namespace: str
    selector: str
    rules: list[SyncRule]
    container: str | None = None
    # Two-way rules follow the agent's change reports (inotify); True polls a full
    # listing every pull interval instead (also the fallback where the agent cannot watch).
    poll_remote: bool = False
    on_event: Callable[[str], None] = lambda _: None
    on_batch: Callable[[Batch], None] = lambda _: None
    pods: dict[str, PodSync] = field(default_factory=dict)
    _state: dict[int, dict[str, LocalEntry]] = field(default_factory=dict)
    _ignores: dict[int, Ignore] = field(default_factory=dict)
    _image: str | None = None
    # Two-way rules: the digest both sides agreed on last, per path (None: absent).
    _agreed: dict[int, dict[str, str]] = field(default_factory=dict)

    def _remote(self, rule: SyncRule, rel: str) -> str:
        return f"{rule.remote.rstrip('/')}/{rel}" if rel else rule.remote

    # --- attaching -----------------------------------------------------------------------

    async def running_pods(self) -> list[Obj]:
        listing = await self.kube.request("GET", f"/api/v1/namespaces/{self.namespace}/pods",
                                          params={"labelSelector": self.selector})  # fmt: skip
        found = []
        for pod in listing.get("items", []):
            if pod["metadata"].get("deletionTimestamp"):
                continue
            target = self.container or pod["spec"]["containers"][0]["name"]
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                if status["name"] == target and (status.get("state") or {}).get("running"):
                    found.append(pod)
        return found

    async def attach(self, pod: Obj) -> PodSync:
        name = pod["metadata"]["name"]
        target = self.container or pod["spec"]["containers"][0]["name"]
        if self._image is None:
            self._image = await ensure_agent_image(self.cluster)
        agent = await ensure_agent(self.kube, self.namespace, name, target, self._image)
        stream = await open_stream(self.cluster, self.namespace, name, agent)
        synced = PodSync(name, stream)
        restart = set()
        for index, rule in enumerate(self.rules):
            sent = await self._initial(stream, index, rule)
            synced.sent_files += sent
            if sent and rule.restart != "none":
                restart.add(rule.restart)
        # The app started from the image's files: restart the process if we just replaced
        # some. Never the container here: unless dest is a volume its restart loses the
        # files again, and the next attach would restart it again, forever.
        if "process" in restart:
            await stream.signal(SIGHUP)
        self.pods[name] = synced
        self.on_event(f"sync: {name} up to date ({synced.sent_files} files sent)")
        return synced

    def _local(self, index: int, rule: SyncRule) -> dict[str, LocalEntry]:
        if index not in self._state:
            self._ignores[index] = Ignore(rule.local, list(rule.excludes))
            self._state[index] = scan(rule.local, self._ignores[index])
        return self._state[index]

    async def _initial(self, stream: AgentStream, index: int, rule: SyncRule) -> int:
        """Send only what differs between the local folder and the container. The first
        time, the local walk feeds the stream directly: each file is read once, hashed
        and sent from the same bytes, and sending starts before the walk ends."""
        remote = await stream.listing(rule.remote)
        ignore = self._ignores.setdefault(index, Ignore(rule.local, list(rule.excludes)))
        known = self._state.get(index)
        state: dict[str, LocalEntry] = {}
        sent = 0

        def ops() -> Iterator[tuple[str, str, int, Path | str | bytes | None]]:
            nonlocal sent
            yield ("M", rule.remote, 0o755, None)
            entries = (((r, e, None) for r, e in known.items()) if known is not None
                       else walk(rule.local, ignore, keep_data=SMALL_FILE))  # fmt: skip
            for rel, entry, data in entries:
                state[rel] = entry
                if not _same(entry, remote.get(rel)):
                    sent += entry.kind == "F"
                    if data is not None:
                        yield ("W", self._remote(rule, rel), entry.mode, data)
                    else:
                        yield self._op(rule, rel, entry)
            for rel in _topmost(r for r in remote if r not in state):
                if not ignore.excluded(rule.local / rel, remote[rel].kind == "D"):
                    yield ("D", self._remote(rule, rel), 0, None)

        futures = await stream.send_many(ops())
        self._state[index] = state
        await stream.wait_all(futures, f"initial sync of {rule.local}")
        if rule.two_way and index not in self._agreed:
            self._agreed[index] = {r: e.digest for r, e in state.items() if e.kind == "F"}
        return sent

    def _op(
        self, rule: SyncRule, rel: str, entry: LocalEntry | None
    ) -> tuple[str, str, int, Path | str | bytes | None]:
        target = self._remote(rule, rel)
        if entry is None:
            return ("D", target, 0, None)
        if entry.kind == "D":
            return ("M", target, entry.mode, None)
        if entry.kind == "L":
            return ("L", target, 0, entry.digest)
        return ("W", target, entry.mode, rule.local / rel)

    # --- changes -------------------------------------------------------------------------

    def changes(self, paths: set[str]) -> list[tuple[int, str, LocalEntry | None]]:
        """(rule, relative path, new entry or None for deleted) for what really changed."""
        result: list[tuple[int, str, LocalEntry | None]] = []
        for index, rule in enumerate(self.rules):
            state = self._local(index, rule)
            ignore = self._ignores[index]
            for raw in sorted(paths):
                path = Path(raw)
                if path != rule.local and rule.local not in path.parents:
                    continue
                if path.name == ".gitignore":
                    ignore.forget(path.parent)
                entry = entry_of(path)
                rel = path.relative_to(rule.local).as_posix()
                if entry is not None and ignore.excluded(path, entry.kind == "D"):
                    continue
                if entry is None:
                    if rel in state:
                        for known in [k for k in state if k == rel or k.startswith(rel + "/")]:
                            del state[known]
                        result.append((index, rel, None))
                    continue
                if state.get(rel) != entry:
                    state[rel] = entry
                    result.append((index, rel, entry))
                    if entry.kind == "D":  # a new or moved-in folder: its content too
                        for child_rel, child in scan(path, Ignore(path, [])).items():
                            full = f"{rel}/{child_rel}"
                            if not ignore.excluded(rule.local / full, child.kind == "D"):
                                state[full] = child
                                result.append((index, full, child))
        return result

    async def push(self, paths: set[str]) -> Batch | None:
        started = time.perf_counter()
        todo = self.changes(paths)
        if not todo:
            return None

        ops = [self._op(self.rules[index], rel, entry) for index, rel, entry in todo]

        async def to_pod(synced: PodSync) -> None:
            futures = await synced.stream.send_many(ops)
            await synced.stream.wait_all(futures, f"sync to {synced.pod}")

        restart = {self.rules[index].restart for index, _, _ in todo} - {"none"}

        async def to_pod_and_restart(synced: PodSync) -> None:
            await to_pod(synced)
            if "container" in restart:
                await synced.stream.signal(SIGTERM)  # the container restarts; resync follows
            elif "process" in restart:
                await synced.stream.signal(SIGHUP)

        results = await asyncio.gather(*(to_pod_and_restart(p) for p in self.pods.values()),
                                       return_exceptions=True)  # fmt: skip
        for synced, outcome in zip(list(self.pods.values()), results, strict=True):
            if isinstance(outcome, BaseException):
                self.on_event(f"sync: {synced.pod}: {outcome}; will resync")
                await synced.stream.close()
        for index, rel, entry in todo:  # what both sides now hold
            if self.rules[index].two_way:
                agreed = self._agreed.setdefault(index, {})
                if entry is None:  # a deleted folder takes what was in it along
                    for known in [k for k in agreed if k == rel or k.startswith(rel + "/")]:
                        del agreed[known]
                elif entry.kind == "F":
                    agreed[rel] = entry.digest
        batch = Batch(sorted(p for _, p, _ in todo), sum(e is not None for _, _, e in todo),
                      sum(e is None for _, _, e in todo), len(self.pods),
                      time.perf_counter() - started)  # fmt: skip
        self.on_batch(batch)
        return batch

    # --- two-way --------------------------------------------------------------------------

    async def pull(self, changed: dict[int, set[str]] | None = None) -> list[str]:
        """Bring changes made in the container back, for two-way rules. A file changed on
        both sides since they last agreed is not overwritten: the container's version is
        saved beside it as NAME.remote-conflict and the conflict is reported.

        ``changed`` names, per rule, the paths the agent saw change; only those are
        looked at. Without it, or with WATCH_RESYNC for a rule, the whole folder is listed."""
        source = self._source()
        if source is None:
            return []
        events: list[str] = []
        for index, rule in enumerate(self.rules):
            scope = None if changed is None else changed.get(index)
            if not rule.two_way or (changed is not None and not scope):
                continue
            if scope is not None and WATCH_RESYNC in scope:
                scope = None
            if scope is None:
                remote = await source.stream.listing(rule.remote)
            else:
                remote = await source.stream.listing_of(rule.remote, _topmost(scope))
            events += await self._pull_rule(source.stream, index, rule, remote, scope)
        for event in events:
            self.on_event(f"sync: {event}")
        return events

    def _source(self) -> PodSync | None:
        """The pod two-way rules read from: replicas share one source of truth."""
        return next(iter(self.pods.values()), None)

    async def _pull_rule(self, stream: AgentStream, index: int, rule: SyncRule,
                         remote: dict[str, RemoteEntry], scope: set[str] | None) -> list[str]:  # fmt: skip
        events: list[str] = []
        agreed = self._agreed.setdefault(index, {})
        state = self._local(index, rule)
        ignore = self._ignores[index]
        for rel, entry in sorted(remote.items()):
            if entry.kind != "F" or agreed.get(rel) == entry.digest:
                continue
            if ignore.excluded(rule.local / rel, False):
                continue
            target = rule.local / rel
            # The disk, not the cached state, says whether the local copy changed: an
            # edit saved a moment ago may not have reached the watcher yet.
            local = entry_of(target)
            local_digest = local.digest if local and local.kind == "F" else None
            try:
                data = await stream.read(self._remote(rule, rel))
            except AgentError:
                continue  # gone again since the listing: its deletion is reported next
            if local_digest is not None and local_digest != agreed.get(rel):
                if local_digest == entry.digest:
                    agreed[rel] = entry.digest  # both sides made the same change
                    continue
                conflict = target.with_name(target.name + ".remote-conflict")
                _write_atomic(conflict, data, entry.mode)
                events.append(f"conflict: {rel} changed on both sides; the container's "
                              f"version is in {conflict.name}, yours is unchanged")  # fmt: skip
                agreed[rel] = entry.digest  # reported once, not on every poll
                continue
            _write_atomic(target, data, entry.mode)
            state[rel] = LocalEntry("F", entry.mode, entry.digest)  # so it is not echoed back
            agreed[rel] = entry.digest
            events.append(f"pulled {rel} from the container")
        gone = [r for r in agreed if r not in remote and _within(r, scope)]
        for rel in gone:
            local = entry_of(rule.local / rel)
            if local is not None and local.kind == "F" and local.digest == agreed[rel]:
                (rule.local / rel).unlink(missing_ok=True)
                state.pop(rel, None)
                events.append(f"removed {rel}: deleted in the container")
                self._remove_emptied_folders(index, rule, rel, remote, scope)
            del agreed[rel]
        return events

    def _remove_emptied_folders(self, index: int, rule: SyncRule, rel: str,
                                remote: dict[str, RemoteEntry], scope: set[str] | None) -> None:  # fmt: skip
        """Folders the container removed go locally too, once nothing is left in them."""
        for parent in Path(rel).parents:
            folder = parent.as_posix()
            if folder == "." or folder in remote or not _within(folder, scope):
                return
            try:
                (rule.local / folder).rmdir()  # fails, and stops here, if anything is left
            except OSError:
                return
            self._state[index].pop(folder, None)

    async def _remote_changes(self, watch: _Watch | None, interval: float
                              ) -> tuple[dict[int, set[str]] | None, _Watch | None]:  # fmt: skip
        """The next container-side changes for :meth:`pull`: ``None`` asks for a full
        look. The agent's inotify reports drive it; a new source stream (first pod,
        reconnect, rollout) is watched afresh and fully listed once, since what changed
        before its watch is unknown. Where the agent cannot watch, it polls."""
        source = self._source()
        if source is None:
            await asyncio.sleep(interval)
            return {}, watch
        if watch is None or watch.stream is not source.stream:
            if self.poll_remote:
                await asyncio.sleep(interval)
                return None, None
            fresh = _Watch(source.stream)
            try:
                for index, rule in enumerate(self.rules):
                    if rule.two_way:
                        await source.stream.watch(rule.remote, fresh.callback(index))
            except AgentError as exc:
                self.poll_remote = True
                self.on_event(f"sync: the agent in {source.pod} cannot watch for changes "
                              f"({exc.message}); polling every {interval:g} s instead")  # fmt: skip
                return None, None
            return None, fresh
        try:
            index, paths = await asyncio.wait_for(watch.queue.get(), timeout=interval)
        except TimeoutError:
            return {}, watch  # nothing changed; look again at which pod is the source
        changed = {index: set(paths)}
        while not watch.queue.empty():
            index, paths = watch.queue.get_nowait()
            changed.setdefault(index, set()).update(paths)
        if any(WATCH_ENDED in p for p in changed.values()):
            # The folder was replaced or the node ran out of watches: look at everything
            # and watch afresh (which falls back to polling if it cannot).
            return None, None
        return changed, watch

    # --- running -------------------------------------------------------------------------

    async def refresh_pods(self) -> None:
        """Attach to new pods, forget gone ones, re-open dropped streams."""
        current = {p["metadata"]["name"]: p for p in await self.running_pods()}
        for name in list(self.pods):
            synced = self.pods[name]
            if name not in current or not synced.stream.alive:
                await synced.stream.close()
                del self.pods[name]
        for name, pod in current.items():
            if name not in self.pods:
                try:
                    await self.attach(pod)
                except KubeloopError as exc:
                    self.on_event(f"sync: cannot attach to {name} yet: {exc.message}")

    async def run(self, stop: asyncio.Event | None = None, pod_interval: float = 0.5,
                  pull_interval: float = 1.0) -> None:  # fmt: skip
        from watchfiles import awatch

        stop = stop or asyncio.Event()
        await self.refresh_pods()

        async def watch_pods() -> None:
            while not stop.is_set():
                await asyncio.sleep(pod_interval)
                with contextlib.suppress(KubeloopError):
                    await self.refresh_pods()

        async def pull_loop() -> None:
            watch: _Watch | None = None
            while not stop.is_set():
                try:
                    changed, watch = await self._remote_changes(watch, pull_interval)
                    await self.pull(changed)
                except Exception as exc:  # two-way sync must not die silently
                    if not isinstance(exc, KubeloopError):
                        self.on_event(f"sync: bringing changes back failed: {exc!r}")
                    # A live source stream keeps its watch: watching again would only
                    # re-target the agent's existing one.
                    watch = watch if watch is not None and watch.stream.alive else None
                    await asyncio.sleep(pull_interval)

        pods_task = asyncio.create_task(watch_pods())
        pull_task = (asyncio.create_task(pull_loop())
                     if any(r.two_way for r in self.rules) else None)  # fmt: skip
        try:
            async for changes in awatch(*(r.local for r in self.rules), debounce=5, step=5,
                                        stop_event=stop, recursive=True):  # fmt: skip
                await self.push({path for _change, path in changes})
        finally:
            for task in (pods_task, pull_task):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            for synced in self.pods.values():
                await synced.stream.close()


class _Watch:
    """Change reports from the agent on one stream, tagged with their rule."""

    def __init__(self, stream: AgentStream) -> None:
        self.stream = stream
        self.queue: asyncio.Queue[tuple[int, set[str]]] = asyncio.Queue()

    def callback(self, index: int) -> Callable[[set[str]], None]:
        return lambda paths: self.queue.put_nowait((index, paths))


def _within(rel: str, scope: set[str] | None) -> bool:
    return scope is None or any(rel == s or rel.startswith(s + "/") for s in scope)


def _write_atomic(target: Path, data: bytes, mode: int) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.kubeloop-tmp")
    temp.write_bytes(data)
    temp.chmod(mode)
    temp.replace(target)


def _same(local: LocalEntry, remote: RemoteEntry | None) -> bool:
    if remote is None or remote.kind != local.kind:
        return False
    if local.kind == "D":
        return True
    return remote.digest == local.digest and (local.kind == "L" or remote.mode == local.mode)


def _topmost(paths: Any) -> list[str]:
    chosen: list[str] = []
    for rel in sorted(paths):
        if not any(rel.startswith(parent + "/") for parent in chosen):
            chosen.append(rel)
    return chosen
