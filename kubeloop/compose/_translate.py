"""Compose services → Kubernetes objects and a kubeloop project, rule by rule. What has
no Kubernetes equivalent is kept as a :class:`Note` with the reason, never dropped."""

from __future__ import annotations

import json
import math
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubeloop.compose._load import environment_dict, read_dotenv
from kubeloop.core import Obj
from kubeloop.errors import KubeloopError

# The init container that holds a service back until what it depends on answers: bash's
# /dev/tcp needs no tool in the image, and a Service without ready endpoints refuses.
WAIT_IMAGE = "debian:bookworm-slim"
VOLUME_ROOT = "/var/lib/kubeloop-volumes"
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE|CREDENTIAL", re.I)
# Ports of well-known images, for services that declare none (Compose needs none to be
# reached by name; a Kubernetes Service does).
KNOWN_PORTS = {"redis": 6379, "postgres": 5432, "mysql": 3306, "mariadb": 3306,
               "mongo": 27017, "memcached": 11211, "rabbitmq": 5672, "nginx": 80,
               "httpd": 80, "elasticsearch": 9200}  # fmt: skip
MAX_CONFIG_BYTES = 512 * 1024
# Keys translated below, or harmless to leave out (their note says why).
_IGNORED = {"container_name": "the Service name is the service's name",
            "links": "service names resolve in the cluster without links",
            "hostname": "pods reach it by its Service name",
            "platform": "images are built for the node's platform",
            "pull_policy": "kubeloop builds or the cluster pulls as usual"}  # fmt: skip


@dataclass(frozen=True)
class Note:
    """One translation decision a person should know about."""

    service: str  # "" for the whole project
    key: str
    message: str
    translated: bool = False  # False: not translated, with the reason in message


@dataclass
class ServiceOutput:
    name: str  # the Kubernetes name (DNS-1123) of the compose service
    compose_name: str
    objects: list[Obj]
    profiles: list[str] = field(default_factory=list)
    artifact: dict[str, Any] | None = None
    port_forwards: list[dict[str, Any]] = field(default_factory=list)
    syncs: list[dict[str, Any]] = field(default_factory=list)
    built: bool = False  # runs an image kubeloop builds


@dataclass
class Translation:
    project: str
    services: list[ServiceOutput]
    volumes: list[Obj]
    notes: list[Note]
    images: list[str]  # images pulled as they are (for seeding hints)


def k8s_name(name: str) -> str:
    cleaned = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return cleaned[:63].rstrip("-") or "svc"


