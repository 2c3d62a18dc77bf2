"""The IDE's side of ``kubeloop debug``: a VS Code launch.json entry (attach to the
forwarded port, source paths mapped from the project's sync rules) and its merge into the
project's ``.vscode/launch.json``.

launch.json is JSON with comments and trailing commas (JSONC), and people keep notes in
it. No well-kept Python library edits JSONC in place, so a small scanner finds the
``configurations`` array and its entries' spans, and the merge changes only the entry
kubeloop owns (same name) or inserts one: every other byte of the file stays as it was.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from kubeloop.config import SyncSpec
from kubeloop.errors import KubeloopError

MAX_LAUNCH_JSON = 1024 * 1024


def path_mappings(
    specs: Iterable[SyncSpec], root: Path, labels: Mapping[str, str], container: str,
    first_container: bool,
) -> list[tuple[str, str]]:  # fmt: skip
    """(local folder, container folder) for each sync rule that lands in this container."""
    mappings = []
    for spec in specs:
        if not all(labels.get(key) == value for key, value in spec.selector.items()):
            continue
        if (spec.container or None) not in (container, None) or (
            spec.container is None and not first_container
        ):
            continue
        mappings.append((str((root / spec.src).resolve()), spec.dest))
    return mappings


def vscode_config(name: str, port: int, mappings: list[tuple[str, str]],
                  language: str = "python") -> dict[str, object]:  # fmt: skip
    """A VS Code launch.json entry that attaches to the forwarded port (Python: the
    debugpy extension; Node: the built-in js-debug; Go: the Go extension's Delve DAP;
    JVM: the Java extension's JDWP attach)."""
    entry: dict[str, object] = {"name": f"kubeloop: {name}", "request": "attach"}
    if language == "node":
        local, remote = mappings[0] if mappings else ("${workspaceFolder}", "/app")
        return {**entry, "type": "node", "address": "127.0.0.1", "port": port,
                "localRoot": local, "remoteRoot": remote, "restart": True}  # fmt: skip
    if language == "jvm":  # the Java extension's attach; sources come from the project
        return {**entry, "type": "java", "hostName": "127.0.0.1", "port": port}
    if language == "go":
        return {**entry, "type": "go", "mode": "remote", "host": "127.0.0.1", "port": port,
                "substitutePath": [{"from": local, "to": remote} for local, remote in mappings]}  # fmt: skip
    return {**entry, "type": "debugpy", "connect": {"host": "127.0.0.1", "port": port},
            "justMyCode": False,
            "pathMappings": [{"localRoot": local, "remoteRoot": remote}
                             for local, remote in mappings]}  # fmt: skip


def strip_jsonc(text: str) -> str:
    """``text`` with comments blanked out (offsets kept) and trailing commas removed."""
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i = _string_end(text, i)
            continue
        if text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out[i:end] = " " * (end - i)
            i = end
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise ValueError("a /* comment is not closed")
            end += 2
            out[i:end] = [ch if ch == "\n" else " " for ch in text[i:end]]
            i = end
            continue
        i += 1
    return re.sub(r",(\s*[}\]])", r" \1", "".join(out))


def _string_end(text: str, start: int) -> int:
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == '"':
            return i + 1
        else:
            i += 1
    raise ValueError("a string is not closed")


def _entry_spans(clean: str, open_at: int) -> tuple[list[tuple[int, int]], int]:
    """Spans of the objects in the array opening at ``open_at`` of comment-free ``clean``,
    and the offset of its closing bracket."""
    spans: list[tuple[int, int]] = []
    depth, start, i = 0, -1, open_at + 1
    while i < len(clean):
        c = clean[i]
        if c == '"':
            i = _string_end(clean, i)
            continue
        if c in "{[":
            if depth == 0:
                start = i
            depth += 1
        elif c in "}]":
            if depth == 0:
                return spans, i
            depth -= 1
            if depth == 0:
                spans.append((start, i + 1))
        i += 1
    raise ValueError("the configurations array is not closed")


def merge_launch_json(text: str, entry: Mapping[str, object]) -> str:
    """``text`` (a launch.json, maybe empty) with ``entry`` in its configurations: an
    entry of the same name is replaced, else the new one comes first."""
    rendered = json.dumps(entry, indent=4)
    if not text.strip():
        return json.dumps({"version": "0.2.0", "configurations": [entry]}, indent=4) + "\n"
    clean = strip_jsonc(text)
    document = json.loads(clean)  # ValueError (JSONDecodeError) when broken
    if not isinstance(document, dict):
        raise ValueError("the file is not a JSON object")
    if "configurations" not in document:
        close = clean.rindex("}")
        body = clean[:close].rstrip()
        comma = "" if body.endswith("{") else ","
        return f'{text[: len(body)]}{comma}\n    "configurations": [{rendered}]\n{text[close:]}'
    if not isinstance(document["configurations"], list):
        raise ValueError('"configurations" is not a list')
    key = re.search(r'"configurations"\s*:\s*\[', clean)
    if key is None:  # the key was written with escapes: no place to edit in place
        raise ValueError('cannot find the "configurations" array')
    spans, close = _entry_spans(clean, key.end() - 1)
    for start, end in spans:
        existing = json.loads(clean[start:end])
        if isinstance(existing, dict) and existing.get("name") == entry["name"]:
            return text[:start] + _indent(rendered, text, start) + text[end:]
    insert_at = key.end()
    separator = "," if spans else ""
    indent = " " * 8
    new = "\n" + indent + _indent(rendered, text, insert_at, indent) + separator
    if not spans and not clean[insert_at:close].strip():
        new += "\n" + " " * 4
    return text[:insert_at] + new + text[insert_at:]


def _indent(rendered: str, text: str, at: int, indent: str | None = None) -> str:
    """``rendered`` with its continuation lines indented like the line it lands on."""
    if indent is None:
        line_start = text.rfind("\n", 0, at) + 1
        indent = re.match(r"[ \t]*", text[line_start:at]).group(0)  # type: ignore[union-attr]
    return rendered.replace("\n", "\n" + indent)


def write_launch_json(folder: Path, entry: Mapping[str, object]) -> Path:
    """Merge ``entry`` into ``folder/.vscode/launch.json``; a file kubeloop cannot read
    safely is left untouched, with the reason."""
    path = folder / ".vscode" / "launch.json"
    text = ""
    if path.exists():
        if path.stat().st_size > MAX_LAUNCH_JSON:
            raise KubeloopError(f"{path} is larger than 1 MiB; left as it is",
                                "add the printed entry by hand")  # fmt: skip
        text = path.read_text(encoding="utf-8")
    try:
        merged = merge_launch_json(text, entry)
        json.loads(strip_jsonc(merged))  # never write what VS Code could not read
    except ValueError as exc:
        raise KubeloopError(f"{path} is not valid JSON with comments ({exc}); left as it is",
                            "fix it, or add the printed entry by hand") from exc  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".kubeloop-partial")
    partial.write_text(merged, encoding="utf-8")
    partial.replace(path)
    return path
