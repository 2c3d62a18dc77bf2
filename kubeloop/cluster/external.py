"""Providers that drive another tool: k3d, kind, minikube (each with a registry the
cluster pulls from), and ``existing`` (adopt a kubeconfig context the user has)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from kubeloop import ui
from kubeloop.cluster.base import ClusterInfo, ClusterStatus, ComponentStatus
from kubeloop.errors import KubeloopError
from kubeloop.kube import Kube
from kubeloop.kube.client import node_is_ready
from kubeloop.kube.kubeconfig import read as read_kubeconfig
from kubeloop.paths import default_kubeconfig
from kubeloop.proc import run

REGISTRY_PORT = 5001  # the native provider owns 5000; container-based ones publish here


@dataclass(frozen=True)
class CommandPlan:
    """The commands a provider runs, kept pure so unit tests can read them."""

    create: list[list[str]]
    delete: list[list[str]]
    context: str
    registry: str
    registry_for_pods: str


def k3d_plan(name: str) -> CommandPlan:
    registry = f"kubeloop-{name}-registry"
    return CommandPlan(
        create=[[
            "k3d", "cluster", "create", name, "--wait",
            "--registry-create", f"{registry}:0.0.0.0:{REGISTRY_PORT}",
            "--kubeconfig-update-default", "--kubeconfig-switch-context",
        ]],
        delete=[["k3d", "cluster", "delete", name]],
        context=f"k3d-{name}",
        registry=f"localhost:{REGISTRY_PORT}",
        registry_for_pods=f"{registry}:{REGISTRY_PORT}",
    )  # fmt: skip


def kind_plan(name: str) -> CommandPlan:
    # kind has no registry flag: run registry:2 beside it on the kind network and tell
    # containerd about it (kind's documented local-registry recipe).
    registry = f"kubeloop-{name}-registry"
    patch = (
        '[plugins."io.containerd.grpc.v1.cri".registry.mirrors."localhost:'
        f'{REGISTRY_PORT}"]\n  endpoint = ["http://{registry}:5000"]'
    )
    config = (
        "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n"
        f"containerdConfigPatches:\n- |-\n  {patch.replace(chr(10), chr(10) + '  ')}\n"
    )
    return CommandPlan(
        create=[
            ["docker", "run", "-d", "--restart=always", "-p", f"127.0.0.1:{REGISTRY_PORT}:5000",
             "--name", registry, "registry:2"],
            ["kind", "create", "cluster", "--name", name, "--wait", "120s", "--config", "-", config],
            ["docker", "network", "connect", "kind", registry],
        ],
        delete=[["kind", "delete", "cluster", "--name", name], ["docker", "rm", "-f", registry]],
        context=f"kind-{name}",
        registry=f"localhost:{REGISTRY_PORT}",
        registry_for_pods=f"localhost:{REGISTRY_PORT}",
    )  # fmt: skip


def minikube_plan(name: str) -> CommandPlan:
    return CommandPlan(
        create=[
            ["minikube", "start", "-p", name, "--insecure-registry=localhost:5000"],
            ["minikube", "addons", "enable", "registry", "-p", name],
        ],
        delete=[["minikube", "delete", "-p", name]],
        context=name,
        registry=f"localhost:{REGISTRY_PORT}",
        registry_for_pods="localhost:5000",
    )


PLANS = {"k3d": k3d_plan, "kind": kind_plan, "minikube": minikube_plan}


async def _run_plan_step(argv: list[str]) -> None:
    if argv[0] == "kind" and "-" in argv:
        config = argv[-1]
        await run(argv[:-1], input=config.encode(), timeout=900)
    else:
        await run(argv, timeout=900)


async def _cluster_status(info: ClusterInfo) -> ClusterStatus:
    try:
        kube = await Kube.connect(info.kubeconfig, info.context)
    except KubeloopError as exc:
        return ClusterStatus(info, False, False, message=str(exc))
    try:
        nodes = (await kube.request("GET", "/api/v1/nodes")).get("items", [])
    except KubeloopError as exc:
        return ClusterStatus(info, False, False, message=str(exc))
    finally:
        await kube.close()
    components = [
        ComponentStatus(f"node/{n['metadata']['name']}", True, node_is_ready(n)) for n in nodes
    ]
    ready = bool(nodes) and all(c.healthy for c in components)
    return ClusterStatus(info, True, ready, components)


class ToolProvider:
    """k3d, kind or minikube, driven through their own CLIs."""

    def __init__(self, tool: str) -> None:
        self.name = tool

    async def create(self, name: str, quiet: bool = False) -> ClusterInfo:
        if shutil.which(self.name) is None:
            raise KubeloopError(f"the {self.name} provider needs the '{self.name}' command",
                                f"install {self.name}, or use --provider native")  # fmt: skip
        plan = PLANS[self.name](name)
        for argv in plan.create:
            with ui.step(" ".join(argv[:4]), quiet):
                await _run_plan_step(argv)
        return ClusterInfo(name, self.name, str(default_kubeconfig()), plan.context,
                           plan.registry, plan.registry_for_pods)  # fmt: skip

    async def delete(self, info: ClusterInfo, quiet: bool = False) -> None:
        for argv in PLANS[self.name](info.name).delete:
            with ui.step(" ".join(argv[:4]), quiet):
                await run(argv, check=False, timeout=300)

    async def status(self, info: ClusterInfo) -> ClusterStatus:
        return await _cluster_status(info)


class ExistingProvider:
    """Adopt a context from the user's kubeconfig; kubeloop never deletes that cluster."""

    name = "existing"

    def __init__(self, context: str | None = None, registry: str | None = None) -> None:
        self.context = context
        self.registry = registry

    async def create(self, name: str, quiet: bool = False) -> ClusterInfo:
        path = default_kubeconfig()
        config = read_kubeconfig(path)
        context = self.context or config.get("current-context")
        if not context:
            raise KubeloopError(f"no current context in {path}",
                                "pass --context NAME to pick one to adopt")  # fmt: skip
        names = [c.get("name") for c in config.get("contexts") or []]
        if context not in names:
            raise KubeloopError(
                f"context '{context}' is not in {path}",
                f"known contexts: {', '.join(map(str, names)) or 'none'}",
            )
        info = ClusterInfo(name, self.name, str(path), context, self.registry, self.registry)
        status = await _cluster_status(info)
        if not status.reachable:
            raise KubeloopError(
                f"context '{context}' does not answer: {status.message}",
                "check that the cluster is up and the credentials are valid",
            )
        return info

    async def delete(self, info: ClusterInfo, quiet: bool = False) -> None:
        ui.info(f"forgetting '{info.name}'; the cluster behind context {info.context} is not "
                "kubeloop's to delete and keeps running")  # fmt: skip

    async def status(self, info: ClusterInfo) -> ClusterStatus:
        return await _cluster_status(info)
