"""The bridged command on the developer's machine, in network and mount namespaces of
its own (src/local.go), with its outbound connections and DNS queries carried to the pod.

No root, no VPN, no TUN device, nothing added to the host's routes or /etc/hosts. Works
for any program, static binaries included, since the kernel itself redirects them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from kubeloop.agent import AgentError, AgentStream, agent_binary, splice
from kubeloop.errors import KubeloopError
from kubeloop.proc import spawn_tethered, stop_process

SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h


def resolver_settings(pod_resolv: str) -> str:
    """The pod's search domains and options, with kubeloop's resolver as the server."""
    kept = [line for line in pod_resolv.splitlines()
            if line.split()[:1] in (["search"], ["options"], ["domain"])]  # fmt: skip
    return "\n".join(["nameserver 127.0.0.1", *kept]) + "\n"


async def _receive_fds(sock: socket.socket, count: int, timeout: float) -> tuple[bytes, list[int]]:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock.fileno(), readable)
    try:
        await asyncio.wait_for(ready, timeout)
    finally:
        loop.remove_reader(sock.fileno())
    message, fds, _flags, _address = socket.recv_fds(sock, 16, count)
    return message, list(fds)


class _DnsRelay(asyncio.DatagramProtocol):
    def __init__(self, agent: AgentStream) -> None:
        self.agent = agent
        self.transport: asyncio.DatagramTransport | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        task = asyncio.get_running_loop().create_task(self._answer(data, addr))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, query: bytes, addr: tuple[str, int]) -> None:
        with contextlib.suppress(AgentError):
            answer = await self.agent.dns(query)
            if self.transport is not None:
                self.transport.sendto(answer, addr)


class LocalCommand:
    """The developer's command in its namespaces; ``outbound`` carries what it opens."""

    def __init__(self, agent: AgentStream) -> None:
        self.agent = agent
        self.process: asyncio.subprocess.Process | None = None
        self._control: socket.socket | None = None
        self._control_lock = asyncio.Lock()
        self._server: asyncio.AbstractServer | None = None
        self._dns: asyncio.DatagramTransport | None = None
        self._folder = Path(tempfile.mkdtemp(prefix="kubeloop-bridge-"))
        self.connections = 0

    async def start(self, argv: Sequence[str], env: Mapping[str, str], pod_resolv: str,
                    cwd: Path | None = None) -> None:  # fmt: skip
        resolv = self._folder / "resolv.conf"
        resolv.write_text(resolver_settings(pod_resolv))
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        binary = await agent_binary()
        try:
            self.process = await spawn_tethered(
                str(binary), "local", "--control-fd", str(theirs.fileno()),
                "--resolv", str(resolv), "--", *argv, env=dict(env), pass_fds=[theirs.fileno()],
                cwd=cwd,
            )  # fmt: skip
        finally:
            theirs.close()
        mine.setblocking(False)
        self._control = mine
        try:
            message, fds = await _receive_fds(mine, 2, 15)
        except TimeoutError:
            message, fds = b"", []
        if message != b"L" or len(fds) != 2:
            code = await self.process.wait() if self.process.returncode is None else 0
            raise KubeloopError(f"the bridged command could not be set up (exit {code})",
                                "see the message above; unprivileged user namespaces must "
                                "be allowed on this machine")  # fmt: skip
        listener = socket.socket(fileno=fds[0])
        listener.setblocking(False)
        self._server = await asyncio.start_server(self._outbound, sock=listener)
        dns = socket.socket(fileno=fds[1])
        dns.setblocking(False)
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _DnsRelay(self.agent), sock=dns
        )
        self._dns = transport

    async def _outbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A connection the command opened: made again from the pod, to the same
        address (a Service's ClusterIP, a pod IP), and carried both ways."""
        sock: socket.socket = writer.get_extra_info("socket")
        raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
        port, address = struct.unpack("!2xH4s8x", raw)
        destination = f"{socket.inet_ntoa(address)}:{port}"
        try:
            channel = await self.agent.dial(destination)
        except AgentError:
            writer.close()
            return
        self.connections += 1
        await splice(channel, reader, writer)

    async def connect(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection to the command's ``port`` inside its namespace (for traffic the
        bridge brings in)."""
        if self._control is None:  # a connection came before the command was set up
            raise ConnectionError("the bridged command is not started yet")
        async with self._control_lock:
            await asyncio.get_running_loop().sock_sendall(self._control, b"S")
            message, fds = await _receive_fds(self._control, 1, 5)
        if message != b"S" or not fds:
            raise ConnectionError("no socket from the bridged command's namespace")
        sock = socket.socket(fileno=fds[0])
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        except OSError:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock)

    async def wait(self) -> int:
        assert self.process is not None
        return await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None:
            await stop_process(self.process)
        if self._server is not None:
            self._server.close()
        if self._dns is not None:
            self._dns.close()
        if self._control is not None:
            self._control.close()
        for path in self._folder.iterdir():
            path.unlink()
        with contextlib.suppress(OSError):
            os.rmdir(self._folder)
