"""The pod's context for a process on the developer's machine: the container's
environment as Kubernetes resolves it, and its mounted ConfigMaps, Secrets and
service-account token as files.

Resolved from the API, the way the kubelet does it (env, valueFrom, envFrom, $(VAR)
references, the downward API, Service links), rather than read from the container's
process: that would also carry the image's own variables (PATH, language settings),
which must not replace the developer's.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubeloop.core import Obj
from kubeloop.errors import KubeloopError
from kubeloop.kube import Kube, KubeError

_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")
TOKEN_SECONDS = 3600


@dataclass
class PodContext:
    env: dict[str, str] = field(default_factory=dict)
    secret_env: set[str] = field(default_factory=set)  # names whose values came from Secrets
    files: dict[str, Path] = field(default_factory=dict)  # mount path -> local folder or file
    notes: list[str] = field(default_factory=list)  # what could not be reproduced


class _Sources:
    """ConfigMaps and Secrets of a namespace, fetched once each."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self._cache: dict[tuple[str, str], Obj | None] = {}

    async def data(self, kind: str, name: str) -> dict[str, str] | None:
        key = (kind, name)
        if key not in self._cache:
            plural = "configmaps" if kind == "ConfigMap" else "secrets"
            self._cache[key] = await self.kube.get(
                f"/api/v1/namespaces/{self.namespace}/{plural}/{name}"
            )
        found = self._cache[key]
        if found is None:
            return None
        if kind == "Secret":
            return {k: base64.b64decode(v).decode(errors="replace")
                    for k, v in (found.get("data") or {}).items()}  # fmt: skip
        return dict(found.get("data") or {}) | {
            k: base64.b64decode(v).decode(errors="replace")
            for k, v in (found.get("binaryData") or {}).items()
        }


def _field(pod: Obj, path: str) -> str:
    """A downward-API field: metadata.name, metadata.labels['app'], status.podIP, ..."""
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if match:
        return str((pod["metadata"].get(match.group(1)) or {}).get(match.group(2), ""))
    current: Any = pod
    for part in path.split("."):
        current = (current or {}).get(part) if isinstance(current, dict) else None
    return "" if current is None else str(current)


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) references (unknown ones stay as written; $$ escapes)."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _REFERENCE.sub(replace, value)


async def _value_from(source: Obj, pod: Obj, sources: _Sources, name: str,
                      context: PodContext) -> str | None:  # fmt: skip
    for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
        ref = source.get(key)
        if ref is None:
            continue
        data = await sources.data(kind, ref["name"])
        if data is None or ref["key"] not in data:
            if ref.get("optional"):
                return None
            raise KubeloopError(f"{name} comes from {kind} {ref['name']} key {ref['key']}, "
                                "which does not exist", "create it, or run the pod first")  # fmt: skip
        if kind == "Secret":
            context.secret_env.add(name)
        return data[ref["key"]]
    if "fieldRef" in source:
        return _field(pod, source["fieldRef"]["fieldPath"])
    if "resourceFieldRef" in source:
        context.notes.append(f"{name}: resource values (resourceFieldRef) are not reproduced")
    return None


async def container_env(kube: Kube, namespace: str, pod: Obj, container: Obj,
                        context: PodContext) -> None:  # fmt: skip
    sources = _Sources(kube, namespace)
    env: dict[str, str] = {}
    if pod["spec"].get("enableServiceLinks", True):
        env.update(await service_links(kube, namespace))
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if key not in source:
                continue
            data = await sources.data(kind, source[key]["name"])
            if data is None and not source[key].get("optional"):
                raise KubeloopError(f"envFrom names {kind} {source[key]['name']}, which does "
                                    "not exist")  # fmt: skip
            for name, value in (data or {}).items():
                env[prefix + name] = value
                if kind == "Secret":
                    context.secret_env.add(prefix + name)
    for item in container.get("env") or []:
        name = item["name"]
        if "valueFrom" in item:
            found = await _value_from(item["valueFrom"], pod, sources, name, context)
            if found is not None:
                env[name] = found
        else:
            env[name] = expand(str(item.get("value", "")), env)
    context.env.update(env)


async def service_links(kube: Kube, namespace: str) -> dict[str, str]:
    """The variables the kubelet gives every container for each Service of its
    namespace (and the API server's), as in docker links."""
    env: dict[str, str] = {}
    services = (await kube.request("GET", f"/api/v1/namespaces/{namespace}/services")).get(
        "items", []
    )
    master = await kube.get("/api/v1/namespaces/default/services/kubernetes")
    for service in [*services, *([master] if master and namespace != "default" else [])]:
        ip = service["spec"].get("clusterIP")
        ports = service["spec"].get("ports") or []
        if not ip or ip == "None" or not ports:
            continue
        prefix = service["metadata"]["name"].upper().replace("-", "_")
        first = ports[0]
        env[f"{prefix}_SERVICE_HOST"] = ip
        env[f"{prefix}_SERVICE_PORT"] = str(first["port"])
        env[f"{prefix}_PORT"] = f"{first.get('protocol', 'TCP').lower()}://{ip}:{first['port']}"
        for port in ports:
            protocol = port.get("protocol", "TCP")
            if port.get("name"):
                env[f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(
                    port["port"]
                )
            base = f"{prefix}_PORT_{port['port']}_{protocol}"
            env[base] = f"{protocol.lower()}://{ip}:{port['port']}"
            env[f"{base}_PROTO"] = protocol.lower()
            env[f"{base}_PORT"] = str(port["port"])
            env[f"{base}_ADDR"] = ip
    return env


def _write(target: Path, content: str | bytes, mode: int = 0o644) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content.encode() if isinstance(content, str) else content)
    target.chmod(mode)


