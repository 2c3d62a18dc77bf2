""".dockerignore exactly as Docker reads it, for everything that must agree with what
``docker build`` sends: the content tag (an edited file must change the tag) and sync
(a file the image leaves out is not synced into it either).

Docker's rules differ from git's, so pathspec's gitignore matcher (used for .gitignore
files and sync excludes) cannot stand in: a pattern is matched against the whole path
from the context's root (``*.md`` is only the root's Markdown files; ``**/*.md`` is all
of them), a pattern that matches a folder excludes everything in it, ``!`` re-includes,
and the last pattern that matches decides. No library implements these rules, so this
module follows Docker's own code (moby/patternmatcher and buildkit's dockerignore
reader), including its translation of patterns to regular expressions.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

# Characters that are literal in Go's filepath.Match but special in a Python regex.
_LITERAL = set(".$+(){}|^")


@dataclass(frozen=True)
class _Pattern:
    text: str
    exclusion: bool  # a '!' pattern: re-includes what it matches
    regex: re.Pattern[str]


def _compile(pattern: str) -> re.Pattern[str]:
    out, i = ["^"], 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < len(pattern) and pattern[i] == "*":
                i += 1
                if i < len(pattern) and pattern[i] == "/":
                    i += 1  # '**/' is read as '**'
                # '**' at the end takes everything; elsewhere any number of folders
                out.append(".*" if i >= len(pattern) else "(.*/)?")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i < len(pattern):
                out.append(re.escape(pattern[i]))
                i += 1
            else:
                out.append(r"\\")
        elif ch in _LITERAL:
            out.append("\\" + ch)
        else:
            out.append(ch)  # letters, '/', and '[...]' classes as filepath.Match has them
    out.append("$")
    try:
        return re.compile("".join(out))
    except re.error:
        return re.compile(re.escape(pattern) + "$")  # a malformed class: literal, as Docker errs


def read_patterns(lines: list[str]) -> list[str]:
    """The patterns of a .dockerignore, normalised as buildkit does: comments and blank
    lines dropped, paths cleaned, a leading '/' removed, '!' kept."""
    patterns = []
    for raw in lines:
        if raw.startswith("#"):
            continue
        pattern = raw.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = posixpath.normpath(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern.lstrip("/") or "/"
        patterns.append(("!" if invert else "") + pattern)
    return patterns


class DockerIgnore:
    def __init__(self, patterns: list[str]) -> None:
        self.patterns = [
            _Pattern(p, p.startswith("!"), _compile(p[1:] if p.startswith("!") else p))
            for p in read_patterns(patterns)
        ]
        # Without '!' patterns, an excluded folder's contents are all excluded: walks may
        # skip it (Docker does the same).
        self.has_exclusions = any(p.exclusion for p in self.patterns)

    @classmethod
    def from_context(cls, context: Path) -> DockerIgnore:
        path = context / ".dockerignore"
        try:
            lines = path.read_text(errors="replace").splitlines() if path.is_file() else []
        except OSError:
            lines = []
        return cls(lines)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def excluded(self, relative: str) -> bool:
        """Whether ``docker build`` leaves out the file or folder at ``relative`` (a path
        from the context's root, '/'-separated)."""
        path = posixpath.normpath(relative)
        parent = posixpath.dirname(path)
        parents = parent.split("/") if parent else []
        matched = False
        for pattern in self.patterns:
            # An include that already matched, or an exclusion with nothing to undo: skip.
            if pattern.exclusion != matched:
                continue
            hit = bool(pattern.regex.match(path)) or any(
                pattern.regex.match("/".join(parents[: i + 1])) for i in range(len(parents))
            )
            if hit:
                matched = not pattern.exclusion
        return matched
