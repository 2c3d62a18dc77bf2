"""Adding and removing kubeloop's entries in the user's kubeconfig, touching nothing else.

The file is the user's: edits go through ruamel.yaml's round-trip mode, so comments, key
order, indentation and quoting stay as they were; the file keeps its owner and mode; a
symlinked kubeconfig stays a symlink (its target is rewritten); and a file that does not
change is not written at all. Reading one is kubeloop.kube.kubeconfig's job.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.util import load_yaml_guess_indent

from kubeloop.errors import KubeloopError

SECTIONS = ("clusters", "users", "contexts")


def _edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Apply ``change`` to the kubeconfig at ``path`` (through a symlink to its target),
    keeping comments, layout, owner and mode; write only if something changed."""
    target = Path(os.path.realpath(path))
    text = target.read_text() if target.exists() else ""
    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 1 << 16  # never fold the long base64 certificate lines
    try:
        data, indent, dash = load_yaml_guess_indent(text, yaml=rt) if text.strip() else ({}, 2, 0)
    except YAMLError as exc:
        raise KubeloopError(f"{path} is not valid YAML: {exc}",
                            f"repair {path}; kubeloop will not overwrite it") from exc  # fmt: skip
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise KubeloopError(f"{path} is not a kubeconfig", f"repair or move {path}")
    data.setdefault("apiVersion", "v1")
    data.setdefault("kind", "Config")
    for key in SECTIONS:
        if data.get(key) is None:
            data[key] = []
    change(data)
    # The file's own style: kubectl writes list dashes flush with their key ("dash" 0),
    # hand-written files often indent them ("  - name:", content at 4, mappings at 2).
    indent, dash = indent or 2, dash or 0
    rt.indent(mapping=max(indent - dash, 2), sequence=indent, offset=dash)
    out = io.StringIO()
    rt.dump(data, out)
    if out.getvalue() != text:
        _write(target, out.getvalue())


def _write(target: Path, text: str) -> None:
    """Replace ``target`` atomically with ``text``, with the old file's owner and mode
    (a new file: 0600, it holds credentials)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    before = target.stat() if target.exists() else None
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".kubeconfig-")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(temp, before.st_mode & 0o7777 if before else 0o600)
        if before and (before.st_uid, before.st_gid) != (os.geteuid(), os.getegid()):
            os.chown(temp, before.st_uid, before.st_gid)
    except PermissionError:
        # Not allowed to give the new file the old one's owner: write the old file in
        # place instead, which keeps owner and mode by definition.
        os.unlink(temp)
        target.write_text(text)
        return
    except BaseException:
        os.unlink(temp)
        raise
    os.replace(temp, target)


def _put(items: list[Any], entry: Mapping[str, Any]) -> None:
    """Replace the entry of the same name in place (its neighbours' comments stay), or
    append it."""
    for index, item in enumerate(items):
        if isinstance(item, dict) and item.get("name") == entry["name"]:
            if item != entry:
                items[index] = dict(entry)
            return
    items.append(dict(entry))


def merge(path: Path, source: dict[str, Any], switch: bool = True) -> None:
    """Add the cluster, user and context of a one-context kubeconfig ``source``; entries
    of the same names are replaced, nothing else is touched."""

    def change(data: dict[str, Any]) -> None:
        for key in SECTIONS:
            for entry in source.get(key) or []:
                _put(data[key], entry)
        if switch or not data.get("current-context"):
            data["current-context"] = source["current-context"]

    _edit(path, change)


def remove(path: Path, name: str) -> None:
    """Remove the cluster, user and context called ``name`` (kubeloop's entries share
    one name), and nothing else: the user's own entries stay, whatever they point to."""
    if not os.path.exists(path):
        return

    def change(data: dict[str, Any]) -> None:
        for key in SECTIONS:
            data[key][:] = [e for e in data[key] if not (isinstance(e, dict)
                                                          and e.get("name") == name)]  # fmt: skip
        if data.get("current-context") == name:
            del data["current-context"]  # the same as "" to kubectl

    _edit(path, change)


def forget_user(path: Path, name: str, user: Mapping[str, Any]) -> None:
    """Remove the user ``name`` only if it holds exactly ``user``'s credentials: how an
    entry an older kubeloop wrote under a generic name (``admin``) is told apart from the
    user's own entry of that name."""
    if not os.path.exists(path):
        return

    def change(data: dict[str, Any]) -> None:
        data["users"][:] = [u for u in data["users"] if not (
            isinstance(u, dict) and u.get("name") == name and u.get("user") == dict(user))]  # fmt: skip

    _edit(path, change)
