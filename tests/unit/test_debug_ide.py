"""The IDE side of ``kubeloop debug``: source mappings from sync rules, and the merge
into .vscode/launch.json that keeps everything the user wrote there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubeloop.config import SyncSpec
from kubeloop.debug import merge_launch_json, vscode_config, write_launch_json
from kubeloop.debug._ide import path_mappings, strip_jsonc
from kubeloop.errors import KubeloopError

ENTRY = vscode_config("web", 5678, [("/home/me/app", "/app")])

USERS_FILE = """\
{
    // my notes: keep these
    "version": "0.2.0",
    "configurations": [
        {
            "name": "Local: server", /* inline */
            "type": "debugpy",
            "request": "launch",
            "program": "server.py", // trailing comma next
        },
    ],
    "compounds": []
}
"""


def configurations(text: str) -> list[dict[str, object]]:
    return list(json.loads(strip_jsonc(text))["configurations"])


def sync(selector: dict[str, str], src: str, dest: str, container: str | None = None) -> SyncSpec:
    return SyncSpec.model_validate({"selector": selector, "src": src, "dest": dest,
                                    "container": container})  # fmt: skip


def test_mappings_come_from_the_sync_rules_that_land_in_the_container(tmp_path: Path) -> None:
    rules = [
        sync({"app": "web"}, "app", "/app"),
        sync({"app": "web"}, "lib", "/lib", container="web"),
        sync({"app": "web"}, "side", "/side", container="sidecar"),
        sync({"app": "db"}, "db", "/db"),
    ]
    found = path_mappings(rules, tmp_path, {"app": "web", "pod-template-hash": "x"}, "web", True)
    assert found == [(str(tmp_path / "app"), "/app"), (str(tmp_path / "lib"), "/lib")]
    # A rule without a container is for the pod's first container only.
    assert path_mappings(rules, tmp_path, {"app": "web"}, "sidecar", False) == [
        (str(tmp_path / "side"), "/side")
    ]


def test_a_new_file_gets_a_complete_launch_json() -> None:
    merged = merge_launch_json("", ENTRY)
    assert json.loads(merged) == {"version": "0.2.0", "configurations": [ENTRY]}


def test_the_entry_is_added_and_every_byte_of_the_users_file_stays() -> None:
    merged = merge_launch_json(USERS_FILE, ENTRY)
    assert [c["name"] for c in configurations(merged)] == ["kubeloop: web", "Local: server"]
    assert configurations(merged)[0] == ENTRY
    # Only an insertion: removing it gives the user's file back.
    inserted = len(merged) - len(USERS_FILE)
    at = next(i for i, (a, b) in enumerate(zip(merged, USERS_FILE, strict=False)) if a != b)
    assert merged[:at] + merged[at + inserted :] == USERS_FILE


def test_a_second_run_replaces_its_own_entry_and_nothing_else() -> None:
    once = merge_launch_json(USERS_FILE, ENTRY)
    moved = vscode_config("web", 6000, [("/home/me/app", "/app")])
    twice = merge_launch_json(once, moved)
    entries = configurations(twice)
    assert [c["name"] for c in entries] == ["kubeloop: web", "Local: server"]
    assert entries[0]["connect"] == {"host": "127.0.0.1", "port": 6000}
    assert "// my notes: keep these" in twice and "/* inline */" in twice
    assert merge_launch_json(twice, moved) == twice  # idempotent


@pytest.mark.parametrize(
    "text",
    [
        '{"version": "0.2.0", "configurations": []}',
        '{"version": "0.2.0"}',
        '{"version": "0.2.0", // no list yet\n}',
        "{}",
        '{"configurations": [{"name": "a}[\\"", "type": "x"}]}',
    ],
)
def test_odd_but_valid_files_merge(text: str) -> None:
    merged = merge_launch_json(text, ENTRY)
    assert ENTRY in configurations(merged)


@pytest.mark.parametrize(
    "text",
    ['{"configurations": [', "[1, 2]", '{"configurations": {}}', "/* open", '{"a": "open'],
)
def test_broken_files_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        merge_launch_json(text, ENTRY)


def test_writing_keeps_a_broken_file_untouched(tmp_path: Path) -> None:
    launch = tmp_path / ".vscode" / "launch.json"
    launch.parent.mkdir()
    launch.write_text('{"configurations": [')
    with pytest.raises(KubeloopError, match="not valid JSON with comments"):
        write_launch_json(tmp_path, ENTRY)
    assert launch.read_text() == '{"configurations": ['
    assert not list(launch.parent.glob("*partial*"))


def test_writing_creates_and_then_merges(tmp_path: Path) -> None:
    path = write_launch_json(tmp_path, ENTRY)
    assert path == tmp_path / ".vscode" / "launch.json"
    assert configurations(path.read_text()) == [ENTRY]
    path.write_text(USERS_FILE)
    write_launch_json(tmp_path, ENTRY)
    assert [c["name"] for c in configurations(path.read_text())] == [
        "kubeloop: web",
        "Local: server",
    ]