def parse_duration(value: Any, where: str) -> float:
    """Compose durations: ``1m30s``, ``500ms``, ``10s``, or a number of seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise KubeloopError(f"{where}: '{value}' is not a duration", "write e.g. 10s, 1m30s, 500ms")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)


def _seconds(value: Any, where: str, default: int) -> int:
    if value is None:
        return default
    return max(1, math.ceil(parse_duration(value, where)))


def memory_quantity(value: Any, where: str) -> str:
    """Compose sizes (``512m``, ``1gb``, ``1024k``, bytes) → Kubernetes quantities."""
    text = str(value).strip().lower()
    match = re.fullmatch(r"(\d+)\s*(b|k|kb|m|mb|g|gb)?", text)
    if not match:
        raise KubeloopError(f"{where}: '{value}' is not a size", "write e.g. 512m or 1g")
    unit = {None: "", "b": "", "k": "Ki", "kb": "Ki", "m": "Mi", "mb": "Mi", "g": "Gi",
            "gb": "Gi"}[match.group(2)]  # fmt: skip
    return match.group(1) + unit


@dataclass(frozen=True)
class PortSpec:
    target: int
    published: int | None
    protocol: str


def parse_ports(entries: list[Any], where: str) -> list[PortSpec]:
    """Short (``[IP:][HOST:]CONTAINER[/PROTO]``, ranges) and long port syntax."""
    result: list[PortSpec] = []
    for entry in entries:
        if isinstance(entry, dict):
            try:
                target = int(entry["target"])
            except (KeyError, ValueError, TypeError) as exc:
                raise KubeloopError(f"{where}: port {entry} needs a numeric 'target'") from exc
            text = str(entry.get("published") or "")
            published = int(text) if text.isdigit() else None  # a range: Compose picks one
            result.append(PortSpec(target, published, str(entry.get("protocol", "tcp")).upper()))
            continue
        text = str(entry)
        text, _, proto = text.partition("/")
        pieces = text.rsplit(":", 2)  # IPv6 host addresses keep their own colons
        container = pieces[-1]
        host = pieces[-2] if len(pieces) >= 2 else ""
        try:
            targets = _port_range(container)
            hosts: list[int | None] = (
                list(_port_range(host, 65535)) if host else [None] * len(targets)
            )
        except ValueError:
            raise KubeloopError(f"{where}: '{entry}' is not a port mapping",
                                "write CONTAINER, HOST:CONTAINER or IP:HOST:CONTAINER") from None  # fmt: skip
        if len(hosts) != len(targets):
            if len(targets) > 1:
                raise KubeloopError(f"{where}: '{entry}': host and container ranges differ in size")
            hosts = [None]  # a host range for one port: Compose picks one
        for target, published in zip(targets, hosts, strict=True):
            result.append(PortSpec(target, published, (proto or "tcp").upper()))
    for port in result:
        if not 1 <= port.target <= 65535 or (
            port.published is not None and not 0 <= port.published <= 65535
        ):
            raise KubeloopError(f"{where}: port {port.target} is out of range 1-65535")
        if port.protocol not in ("TCP", "UDP", "SCTP"):
            raise KubeloopError(f"{where}: protocol '{port.protocol}' is not tcp, udp or sctp")
    return result


def _port_range(text: str, most: int = 100) -> list[int]:
    first, sep, last = text.partition("-")
    if not sep:
        return [int(first)]
    low, high = int(first), int(last)
    if high < low or high - low > most:
        raise ValueError(text)
    return list(range(low, high + 1))


def _command(value: Any) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def _probe(healthcheck: dict[str, Any], where: str) -> Obj | None:
    test = healthcheck.get("test")
    if healthcheck.get("disable") or test in (None, ["NONE"]):
        return None
    if isinstance(test, str):
        argv = ["sh", "-c", test]
    elif isinstance(test, list) and test and test[0] == "CMD-SHELL":
        argv = ["sh", "-c", " ".join(str(t) for t in test[1:])]
    elif isinstance(test, list) and test and test[0] == "CMD":
        argv = [str(t) for t in test[1:]]
    else:
        raise KubeloopError(f"{where}.test must be a string or a list starting with CMD, "
                            "CMD-SHELL or NONE")  # fmt: skip
    return {
        "exec": {"command": argv},
        "periodSeconds": _seconds(healthcheck.get("interval"), f"{where}.interval", 30),
        "timeoutSeconds": _seconds(healthcheck.get("timeout"), f"{where}.timeout", 30),
        "failureThreshold": _whole(healthcheck.get("retries", 3), f"{where}.retries"),
    }


def _whole(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit():
        raise KubeloopError(f"{where} must be a whole number, not '{value}'")
    return int(value)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise KubeloopError(f"{where} must be a mapping, not {type(value).__name__}")
    return value


def _dockerfile_ports(path: Path) -> list[int]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    ports: list[int] = []
    for line in text.splitlines():
        words = line.split()
        if words[:1] and words[0].upper() == "EXPOSE":
            ports += [int(w.split("/")[0]) for w in words[1:] if w.split("/")[0].isdigit()]
    return ports


@dataclass
class _Volume:
    kind: str  # volume, bind, tmpfs
    source: str
    target: str
    read_only: bool


def _parse_volume(entry: Any, where: str) -> _Volume:
    if isinstance(entry, dict):
        kind = str(entry.get("type", "volume"))
        target = str(entry.get("target", ""))
        source = str(entry.get("source") or "")
        read_only = bool(entry.get("read_only", False))
    elif isinstance(entry, str):
        parts = entry.split(":")
        if len(parts) == 1:
            kind, source, target, read_only = "volume", "", parts[0], False
        else:
            source, target = parts[0], parts[1]
            read_only = len(parts) > 2 and "ro" in parts[2].split(",")
            kind = "bind" if source.startswith((".", "/", "~")) else "volume"
    else:
        raise KubeloopError(f"{where}: '{entry}' is not a volume", "write SOURCE:TARGET[:ro]")
    if not target.startswith("/"):
        raise KubeloopError(f"{where}: '{entry}': the target must be an absolute path")
    return _Volume(kind, source, target, read_only)


class _Translator:
    def __init__(self, data: dict[str, Any], folder: Path, project: str, source: str) -> None:
        self.data = data
        self.folder = folder.resolve()
        self.project = project
        self.source = source
        self.notes: list[Note] = []
        self.volumes: dict[str, list[Obj]] = {}
        self.images: list[str] = []
        self.names = {n: k8s_name(n) for n in data["services"]}
        for name, short in self.names.items():
            same = [n for n, k in self.names.items() if k == short and n != name]
            if same:
                raise KubeloopError(f"{source}: services '{name}' and '{same[0]}' would both "
                                    f"be called '{short}' in Kubernetes",
                                    "rename one (DNS names allow a-z, 0-9 and '-')")  # fmt: skip
        self.ports: dict[str, list[PortSpec]] = {}
        self._file_sources: dict[str, str] = {}
        self.built: dict[str, str] = {}  # build settings → the artifact that has them
        self.image_names: dict[str, str] = {}  # compose's `image:` of a build → artifact

    def note(self, service: str, key: str, message: str, translated: bool = False) -> None:
        self.notes.append(Note(service, key, message, translated))

    def run(self) -> Translation:
        services = self.data["services"]
        for compose_name, service in services.items():
            self.ports[compose_name] = self._service_ports(compose_name, service)
        # Built services first: a service may run the image another one builds.
        order = sorted(services, key=lambda n: "build" not in services[n])
        by_name = {n: self._service(n, services[n]) for n in order}
        outputs = [by_name[n] for n in services]
        self._project_notes()
        position = {n: i for i, n in enumerate(services)}
        self.notes.sort(key=lambda note: position.get(note.service, -1))  # the file's order
        volumes = [obj for objs in self.volumes.values() for obj in objs]
        if volumes:
            volumes.insert(0, {
                "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                "metadata": {"name": f"{self.project}-local"},
                "provisioner": "kubernetes.io/no-provisioner",
                "volumeBindingMode": "WaitForFirstConsumer",
            })  # fmt: skip
        return Translation(self.project, outputs, volumes, self.notes, sorted(set(self.images)))

    def _project_notes(self) -> None:
        networks = self.data.get("networks") or {}
        if networks:
            self.note("", "networks", f"networks {', '.join(sorted(networks))} flattened: every "
                      "service reaches every other by name in the namespace", translated=True)  # fmt: skip
        for section in ("configs", "secrets"):
            for name, spec in (self.data.get(section) or {}).items():
                if not isinstance(spec, dict) or not ({"file", "content"} & set(spec)):
                    self.note("", f"{section}.{name}", "only a 'file' or 'content' is "
                              "translated (external or environment ones are not)")  # fmt: skip
        for key in self.data:
            if key not in ("services", "volumes", "networks", "configs", "secrets", "version",
                           "name") and not str(key).startswith("x-"):  # fmt: skip
                self.note("", str(key), "unknown top-level key, not translated")

    def _service_ports(self, compose_name: str, service: dict[str, Any]) -> list[PortSpec]:
        where = f"{self.source}: services.{compose_name}"
        ports = parse_ports(service.get("ports") or [], f"{where}.ports")
        ports += parse_ports(service.get("expose") or [], f"{where}.expose")
        overridden = service.get("command") is not None or service.get("entrypoint") is not None
        if not ports and "build" in service and not overridden:
            context, dockerfile = self._build_paths(service["build"])
            ports = [PortSpec(p, None, "TCP") for p in _dockerfile_ports(context / dockerfile)]
            if ports:
                self.note(compose_name, "ports", f"port {ports[0].target} taken from the "
                          "Dockerfile's EXPOSE for its Service", translated=True)  # fmt: skip
        if not ports and isinstance(service.get("image"), str):
            base = service["image"].split("@")[0].rsplit("/", 1)[-1].split(":")[0]
            if base in KNOWN_PORTS:
                ports = [PortSpec(KNOWN_PORTS[base], None, "TCP")]
                self.note(compose_name, "ports", f"port {KNOWN_PORTS[base]} assumed from the "
                          f"image ({base}) for its Service", translated=True)  # fmt: skip
        unique: dict[tuple[int, str], PortSpec] = {}
        for port in ports:
            known = unique.get((port.target, port.protocol))
            if known is None or (known.published is None and port.published is not None):
                unique[(port.target, port.protocol)] = port
        return list(unique.values())

    def _build_paths(self, build: Any) -> tuple[Path, str]:
        if isinstance(build, str):
            return self.folder / build, "Dockerfile"
        context = str(build.get("context", "."))
        return self.folder / context, str(build.get("dockerfile", "Dockerfile"))

    def _relative(self, path: Path) -> str | None:
        try:
            rel = path.resolve().relative_to(self.folder)
        except ValueError:
            return None
        return rel.as_posix() or "."

    def _artifact(self, name: str, compose_name: str, build: Any) -> dict[str, Any]:
        where = f"{self.source}: services.{compose_name}.build"
        if (isinstance(build, str) and "://" in build) or (
            isinstance(build, dict) and "://" in str(build.get("context", ""))
        ):
            raise KubeloopError(f"{where}: a remote build context is not supported",
                                "clone it next to the compose file and point 'context' at it")  # fmt: skip
        context_path, dockerfile = self._build_paths(build)
        context = self._relative(context_path)
        if context is None:
            raise KubeloopError(f"{where}: the context {context_path} is outside {self.folder}",
                                "kubeloop.yaml names contexts relative to its folder")  # fmt: skip
        artifact: dict[str, Any] = {"image": name, "context": context}
        if dockerfile != "Dockerfile":
            artifact["dockerfile"] = dockerfile
        if not (context_path / dockerfile).is_file():
            self.note(compose_name, "build", f"no {dockerfile} in {context} yet: the build "
                      "will fail until there is one")  # fmt: skip
        if isinstance(build, dict):
            args = environment_dict(build.get("args"), f"{where}.args")
            given = {k: v for k, v in args.items() if v is not None}
            if given:
                artifact["buildArgs"] = given
            for key in sorted(set(args) - set(given)):
                self.note(compose_name, f"build.args.{key}", "no value in the file (Compose "
                          "takes it from your shell): left out")  # fmt: skip
            target = build.get("target")
            if isinstance(target, str) and re.fullmatch(
                r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", target
            ):
                artifact["target"] = target
            elif target is not None:
                self.note(compose_name, "build.target", f"'{target}' is not a stage name: "
                          "the image is built to the last stage")  # fmt: skip
            for key in sorted(set(build) - {"context", "dockerfile", "args", "target"}):
                self.note(compose_name, f"build.{key}", "not supported by kubeloop's "
                          "artifacts: the image is built without it")  # fmt: skip
        return artifact

    def _environment(self, compose_name: str, service: dict[str, Any]) -> dict[str, str]:
        where = f"{self.source}: services.{compose_name}"
        values: dict[str, str | None] = {}
        env_files = service.get("env_file") or []
        for entry in [env_files] if isinstance(env_files, str) else env_files:
            if not isinstance(entry, (str, dict)) or (
                isinstance(entry, dict) and "path" not in entry
            ):
                raise KubeloopError(f"{where}.env_file: '{entry}' is neither a path nor "
                                    "{path: ..., required: ...}")  # fmt: skip
            path_text, required = (entry, True) if isinstance(entry, str) else (
                str(entry["path"]), bool(entry.get("required", True)))  # fmt: skip
            path = self.folder / path_text
            if not path.is_file():
                if required:
                    raise KubeloopError(f"{where}.env_file: {path} does not exist",
                                        "create it, or mark it 'required: false'")  # fmt: skip
                continue
            values.update(read_dotenv(path))
        values.update(environment_dict(service.get("environment"), f"{where}.environment"))
        for key in sorted(k for k, v in values.items() if v is None):
            self.note(compose_name, f"environment.{key}", "no value in the file (Compose takes "
                      "it from your shell): left out; add it to the manifest or a Secret")  # fmt: skip
        return {k: v for k, v in values.items() if v is not None}

    def _service(self, compose_name: str, service: dict[str, Any]) -> ServiceOutput:
        name = self.names[compose_name]
        where = f"{self.source}: services.{compose_name}"
        if name != compose_name:
            self.note(compose_name, "name", f"named '{name}' in Kubernetes (DNS names allow "
                      f"only a-z, 0-9 and '-'): other services must use '{name}'")  # fmt: skip
        labels = {"app": name}
        out = ServiceOutput(name, compose_name, [], [str(p) for p in service.get("profiles") or []])
        container: Obj = {"name": name}
        if "build" in service:
            artifact = self._artifact(name, compose_name, service["build"])
            key = json.dumps([{k: v for k, v in artifact.items() if k != "image"},
                              out.profiles], sort_keys=True)  # fmt: skip
            shared = self.built.setdefault(key, name)
            out.built = True
            if shared == name:
                out.artifact = artifact
            else:
                self.note(compose_name, "build", f"the same build as '{shared}': one image",
                          translated=True)  # fmt: skip
            container["image"] = shared
            if "image" in service:
                self.image_names.setdefault(str(service["image"]), shared)
                self.note(compose_name, "image", f"the built image is called '{shared}' in "
                          f"kubeloop.yaml (compose tags it '{service['image']}')", translated=True)  # fmt: skip
        elif str(service["image"]) in self.image_names:
            # Compose runs the image another service builds and tags under this name.
            container["image"] = self.image_names[str(service["image"])]
            self.note(compose_name, "image", f"built by kubeloop as "
                      f"'{container['image']}'", translated=True)  # fmt: skip
        else:
            container["image"] = service["image"]
            self.images.append(str(service["image"]))
        if "entrypoint" in service and service["entrypoint"] is not None:
            container["command"] = _command(service["entrypoint"])
        if "command" in service and service["command"] is not None:
            container["args"] = _command(service["command"])
        if service.get("working_dir"):
            container["workingDir"] = str(service["working_dir"])
        env = self._environment(compose_name, service)
        secret = {k: v for k, v in env.items() if SECRET_NAME.search(k)}
        plain = {k: v for k, v in env.items() if k not in secret}
        if plain:
            container["env"] = [{"name": k, "value": v} for k, v in plain.items()]
        secret_objects: list[Obj] = []
        if secret:
            secret_objects.append({"apiVersion": "v1", "kind": "Secret",
                                   "metadata": {"name": f"{name}-env", "labels": labels},
                                   "stringData": secret})  # fmt: skip
            container["envFrom"] = [{"secretRef": {"name": f"{name}-env"}}]
            self.note(compose_name, "environment", f"{', '.join(sorted(secret))} {'looks' if len(secret) == 1 else 'look'} secret: "
                      f"in Secret {name}-env", translated=True)  # fmt: skip
        ports = self.ports[compose_name]
        if ports:
            container["ports"] = [{"containerPort": p.target, **({"protocol": p.protocol}
                                   if p.protocol != "TCP" else {})} for p in ports]  # fmt: skip
        probe = self._readiness(compose_name, service, ports)
        if probe:
            container["readinessProbe"] = probe
        self._security(compose_name, service, container)
        pod: Obj = {"containers": [container]}
        grace = service.get("stop_grace_period")
        pod["terminationGracePeriodSeconds"] = _seconds(grace, f"{where}.stop_grace_period", 5)
        init = self._waits(compose_name, service)
        if init:
            pod["initContainers"] = init
        pvcs = self._volumes(compose_name, service, pod, container, out)
        for section in ("configs", "secrets"):
            self._mounted_files(compose_name, section, service.get(section) or [], pod,
                                container, out)  # fmt: skip
        if service.get("tty"):
            container["tty"] = True
        if service.get("stdin_open"):
            container["stdin"] = True
        if service.get("extra_hosts"):
            pod["hostAliases"] = self._host_aliases(compose_name, service["extra_hosts"])
        replicas = self._deploy(compose_name, service, container)
        self._restart(compose_name, service)
        self._networks(compose_name, service)
        self._leftovers(compose_name, service)
        spec: Obj = {"replicas": replicas, "selector": {"matchLabels": labels}}
        if pvcs:
            # One pod at a time on a volume (a database must not start twice on its files).
            spec["strategy"] = {"type": "Recreate"}
        spec["template"] = {"metadata": {"labels": labels}, "spec": pod}
        metadata: Obj = {"name": name, "labels": labels}
        annotations = environment_dict(service.get("labels"), f"{where}.labels")
        if annotations:
            metadata["annotations"] = {k: v or "" for k, v in annotations.items()}
        deployment: Obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata,
                           "spec": spec}  # fmt: skip
        out.objects = [deployment, *secret_objects, *out.objects]
        if ports:
            out.objects.append({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "labels": labels},
                "spec": {"selector": labels, "ports": [
                    {"name": f"{p.protocol.lower()}-{p.target}", "port": p.target,
                     "targetPort": p.target, **({"protocol": p.protocol}
                                                if p.protocol != "TCP" else {})}
                    for p in ports]},
            })  # fmt: skip
            for p in ports:
                if p.published:
                    out.port_forwards.append({"resource": f"service/{name}", "port": p.target,
                                              "localPort": p.published})  # fmt: skip
                elif p.published is None and any(p.target == q.target for q in parse_ports(
                        service.get("ports") or [], where)):  # fmt: skip
                    self.note(compose_name, "ports", f"{p.target} is published on a random "
                              "host port by Compose: no port-forward (give it HOST:CONTAINER)")  # fmt: skip
                if p.protocol != "TCP" and p.published:
                    out.port_forwards.pop()
                    self.note(compose_name, "ports", f"{p.target}/{p.protocol.lower()}: "
                              "port-forwards carry TCP only; the Service has the port")  # fmt: skip
        else:
            self.note(compose_name, "ports", "no ports or expose: no Service, so no other "
                      "service can reach it by name (add 'expose: [PORT]' if one should)", translated=True)  # fmt: skip
        return out

    def _readiness(
        self, compose_name: str, service: dict[str, Any], ports: list[PortSpec]
    ) -> Obj | None:
        healthcheck = service.get("healthcheck")
        where = f"{self.source}: services.{compose_name}.healthcheck"
        if isinstance(healthcheck, dict):
            probe = _probe(healthcheck, where)
            if probe is not None:
                if healthcheck.get("start_period") is not None:
                    self.note(compose_name, "healthcheck.start_period", "no readiness "
                              "equivalent: failures count from the start")  # fmt: skip
                self.note(compose_name, "healthcheck", "readiness probe", translated=True)
                return probe
            return None
        tcp = [p for p in ports if p.protocol == "TCP"]
        if tcp:
            return {"tcpSocket": {"port": tcp[0].target}, "periodSeconds": 1}
        return None

    def _waits(self, compose_name: str, service: dict[str, Any]) -> list[Obj]:
        depends = service.get("depends_on") or []
        where = f"{self.source}: services.{compose_name}.depends_on"
        conditions: dict[str, str] = (
            {str(d): "service_started" for d in depends} if isinstance(depends, list) else
            {str(k): str(_mapping(v, f"{where}.{k}").get("condition", "service_started"))
             for k, v in depends.items()}
        )  # fmt: skip
        waits: list[Obj] = []
        for dependency, condition in conditions.items():
            if dependency not in self.data["services"]:
                raise KubeloopError(f"{where}: no service '{dependency}'",
                                    f"services: {', '.join(self.data['services'])}")  # fmt: skip
            if condition == "service_completed_successfully":
                self.note(compose_name, f"depends_on.{dependency}", "waiting for a service to "
                          "exit has no Deployment equivalent: not translated")  # fmt: skip
                continue
            tcp = [p for p in self.ports[dependency] if p.protocol == "TCP"]
            if not tcp:
                self.note(compose_name, f"depends_on.{dependency}", f"'{dependency}' has no "
                          "port to wait on: not translated (the pod may restart until it is up)")  # fmt: skip
                continue
            host, port = self.names[dependency], tcp[0].target
            waits.append({
                "name": f"wait-for-{host}"[:63], "image": WAIT_IMAGE,
                "command": ["bash", "-c", f"echo waiting for {host}:{port}; until (exec "
                            f"3<>/dev/tcp/{host}/{port}) 2>/dev/null; do sleep 0.5; done"],
            })  # fmt: skip
            how = "ready: its healthcheck" if condition == "service_healthy" else "listening"
            self.note(compose_name, f"depends_on.{dependency}", f"an init container waits "
                      f"for {host}:{port} (until {how})", translated=True)  # fmt: skip
        return waits

    def _volumes(self, compose_name: str, service: dict[str, Any], pod: Obj, container: Obj,
                 out: ServiceOutput) -> bool:  # fmt: skip
        where = f"{self.source}: services.{compose_name}.volumes"
        declared = self.data.get("volumes") or {}
        mounts: list[Obj] = []
        volumes: list[Obj] = []
        files: dict[str, str] = {}
        uses_claim = False
        excludes: list[tuple[str, str]] = []
        entries = [_parse_volume(v, where) for v in service.get("volumes") or []]
        synced = [v.target for v in entries if v.kind == "bind" and self._is_source_dir(v)]
        for index, volume in enumerate(entries):
            vname = f"v{index}"
            if volume.kind == "tmpfs":
                volumes.append({"name": vname, "emptyDir": {"medium": "Memory"}})
            elif volume.kind == "volume" and not volume.source:
                inside = next(
                    (s for s in synced if volume.target.startswith(s.rstrip("/") + "/")), None
                )
                if inside is not None:
                    # The `.:/app` + `/app/node_modules` idiom: keep the image's folder.
                    excludes.append((inside, volume.target[len(inside.rstrip("/")) + 1 :]))
                    self.note(compose_name, "volumes", f"{volume.target} keeps the image's "
                              "files: left out of the sync", translated=True)  # fmt: skip
                    continue
                volumes.append({"name": vname, "emptyDir": {}})
                self.note(compose_name, "volumes", f"anonymous volume {volume.target} → an "
                          "emptyDir (starts empty, not from the image)", translated=True)  # fmt: skip
            elif volume.kind == "volume":
                spec = declared.get(volume.source) if isinstance(declared, dict) else None
                claim = self._claim(compose_name, volume.source, spec)
                if claim is None:
                    continue
                volumes.append({"name": vname, "persistentVolumeClaim": {"claimName": claim}})
                uses_claim = True
            elif volume.kind == "bind":
                self._bind(compose_name, volume, out, files)
                continue  # synced, or mounted from the ConfigMap below
            else:
                self.note(compose_name, "volumes", f"{volume.kind} mount {volume.target}: not "
                          "translated")  # fmt: skip
                continue
            mount: Obj = {"name": vname, "mountPath": volume.target}
            if volume.read_only:
                mount["readOnly"] = True
            mounts.append(mount)
        for inside, rel in excludes:
            for rule in out.syncs:
                if rule["dest"] == inside:
                    rule.setdefault("exclude", []).append(f"/{rel}")
        if files:
            config_name = f"{out.name}-files"
            data: dict[str, str] = {}
            for key, target in files.items():
                data[key] = (self.folder / self._file_sources[key]).read_text()
                mounts.append({"name": "files", "mountPath": target, "subPath": key,
                               "readOnly": True})  # fmt: skip
            volumes.append({"name": "files", "configMap": {"name": config_name}})
            out.objects.append({"apiVersion": "v1", "kind": "ConfigMap",
                                "metadata": {"name": config_name, "labels": {"app": out.name}},
                                "data": data})  # fmt: skip
        if mounts:
            container["volumeMounts"] = mounts
        if volumes:
            pod["volumes"] = volumes
        return uses_claim

    def _mounted_files(self, compose_name: str, section: str, entries: Any, pod: Obj,
                       container: Obj, out: ServiceOutput) -> None:  # fmt: skip
        """Service ``configs`` → a ConfigMap, ``secrets`` → a Secret, each file mounted
        where Compose puts it (``/NAME``, ``/run/secrets/NAME``)."""
        where = f"{self.source}: services.{compose_name}.{section}"
        if not isinstance(entries, list):
            raise KubeloopError(f"{where} must be a list")
        defined = self.data.get(section) or {}
        data: dict[str, str] = {}
        for entry in entries:
            source = str(entry.get("source", "")) if isinstance(entry, dict) else str(entry)
            target = str(entry.get("target") or source) if isinstance(entry, dict) else source
            spec = defined.get(source)
            if not isinstance(spec, dict):
                raise KubeloopError(f"{where}: '{source}' is not defined under top-level "
                                    f"'{section}:'")  # fmt: skip
            if "content" in spec:
                content = str(spec["content"])
            elif "file" in spec and (path := self.folder / str(spec["file"])).is_file() and (
                    self._relative(path) is not None and path.stat().st_size <= MAX_CONFIG_BYTES):  # fmt: skip
                try:
                    content = path.read_text(encoding="utf-8")
                except UnicodeDecodeError:
                    self.note(compose_name, f"{section}.{source}", "not UTF-8 text: not "
                              "translated")  # fmt: skip
                    continue
            else:
                self.note(compose_name, f"{section}.{source}", "no file of at most 512 KiB in "
                          "the project, nor content: not translated")  # fmt: skip
                continue
            if not target.startswith("/"):
                target = f"/run/secrets/{target}" if section == "secrets" else f"/{target}"
            key = re.sub(r"[^A-Za-z0-9._-]+", "_", source)
            data[key] = content
            container.setdefault("volumeMounts", []).append(
                {"name": section, "mountPath": target, "subPath": key, "readOnly": True})  # fmt: skip
        if not data:
            return
        name = f"{out.name}-{section}"
        labels = {"app": out.name}
        if section == "secrets":
            out.objects.append({"apiVersion": "v1", "kind": "Secret",
                                "metadata": {"name": name, "labels": labels}, "stringData": data})  # fmt: skip
            pod.setdefault("volumes", []).append({"name": section, "secret": {"secretName": name}})
        else:
            out.objects.append({"apiVersion": "v1", "kind": "ConfigMap",
                                "metadata": {"name": name, "labels": labels}, "data": data})  # fmt: skip
            pod.setdefault("volumes", []).append({"name": section, "configMap": {"name": name}})
        self.note(compose_name, section, f"{', '.join(sorted(data))} → {name}, mounted as "
                  "files", translated=True)  # fmt: skip

    def _is_source_dir(self, volume: _Volume) -> bool:
        path = (self.folder / volume.source).resolve()
        return path.is_dir() and self._relative(path) is not None

    def _bind(self, compose_name: str, volume: _Volume, out: ServiceOutput,
              files: dict[str, str]) -> None:  # fmt: skip
        """Source folders → sync rules; small text files → a ConfigMap (in ``files``)."""
        path = (self.folder / Path(volume.source).expanduser()).resolve()
        rel = self._relative(path)
        if rel is None:
            self.note(compose_name, "volumes", f"{volume.source} is outside the project: a "
                      "host folder is not mounted into pods (not translated)")  # fmt: skip
            return
        if path.is_dir():
            restart = "process" if out.built else "none"
            out.syncs.append({"selector": {"app": out.name}, "src": rel, "dest": volume.target,
                              "restart": restart})  # fmt: skip
            self.note(compose_name, "volumes", f"{volume.source} → live sync into "
                      f"{volume.target} (restart: {restart}), not a hostPath", translated=True)  # fmt: skip
            return
        if path.is_file():
            size = path.stat().st_size
            try:
                if "\0" in path.read_text(encoding="utf-8"):
                    size = -1
            except UnicodeDecodeError:
                size = -1
            if not 0 <= size <= MAX_CONFIG_BYTES:
                self.note(compose_name, "volumes", f"{volume.source}: only UTF-8 files up to "
                          "512 KiB become ConfigMaps (not translated)")  # fmt: skip
                return
            key = re.sub(r"[^A-Za-z0-9._-]+", "_", rel)[-253:]
            files[key] = volume.target
            self._file_sources[key] = rel
            self.note(compose_name, "volumes", f"{volume.source} → ConfigMap "
                      f"{out.name}-files (read-only; 'kubeloop dev' redeploys it on a save)",
                      translated=True)  # fmt: skip
            return
        self.note(compose_name, "volumes", f"{volume.source} does not exist (Compose would "
                  "create an empty folder): not translated")  # fmt: skip

    def _claim(self, compose_name: str, volume: str, spec: Any) -> str | None:
        name = k8s_name(volume)
        if isinstance(spec, dict) and spec.get("external"):
            self.note(compose_name, "volumes", f"external volume '{volume}': expects a "
                      f"PersistentVolumeClaim '{name}' in the namespace", translated=True)  # fmt: skip
            return name
        if isinstance(spec, dict) and (spec.get("driver") or spec.get("driver_opts")):
            self.note(compose_name, "volumes", f"volume '{volume}': driver and driver_opts "
                      "have no meaning here; a node-local volume is used")  # fmt: skip
        if name in self.volumes:
            return name
        pv, storage_class = f"{self.project}-{name}", f"{self.project}-local"
        # Bound by the scheduler when the pod is placed (WaitForFirstConsumer): a claim
        # bound in advance is "unbound" for a moment, and the pod unschedulable meanwhile.
        self.volumes[name] = [
            {"apiVersion": "v1", "kind": "PersistentVolume",
             "metadata": {"name": pv, "labels": {"kubeloop.dev/volume": pv}},
             "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                      "persistentVolumeReclaimPolicy": "Retain",
                      "storageClassName": storage_class,
                      "hostPath": {"path": f"{VOLUME_ROOT}/{self.project}/{name}",
                                   "type": "DirectoryOrCreate"}}},
            {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": {"name": name},
             "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": storage_class,
                      "selector": {"matchLabels": {"kubeloop.dev/volume": pv}},
                      "resources": {"requests": {"storage": "1Gi"}}}},
        ]  # fmt: skip
        self.note(compose_name, "volumes", f"named volume '{volume}' → PersistentVolumeClaim "
                  f"'{name}' on a node-local volume (kept across pod restarts and "
                  "'kubeloop delete')", translated=True)  # fmt: skip
        return name

    def _security(self, compose_name: str, service: dict[str, Any], container: Obj) -> None:
        security: Obj = {}
        user = service.get("user")
        if user is not None:
            uid, _, gid = str(user).partition(":")
            if uid.isdigit() and (not gid or gid.isdigit()):
                security["runAsUser"] = int(uid)
                if gid:
                    security["runAsGroup"] = int(gid)
            else:
                self.note(compose_name, "user", f"'{user}': Kubernetes needs a numeric user "
                          "id (not translated)")  # fmt: skip
        if service.get("privileged"):
            security["privileged"] = True
        caps: Obj = {}
        if service.get("cap_add"):
            caps["add"] = [str(c) for c in service["cap_add"]]
        if service.get("cap_drop"):
            caps["drop"] = [str(c) for c in service["cap_drop"]]
        if caps:
            security["capabilities"] = caps
        if security:
            container["securityContext"] = security

    def _host_aliases(self, compose_name: str, hosts: Any) -> list[Obj]:
        pairs = list(hosts.items()) if isinstance(hosts, dict) else [
            re.split(r"[:=]", str(h), maxsplit=1) for h in hosts]  # fmt: skip
        by_ip: dict[str, list[str]] = {}
        for pair in pairs:
            if len(pair) != 2:
                raise KubeloopError(f"{self.source}: services.{compose_name}.extra_hosts: "
                                    f"'{pair[0]}' is not HOST:IP")  # fmt: skip
            by_ip.setdefault(str(pair[1]), []).append(str(pair[0]))
        return [{"ip": ip, "hostnames": names} for ip, names in by_ip.items()]

    def _deploy(self, compose_name: str, service: dict[str, Any], container: Obj) -> int:
        deploy = service.get("deploy") or {}
        where = f"{self.source}: services.{compose_name}.deploy"
        replicas = deploy.get("replicas", service.get("scale", 1))
        if not isinstance(replicas, int) or replicas < 0:
            raise KubeloopError(f"{where}.replicas must be a whole number, not '{replicas}'")
        resources = _mapping(deploy.get("resources"), f"{where}.resources")
        out: Obj = {}
        for compose_key, k8s_key in (("limits", "limits"), ("reservations", "requests")):
            section = _mapping(resources.get(compose_key), f"{where}.resources.{compose_key}")
            values: dict[str, str] = {}
            if section.get("cpus") is not None:
                values["cpu"] = str(section["cpus"])
            if section.get("memory") is not None:
                values["memory"] = memory_quantity(section["memory"], f"{where}.resources")
            if values:
                out[k8s_key] = values
            for key in sorted(set(section) - {"cpus", "memory"}):
                self.note(compose_name, f"deploy.resources.{compose_key}.{key}", "not translated")
        if out:
            container["resources"] = out
        for key in sorted(set(deploy) - {"replicas", "resources"}):
            self.note(compose_name, f"deploy.{key}", "Swarm setting: not translated")
        return replicas

    def _restart(self, compose_name: str, service: dict[str, Any]) -> None:
        restart = service.get("restart")
        if restart in (None, "always", "unless-stopped"):
            return
        self.note(compose_name, "restart", f"'{restart}': a Deployment always restarts its "
                  "containers (not translated)")  # fmt: skip

    def _networks(self, compose_name: str, service: dict[str, Any]) -> None:
        networks = service.get("networks")
        if isinstance(networks, dict):
            for network, spec in networks.items():
                if isinstance(spec, dict) and spec.get("aliases"):
                    self.note(compose_name, f"networks.{network}.aliases", "extra names are "
                              "not translated: use the service name")  # fmt: skip
        if service.get("network_mode"):
            self.note(compose_name, "network_mode", "not translated: pods have their own "
                      "network")  # fmt: skip

    def _leftovers(self, compose_name: str, service: dict[str, Any]) -> None:
        handled = {"image", "build", "ports", "expose", "environment", "env_file", "command",
                   "entrypoint", "healthcheck", "restart", "volumes", "depends_on", "deploy",
                   "profiles", "networks", "network_mode", "working_dir", "user", "privileged",
                   "cap_add", "cap_drop", "tty", "stdin_open", "extra_hosts", "labels",
                   "stop_grace_period", "scale", "configs", "secrets"}  # fmt: skip
        for key in service:
            if key in handled or str(key).startswith("x-"):
                continue
            reason = _IGNORED.get(key, "no translation")
            self.note(compose_name, str(key), f"not translated: {reason}")


def translate(data: dict[str, Any], folder: Path, project: str, source: str) -> Translation:
    """Translate a merged compose model (see :func:`load_compose`) from ``folder``."""
    return _Translator(data, folder, project, source).run()
