"""One project against one cluster: what every command of the core loop shares."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from kubeloop import ui
from kubeloop.build.artifacts import build_all, reference_of
from kubeloop.cluster import (
    ClusterInfo,
    project_cluster,
    routes_services_on_host,
    wait_services_routed,
)
from kubeloop.config import LoadedConfig, SyncSpec, load
from kubeloop.core import Obj
from kubeloop.deploy import delete_project, deploy, has_ready_endpoint, wait_rollout
from kubeloop.deploy.tasks import all_of
from kubeloop.deploy.timeline import Timeline
from kubeloop.errors import KubeloopError
from kubeloop.kube import Kube, label_selector
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
    timeline: Timeline = field(default_factory=Timeline)  # silent unless `dev -v` gives one
    supervised: dict[str, str | None] = field(default_factory=dict)  # see _supervised_image
    # ("started", [images]), ("done", [Built]), ("failed", ([images], message)): the dashboard
    on_build: Callable[[str, Any], None] | None = None

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
        images = [a.image for a in self.config.project.artifacts if only is None or a.image in only]
        if self.on_build is not None:
            self.on_build("started", images)
        with self.timeline.phase("build: content tags, registry check, builds"):
            try:
                results = await build_all(self.config, self.registry, only, on_line)
            except KubeloopError as exc:
                if self.on_build is not None:
                    self.on_build("failed", (images, exc.message))
                raise
        if self.on_build is not None:
            self.on_build("done", results)
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

    def _restart_specs(self) -> list[SyncSpec]:
        return [s for s in self.config.project.sync if s.restart != "none"]

    async def _agent_image(self) -> str | None:
        """The agent image dev mode's init container would use, when dev mode applies."""
        if not self._restart_specs():
            return None
        with self.timeline.phase("dev mode: agent image check"):
            return await ensure_agent_image(self.cluster)

    async def _dev_mode(self, objects: list[Obj], agent: str | None) -> None:
        specs = self._restart_specs()
        if not specs or agent is None:
            return
        with self.timeline.phase("dev mode: supervisor wrapped in"):
            changed = await inject_supervisor(objects, specs, agent, self.registry,
                                              on_skip=ui.warn,
                                              supervised=self._supervised_image)  # fmt: skip
        self.dev_changed.update(changed)

    async def _supervised_image(self, image: str) -> str | None:
        """The app image with the supervisor inside (see devimage.py), for images kubeloop
        built; None (the init container instead) for others or when it cannot be made."""
        from kubeloop.devloop.devimage import with_supervisor

        if image not in self.last_built.values():
            return None
        if image not in self.supervised:
            try:
                self.supervised[image] = await with_supervisor(image)
            except (KubeloopError, httpx.HTTPError) as exc:
                ui.warn(f"dev mode: no image with the supervisor for {image} ({exc}); "
                        "an init container copies it in instead (slower start)")  # fmt: skip
                self.supervised[image] = None
        return self.supervised[image]

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
        objects, timings = await self.prepare(quiet, only, dev_mode)
        with ui.step(f"deploying {self.config.project.name} to {self.namespace}", quiet) as step:
            await self.apply(objects, timings)
            if wait:
                await self.wait(objects, timings, step.detail)
        return timings

    async def prepare(self, quiet: bool = False, only: set[str] | None = None,
                      dev_mode: bool = False) -> tuple[list[Obj], Timings]:  # fmt: skip
        """Build what changed and render (with dev mode's change): the objects to apply."""
        with ui.step(f"building {self.config.project.name}", quiet) as building:
            # The agent image check does not depend on the build: both at once.
            timings, agent = await all_of(
                self.build(only, lambda image, line: building.detail(f"{image}: {line}")),
                self._agent_image() if dev_mode else _nothing(),
            )
        started = time.monotonic()
        with self.timeline.phase("render"):
            objects = await self.render()
        if dev_mode:
            await self._dev_mode(objects, agent)
        timings.render = time.monotonic() - started
        return objects, timings

    async def apply(self, objects: list[Obj], timings: Timings) -> None:
        """Server-side apply and prune, without waiting for the rollout."""
        started = time.monotonic()
        with self.timeline.phase("apply"):
            result = await deploy(self.kube, objects, self.config.project.name, self.namespace,
                                  prune=self.config.project.deploy.prune,
                                  timeout=self.config.project.deploy.timeout, wait=False,
                                  timeline=self.timeline)  # fmt: skip
        for ref in result.adopted:
            ui.warn(f"{ref} existed before kubeloop: adopted (applied, but prune and "
                    "delete will leave it)")  # fmt: skip
        for ref, why in result.kept:
            ui.info(f"left {ref} in place: {why}")
        timings.apply = time.monotonic() - started

    async def wait(self, objects: list[Obj], timings: Timings,
                   on_wait: Callable[[str], None] = lambda _: None) -> None:  # fmt: skip
        """Until every workload is rolled out, its Services have endpoints and, on a
        native cluster, kube-proxy routes them from the host; a failing pod is explained."""
        started = time.monotonic()
        with self.timeline.phase("rollout: every pod ready, Services with endpoints"):
            await wait_rollout(self.kube, objects, self.config.project.deploy.timeout, on_wait)
        with self.timeline.phase("rollout: kube-proxy routes the Services"):
            await self._wait_services_routed(objects, on_wait)
        timings.rollout = time.monotonic() - started

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


async def open_session(config_path: Path | None = None, environment: str | None = None,
                       cluster: str | None = None,
                       timeline: Timeline | None = None) -> Session:  # fmt: skip
    """Load the project's config (default: found from the current folder up, with
    ``environment`` applied) and connect to its cluster (``cluster`` by name, else the
    config's context, else the ``kubeloop`` cluster); close the session when done."""
    timeline = timeline or Timeline()
    with timeline.phase("load the config"):
        config = load(config_path, environment)
        info = project_cluster(cluster, config.project.context)
    with timeline.phase("connect to the API server"):
        kube = await Kube.connect(info.kubeconfig, info.context)
    return Session(config, info, kube, timeline=timeline)


async def _nothing() -> None:
    return None
