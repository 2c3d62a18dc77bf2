"""Crash recovery, clean deletion, and refusing bad hosts. Marked disruptive: these
tests crash, delete and recreate the session's cluster, so the conftest runs them after
every other test."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from kubeloop.cluster import ClusterInfo, cluster_status, create_cluster, delete_cluster
from kubeloop.cluster.native import changes, sweep
from kubeloop.cluster.native.binaries import components, ensure_binaries
from kubeloop.cluster.native.daemons import running_pid
from kubeloop.cluster.native.iptables import kube_component_chains, remove_iptables
from kubeloop.cluster.native.layout import Layout, Ports
from kubeloop.cluster.native.preflight import preflight
from kubeloop.cluster.native.provider import daemon_specs
from kubeloop.errors import KubeloopError
from kubeloop.kube import Kube
from kubeloop.paths import default_kubeconfig
from kubeloop.proc import run
from tests.integration.test_cluster import server_pod

# Each test recreates the cluster at least once (about a minute each from cached
# binaries), more than the suite's default per-test timeout allows.
pytestmark = [pytest.mark.disruptive, pytest.mark.timeout(1200)]


async def test_create_recovers_after_components_crash(
    kube: Kube, namespace: str, cluster_name: str
) -> None:
    await kube.apply(server_pod("survivor", namespace))
    await kube.wait_pod_running(namespace, "survivor", 90)
    specs = daemon_specs(Layout.for_cluster(cluster_name))
    for name in ("kube-apiserver", "kubelet", "containerd", "coredns"):
        pid = running_pid(specs[name])
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
    assert not (await cluster_status(cluster_name)).healthy

    await create_cluster(cluster_name, provider="native", quiet=True)
    status = await cluster_status(cluster_name)
    assert status.healthy, status
    pod = await kube.wait_pod_running(namespace, "survivor", 90)
    assert pod["status"]["phase"] == "Running"


async def test_delete_leaves_nothing_and_create_comes_back(
    cluster: ClusterInfo, cluster_name: str
) -> None:
    layout = Layout.for_cluster(cluster_name)
    changes = json.loads((layout.state_root / "host-changes.json").read_text())
    # Another tool's KUBE-* chain (k3s' kube-router makes these) and its jump: not ours.
    foreign = ["iptables", "-A", "INPUT", "-j", "KUBE-ROUTER-INPUT"]
    await run(["iptables", "-N", "KUBE-ROUTER-INPUT"])
    await run(foreign)
    try:
        started = time.monotonic()
        await delete_cluster(cluster_name, quiet=True)
        delete_seconds = time.monotonic() - started

        assert sweep.leftovers(layout) == []
        for save in ("iptables-save", "ip6tables-save"):
            rules = (await run([save])).stdout
            assert "KUBELOOP-" not in rules and kube_component_chains(rules) == []
            assert f'\\"{layout.cni_network}\\"' not in rules
        assert "-A INPUT -j KUBE-ROUTER-INPUT" in (await run(["iptables", "-S", "INPUT"])).stdout
        # Every host setting is back as it was before the cluster (the kubelet's too).
        for key, original in changes.items():
            if key.startswith("sysctl:"):
                current = Path("/proc/sys", key.removeprefix("sysctl:")).read_text().strip()
                assert current == original, key
        assert not Path("/sys/class/net/kubeloop0").exists()
        assert f"kubeloop-{cluster_name}" not in default_kubeconfig().read_text()
        assert not sweep.processes_mentioning(str(layout.state_root), str(layout.run_root))
        assert delete_seconds < 30
    finally:
        await run(["iptables", "-D", *foreign[2:]], check=False)
        await run(["iptables", "-X", "KUBE-ROUTER-INPUT"], check=False)

    again = await create_cluster(cluster_name, provider="native", quiet=True)
    assert (await cluster_status(cluster_name)).healthy
    assert again.kubeconfig == cluster.kubeconfig


# Python lives under /root here, which an unprivileged user cannot read: import
# everything as root, then drop to nobody before the command runs.
AS_NOBODY = """
import os, sys
import kubeloop.cli, kubeloop.cluster, kubeloop.cluster.native.provider, kubeloop.images.seed
import rich.table, rich.console, rich.status, rich.markup, kr8s.asyncio
os.setgroups([]); os.setgid(65534); os.setuid(65534)
sys.argv = ["kubeloop", *sys.argv[1:]]
kubeloop.cli.main()
"""


def test_non_root_is_told_what_is_missing() -> None:
    tmp_path = Path(tempfile.mkdtemp(prefix="kubeloop-nobody-"))
    tmp_path.chmod(0o777)
    env = {"KUBELOOP_CONFIG_DIR": str(tmp_path / "cfg"), "KUBELOOP_CACHE_DIR": str(tmp_path),
           "HOME": str(tmp_path)}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", AS_NOBODY, "cluster", "create", "--name", "nonroot",
         "--provider", "native"],
        capture_output=True, text=True, timeout=60, env={**os.environ, **env},
    )  # fmt: skip
    assert result.returncode == 2, result
    assert "must run as root" in result.stderr
    assert "sudo kubeloop cluster create" in result.stderr
    assert not Layout.for_cluster("nonroot").state_root.exists()


def test_a_busy_port_is_named_with_its_owner() -> None:
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        layout = Layout("probe", Path("/nonexistent"), Path("/nonexistent"), Ports(apiserver=port))
        problems = preflight(layout)
    busy_port = [p for p in problems if f"port {port} " in p.what]
    assert busy_port, problems
    assert "apiserver" in busy_port[0].what and f"pid {os.getpid()}" in busy_port[0].what


def test_a_missing_command_is_reported_with_its_package(monkeypatch: object) -> None:
    env = {"PATH": "/nonexistent"}
    result = subprocess.run(
        [sys.executable, "-c",
         "from kubeloop.cluster.native.preflight import missing_commands\n"
         "for p in missing_commands(): print(p.what, '|', p.fix)"],
        capture_output=True, text=True, env={**os.environ, **env}, check=True,
    )  # fmt: skip
    assert "'containerd' is not installed | apt-get install containerd" in result.stdout
    assert "'docker-registry' is not installed | apt-get install docker-registry" in result.stdout


async def test_create_recovers_after_a_reboot(cluster: ClusterInfo, cluster_name: str) -> None:
    """A reboot loses every process, mount, /run, the bridge, firewall rules and sysctls;
    the state under /var/lib stays. create must bring the same cluster back."""
    layout = Layout.for_cluster(cluster_name)
    specs = daemon_specs(layout)
    for daemon in specs.values():
        pid = running_pid(daemon)
        if pid:
            os.kill(pid, signal.SIGKILL)
    await sweep.kill_pod_processes(layout)
    await sweep.kill_processes(
        sweep.processes_mentioning(str(layout.state_root), str(layout.run_root))
    )
    sweep.unmount_all(layout.state_root, layout.run_root)
    shutil.rmtree(layout.run_root)
    await sweep.remove_network(layout)
    await remove_iptables(layout)
    sweep.remove_cgroups(layout)
    await changes.restore(layout)
    assert layout.marker.exists()

    info = await create_cluster(cluster_name, provider="native", quiet=True)
    assert info == cluster
    assert (await cluster_status(cluster_name)).healthy


async def test_a_create_that_fails_midway_cleans_up(
    cluster: ClusterInfo, cluster_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken component binary: create says which and why, and leaves nothing."""
    real = await ensure_binaries(quiet=True)
    await delete_cluster(cluster_name, quiet=True)
    broken_cache = Path(tempfile.mkdtemp(prefix="kubeloop-broken-"))
    monkeypatch.setenv("KUBELOOP_CACHE_DIR", str(broken_cache))
    for component in components():
        component.bin_dir.mkdir(parents=True)
        for name in component.binaries:
            (component.bin_dir / name).symlink_to(real[name])
        (component.bin_dir / ".complete").write_text("{}")
    scheduler = broken_cache / "bin" / components()[0].key / "kube-scheduler"
    scheduler.unlink()
    scheduler.write_text("#!/bin/sh\necho 'scheduler: cannot load its configuration' >&2\nexit 3\n")
    scheduler.chmod(0o755)
    try:
        with pytest.raises(KubeloopError) as caught:
            await create_cluster(cluster_name, provider="native", quiet=True)
        assert "kube-scheduler exited during start-up" in caught.value.message
        assert "cannot load its configuration" in caught.value.message
        layout = Layout.for_cluster(cluster_name)
        assert sweep.leftovers(layout) == []
        assert (broken_cache / "failed-logs" / cluster_name / "kube-scheduler.log").exists()
    finally:
        monkeypatch.delenv("KUBELOOP_CACHE_DIR")
        shutil.rmtree(broken_cache, ignore_errors=True)
        await create_cluster(cluster_name, provider="native", quiet=True)
    assert (await cluster_status(cluster_name)).healthy
