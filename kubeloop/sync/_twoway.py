"""Two-way rules: what the app writes in the container comes back, without trusting the
container (see _localfs.py). The agent's inotify reports say what changed; where it
cannot watch, a full listing is polled."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path

from kubeloop.agent import AgentError, AgentStream, RemoteEntry, WatchReport
from kubeloop.sync import _localfs
from kubeloop.sync._local import LocalEntry
from kubeloop.sync._state import PodSync, RuleState, _topmost, _within

MAX_PULL = 256 << 20  # the largest file two-way sync brings back
# Entries of a change scope that are signals, not paths (a path never holds NUL).
WATCH_RESYNC = "\0resync"  # events were lost: list the whole folder again
WATCH_ENDED = "\0ended"  # the watch ended (folder replaced, out of watches)


class TwoWay:
    """The pulling half of a Syncer: its rules' states, the pod to read from, and where
    to report."""

    def __init__(self, states: list[RuleState], source: Callable[[], PodSync | None],
                 on_event: Callable[[str], None], poll_remote: bool = False) -> None:  # fmt: skip
        self.states = states
        self._source = source
        self.on_event = on_event
        # Follow the agent's change reports (inotify); True polls a full listing every
        # pull interval instead (also the fallback where the agent cannot watch).
        self.poll_remote = poll_remote

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
        for index, state in enumerate(self.states):
            scope = None if changed is None else changed.get(index)
            if not state.rule.two_way or (changed is not None and not scope):
                continue
            if scope is not None and WATCH_RESYNC in scope:
                scope = None
            remote = (await source.stream.listing(state.rule.remote) if scope is None else
                      await source.stream.listing_of(state.rule.remote, _topmost(scope)))  # fmt: skip
            events += await self._pull_rule(source.stream, state, remote, scope)
        for event in events:
            self.on_event(f"sync: {event}")
        return events

    async def _pull_rule(self, stream: AgentStream, state: RuleState,
                         remote: dict[str, RemoteEntry], scope: set[str] | None) -> list[str]:  # fmt: skip
        events: list[str] = []
        for rel, entry in sorted(remote.items()):
            if entry.kind != "F" or state.agreed.get(rel) == entry.digest:
                continue
            try:  # a name the local file system cannot hold (too long...) is an OSError
                if state.ignore.excluded(state.rule.local / rel, False):
                    continue
                events += await self._pull_file(stream, state, rel, entry)
            except OSError as exc:
                events.append(f"not pulled {rel}: {exc.strerror or exc}")
        gone = [r for r in state.agreed if r not in remote and _within(r, scope)]
        for rel in gone:
            try:
                removed = _localfs.remove_if_unchanged(state.rule.local, rel, state.agreed[rel])
            except OSError as exc:
                events.append(f"not removed {rel}: {exc.strerror or exc}")
                removed = False
            if removed:
                state.scanned().pop(rel, None)
                events.append(f"removed {rel}: deleted in the container")
                self._remove_emptied_folders(state, rel, remote, scope)
            del state.agreed[rel]
        return events

    async def _pull_file(self, stream: AgentStream, state: RuleState, rel: str,
                         entry: RemoteEntry) -> list[str]:  # fmt: skip
        root = state.rule.local
        # The disk, not the cached state, says whether the local copy changed: an edit
        # saved a moment ago may not have reached the watcher yet.
        with _localfs.parent_of(root, rel, create=True) as (dirfd, name):
            local = _localfs.digest_at(dirfd, name)
        agreed = state.agreed.get(rel)
        if local == entry.digest:
            state.agreed[rel] = entry.digest  # both sides made the same change
            return []
        try:
            data = await stream.read(state.rule.remote_path(rel), MAX_PULL)
        except AgentError:
            return []  # gone again since the listing: its deletion is reported next
        digest = hashlib.sha256(data).hexdigest()  # what arrived, changed or not since
        mode = entry.mode & 0o777
        if local is not None and local != agreed:
            conflict = _localfs.save_conflict(root, rel, data, mode)
            state.agreed[rel] = digest  # reported once, not on every look
            return [f"conflict: {rel} changed on both sides; the container's version is in "
                    f"{conflict}, yours is unchanged"]  # fmt: skip
        if not _localfs.replace_if_unchanged(root, rel, data, mode, local):
            conflict = _localfs.save_conflict(root, rel, data, mode)
            state.agreed[rel] = digest
            return [f"conflict: {rel} was saved locally while the container's version "
                    f"arrived; that is in {conflict}, yours is unchanged"]  # fmt: skip
        state.scanned()[rel] = LocalEntry("F", mode, digest)  # so it is not echoed back
        state.agreed[rel] = digest
        return [f"pulled {rel} from the container"]

    def _remove_emptied_folders(self, state: RuleState, rel: str,
                                remote: dict[str, RemoteEntry], scope: set[str] | None) -> None:  # fmt: skip
        """Folders the container removed go locally too, once nothing is left in them."""
        for parent in Path(rel).parents:
            folder = parent.as_posix()
            if folder == "." or folder in remote or not _within(folder, scope):
                return
            if not _localfs.remove_empty_folder(state.rule.local, folder):
                return  # something is left in it
            state.scanned().pop(folder, None)

    async def remote_changes(self, watch: Watch | None, interval: float
                              ) -> tuple[dict[int, set[str]] | None, Watch | None]:  # fmt: skip
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
            fresh = Watch(source.stream)
            try:
                for index, state in enumerate(self.states):
                    if state.rule.two_way:
                        await source.stream.watch(state.rule.remote, fresh.callback(index))
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


class Watch:
    """Change reports from the agent on one stream, tagged with their rule."""

    def __init__(self, stream: AgentStream) -> None:
        self.stream = stream
        self.queue: asyncio.Queue[tuple[int, set[str]]] = asyncio.Queue()

    def callback(self, index: int) -> Callable[[WatchReport], None]:
        def on_report(report: WatchReport) -> None:
            paths = set(report.paths)
            if report.resync:
                paths.add(WATCH_RESYNC)
            if report.ended:
                paths.add(WATCH_ENDED)
            self.queue.put_nowait((index, paths))

        return on_report
