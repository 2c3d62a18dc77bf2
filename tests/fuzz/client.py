"""A bounded, seeded fuzzer for kubeloop's side of the agent stream: what a container
sends must never crash kubeloop with anything but its own errors, hang it, or touch a file
outside the local sync folder.

Three targets, one per case (``index % 3``):

* ``wire``: ``parse_listing`` and ``parse_report`` on mutated valid bodies (names like
  ``..``, ``/abs``, ``a/../../x``, NUL, over-long, truncated fields, huge length prefixes):
  they return or raise ``WireError``, and every name they return passes ``valid_relative``.
* ``stream``: an ``AgentStream`` around a fake process whose stdout carries random frames,
  while requests (listing, read, hello, watch, dial…) wait on it: callers get a result or
  ``AgentError``, the reader task ends with no other exception, no frame over
  ``MAX_FRAME`` is dispatched (reaching one breaks the stream), no hang.
* ``pull``: ``TwoWay._pull_rule`` (kubeloop/sync/_twoway.py) on a listing parsed from a mutated body, an agreed state
  naming paths outside the folder (``../victim.txt``, ``link/secret.txt``, absolute…), a
  local folder holding symlinks out of it, and a fake stream whose ``read`` returns random
  bytes or raises ``AgentError``: only kubeloop's errors, and afterwards nothing beside the
  folder changed (a sentinel file beside it, and the folder the symlinks point to).

Every case is made from (seed, index) alone, so any case replays by its number. Cases run
in a worker process; the parent gives each one a time limit, so a hang is caught, named
and the worker restarted.

    python -m tests.fuzz.client --cases 100000 --seed 7      # a long run by hand
    python -m tests.fuzz.client --seed 7 --show 1234         # print case 1234's input
    python -m tests.fuzz.client --seed 7 --replay 1234       # run it here, with traceback

Failing inputs are written to ``--out`` (default ``/tmp/kubeloop-fuzz-client``); paths
below the case's temporary folder appear as ``@BASE@`` in them. Crashes matching a bug
already reported (``KNOWN_BUGS``) are counted apart and do not fail the run; ``--strict``
counts them as crashes.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import shutil
import stat
import struct
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from tests.fuzz import runner as fuzz_runner
from tests.fuzz.runner import Report, worker_line

TARGETS = ("wire", "stream", "pull")
BASE = b"@BASE@"  # the case's temporary folder, filled in when the case runs
KNOWN = [b"", b"sentinel", b"from the container", b"x" * 100]
DIGESTS = [hashlib.sha256(k).hexdigest().encode() for k in KNOWN]

VALID_NAMES = [
    b"a", b"b", b"fine.txt", b"dir/b", b"dir/sub/c", b"link/planted", b"link/secret.txt",
    b"linkfile", b"linkdir/x", b"file.txt/x", b"caf\xe9.txt", b"new\nline", b" lead",
    b"..a", b"a..", b".gitignore", b"dir/.gitignore", b"x.remote-conflict",
    b".kubeloop-pull-0", b"a" * 255, b"a" * 256 + b"/x", b"a" * 300,
    b"/".join([b"d"] * 60) + b"/f", b"/".join([b"e" * 200] * 20) + b"/f",
]  # fmt: skip
HOSTILE_NAMES = [
    b"", b".", b"..", b"../victim.txt", b"../../elsewhere/secret.txt", b"/abs",
    BASE + b"/project/victim.txt", BASE + b"/elsewhere/planted", b"a/../../x",
    b"a/../../victim.txt", b"./a", b"a/.", b"a//b", b"link/..", b"link/../../victim.txt",
    b"nul\0x", b"\0", b"a/\0/b", b"/", b"//", b"a/", b"\xff\xfe", b"a" * 4097,
    b"a/" * 2049,
]  # fmt: skip
# Bugs found and reported, not yet fixed in kubeloop: a crash whose traceback holds all of
# a signature's strings is counted as that known bug, not as a new crash (see
# tests/unit/test_client_fuzz.py, where each one is also replayed as a strict xfail).
KNOWN_BUGS: dict[str, tuple[str, ...]] = {
    # None open. Found and fixed so far (regression tests in test_client_fuzz.py):
    # ENAMETOOLONG from Ignore.excluded in _pull_rule ("in _spec_for", "File name too
    # long"), and IsADirectoryError from a .gitignore the container made a folder.
}
# Frame ops the client knows, and a few it does not.
OPS = b"AEFHVhfCdxkZaRBNPQUTIKSWMLOcDz\x00\xff"


def u16(n: int) -> bytes:
    return struct.pack(">H", n & 0xFFFF)


def text(rng: random.Random, raw: bytes, lie: bool = True) -> bytes:
    """A length-prefixed string, sometimes with a lying length."""
    roll = rng.random() if lie else 1.0
    if roll < 0.01:
        return u16(0xFFFF) + raw
    if roll < 0.02:
        return u16(len(raw) + rng.randint(1, 9)) + raw
    if roll < 0.03 and raw:
        return u16(len(raw) - 1) + raw
    return u16(len(raw)) + raw


def name(rng: random.Random) -> bytes:
    if rng.random() < 0.03:  # over MAX_STRING: refused as a whole body
        return rng.choice([b"a" * 4097, b"a/" * 2049])
    return rng.choice(VALID_NAMES if rng.random() < 0.55 else HOSTILE_NAMES[:-2])


def digest(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.6:
        return rng.choice(DIGESTS)
    if roll < 0.75:
        return bytes(rng.choice(b"0123456789abcdef") for _ in range(64))
    if roll < 0.85:
        return b""
    return rng.randbytes(rng.choice([1, 63, 65, 300, 5000]))


def mode(rng: random.Random) -> int:
    return rng.choice([0o644, 0o755, 0o4777, 0o7777, 0, 0xFFFFFFFF, rng.getrandbits(32)])


def listing_body(rng: random.Random) -> bytes:
    """Entries with valid and hostile names; half the bodies are well formed, the other
    half have lying lengths and mutations too."""
    lie = rng.random() < 0.5
    parts = []
    for _ in range(rng.randint(0, 12)):
        kind = rng.choice(b"FFFFFDDLLZ\x00")
        parts.append(bytes([kind]) + struct.pack(">I", mode(rng)) + text(rng, name(rng), lie)
                     + text(rng, digest(rng), lie))  # fmt: skip
    return mutate(b"".join(parts), rng) if lie else b"".join(parts)


def report_body(rng: random.Random) -> bytes:
    lie = rng.random() < 0.5
    parts = [bytes([rng.choice([0, 0, 0, 0, 1, 2, 3, 255])]) + text(rng, name(rng), lie)
             for _ in range(rng.randint(0, 10))]  # fmt: skip
    return mutate(b"".join(parts), rng)


def mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.choice([0, 0, 0, 1, 1, 2, 4])):
        at = rng.randint(0, len(buf))
        op = rng.randrange(6)
        if op == 0 and buf:  # flip a bit
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1:  # truncate
            del buf[at:]
        elif op == 2 and buf:  # delete a span
            del buf[at : at + rng.randint(1, 16)]
        elif op == 3:  # insert random bytes
            buf[at:at] = rng.randbytes(rng.randint(1, 8))
        elif op == 4:  # insert a name
            buf[at:at] = name(rng)
        else:  # a huge length prefix
            buf[at:at] = rng.choice([b"\xff\xff", b"\xff\xff\xff\xff", b"\x00\x00"])
    return bytes(buf)


# --- cases -------------------------------------------------------------------------------


def case(seed: int, index: int) -> dict[str, Any]:
    """The input of case ``index``: from (seed, index) alone."""
    rng = random.Random(f"{seed}:{index}")
    target = TARGETS[index % len(TARGETS)]
    if target == "wire":
        return {"target": target, "listing": listing_body(rng), "report": report_body(rng)}
    if target == "stream":
        return stream_case(rng)
    return pull_case(rng)


REQUESTS = ["listing", "listing_of", "read", "hello", "watch", "ping", "dns", "resolv_conf",
            "dial", "steal", "signal", "bind"]  # fmt: skip


def stream_case(rng: random.Random) -> dict[str, Any]:
    requests = [rng.choice(REQUESTS) for _ in range(rng.randint(1, 5))]
    limits = [rng.choice([0, 1, 10, 1000, 1 << 20]) for _ in requests]
    frames: list[tuple[int, int, int | None, bytes]] = []  # op, ident, lying length, body
    for _ in range(rng.randint(0, 14)):
        op = rng.choice(OPS)
        ident = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 0xFFFFFFFF, rng.getrandbits(32)])
        roll = rng.random()
        if chr(op) in "HS" or roll < 0.2:
            body = listing_body(rng)
        elif chr(op) == "C" or roll < 0.35:
            body = report_body(rng)
        elif chr(op) == "a" or roll < 0.45:
            peer = rng.randbytes(rng.randint(0, 20))
            body = mutate(u16(rng.getrandbits(16)) + text(rng, peer), rng)
        elif chr(op) == "V" or roll < 0.5:
            body = rng.choice([b"kubeloop-agent 2", b"kubeloop-agent 1", b"\xff" * 40])
        elif chr(op) == "k":
            body = mutate(struct.pack(">I", rng.getrandbits(32)), rng)
        else:
            body = rng.randbytes(rng.choice([0, 0, 1, 4, 100, 2000]))
        length = None
        if rng.random() < 0.05:  # oversized, or longer than what follows
            length = rng.choice([(1 << 20) + (64 << 10) + 1, 0xFFFFFFFF, len(body) + 5])
        frames.append((op, ident, length, body))
    if rng.random() < 0.03:  # a flood of empty pieces of one long reply (bounded: see
        # the quadratic cost reported in the tests' notes; 40,000 such frames take 12 s)
        frames += [(ord(rng.choice("hf")), rng.choice([1, 9]), None, b"")] * rng.randint(100, 1000)
    garbage = rng.randbytes(rng.randint(1, 8)) if rng.random() < 0.1 else b""
    chunks = rng.choice([0, 0, 1, 7, 64, 64, 4096, 4096]) if rng.random() < 0.5 else 0
    return {"target": "stream", "requests": requests, "limits": limits, "frames": frames,
            "garbage": garbage, "chunks": chunks}  # fmt: skip


def pull_case(rng: random.Random) -> dict[str, Any]:
    local = {}
    for _ in range(rng.randint(0, 6)):  # files the developer has
        local[name(rng)] = rng.choice([*KNOWN, b"mine", b"@DIR@"])
    agreed = {}
    for _ in range(rng.randint(0, 8)):
        agreed[name(rng)] = rng.choice([d.decode() for d in DIGESTS] + ["0" * 64])
    reads = []
    for _ in range(rng.randint(1, 6)):
        roll = rng.random()
        reads.append(None if roll < 0.2 else rng.choice(KNOWN) if roll < 0.8
                     else rng.randbytes(rng.randint(0, 3000)))  # fmt: skip
    scope = None
    if rng.random() < 0.4:
        scope = sorted({name(rng).decode(errors="surrogateescape")
                        for _ in range(rng.randint(1, 4))})  # fmt: skip
    return {"target": "pull", "listing": listing_body(rng), "local": local, "agreed": agreed,
            "reads": reads, "scope": scope, "excludes": rng.random() < 0.2,
            "scanned": rng.random() < 0.5}  # fmt: skip


# --- running a case ------------------------------------------------------------------------


class Failure(Exception):
    """A broken promise that is not an exception of kubeloop's code (an escape, a name
    that should have been refused)."""


def run_wire(data: dict[str, Any]) -> str:
    from kubeloop.agent._wire import WireError, parse_listing, parse_report, valid_relative

    outcome = "ok"
    try:
        entries, _refused = parse_listing(data["listing"])
        for rel, entry in entries.items():
            if not valid_relative(rel) or entry.kind not in ("F", "D", "L"):
                raise Failure(f"parse_listing returned {rel!r}: {entry}")
            if entry.mode > 0o7777:
                raise Failure(f"parse_listing kept mode {entry.mode:o} for {rel!r}")
    except WireError:
        outcome = "refused"
    try:
        paths, _resync, _ended, _refused = parse_report(data["report"])
        bad = [p for p in paths if not valid_relative(p)]
        if bad:
            raise Failure(f"parse_report returned {bad!r}")
    except WireError:
        outcome = "refused"
    return outcome


class FakeWriter:
    def __init__(self) -> None:
        self.sent = bytearray()

    def write(self, data: bytes) -> None:
        self.sent += data

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        pass


class FakeProcess:
    def __init__(self) -> None:
        self.stdin = FakeWriter()
        self.stdout = asyncio.StreamReader()
        self.stderr = None
        self.returncode: int | None = None

    def kill(self) -> None:
        if self.returncode is None:
            self.returncode = -9

    async def wait(self) -> int:
        return self.returncode if self.returncode is not None else 0


def wire_frames(data: dict[str, Any]) -> tuple[bytes, int | None]:
    """The stdout bytes, and the position of the first oversized frame (or None)."""
    from kubeloop.agent._wire import HEADER, MAX_FRAME

    out = bytearray()
    oversized = None
    in_step = True  # no earlier frame lied about its length: this header is read as one
    for position, (op, ident, length, body) in enumerate(data["frames"]):
        declared = len(body) if length is None else length
        if declared > MAX_FRAME and oversized is None and in_step:
            oversized = position
        in_step = in_step and declared == len(body)
        out += HEADER.pack(op, ident, declared) + body
    return bytes(out) + data["garbage"], oversized


async def run_stream(data: dict[str, Any]) -> str:
    from kubeloop.agent import AgentStream, valid_relative
    from kubeloop.agent._wire import MAX_FRAME
    from kubeloop.errors import KubeloopError

    process = FakeProcess()
    stream = AgentStream(process, "fuzz", reply_timeout=5)  # type: ignore[arg-type]
    reports: list[Any] = []
    accepted: list[Any] = []
    dispatched: list[int] = []
    original = stream._dispatch

    def dispatch(op: str, ident: int, body: bytes) -> None:
        if len(body) > MAX_FRAME:
            raise Failure(f"a frame of {len(body)} bytes was dispatched")
        original(op, ident, body)
        dispatched.append(len(body))

    stream._dispatch = dispatch  # type: ignore[method-assign]
    if len(data["requests"]) % 2:
        stream.on_accept = lambda channel, port, peer: accepted.append((channel, port, peer))

    def request(what: str, limit: int) -> Any:
        calls = {
            "listing": lambda: stream.listing("/app"),
            "listing_of": lambda: stream.listing_of("/app", ["a", "b/c"]),
            "read": lambda: stream.read("/app/x", limit),
            "hello": stream.hello,
            "watch": lambda: stream.watch("/app", reports.append),
            "ping": stream.ping,
            "dns": lambda: stream.dns(b"\x00\x01query"),
            "resolv_conf": stream.resolv_conf,
            "dial": lambda: stream.dial("db:5432", timeout=5),
            "steal": lambda: stream.steal(8080, "10.0.0.1"),
            "signal": lambda: stream.signal(1),
            "bind": lambda: stream.bind("/app"),
        }
        return asyncio.ensure_future(calls[what]())

    tasks = [request(what, limit) for what, limit in zip(data["requests"], data["limits"],
                                                          strict=True)]  # fmt: skip
    for _ in range(3):  # every request is framed and pending before the replies come
        await asyncio.sleep(0)
    raw, oversized = wire_frames(data)
    step = data["chunks"] or len(raw) or 1
    for start in range(0, len(raw), step):
        process.stdout.feed_data(raw[start : start + step])
        await asyncio.sleep(0)
    process.stdout.feed_eof()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.wait([stream._replies], timeout=5)
    outcome = "ok"
    try:
        if not stream._replies.done():
            raise Failure("the reply reader is still running after the end of the stream")
        if stream._replies.exception() is not None:
            raise stream._replies.exception()  # type: ignore[misc]
        for what, result in zip(data["requests"], results, strict=True):
            if isinstance(result, KubeloopError):
                outcome = "refused"
            elif isinstance(result, BaseException):
                raise result
            elif what in ("listing", "listing_of"):
                bad = [rel for rel in result if not valid_relative(rel)]
                if bad:
                    raise Failure(f"{what} returned {bad!r}")
        for report in reports:
            bad = [rel for rel in report.paths if not valid_relative(rel)]
            if bad:
                raise Failure(f"a watch report named {bad!r}")
        if oversized is not None and len(dispatched) == oversized:
            # Every frame before the oversized one went through: it must be refused.
            if "at most" not in (stream._broken or ""):
                raise Failure(f"an oversized frame was not refused ({stream._broken!r})")
            if process.returncode is None:
                raise Failure("an oversized frame did not close the stream")
    finally:
        await stream.close()
        for channel, _port, _peer in accepted:
            channel.abort()
    return outcome


def fill(raw: bytes, base: Path) -> str:
    return os.fsdecode(raw.replace(BASE, os.fsencode(base)))


def snapshot(base: Path, skip: Path) -> dict[str, tuple[Any, ...]]:
    """Every path under ``base`` but ``skip`` (the sync folder): type, mode, content."""
    seen: dict[str, tuple[Any, ...]] = {}
    for folder, dirs, files in os.walk(base):
        if Path(folder) == skip or skip in Path(folder).parents:
            dirs.clear()
            continue
        for entry in [*dirs, *files]:
            path = os.path.join(folder, entry)
            if Path(path) == skip:
                seen[path] = ("sync folder",)
                continue
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                seen[path] = ("link", os.readlink(path))
            elif stat.S_ISREG(info.st_mode):
                seen[path] = ("file", info.st_mode, Path(path).read_bytes())
            else:
                seen[path] = ("other", info.st_mode)
    return seen


def prepare(base: Path) -> tuple[Path, dict[str, tuple[Any, ...]]]:
    """base/project/src (the sync folder, with symlinks out of it), a sentinel beside it
    and a folder elsewhere; returns the folder and a snapshot of everything else."""
    for child in base.iterdir():
        if child.is_dir() and not child.is_symlink():
            for folder, dirs, _files in os.walk(child):  # chmod'ed folders can be removed
                for entry in dirs:
                    with_path = os.path.join(folder, entry)
                    if not os.path.islink(with_path):
                        os.chmod(with_path, 0o755)
            shutil.rmtree(child)
        else:
            child.unlink()
    local = base / "project" / "src"
    local.mkdir(parents=True)
    (base / "project" / "victim.txt").write_bytes(b"sentinel")
    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secret.txt").write_bytes(b"sentinel")
    (local / "link").symlink_to(elsewhere)
    (local / "linkfile").symlink_to(base / "project" / "victim.txt")
    (local / "linkdir").symlink_to("../../elsewhere")
    (local / "file.txt").write_bytes(b"")
    return local, snapshot(base, local)


class FakeStream:
    """What _pull_rule uses of an AgentStream: ``read``, scripted by the case."""

    def __init__(self, reads: list[bytes | None]) -> None:
        self.reads = reads
        self.calls = 0

    async def read(self, path: str, limit: int = 64 << 20) -> bytes:
        from kubeloop.agent import AgentError

        answer = self.reads[self.calls % len(self.reads)]
        self.calls += 1
        await asyncio.sleep(0)
        if answer is None:
            raise AgentError(f"read {path}: no such file")
        return answer


async def run_pull(data: dict[str, Any], base: Path) -> str:
    from kubeloop.agent._wire import WireError, parse_listing
    from kubeloop.cluster import ClusterInfo
    from kubeloop.errors import KubeloopError
    from kubeloop.sync import Syncer, SyncRule

    local, _ = prepare(base)
    for raw, content in data["local"].items():
        rel = os.fsdecode(raw)
        if not rel or rel.startswith("/") or "\0" in rel or ".." in rel.split("/"):
            continue  # the developer's own files are inside the folder
        path = local / rel
        try:
            if any(p.is_symlink() for p in [path, *path.parents] if local in p.parents):
                continue  # never through the symlinks out of the folder
            if content == b"@DIR@":
                path.mkdir(parents=True, exist_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
        except OSError:
            pass  # a name the local file system cannot hold; the case goes on
    before = snapshot(base, local)
    try:
        remote, _refused = parse_listing(data["listing"])
    except WireError:
        remote = {}
    excludes = ("dir/",) if data["excludes"] else ()
    rule = SyncRule(local, "/app", excludes, two_way=True)
    syncer = Syncer(None, ClusterInfo("t", "native", "", ""), "ns", "", [rule])  # type: ignore[arg-type]
    state = syncer.states[0]
    state.agreed_known = True
    state.agreed = {fill(k, base): v for k, v in data["agreed"].items()}
    if not data["scanned"]:
        state.local = {}
    scope = None if data["scope"] is None else {fill(os.fsencode(s), base) for s in data["scope"]}
    outcome = "ok"
    try:
        await syncer.twoway._pull_rule(FakeStream(data["reads"]), state, remote, scope)  # type: ignore[arg-type]
    except KubeloopError:
        outcome = "refused"
    after = snapshot(base, local)
    if after != before:
        changed = sorted(
            set(before) ^ set(after) | {p for p in before if before[p] != after.get(p)}
        )
        raise Failure(f"changed outside the sync folder: {changed[:5]}")
    if not local.is_dir() or local.is_symlink():
        raise Failure("the sync folder itself was replaced")
    return outcome


def run_case(data: dict[str, Any], base: Path, runner: asyncio.Runner) -> tuple[str, str]:
    """(outcome, '') when kubeloop behaved; ('crash', traceback) when it raised anything
    but kubeloop's error or broke a promise."""
    errors: list[str] = []

    def on_loop_error(loop: Any, context: dict[str, Any]) -> None:
        from kubeloop.errors import KubeloopError

        exc = context.get("exception")
        if not isinstance(exc, KubeloopError):  # a background task died of something else
            errors.append("".join(traceback.format_exception(exc)) if exc else str(context))

    runner.get_loop().set_exception_handler(on_loop_error)
    try:
        if data["target"] == "wire":
            outcome = run_wire(data)
        elif data["target"] == "stream":
            outcome = runner.run(run_stream(data))
        else:
            outcome = runner.run(run_pull(data, base))
    except BaseException:  # this is what we hunt: any other exception
        return "crash", traceback.format_exc()
    if errors:
        return "crash", errors[0]
    return f"{data['target']}-{outcome}", ""


