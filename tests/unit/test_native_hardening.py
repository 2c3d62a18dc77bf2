"""The native cluster's hardening, as pure logic: component flags, health checks, the
kubeconfig names, upgrade detection (fingerprints, config version), host-change records
and the br_netfilter decision."""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from kubeloop.cluster.native import changes
from kubeloop.cluster.native.components import daemons, health_checks
from kubeloop.cluster.native.configs import write_kubeconfigs, write_proxy_config
from kubeloop.cluster.native.daemons import (
    Daemon,
    _start_time,
    fingerprint,
    running_pid,
    started_with,
)
from kubeloop.cluster.native.layout import Layout
from kubeloop.cluster.native.pki import ensure_pki
from kubeloop.cluster.native.provider import CONFIG_VERSION, _config_current


def _layout(tmp_path: Path) -> Layout:
    return Layout("dev", tmp_path / "state", tmp_path / "run")


def _bins() -> dict[str, Path]:
    names = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet",
             "kube-proxy", "coredns")  # fmt: skip
    return {n: Path(f"/bin/{n}") for n in names}


def test_etcd_takes_only_tls_clients_with_a_certificate(tmp_path: Path) -> None:
    argv = daemons(_layout(tmp_path), _bins())["etcd"].argv
    urls = [argv[i + 1] for i, a in enumerate(argv) if a.endswith("-urls")]
    assert urls and all(u.startswith("https://127.0.0.1:") for u in urls)
    assert "--client-cert-auth" in argv and "--peer-client-cert-auth" in argv
    assert "http://" not in " ".join(argv)


def test_the_apiserver_uses_its_etcd_certificate_and_refuses_anonymous(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    argv = daemons(layout, _bins())["kube-apiserver"].argv
    assert "--anonymous-auth=false" in argv
    assert f"--etcd-servers=https://127.0.0.1:{layout.ports.etcd_client}" in argv
    assert f"--etcd-certfile={layout.pki / 'apiserver-etcd-client.crt'}" in argv
    assert f"--etcd-keyfile={layout.pki / 'apiserver-etcd-client.key'}" in argv
    assert f"--etcd-cafile={layout.pki / 'ca.crt'}" in argv


def test_health_checks_that_need_a_certificate_present_one(tmp_path: Path) -> None:
    checks = health_checks(_layout(tmp_path))
    assert checks["etcd"].url.startswith("https://") and checks["etcd"].verify
    assert checks["etcd"].client_cert == "apiserver-etcd-client"
    assert checks["kube-apiserver"].client_cert == "admin"


def test_every_name_in_the_admin_kubeconfig_is_kubeloops(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    ensure_pki(layout)
    write_kubeconfigs(layout)
    config = yaml.safe_load(layout.admin_kubeconfig.read_text())
    names = {e["name"] for key in ("clusters", "users", "contexts") for e in config[key]}
    assert names == {"kubeloop-dev"}
    assert config["contexts"][0]["context"] == {"cluster": "kubeloop-dev", "user": "kubeloop-dev"}


def test_kube_proxy_leaves_the_hosts_conntrack_and_loopback_settings_alone(
    tmp_path: Path,
) -> None:
    config = yaml.safe_load(write_proxy_config(_layout(tmp_path)).read_text())
    assert config["iptables"]["localhostNodePorts"] is False  # no route_localnet=1
    conntrack = config["conntrack"]
    assert conntrack["tcpEstablishedTimeout"] == conntrack["tcpCloseWaitTimeout"] == "0s"


def test_a_changed_config_file_changes_the_fingerprint(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("a: 1\n")
    daemon = Daemon("x", ("/bin/x", f"--config={config}"), tmp_path / "pids", tmp_path)
    first = fingerprint(daemon)
    assert fingerprint(daemon) == first
    config.write_text("a: 2\n")
    assert fingerprint(daemon) != first
    longer = Daemon("x", (*daemon.argv, "--v=2"), tmp_path / "pids", tmp_path)
    assert fingerprint(longer) != fingerprint(daemon)


def test_an_old_pid_file_has_no_fingerprint_but_still_names_the_process(tmp_path: Path) -> None:
    daemon = Daemon("self", ("/bin/x",), tmp_path, tmp_path)
    daemon.pid_file.write_text(f"{os.getpid()} {_start_time(os.getpid())}\n")  # older kubeloop
    assert running_pid(daemon) == os.getpid() and started_with(daemon) is None
    daemon.pid_file.write_text(f"{os.getpid()} {_start_time(os.getpid())} abc123\n")
    assert running_pid(daemon) == os.getpid() and started_with(daemon) == "abc123"


def test_an_older_or_missing_config_version_is_outdated(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    assert not _config_current(layout)
    layout.state_root.mkdir(parents=True)
    layout.config_stamp.write_text("1")
    assert not _config_current(layout)
    layout.config_stamp.write_text(CONFIG_VERSION)
    assert _config_current(layout)


def test_kube_chains_are_ours_by_record_or_by_an_older_cluster(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    assert not changes.owns_kube_chains(layout)  # fresh: a foreign chain would be refused
    layout.state_root.mkdir(parents=True)
    layout.marker.write_text("made by an older kubeloop")
    assert changes.owns_kube_chains(layout)
    layout.marker.unlink()
    (layout.state_root / "host-changes.json").write_text(
        json.dumps({changes.KUBE_CHAINS_KEY: "absent"})
    )
    assert changes.owns_kube_chains(layout)


def _module(sys_root: Path, refcnt: str, holders: tuple[str, ...] = ()) -> None:
    module = sys_root / "module" / "br_netfilter"
    (module / "holders").mkdir(parents=True)
    (module / "refcnt").write_text(f"{refcnt}\n")
    for holder in holders:
        (module / "holders" / holder).mkdir()
    (sys_root / "class" / "net").mkdir(parents=True)


def test_br_netfilter_is_unloaded_only_when_nothing_uses_it(tmp_path: Path) -> None:
    assert changes.br_netfilter_user(tmp_path) == "not loaded"
    _module(tmp_path, "0")
    (tmp_path / "class" / "net" / "eth0").mkdir()
    assert changes.br_netfilter_user(tmp_path) is None
    (tmp_path / "class" / "net" / "docker0" / "bridge").mkdir(parents=True)
    assert changes.br_netfilter_user(tmp_path) == "bridge docker0"


def test_br_netfilter_held_by_another_module_stays(tmp_path: Path) -> None:
    _module(tmp_path, "1", ("nf_conntrack_bridge",))
    assert changes.br_netfilter_user(tmp_path) == "module nf_conntrack_bridge"
