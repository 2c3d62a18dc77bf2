"""One long-lived stream to one agent (``kubectl exec -i … kubeloop-agent serve``).

Requests carry an id and are pipelined: callers may send many before awaiting replies,
which arrive tagged with the same id. Every awaited reply has a time limit: an agent that
stops answering gets its stream closed (the syncer then re-opens it and syncs again)
instead of hanging kubeloop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import struct
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kubeloop.agent._channel import Channel
from kubeloop.agent._wire import (
    CHUNK,
    HEADER,
    MAX_FRAME,
    MAX_REPLY,
    PROTOCOL,
    RemoteEntry,
    WireError,
    frame,
    parse_listing,
    parse_report,
    string,
)
from kubeloop.errors import KubeloopError

HIGH_WATER = 4 << 20  # bytes framed before handing them to the pipe
LANE_TOKEN = 32
REPLY_TIMEOUT = 30.0  # seconds for a reply, plus time for the bytes in flight
BYTES_PER_SECOND = 10 << 20  # the slowest transfer rate a healthy stream is allowed

Reply = tuple[str, bytes]
Op = tuple[str, str, int, Path | str | bytes | None]


class AgentError(KubeloopError):
    pass


@dataclass(frozen=True)
class WatchReport:
    """What the agent saw change under a watched folder."""

    paths: set[str]
    resync: bool = False  # events were lost: list the whole folder again
    ended: bool = False  # the watch stopped (folder replaced, out of watches)


@dataclass
class Sent:
    """Futures of a batch of operations, and the digest of each file's bytes actually
    sent (a file saved again while it was being read is recorded as what went out)."""

    futures: list[asyncio.Future[Reply]]
    digests: dict[str, str]
    size: int = 0


class AgentStream:
    """Operations are coroutines returning on the agent's reply."""

    def __init__(self, process: asyncio.subprocess.Process, name: str,
                 reply_timeout: float = REPLY_TIMEOUT) -> None:  # fmt: skip
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self.name = name
        self.reply_timeout = reply_timeout
        self.on_warning: Callable[[str], None] = lambda _: None
        self._writer = process.stdin
        self._reader = process.stdout
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self._partial: dict[int, list[bytes]] = {}
        self._partial_size: dict[int, int] = {}
        self._limits: dict[int, int] = {}
        self._watches: dict[int, Callable[[WatchReport], None]] = {}
        self._channels: dict[int, Channel] = {}
        # A connection the agent took for a stolen port: (channel, port, peer address).
        self.on_accept: Callable[[Channel, int, str], None] | None = None
        self._lock = asyncio.Lock()
        self._broken: str | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=5)
        self._stderr_task: asyncio.Task[None] | None = None
        self._lane: asyncio.subprocess.Process | None = None  # its port-forward
        self._replies = asyncio.create_task(self._read_replies(self._reader))

    def start_stderr_drain(self) -> None:
        """Keep the agent's last error lines (for messages) and its pipe empty."""
        if self.process.stderr is not None and self._stderr_task is None:
            self._stderr_task = asyncio.create_task(self._drain_stderr(self.process.stderr))

    async def _drain_stderr(self, stderr: asyncio.StreamReader) -> None:
        while line := await stderr.readline():
            self._stderr.append(line.decode(errors="replace").strip()[:300])

    @property
    def transport(self) -> str:
        """``lane`` (a port-forwarded connection, see open_lane) or ``exec``."""
        return "lane" if self._lane is not None else "exec"

    @property
    def alive(self) -> bool:
        return self.process.returncode is None and not self._replies.done()

    # --- replies --------------------------------------------------------------------

    async def _read_replies(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                op_byte, ident, length = HEADER.unpack(await reader.readexactly(9))
                if length > MAX_FRAME:
                    raise WireError(f"a reply of {length} bytes (at most {MAX_FRAME} allowed)")
                body = await reader.readexactly(length) if length else b""
                self._dispatch(chr(op_byte), ident, body)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except WireError as exc:
            self._broken = str(exc)
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        finally:
            if reader is self._reader:  # not when the frames moved to the data lane
                self._ended()

    def _ended(self) -> None:
        """The stream's frames stopped: every waiter learns why."""
        for channel in list(self._channels.values()):
            channel.abort()
        why = self._broken or "closed" + (f": {self._stderr[-1]}" if self._stderr else "")
        for future in self._pending.values():
            if not future.done():
                future.set_exception(AgentError(f"the stream to {self.name} {why}"))
        self._pending.clear()

    def _dispatch(self, op: str, ident: int, body: bytes) -> None:
        if op in ("d", "x", "k", "Z"):
            channel = self._channels.get(ident)
            if channel is not None:
                channel.feed(op, body)
            return
        if op == "a":
            self._accepted(ident, body)
            return
        if op == "C":
            callback = self._watches.get(ident)
            if callback is not None:
                paths, resync, ended, refused = parse_report(body)
                for name in refused:
                    self.on_warning(f"ignored a change report for {name!r}: not a valid path")
                callback(WatchReport(paths, resync, ended))
            return
        if op in ("h", "f"):  # a part of a long reply
            if ident not in self._pending:
                return  # nobody asked (or it timed out): not kept
            parts = self._partial.setdefault(ident, [])
            parts.append(body)
            self._partial_size[ident] = self._partial_size.get(ident, 0) + len(body)
            if self._partial_size[ident] > self._limits.get(ident, MAX_REPLY):
                raise WireError(f"a reply longer than the {self._limits.get(ident)} bytes asked")
            return
        if ident in self._partial:
            body = b"".join(self._partial.pop(ident)) + body
            self._partial_size.pop(ident, None)
        self._limits.pop(ident, None)
        future = self._pending.pop(ident, None)
        if future is not None and not future.done():
            future.set_result((op, body))

    async def _result(self, future: asyncio.Future[Reply], what: str,
                      timeout: float | None = None) -> bytes:  # fmt: skip
        limit = timeout if timeout is not None else self.reply_timeout
        try:
            op, body = await asyncio.wait_for(asyncio.shield(future), limit)
        except TimeoutError:
            await self.abort()
            raise AgentError(
                f"{what}: no answer from the agent in {self.name} within {limit:.0f}s; "
                "the stream was closed (kubeloop opens it again and syncs what differs)"
            ) from None
        if op == "E":
            raise AgentError(f"{what}: {body.decode(errors='replace')}")
        return body

    # --- requests -------------------------------------------------------------------

    def _new_id(self, limit: int | None = None) -> tuple[int, asyncio.Future[Reply]]:
        self._next_id = (self._next_id + 1) & 0xFFFFFFFF or 1
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = future
        if limit is not None:
            self._limits[self._next_id] = limit
        return self._next_id, future

    def _check_alive(self) -> None:
        if not self.alive:
            raise AgentError(f"the stream to {self.name} is closed"
                             + (f" ({self._broken})" if self._broken else ""))  # fmt: skip

    async def _request(self, op: str, body: bytes = b"", limit: int | None = None,
                       later: Callable[[WatchReport], None] | None = None
                       ) -> asyncio.Future[Reply]:  # fmt: skip
        self._check_alive()
        async with self._lock:
            ident, future = self._new_id(limit)
            if later is not None:
                self._watches[ident] = later
            self._writer.write(frame(op, ident, body))
            await self._writer.drain()
        return future

    # --- connections --------------------------------------------------------------------

    async def _send_frame(self, op: str, ident: int, body: bytes) -> None:
        self._check_alive()
        async with self._lock:
            self._writer.write(frame(op, ident, body))
            await self._writer.drain()

    def _channel(self, ident: int) -> Channel:
        channel = Channel(ident, self._send_frame, self._forget_channel)
        self._channels[ident] = channel
        return channel

    def _forget_channel(self, ident: int) -> None:
        self._channels.pop(ident, None)

    def _accepted(self, ident: int, body: bytes) -> None:
        if len(body) < 4 or ident in self._channels:
            raise WireError("a malformed connection announcement")
        port = struct.unpack(">H", body[:2])[0]
        (length,) = struct.unpack(">H", body[2:4])
        peer = body[4 : 4 + length].decode(errors="replace")
        channel = self._channel(ident)
        if self.on_accept is None:
            asyncio.get_running_loop().create_task(channel.reset())
            return
        self.on_accept(channel, port, peer)

    async def dial(self, address: str, timeout: float = 15) -> Channel:
        """A TCP connection made from the pod's network namespace to ``address``
        (host:port; the host is resolved in the pod)."""
        self._check_alive()
        async with self._lock:
            ident, future = self._new_id()
            # Registered before the request goes out: the far end may speak first, and
            # its data can follow the agent's answer at once.
            channel = self._channel(ident)
            self._writer.write(frame("T", ident, string(address.encode())))
            await self._writer.drain()
        try:
            await self._result(future, f"connect to {address} from the pod", timeout)
        except BaseException:
            self._channels.pop(ident, None)
            raise
        return channel

    async def steal(self, port: int, node_ip: str | None, mode: str = "steal",
                    header: str = "", value: str = "") -> None:  # fmt: skip
        """Take new connections to ``port`` in the pod (from anywhere but the node) for
        as long as this stream lives and pings; they arrive through ``on_accept``. In
        ``personal`` mode only the HTTP requests whose ``header`` is ``value`` come;
        in ``swap`` mode the agent replaced the app and listens on the port itself."""
        node = bytes(int(part) for part in node_ip.split(".")) if node_ip else bytes(4)
        body = (
            struct.pack(">H", port)
            + node
            + b"".join(string(s.encode()) for s in (mode, header, value))
        )
        await self._result(await self._request("I", body), f"take port {port}")

    async def dns(self, query: bytes) -> bytes:
        """Ask the pod's resolver (a DNS message in, the answer out)."""
        return await self._result(await self._request("U", query), "DNS query", 8)

    async def resolv_conf(self) -> str:
        body = await self._result(await self._request("Q"), "resolver settings")
        return body.decode(errors="replace")

    async def hello(self) -> None:
        """Check that the far end speaks this protocol (an older agent does not)."""
        body = await self._result(await self._request("V"), "hello", timeout=60)
        if body.decode(errors="replace") != PROTOCOL:
            raise AgentError(f"the agent in {self.name} speaks {body[:40]!r}, not {PROTOCOL}")

    async def bind(self, dest: str) -> None:
        """Declare a destination folder; every path of a later request lies under one."""
        await self._result(await self._request("B", string(dest)), f"prepare {dest}")

    async def send_many(self, ops: Iterable[Op]) -> Sent:
        """Queue many operations at once: ``(op, path, mode, source)`` where op is 'W'
        (source: a local file, or its content), 'M' (mkdir), 'L' (source: link target)
        or 'D'. ``ops`` may be a generator: frames go out while it still produces.

        Each file is read once and framed from the bytes read, so a file that grows or
        changes meanwhile cannot put the stream out of step. Small files are framed in one
        synchronous pass (per-frame awaits cost more than the agent needs to write them);
        large ones are streamed in chunks. A file gone before it was read is skipped (its
        deletion arrives as a change of its own)."""
        sent = Sent([], {})
        buffer = bytearray()
        async with self._lock:
            for op, path, mode, source in ops:
                self._check_alive()
                head = string(path)
                if op == "W" and isinstance(source, bytes):
                    ident, future = self._new_id()
                    buffer += frame("W", ident, head + struct.pack(">I", mode) + source)
                    sent.digests[path] = hashlib.sha256(source).hexdigest()
                    sent.size += len(source)
                elif op == "W" and isinstance(source, Path):
                    try:
                        handle = source.open("rb")
                    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                        continue
                    with handle:
                        first = handle.read(CHUNK + 1)
                        ident, future = self._new_id()
                        digest = hashlib.sha256(first)
                        if len(first) <= CHUNK:
                            buffer += frame("W", ident, head + struct.pack(">I", mode) + first)
                            sent.size += len(first)
                        else:
                            buffer += frame("O", ident, head + struct.pack(">I", mode))
                            chunk = first
                            while chunk:
                                for start in range(0, len(chunk), CHUNK):
                                    buffer += frame("w", ident, chunk[start : start + CHUNK])
                                sent.size += len(chunk)
                                if len(buffer) > HIGH_WATER:
                                    self._writer.write(bytes(buffer))
                                    buffer.clear()
                                    await self._writer.drain()
                                chunk = handle.read(CHUNK)
                                digest.update(chunk)
                            buffer += frame("c", ident)
                        sent.digests[path] = digest.hexdigest()
                elif op == "M":
                    ident, future = self._new_id()
                    buffer += frame("M", ident, head + struct.pack(">I", mode))
                elif op == "L":
                    ident, future = self._new_id()
                    buffer += frame("L", ident, head + string(str(source)))
                elif op == "D":
                    ident, future = self._new_id()
                    buffer += frame("D", ident, head)
                else:
                    raise ValueError(f"unknown operation {op!r}")
                sent.futures.append(future)
                if len(buffer) > HIGH_WATER:
                    self._writer.write(bytes(buffer))
                    buffer.clear()
                    await self._writer.drain()
            self._writer.write(bytes(buffer))
            await self._writer.drain()
        return sent

    async def wait_all(self, sent: Sent | Sequence[asyncio.Future[Reply]], what: str) -> None:
        """Await every reply of a batch, within one time limit for the whole batch
        (scaled by the bytes sent): a stalled agent closes the stream, never hangs."""
        futures = sent.futures if isinstance(sent, Sent) else list(sent)
        size = sent.size if isinstance(sent, Sent) else 0
        deadline = time.monotonic() + self.reply_timeout + size / BYTES_PER_SECOND
        for future in futures:
            await self._result(future, what, max(0.1, deadline - time.monotonic()))

    async def listing(self, path: str) -> dict[str, RemoteEntry]:
        body = await self._result(await self._request("H", string(path), MAX_REPLY),
                                  f"list {path}")  # fmt: skip
        return self._entries(body)

    async def listing_of(self, root: str, paths: Iterable[str]) -> dict[str, RemoteEntry]:
        """The entries at ``paths`` (relative to ``root``) and under those that are
        folders; a path that does not exist is absent from the result."""
        names = list(paths)
        body = string(root) + struct.pack(">I", len(names)) + b"".join(map(string, names))
        reply = await self._result(await self._request("S", body, MAX_REPLY),
                                   f"list in {root}")  # fmt: skip
        return self._entries(reply)

    def _entries(self, body: bytes) -> dict[str, RemoteEntry]:
        try:
            entries, refused = parse_listing(body)
        except WireError as exc:
            raise AgentError(f"the agent in {self.name} sent a broken listing: {exc}") from exc
        for name in refused:
            self.on_warning(f"ignored {name!r} in the container's listing: not a valid path")
        return entries

    async def watch(self, path: str, on_change: Callable[[WatchReport], None]) -> None:
        """Have the agent report changes under ``path`` (a bound destination). Asking
        again for the same folder re-targets the agent's existing watch."""
        await self._result(await self._request("N", string(path), later=on_change),
                           f"watch {path}")  # fmt: skip

    async def read(self, path: str, limit: int = 64 << 20) -> bytes:
        """A file's content; refused by the agent when it is larger than ``limit``."""
        future = await self._request("R", string(path) + struct.pack(">Q", limit), limit + 1)
        return await self._result(future, f"read {path}",
                                  self.reply_timeout + limit / BYTES_PER_SECOND)  # fmt: skip

    async def signal(self, number: int) -> None:
        await self._result(await self._request("K", struct.pack(">I", number)), "signal")

    async def undo_at_close(self, path: str, number: int) -> None:
        """Should this stream end first (kubeloop killed), the agent deletes ``path`` (under
        a bound destination) and sends signal ``number`` (SIGHUP) to the target; an empty
        ``path`` takes that back (the client undid it itself)."""
        body = string(path) + struct.pack(">I", number)
        await self._result(await self._request("Y", body), "arrange the undo")

    async def ping(self) -> float:
        """Round trip time in seconds."""
        started = time.perf_counter()
        await self._result(await self._request("P", b"ping"), "ping")
        return time.perf_counter() - started

    async def abort(self) -> None:
        """Close the stream at once (the agent ends and its unfinished writes are
        dropped); pending requests fail."""
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        await self.process.wait()

    async def open_lane(
        self, forward: Callable[[int], Awaitable[tuple[asyncio.subprocess.Process, int]]]
    ) -> None:
        """Move the frames to a faster path (see src/lane.go): ``forward(port)`` starts a
        port-forward to the agent's port in the pod and returns it with its local port."""
        body = await self._result(await self._request("X"), "open a data lane", timeout=30)
        if len(body) != 2 + LANE_TOKEN:
            raise AgentError(f"the agent in {self.name} answered the lane request badly")
        port = struct.unpack(">H", body[:2])[0]
        self._lane, local = await forward(port)
        reader, writer = await asyncio.open_connection("127.0.0.1", local, limit=1 << 20)
        writer.write(body[2:])
        async with self._lock:
            await writer.drain()
            self._reader, self._writer = reader, writer
            superseded, self._replies = (
                self._replies,
                asyncio.create_task(self._read_replies(reader)),
            )
            superseded.cancel()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
        if self._lane is not None:
            with contextlib.suppress(Exception):
                assert self.process.stdin is not None
                self.process.stdin.close()
            with contextlib.suppress(ProcessLookupError):
                self._lane.kill()
            await self._lane.wait()
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        with contextlib.suppress(TimeoutError):  # killed: it cannot take long, but never hang
            await asyncio.wait_for(self.process.wait(), 10)
        for task in (self._replies, self._stderr_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
