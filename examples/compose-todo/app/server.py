"""Todos in Redis: POST /todos (the body is the todo) writes to the primary, GET /todos
reads from the replica. Standard library only: a few Redis commands over a socket."""

from __future__ import annotations

import json
import os
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GREETING = "todo"


def redis(address: str, *command: str) -> object:
    host, _, port = address.partition(":")
    with socket.create_connection((host, int(port or 6379)), timeout=5) as conn:
        parts = [f"*{len(command)}\r\n".encode()]
        for word in command:
            data = word.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        conn.sendall(b"".join(parts))
        return _reply(conn.makefile("rb"))


def _reply(stream: object) -> object:
    line = stream.readline().rstrip(b"\r\n")  # type: ignore[attr-defined]
    kind, rest = line[:1], line[1:]
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind in (b"+", b":"):
        return rest.decode()
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else stream.read(size + 2)[:-2].decode()  # type: ignore[attr-defined]
    if kind == b"*":
        return [_reply(stream) for _ in range(max(int(rest), 0))]
    raise RuntimeError(f"unexpected reply {line!r}")


class Handler(BaseHTTPRequestHandler):
    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/todos":
            todos = redis(os.environ["REDIS_REPLICA"], "LRANGE", "todos", "0", "-1")
            self._send(200, {"app": GREETING, "todos": todos})
        else:
            self._send(200, {"app": GREETING})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        todo = self.rfile.read(min(length, 10_000)).decode(errors="replace")
        redis(os.environ["REDIS_PRIMARY"], "RPUSH", "todos", todo)
        self._send(201, {"app": GREETING, "added": todo})

    def log_message(self, format: str, *args: object) -> None:
        print(self.address_string(), format % args, flush=True)


if __name__ == "__main__":
    print("todo frontend on :8080", flush=True)
    ThreadingHTTPServer(("", 8080), Handler).serve_forever()
