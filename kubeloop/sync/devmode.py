"""Dev mode's change to a workload, for sync rules that restart the app: the container's
command runs under kubeloop's supervisor (copied in by an init container), so a restart
replaces the process and keeps the synced files.

The original pod template is stored on the object (annotation) in the same apply, so the
change is recorded before it takes effect and ``kubeloop reset`` (or a plain
``kubeloop deploy``) puts it back.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from kubeloop.config import SyncSpec
from kubeloop.errors import KubeloopError
from kubeloop.images.registry import fetch_image_config
from kubeloop.kube import Kube
from kubeloop.render.images import pod_template

Obj = dict[str, Any]
ORIGINAL = "kubeloop.dev/original-template"
TOOLS = "/kubeloop"
AGENT = f"{TOOLS}/kubeloop-agent"


# Workloads whose pods dev mode may wrap (a CronJob's pods are not long-lived enough).
SUPERVISED_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")


def _matches(template: Obj, selector: dict[str, str]) -> bool:
    labels = (template.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


async def original_command(container: Obj, registry: str) -> list[str]:
    """What the container runs: its command+args, or the image's Entrypoint+Cmd."""
    if container.get("command"):
        return [*container["command"], *(container.get("args") or [])]
    from kubeloop.images.seed import is_docker_hub_name, registry_reference

    image = str(container["image"])
    if is_docker_hub_name(image):
        image = registry_reference(image, registry)
    config = await fetch_image_config(image)
    entrypoint = list(config.get("Entrypoint") or [])  # type: ignore[call-overload]
    cmd = container.get("args") or list(config.get("Cmd") or [])  # type: ignore[call-overload]
    if not entrypoint and not cmd:
        raise KubeloopError(f"cannot tell what container {container['name']} runs",
                            "set 'command' in its manifest")  # fmt: skip
    return [*entrypoint, *cmd]


async def inject_supervisor(objects: list[Obj], specs: list[SyncSpec], agent_image: str,
                            registry: str) -> list[str]:  # fmt: skip
    """Wrap the containers that restarting sync rules target; return what was changed."""
    changed = []
    for obj in objects:
        template = pod_template(obj) if obj.get("kind") in SUPERVISED_KINDS else None
        if template is None:
            continue
        for spec in specs:
            if spec.restart == "none" or not _matches(template, spec.selector):
                continue
            pod = template["spec"]
            target_name = spec.container or pod["containers"][0]["name"]
            target = next((c for c in pod["containers"] if c["name"] == target_name), None)
            if target is None:
                raise KubeloopError(
                    f"sync rule names container '{target_name}', which "
                    f"{obj['kind']} {obj['metadata']['name']} does not have"
                )
            if (target.get("command") or [None])[0] == AGENT:
                continue
            original = copy.deepcopy(template)
            annotations = obj["metadata"].setdefault("annotations", {}) or {}
            annotations[ORIGINAL] = json.dumps(original, sort_keys=True)
            obj["metadata"]["annotations"] = annotations
            command = await original_command(target, registry)
            target["command"] = [AGENT, "supervise", "--", *command]
            target.pop("args", None)
            target.setdefault("volumeMounts", []).append(
                {"name": "kubeloop-tools", "mountPath": TOOLS}
            )
            pod.setdefault("volumes", []).append({"name": "kubeloop-tools", "emptyDir": {}})
            pod.setdefault("initContainers", []).insert(0, {
                "name": "kubeloop-tools",
                "image": agent_image,
                "command": ["/kubeloop-agent", "install", AGENT],
                "volumeMounts": [{"name": "kubeloop-tools", "mountPath": TOOLS}],
            })  # fmt: skip
            changed.append(f"{obj['kind'].lower()}/{obj['metadata']['name']}")
    return changed


async def reset(kube: Kube, namespace: str) -> list[str]:
    """Put back every workload in ``namespace`` that dev mode changed."""
    restored = []
    for plural in ("deployments", "statefulsets", "daemonsets"):
        listing = await kube.request("GET", f"/apis/apps/v1/namespaces/{namespace}/{plural}")
        for item in listing.get("items", []):
            annotations = item["metadata"].get("annotations") or {}
            if ORIGINAL not in annotations:
                continue
            original = json.loads(annotations[ORIGINAL])
            patch = [
                {"op": "replace", "path": "/spec/template", "value": original},
                {"op": "remove", "path": f"/metadata/annotations/{ORIGINAL.replace('/', '~1')}"},
            ]
            await kube.request(
                "PATCH", f"/apis/apps/v1/namespaces/{namespace}/{plural}/{item['metadata']['name']}",
                body=json.dumps(patch), content_type="application/json-patch+json",
            )  # fmt: skip
            restored.append(f"{plural[:-1]}/{item['metadata']['name']}")
    return restored
