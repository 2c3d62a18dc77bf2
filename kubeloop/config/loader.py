"""Reading ``kubeloop.yaml``: YAML with line numbers, environment overrides, and errors
that name the file, the line, the key and what was expected."""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kubeloop.config.schema import Project
from kubeloop.errors import KubeloopError

try:
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

CONFIG_NAME = "kubeloop.yaml"
Location = tuple[str | int, ...]


class ConfigError(KubeloopError):
    def __init__(self, path: Path, problems: list[str]) -> None:
        body = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{path} is not a valid kubeloop config:\n{body}", exit_code=2,
                         hint="see the config reference in the README, or "
                              "'kubeloop config schema' for editor completion")  # fmt: skip
        self.problems = problems


@dataclass(frozen=True)
class LoadedConfig:
    project: Project  # with the environment's overrides applied
    path: Path
    environment: str | None

    @property
    def root(self) -> Path:
        return self.path.parent


# Bounds on what a config may make the loader do. A kubeloop.yaml is a few kilobytes;
# these only stop a hostile or broken file (a "billion laughs" of aliases, a recursive
# alias, a 5,000-digit number) from hanging kubeloop or ending it with a traceback.
MAX_BYTES = 1024 * 1024
MAX_VALUES = 100_000  # values in the document once aliases are expanded
MAX_DEPTH = 100  # nesting of mappings and lists


