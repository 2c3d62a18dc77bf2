"""The client end of the agent protocol (see agent.go), over one long-lived stream.

Frames: op byte, u32 sequence number, u16 path length, path, u64 payload length,
payload. Every frame is answered in order ('A' done, 'E' error, 'H' listing, 'F' file).
Writes are pipelined: callers may send many frames before awaiting the replies. Once a
folder is watched, the agent also sends 'C' frames, with the sequence number of the watch
request, naming the paths that changed under it.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kubeloop.errors import KubeloopError

# The two entries of a watch's change report that are signals, not paths (agent.go).
WATCH_RESYNC = "*"  # events were lost: list the whole folder again
WATCH_ENDED = "!"  # the watch ended (folder replaced, out of watches): re-watch or poll

CHUNK = 1 << 20
HIGH_WATER = 4 << 20


class AgentError(KubeloopError):
    pass


@dataclass(frozen=True)
class RemoteEntry:
    kind: str  # "F" file, "D" directory, "L" symlink
    mode: int
    digest: str  # sha256 for files, link target for symlinks, "" for directories


def parse_listing(text: str) -> dict[str, RemoteEntry]:
    entries: dict[str, RemoteEntry] = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if parts[0] == "F" and len(parts) == 4:
            entries[parts[1]] = RemoteEntry("F", int(parts[2], 8), parts[3])
        elif parts[0] == "D" and len(parts) == 3:
            entries[parts[1]] = RemoteEntry("D", int(parts[2], 8), "")
        elif parts[0] == "L" and len(parts) == 3:
            entries[parts[1]] = RemoteEntry("L", 0, parts[2])
    return entries


class AgentStream:
    """One exec stream to one agent; operations are coroutines returning on the reply."""

    def __init__(self, process: asyncio.subprocess.Process, name: str) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self.name = name
        self._writer = process.stdin
        self._reader = process.stdout
        self._seq = 0
        self._pending: dict[int, asyncio.Future[tuple[str, bytes]]] = {}
        self._watches: dict[int, Callable[[set[str]], None]] = {}
        self._lock = asyncio.Lock()
        self._replies = asyncio.create_task(self._read_replies())

    @property
    def alive(self) -> bool:
        return self.process.returncode is None and not self._replies.done()

    async def _read_replies(self) -> None:
        try:
            while True:
                header = await self._reader.readexactly(9)
                op = chr(header[0])
                seq, length = struct.unpack(">II", header[1:])
                body = await self._reader.readexactly(length) if length else b""
                if op == "C" and seq in self._watches:
                    names = body.decode(errors="replace").split("\n")
                    self._watches[seq]({name for name in names if name})
                    continue
                future = self._pending.pop(seq, None)
                if future and not future.done():
                    future.set_result((op, body))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(AgentError(f"the stream to {self.name} closed"))
            self._pending.clear()

    async def _send(
        self,
        op: str,
        path: str,
        payload: bytes = b"",
        later: Callable[[set[str]], None] | None = None,
    ) -> asyncio.Future[tuple[str, bytes]]:
        """One request frame whose reply the caller awaits (listing, read, signal); bulk
        changes go through send_many. ``later`` gets the request's further replies."""
        if not self.alive:
            raise AgentError(f"the stream to {self.name} is closed")
        raw = path.encode()
        async with self._lock:
            self._seq += 1
            future: asyncio.Future[tuple[str, bytes]] = asyncio.get_running_loop().create_future()
            self._pending[self._seq] = future
            if later is not None:
                self._watches[self._seq] = later
            self._writer.write(struct.pack(">BIH", ord(op), self._seq, len(raw)) + raw
                               + struct.pack(">Q", len(payload)) + payload)  # fmt: skip
            await self._writer.drain()
        return future

    @staticmethod
    async def _result(future: asyncio.Future[tuple[str, bytes]], what: str) -> bytes:
        op, body = await future
        if op == "E":
            raise AgentError(f"{what}: {body.decode(errors='replace')}")
        return body

    async def send_many(
        self, ops: Iterable[tuple[str, str, int, Path | str | bytes | None]]
    ) -> list[asyncio.Future[tuple[str, bytes]]]:
        """Queue many operations at once: ``(op, path, mode, source)`` where op is 'W'
        (source: a file, or its content), 'M' (mkdir), 'L' (source: link target) or 'D'.
        ``ops`` may be a generator: frames go out while it still produces.

        Small files are framed in one synchronous pass into one buffer: per-frame awaits
        cost more than the agent needs to write the file. Large files are streamed."""
        futures: list[asyncio.Future[tuple[str, bytes]]] = []
        loop = asyncio.get_running_loop()
        buffer = bytearray()
        async with self._lock:
            for op, path, mode, source in ops:
                if not self.alive:
                    raise AgentError(f"the stream to {self.name} is closed")
                self._seq += 1
                future: asyncio.Future[tuple[str, bytes]] = loop.create_future()
                self._pending[self._seq] = future
                futures.append(future)
                raw = path.encode()
                head = struct.pack(">BIH", ord(op), self._seq, len(raw)) + raw
                if op == "W" and isinstance(source, bytes):
                    buffer += head + struct.pack(">QI", len(source) + 4, mode) + source
                elif op == "W" and isinstance(source, Path):
                    size = source.stat().st_size
                    buffer += head + struct.pack(">QI", size + 4, mode)
                    if size <= CHUNK:
                        buffer += source.read_bytes()
                    else:
                        self._writer.write(bytes(buffer))
                        buffer.clear()
                        with source.open("rb") as handle:
                            while chunk := handle.read(CHUNK):
                                self._writer.write(chunk)
                                await self._writer.drain()
                elif op == "M":
                    buffer += head + struct.pack(">QI", 4, mode)
                elif op == "L":
                    target = str(source).encode()
                    buffer += head + struct.pack(">Q", len(target)) + target
                else:
                    buffer += head + struct.pack(">Q", 0)
                if len(buffer) > HIGH_WATER:
                    self._writer.write(bytes(buffer))
                    buffer.clear()
                    await self._writer.drain()
            self._writer.write(bytes(buffer))
            await self._writer.drain()
        return futures

    async def listing(self, path: str) -> dict[str, RemoteEntry]:
        body = await self._result(await self._send("H", path), f"list {path}")
        return parse_listing(body.decode(errors="replace"))

    async def listing_of(self, root: str, paths: Iterable[str]) -> dict[str, RemoteEntry]:
        """The entries at ``paths`` (relative to ``root``) and under those that are
        folders; a path that does not exist is absent from the result."""
        names = "\n".join(paths).encode()
        body = await self._result(await self._send("S", root, names), f"list in {root}")
        return parse_listing(body.decode(errors="replace"))

    async def watch(self, path: str, on_change: Callable[[set[str]], None]) -> None:
        """Have the agent report changes under ``path``: ``on_change`` gets sets of paths
        relative to it, or the signals WATCH_RESYNC and WATCH_ENDED.
        Asking again for the same folder re-targets the agent's existing watch."""
        await self._result(await self._send("N", path, later=on_change), f"watch {path}")

    async def read(self, path: str) -> bytes:
        return await self._result(await self._send("R", path), f"read {path}")

    async def signal(self, number: int) -> None:
        await self._result(await self._send("K", "/", struct.pack(">I", number)), "signal")

    async def wait_all(
        self, futures: Sequence[asyncio.Future[tuple[str, bytes]]], what: str
    ) -> None:
        for future in futures:
            await self._result(future, what)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        await self.process.wait()
        self._replies.cancel()
