"""A registry relay for the in-cluster builder, on a node whose registry only root may
reach (the native cluster refuses every other user at the registry's port: whoever
pushes there chooses what pods run).

The rootless builder is not root on the node, so it reaches the registry through this
relay, which kubeloop runs for the length of a build: loopback only, and each connection
must first show a per-process random password (HTTP Basic; ``buildctl`` hands it to the
builder from a private Docker config). An authenticated connection is then spliced to
the registry as is, so pulls and pushes keep the registry's own protocol and
deduplication (only blobs the registry lacks are sent).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from kubeloop.errors import KubeloopError

USER = "kubeloop"
HEAD_LIMIT = 64 * 1024  # an HTTP request head larger than this is not a registry client's
REFUSAL = (
    b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="kubeloop"\r\n'
    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
)


def authorized(head: bytes, password: str) -> bool:
    """Whether an HTTP request head carries ``kubeloop:password`` as Basic auth."""
    expected = base64.b64encode(f"{USER}:{password}".encode()).decode()
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"authorization":
            scheme, _, token = value.strip().decode("latin-1").partition(" ")
            return scheme.lower() == "basic" and secrets.compare_digest(token.strip(), expected)
    return False


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


class Relay:
    """Listens on 127.0.0.1:``port`` and relays authenticated connections to
    ``upstream`` (host:port)."""

    def __init__(self, port: int, upstream: str) -> None:
        self.port = port
        self.upstream = upstream
        self.password = secrets.token_urlsafe(24)
        self._server: asyncio.Server | None = None
        self._users = 0
        self._open: set[asyncio.StreamWriter] = set()  # closed when the relay stops
        self._tasks: set[asyncio.Task[None]] = set()  # connections being served

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._open.add(writer)
        try:
            await self._relay(reader, writer)
        finally:
            self._open.discard(writer)
            self._tasks.discard(task)
            writer.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first = await asyncio.wait_for(reader.readexactly(1), 30)
            if first == b"\x16":
                # A TLS handshake: a plain HTTP answer is what makes a registry client
                # that tries https first fall back to http at once.
                writer.write(b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                return
            head = first + await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ConnectionError):  # fmt: skip
            return
        if not authorized(head, self.password):
            writer.write(REFUSAL)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            return
        host, _, port = self.upstream.rpartition(":")
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            return
        up_writer.write(head)
        self._open.add(up_writer)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._open.discard(up_writer)

    @contextlib.asynccontextmanager
    async def running(self, wait: float = 120) -> AsyncIterator[Relay]:
        """Serve while the block runs (shared by the builds of this process; another
        process's relay holding the port is waited for: its builds end)."""
        if self._users == 0:
            await self._start(wait)
        self._users += 1
        try:
            yield self
        finally:
            self._users -= 1
            if self._users == 0 and self._server is not None:
                self._server.close()
                for writer in list(self._open):  # ends both pipes of each connection
                    writer.close()
                self._server = None
                if self._tasks:  # let them end: a task still pending at exit is an error
                    await asyncio.wait(list(self._tasks), timeout=5)

    async def _start(self, wait: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            try:
                self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port,
                                                          limit=HEAD_LIMIT)  # fmt: skip
                return
            except OSError as exc:
                if loop.time() > deadline:
                    raise KubeloopError(f"port {self.port} stays taken, so the in-cluster "
                                        f"builder cannot reach the registry: {exc.strerror}",
                                        f"free 127.0.0.1:{self.port} (another kubeloop "
                                        "build holds it while it runs)") from exc  # fmt: skip
                await asyncio.sleep(0.5)

    def docker_config(self) -> tempfile.TemporaryDirectory[str]:
        """A private Docker config folder holding the relay's password (for buildctl,
        which passes registry credentials to the builder)."""
        folder = tempfile.TemporaryDirectory(prefix="kubeloop-relay-")
        token = base64.b64encode(f"{USER}:{self.password}".encode()).decode()
        config = {"auths": {self.address: {"auth": token}}}
        path = Path(folder.name) / "config.json"
        path.write_text(json.dumps(config))
        path.chmod(0o600)
        return folder
