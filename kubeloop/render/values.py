"""Template values are data, never YAML text.

A value printed by a template (``{{ expr }}``) is held back: the template's text gets a
placeholder, the text is parsed as YAML, and only then does each placeholder become its
value, inside the one scalar it sits in. A value can therefore never add keys, items or
objects, however it is written (line breaks, ``---``, quotes, ``, key: x``). Printed
alone as a plain scalar (``replicas: {{ replicas }}``) a value keeps its type, as
before: numbers, booleans, lists and mappings stay what they are; a string takes the
type YAML gives its text when it is a number, boolean or null, and stays a string
otherwise (never a list or mapping). Inside a longer scalar or a quoted one its text is
put in verbatim.

A macro's output is template text (its values are held back already), so it is
written as is.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

import yaml

from kubeloop.errors import KubeloopError

try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]


class TemplateText(str):
    """Text the template itself wrote (a macro's output): not a value."""


class Structured:
    """The ``tojson``/``toyaml`` filters' result: the value itself where it stands alone,
    its JSON or one-line YAML text inside a longer or quoted scalar."""

    def __init__(self, value: Any, as_json: bool) -> None:
        self.value = value
        self.as_json = as_json

    def __str__(self) -> str:
        if self.as_json:
            return json.dumps(self.value, sort_keys=True, default=str)
        return yaml.safe_dump(self.value, default_flow_style=True, width=1 << 30).strip()


class HeldValues:
    """The values one rendering printed, by placeholder."""

    def __init__(self) -> None:
        self._nonce = secrets.token_hex(4)
        self._values: list[Any] = []
        self._pattern = re.compile(rf"kubeloop-value-{self._nonce}-(\d+)", re.IGNORECASE)
        self.source: list[str] = []  # the rendered text's lines, for block scalars

    def finalize(self, value: Any) -> Any:
        """Jinja's finalize: every printed value becomes a placeholder."""
        import jinja2

        if isinstance(value, TemplateText):
            return value
        if isinstance(value, jinja2.Undefined):
            str(value)  # StrictUndefined raises its "is undefined" error here
        self._values.append(value)
        return f"kubeloop-value-{self._nonce}-{len(self._values) - 1}"

    def text_of(self, index: int) -> str:
        value = self._values[index]
        text = "" if value is None else str(value)
        # A value built from template text (a {% set %} block) holds placeholders itself.
        return self._pattern.sub(lambda m: self.text_of(int(m.group(1))), text)

    def named(self, message: str) -> str:
        """A message with each placeholder shown as the value it holds."""
        return self._pattern.sub(lambda m: f"{{{{ {self.text_of(int(m.group(1)))[:40]!r} }}}}",
                                 message)  # fmt: skip

    def fill(self, root: yaml.Node) -> yaml.Node:
        """Put the values into the composed document, scalar by scalar (each node once)."""
        seen: set[int] = set()
        stack = [root]
        root = self._scalar(root) if isinstance(root, yaml.ScalarNode) else root
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            if isinstance(node, yaml.MappingNode):
                node.value = [(self._fill_one(k), self._fill_one(v)) for k, v in node.value]
                stack += [n for pair in node.value for n in pair]
            elif isinstance(node, yaml.SequenceNode):
                node.value = [self._fill_one(item) for item in node.value]
                stack += node.value
        return root

    def _fill_one(self, node: yaml.Node) -> yaml.Node:
        return self._scalar(node) if isinstance(node, yaml.ScalarNode) else node

    def _scalar(self, node: yaml.ScalarNode) -> yaml.Node:
        found = self._pattern.fullmatch(node.value)
        plain = not node.style and node.tag == "tag:yaml.org,2002:str"  # C parser: ""
        if found and plain:
            return self._node_of(self._values[int(found.group(1))], node)
        if not self._pattern.search(node.value):
            return node
        dedent = self._block_indent(node)
        text = self._pattern.sub(lambda m: _dedent(self.text_of(int(m.group(1))), dedent),
                                 node.value)  # fmt: skip
        tag = _resolve(text) if plain else node.tag
        return yaml.ScalarNode(tag, self._chomp(node, text), node.start_mark, node.end_mark,
                               node.style)  # fmt: skip

    def _chomp(self, node: yaml.ScalarNode, text: str) -> str:
        """A block scalar's final line breaks, as its header says (``|`` keeps one, ``|-``
        none, ``|+`` all), also for the ones a value brought."""
        if node.style not in ("|", ">") or node.start_mark.line >= len(self.source):
            return text
        header = self.source[node.start_mark.line][node.start_mark.column :].split("#")[0]
        if "+" in header:
            return text
        stripped = text.rstrip("\n")
        return stripped if "-" in header or not stripped else stripped + "\n"

    def _block_indent(self, node: yaml.ScalarNode) -> int:
        """A block scalar's indentation: a value written there with ``indent(n)`` (the
        usual way to put a file in) had its later lines indented to match, and YAML took
        that indentation off; it is taken off here too."""
        if node.style not in ("|", ">"):
            return 0
        for line in self.source[node.start_mark.line + 1 :]:
            if line.strip():
                return len(line) - len(line.lstrip(" "))
        return 0

    def _node_of(self, value: Any, where: yaml.ScalarNode) -> yaml.Node:
        """A value standing alone: its own YAML node (a string resolves to a scalar only)."""
        if isinstance(value, Structured):
            value = value.value
        if isinstance(value, str):
            text = self._pattern.sub(lambda m: self.text_of(int(m.group(1))), value)
            return yaml.ScalarNode(_resolve(text), text, where.start_mark, where.end_mark)
        try:
            node = yaml.representer.SafeRepresenter().represent_data(value)
        except yaml.YAMLError:  # not plain data (a Jinja loop object, a range): its text
            text = str(value)
            return yaml.ScalarNode(_resolve(text), text, where.start_mark, where.end_mark)
        return self.fill(node)  # the value's strings may hold placeholders too


def _dedent(text: str, spaces: int) -> str:
    """Take ``spaces`` leading spaces off every line but the first, where present."""
    if not spaces or "\n" not in text:
        return text
    first, *rest = text.split("\n")
    prefix = " " * spaces
    return "\n".join([first, *(line.removeprefix(prefix) for line in rest)])


def _resolve(text: str) -> str:
    """The tag YAML gives this text as a plain scalar: int, float, bool, null or str."""
    if "\n" in text or "\r" in text:
        return "tag:yaml.org,2002:str"  # a plain scalar never holds a line break
    tag = yaml.resolver.Resolver().resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
    return str(tag)


def documents(text: str, values: HeldValues, source: str) -> list[Any]:
    """Parse rendered template text, then put the held values in."""
    values.source = text.splitlines()
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
        return [_Loader("").construct_document(values.fill(n)) for n in nodes if n is not None]
    except yaml.YAMLError as exc:
        raise KubeloopError(f"{source}: the rendered template is not valid YAML: "
                            f"{values.named(str(exc))}",
                            "check the template's YAML near that line of its output "
                            "(a value is one scalar; it cannot open or close a list or "
                            "mapping)") from exc  # fmt: skip
    except (ValueError, OverflowError, TypeError, IndexError) as exc:
        raise KubeloopError(f"{source}: a value cannot be read as YAML: {exc}") from exc
