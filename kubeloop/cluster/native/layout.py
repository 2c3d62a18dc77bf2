"""Names, addresses, ports and directories of one native cluster, in one place.

Everything the native provider creates on the host is derived from this, which is what
lets ``delete`` remove exactly what ``create`` made.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

KUBERNETES_VERSION = "v1.34.4"
ETCD_VERSION = "v3.5.35"
COREDNS_VERSION = "v1.12.4"
PAUSE_IMAGE = "localhost:5000/pause:3.10"

POD_CIDR = "10.244.0.0/16"
NODE_IP = "10.244.0.1"  # the bridge's address: stable, host-local, reachable from pods
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
DNS_SERVICE_IP = "10.96.0.10"
BRIDGE = "kubeloop0"
REGISTRY_PORT = 5000


@dataclass(frozen=True)
class Ports:
    apiserver: int = 6443
    etcd_client: int = 2379
    etcd_peer: int = 2380
    kubelet: int = 10250
    kubelet_healthz: int = 10248
    proxy_metrics: int = 10249
    proxy_healthz: int = 10256
    controller_manager: int = 10257
    scheduler: int = 10259
    coredns_health: int = 10280
    coredns_ready: int = 10281
    registry: int = REGISTRY_PORT

    def host_ports(self) -> dict[str, int]:
        """TCP ports that must be free on the host before ``create``."""
        return {name: port for name, port in vars(self).items()}


@dataclass(frozen=True)
class Layout:
    name: str
    state_root: Path
    run_root: Path
    ports: Ports = Ports()

    @classmethod
    def for_cluster(cls, name: str) -> Layout:
        state = Path(os.environ.get("KUBELOOP_STATE_DIR", "/var/lib/kubeloop"))
        run = Path(os.environ.get("KUBELOOP_RUN_DIR", "/run/kubeloop"))
        return cls(name=name, state_root=state / name, run_root=run / name)

    @property
    def node_name(self) -> str:
        return self.name

    @property
    def pki(self) -> Path:
        return self.state_root / "pki"

    @property
    def config(self) -> Path:
        return self.state_root / "config"

    @property
    def logs(self) -> Path:
        return self.state_root / "logs"

    @property
    def etcd_data(self) -> Path:
        return self.state_root / "etcd"

    @property
    def kubelet_root(self) -> Path:
        return self.state_root / "kubelet"

    @property
    def containerd_root(self) -> Path:
        return self.state_root / "containerd"

    @property
    def containerd_state(self) -> Path:
        return self.run_root / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.run_root / "containerd.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.state_root / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.state_root / "cni" / "ipam"

    @property
    def registry_data(self) -> Path:
        return self.state_root / "registry"

    @property
    def pids(self) -> Path:
        return self.state_root / "pids"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.config / "admin.kubeconfig"

    @property
    def cgroup_parent(self) -> str:
        """Every pod lives under this cgroup, so ``delete`` can find each process."""
        return f"/kubeloop-{self.name}"

    @property
    def cni_network(self) -> str:
        return f"kubeloop-{self.name}"

    @property
    def config_stamp(self) -> Path:
        """The configuration version the running cluster was set up with."""
        return self.state_root / "config-version"

    @property
    def marker(self) -> Path:
        """Written once the cluster was fully created; its absence means 'half made'."""
        return self.state_root / "created"
