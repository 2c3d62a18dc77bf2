"""Objects as flat maps of the fields that change behaviour.

A rendered or live object becomes ``{field: value}``, where a field reads the way a
person names it (``containers.web.env.DB_HOST``, ``replicas``, ``data.flags.json``) and
lists of named things (containers, env vars, volumes, ports) are keyed by their name,
so that reordering a list is not a difference but renaming an item is.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

# Where a kind keeps its pod spec: the prefix dropped from field names, so that the
# same container field reads the same in a Deployment, a Job and a CronJob.
_POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
_TEMPLATE_PATH = ("spec", "template", "spec")

# Compared whole: a probe or a volume is one behaviour, and a row per leaf would bury
# the table.
_ATOMIC = frozenset({"command", "args", "readinessProbe", "livenessProbe", "startupProbe",
                     "envFrom", "tolerations", "affinity", "nodeSelector"})  # fmt: skip
# Lists whose items are matched by a key rather than by position.
_LIST_KEYS = ("name", "containerPort", "mountPath", "host", "port")

MAX_DEPTH = 64

_SECRETISH = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL)",
                        re.IGNORECASE)  # fmt: skip


def object_key(obj: Mapping[str, Any]) -> str:
    """``kind/name`` (the kind in lower case, as kubectl writes it)."""
    meta = obj.get("metadata") or {}
    return f"{str(obj.get('kind', '?')).lower()}/{meta.get('name', '?')}"


def pod_spec_path(kind: str) -> tuple[str, ...] | None:
    if kind in _POD_SPEC_PATHS:
        return _POD_SPEC_PATHS[kind]
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job",
                "ReplicationController"}:  # fmt: skip
        return _TEMPLATE_PATH
    return None


def is_secret_env(name: str) -> bool:
    """Whether a plain env var's value is masked too: its name says it holds a secret."""
    return bool(_SECRETISH.search(name))


def _item_key(item: Any) -> tuple[str, str] | None:
    """(the field that names a list item, its value)."""
    if isinstance(item, dict):
        for key in _LIST_KEYS:
            if key in item and isinstance(item[key], str | int):
                return key, str(item[key])
    return None


def keyed(items: list[Any]) -> dict[str, Any] | None:
    """A list of named items as a mapping by name; None when it is not one (the list is
    then compared whole)."""
    out: dict[str, Any] = {}
    for item in items:
        named = _item_key(item)
        if named is None or named[1] in out:
            return None
        out[named[1]] = item
    return out


_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]{0,2})$")
_SUFFIXES: dict[str, Decimal | int] = {"": 1, "m": Decimal("0.001"), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
             "P": 10**15, "E": 10**18, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
             "Pi": 2**50, "Ei": 2**60}  # fmt: skip


@dataclass(frozen=True)
class Quantity:
    """A resource quantity, equal to another of the same amount ("500m" and 0.5 are the
    same CPU; "1Gi" and "1024Mi" the same memory), shown as it was written."""

    amount: Decimal
    text: str = field(compare=False)

    def __str__(self) -> str:
        return self.text


def quantity(value: Any) -> Any:
    """``value`` as a Quantity when it is one; anything else unchanged."""
    match = _QUANTITY.match(str(value).strip())
    if match is None or match.group(2) not in _SUFFIXES or isinstance(value, bool):
        return value
    try:
        number = Decimal(match.group(1)) * Decimal(_SUFFIXES[match.group(2)])
    except InvalidOperation:
        return value
    return Quantity(number.normalize(), str(value))


def _env_value(item: Mapping[str, Any]) -> Any:
    if "valueFrom" in item:
        return {"valueFrom": item["valueFrom"]}
    return str(item.get("value", ""))


def _secret_data(obj: Mapping[str, Any]) -> dict[str, str]:
    """A Secret's keys and their base64 values, ``stringData`` folded in as the API
    server does."""
    data = {str(k): str(v) for k, v in (obj.get("data") or {}).items()}
    for key, value in (obj.get("stringData") or {}).items():
        data[str(key)] = base64.b64encode(str(value).encode()).decode()
    return data


def _walk(value: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    last = path[-1] if path else ""
    if len(path) > MAX_DEPTH:  # what the API server sends is bounded here, not trusted
        yield path, f"(nested more than {MAX_DEPTH} levels: not compared)"
        return
    if last in _ATOMIC:
        yield path, value
        return
    if len(path) >= 2 and path[-2] == "env" and isinstance(value, dict):
        yield path, _env_value(value)
        return
    if len(path) >= 2 and path[-2] in {"volumes", "volumeMounts"}:
        yield path, value
        return
    if isinstance(value, dict):
        if not value:
            return  # {} is what an absent field means (securityContext: {}, resources: {})
        for key, item in value.items():
            yield from _walk(item, (*path, str(key)))
    elif isinstance(value, list):
        by_key = keyed(value)
        if by_key is None:
            if value:
                yield path, value
            return
        for key, item in by_key.items():
            named = _item_key(item)
            if named is not None and isinstance(item, dict):
                item = {k: v for k, v in item.items() if k != named[0]}  # it is in the path
                if not item:
                    yield (*path, key), "" if path[-1:] == ("env",) else "(present)"
                    continue
            yield from _walk(item, (*path, key))
    elif value is not None:
        if len(path) >= 3 and path[-3] == "resources":
            value = quantity(value)
        yield path, value


def flatten(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``{field: value}`` for one object, without metadata and status (names, labels,
    timestamps do not change what runs)."""
    kind = str(obj.get("kind", ""))
    if kind == "Secret":
        fields: dict[str, Any] = {f"data.{k}": v for k, v in _secret_data(obj).items()}
        if obj.get("type") not in (None, "Opaque"):
            fields["type"] = obj["type"]
        return fields
    if kind == "ConfigMap":
        return {f"{section}.{k}": v for section in ("data", "binaryData")
                for k, v in (obj.get(section) or {}).items()}  # fmt: skip
    body = {k: v for k, v in obj.items() if k not in {"apiVersion", "kind", "metadata", "status"}}
    out: dict[str, Any] = {}
    pod_path = pod_spec_path(kind)
    for path, value in _walk(body, ()):
        # A pod template's labels and annotations are metadata too (labels feed the
        # selector, which must match whatever the environment).
        if pod_path and path[: len(pod_path)] == (*pod_path[:-1], "metadata"):
            continue
        if pod_path and path[: len(pod_path)] == pod_path:
            path = path[len(pod_path):]  # fmt: skip
        elif path[:1] == ("spec",):
            path = path[1:]
        out[".".join(path)] = value
    if kind == "Ingress":
        spec = obj.get("spec") or {}
        hosts = {str(r.get("host")) for r in spec.get("rules") or [] if isinstance(r, dict)}
        hosts |= {str(h) for t in spec.get("tls") or [] if isinstance(t, dict)
                  for h in t.get("hosts") or []}  # fmt: skip
        out["hosts"] = sorted(hosts - {"None"})
    return out


def render_value(value: Any) -> str:
    """A value as one line of text for a table cell."""
    if isinstance(value, str | Quantity):
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
