"""Stock price generator: GET /stream sends one JSON line per tick, forever."""

from __future__ import annotations

import json
import os
import random
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SYMBOLS = os.environ.get("SYMBOLS", "ACME,GLOBEX,INITECH").split(",")
TICK_SECONDS = float(os.environ.get("TICK_SECONDS", "0.1"))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            return
        if self.path != "/stream":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        prices = {s: 100.0 for s in SYMBOLS}
        print(f"client {self.client_address[0]} connected", flush=True)
        try:
            while True:
                for symbol in SYMBOLS:
                    prices[symbol] = max(1.0, prices[symbol] * (1 + random.gauss(0, 0.01)))
                    line = json.dumps({"symbol": symbol, "price": round(prices[symbol], 2),
                                       "time": time.time()}).encode() + b"\n"  # fmt: skip
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
                time.sleep(TICK_SECONDS)
        except (BrokenPipeError, ConnectionResetError):
            print("client left", flush=True)

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    print(f"generator listening on {port}, symbols {SYMBOLS}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
