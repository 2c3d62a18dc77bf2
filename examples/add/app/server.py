"""The 'add' example service: GET /add/{x}/{y} answers with the sum as JSON."""

from __future__ import annotations

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def add(x: float, y: float) -> float:
    return x + y


def parse_add_path(path: str) -> tuple[float, float] | None:
    parts = path.strip("/").split("/")
    if len(parts) != 3 or parts[0] != "add":
        return None
    try:
        return float(parts[1]), float(parts[2])
    except ValueError:
        return None


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._send(200, {"ok": True})
            return
        numbers = parse_add_path(self.path)
        if numbers is None:
            self._send(404, {"error": "use /add/{x}/{y}"})
            return
        x, y = numbers
        result = add(x, y)
        self._send(200, {"x": x, "y": y, "sum": int(result) if result.is_integer() else result})
        print(f"add {x} {y} = {result}", flush=True)

    def _send(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    port = int(os.environ.get("PORT", "8000"))
    print(f"add service listening on {port}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
