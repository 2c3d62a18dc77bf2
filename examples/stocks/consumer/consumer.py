"""Consumer: reads the generator's stream by its Service DNS name and serves the moving
average of each symbol at /average; /healthz is ready once prices flow."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SOURCE = os.environ.get("GENERATOR_URL", "http://generator/stream")
WINDOW = int(os.environ.get("WINDOW", "20"))
windows: dict[str, deque[float]] = {}
last_seen = 0.0
lock = threading.Lock()


def moving_averages() -> dict[str, float]:
    with lock:
        return {s: round(sum(w) / len(w), 3) for s, w in windows.items() if w}


def follow() -> None:
    global last_seen
    while True:
        try:
            with urllib.request.urlopen(SOURCE, timeout=10) as stream:
                print(f"connected to {SOURCE}", flush=True)
                for raw in stream:
                    tick = json.loads(raw)
                    with lock:
                        windows.setdefault(tick["symbol"], deque(maxlen=WINDOW)).append(
                            tick["price"]
                        )
                        last_seen = time.time()
        except Exception as exc:  # reconnect on any failure of the stream
            print(f"stream lost ({exc}); reconnecting", flush=True)
            time.sleep(1)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/healthz":
            fresh = time.time() - last_seen < 5
            self._send(200 if fresh else 503, {"receiving": fresh})
        elif self.path == "/average":
            self._send(200, {"window": WINDOW, "averages": moving_averages()})
        else:
            self._send(404, {"error": "use /average or /healthz"})

    def _send(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    threading.Thread(target=follow, daemon=True).start()
    port = int(os.environ.get("PORT", "8080"))
    print(f"consumer listening on {port}, window {WINDOW}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
