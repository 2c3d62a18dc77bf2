"""Swap artifact names in pod specs for the references kubeloop built."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from kubeloop.core import Obj


def pod_template(obj: Obj) -> Obj | None:
    """The pod template of a workload (Deployment, Job, CronJob, ...), if it has one."""
    spec = obj.get("spec") or {}
    if obj.get("kind") == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    template = spec.get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        return template
    return None


def pod_specs(obj: Obj) -> Iterator[Obj]:
    """Every pod spec inside a workload object (Pod, Deployment, CronJob, ...)."""
    if obj.get("kind") == "Pod":
        yield obj.get("spec") or {}
    elif (template := pod_template(obj)) is not None:
        yield template["spec"]


def image_name(reference: str) -> str:
    """``repo/app:tag`` or ``repo/app@sha256:...`` → ``repo/app``."""
    without_digest = reference.split("@", 1)[0]
    last_colon = without_digest.rfind(":")
    if last_colon > without_digest.rfind("/"):
        return without_digest[:last_colon]
    return without_digest


def replace_images(objects: list[Obj], built: Mapping[str, str]) -> list[str]:
    """Replace in place; return the artifact names that no manifest used."""
    used: set[str] = set()
    for obj in objects:
        for spec in pod_specs(obj):
            for key in ("initContainers", "containers", "ephemeralContainers"):
                for container in spec.get(key) or []:
                    name = image_name(str(container.get("image", "")))
                    if name in built:
                        container["image"] = built[name]
                        used.add(name)
    return sorted(set(built) - used)
