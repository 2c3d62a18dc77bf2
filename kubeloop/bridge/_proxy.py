"""The bridged command's outbound fallback: a proxy, for machines where it cannot have a
network namespace of its own (unprivileged user namespaces disabled).

The command runs as a plain child with HTTP_PROXY / HTTPS_PROXY / ALL_PROXY pointing at
one local port that speaks SOCKS5 and HTTP (CONNECT and absolute-form requests). Every
connection is made from the pod by the agent, names included (``socks5h``, or the host of
an HTTP request): they resolve with the pod's resolver and search domains, so ``db`` is
the Service next to the pod. Only programs that honour these variables reach the
cluster: kubeloop says so when this mode is in force.
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from kubeloop.agent import AgentError, AgentStream, splice
from kubeloop.proc import spawn_tethered, stop_process

MAX_HEAD = 64 << 10  # an HTTP request head, bounded
HANDSHAKE_TIMEOUT = 10.0
NO_PROXY = "localhost,127.0.0.1,::1"


class ProxiedCommand:
    """The same surface as LocalCommand, with a proxy instead of namespaces."""

    def __init__(self, agent: AgentStream) -> None:
        self.agent = agent
        self.process: asyncio.subprocess.Process | None = None
        self._server: asyncio.AbstractServer | None = None
        self.proxy_port = 0
        self.connections = 0

    def proxy_env(self) -> dict[str, str]:
        http, socks = (
            f"http://127.0.0.1:{self.proxy_port}",
            f"socks5h://127.0.0.1:{self.proxy_port}",
        )
        names = {"HTTP_PROXY": http, "HTTPS_PROXY": http, "ALL_PROXY": socks, "NO_PROXY": NO_PROXY}
        return {**names, **{key.lower(): value for key, value in names.items()}}

    async def start(self, argv: Sequence[str], env: Mapping[str, str], _pod_resolv: str,
                    cwd: Path | None = None) -> None:  # fmt: skip
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.proxy_port = self._server.sockets[0].getsockname()[1]
        self.process = await spawn_tethered(*argv, env={**env, **self.proxy_env()}, cwd=cwd)

    async def connect(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", port)

    async def wait(self) -> int:
        assert self.process is not None
        return await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None:
            await stop_process(self.process)
        if self._server is not None:
            self._server.close()

    # --- the proxy ---------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first = await asyncio.wait_for(reader.readexactly(1), HANDSHAKE_TIMEOUT)
            if first == b"\x05":
                target, reply, head = await self._socks(reader, writer), b"", b""
            else:
                target, reply, head = await self._http(first, reader)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
            writer.close()
            return
        try:
            channel = await self.agent.dial(target)
        except AgentError as exc:
            writer.write(_refusal(first, str(exc)))
            writer.close()
            return
        writer.write(reply if first != b"\x05" else _SOCKS_OK)
        if head:
            await channel.write(head)
        self.connections += 1
        await splice(channel, reader, writer)

    async def _socks(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        """SOCKS5, no authentication, CONNECT only (RFC 1928)."""
        methods = await reader.readexactly((await reader.readexactly(1))[0])
        if 0 not in methods:
            writer.write(b"\x05\xff")
            raise ValueError("no acceptable SOCKS method")
        writer.write(b"\x05\x00")
        version, command, _reserved, kind = await reader.readexactly(4)
        if version != 5 or command != 1:
            writer.write(b"\x05\x07\x00\x01" + bytes(6))
            raise ValueError("only SOCKS CONNECT is supported")
        if kind == 1:
            host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
        elif kind == 3:
            host = (await reader.readexactly((await reader.readexactly(1))[0])).decode("idna")
        elif kind == 4:
            host = f"[{ipaddress.IPv6Address(await reader.readexactly(16))}]"
        else:
            raise ValueError("bad SOCKS address type")
        (port,) = struct.unpack(">H", await reader.readexactly(2))
        return f"{host}:{port}"

    async def _http(self, first: bytes, reader: asyncio.StreamReader) -> tuple[str, bytes, bytes]:
        """(target, reply to the client, bytes to send on first) for CONNECT or an
        absolute-form request (rewritten to origin-form, one request per connection)."""
        head = first + await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HANDSHAKE_TIMEOUT)
        if len(head) > MAX_HEAD:
            raise ValueError("request head too large")
        request_line, *headers = head[:-4].decode("latin-1").split("\r\n")
        method, target, version = request_line.split(" ")
        if method == "CONNECT":
            return target, b"HTTP/1.1 200 Connection established\r\n\r\n", b""
        url = urlsplit(target)
        if url.scheme != "http" or not url.hostname:
            raise ValueError("not a proxy request")
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        kept = [h for h in headers if not h.lower().startswith(("proxy-", "connection:"))]
        rewritten = "\r\n".join([f"{method} {path} {version}", *kept, "Connection: close"])
        return f"{url.hostname}:{url.port or 80}", b"", (rewritten + "\r\n\r\n").encode("latin-1")


_SOCKS_OK = b"\x05\x00\x00\x01" + bytes(6)


def _refusal(first: bytes, why: str) -> bytes:
    if first == b"\x05":
        return b"\x05\x05\x00\x01" + bytes(6)  # connection refused
    body = f"kubeloop bridge: cannot connect from the pod: {why}\n".encode()
    return (b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)  # fmt: skip
