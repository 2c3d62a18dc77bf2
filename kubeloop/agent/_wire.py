"""The agent's wire format (see src/wire.go): frames, length-prefixed strings, listings
and change reports, and the checks every name from a container must pass.

Everything decoded here comes from a container, which kubeloop does not trust: sizes are
bounded before anything is allocated, and a name is only ever used as a path relative to
a folder the user named after :func:`valid_relative` accepted it.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

PROTOCOL = "kubeloop-agent 2"
HEADER = struct.Struct(">BII")  # op, id, body length
MAX_FRAME = (1 << 20) + (64 << 10)  # the agent's limit too (wire.go)
CHUNK = 1 << 20  # file content travels in pieces of at most this
MAX_STRING = 4096
MAX_REPLY = 512 << 20  # a listing or a file read back, in all its frames

# Change report entry kinds (watch.go).
REPORT_PATH, REPORT_RESYNC, REPORT_ENDED = 0, 1, 2


class WireError(ValueError):
    """A malformed message from the agent: the stream cannot be trusted any more."""


@dataclass(frozen=True)
class RemoteEntry:
    kind: str  # "F" file, "D" directory, "L" symlink
    mode: int
    digest: str  # sha256 for files, link target for symlinks, "" for directories


def encode_path(path: str) -> bytes:
    """A path as the bytes the file system holds (names that are not UTF-8 included)."""
    raw = os.fsencode(path)
    if len(raw) > MAX_STRING:
        raise WireError(f"path longer than {MAX_STRING} bytes: {path[:80]}…")
    return raw


def string(value: str | bytes) -> bytes:
    raw = value if isinstance(value, bytes) else encode_path(value)
    return struct.pack(">H", len(raw)) + raw


def frame(op: str, ident: int, body: bytes = b"") -> bytes:
    return HEADER.pack(ord(op), ident, len(body)) + body


def valid_relative(name: str) -> bool:
    """Whether ``name`` is a plain path below a folder: not absolute, no empty, ``.`` or
    ``..`` part, no NUL. Anything else from a container is refused."""
    if not name or name.startswith("/") or "\0" in name:
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.at = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.at + n > len(self.data):
            raise WireError("truncated message from the agent")
        part = bytes(self.data[self.at : self.at + n])
        self.at += n
        return part

    def u16(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def text(self) -> str:
        n = self.u16()
        if n > MAX_STRING:
            raise WireError("over-long name from the agent")
        return os.fsdecode(self.take(n))

    @property
    def done(self) -> bool:
        return self.at >= len(self.data)


def parse_listing(body: bytes) -> tuple[dict[str, RemoteEntry], list[str]]:
    """(entries by relative path, names refused as invalid)."""
    entries: dict[str, RemoteEntry] = {}
    refused: list[str] = []
    reader = _Reader(body)
    while not reader.done:
        kind = chr(reader.take(1)[0])
        mode = reader.u32() & 0o7777
        name = reader.text()
        digest = reader.text()
        if kind not in "FDL" or not valid_relative(name):
            refused.append(name)
            continue
        entries[name] = RemoteEntry(kind, mode, digest if kind != "D" else "")
    return entries, refused


def parse_report(body: bytes) -> tuple[set[str], bool, bool, list[str]]:
    """(changed paths, resync asked, watch ended, names refused as invalid)."""
    paths: set[str] = set()
    refused: list[str] = []
    resync = ended = False
    reader = _Reader(body)
    while not reader.done:
        kind = reader.take(1)[0]
        name = reader.text()
        if kind == REPORT_RESYNC:
            resync = True
        elif kind == REPORT_ENDED:
            ended = True
        elif kind == REPORT_PATH and valid_relative(name):
            paths.add(name)
        else:
            refused.append(name)
    return paths, resync, ended, refused
