"""One project against one cluster: what every command of the core loop shares."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubeloop import ui
from kubeloop.build.artifacts import build_all, reference_of
from kubeloop.cluster import (
    ClusterInfo,
    get_cluster,
    list_records,
    routes_services_on_host,
    wait_services_routed,
)
from kubeloop.config import LoadedConfig, load
from kubeloop.core import Obj
from kubeloop.deploy import delete_project, deploy, has_ready_endpoint, wait_rollout
from kubeloop.errors import KubeloopError
from kubeloop.kube import Kube, label_selector
from kubeloop.paths import default_kubeconfig
from kubeloop.render import render
from kubeloop.sync import Syncer, SyncRule
from kubeloop.sync.attach import ensure_agent_image
from kubeloop.sync.devmode import inject_supervisor, reset

if TYPE_CHECKING:  # imported when used: the bridge is not needed by most commands
    from kubeloop.bridge import Bridge


@dataclass
class Timings:
    build: float = 0.0
    render: float = 0.0
    apply: float = 0.0
    rollout: float = 0.0
    built: list[str] = field(default_factory=list)


@dataclass
class Session:
    config: LoadedConfig
    cluster: ClusterInfo
    kube: Kube
    last_built: dict[str, str] = field(default_factory=dict)
    dev_changed: set[str] = field(default_factory=set)  # workloads dev mode wrapped, kind/name

    @property
    def registry(self) -> str:
        if not self.cluster.registry:
            raise KubeloopError(
                f"cluster '{self.cluster.name}' has no registry to push to",
                "use a kubeloop-created cluster, or adopt one with --registry",
            )
        return self.cluster.registry

    @property
    def namespace(self) -> str:
        return self.config.project.namespace

    async def build(self, only: set[str] | None = None,
                    on_line: Callable[[str, str], None] = lambda _i, _l: None) -> Timings:  # fmt: skip

        timings = Timings()
        started = time.monotonic()
        results = await build_all(self.config, self.registry, only, on_line)
        for built in results:
            self.last_built[built.artifact.image] = built.result.image
            if built.result.built:
                timings.built.append(built.artifact.image)
        for artifact in self.config.project.artifacts:  # ones not rebuilt this time
            if artifact.image not in self.last_built:
                self.last_built[artifact.image] = await reference_of(self.config, artifact,
                                                                     self.registry)  # fmt: skip
        timings.build = time.monotonic() - started
        return timings

    async def render(self) -> list[Obj]:

        return await render(self.config, self.last_built)

    def syncers(self, on_event: Callable[[str], None] = lambda _: None) -> list[Any]:
        return [
            Syncer(self.kube, self.cluster, self.namespace,
                   label_selector(spec.selector),
                   [SyncRule((self.config.root / spec.src).resolve(), spec.dest,
                             tuple(spec.exclude), spec.restart, spec.two_way)],
                   container=spec.container, on_event=on_event)
            for spec in self.config.project.sync
        ]  # fmt: skip

    def bridges(self, on_event: Callable[[str], None] = lambda _: None) -> list[Bridge]:
        """The project's ``bridge:`` entries, ready to run."""
        from kubeloop.bridge import Bridge, BridgeSpec

        return [Bridge(self.kube, self.cluster,
                       BridgeSpec.from_config(entry, self.namespace, self.config.root), on_event)
                for entry in self.config.project.bridge]  # fmt: skip

    async def _dev_mode(self, objects: list[Obj]) -> None:
        specs = [s for s in self.config.project.sync if s.restart != "none"]
        if not specs:
            return

        agent = await ensure_agent_image(self.cluster)
        changed = await inject_supervisor(objects, specs, agent, self.registry, on_skip=ui.warn)
        self.dev_changed.update(changed)

    async def undo_dev_mode(self) -> list[str]:
        """Put back the workloads this session's dev mode changed (from the originals
        recorded on them)."""

        if not self.dev_changed:
            return []
        restored = await reset(self.kube, self.namespace, self.config.project.name,
                               only=self.dev_changed, on_skip=ui.warn)  # fmt: skip
        self.dev_changed.clear()
        return restored

    async def deploy(self, wait: bool = True, quiet: bool = False,
                     only: set[str] | None = None, dev_mode: bool = False) -> Timings:  # fmt: skip

        with ui.step(f"building {self.config.project.name}", quiet) as building:
            timings = await self.build(
                only, lambda image, line: building.detail(f"{image}: {line}")
            )
        started = time.monotonic()
        objects = await self.render()
        if dev_mode:
            await self._dev_mode(objects)
        timings.render = time.monotonic() - started
        started = time.monotonic()
        with ui.step(f"deploying {self.config.project.name} to {self.namespace}", quiet) as step:
            result = await deploy(self.kube, objects, self.config.project.name, self.namespace,
                                  prune=self.config.project.deploy.prune,
                                  timeout=self.config.project.deploy.timeout, wait=False)  # fmt: skip
            for ref in result.adopted:
                ui.warn(f"{ref} existed before kubeloop: adopted (applied, but prune and "
                        "delete will leave it)")  # fmt: skip
            for ref, why in result.kept:
                ui.info(f"left {ref} in place: {why}")
            timings.apply = time.monotonic() - started
            if wait:
                started = time.monotonic()
                await wait_rollout(self.kube, objects, self.config.project.deploy.timeout,
                                   step.detail)  # fmt: skip
                await self._wait_services_routed(objects, step.detail)
                timings.rollout = time.monotonic() - started
        return timings

    async def _wait_services_routed(
        self, objects: list[Obj], on_wait: Callable[[str], None]
    ) -> None:
        """On a native cluster, the Services that have ready endpoints are routed from the
        host when deploy returns (kube-proxy programs them a moment later)."""

        if not routes_services_on_host(self.cluster):
            return
        addresses = set()
        for obj in objects:
            if obj.get("kind") != "Service" or obj.get("apiVersion") != "v1":
                continue
            namespace = obj["metadata"].get("namespace") or self.namespace
            name = obj["metadata"]["name"]
            live = await self.kube.get(f"/api/v1/namespaces/{namespace}/services/{name}")
            address = ((live or {}).get("spec") or {}).get("clusterIP")
            if (
                address
                and address != "None"
                and await has_ready_endpoint(self.kube, namespace, name)
            ):
                addresses.add(str(address))
        await wait_services_routed(addresses, on_wait)

    async def delete(self) -> list[str]:

        result = await delete_project(self.kube, self.config.project.name, self.namespace)
        for ref, why in result.kept:
            ui.info(f"left {ref} in place: {why}")
        return [str(r) for r in result.deleted]

    async def close(self) -> None:
        await self.kube.close()


def _cluster_for(config: LoadedConfig, cluster_name: str | None) -> ClusterInfo:
    if cluster_name:
        return get_cluster(cluster_name)
    context = config.project.context
    if context:
        for record in list_records():
            if record.context == context:
                return record

        return ClusterInfo(context, "existing", str(default_kubeconfig()), context)
    return get_cluster()


async def open_session(config_path: Path | None = None, environment: str | None = None,
                       cluster: str | None = None) -> Session:  # fmt: skip
    """Load the project's config (default: found from the current folder up, with
    ``environment`` applied) and connect to its cluster (``cluster`` by name, else the
    config's context, else the ``kubeloop`` cluster); close the session when done."""
    config = load(config_path, environment)
    info = _cluster_for(config, cluster)
    kube = await Kube.connect(info.kubeconfig, info.context)
    return Session(config, info, kube)
