"""The dashboard's local web server: aiohttp in the dev loop's own event loop, bound to
127.0.0.1, every data route behind a per-session token.

Server-Sent Events carry the updates: one long response per page that the browser
re-opens by itself, simpler than a websocket for a stream that only goes one way (the
buttons are plain POSTs).
"""

from __future__ import annotations

import asyncio
import errno
import json
import secrets
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web

from kubeloop.dashboard.hub import Hub, UnknownCommand
from kubeloop.errors import KubeloopError

STATIC = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}
# The page links to port-forwards on other local ports: the token in its URL must not
# travel with those clicks (no-referrer), and nothing but this server feeds it (CSP).
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
COALESCE_SECONDS = 0.02  # events that arrive this close together go out in one write
MAX_BATCH = 2000  # events per write, so one write stays small under a log flood
MAX_BODY = 16 * 1024


class DashboardServer:
    def __init__(self, hub: Hub, port: int = 0, token: str | None = None) -> None:
        self.hub = hub
        self.port = port
        self.token = token or secrets.token_urlsafe(24)
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/?token={self.token}"

    async def start(self) -> str:
        """Listen on 127.0.0.1 (a free port unless one was given); return the page's URL."""
        app = web.Application(middlewares=[self._guard], client_max_size=MAX_BODY)
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/api/state", self._state)
        app.router.add_get("/api/events", self._events)
        app.router.add_post("/api/command", self._command)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     shutdown_timeout=1.0)  # fmt: skip
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            why = "the port is in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise KubeloopError(f"the dashboard cannot listen on 127.0.0.1:{self.port}: {why}",
                                "give another port with --ui-port, or 0 for a free one") from exc  # fmt: skip
        self.port = int(self._runner.addresses[0][1])
        return self.url

    async def close(self) -> None:
        self._closing.set()  # open event streams end instead of holding the shutdown
        self.hub.wake()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- checks -------------------------------------------------------------------------

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        # A page on another site may resolve its own name to 127.0.0.1 (DNS rebinding):
        # only requests addressed to this server by loopback name get an answer.
        if request.host not in (f"127.0.0.1:{self.port}", f"localhost:{self.port}"):
            raise web.HTTPForbidden(text="this server answers on 127.0.0.1 only\n")
        if request.path.startswith("/api/") or request.path == "/":
            given = request.headers.get("X-Kubeloop-Token") or request.query.get("token", "")
            if not secrets.compare_digest(given.encode(), self.token.encode()):
                raise web.HTTPForbidden(
                    text="missing or wrong token: open the URL `kubeloop dev --ui` printed "
                    "(or run `kubeloop ui`)\n"
                )
        response = await handler(request)
        response.headers.update(HEADERS)
        return response

    # --- routes -------------------------------------------------------------------------

    async def _index(self, _request: web.Request) -> web.Response:
        return _asset("index.html")

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound()
        return _asset(name)

    async def _state(self, _request: web.Request) -> web.Response:
        return web.json_response(self.hub.snapshot(), dumps=_dumps)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        try:
            # EventSource reconnects by itself, with the last id it saw as a header.
            given = request.headers.get("Last-Event-ID") or request.query.get("seq")
            seq = int(given) if given else self.hub.position
        except ValueError:
            raise web.HTTPBadRequest(text="seq must be a number\n") from None
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **HEADERS})
        await response.prepare(request)
        try:
            while not self._closing.is_set():
                events = self.hub.since(seq)
                if events is None:  # fell behind what is kept: the page starts again
                    await response.write(b"event: reset\ndata: {}\n\n")
                    break
                if not events:
                    await self.hub.wait(seq, 15.0)
                    if self.hub.since(seq) == []:
                        await response.write(b": idle\n\n")  # finds a closed page
                    continue
                events = events[:MAX_BATCH]
                seq += len(events)
                body = f"id: {seq}\ndata: [{','.join(events)}]\n\n"
                await response.write(body.encode())
                await asyncio.sleep(COALESCE_SECONDS)
        except ConnectionError:
            pass  # the page went away (closed, reloaded): its stream ends here
        return response

    async def _command(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            action, target = str(body["action"]), str(body.get("target", ""))
            request_id = str(body.get("id", ""))
        except (ValueError, KeyError, TypeError):
            raise web.HTTPBadRequest(
                text='expected JSON {"action": ..., "target": ...}\n'
            ) from None
        try:
            text = await self.hub.run_command(action[:64], target[:256])
            ok = True
        except UnknownCommand as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from None
        except KubeloopError as exc:
            text, ok = exc.message + (f" (fix: {exc.hint})" if exc.hint else ""), False
        except Exception as exc:  # a button that fails says so; dev goes on
            text, ok = f"failed: {exc!r}", False
        self.hub.result(request_id, ok, text)
        return web.json_response({"ok": ok, "text": text})


def _asset(name: str) -> web.Response:
    data = resources.files("kubeloop.dashboard").joinpath("static", name).read_bytes()
    return web.Response(body=data, content_type=STATIC[name], charset="utf-8")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
