"""Keep container paths equal to local folders, in every pod a selector picks.

One agent stream per container; a change batch is computed from content hashes (only
what differs is sent) and sent to all pods at once; new pods are found and brought up to
date; a dropped or stalled stream is re-opened and resynced. Two-way rules bring what the
app writes back, without trusting the container (see _localfs.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from watchfiles import awatch

from kubeloop.agent import (
    APP,
    ROOT,
    AgentError,
    AgentStream,
    cluster_agent_image,
    ensure_agent,
    node_arch,
    open_stream,
)
from kubeloop.cluster import ClusterInfo
from kubeloop.core import Obj
from kubeloop.errors import KubeloopError
from kubeloop.kube import Kube
from kubeloop.sync._local import Ignore, LocalEntry, entry_of, scan, walk
from kubeloop.sync._state import (
    Batch,
    Op,
    PodSync,
    RuleState,
    SyncRule,
    _op,
    _record_sent,
    _same,
    _topmost,
)
from kubeloop.sync._twoway import TwoWay, Watch

SIGHUP, SIGTERM = 1, 15
SMALL_FILE = 1 << 20  # read, hash and send in one go; larger files are streamed


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
    states: list[RuleState] = field(default_factory=list)
    _images: dict[str, str] = field(default_factory=dict)  # by architecture
    twoway: TwoWay = field(init=False)

    def __post_init__(self) -> None:
        if not self.states:
            self.states = [RuleState(r, Ignore(r.local, list(r.excludes))) for r in self.rules]
        # on_event may be replaced later: the pulling half reports through this one.
        self.twoway = TwoWay(self.states, self._source, lambda text: self.on_event(text),
                             self.poll_remote)  # fmt: skip

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

    async def _agent_image(self, pod: Obj) -> str:
        arch = await node_arch(self.kube, pod)
        if arch not in self._images:
            self._images[arch] = await cluster_agent_image(self.cluster, arch)
        return self._images[arch]

    async def attach(self, pod: Obj) -> PodSync:
        """Attach an agent to the pod with the app's own rights; where those do not
        reach the destination, with a root agent if the cluster allows one."""
        name = pod["metadata"]["name"]
        try:
            return await self._attach_as(pod, APP)
        except AgentError as exc:
            if not _denied(exc.message):
                raise
            self.on_event(f"sync: {name}: the app's own user cannot do it ({exc.message}); "
                          "trying a root agent with SYS_PTRACE")  # fmt: skip
        return await self._attach_as(pod, ROOT)

    async def _attach_as(self, pod: Obj, profile: str) -> PodSync:
        name = pod["metadata"]["name"]
        image = await self._agent_image(pod)
        attached = await ensure_agent(self.kube, self.namespace, name, self.container, image,
                                      profile)  # fmt: skip
        try:
            stream = await open_stream(self.cluster, self.namespace, attached)
        except KubeloopError as exc:
            raise AgentError(exc.message) from exc
        stream.on_warning = lambda text: self.on_event(f"sync: {name}: {text}")
        synced = PodSync(name, stream, attached)
        try:
            restart = set()
            for state in self.states:
                await stream.bind(state.rule.remote)
                sent = await self._initial(stream, state)
                synced.sent_files += sent
                if sent and state.rule.restart != "none":
                    restart.add(state.rule.restart)
            # The app started from the image's files: restart the process if we just
            # replaced some. Never the container here: unless dest is a volume its restart
            # loses the files again, and the next attach would restart it again, forever.
            if "process" in restart:
                await stream.signal(SIGHUP)
        except BaseException:
            await stream.close()
            raise
        self.pods[name] = synced
        self.on_event(f"sync: {name} up to date ({synced.sent_files} files sent)")
        return synced

    async def _initial(self, stream: AgentStream, state: RuleState) -> int:
        """Send only what differs between the local folder and the container. The first
        time, the local walk feeds the stream directly: each file is read once, hashed
        and sent from the same bytes, and sending starts before the walk ends."""
        rule = state.rule
        remote = await stream.listing(rule.remote)
        known = state.local
        fresh: dict[str, LocalEntry] = {}
        sent_files = 0

        def ops() -> Iterator[Op]:
            nonlocal sent_files
            entries = (((r, e, None) for r, e in known.items()) if known is not None
                       else walk(rule.local, state.ignore, keep_data=SMALL_FILE))  # fmt: skip
            for rel, entry, data in entries:
                fresh[rel] = entry
                if not _same(entry, remote.get(rel)):
                    sent_files += entry.kind == "F"
                    if data is not None:
                        yield ("W", rule.remote_path(rel), entry.mode, data)
                    else:
                        yield _op(rule, rel, entry)
            for rel in _topmost(r for r in remote if r not in fresh):
                if not state.ignore.excluded(rule.local / rel, remote[rel].kind == "D"):
                    yield ("D", rule.remote_path(rel), 0, None)

        sent = await stream.send_many(ops())
        _record_sent(state, fresh, sent.digests)
        state.local = fresh
        await stream.wait_all(sent, f"initial sync of {rule.local}")
        if rule.two_way and not state.agreed_known:
            state.agreed = {r: e.digest for r, e in fresh.items() if e.kind == "F"}
            state.agreed_known = True
        return sent_files

    # --- changes -------------------------------------------------------------------------

    def changes(self, paths: set[str]) -> list[tuple[int, str, LocalEntry | None]]:
        """(rule, relative path, new entry or None for deleted) for what really changed."""
        result: list[tuple[int, str, LocalEntry | None]] = []
        for index, state in enumerate(self.states):
            rule, local, ignore = state.rule, state.scanned(), state.ignore
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
                    if rel in local:
                        state.drop(rel, local)
                        result.append((index, rel, None))
                    continue
                if local.get(rel) != entry:
                    local[rel] = entry
                    result.append((index, rel, entry))
                    if entry.kind == "D":  # a new or moved-in folder: its content too
                        for child_rel, child in scan(path, Ignore(path, [])).items():
                            full = f"{rel}/{child_rel}"
                            if not ignore.excluded(rule.local / full, child.kind == "D"):
                                local[full] = child
                                result.append((index, full, child))
        return result

    async def push(self, paths: set[str]) -> Batch | None:
        started = time.perf_counter()
        todo = self.changes(paths)
        if not todo:
            return None
        ops = [_op(self.states[index].rule, rel, entry) for index, rel, entry in todo]
        restart = {self.states[index].rule.restart for index, _, _ in todo} - {"none"}
        digests: dict[str, str] = {}

        async def to_pod(synced: PodSync) -> None:
            sent = await synced.stream.send_many(ops)
            digests.update(sent.digests)
            await synced.stream.wait_all(sent, f"sync to {synced.pod}")
            if "container" in restart:
                await synced.stream.signal(SIGTERM)  # the container restarts; resync follows
            elif "process" in restart:
                await synced.stream.signal(SIGHUP)

        pods = list(self.pods.values())
        results = await asyncio.gather(*(to_pod(p) for p in pods), return_exceptions=True)
        for synced, outcome in zip(pods, results, strict=True):
            if isinstance(outcome, BaseException):
                self.on_event(f"sync: {synced.pod}: {outcome}; will resync")
                await synced.stream.close()
        self._settle(todo, digests)
        batch = Batch(sorted(p for _, p, _ in todo), sum(e is not None for _, _, e in todo),
                      sum(e is None for _, _, e in todo), len(pods),
                      time.perf_counter() - started)  # fmt: skip
        self.on_batch(batch)
        return batch

    def _settle(self, todo: list[tuple[int, str, LocalEntry | None]],
                digests: dict[str, str]) -> None:  # fmt: skip
        """Record what both sides now hold: the digest of the bytes that went out (a file
        saved again while it was read went out as read; its next change follows)."""
        for index, rel, entry in todo:
            state = self.states[index]
            sent = digests.get(state.rule.remote_path(rel))
            if entry is not None and entry.kind == "F" and sent and sent != entry.digest:
                entry = LocalEntry("F", entry.mode, sent)
                state.scanned()[rel] = entry
            if not state.rule.two_way:
                continue
            if entry is None:  # a deleted folder takes what was in it along
                state.drop(rel, state.agreed)
            elif entry.kind == "F":
                state.agreed[rel] = entry.digest

    # --- two-way --------------------------------------------------------------------------

    async def pull(self, changed: dict[int, set[str]] | None = None) -> list[str]:
        """Bring changes made in the container back, for two-way rules (see TwoWay.pull)."""
        return await self.twoway.pull(changed)

    def _source(self) -> PodSync | None:
        """The pod two-way rules read from: replicas share one source of truth."""
        return next(iter(self.pods.values()), None)

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

        stop = stop or asyncio.Event()
        await self.refresh_pods()

        async def watch_pods() -> None:
            while not stop.is_set():
                await asyncio.sleep(pod_interval)
                with contextlib.suppress(KubeloopError):
                    await self.refresh_pods()

        async def pull_loop() -> None:
            watch: Watch | None = None
            while not stop.is_set():
                try:
                    changed, watch = await self.twoway.remote_changes(watch, pull_interval)
                    await self.pull(changed)
                except Exception as exc:  # two-way sync must not die silently
                    self.on_event(f"sync: bringing changes back failed: "
                                  f"{exc.message if isinstance(exc, KubeloopError) else repr(exc)}")  # fmt: skip
                    # A live source stream keeps its watch: watching again would only
                    # re-target the agent's existing one.
                    watch = watch if watch is not None and watch.stream.alive else None
                    await asyncio.sleep(pull_interval)

        async def push_loop() -> None:
            async for changes in awatch(*(s.rule.local for s in self.states), debounce=5,
                                        step=5, stop_event=stop, recursive=True):  # fmt: skip
                await self.push({path for _change, path in changes})

        try:
            async with asyncio.TaskGroup() as group:
                helpers = [group.create_task(watch_pods())]
                if any(s.rule.two_way for s in self.states):
                    helpers.append(group.create_task(pull_loop()))
                await push_loop()
                for task in helpers:  # stopped: they may be in a long wait
                    task.cancel()
        finally:
            for synced in self.pods.values():
                await synced.stream.close()


def _denied(message: str) -> bool:
    lowered = message.lower()
    return "permission denied" in lowered or "operation not permitted" in lowered
