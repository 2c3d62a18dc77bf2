"""POST /notes adds a note (the body), GET /notes lists them with the worker's counts."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from pg import SCHEMA, Database, literal

GREETING = "notes"


class Handler(BaseHTTPRequestHandler):
    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path != "/notes":
            self._send(200, {"app": GREETING})
            return
        db = Database()
        try:
            rows = db.query("SELECT id, body, words FROM notes ORDER BY id")
        finally:
            db.close()
        notes = [{"id": int(i or 0), "body": b, "words": None if w is None else int(w)}
                 for i, b, w in rows]  # fmt: skip
        self._send(200, {"app": GREETING, "notes": notes})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, 10_000)).decode(errors="replace")
        db = Database()
        try:
            db.query(f"INSERT INTO notes (body) VALUES ({literal(body)})")
        finally:
            db.close()
        self._send(201, {"app": GREETING, "added": body})

    def log_message(self, format: str, *args: object) -> None:
        print(self.address_string(), format % args, flush=True)


if __name__ == "__main__":
    db = Database()
    db.query(SCHEMA)
    db.close()
    print("notes web on :8000", flush=True)
    ThreadingHTTPServer(("", 8000), Handler).serve_forever()
