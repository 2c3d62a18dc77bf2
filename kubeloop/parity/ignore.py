"""``parity.ignore`` rules: the differences between environments that are meant.

A rule is ``KIND/NAME: FIELD``, ``KIND/NAME`` (the whole object, e.g. one that only
staging has) or ``FIELD`` (in every object). Both parts take shell wildcards (``*``,
``?``, ``[ab]``); kinds match in any case. A field pattern matches the field itself,
anything under it (``containers.web.env`` covers every variable) and the same name
further down (``env.WINDOW`` covers ``containers.consumer.env.WINDOW``)::

    parity:
      ignore:
        - "deployment/*: replicas"
        - "deployment/consumer: env.WINDOW"
        - "configmap/flags: data.beta_*"
        - ingress/public
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase

_OBJECT = re.compile(r"^[A-Za-z*?\[\]]+/[A-Za-z0-9*?.\-\[\]_]+$")
_FIELD = re.compile(r"^[^\s:]+$")

MAX_RULE = 500
RULE_HELP = ("write 'KIND/NAME: FIELD' (e.g. 'deployment/web: replicas'), 'KIND/NAME' for "
             "a whole object, or 'FIELD' for every object; wildcards * ? [] work")  # fmt: skip


@dataclass(frozen=True)
class IgnoreRule:
    """One expected difference, as written in ``kubeloop.yaml``."""

    text: str
    object: str | None  # kind/name pattern, kind lower-cased; None: every object
    field: str | None  # field pattern; None: the whole object and all its fields

    @classmethod
    def parse(cls, text: str) -> IgnoreRule:
        """Read one rule; ValueError says what is wrong with it."""
        raw = text.strip()
        if not raw:
            raise ValueError(f"an empty rule; {RULE_HELP}")
        if len(raw) > MAX_RULE:
            raise ValueError(f"a rule of {len(raw)} characters (at most {MAX_RULE}); {RULE_HELP}")
        head, sep, tail = raw.partition(":")  # neither part can hold a ':' itself
        if sep:
            obj, field = head.strip(), tail.strip() or None
        elif "/" in raw:
            obj, field = raw, None
        else:
            obj, field = None, raw
        if obj is not None and not _OBJECT.match(obj):
            raise ValueError(f"{text!r}: '{obj}' is not KIND/NAME; {RULE_HELP}")
        if field is not None and not _FIELD.match(field):
            raise ValueError(f"{text!r}: '{field}' is not a field name (no spaces or ':'); "
                             f"{RULE_HELP}")  # fmt: skip
        if obj is None and field is None:
            raise ValueError(f"{text!r}: names neither an object nor a field; {RULE_HELP}")
        if obj is not None:
            kind, _, name = obj.partition("/")
            obj = f"{kind.lower()}/{name}"
        return cls(raw, obj, field)

    def matches(self, object_key: str, field: str) -> bool:
        """Whether this rule expects a difference in ``field`` of ``object_key``
        (``kind/name``; field ``""`` for the object being on one side only)."""
        if self.object is not None:
            kind, _, name = object_key.partition("/")
            want_kind, _, want_name = self.object.partition("/")
            if not (fnmatchcase(kind, want_kind) and fnmatchcase(name, want_name)):
                return False
        if self.field is None:
            return True
        if not field:
            return False
        pattern = self.field
        return any(fnmatchcase(field, p) for p in
                   (pattern, f"{pattern}.*", f"*.{pattern}", f"*.{pattern}.*"))  # fmt: skip


def parse_rules(texts: list[str]) -> list[IgnoreRule]:
    return [IgnoreRule.parse(t) for t in texts]