def worker(seed: int, start: int, stop: int) -> None:
    """Run cases [start, stop); one line per case on stdout: 'INDEX OUTCOME' or
    'INDEX crash BASE64-TRACEBACK'."""
    with tempfile.TemporaryDirectory() as folder, asyncio.Runner() as runner:
        base = Path(folder)
        for index in range(start, stop):
            status, failure = run_case(case(seed, index), base, runner)
            worker_line(index, status, failure)
        prepare(base)  # chmod'ed folders: leave nothing the cleanup cannot remove


def fuzz(cases: int, seed: int, limit: float = 2.0, out: Path | None = None,
         known: dict[str, tuple[str, ...]] | None = None) -> Report:  # fmt: skip
    """Run ``cases`` cases (see tests/fuzz/runner.py); failing inputs go to ``out``."""
    report = fuzz_runner.fuzz("tests.fuzz.client", cases, seed, limit, known)
    if out is not None and report.failing():
        out.mkdir(parents=True, exist_ok=True)
        for index in report.failing():
            (out / f"case-{seed}-{index}.txt").write_text(repr(case(seed, index)) + "\n")
    return report


def replay(seed: int, index: int) -> int:
    with tempfile.TemporaryDirectory() as folder, asyncio.Runner() as runner:
        started = time.monotonic()
        status, failure = run_case(case(seed, index), Path(folder), runner)
        print(f"case {index}: {status} in {time.monotonic() - started:.2f}s")
        if failure:
            print(failure)
        prepare(Path(folder))
    return 1 if status == "crash" else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.client", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--limit", type=float, default=2.0, help="seconds per case")
    parser.add_argument("--out", type=Path,
                        default=Path(tempfile.gettempdir()) / "kubeloop-fuzz-client")  # fmt: skip
    parser.add_argument(
        "--strict", action="store_true", help="count the known, reported bugs as crashes too"
    )
    parser.add_argument("--show", type=int, help="print one case's input and exit")
    parser.add_argument("--replay", type=int, help="run one case here and print its outcome")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.show is not None:
        print(repr(case(args.seed, args.show)))
        return 0
    if args.replay is not None:
        return replay(args.seed, args.replay)
    if args.worker:
        worker(args.seed, args.start, args.cases)
        return 0
    report = fuzz(args.cases, args.seed, args.limit, args.out,
                  known=None if args.strict else KNOWN_BUGS)  # fmt: skip
    print(report.summary())
    for index, tb in sorted(report.crashes.items())[:3]:
        print(f"--- case {index} (replay: --seed {args.seed} --replay {index})\n{tb}")
    if report.failing():
        print(f"failing inputs written to {args.out}")
    return 1 if report.crashes or report.hangs else 0


if __name__ == "__main__":
    sys.exit(main())
