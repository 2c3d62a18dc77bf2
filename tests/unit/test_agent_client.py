"""kubeloop's agent client against the real agent binary, run locally on a folder that
stands for a container's root (``serve --root``), and against scripted hostile agents:
nothing a container sends may write outside the sync folder, delete a user's file,
hang kubeloop or put the stream out of step."""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kubeloop.agent import AgentError, AgentStream, agent_binary
from kubeloop.agent._wire import MAX_FRAME, parse_listing, parse_report, valid_relative
from kubeloop.cluster import ClusterInfo
from kubeloop.sync import PodSync, Syncer, SyncRule, _localfs

# Names a tab-separated listing could not carry (the first version lost files to them).
AWKWARD = ["tab\tname", "new\nline", "cr\rx", "ff\x0cx", "fs\x1cx", "nel\u0085x", "ls\u2028x",
           " lead", "trail ", "bad-\udcff-utf8"]  # fmt: skip


async def local_agent(root: Path, timeout: float = 10) -> AgentStream:
    binary = await agent_binary()
    process = await asyncio.create_subprocess_exec(
        str(binary), "serve", "--root", str(root),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stream = AgentStream(process, "local agent", reply_timeout=timeout)
    await stream.hello()
    stream.start_stderr_drain()
    return stream


async def fake_agent(tmp_path: Path, script: str, timeout: float = 5) -> AgentStream:
    """An agent that answers as ``script`` says: reply(op, ident, body) is given."""
    path = tmp_path / "fake_agent.py"
    path.write_text(
        textwrap.dedent("""
        import struct, sys
        r, w = sys.stdin.buffer, sys.stdout.buffer
        def reply(op, ident, body=b""):
            w.write(struct.pack(">BII", ord(op), ident, len(body)) + body); w.flush()
        def s(text):
            raw = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
            return struct.pack(">H", len(raw)) + raw
        def entry(kind, name, digest="", mode=0o644):
            return kind.encode() + struct.pack(">I", mode) + s(name) + s(digest)
        while head := r.read(9):
            op, ident, n = struct.unpack(">BII", head); body = r.read(n); op = chr(op)
            if op == "V":
                reply("V", ident, b"kubeloop-agent 2"); continue
    """)
        + textwrap.indent(textwrap.dedent(script), "    ")
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(path), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    stream = AgentStream(process, "fake agent", reply_timeout=timeout)
    await stream.hello()
    return stream


@pytest.fixture
async def container(tmp_path: Path) -> AsyncIterator[tuple[Path, AgentStream]]:
    root = tmp_path / "container"
    root.mkdir()
    stream = await local_agent(root)
    await stream.bind("/app")
    yield root, stream
    await stream.close()


def two_way_syncer(local: Path, stream: AgentStream) -> Syncer:
    rule = SyncRule(local, "/app", two_way=True)
    syncer = Syncer(None, ClusterInfo("t", "native", "", ""), "ns", "", [rule])  # type: ignore[arg-type]
    syncer.pods["pod"] = PodSync("pod", stream)
    syncer.states[0].agreed_known = True
    return syncer


def test_names_from_a_container_must_stay_below_the_folder() -> None:
    for bad in ("", "/etc/passwd", "..", "../x", "a/../../x", "a//b", "./a", "a/.", "nul\0x"):
        assert not valid_relative(bad), bad
    for good in ("a", "a/b", "..a", "a..", "new\nline", " lead"):
        assert valid_relative(good), good


def test_listings_and_reports_refuse_bad_names_and_short_bodies() -> None:
    def entry(kind: bytes, name: bytes) -> bytes:
        return kind + struct.pack(">IH", 0o644, len(name)) + name + struct.pack(">H", 0)

    body = entry(b"F", b"ok") + entry(b"F", b"../../etc/x") + entry(b"Z", b"odd")
    entries, refused = parse_listing(body)
    assert list(entries) == ["ok"] and refused == ["../../etc/x", "odd"]
    with pytest.raises(ValueError):
        parse_listing(body + b"F\x00")
    paths, resync, ended, refused = parse_report(b"\x00\x00\x01a" + b"\x00\x00\x03/..")
    assert paths == {"a"} and refused == ["/.."] and not resync and not ended


async def test_every_name_survives_the_round_trip(tmp_path: Path,
                                                  container: tuple[Path, AgentStream]) -> None:  # fmt: skip
    root, stream = container
    ops: list[Any] = [("W", f"/app/{name}", 0o640, name.encode("utf-8", "surrogateescape"))
                      for name in AWKWARD]  # fmt: skip
    await stream.wait_all(await stream.send_many(ops), "write")
    listing = await stream.listing("/app")
    assert sorted(listing) == sorted(AWKWARD)
    assert all(listing[n].mode == 0o640 for n in AWKWARD)
    assert set(os.listdir(os.fsencode(root / "app"))) == {os.fsencode(n) for n in AWKWARD}


async def test_a_growing_file_cannot_desynchronise_the_stream(
    tmp_path: Path, container: tuple[Path, AgentStream]
) -> None:
    root, stream = container
    source = tmp_path / "grows.bin"
    source.write_bytes(os.urandom(3 << 20))

    class Growing(type(source)):  # type: ignore[misc]
        def open(self, *args: Any, **kwargs: Any) -> Any:
            handle = super().open(*args, **kwargs)
            with open(self, "ab") as more:  # grows after kubeloop looked at it
                more.write(b"\n--- appended: W injected frame ---\n" * 2000)
            return handle

    sent = await stream.send_many([("W", "/app/grows.bin", 0o644, Growing(source)),
                                   ("W", "/app/after.txt", 0o644, b"still in step")])  # fmt: skip
    await stream.wait_all(sent, "write")
    arrived = (root / "app" / "grows.bin").read_bytes()
    assert hashlib.sha256(arrived).hexdigest() == sent.digests["/app/grows.bin"]
    assert (root / "app" / "after.txt").read_bytes() == b"still in step"
    assert await stream.read("/app/after.txt") == b"still in step"


async def test_a_local_name_that_is_not_utf8_is_sent(tmp_path: Path,
                                                     container: tuple[Path, AgentStream]) -> None:  # fmt: skip
    root, stream = container
    local = tmp_path / "src"
    local.mkdir()
    (local / os.fsdecode(b"caf\xe9.txt")).write_text("latin-1 name")
    rule = SyncRule(local, "/app")
    syncer = Syncer(None, ClusterInfo("t", "native", "", ""), "ns", "", [rule])  # type: ignore[arg-type]
    sent = await syncer._initial(stream, syncer.states[0])
    assert sent == 1
    assert (root / "app" / os.fsdecode(b"caf\xe9.txt")).read_text() == "latin-1 name"


async def test_pull_keeps_awkward_names_and_deletes_nothing(
    tmp_path: Path, container: tuple[Path, AgentStream]
) -> None:
    root, stream = container
    local = tmp_path / "src"
    local.mkdir()
    for name in AWKWARD:
        (local / name).write_bytes(os.fsencode(name))
    syncer = two_way_syncer(local, stream)
    await syncer._initial(stream, syncer.states[0])
    (root / "app" / "new\nfrom app").write_text("made in the container")
    await syncer.pull()
    assert sorted(os.listdir(local)) == sorted([*AWKWARD, "new\nfrom app"])
    assert (local / "new\nfrom app").read_text() == "made in the container"


async def test_a_hostile_listing_writes_and_deletes_nothing_outside(tmp_path: Path) -> None:
    local = tmp_path / "project" / "src"
    local.mkdir(parents=True)
    victim = tmp_path / "project" / "victim.txt"
    victim.write_text("")  # empty: its digest is known to anyone
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (local / "link").symlink_to(outside)
    empty = hashlib.sha256(b"").hexdigest()
    stream = await fake_agent(
        tmp_path,
        f"""
        if op == "H":
            reply("H", ident, entry("F", "../victim.txt", "{"0" * 64}", 0o4777)
                  + entry("F", "/abs", "{"1" * 64}") + entry("F", "link/planted", "{"2" * 64}")
                  + entry("F", "fine.txt", "{"3" * 64}", 0o4777))
        elif op == "R":
            reply("F", ident, b"from the container")
        else:
            reply("A", ident)
    """,
    )
    syncer = two_way_syncer(local, stream)
    syncer.states[0].agreed = {"../victim.txt": empty}  # as if it had been agreed
    try:
        events = await syncer.pull()
    finally:
        await stream.close()
    assert victim.exists() and victim.read_text() == ""
    assert list(outside.iterdir()) == [] and not Path("/abs").exists()
    assert (local / "fine.txt").read_text() == "from the container"
    assert (local / "fine.txt").stat().st_mode & 0o7777 == 0o777  # no setuid from a container
    assert any("link/planted" in e and "not followed" in e for e in events), events


async def test_an_oversized_or_silent_agent_closes_the_stream(tmp_path: Path) -> None:
    big = await fake_agent(
        tmp_path,
        f"""
        reply("H", ident, b"x" * {MAX_FRAME + 1})
    """,
    )
    with pytest.raises(AgentError, match="at most"):
        await big.listing("/app")
    assert not big.alive
    await big.close()
    silent = await fake_agent(tmp_path, "pass", timeout=0.3)
    with pytest.raises(AgentError, match="no answer"):
        await silent.listing("/app")
    assert not silent.alive
    await silent.close()


async def test_a_local_save_during_a_pull_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "f.py").write_text("agreed")
    agreed = hashlib.sha256(b"agreed").hexdigest()
    assert _localfs.replace_if_unchanged(tmp_path, "f.py", b"theirs", 0o644, agreed)
    assert (tmp_path / "f.py").read_text() == "theirs"
    # The developer saved in the instant before the swap: theirs stays, nothing is lost.
    (tmp_path / "f.py").write_text("mine, just saved")
    assert not _localfs.replace_if_unchanged(tmp_path, "f.py", b"theirs v2", 0o644, agreed)
    assert (tmp_path / "f.py").read_text() == "mine, just saved"
    # A file that appeared locally in the meantime is not replaced either.
    (tmp_path / "new.py").write_text("mine")
    assert not _localfs.replace_if_unchanged(tmp_path, "new.py", b"theirs", 0o644, None)
    assert (tmp_path / "new.py").read_text() == "mine"
    assert not _localfs.remove_if_unchanged(tmp_path, "new.py", agreed)
    assert (tmp_path / "new.py").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.py", "new.py"]  # no leftovers


def test_the_agent_passes_its_own_tests_and_fuzzer() -> None:
    """The Go side: regression tests for every reproduced case plus a bounded, seeded
    mutation run (TestMutatedSessions) and the fuzz seeds; ``go test -fuzz FuzzServe``
    runs it longer by hand."""
    import subprocess

    from kubeloop.agent._version import SOURCE

    env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
    result = subprocess.run(["go", "test", "-count=1", "./..."], cwd=SOURCE, env=env,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_an_agent_that_is_starting_is_shared_not_doubled() -> None:
    """Two sessions attaching at once: the second sees the first's ephemeral container in
    the spec before its status exists, and must use it (two routers in one pod would
    fight over the pod's redirects)."""
    from kubeloop.agent._attach import NET, _agent_name

    first = _agent_name({"spec": {}, "status": {}}, "web", NET)
    starting = {"spec": {"ephemeralContainers": [{"name": first}]}, "status": {}}
    assert _agent_name(starting, "web", NET) == first
    ended = {**starting, "status": {"ephemeralContainerStatuses": [
        {"name": first, "state": {"terminated": {"exitCode": 1}}}]}}  # fmt: skip
    assert _agent_name(ended, "web", NET) == f"{first}-2"
