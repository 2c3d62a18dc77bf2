"""The native provider: real Kubernetes components as host processes, on containerd,
runc and the CNI bridge plugin, with a registry at localhost:5000."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from kubeloop import ui
from kubeloop.cluster import kubeconfig as user_kubeconfig
from kubeloop.cluster.base import ClusterInfo, ClusterStatus, ComponentStatus, list_records
from kubeloop.cluster.native import bootstrap, changes, configs, iptables, pki, preflight, sweep
from kubeloop.cluster.native.binaries import ensure_binaries
from kubeloop.cluster.native.components import (
    daemons,
    healthy,
    secure_etcd_peer_url,
    wait_healthy,
)
from kubeloop.cluster.native.daemons import (
    Daemon,
    fingerprint,
    running_pid,
    start,
    started_with,
    stop,
)
from kubeloop.cluster.native.layout import PAUSE_IMAGE, Layout
from kubeloop.cluster.native.packages import ensure_packages
from kubeloop.errors import KubeloopError
from kubeloop.images.registry import ImageConfig, manifest_exists, push_files
from kubeloop.kube import Kube
from kubeloop.kube.client import node_is_ready
from kubeloop.paths import cache_dir, default_kubeconfig

# Bump whenever a component's flags or configuration or the host set-up change: create
# on a healthy cluster of an older version then rewrites the configuration and restarts
# the components whose command line or configuration files changed (an upgrade in place).
# 2: etcd on TLS with client certificates, no anonymous API requests, the registry for
#    root only, kubeloop-<name> kubeconfig names, recorded host changes and chain owner.
CONFIG_VERSION = "2"

# Start order; a stage starts once every component of the previous stage is healthy.
STAGES: tuple[tuple[str, ...], ...] = (
    ("registry", "etcd", "containerd"),
    ("kube-apiserver",),
    ("kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"),
    ("coredns",),
)
# Stop order: the kubelet first so it restarts nothing, etcd last.
STOP_ORDER = (
    ("kubelet", "kube-proxy", "kube-controller-manager", "kube-scheduler", "coredns"),
    ("kube-apiserver",),
    ("containerd", "registry", "etcd"),
)


class NativeProvider:
    name = "native"

    def __init__(self, layout_for: Callable[[str], Layout] = Layout.for_cluster) -> None:
        self._layout_for = layout_for

    # --- create -------------------------------------------------------------------------

    async def create(self, name: str, quiet: bool = False) -> ClusterInfo:
        layout = self._layout_for(name)
        preflight.raise_if_any(preflight.preflight_basics())
        self._refuse_second_cluster(layout)
        if (layout.marker.exists() and _config_current(layout)
                and await self._all_healthy(layout)):  # fmt: skip
            return self.info(layout)
        fresh = not layout.marker.exists()
        started = time.monotonic()
        try:
            await self._bring_up(layout, quiet)
        except BaseException:
            if fresh:
                await self._undo_failed_create(layout, quiet)
            raise
        if not quiet:
            ui.info(
                f"[green]cluster '{name}' is ready[/green] in {time.monotonic() - started:.1f}s"
            )
        return self.info(layout)

    def _refuse_second_cluster(self, layout: Layout) -> None:
        others = [
            r.name for r in list_records() if r.provider == self.name and r.name != layout.name
        ]
        others += [
            p.name for p in layout.state_root.parent.glob("*")
            if p.is_dir() and p.name != layout.name and p.name not in others
        ]  # fmt: skip
        if others:
            raise KubeloopError(
                f"a native cluster named '{others[0]}' already exists on this host; the native "
                "provider runs one cluster per host (they would share ports and the pod network)",
                f"use it (--name {others[0]}), or delete it first: "
                f"kubeloop cluster delete --name {others[0]}",
            )

    async def _bring_up(self, layout: Layout, quiet: bool) -> None:
        with ui.step("checking the host", quiet):
            await ensure_packages(quiet=quiet)
            all_daemons = daemons(layout, _placeholder_bins())
            running = {n for n, d in all_daemons.items() if running_pid(d) is not None}
            problems = _preflight_ignoring_ours(layout, running)
            problems += await preflight.foreign_kube_chains(layout)
            preflight.raise_if_any(problems)
        bins = await ensure_binaries(quiet=quiet)
        with ui.step("preparing the host, certificates and configuration", quiet):
            await changes.prepare(layout)
            await iptables.ensure_forward_rules(layout)
            pki.ensure_pki(layout)
            configs.write_all(layout)
        specs = daemons(layout, bins)
        for stage in STAGES:
            with ui.step(f"starting {', '.join(stage)}", quiet):
                for name in stage:
                    await _restart_if_changed(specs[name])
                    start(specs[name])
                await asyncio.gather(*(wait_healthy(layout, specs[n], 90) for n in stage))
            if stage[0] == "registry":
                await secure_etcd_peer_url(layout)
                await _push_pause_image(bins["pause"], quiet)
            if stage[0] == "kube-apiserver":
                kube = await Kube.connect(layout.admin_kubeconfig)
                try:
                    await bootstrap.apply(kube)
                finally:
                    await kube.close()
        with ui.step(f"waiting for node {layout.node_name} to be Ready", quiet):
            kube = await Kube.connect(layout.admin_kubeconfig)
            try:
                await kube.wait_node_ready(layout.node_name, timeout=90)
                # Pods are refused until the controller manager made this account.
                await kube.wait_for(
                    "/api/v1/namespaces/default/serviceaccounts/default",
                    lambda _: True,
                    "the default service account",
                    timeout=60,
                )
            finally:
                await kube.close()
        self._install_kubeconfig(layout)
        layout.marker.write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))
        layout.config_stamp.write_text(CONFIG_VERSION)

    async def _undo_failed_create(self, layout: Layout, quiet: bool) -> None:
        """Keep the logs somewhere the user can read them, then remove everything."""
        if layout.logs.exists():
            kept = cache_dir() / "failed-logs" / layout.name
            shutil.rmtree(kept, ignore_errors=True)
            shutil.copytree(layout.logs, kept)
            ui.warn(f"create failed; the components' logs are kept in {kept}")
        await self._teardown(layout, quiet=True)

    def _install_kubeconfig(self, layout: Layout) -> None:
        config = yaml.safe_load(layout.admin_kubeconfig.read_text())
        user_kubeconfig.merge(default_kubeconfig(), config, switch=True)
        _forget_old_admin_user(config)

    def _uninstall_kubeconfig(self, layout: Layout) -> None:
        """Remove exactly the entries kubeloop added (all named kubeloop-<name>), and an
        older kubeloop's "admin" user if it holds this cluster's credentials."""
        user_kubeconfig.remove(default_kubeconfig(), f"kubeloop-{layout.name}")
        try:
            config = yaml.safe_load(layout.admin_kubeconfig.read_text())
        except OSError:
            return
        _forget_old_admin_user(config)

    def info(self, layout: Layout) -> ClusterInfo:
        return ClusterInfo(
            name=layout.name,
            provider=self.name,
            kubeconfig=str(layout.admin_kubeconfig),
            context=f"kubeloop-{layout.name}",
            registry=f"localhost:{layout.ports.registry}",
            registry_for_pods=f"localhost:{layout.ports.registry}",
            details={"state": str(layout.state_root), "logs": str(layout.logs)},
        )

    # --- delete -------------------------------------------------------------------------

    async def delete(self, info: ClusterInfo, quiet: bool = False) -> None:
        layout = self._layout_for(info.name)
        await self._teardown(layout, quiet)

    async def _teardown(self, layout: Layout, quiet: bool) -> None:
        specs = daemons(layout, _placeholder_bins())
        with ui.step("stopping the cluster's processes", quiet):
            await stop([specs[n] for n in STOP_ORDER[0]], grace=2.0)
            await sweep.kill_pod_processes(layout)
            await sweep.kill_processes(sweep.processes_mentioning(str(layout.containerd_socket)))
            await stop([specs[n] for n in STOP_ORDER[1]], grace=2.0)
            await stop([specs[n] for n in STOP_ORDER[2]], grace=2.0)
            # Anything else still naming our directories (a crashed run's orphans).
            await sweep.kill_processes(
                sweep.processes_mentioning(str(layout.state_root), str(layout.run_root))
            )
        with ui.step("removing mounts, network, firewall rules and state", quiet):
            sweep.unmount_all(layout.state_root, layout.run_root)
            await sweep.remove_network(layout)
            await iptables.remove_iptables(layout)
            sweep.remove_cgroups(layout)
            _remove_pod_log_links(layout)
            await changes.restore(layout)
            self._uninstall_kubeconfig(layout)
            for directory in (layout.state_root, layout.run_root):
                shutil.rmtree(directory, ignore_errors=True)
        left = sweep.leftovers(layout)
        if left:
            raise KubeloopError(
                f"delete left things behind: {'; '.join(left)}",
                "run 'kubeloop cluster delete' again; report it if it stays",
            )

    # --- status -------------------------------------------------------------------------

    async def _all_healthy(self, layout: Layout) -> bool:
        specs = daemons(layout, _placeholder_bins())
        checks = await asyncio.gather(*(healthy(layout, n, d) for n, d in specs.items()))
        return all(checks)

    async def status(self, info: ClusterInfo) -> ClusterStatus:
        layout = self._layout_for(info.name)
        specs = daemons(layout, _placeholder_bins())
        results = await asyncio.gather(*(healthy(layout, n, d) for n, d in specs.items()))
        components = [
            ComponentStatus(n, running_pid(d) is not None, ok, str(d.log_file))
            for (n, d), ok in zip(specs.items(), results, strict=True)
        ]
        node_ready = False
        reachable = False
        if layout.admin_kubeconfig.exists() and dict(zip(specs, results, strict=True)).get(
            "kube-apiserver"
        ):
            kube = await Kube.connect(layout.admin_kubeconfig)
            try:
                node = await kube.get(f"/api/v1/nodes/{layout.node_name}")
                reachable = True
                node_ready = node is not None and node_is_ready(node)
            finally:
                await kube.close()
        message = "" if layout.marker.exists() else "not fully created"
        return ClusterStatus(info, reachable, node_ready, components, message)


def _config_current(layout: Layout) -> bool:
    try:
        return layout.config_stamp.read_text().strip() == CONFIG_VERSION
    except OSError:
        return False


async def _restart_if_changed(daemon: Daemon) -> None:
    """Stop a running component started with another command line or configuration (or
    by an older kubeloop, which recorded none), so that it starts again with this one."""
    if running_pid(daemon) is not None and started_with(daemon) != fingerprint(daemon):
        await stop([daemon], grace=5.0)


def _forget_old_admin_user(config: dict[str, object]) -> None:
    """kubeloop before config version 2 named its kubeconfig user "admin"."""
    users = config.get("users")
    if isinstance(users, list) and users and isinstance(users[0], dict):
        user_kubeconfig.forget_user(default_kubeconfig(), "admin", users[0].get("user") or {})


def _preflight_ignoring_ours(layout: Layout, running: set[str]) -> list[preflight.Problem]:
    """Preflight, except for ports held by this cluster's own running components."""
    owned_ports = {
        "registry": ("registry",), "etcd": ("etcd_client", "etcd_peer"),
        "kube-apiserver": ("apiserver",), "kubelet": ("kubelet", "kubelet_healthz"),
        "kube-controller-manager": ("controller_manager",), "kube-scheduler": ("scheduler",),
        "kube-proxy": ("proxy_healthz", "proxy_metrics"),
        "coredns": ("coredns_health", "coredns_ready"),
    }  # fmt: skip
    ours = {getattr(layout.ports, p) for n in running for p in owned_ports.get(n, ())}
    return [
        p for p in preflight.preflight(layout)
        if not any(f"port {port} " in p.what for port in ours)
    ] + preflight.missing_commands()  # fmt: skip


def _placeholder_bins() -> dict[str, Path]:
    """Daemon specs for stop/status only need names and pid files, not real binaries."""
    names = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet",
             "kube-proxy", "coredns")  # fmt: skip
    return {n: Path(n) for n in names}


async def _push_pause_image(pause_binary: Path, quiet: bool) -> None:
    if await manifest_exists(PAUSE_IMAGE):
        return
    with ui.step(f"pushing the pause image {PAUSE_IMAGE}", quiet):
        await push_files(
            PAUSE_IMAGE,
            {"pause": (pause_binary.read_bytes(), 0o755)},
            ImageConfig(entrypoint=["/pause"], user="65535:65535"),
        )


def _remove_pod_log_links(layout: Layout) -> None:
    """The kubelet always links container logs into /var/log/containers."""
    links = Path("/var/log/containers")
    if not links.exists():
        return
    for link in links.iterdir():
        try:
            if link.is_symlink() and str(link.readlink()).startswith(str(layout.state_root)):
                link.unlink()
        except OSError:
            continue


def daemon_specs(layout: Layout) -> dict[str, Daemon]:
    return daemons(layout, _placeholder_bins())
