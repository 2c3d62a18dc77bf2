"""A dev loop seen through the dashboard: what it publishes to the hub, and what the
page's buttons do to it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kubeloop.core import PROJECT_LABEL, Obj, WaitTimeout, wait_until
from kubeloop.dashboard.hub import Hub, Row
from kubeloop.dashboard.server import DashboardServer
from kubeloop.errors import KubeloopError

if TYPE_CHECKING:
    from kubeloop.agent import AgentStream
    from kubeloop.build.artifacts import Built
    from kubeloop.devloop.dev import DevLoop
    from kubeloop.devloop.session import Session
    from kubeloop.sync import Batch, Syncer

SIGHUP = 1
WORKLOADS = (("apps/v1", "deployments", "Deployment"), ("apps/v1", "statefulsets", "StatefulSet"),
             ("apps/v1", "daemonsets", "DaemonSet"))  # fmt: skip


class Dashboard:
    """The hub and its server for one dev session; ``start`` wires a DevLoop to them."""

    def __init__(self, hub: Hub, server: DashboardServer) -> None:
        self.hub = hub
        self.server = server
        self.loop: DevLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._sync: dict[int, Row] = {}  # by id(syncer): counters the batches add to
        self._builds: dict[str, int] = {}

    @classmethod
    async def open(cls, port: int = 0, hub: Hub | None = None) -> Dashboard:
        hub = hub or Hub()
        server = DashboardServer(hub, port)
        await server.start()
        return cls(hub, server)

    @property
    def url(self) -> str:
        return self.server.url

    def watch_session(self, session: Session) -> None:
        """Builds are published from the next one on (opened before dev starts: all)."""
        session.on_build = self.on_build
        self.hub.update("session", "info", {"project": session.config.project.name,
                                            "namespace": session.namespace,
                                            "cluster": session.cluster.name})  # fmt: skip
        for artifact in session.config.project.artifacts:
            built = session.last_built.get(artifact.image)  # before the page was opened
            self.hub.update("artifacts", artifact.image,
                            {"status": "ready", "image": built, "builds": 0} if built
                            else {"status": "pending", "builds": 0})  # fmt: skip
        for entry in session.config.project.test:
            self.hub.update("tests", entry.name, {"in": entry.in_, "workload": entry.workload,
                                                  "on": entry.on, "status": "not run"})  # fmt: skip

    def start(self, loop: DevLoop) -> None:
        """Wire a DevLoop that has started (its logs, sync counters, buttons) and follow
        the cluster and the loop's state until ``close``."""
        self.loop = loop
        printer, hub = loop.printer, self.hub

        def tee(prefix: str, colour: str, line: str) -> None:
            printer(prefix, colour, line)
            hub.log(prefix, line)

        loop.printer = tee
        for syncer in loop.syncers:
            self._wire_syncer(syncer)
        hub.commands.update({"rebuild": self._rebuild, "restart": self._restart,
                             "resync": self._resync, "test": self._test})  # fmt: skip
        self._tasks = [asyncio.create_task(self._follow_cluster(loop.session)),
                       asyncio.create_task(self._follow_loop(loop))]  # fmt: skip

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.server.close()

    # --- what the loop publishes --------------------------------------------------------

    def on_build(self, phase: str, value: Any) -> None:
        """Session.build's hook: ("started", [images]), ("done", [Built]) or
        ("failed", ([images], message))."""
        now = round(time.time(), 3)
        if phase == "started":
            for image in value:
                self.hub.patch("artifacts", image, status="building", started=now)
        elif phase == "done":
            built: list[Built] = value
            for item in built:
                image = item.artifact.image
                self._builds[image] = self._builds.get(image, 0) + 1
                self.hub.patch("artifacts", image, status="built" if item.result.built else "cached",
                               seconds=round(item.seconds, 2), cached=not item.result.built,
                               image=item.result.image, builds=self._builds[image],
                               finished=now)  # fmt: skip
        elif phase == "failed":
            images, message = value
            for image in images:
                self.hub.patch(
                    "artifacts", image, status="failed", error=str(message), finished=now
                )
            self.hub.note(f"build failed: {message}", "error")

    def _wire_syncer(self, syncer: Syncer) -> None:
        key = id(syncer)
        rule = syncer.rules[0] if syncer.rules else None
        root = self.loop.session.config.root if self.loop else None
        src = str(rule.local) if rule else ""
        if rule and root and rule.local.is_relative_to(root):
            src = rule.local.relative_to(root).as_posix() or "."
        self._sync[key] = {"selector": syncer.selector, "files": 0, "batches": 0,
                           "src": src, "dest": rule.remote if rule else "",
                           "last_change": None, "lag_ms": None}  # fmt: skip
        on_batch, on_event = syncer.on_batch, syncer.on_event

        def batch(done: Batch) -> None:
            on_batch(done)
            row = self._sync[key]
            row["files"] += done.written + done.deleted
            row["batches"] += 1
            row["last_change"] = round(time.time(), 3)
            row["lag_ms"] = round(done.seconds * 1000, 1)
            self._publish_sync(syncer)

        def event(text: str) -> None:
            on_event(text)
            self.hub.note(text)
            self._publish_sync(syncer)

        syncer.on_batch, syncer.on_event = batch, event
        self._publish_sync(syncer)

    def _publish_sync(self, syncer: Syncer) -> None:
        row = self._sync[id(syncer)]
        initial = sum(p.sent_files for p in syncer.pods.values())
        # Several rules may share a selector (code and tests into the same pods).
        self.hub.update("sync", f"{row['dest']} ({syncer.selector})",
                        {**row, "pods": sorted(syncer.pods), "initial_files": initial})  # fmt: skip

    async def _follow_loop(self, loop: DevLoop, interval: float = 0.25) -> None:
        """Port-forwards, sync attachments, bridges and debuggers: read from the loop's
        objects."""
        while True:
            for forwarder in loop.forwarders:
                spec = forwarder.spec
                self.hub.update("forwards", f"{spec.resource}:{spec.port}", {
                    "resource": spec.resource, "port": spec.port,
                    "url": f"http://127.0.0.1:{forwarder.local_port}/",
                    "ready": forwarder.ready.is_set(), "pod": forwarder.current_pod,
                    "moves": forwarder.moves})  # fmt: skip
            for syncer in loop.syncers:
                if id(syncer) not in self._sync:
                    self._wire_syncer(syncer)
                self._publish_sync(syncer)
            for bridge in loop.bridges:
                entry = bridge.spec
                self.hub.update("bridges", entry.workload, {
                    "mode": entry.mode, "port": entry.port, "command": " ".join(entry.command),
                    "running": bridge.local is not None, "served": bridge.served})  # fmt: skip
            for workload, (_, debugger) in loop.debuggers.items():  # dev --debug
                language = debugger.language.name if debugger.language else "?"
                self.hub.update("debuggers", workload, {
                    "language": language, "pod": debugger.pod or None,
                    "address": f"127.0.0.1:{debugger.local_port}" if debugger.local_port else None,
                    "ready": debugger.ready.is_set()})  # fmt: skip
            await asyncio.sleep(interval)

    async def _follow_cluster(self, session: Session, interval: float = 0.5) -> None:
        """Workloads with their rollout and pods, polled (as the log follower does)."""
        selector = {"labelSelector": f"{PROJECT_LABEL}={session.config.project.name}"}
        namespace = session.namespace
        while True:
            with contextlib.suppress(KubeloopError):
                pods = (await session.kube.request("GET", f"/api/v1/namespaces/{namespace}/pods",
                                                   params=selector)).get("items", [])  # fmt: skip
                seen = set()
                for api, plural, kind in WORKLOADS:
                    listing = await session.kube.request(
                        "GET", f"/apis/{api}/namespaces/{namespace}/{plural}", params=selector
                    )
                    for obj in listing.get("items", []):
                        key = f"{kind.lower()}/{obj['metadata']['name']}"
                        seen.add(key)
                        self.hub.update("workloads", key, workload_row(kind, obj, pods))
                for key in set(self.hub.rows["workloads"]) - seen:
                    self.hub.update("workloads", key, None)
            await asyncio.sleep(interval)

    # --- what the buttons do ------------------------------------------------------------

    def _session(self) -> Session:
        if self.loop is None:
            raise KubeloopError("dev is still starting", "press the button again in a moment")
        return self.loop.session

    async def _rebuild(self, _action: str, image: str) -> str:
        loop = self.loop
        session = self._session()
        if image not in {a.image for a in session.config.project.artifacts}:
            raise KubeloopError(f"no artifact {image!r} in this project")
        assert loop is not None
        async with loop.deploying:
            timings = await session.deploy(only={image}, quiet=True, dev_mode=True)
        how = "built" if image in timings.built else "unchanged (cached image)"
        return f"{image}: {how} in {timings.build:.1f}s, rolled out in {timings.rollout:.1f}s"

    async def _restart(self, _action: str, workload: str) -> str:
        """The workload's process under dev mode's supervisor (same pod, fast), else a
        rollout restart (new pods), as `kubectl rollout restart` does."""
        session = self._session()
        row = self.hub.rows["workloads"].get(workload)
        if row is None:
            raise KubeloopError(f"no workload {workload!r} in this project")
        loop = self.loop
        assert loop is not None
        if workload in session.dev_changed:
            pods = set(row.get("pods_by_name", []))

            def attached() -> list[AgentStream]:
                """One live stream per pod (each sync rule has its own)."""
                streams = {name: synced.stream for syncer in loop.syncers
                           for name, synced in syncer.pods.items()
                           if name in pods and synced.stream.alive}  # fmt: skip
                return list(streams.values())

            # Just after a resync or a rollout the streams are re-opening: a moment.
            with contextlib.suppress(WaitTimeout):
                await wait_until(lambda: bool(attached()), 10.0, 0.2, "sync attached")
            streams = attached()
            for stream in streams:
                await stream.signal(SIGHUP)
            if streams:
                return f"{workload}: process restarted in {len(streams)} pod(s)"
        kind, name = workload.split("/", 1)
        plural = {"deployment": "deployments", "statefulset": "statefulsets",
                  "daemonset": "daemonsets"}[kind]  # fmt: skip
        stamp = datetime.now(UTC).isoformat()
        await session.kube.request(
            "PATCH", f"/apis/apps/v1/namespaces/{session.namespace}/{plural}/{name}",
            body={"spec": {"template": {"metadata": {"annotations": {
                "kubectl.kubernetes.io/restartedAt": stamp}}}}},
            content_type="application/strategic-merge-patch+json",
        )  # fmt: skip
        return f"{workload}: rollout restart started (new pods)"

    async def _resync(self, _action: str, _target: str) -> str:
        """Every synced pod's stream re-opened: attaching again compares and sends
        everything that differs."""
        assert self.loop is not None
        pods = set()
        for syncer in self.loop.syncers:
            for name, synced in list(syncer.pods.items()):
                await synced.stream.close()
                pods.add(name)
        if not pods:
            raise KubeloopError("nothing to resync: no pod is attached yet")
        return f"resyncing {len(pods)} pod(s): {', '.join(sorted(pods))}"

    async def _test(self, _action: str, name: str) -> str:
        """One ``test:`` entry, as ``kubeloop test NAME`` runs it, against this session's
        images; its output goes to the logs (source test/NAME)."""
        from kubeloop.testrun import Target, run_entry

        session = self._session()
        entry = next((e for e in session.config.project.test if e.name == name), None)
        if entry is None:
            raise KubeloopError(f"no test entry {name!r} in this project")
        self.hub.patch("tests", name, status="running")
        target = Target(session.cluster.kubeconfig, session.cluster.context, session.namespace,
                        session.config.project.name, session.kube,
                        await session.render() if entry.in_ == "job" else [])  # fmt: skip
        result = await run_entry(entry, target, lambda _n, line: self.hub.log(f"test/{name}", line))
        text = result.line()
        self.hub.patch("tests", name, status="passed" if result.ok else "failed", result=text,
                       seconds=round(result.seconds, 2))  # fmt: skip
        if not result.ok:
            raise KubeloopError(text)
        return text


