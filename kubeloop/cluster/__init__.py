"""Clusters to develop on: create, delete, inspect, and seed base images.

``create_cluster`` picks a provider when none is named: k3d, kind or minikube when the
tool and a Docker engine are present, else the native provider on Linux as root.

Start-up speed: ``kubeloop cluster list``/``kubeconfig`` and every project command import
this package, so the providers (httpx, cryptography, kr8s), base images (httpx) and the
native firewall code (asyncio) are imported inside the functions that use them.
"""

from __future__ import annotations

import os
import platform
import shutil
from collections.abc import Callable

from kubeloop import ui
from kubeloop.cluster.base import (
    ClusterInfo,
    ClusterStatus,
    ComponentStatus,
    Provider,
    list_records,
    load_record,
    remove_record,
    save_record,
)
from kubeloop.cluster.native.layout import Layout
from kubeloop.errors import KubeloopError

__all__ = [
    "DEFAULT_NAME",
    "ClusterInfo",
    "ClusterStatus",
    "ComponentStatus",
    "choose_provider",
    "cluster_status",
    "create_cluster",
    "delete_cluster",
    "get_cluster",
    "list_records",
    "project_cluster",
    "provider_for",
    "routes_services_on_host",
    "seed_base_image",
    "wait_services_routed",
]

DEFAULT_NAME = "kubeloop"
PROVIDERS = ("native", "k3d", "kind", "minikube", "existing")


def choose_provider(docker_engine: bool) -> tuple[str, str]:
    """(provider, why) for a host, from the tools it has."""
    for tool in ("k3d", "kind", "minikube"):
        if shutil.which(tool) and docker_engine:
            return tool, f"'{tool}' and a Docker engine are present"
    if platform.system() == "Linux" and os.geteuid() == 0:
        missing = [t for t in ("k3d", "kind", "minikube") if shutil.which(t)]
        reason = (
            "no Docker engine answers" if missing else "none of k3d, kind or minikube is installed"
        )
        return "native", f"{reason}, and this is Linux as root"
    raise KubeloopError(
        "no way to make a cluster here: k3d, kind or minikube with a Docker engine, or Linux "
        "as root for the native provider",
        "install k3d (or kind/minikube) and Docker, run as root on Linux, or adopt a cluster "
        "you have with --provider existing",
    )


def provider_for(name: str, context: str | None = None, registry: str | None = None) -> Provider:
    if name == "native":  # imports here: start-up speed (see the module docstring)
        from kubeloop.cluster.native.provider import NativeProvider

        return NativeProvider()
    if name in ("k3d", "kind", "minikube"):
        from kubeloop.cluster.external import ToolProvider

        return ToolProvider(name)
    if name == "existing":
        from kubeloop.cluster.external import ExistingProvider

        return ExistingProvider(context, registry)
    raise KubeloopError(f"unknown provider '{name}'", f"choose one of {', '.join(PROVIDERS)}")


async def create_cluster(
    name: str = DEFAULT_NAME,
    provider: str | None = None,
    context: str | None = None,
    registry: str | None = None,
    quiet: bool = False,
) -> ClusterInfo:
    """Create the cluster ``name`` and record it; a healthy one is returned at once, a
    crashed or outdated native one is repaired. ``provider``: native, k3d, kind,
    minikube or existing (with ``context`` and ``registry``); default: chosen for this
    host (see choose_provider), or the recorded one."""
    existing = load_record(name)
    if provider is None:
        if existing is not None:
            provider = existing.provider
        else:
            from kubeloop.images.seed import docker_engine_answers  # start-up speed

            provider, why = choose_provider(await docker_engine_answers())
            if not quiet:
                ui.info(f"using the [bold]{provider}[/bold] provider: {why}")
    elif existing is not None and existing.provider != provider:
        raise KubeloopError(
            f"cluster '{name}' exists with the {existing.provider} provider",
            "delete it first, or pick another name (--name)",
        )
    info = await provider_for(provider, context, registry).create(name, quiet=quiet)
    save_record(info)
    return info


def get_cluster(name: str = DEFAULT_NAME) -> ClusterInfo:
    """How to reach the recorded cluster ``name`` (kubeconfig, context, registry)."""
    info = load_record(name)
    if info is None:
        known = ", ".join(r.name for r in list_records()) or "none"
        raise KubeloopError(f"no cluster named '{name}' (known: {known})",
                            "create one: kubeloop cluster create")  # fmt: skip
    return info


def project_cluster(name: str | None, context: str | None) -> ClusterInfo:
    """The cluster a project command uses: the kubeloop cluster ``name`` when given, else
    the one recorded for the project's kubeconfig ``context`` (or that context as an
    existing cluster), else the ``kubeloop`` cluster."""
    from kubeloop.paths import default_kubeconfig

    if name:
        return get_cluster(name)
    if context:
        for record in list_records():
            if record.context == context:
                return record
        return ClusterInfo(context, "existing", str(default_kubeconfig()), context)
    return get_cluster()


async def delete_cluster(name: str = DEFAULT_NAME, quiet: bool = False) -> None:
    """Delete the cluster ``name`` and every trace it left on the host (an adopted
    ``existing`` cluster is only forgotten)."""
    info = load_record(name)
    if info is None:
        # Nothing recorded; a half-made native cluster may still hold state on the host.
        if not Layout.for_cluster(name).state_root.exists():
            raise KubeloopError(f"no cluster named '{name}'", "list them: kubeloop cluster list")
        info = ClusterInfo(name, "native", "", "")
    await provider_for(info.provider).delete(info, quiet=quiet)
    remove_record(name)


async def cluster_status(name: str = DEFAULT_NAME) -> ClusterStatus:
    """Whether each component runs and answers, and the node is Ready (``.healthy``)."""
    info = get_cluster(name)
    return await provider_for(info.provider).status(info)


async def seed_base_image(image: str, name: str = DEFAULT_NAME, quiet: bool = False) -> str:
    """Make a base image (``python:3.11-slim``...) from Debian packages and push it to the
    cluster's registry; return its reference there."""
    from kubeloop.images.seed import seed_image  # start-up speed

    info = get_cluster(name)
    if not info.registry:
        raise KubeloopError(f"cluster '{name}' has no registry to seed",
                            "recreate it with a provider that makes one")  # fmt: skip
    return await seed_image(image, info.registry, quiet=quiet)


def routes_services_on_host(info: ClusterInfo) -> bool:
    """Whether this host routes the cluster's Service addresses: kubeloop runs the
    native provider's kube-proxy here. Elsewhere they are not reachable from the host."""
    return info.provider == "native" and shutil.which("iptables-save") is not None


async def wait_services_routed(addresses: set[str],
                               on_wait: Callable[[str], None] = lambda _: None) -> None:  # fmt: skip
    """On a host that routes Service addresses (see routes_services_on_host), wait until
    kube-proxy routes these, so that a deploy that returned can be used at once."""
    from kubeloop.cluster.native.iptables import wait_services_programmed  # start-up speed

    await wait_services_programmed(addresses, on_wait=on_wait)
