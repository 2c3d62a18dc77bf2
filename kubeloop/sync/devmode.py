"""Dev mode's change to a workload, for sync rules that restart the app: the container's
command runs under kubeloop's supervisor (copied in by an init container), so a restart
replaces the process and keeps the synced files.

The original pod template is stored on the object (annotation) in the same apply, so the
change is recorded before it takes effect and ``kubeloop reset`` (or a plain
``kubeloop deploy``, or ``kubeloop dev`` itself when it stops, unless told to keep the
change) puts it back.

Only Deployments, StatefulSets and DaemonSets are changed: their controllers replace the
pods when the template changes, in both directions, so the undo is a patch of the
template. A Job's pod template is immutable (the undo would be delete-and-recreate,
which runs the Job again) and a bare ReplicaSet keeps its existing pods when its
template changes (the undo would leave wrapped pods running), so dev mode leaves both
alone and says so; their sync rules still sync files.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Awaitable, Callable
from typing import Any

from kubeloop.config import SyncSpec
from kubeloop.core import PROJECT_LABEL, Obj
from kubeloop.errors import KubeloopError
from kubeloop.images.registry import fetch_image_config
from kubeloop.images.seed import is_docker_hub_name, registry_reference
from kubeloop.kube import Kube
from kubeloop.render.images import pod_template

ORIGINAL = "kubeloop.dev/original-template"
TOOLS = "/kubeloop"
AGENT = f"{TOOLS}/kubeloop-agent"


# An image holding the agent at AGENT for a container's image, or None (see inject_supervisor).
Supervised = Callable[[str], Awaitable[str | None]]

# Workloads whose pods dev mode may wrap, by their API path (see the module's docstring).
SUPERVISED_KINDS = {"Deployment": "deployments", "StatefulSet": "statefulsets",
                    "DaemonSet": "daemonsets"}  # fmt: skip
# Wrapped by earlier kubeloop versions: reset still puts them back where it can.
LEGACY_KINDS = {"ReplicaSet": "replicasets", "Job": "jobs"}


def _matches(template: Obj, selector: dict[str, str]) -> bool:
    labels = (template.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


async def original_command(container: Obj, registry: str) -> list[str]:
    """What the container runs: its command+args, or the image's Entrypoint+Cmd."""
    if container.get("command"):
        return [*container["command"], *(container.get("args") or [])]

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
                            registry: str, on_skip: Any = lambda _: None,
                            supervised: Supervised | None = None) -> list[str]:  # fmt: skip
    """Wrap the containers that restarting sync rules target; return what was changed.

    ``supervised(image)``, when given, may return an image that already holds the agent at
    AGENT (kubeloop.devloop.devimage): that container runs it with no init container,
    which the kubelet would make the app wait for (see there)."""
    changed = []
    for obj in objects:
        template = pod_template(obj)
        if template is None:
            continue
        for spec in specs:
            if spec.restart == "none" or not _matches(template, spec.selector):
                continue
            if obj.get("kind") not in SUPERVISED_KINDS:
                on_skip(f"{obj['kind'].lower()}/{obj['metadata']['name']}: dev mode does not "
                        "wrap a Job's or ReplicaSet's pods (the change could not be undone in "
                        "place), so 'restart: process' restarts nothing there")  # fmt: skip
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
            derived = await supervised(target["image"]) if supervised else None
            if derived:
                target["image"] = derived
                changed.append(f"{obj['kind'].lower()}/{obj['metadata']['name']}")
                continue
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


def _restore_patch(original: Obj) -> list[Obj]:
    return [
        {"op": "replace", "path": "/spec/template", "value": original},
        {"op": "remove", "path": f"/metadata/annotations/{ORIGINAL.replace('/', '~1')}"},
    ]


async def reset(kube: Kube, namespace: str, project: str | None = None,
                only: set[str] | None = None, on_skip: Any = lambda _: None) -> list[str]:  # fmt: skip
    """Put back every workload in ``namespace`` that dev mode changed (of ``project``
    only, when given; of the ``only`` names, 'kind/name', when given)."""
    params = {"labelSelector": f"{PROJECT_LABEL}={project}"} if project else {}
    restored = []
    for kind, plural in {**SUPERVISED_KINDS, **LEGACY_KINDS}.items():
        base = f"/apis/{'batch' if kind == 'Job' else 'apps'}/v1/namespaces/{namespace}/{plural}"
        listing = await kube.request("GET", base, params=params)
        for item in listing.get("items", []):
            name = f"{kind.lower()}/{item['metadata']['name']}"
            annotations = item["metadata"].get("annotations") or {}
            if ORIGINAL not in annotations or (only is not None and name not in only):
                continue
            if item["metadata"].get("ownerReferences"):
                continue  # a Deployment's ReplicaSet (it copies the annotation): its owner counts
            if kind == "Job":  # its pod template is immutable
                on_skip(f"{name} cannot be put back in place (a Job's pod template cannot "
                        "change): delete it and deploy again")  # fmt: skip
                continue
            patch = _restore_patch(json.loads(annotations[ORIGINAL]))
            # As kubeloop's field manager: the next apply owns the template as before.
            await kube.request("PATCH", f"{base}/{item['metadata']['name']}", body=json.dumps(patch),
                               content_type="application/json-patch+json",
                               params={"fieldManager": "kubeloop"})  # fmt: skip
            restored.append(name)
    return restored
