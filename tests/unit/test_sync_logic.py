import json
from pathlib import Path

import pytest

from kubeloop.config import SyncSpec
from kubeloop.sync import Ignore, scan
from kubeloop.sync._state import _topmost, _within
from kubeloop.sync.devmode import AGENT, ORIGINAL, inject_supervisor


def test_topmost_deletes_only_the_parent() -> None:
    assert _topmost(["a", "a/b", "a/b/c", "b/x", "ab"]) == ["a", "ab", "b/x"]


def test_a_change_report_scopes_what_counts_as_deleted() -> None:
    # The agent reported "db" (a folder removed) and "a.py": only paths at or under those
    # may be taken as deleted when absent from the scoped listing.
    scope = {"db", "a.py"}
    assert _within("db", scope) and _within("db/x/0001.sql", scope) and _within("a.py", scope)
    assert not _within("dbx/file", scope) and not _within("a.pyc", scope)
    assert _within("anything/at/all", None)  # a full listing decides everything


def test_ignore_rules_nested_gitignore_dockerignore_and_excludes(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "build").mkdir(parents=True)
    (tmp_path / ".gitignore").write_text("*.log\n")
    (tmp_path / "pkg" / ".gitignore").write_text("build/\n!keep.log\n")
    (tmp_path / ".dockerignore").write_text("secret.txt\n")
    for name in ("a.py", "a.log", "secret.txt", "x.tmp", "pkg/b.py", "pkg/keep.log",
                 "pkg/build/out.o", ".git/HEAD", "__pycache__/m.pyc"):  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    files = {rel for rel, e in scan(tmp_path, Ignore(tmp_path, ["*.tmp"])).items() if e.kind == "F"}
    assert files == {"a.py", ".gitignore", ".dockerignore", "pkg/b.py", "pkg/keep.log",
                     "pkg/.gitignore"}  # fmt: skip


async def test_supervisor_injection_records_the_original(monkeypatch: pytest.MonkeyPatch) -> None:
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "r/web:1",
                                                       "command": ["python"], "args": ["s.py"]}]}}},
    }  # fmt: skip
    original = json.loads(json.dumps(deployment["spec"]["template"]))  # type: ignore[index]
    spec = SyncSpec.model_validate({"selector": {"app": "web"}, "src": "app", "dest": "/app",
                                    "restart": "process"})  # fmt: skip
    changed = await inject_supervisor([deployment], [spec], "r/agent:1", "r")
    assert changed == ["deployment/web"]
    pod = deployment["spec"]["template"]["spec"]  # type: ignore[index]
    assert pod["containers"][0]["command"] == [AGENT, "supervise", "--", "python", "s.py"]
    assert pod["initContainers"][0]["image"] == "r/agent:1"
    assert json.loads(deployment["metadata"]["annotations"][ORIGINAL]) == original  # type: ignore[index]
    # A second pass changes nothing (already supervised).
    assert await inject_supervisor([deployment], [spec], "r/agent:1", "r") == []
