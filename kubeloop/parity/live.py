"""What runs now: the live objects of a render, with what the API server adds taken out,
so that only real drift shows."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from kubeloop.core import Obj
from kubeloop.parity.normalise import keyed, object_key

if TYPE_CHECKING:
    from kubeloop.kube import Kube

# Fields a person (kubectl edit, set env, scale) may add to a live object that the
# render does not have, and that change behaviour: kept when the render lacks them. Any
# other field the render lacks is the API server's default and is dropped.
_KEPT_WHEN_ADDED = frozenset({"command", "args", "env", "envFrom", "resources", "image",
                              "securityContext", "readinessProbe", "livenessProbe",
                              "startupProbe", "volumeMounts", "volumes", "replicas",
                              "type", "data", "binaryData", "rules", "tls",
                              "hostNetwork", "serviceAccountName"})  # fmt: skip
# ... unless they hold the default the API server would have put there anyway.
_DEFAULTS: dict[str, Any] = {"replicas": 1, "type": "ClusterIP",
                             "serviceAccountName": "default", "hostNetwork": False}  # fmt: skip
_SERVER_METADATA = ("uid", "resourceVersion", "generation", "creationTimestamp",
                    "managedFields", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds")  # fmt: skip
# Bounds on what a live object may make the comparison do: the API server's answer is
# trusted less than the user's own files.
MAX_DEPTH = 64


def strip_server_fields(obj: Obj) -> Obj:
    """A live object without status and the metadata the API server keeps."""
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = dict(out.get("metadata") or {})
    for key in _SERVER_METADATA:
        meta.pop(key, None)
    out["metadata"] = meta
    return out


def prune_to(live: Any, rendered: Any, depth: int = 0) -> Any:
    """``live`` cut to the shape of ``rendered``: keys the render lacks go (the server's
    defaults), except fields a person would add to change behaviour; list items are
    matched by name, and live items the render lacks (a container, an env var, a
    volume added by hand) stay."""
    if depth > MAX_DEPTH:
        return live
    if isinstance(live, dict) and isinstance(rendered, dict):
        out: dict[str, Any] = {}
        for key, value in live.items():
            if key in rendered:
                out[key] = prune_to(value, rendered[key], depth + 1)
            elif key in _KEPT_WHEN_ADDED and value not in ({}, [], None, _DEFAULTS.get(key)):
                out[key] = value
        return out
    if isinstance(live, list) and isinstance(rendered, list):
        live_by, rendered_by = keyed(live), keyed(rendered)
        if live_by is not None and rendered_by is not None:
            return [prune_to(item, rendered_by[key], depth + 1) if key in rendered_by else item
                    for key, item in live_by.items()]  # fmt: skip
        if len(live) == len(rendered):
            return [prune_to(x, y, depth + 1) for x, y in zip(live, rendered, strict=True)]
    return live


def without_dev_mode(live: Obj) -> Obj | None:
    """``live`` with the pod template dev mode recorded before it wrapped the workload
    (``kubeloop dev`` with a ``restart: process`` sync rule), or None when it is not in
    dev mode. Dev mode's own change (the supervisor) is what ``dev`` is for, not drift;
    stopping ``dev`` or ``kubeloop reset`` puts that template back."""
    from kubeloop.sync.devmode import ORIGINAL

    annotations = (live.get("metadata") or {}).get("annotations") or {}
    recorded = annotations.get(ORIGINAL)
    if not isinstance(recorded, str) or not isinstance(live.get("spec"), dict):
        return None
    try:
        template = json.loads(recorded)
    except ValueError:
        return None
    if not isinstance(template, dict) or not isinstance(template.get("spec"), dict):
        return None
    return {**live, "spec": {**live["spec"], "template": template}}


async def read_live(kube: Kube, rendered: list[Obj], namespace: str,
                    notes: list[str] | None = None) -> list[Obj]:  # fmt: skip
    """The live counterpart of each rendered object (absent ones left out), stripped
    of status and server-set metadata and cut to the render's shape. Workloads in dev
    mode are read as they were before it (a line saying so goes to ``notes``)."""
    from kubeloop.kube import KubeError

    async def one(obj: Obj) -> Obj | None:
        try:
            path = await kube.object_path(obj, namespace)
        except KubeError as exc:
            if exc.status is not None:
                raise
            return None  # a kind the cluster does not serve: nothing of it runs
        live = await kube.get(path)
        if live is None:
            return None
        before = without_dev_mode(live)
        if before is not None:
            live = before
            if notes is not None:
                notes.append(f"{object_key(live)} is in dev mode (kubeloop dev): compared as "
                             "it was before dev mode wrapped it")  # fmt: skip
        return dict(prune_to(strip_server_fields(live), obj))

    found = await asyncio.gather(*(one(o) for o in rendered))
    return [o for o in found if o is not None]