def workload_row(kind: str, obj: Obj, pods: list[Obj]) -> Row:
    """One workload's rollout and its pods (matched by name prefix and owner)."""
    name = obj["metadata"]["name"]
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if kind == "DaemonSet":
        wanted = int(status.get("desiredNumberScheduled") or 0)
        ready, updated = (
            int(status.get("numberReady") or 0),
            int(status.get("updatedNumberScheduled") or 0),
        )
    else:
        wanted = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
        ready, updated = (
            int(status.get("readyReplicas") or 0),
            int(status.get("updatedReplicas") or 0),
        )
    generation_seen = status.get("observedGeneration", 0) >= obj["metadata"].get("generation", 0)
    rolled_out = generation_seen and ready >= wanted and updated >= wanted
    mine = [p for p in pods if _owned_by(p, name)]
    return {
        "kind": kind, "name": name, "wanted": wanted, "ready": ready,
        "rollout": "rolled out" if rolled_out else f"rolling out ({updated}/{wanted} updated, {ready} ready)",
        "pods": [pod_row(p) for p in sorted(mine, key=lambda p: p["metadata"]["name"])],
        "pods_by_name": sorted(p["metadata"]["name"] for p in mine),
    }  # fmt: skip


def _owned_by(pod: Obj, workload: str) -> bool:
    name = pod["metadata"]["name"]
    owners = pod["metadata"].get("ownerReferences") or []
    return name.startswith(workload + "-") and bool(owners)


def pod_row(pod: Obj) -> Row:
    status = pod.get("status") or {}
    containers = status.get("containerStatuses") or []
    waiting = next((c["state"]["waiting"].get("reason") for c in containers
                    if (c.get("state") or {}).get("waiting")), None)  # fmt: skip
    return {
        "name": pod["metadata"]["name"],
        "phase": "Terminating" if pod["metadata"].get("deletionTimestamp") else status.get("phase", "?"),
        "ready": sum(bool(c.get("ready")) for c in containers), "containers": len(containers),
        "restarts": sum(int(c.get("restartCount") or 0) for c in containers),
        "waiting": waiting,
    }  # fmt: skip
