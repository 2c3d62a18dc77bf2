"""The local side: which files a sync rule covers (with .gitignore files at every level,
.dockerignore and the rule's excludes), and their content hashes."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pathspec

from kubeloop.files import sha256_of
from kubeloop.ignore import DockerIgnore

ALWAYS_EXCLUDED = (
    ".git/",
    "__pycache__/",
    "*.pyc",
    ".kubeloop-*",
    "*.kubeloop-tmp",
    "*.remote-conflict",
    "*.kubeloop-kept",
)


@dataclass(frozen=True)
class LocalEntry:
    kind: str  # "F", "D" or "L"
    mode: int
    digest: str  # sha256 (files) or link target (symlinks)


class Ignore:
    """Answers 'is this path excluded?' the way git and docker would."""

    def __init__(self, root: Path, excludes: list[str]) -> None:
        self.root = root
        self.base = pathspec.GitIgnoreSpec.from_lines(list(ALWAYS_EXCLUDED) + list(excludes))
        # What the image leaves out, by Docker's rules (not git's: see kubeloop/ignore.py).
        self.docker = DockerIgnore.from_context(root)
        self.nested: dict[Path, pathspec.GitIgnoreSpec | None] = {}
        self._folders: list[str] | None = None

    def _spec_for(self, folder: Path) -> pathspec.GitIgnoreSpec | None:
        if folder not in self.nested:
            lines = _ignore_lines(folder / ".gitignore")
            self.nested[folder] = pathspec.GitIgnoreSpec.from_lines(lines) if lines else None
        return self.nested[folder]

    def _gitignore_folders(self) -> list[str]:
        """Folders (relative to the root, "" for it) that hold a .gitignore, deepest first;
        found once with a walk that follows no symlink, forgotten when one changes."""
        if self._folders is None:
            found = []
            for folder, _dirs, files in os.walk(self.root):
                if ".gitignore" in files:
                    rel = os.path.relpath(folder, self.root)
                    found.append("" if rel == "." else Path(rel).as_posix())
            self._folders = sorted(found, key=len, reverse=True)
        return self._folders

    def has_nested(self) -> bool:
        """Whether any .gitignore below the root exists (else skip the per-file lookup)."""
        return bool(self._gitignore_folders())

    def excluded_rel(self, relative: str, is_dir: bool, nested: bool = True) -> bool:
        if self.base.match_file(relative + ("/" if is_dir else "")) or self.docker.excluded(
            relative
        ):
            return True
        return nested and self.excluded(self.root / relative, is_dir)

    def forget(self, folder: Path) -> None:
        self.nested.pop(folder, None)
        self._folders = None

    def excluded(self, path: Path, is_dir: bool) -> bool:
        relative = path.relative_to(self.root).as_posix()
        suffix = "/" if is_dir else ""
        if self.base.match_file(relative + suffix) or self.docker.excluded(relative):
            return True
        # Each .gitignore applies to its own folder and below, with paths relative to it;
        # as in git, the deepest one with a matching pattern (ignore or '!' re-include)
        # decides. Only folders that hold one are looked at: a deep path costs no more
        # than the .gitignore files above it.
        for folder in self._gitignore_folders():
            if folder and not relative.startswith(folder + "/"):
                continue
            spec = self._spec_for(self.root / folder if folder else self.root)
            if spec is not None:
                inside = relative[len(folder) + 1 :] if folder else relative
                verdict = spec.check_file(inside + suffix).include
                if verdict is not None:
                    return bool(verdict)
        return False


def _ignore_lines(path: Path) -> list[str]:
    """The lines of an ignore file; none when it is absent, not a regular file (a folder
    a container made by that name) or unreadable. Not UTF-8 is read as well as it goes."""
    try:
        if not path.is_file():
            return []
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


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
        return LocalEntry("F", info.st_mode & 0o7777, sha256_of(path))
    return None


def scan(root: Path, ignore: Ignore) -> dict[str, LocalEntry]:
    return {rel: entry for rel, entry, _data in walk(root, ignore)}


def walk(
    root: Path, ignore: Ignore, keep_data: int = 0
) -> Iterator[tuple[str, LocalEntry, bytes | None]]:
    """Every entry under ``root`` that is not ignored, in walk order. Files up to
    ``keep_data`` bytes come with their content (read once: hashed and sent from the
    same bytes). Strings, not Path objects, on this path: it runs once per file of the
    tree and Path arithmetic would dominate a large initial sync."""
    base = str(root)
    prefix = len(base) + 1
    nested = ignore.has_nested()
    for folder, dirs, files in os.walk(base):
        rel_folder = folder[prefix:]
        kept = []
        for name in sorted(dirs):
            rel = f"{rel_folder}/{name}" if rel_folder else name
            full = os.path.join(folder, name)
            if ignore.excluded_rel(rel, True, nested):
                continue
            if os.path.islink(full):
                yield rel, LocalEntry("L", 0, os.readlink(full)), None
                continue
            kept.append(name)
            yield rel, LocalEntry("D", os.stat(full).st_mode & 0o7777, ""), None
        dirs[:] = kept
        for name in sorted(files):
            rel = f"{rel_folder}/{name}" if rel_folder else name
            if ignore.excluded_rel(rel, False, nested):
                continue
            full = os.path.join(folder, name)
            try:
                info = os.lstat(full)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(info.st_mode) and info.st_size <= keep_data:
                with open(full, "rb") as handle:
                    data = handle.read()
                digest = hashlib.sha256(data).hexdigest()
                yield rel, LocalEntry("F", info.st_mode & 0o7777, digest), data
                continue
            entry = entry_of(Path(full))
            if entry is not None:
                yield rel, entry, None
