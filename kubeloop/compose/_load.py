"""Read a Compose project: find its file, merge the override file as ``docker compose``
does, substitute ``${VARIABLES}`` and check the shapes kubeloop reads. Compose files are
user input: every wrong shape is an error naming the file, the key and the fix."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from kubeloop.errors import KubeloopError

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
OVERRIDE_FILES = ("compose.override.yaml", "compose.override.yml",
                  "docker-compose.override.yaml", "docker-compose.override.yml")  # fmt: skip
MAX_BYTES = 1 << 20
SERVICE_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def find_compose_file(folder: Path, name: str | None = None) -> Path:
    """The file ``docker compose`` would read in ``folder`` (or ``name``, if given)."""
    if name:
        path = Path(name) if Path(name).is_absolute() else folder / name
        if not path.is_file():
            raise KubeloopError(f"no compose file {path}", "name an existing file, or leave "
                                "FILE out to use compose.yaml or docker-compose.yml")  # fmt: skip
        return path
    for candidate in DEFAULT_FILES:
        if (folder / candidate).is_file():
            return folder / candidate
    raise KubeloopError(f"no compose file in {folder}",
                        f"kubeloop looks for {', '.join(DEFAULT_FILES)}; or pass the file: "
                        "kubeloop init --compose FILE")  # fmt: skip


def override_file(main: Path) -> Path | None:
    """``docker-compose.override.yml`` beside the default file (an explicitly named file
    gets none, as with ``docker compose -f``)."""
    for candidate in OVERRIDE_FILES:
        if (main.parent / candidate).is_file():
            return main.parent / candidate
    return None


def read_dotenv(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (``export``, quotes and ``#`` comments as Compose reads them)."""
    values: dict[str, str] = {}
    text = _read_text(path)
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", key):
            raise KubeloopError(f"{path}:{number}: '{raw.strip()}' is not KEY=VALUE",
                                "write one variable per line as NAME=value")  # fmt: skip
        if not sep:
            continue  # a bare name takes the shell's value in Compose; we have none to give
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


def _read_text(path: Path) -> str:
    if path.stat().st_size > MAX_BYTES:
        raise KubeloopError(f"{path} is larger than 1 MiB", "is it the right file?")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise KubeloopError(f"{path} is not UTF-8 text: {exc}") from exc


_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])"
    r"(?P<arg>[^}]*))?\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*)|(?P<bad>\{[^}]*\}?))"
)


def interpolate(value: str, variables: Mapping[str, str], where: str) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}``,
    ``${VAR:+alternative}`` and ``$$``. An unset variable becomes "" (Compose warns too)."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["bad"] is not None:
            raise KubeloopError(f"{where}: invalid variable '{match.group(0)}'",
                                "write ${NAME}, ${NAME:-default} or $$ for a dollar sign")  # fmt: skip
        name = match["braced"] or match["named"]
        op, arg = match["op"], match["arg"] or ""
        value = variables.get(name)
        empty = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":-", "-"):
            return interpolate(arg, variables, where) if empty else str(value)
        if op in (":?", "?"):
            if empty:
                raise KubeloopError(f"{where}: {name} is required: {arg or 'not set'}",
                                    f"set {name} in the environment or in .env")  # fmt: skip
            return str(value)
        if op in (":+", "+"):
            return "" if empty else interpolate(arg, variables, where)
        return value or ""

    return _VARIABLE.sub(replace, value)


MAX_NODES = 200_000


def _interpolate_tree(node: Any, variables: Mapping[str, str], where: str,
                      budget: list[int] | None = None) -> Any:  # fmt: skip
    # YAML aliases share one node between many places; walked out, a small file with
    # nested aliases is billions of nodes. A compose file never needs that many.
    budget = budget if budget is not None else [MAX_NODES]
    budget[0] -= 1
    if budget[0] < 0:
        raise KubeloopError(f"{where}: the file expands to more than {MAX_NODES} values",
                            "is it a compose file? (nested YAML aliases)")  # fmt: skip
    if isinstance(node, str):
        return interpolate(node, variables, where)
    if isinstance(node, list):
        return [_interpolate_tree(v, variables, f"{where}[{i}]", budget)
                for i, v in enumerate(node)]  # fmt: skip
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, variables, f"{where}.{k}", budget)
                for k, v in node.items()}  # fmt: skip
    return node


