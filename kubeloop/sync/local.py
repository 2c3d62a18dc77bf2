"""The local side: which files a sync rule covers (with .gitignore files at every level,
.dockerignore and the rule's excludes), and their content hashes."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import pathspec

ALWAYS_EXCLUDED = (".git/", "__pycache__/", "*.pyc", ".kubeloop-*")


@dataclass(frozen=True)
class LocalEntry:
    kind: str  # "F", "D" or "L"
    mode: int
    digest: str  # sha256 (files) or link target (symlinks)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Ignore:
    """Answers 'is this path excluded?' the way git and docker would."""

    def __init__(self, root: Path, excludes: list[str]) -> None:
        self.root = root
        patterns = list(ALWAYS_EXCLUDED) + list(excludes)
        dockerignore = root / ".dockerignore"
        if dockerignore.exists():
            patterns += dockerignore.read_text().splitlines()
        self.base = pathspec.GitIgnoreSpec.from_lines(patterns)
        self.nested: dict[Path, pathspec.GitIgnoreSpec] = {}

    def _spec_for(self, folder: Path) -> pathspec.GitIgnoreSpec | None:
        if folder not in self.nested:
            gitignore = folder / ".gitignore"
            self.nested[folder] = (pathspec.GitIgnoreSpec.from_lines(gitignore.read_text().splitlines())
                                   if gitignore.exists() else pathspec.GitIgnoreSpec([]))  # fmt: skip
        return self.nested[folder]

    def forget(self, folder: Path) -> None:
        self.nested.pop(folder, None)

    def excluded(self, path: Path, is_dir: bool) -> bool:
        relative = path.relative_to(self.root).as_posix() + ("/" if is_dir else "")
        if self.base.match_file(relative):
            return True
        # Each .gitignore applies to its own folder and below, with paths relative to it.
        folder = path.parent
        while True:
            spec = self._spec_for(folder)
            if spec is not None and spec.match_file(path.relative_to(folder).as_posix()
                                                    + ("/" if is_dir else "")):  # fmt: skip
                return True
            if folder == self.root or self.root not in folder.parents:
                return False
            folder = folder.parent


def entry_of(path: Path) -> LocalEntry | None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    if path.is_symlink():
        return LocalEntry("L", 0, os.readlink(path))
    if path.is_dir():
        return LocalEntry("D", info.st_mode & 0o7777, "")
    if path.is_file():
        return LocalEntry("F", info.st_mode & 0o7777, file_digest(path))
    return None


def scan(root: Path, ignore: Ignore) -> dict[str, LocalEntry]:
    entries: dict[str, LocalEntry] = {}
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        kept = []
        for name in sorted(dirs):
            child = here / name
            if ignore.excluded(child, True):
                continue
            if child.is_symlink():
                entries[child.relative_to(root).as_posix()] = LocalEntry("L", 0, os.readlink(child))
                continue
            kept.append(name)
            entries[child.relative_to(root).as_posix()] = LocalEntry(
                "D", child.stat().st_mode & 0o7777, ""
            )
        dirs[:] = kept
        for name in files:
            child = here / name
            if ignore.excluded(child, False):
                continue
            entry = entry_of(child)
            if entry is not None:
                entries[child.relative_to(root).as_posix()] = entry
    return entries