async def _token(kube: Kube, namespace: str, account: str, audience: str | None,
                 seconds: int) -> str:  # fmt: skip
    spec: Obj = {"expirationSeconds": seconds}
    if audience:
        spec["audiences"] = [audience]
    try:
        answer = await kube.request(
            "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
            body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                  "spec": spec},
        )  # fmt: skip
    except KubeError as exc:
        raise KubeloopError(f"cannot get a token for service account {account}: {exc.message}",
                            "you need 'create' on serviceaccounts/token in the namespace") from exc  # fmt: skip
    return str(answer["status"]["token"])


async def _volume_files(kube: Kube, namespace: str, pod: Obj, volume: Obj, sources: _Sources,
                        context: PodContext) -> dict[str, tuple[str, int]] | None:  # fmt: skip
    """{relative path: (content, mode)} of a ConfigMap, Secret, projected or downward-API
    volume; None for kinds that have no content to reproduce (emptyDir, PVC, ...)."""
    files: dict[str, tuple[str, int]] = {}
    account = pod["spec"].get("serviceAccountName") or "default"

    async def add(kind: str, name: str, items: list[Obj] | None, optional: bool) -> None:
        data = await sources.data(kind, name)
        if data is None:
            if not optional:
                context.notes.append(f"volume {volume['name']}: {kind} {name} does not exist")
            return
        for item in items or [{"key": k, "path": k} for k in data]:
            if item["key"] in data:
                files[item["path"]] = (data[item["key"]], item.get("mode", 0o644))

    # A projected volume is a list of the sources a plain volume holds one of (where a
    # Secret is named by 'secretName' instead of 'name').
    if "projected" in volume:
        parts = volume["projected"].get("sources") or []
    elif any(k in volume for k in ("configMap", "secret", "downwardAPI")):
        parts = [volume]
    else:
        return None
    for source in parts:
        if "configMap" in source:
            ref = source["configMap"]
            await add("ConfigMap", ref["name"], ref.get("items"), ref.get("optional", False))
        elif "secret" in source:
            ref = source["secret"]
            await add("Secret", ref.get("secretName") or ref["name"], ref.get("items"),
                      ref.get("optional", False))  # fmt: skip
        elif "serviceAccountToken" in source:
            ref = source["serviceAccountToken"]
            token = await _token(kube, namespace, account, ref.get("audience"),
                                 max(600, ref.get("expirationSeconds", TOKEN_SECONDS)))  # fmt: skip
            files[ref["path"]] = (token, 0o600)
        elif "downwardAPI" in source:
            for item in source["downwardAPI"].get("items") or []:
                if "fieldRef" in item:
                    files[item["path"]] = (_field(pod, item["fieldRef"]["fieldPath"]), 0o644)
    return files


async def mounted_files(kube: Kube, namespace: str, pod: Obj, container: Obj, root: Path,
                        context: PodContext) -> None:  # fmt: skip
    """Write each ConfigMap, Secret, projected and downward-API mount of the container
    under ``root`` at its mount path (root/etc/config/..., root/var/run/secrets/...)."""
    sources = _Sources(kube, namespace)
    volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount["name"])
        if volume is None:
            continue
        files = await _volume_files(kube, namespace, pod, volume, sources, context)
        if files is None:
            context.notes.append(f"{mount['mountPath']}: a {_kind(volume)} volume has no "
                                 "content to bring; it is not reproduced")  # fmt: skip
            continue
        target = root / mount["mountPath"].lstrip("/")
        sub = mount.get("subPath")
        for rel, (content, mode) in files.items():
            if sub:
                if rel == sub:
                    _write(target, content, mode)
                continue
            if ".." in Path(rel).parts or rel.startswith("/"):
                continue  # a hostile item path: not written outside the folder
            _write(target / rel, content, mode)
        context.files[mount["mountPath"]] = target


def _kind(volume: Obj) -> str:
    return next((k for k in volume if k != "name"), "unknown")


async def pod_context(kube: Kube, namespace: str, pod: Obj, container: Obj,
                      root: Path) -> PodContext:  # fmt: skip
    context = PodContext()
    await container_env(kube, namespace, pod, container, context)
    await mounted_files(kube, namespace, pod, container, root, context)
    context.env["KUBELOOP_ROOT"] = str(root)
    return context


def masked(context: PodContext) -> dict[str, str]:
    """The environment as it may be printed: values from Secrets hidden."""
    return {k: ("*****" if k in context.secret_env else v) for k, v in sorted(context.env.items())}
