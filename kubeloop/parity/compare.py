"""Compare two sets of objects field by field, classify and mask what differs, and
mark what ``parity.ignore`` expects."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubeloop.core import Obj
from kubeloop.parity.ignore import IgnoreRule
from kubeloop.parity.normalise import MAX_DEPTH, flatten, is_secret_env, object_key

MASK = "•••"
_FLAG_KEY = re.compile(r"(feature|flag|enable|toggle)", re.IGNORECASE)
_FLAG_VALUES = {"true", "false", "on", "off", "yes", "no", "enabled", "disabled"}
_CONTAINER_ASPECTS = {"image": "image", "command": "command", "args": "command",
                      "env": "env", "envFrom": "env", "resources": "resources",
                      "readinessProbe": "probe", "livenessProbe": "probe",
                      "startupProbe": "probe", "securityContext": "security",
                      "volumeMounts": "volumes", "ports": "ports"}  # fmt: skip
_POD_SECURITY = {"securityContext", "serviceAccountName", "hostNetwork", "hostPID", "hostIPC",
                 "automountServiceAccountToken"}  # fmt: skip
_CONTAINER_LISTS = {"containers", "initContainers", "ephemeralContainers"}


@dataclass(frozen=True)
class Difference:
    """One way two environments differ. ``field`` is empty when the object itself is
    on one side only; ``a``/``b`` are None where the field is absent, and ``MASK`` where
    the value is secret (only whether it differs is told)."""

    object: str
    field: str
    category: str
    a: Any
    b: Any
    a_present: bool
    b_present: bool
    masked: bool = False
    expected_by: str | None = None  # the parity.ignore rule that declares it

    def to_dict(self) -> dict[str, Any]:
        return {"object": self.object, "field": self.field, "category": self.category,
                "a": self.a, "b": self.b, "a_present": self.a_present,
                "b_present": self.b_present, "masked": self.masked,
                "expected": self.expected_by is not None, "rule": self.expected_by}  # fmt: skip


@dataclass
class ParityReport:
    """The differences between side ``a`` and side ``b`` (environment names, or
    ``live``), expected ones included and marked."""

    a: str
    b: str
    differences: list[Difference] = field(default_factory=list)
    objects: int = 0  # objects compared
    unused_rules: list[str] = field(default_factory=list)  # parity.ignore rules never used
    notes: list[str] = field(default_factory=list)  # how something was compared

    @property
    def unexpected(self) -> list[Difference]:
        return [d for d in self.differences if d.expected_by is None]

    @property
    def exit_code(self) -> int:
        """1 when something differs that ``parity.ignore`` does not expect (for CI)."""
        return 1 if self.unexpected else 0

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "objects": self.objects,
                "differences": [d.to_dict() for d in self.differences],
                "unexpected": len(self.unexpected),
                "expected": len(self.differences) - len(self.unexpected),
                "unused_rules": self.unused_rules, "notes": self.notes}  # fmt: skip


def category(kind: str, name: str, value: Any = None) -> str:
    """What a field is about, for the table: image, command, env, resources, replicas,
    probe, security, volumes, ports, config, feature flag, secret, service, ingress,
    build (an artifact's settings), other."""
    parts = name.split(".")
    if kind == "Secret":
        return "secret"
    if kind == "ConfigMap":
        flaggy = _FLAG_KEY.search(name) or str(value).strip().lower() in _FLAG_VALUES
        return "feature flag" if flaggy else "config"
    if kind == "Artifact":
        return "build"
    if kind == "Service":
        return "service"
    if kind == "Ingress":
        return "ingress"
    if name == "replicas":
        return "replicas"
    if parts[0] in _CONTAINER_LISTS and len(parts) >= 3:
        return _CONTAINER_ASPECTS.get(parts[2], "other")
    if parts[0] == "volumes":
        return "volumes"
    if parts[0] in _POD_SECURITY:
        return "security"
    return "other"


def _expand_config(fields: dict[str, Any]) -> dict[str, Any]:
    """ConfigMap values that hold settings (a JSON object, or KEY=VALUE lines) are
    compared setting by setting, so a flipped flag is named, not the whole file."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        settings = _settings(value) if isinstance(value, str) else None
        if settings is None:
            out[key] = value
        else:
            out.update({f"{key}.{k}": v for k, v in settings.items()})
    return out


def _settings(text: str) -> dict[str, Any] | None:
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except (ValueError, RecursionError):
            return None
        if isinstance(data, dict) and data:
            return _leaves(data)
        return None
    lines = [ln.strip() for ln in stripped.splitlines()
             if ln.strip() and not ln.strip().startswith("#")]  # fmt: skip
    if len(lines) < 2 or not all(re.match(r"^[\w.\-]+\s*[=:]", ln) for ln in lines):
        return None
    pairs = [re.split(r"\s*[=:]\s*", ln, maxsplit=1) for ln in lines]
    return {k: v for k, v in pairs}


def _leaves(data: Mapping[str, Any], prefix: str = "", depth: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if depth >= MAX_DEPTH:
            out[name] = f"(nested more than {MAX_DEPTH} levels: not compared)"
        elif isinstance(value, dict) and value:
            out.update(_leaves(value, f"{name}.", depth + 1))
        else:
            out[name] = value
    return out


def _fields(obj: Obj, namespace: str | None) -> dict[str, Any]:
    fields = flatten(obj)
    if obj.get("kind") == "ConfigMap":
        fields = _expand_config(fields)
    if namespace:
        # An address in the environment's own namespace (web.shop.svc) is the same
        # address in every environment: written with the name of none.
        fields = {k: _unnamespace(v, namespace) for k, v in fields.items()}
    return fields


def _unnamespace(value: Any, namespace: str) -> Any:
    if isinstance(value, str):
        return re.sub(rf"\.{re.escape(namespace)}\.svc\b", ".$(NAMESPACE).svc", value)
    if isinstance(value, list):
        return [_unnamespace(v, namespace) for v in value]
    if isinstance(value, dict):
        return {k: _unnamespace(v, namespace) for k, v in value.items()}
    return value


def _masked(kind: str, name: str) -> bool:
    if kind == "Secret":
        return True
    parts = name.split(".")
    return len(parts) >= 4 and parts[2] == "env" and is_secret_env(parts[3])


def _index(objects: Iterable[Obj]) -> dict[str, Obj]:
    out: dict[str, Obj] = {}
    for obj in objects:
        key = object_key(obj)
        namespace = (obj.get("metadata") or {}).get("namespace")
        if key in out and namespace:
            key = f"{key}@{namespace}"
        out[key] = obj
    return out


def compare(objects_a: Iterable[Obj], objects_b: Iterable[Obj], rules: list[IgnoreRule],
            a: str = "a", b: str = "b", namespaces: tuple[str | None, str | None] = (None, None),
            ) -> ParityReport:  # fmt: skip
    """The differences between two renders (or a render and the live objects).

    Objects are matched by kind and name (the namespace is the environment's own, so it
    is not compared); ``namespaces`` are the two sides' namespaces, whose names inside
    Service addresses are not a difference either."""
    side_a, side_b = _index(objects_a), _index(objects_b)
    report = ParityReport(a, b, objects=len(set(side_a) | set(side_b)))
    used: set[str] = set()

    def add(obj_key: str, name: str, kind: str, va: Any, vb: Any, pa: bool, pb: bool) -> None:
        masked = _masked(kind, name)
        if masked:
            va, vb = (MASK if pa else None), (MASK if pb else None)
        rule = next((r for r in rules if r.matches(obj_key, name)), None)
        if rule is not None:
            used.add(rule.text)
        cat = "object" if not name else category(kind, name, vb if pb else va)
        report.differences.append(Difference(obj_key, name, cat, va, vb, pa, pb, masked,
                                             rule.text if rule else None))  # fmt: skip

    for key in sorted(set(side_a) | set(side_b)):
        obj_a, obj_b = side_a.get(key), side_b.get(key)
        if obj_a is None or obj_b is None:
            kind = str((obj_a or obj_b or {}).get("kind", ""))
            add(key, "", kind, "present" if obj_a else None, "present" if obj_b else None,
                obj_a is not None, obj_b is not None)  # fmt: skip
            continue
        kind = str(obj_a.get("kind", ""))
        fields_a, fields_b = _fields(obj_a, namespaces[0]), _fields(obj_b, namespaces[1])
        for name in sorted(set(fields_a) | set(fields_b)):
            va, vb = fields_a.get(name), fields_b.get(name)
            if name in fields_a and name in fields_b and va == vb:
                continue
            add(key, name, kind, va, vb, name in fields_a, name in fields_b)
    report.unused_rules = [r.text for r in rules if r.text not in used]
    return report