class _Loader(_BaseLoader):
    """The safe loader, where a value Python cannot hold (a 5,000-digit integer, the
    13th month, an empty ``!!float``) is a YAML error at its line instead of whatever
    PyYAML's constructor happens to raise."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value ({exc})", node.start_mark
            ) from exc


def _key(node: yaml.Node) -> str | int:
    """A mapping key as it appears in a path (complex keys are shown, never hashed)."""
    return (
        node.value
        if isinstance(node, yaml.ScalarNode)
        else f"<{type(node).__name__.removesuffix('Node').lower()} key>"
    )


def _lines(root: yaml.Node, path: Path) -> dict[Location, int]:
    """The line (1-based) of every key and item by its path, and the document's checks.

    Each node is visited once: an alias (a node met again) records its own line and
    does not descend, so the walk is linear in the file's size however the aliases
    multiply. The same pass measures what aliases expand to (each node's expanded size,
    memoised) and refuses cycles and deep nesting, before anything is constructed.
    """
    out: dict[Location, int] = {}
    size: dict[int, int] = {}  # id(node) → values it expands to, once finished
    open_: set[int] = set()  # nodes whose children are being walked: a cycle's way back
    stack: list[tuple[yaml.Node, Location, bool]] = [(root, (), False)]
    while stack:
        node, here, finished = stack.pop()
        line = node.start_mark.line + 1
        if finished:
            open_.discard(id(node))
            size[id(node)] = 1 + sum(size[id(child)] for child in _children(node))
            if size[id(node)] > MAX_VALUES:
                raise ConfigError(path, [f"{path.name}:{line}: {_dotted(here)}: aliases expand "
                                         f"to more than {MAX_VALUES} values (is it a 'billion "
                                         "laughs' file?)"])  # fmt: skip
            continue
        out.setdefault(here, line)
        if id(node) in open_:
            raise ConfigError(path, [f"{path.name}:{line}: {_dotted(here)}: an alias refers to "
                                     "a value that contains it (a recursive alias)"])  # fmt: skip
        if id(node) in size:
            continue  # seen before, through another alias: measured already
        if len(here) > MAX_DEPTH:
            raise ConfigError(path, [f"{path.name}:{line}: {_dotted(here)[:200]}: nested more "
                                     f"than {MAX_DEPTH} levels deep"])  # fmt: skip
        open_.add(id(node))
        stack.append((node, here, True))
        if isinstance(node, yaml.MappingNode):
            for key, value in reversed(node.value):
                child = (*here, _key(key))
                out[child] = key.start_mark.line + 1
                stack.append((value, child, False))
                stack.append((key, (*here, "<key>"), False))  # keys can hold aliases too
        elif isinstance(node, yaml.SequenceNode):
            for index, item in reversed(list(enumerate(node.value))):
                stack.append((item, (*here, index), False))
    return out


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _dotted(loc: Location) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def find_config(start: Path | None = None) -> Path:
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_NAME
        if candidate.exists():
            return candidate
    raise KubeloopError(f"no {CONFIG_NAME} in {here} or any parent folder",
                        "create one with 'kubeloop init', or pass --config PATH")  # fmt: skip


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(loc: Location, lines: dict[Location, int], path: Path) -> str:
    # The deepest recorded ancestor gives the line: a missing key has none of its own.
    probe = loc
    while probe and probe not in lines:
        probe = probe[:-1]
    line = lines.get(probe, 1)
    return f"{path.name}:{line}: {_dotted(loc)}"


def decode(data: bytes, path: Path) -> str:
    """The text of a config file: UTF-8, or UTF-16/32 as YAML allows (named by a byte
    order mark, or by the zero bytes around the first ASCII character)."""
    codec = "utf-8"
    for bom, name in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                      (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                      (codecs.BOM_UTF16_BE, "utf-16")):  # fmt: skip
        if data.startswith(bom):
            codec = name
            break
    else:
        head = data[:4]
        if len(head) == 4 and head[:3] == b"\0\0\0":
            codec = "utf-32-be"
        elif len(head) == 4 and head[1:] == b"\0\0\0":
            codec = "utf-32-le"
        elif len(head) >= 2 and head[0] == 0:
            codec = "utf-16-be"
        elif len(head) >= 2 and head[1] == 0:
            codec = "utf-16-le"
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].decode(codec, "replace").count("\n") + 1
        raise ConfigError(path, [f"{path.name}:{line}: not {codec.upper()} text "
                                 f"(byte {exc.start}: {exc.reason})"]) from exc  # fmt: skip


def _too_large(path: Path) -> None:
    raise ConfigError(path, [f"{path.name}: larger than {MAX_BYTES // 1024} KiB; a "
                             "kubeloop.yaml is a few kilobytes (is it the right file?)"])  # fmt: skip


def _read_yaml(text: str, path: Path) -> tuple[Any, dict[Location, int]]:
    """The document's data and the line of every path in it; every problem is a
    ConfigError with the file and line."""
    if len(text) > MAX_BYTES:
        _too_large(path)
    try:
        text.encode("utf-8")  # the C parser needs it; a lone surrogate cannot be
    except UnicodeEncodeError as exc:
        line = text[: exc.start].count("\n") + 1
        raise ConfigError(path, [f"{path.name}:{line}: not valid text ({exc.reason})"]) from exc
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        lines = _lines(node, path)
        return loader.construct_document(node), lines
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{path.name}:{mark.line + 1}" if mark else path.name
        problem = getattr(exc, "problem", None) or exc
        raise ConfigError(path, [f"{where}: not valid YAML: {problem}"]) from exc
    except RecursionError as exc:  # the parser's own nesting, before our walk can refuse it
        raise ConfigError(path, [f"{path.name}: nested too deeply to read"]) from exc
    finally:
        loader.dispose()


def parse(text: str | bytes, path: Path, environment: str | None = None) -> LoadedConfig:
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            _too_large(path)
        text = decode(text, path)
    data, lines = _read_yaml(text, path)
    if not isinstance(data, dict):
        raise ConfigError(path, [f"{path.name}:1: expected a mapping of settings"])
    try:
        base = Project.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(path, [_problem(e, lines, path) for e in exc.errors()]) from exc
    if environment is None:
        return LoadedConfig(base, path, None)
    if environment not in base.environments:
        known = ", ".join(sorted(base.environments)) or "none defined"
        raise ConfigError(path, [f"{path.name}: environment '{environment}' is not defined "
                                 f"(known: {known})"])  # fmt: skip
    override = data["environments"][environment] or {}
    merged = deep_merge({k: v for k, v in data.items() if k != "environments"}, override)
    merged["environments"] = data.get("environments")
    try:
        project = Project.model_validate(merged)
    except ValidationError as exc:
        problems = [_problem(e, lines, path, ("environments", environment)) for e in exc.errors()]
        raise ConfigError(path, problems) from exc
    return LoadedConfig(project, path, environment)


def _problem(error: Any, lines: dict[Location, int], path: Path, prefix: Location = ()) -> str:
    loc = tuple(error["loc"])
    where = _describe((*prefix, *loc) if (*prefix, *loc) in lines else loc, lines, path)
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown key (check the spelling; see 'kubeloop config schema')"
    elif error["type"] == "missing":
        message = "required key is missing"
    return f"{where}: {message}"


def load(path: Path | None = None, environment: str | None = None) -> LoadedConfig:
    """Read and validate ``kubeloop.yaml`` (default: found from the current folder up)
    with ``environment``'s overrides applied."""
    config_path = path or find_config()
    try:
        with config_path.open("rb") as file:
            data = file.read(MAX_BYTES + 1)  # more is refused; never read a huge file whole
    except OSError as exc:
        raise KubeloopError(f"cannot read {config_path}: {exc.strerror}") from exc
    return parse(data, config_path.resolve(), environment)
