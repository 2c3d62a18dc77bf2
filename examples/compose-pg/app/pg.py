"""Just enough of PostgreSQL's wire protocol (version 3, simple queries, trust or
password authentication) for the example, with the standard library only."""

from __future__ import annotations

import os
import socket
import struct


class Database:
    def __init__(self) -> None:
        host = os.environ.get("DATABASE_HOST", "db")
        self.conn = socket.create_connection((host, 5432), timeout=10)
        self.stream = self.conn.makefile("rb")
        user = os.environ.get("DATABASE_USER", "postgres")
        params = f"user\0{user}\0database\0{os.environ.get('DATABASE_NAME', user)}\0\0"
        body = struct.pack("!i", 196608) + params.encode()
        self.conn.sendall(struct.pack("!i", len(body) + 4) + body)
        while True:
            kind, payload = self._message()
            if kind == b"R" and struct.unpack("!i", payload[:4])[0] == 3:
                password = os.environ.get("DATABASE_PASSWORD", "").encode() + b"\0"
                self.conn.sendall(b"p" + struct.pack("!i", len(password) + 4) + password)
            elif kind == b"Z":
                return

    def _message(self) -> tuple[bytes, bytes]:
        kind = self.stream.read(1)
        if not kind:
            raise ConnectionError("the database closed the connection")
        (size,) = struct.unpack("!i", self.stream.read(4))
        payload = self.stream.read(size - 4)
        if kind == b"E":
            fields = dict((f[:1], f[1:].decode()) for f in payload.split(b"\0") if f)
            raise RuntimeError(fields.get(b"M", "database error"))
        return kind, payload

    def query(self, sql: str) -> list[list[str | None]]:
        data = sql.encode() + b"\0"
        self.conn.sendall(b"Q" + struct.pack("!i", len(data) + 4) + data)
        rows: list[list[str | None]] = []
        error: Exception | None = None
        while True:
            try:
                kind, payload = self._message()
            except RuntimeError as exc:
                error = exc
                continue
            if kind == b"D":
                (count,) = struct.unpack("!h", payload[:2])
                offset, row = 2, []
                for _ in range(count):
                    (size,) = struct.unpack("!i", payload[offset : offset + 4])
                    offset += 4
                    row.append(None if size < 0 else payload[offset : offset + size].decode())
                    offset += max(size, 0)
                rows.append(row)
            elif kind == b"Z":
                if error:
                    raise error
                return rows

    def close(self) -> None:
        self.conn.close()


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# Web and worker both create the table when they start. Two concurrent CREATE TABLE IF
# NOT EXISTS can both miss the table and one fails ("duplicate key value violates unique
# constraint pg_type_typname_nsp_index"): a lock held to the end of this one-query
# transaction makes them take turns.
SCHEMA = ("SELECT pg_advisory_xact_lock(7001); "
          "CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, body text NOT NULL, "
          "words integer)")  # fmt: skip
