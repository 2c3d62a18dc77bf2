"""A small Debug Adapter Protocol client: enough to drive debugpy as an IDE would."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any


class Dap:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.seq = 0
        self.responses: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, port: int) -> Dap:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def _read(self) -> None:
        while True:
            headers = await self.reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in headers.split(b"\r\n")
                          if line.lower().startswith(b"content-length"))  # fmt: skip
            message = json.loads(await self.reader.readexactly(length))
            if message["type"] == "response":
                self.responses.pop(message["request_seq"]).set_result(message)
            elif message["type"] == "event":
                self.events.put_nowait(message)

    def send(self, command: str, **arguments: Any) -> asyncio.Future[dict[str, Any]]:
        self.seq += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.responses[self.seq] = future
        body = json.dumps({"seq": self.seq, "type": "request", "command": command,
                           "arguments": arguments}).encode()  # fmt: skip
        self.writer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        return future

    async def request(self, command: str, timeout: float = 20, **arguments: Any) -> dict[str, Any]:
        response = await asyncio.wait_for(self.send(command, **arguments), timeout)
        assert response["success"], response
        return dict(response.get("body") or {})

    async def event(self, name: str, timeout: float = 30) -> dict[str, Any]:
        while True:
            message = await asyncio.wait_for(self.events.get(), timeout)
            if message["event"] == name:
                return dict(message.get("body") or {})

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task
        self.writer.close()