def parse_compose(text: str, path: Path, variables: Mapping[str, str]) -> dict[str, Any]:
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise KubeloopError(f"{path} is not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise KubeloopError(f"{path}: the top level must be a mapping with 'services:'")
    data = _interpolate_tree(data, variables, path.name)
    assert isinstance(data, dict)
    return data


# Sequences Compose appends (without repeats) when an override file names them again.
_APPENDED = {"ports", "expose", "external_links", "dns", "dns_search", "tmpfs", "cap_add",
             "cap_drop", "env_file", "extra_hosts", "profiles"}  # fmt: skip
# Mappings written as lists or mappings: merged key by key.
_KEYED = {"environment", "labels", "build_args"}


def environment_dict(value: Any, where: str) -> dict[str, str | None]:
    """``environment:`` as a mapping or a ``KEY=VALUE`` list → {KEY: value or None}."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): None if v is None else _scalar(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        result: dict[str, str | None] = {}
        for item in value:
            if not isinstance(item, str):
                raise KubeloopError(f"{where}: '{item}' is not KEY=VALUE")
            key, sep, val = item.partition("=")
            result[key] = val if sep else None
        return result
    raise KubeloopError(f"{where} must be a mapping or a list of KEY=VALUE")


def _scalar(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise KubeloopError(f"{where}: expected a string or number, got {type(value).__name__}")


def _volume_target(entry: Any) -> str:
    if isinstance(entry, dict):
        return str(entry.get("target", ""))
    parts = str(entry).split(":")
    return parts[1] if len(parts) > 1 else parts[0]


def merge_service(base: dict[str, Any], override: dict[str, Any], where: str) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        old = merged.get(key)
        if key in _KEYED or key == "environment":
            merged[key] = {**environment_dict(old, where), **environment_dict(value, where)}
        elif key in _APPENDED and isinstance(old, list) and isinstance(value, list):
            merged[key] = old + [v for v in value if v not in old]
        elif key in ("volumes", "devices") and isinstance(old, list) and isinstance(value, list):
            by_target = {_volume_target(v): v for v in old}
            by_target.update({_volume_target(v): v for v in value})
            merged[key] = list(by_target.values())
        elif key == "build" and isinstance(old, dict) and isinstance(value, dict):
            build = {**old, **value}
            if "args" in old or "args" in value:
                build["args"] = {**environment_dict(old.get("args"), where),
                                 **environment_dict(value.get("args"), where)}  # fmt: skip
            merged[key] = build
        elif key in ("command", "entrypoint") or not (
            isinstance(old, dict) and isinstance(value, dict)
        ):
            merged[key] = value
        else:
            merged[key] = {**old, **value}
    return merged


def merge_files(base: dict[str, Any], override: dict[str, Any], where: str) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        old = merged.get(key)
        if key == "services" and isinstance(old, dict) and isinstance(value, dict):
            services = dict(old)
            for name, service in value.items():
                if isinstance(services.get(name), dict) and isinstance(service, dict):
                    services[name] = merge_service(services[name], service, f"{where}: {name}")
                else:
                    services[name] = service
            merged[key] = services
        elif isinstance(old, dict) and isinstance(value, dict):
            merged[key] = {**old, **value}
        else:
            merged[key] = value
    return merged


def resolve_extends(services: dict[str, Any], folder: Path, variables: Mapping[str, str],
                    where: str, chain: tuple[str, ...] = ()) -> None:  # fmt: skip
    """Replace each service's ``extends`` (same file, or ``file:``) by the merge of the
    service it names and its own settings, as Compose does."""
    for name in list(services):
        _resolve(services, name, folder, variables, where, chain)


def _resolve(services: dict[str, Any], name: str, folder: Path, variables: Mapping[str, str],
             where: str, chain: tuple[str, ...]) -> Any:  # fmt: skip
    service = services.get(name)
    if not isinstance(service, dict) or "extends" not in service:
        return service
    spec = service["extends"]
    spec = {"service": spec} if isinstance(spec, str) else spec
    if not isinstance(spec, dict) or not isinstance(spec.get("service"), str):
        raise KubeloopError(f"{where}: services.{name}.extends needs a 'service'")
    link = f"{where}:{name}"
    if link in chain:
        raise KubeloopError(f"{where}: services.{name}.extends loops back to itself")
    if spec.get("file"):
        path = folder / str(spec["file"])
        if not path.is_file():
            raise KubeloopError(f"{where}: services.{name}.extends: no file {path}")
        others = parse_compose(_read_text(path), path, variables).get("services") or {}
        base = _resolve(others, spec["service"], path.parent, variables, path.name,
                        (*chain, link))  # fmt: skip
    else:
        base = _resolve(services, spec["service"], folder, variables, where, (*chain, link))
    if not isinstance(base, dict):
        raise KubeloopError(f"{where}: services.{name}.extends: no service "
                            f"'{spec['service']}' to extend")  # fmt: skip
    own = {k: v for k, v in service.items() if k != "extends"}
    services[name] = merge_service(base, own, f"{where}: {name}")
    return services[name]


def check_shapes(data: dict[str, Any], path: Path) -> None:
    services = data.get("services")
    if not isinstance(services, dict) or not services:
        raise KubeloopError(f"{path}: no services", "a compose file lists its containers "
                            "under 'services:'")  # fmt: skip
    for name, service in services.items():
        where = f"{path.name}: services.{name}"
        if not isinstance(name, str) or not SERVICE_NAME.match(name):
            raise KubeloopError(f"{path.name}: '{name}' is not a valid service name",
                                "use letters, digits, '-', '_' and '.'")  # fmt: skip
        if service is None:
            service = services[name] = {}
        if not isinstance(service, dict):
            raise KubeloopError(f"{where} must be a mapping")
        if "image" not in service and "build" not in service:
            raise KubeloopError(f"{where} has neither 'image' nor 'build'",
                                "give it an image to run or a folder to build")  # fmt: skip
        for key, kinds in (("ports", list), ("expose", list), ("volumes", list),
                           ("env_file", (str, list)), ("depends_on", (list, dict)),
                           ("build", (str, dict)), ("healthcheck", dict), ("deploy", dict),
                           ("profiles", list), ("command", (str, list)),
                           ("entrypoint", (str, list)), ("networks", (list, dict)),
                           ("image", str), ("restart", str), ("cap_add", list),
                           ("cap_drop", list), ("extra_hosts", (list, dict))):  # fmt: skip
            required = key in ("image", "build")  # `image: null` is no image
            value = service.get(key)
            if key in service and (value is not None or required) and not isinstance(value, kinds):
                expected = kinds.__name__ if isinstance(kinds, type) else " or ".join(
                    k.__name__ for k in kinds)  # fmt: skip
                raise KubeloopError(f"{where}.{key} must be a {expected}, "
                                    f"not {type(service[key]).__name__}",
                                    "see https://docs.docker.com/compose/compose-file/05-services/")  # fmt: skip
    for section in ("volumes", "networks", "configs", "secrets"):
        if data.get(section) is not None and not isinstance(data[section], dict):
            raise KubeloopError(f"{path.name}: '{section}' must be a mapping")


def load_compose(folder: Path, name: str | None = None) -> tuple[dict[str, Any], list[Path]]:
    """The merged compose model of ``folder`` and the files it came from."""
    main = find_compose_file(folder, name)
    files = [main]
    if name is None and (extra := override_file(main)) is not None:
        files.append(extra)
    dotenv = main.parent / ".env"
    variables = {**(read_dotenv(dotenv) if dotenv.is_file() else {}), **os.environ}
    data: dict[str, Any] = {}
    for path in files:
        data = merge_files(data, parse_compose(_read_text(path), path, variables), path.name)
    if isinstance(data.get("services"), dict):
        resolve_extends(data["services"], main.parent, variables, main.name)
    check_shapes(data, main)
    return data, files
