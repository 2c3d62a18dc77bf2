""".dockerignore as Docker reads it: the cases of Docker's own documentation, and the
content tag and sync that rely on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeloop.build.docker import content_tag
from kubeloop.ignore import DockerIgnore, read_patterns
from kubeloop.sync._local import Ignore


@pytest.mark.parametrize(
    ("patterns", "excluded", "kept"),
    [
        # docs.docker.com/build/concepts/context/#dockerignore-files
        (["*/temp*"], ["somedir/temporary.txt", "somedir/temp"], ["temp", "a/b/temp"]),
        (["*/*/temp*"], ["somedir/subdir/temporary.txt"], ["somedir/temp"]),
        (["temp?"], ["tempa", "tempb"], ["temp", "tempab", "x/tempa"]),
        (["**/*.go"], ["main.go", "cmd/x/main.go"], ["main.gox"]),
        (["*.md", "!README.md"], ["CHANGES.md"], ["README.md", "docs/a.md"]),
        (
            ["*.md", "!README*.md", "README-secret.md"],
            ["README-secret.md", "a.md"],
            ["README.md", "README-2.md"],
        ),
        (["*.md", "README-secret.md", "!README*.md"], ["a.md"], ["README-secret.md", "README.md"]),
        # a folder's pattern covers what is inside; '/' at either end changes nothing
        (["node_modules"], ["node_modules", "node_modules/a/b.js"], ["src/node_modules"]),
        (["/build/"], ["build/out.o"], ["src/build/out.o"]),
        # a re-include inside an excluded folder, as the issue's `!app` case
        (["*", "!app"], ["Dockerfile.dev", "notes.txt"], ["app", "app/main.py"]),
        (["**", "!src/**/*.py"], ["src/a.txt"], ["src/a.py", "src/pkg/b.py"]),
        (["docs/**"], ["docs/a", "docs/x/y"], ["docs"]),
        (["a.b", "x[0-9]"], ["a.b", "x7"], ["axb", "xa"]),
        (["# comment", "", "  spaced.txt  "], ["spaced.txt"], ["# comment"]),
    ],
)
def test_docker_semantics(patterns: list[str], excluded: list[str], kept: list[str]) -> None:
    ignore = DockerIgnore(patterns)
    assert [p for p in excluded if not ignore.excluded(p)] == []
    assert [p for p in kept if ignore.excluded(p)] == []


def test_patterns_are_normalised_as_buildkit_does() -> None:
    assert read_patterns(["/a/", "! /b/../c", "./d//e", "#x", " "]) == ["a", "!c", "d/e"]


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_content_tag_follows_what_docker_sends(tmp_path: Path) -> None:
    root = tree(tmp_path, {".dockerignore": "*\n!app\n!Dockerfile\n", "Dockerfile": "FROM x\n",
                           "app/main.py": "v1", "notes.txt": "n1", "docs/a.md": "d1"})  # fmt: skip
    first = content_tag(root)
    (root / "notes.txt").write_text("n2")
    (root / "docs/a.md").write_text("d2")
    assert content_tag(root) == first  # left out of the context: no rebuild
    (root / "app/main.py").write_text("v2")
    assert content_tag(root) != first  # re-included by '!app': an edit is a new tag


def test_an_excluded_dockerfile_still_counts(tmp_path: Path) -> None:
    root = tree(tmp_path, {".dockerignore": "Dockerfile\n", "Dockerfile": "FROM a\n"})
    first = content_tag(root)
    (root / "Dockerfile").write_text("FROM b\n")
    assert content_tag(root) != first


def test_sync_leaves_out_what_the_image_leaves_out(tmp_path: Path) -> None:
    root = tree(tmp_path, {".dockerignore": "*.log\n!keep.log\n"})
    ignore = Ignore(root, excludes=[])
    assert ignore.excluded_rel("debug.log", False)
    assert not ignore.excluded_rel("keep.log", False)
    assert not ignore.excluded_rel("sub/debug.log", False)  # Docker's '*.log' is the root's
