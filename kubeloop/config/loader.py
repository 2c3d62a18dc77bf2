"""Reading ``kubeloop.yaml``: YAML with line numbers, environment overrides, and errors
that name the file, the line, the key and what was expected."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kubeloop.config.schema import Project
from kubeloop.errors import KubeloopError

try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

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


def _lines(node: yaml.Node, here: Location, out: dict[Location, int]) -> None:
    """Record the line of every key and item (1-based) by its path."""
    out[here] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*here, key.value)
            out[child] = key.start_mark.line + 1
            _lines(value, child, out)
            out[child] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _lines(item, (*here, index), out)


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
    key = ".".join(str(p) for p in loc) or "(top level)"
    return f"{path.name}:{line}: {key}"


def parse(text: str, path: Path, environment: str | None = None) -> LoadedConfig:
    try:
        node = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path.name}:{mark.line + 1}" if mark else path.name
        raise ConfigError(
            path, [f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}"]
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(path, [f"{path.name}:1: expected a mapping of settings"])
    lines: dict[Location, int] = {}
    if node is not None:
        _lines(node, (), lines)
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
    config_path = path or find_config()
    try:
        text = config_path.read_text()
    except OSError as exc:
        raise KubeloopError(f"cannot read {config_path}: {exc.strerror}") from exc
    return parse(text, config_path.resolve(), environment)
