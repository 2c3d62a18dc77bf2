"""A small Java Debug Wire Protocol client: enough to stop a JVM at a line, as an IDE
does through JDWP (handshake, a breakpoint by class, method and line, a local read)."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from typing import Any

HANDSHAKE = b"JDWP-Handshake"
REPLY = 0x80


class Reader:
    """Reads JDWP values from a packet's data (IDs are 8 bytes on the JVMs we test;
    checked through IDSizes)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, fmt: str) -> Any:
        value = struct.unpack_from(">" + fmt, self.data, self.at)
        self.at += struct.calcsize(">" + fmt)
        return value[0] if len(value) == 1 else value

    def string(self) -> str:
        n = self.take("I")
        self.at += n
        return self.data[self.at - n : self.at].decode()

    def id(self) -> int:
        return int(self.take("Q"))


def string(value: str) -> bytes:
    raw = value.encode()
    return struct.pack(">I", len(raw)) + raw


class Jdwp:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.seq = reader, writer, 0
        self.replies: dict[int, asyncio.Future[tuple[int, bytes]]] = {}
        self.events: asyncio.Queue[bytes] = asyncio.Queue()
        self.task = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, port: int) -> Jdwp:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HANDSHAKE)
        assert await asyncio.wait_for(reader.readexactly(len(HANDSHAKE)), 10) == HANDSHAKE
        jdwp = cls(reader, writer)
        sizes = Reader(await jdwp.command(1, 7))  # IDSizes: all 8 bytes, as Reader assumes
        assert [sizes.take("I") for _ in range(5)] == [8] * 5
        return jdwp

    async def _read(self) -> None:
        while True:
            length, ident, flags = struct.unpack(">IIB", await self.reader.readexactly(9))
            rest = await self.reader.readexactly(length - 9)
            if flags & REPLY:
                error = struct.unpack(">H", rest[:2])[0]
                self.replies.pop(ident).set_result((error, rest[2:]))
            elif rest[:2] == bytes([64, 100]):  # Event.Composite
                self.events.put_nowait(rest[2:])

    async def command(self, command_set: int, command: int, data: bytes = b"") -> bytes:
        self.seq += 1
        future = self.replies[self.seq] = asyncio.get_running_loop().create_future()
        self.writer.write(struct.pack(">IIBBB", 11 + len(data), self.seq, 0, command_set,
                                      command) + data)  # fmt: skip
        error, body = await asyncio.wait_for(future, 20)
        assert error == 0, f"JDWP command {command_set}/{command}: error {error}"
        return body

    async def version(self) -> str:
        reply = Reader(await self.command(1, 1))
        reply.string()  # description
        reply.take("II")
        return reply.string()  # the VM's version

    async def class_id(self, signature: str) -> int:
        reply = Reader(await self.command(1, 2, string(signature)))
        assert reply.take("I") >= 1, f"{signature} is not loaded"
        reply.take("B")
        return reply.id()

    async def method_id(self, class_id: int, name: str) -> int:
        reply = Reader(await self.command(2, 5, struct.pack(">Q", class_id)))
        for _ in range(reply.take("I")):
            method, found = reply.id(), reply.string()
            reply.string()
            reply.take("I")
            if found == name:
                return method
        raise AssertionError(f"no method {name}")

    async def break_at(self, class_id: int, method: int, line: int) -> int:
        """A breakpoint (suspending all threads) at ``line`` of ``method``."""
        table = Reader(await self.command(6, 1, struct.pack(">QQ", class_id, method)))
        table.take("qq")
        lines = [table.take("qI") for _ in range(table.take("I"))]
        index = next(i for i, number in lines if number == line)
        location = struct.pack(">BQQQ", 1, class_id, method, index)
        reply = await self.command(15, 1, struct.pack(">BBIB", 2, 2, 1, 7) + location)
        return int(struct.unpack(">I", reply)[0])

    async def breakpoint_hit(self, timeout: float = 60) -> tuple[int, int]:
        """(request id, thread) of the next breakpoint event."""
        while True:
            event = Reader(await asyncio.wait_for(self.events.get(), timeout))
            event.take("B")
            for _ in range(event.take("I")):
                kind, request = event.take("BI")
                if kind == 2:  # BREAKPOINT
                    return request, event.id()
                break  # other events are not read further

    async def local_int(self, class_id: int, method: int, thread: int, name: str) -> int:
        frames = Reader(await self.command(11, 6, struct.pack(">Qii", thread, 0, 1)))
        assert frames.take("I") == 1
        frame = frames.id()
        table = Reader(await self.command(6, 2, struct.pack(">QQ", class_id, method)))
        table.take("I")
        slot = None
        for _ in range(table.take("I")):
            table.take("q")
            found, signature = table.string(), table.string()
            _length, number = table.take("II")
            if found == name and signature == "I":
                slot = number
        assert slot is not None, f"no int local {name} (compiled with -g?)"
        values = Reader(await self.command(16, 1, struct.pack(">QQIIB", thread, frame, 1, slot,
                                                              ord("I"))))  # fmt: skip
        assert values.take("I") == 1 and values.take("B") == ord("I")
        return int(values.take("i"))

    async def resume(self) -> None:
        await self.command(1, 9)

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task
        self.writer.close()
