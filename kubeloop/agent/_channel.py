"""TCP connections carried over an agent stream (see src/channels.go): the client half.

Each side may have at most WINDOW bytes of a channel in flight; credit comes back as the
receiver writes the bytes out. A slow connection never stalls the others on the stream,
and no buffer grows without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Awaitable, Callable

WINDOW = 2 << 20
PIECE = 64 << 10

Send = Callable[[str, int, bytes], Awaitable[None]]


class Channel:
    """One connection's two directions: ``read`` what the far end sent, ``write`` to it."""

    def __init__(self, ident: int, send: Send, on_close: Callable[[int], None]) -> None:
        self.ident = ident
        self._send = send
        self._on_close = on_close
        self._incoming: asyncio.Queue[bytes] = asyncio.Queue()  # b"" marks the end
        self._credit = WINDOW
        self._credit_event = asyncio.Event()
        self._credit_event.set()
        self._queued = 0
        self.closed = False
        self._read_done = False
        self._write_done = False

    # --- from the stream -------------------------------------------------------------

    def feed(self, op: str, body: bytes) -> None:
        if op == "d":
            if self._queued + len(body) > WINDOW:  # the agent broke flow control
                self.abort()
                return
            self._queued += len(body)
            self._incoming.put_nowait(body)
        elif op == "x":
            self._incoming.put_nowait(b"")
        elif op == "k" and len(body) == 4:
            self._credit = min(self._credit + struct.unpack(">I", body)[0], 4 * WINDOW)
            self._credit_event.set()
        elif op == "Z":
            self.abort()

    def abort(self) -> None:
        """The far end reset the connection (or the stream went): wake everyone."""
        if self.closed:
            return
        self.closed = True
        self._incoming.put_nowait(b"")
        self._credit_event.set()
        self._on_close(self.ident)

    # --- for the local side ----------------------------------------------------------

    async def read(self) -> bytes:
        """The next piece the far end sent; b"" at its end."""
        data = await self._incoming.get()
        if not data:
            self._read_done = True
            self._maybe_done()
        return data

    async def consumed(self, size: int) -> None:
        """Give credit back once ``size`` bytes were written out locally."""
        self._queued -= size
        if not self.closed:
            await self._send("k", self.ident, struct.pack(">I", size))

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self.closed:
            while self._credit <= 0 and not self.closed:
                self._credit_event.clear()
                await self._credit_event.wait()
            if self.closed:
                break
            piece = bytes(view[: min(PIECE, self._credit)])
            self._credit -= len(piece)
            await self._send("d", self.ident, piece)
            view = view[len(piece) :]
        if self.closed:
            raise ConnectionResetError("the connection in the pod was reset")

    async def write_eof(self) -> None:
        if not self.closed:
            await self._send("x", self.ident, b"")
        self._write_done = True
        self._maybe_done()

    async def reset(self) -> None:
        if not self.closed:
            await self._send("Z", self.ident, b"")
            self.abort()

    def _maybe_done(self) -> None:
        if self._read_done and self._write_done and not self.closed:
            self.closed = True
            self._on_close(self.ident)


async def splice(channel: Channel, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:  # fmt: skip
    """Carry bytes both ways between a local socket and a channel until both ends are
    done; a reset on either side resets the other."""

    async def outbound() -> None:
        while data := await reader.read(PIECE):
            await channel.write(data)
        await channel.write_eof()

    async def inbound() -> None:
        while data := await channel.read():
            writer.write(data)
            await writer.drain()
            await channel.consumed(len(data))
        if writer.can_write_eof():
            with contextlib.suppress(OSError):
                writer.write_eof()

    tasks = [asyncio.create_task(outbound()), asyncio.create_task(inbound())]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        await asyncio.gather(*pending)
    except (OSError, ConnectionError):
        await channel.reset()
    finally:
        for task in tasks:
            task.cancel()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
