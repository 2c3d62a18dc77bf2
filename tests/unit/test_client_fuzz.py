"""The agent client fuzzer's CI budget: 2,000 seeded cases (reproducible by number) over
the wire parsers, the stream reader and the two-way pull; zero exceptions other than
kubeloop's, zero hangs (2 s per case), nothing changed outside the sync folder. Longer
runs by hand: python -m tests.fuzz.client --cases 100000 --seed N.

Below, the bugs the fuzzer led to, each replayed from its exact input; one not fixed yet
is a strict xfail (when it is fixed the test fails as XPASS: drop the mark, and its entry
in ``tests.fuzz.client.KNOWN_BUGS`` if it has one)."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from pathlib import Path

from kubeloop.agent import AgentStream
from kubeloop.agent._wire import WireError, parse_listing
from kubeloop.cluster import ClusterInfo
from kubeloop.errors import KubeloopError
from kubeloop.sync import Syncer, SyncRule
from kubeloop.sync._local import Ignore
from tests.fuzz.client import KNOWN_BUGS, FakeProcess, fuzz


def test_the_agent_client_survives_2000_fuzzed_cases() -> None:
    report = fuzz(cases=2000, seed=20261125, limit=2.0, known=KNOWN_BUGS)
    assert not report.crashes and not report.hangs, report.summary()
    for outcome in ("wire-ok", "wire-refused", "stream-ok", "stream-refused", "pull-ok"):
        assert report.outcomes[outcome] > 0, report.summary()


def entry(name: bytes) -> bytes:
    digest = b"0" * 64
    return b"F" + struct.pack(">IH", 0o644, len(name)) + name + struct.pack(">H", 64) + digest


class Reads:
    def __init__(self, content: bytes) -> None:
        self.content = content

    async def read(self, path: str, limit: int = 0) -> bytes:
        return self.content


async def pull(local: Path, listing: bytes, content: bytes = b"from the container") -> None:
    """One look at the container's listing, as a fresh kubeloop would."""
    rule = SyncRule(local, "/app", two_way=True)
    syncer = Syncer(None, ClusterInfo("t", "native", "", ""), "ns", "", [rule])  # type: ignore[arg-type]
    remote, _ = parse_listing(listing)
    try:
        await syncer.twoway._pull_rule(Reads(content), syncer.states[0], remote, None)  # type: ignore[arg-type]
    except KubeloopError:
        pass


async def test_a_pulled_name_with_a_part_over_255_bytes_is_not_pulled(tmp_path: Path) -> None:
    # Found by the fuzzer (seed 7): OSError(ENAMETOOLONG) escaped Ignore.excluded.
    await pull(tmp_path, entry(b"a" * 256 + b"/x"))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


async def test_a_container_made_gitignore_folder_is_no_ignore_file(tmp_path: Path) -> None:
    # Found by the fuzzer (seed 7): Ignore read the folder, IsADirectoryError.
    await pull(tmp_path, entry(b".gitignore/x") + entry(b"b"))
    await pull(tmp_path, entry(b".gitignore/x") + entry(b"b"))  # the next look
    assert (tmp_path / ".gitignore").is_dir()


async def test_a_pulled_gitignore_that_is_not_utf8_is_read_anyway(tmp_path: Path) -> None:
    # Next to the above: a pulled .gitignore was read as strict UTF-8 (UnicodeDecodeError).
    await pull(tmp_path, entry(b".gitignore") + entry(b"b"), content=b"\xff\xfe*\n")
    await pull(tmp_path, entry(b".gitignore") + entry(b"b"), content=b"\xff\xfe*\n")


async def test_many_empty_pieces_of_a_reply_cost_linear_time() -> None:
    # The fuzzer's slowest stream cases: each piece of a long reply summed all before it,
    # so 1,000,000 empty 'h' frames (9 MB) blocked the event loop for hours.
    stream = AgentStream(FakeProcess(), "flood")  # type: ignore[arg-type]
    started = time.perf_counter()
    for _ in range(10_000):
        stream._dispatch("h", 1, b"")
    seconds = time.perf_counter() - started
    await stream.close()
    assert seconds < 0.25, f"{seconds:.2f}s"


async def test_a_deep_folder_pulled_from_the_container_is_scanned_in_reasonable_time(
    tmp_path: Path,
) -> None:
    # The fuzzer's slowest pull cases: with a .gitignore in the folder, the scan after a
    # pull was cubic in the depth (4096-byte names allow ~2000 levels: hours).
    (tmp_path / ".gitignore").write_text("*.log\n")
    started = time.perf_counter()
    await asyncio.wait_for(pull(tmp_path, entry(b"d/" * 100 + b"f")), 30)
    seconds = time.perf_counter() - started
    assert seconds < 1.0, f"{seconds:.2f}s"
    assert (tmp_path / ("d/" * 100 + "f")).read_bytes() == b"from the container"


def test_one_ignore_lookup_in_a_deep_folder_is_cheap(tmp_path: Path) -> None:
    # A scan asks this for every entry of a tree ~2000 levels deep (the most a 4096-byte
    # name from the container makes): 0.2 s each is ~400 s with the event loop blocked.
    (tmp_path / ".gitignore").write_text("*.log\n")
    ignore = Ignore(tmp_path, [])
    path = tmp_path / ("d/" * 2000 + "f")
    ignore.excluded(path, False)  # the .gitignore lookups are cached from here on
    started = time.perf_counter()
    ignore.excluded(path, False)
    seconds = time.perf_counter() - started
    assert seconds < 0.05, f"{seconds:.3f}s"


async def test_pieces_of_a_reply_nobody_asked_for_are_not_kept() -> None:
    stream = AgentStream(FakeProcess(), "hoarder")  # type: ignore[arg-type]
    try:
        for ident in range(1000, 1010):  # no request has these ids
            with contextlib.suppress(WireError):
                stream._dispatch("h", ident, b"x" * 1000)
        kept = sum(len(part) for parts in stream._partial.values() for part in parts)
    finally:
        await stream.close()
    assert kept == 0, f"{kept} bytes kept for requests never made"
