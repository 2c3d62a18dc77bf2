"""Configuration files of the native cluster's components, written from the layout."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import yaml

from kubeloop.cluster.native.layout import (
    BRIDGE,
    DNS_SERVICE_IP,
    NODE_IP,
    PAUSE_IMAGE,
    POD_CIDR,
    Layout,
)

CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")


def kubeconfig(
    layout: Layout, user: str, cert_name: str, server: str | None = None, context: str = "default"
) -> dict[str, object]:
    pki = layout.pki

    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": context,
            "cluster": {
                "server": server or f"https://127.0.0.1:{layout.ports.apiserver}",
                "certificate-authority-data": b64(pki / "ca.crt"),
            },
        }],
        "users": [{
            "name": user,
            "user": {
                "client-certificate-data": b64(pki / f"{cert_name}.crt"),
                "client-key-data": b64(pki / f"{cert_name}.key"),
            },
        }],
        "contexts": [{"name": context, "context": {"cluster": context, "user": user}}],
        "current-context": context,
    }  # fmt: skip


def _write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def write_kubeconfigs(layout: Layout) -> None:
    users = {
        "admin": "admin",
        "controller-manager": "controller-manager",
        "scheduler": "scheduler",
        "kubelet": "kubelet-client",
        "kube-proxy": "kube-proxy",
        "coredns": "coredns",
    }
    context = f"kubeloop-{layout.name}"
    for name, cert in users.items():
        # The admin kubeconfig is merged into the user's own: every name in it is
        # kubeloop's, so it never replaces a user's "admin" entry.
        user = context if name == "admin" else name
        config = kubeconfig(layout, user, cert, context=context)
        _write(layout.config / f"{name}.kubeconfig", yaml.safe_dump(config), 0o600)


def cni_bin_dir() -> str:
    for candidate in CNI_BIN_DIRS:
        if (Path(candidate) / "bridge").exists():
            return candidate
    return CNI_BIN_DIRS[0]


def write_cni_config(layout: Layout) -> None:
    conflist = {
        "cniVersion": "0.4.0",
        "name": layout.cni_network,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": True,
                # A pod must reach itself through its own Service.
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(layout.cni_ipam_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    _write(layout.cni_conf_dir / "10-kubeloop.conflist", json.dumps(conflist, indent=2))


CAP_SYS_RESOURCE = 24


def can_lower_oom_score() -> bool:
    """Whether this process may set a negative oom_score_adj (needs CAP_SYS_RESOURCE).

    Some VMs and containers withhold the capability even from root; runc then fails every
    pod sandbox with "can't get final child's PID from pipe" unless containerd is told to
    keep scores at or above its own.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1)
    return True


def write_containerd_config(layout: Layout) -> Path:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    mirrors = f"{cri}.registry.mirrors"
    registry = f"http://localhost:{layout.ports.registry}"
    text = f"""version = 2
root = "{layout.containerd_root}"
state = "{layout.containerd_state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{layout.containerd_socket}"

[ttrpc]
  address = "{layout.containerd_socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{layout.state_root}/opt"

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  netns_mounts_under_state_dir = true
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  restrict_oom_score_adj = {str(not can_lower_oom_score()).lower()}

[{cri}.cni]
  bin_dir = "{cni_bin_dir()}"
  conf_dir = "{layout.cni_conf_dir}"

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

# Images come from the cluster's own registry; Docker Hub names resolve there too, so
# that "python:3.11-slim" means the image kubeloop seeded.
[{mirrors}."localhost:{layout.ports.registry}"]
  endpoint = ["{registry}"]
[{mirrors}."docker.io"]
  endpoint = ["{registry}"]
"""
    return _write(layout.config / "containerd.toml", text)


def upstream_dns_servers() -> list[str]:
    """The host's resolvers, skipping loopback ones (a stub resolver on 127.0.0.53 would
    send pods' queries to themselves)."""
    servers: list[str] = []
    for candidate in ("/run/systemd/resolve/resolv.conf", "/etc/resolv.conf"):
        path = Path(candidate)
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver" and not parts[1].startswith("127."):
                servers.append(parts[1])
        if servers:
            break
    return servers


def host_resolv_conf(layout: Layout) -> Path:
    """A resolv.conf for the kubelet to base pods' DNS on, free of loopback servers."""
    lines = [f"nameserver {s}" for s in upstream_dns_servers()] or ["nameserver 10.244.0.1"]
    return _write(layout.config / "resolv.conf", "\n".join(lines) + "\n")


def write_corefile(layout: Layout) -> Path:
    upstream = " ".join(upstream_dns_servers())
    forward = f"    forward . {upstream}\n" if upstream else ""
    text = f""".:53 {{
    bind {NODE_IP}
    errors
    health 127.0.0.1:{layout.ports.coredns_health}
    ready 127.0.0.1:{layout.ports.coredns_ready}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {layout.config / "coredns.kubeconfig"} kubeloop-{layout.name}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
{forward}    cache 30
    loop
    reload
    loadbalance
}}
"""
    return _write(layout.config / "Corefile", text)


def write_kubelet_config(layout: Layout) -> Path:
    pki = layout.pki
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": "0.0.0.0",
        "port": layout.ports.kubelet,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": layout.ports.kubelet_healthz,
        "readOnlyPort": 0,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(pki / "kubelet.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet.key"),
        "clusterDomain": "cluster.local",
        "clusterDNS": [DNS_SERVICE_IP],
        "resolvConf": str(layout.config / "resolv.conf"),
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": layout.cgroup_parent,
        "podLogsDir": str(layout.state_root / "pod-logs"),
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "failSwapOn": False,
        "failCgroupV1": False,
        "serializeImagePulls": False,
        "podCIDR": POD_CIDR,
        "maxPods": 250,
        # Development disks are often small or nearly full: only evict when truly out.
        "evictionHard": {
            "memory.available": "50Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 99,
        "imageGCLowThresholdPercent": 98,
        "nodeStatusUpdateFrequency": "4s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
        "protectKernelDefaults": False,
        "makeIPTablesUtilChains": True,
        "shutdownGracePeriod": "0s",
    }
    return _write(layout.config / "kubelet.yaml", yaml.safe_dump(config))


def write_proxy_config(layout: Layout) -> Path:
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(layout.config / "kube-proxy.kubeconfig")},
        "mode": "iptables",
        "clusterCIDR": POD_CIDR,
        "hostnameOverride": layout.node_name,
        "bindAddress": "0.0.0.0",
        "healthzBindAddress": f"127.0.0.1:{layout.ports.proxy_healthz}",
        "metricsBindAddress": f"127.0.0.1:{layout.ports.proxy_metrics}",
        # Leave the host's conntrack settings alone (many hosts forbid changing the table
        # size, and delete could not tell the timeouts' old values): 0 means "as is".
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        # No NodePorts on 127.0.0.1: they need route_localnet=1 on every interface, a host
        # change that lets martian packets to loopback through.
        "iptables": {
            "masqueradeAll": False,
            "syncPeriod": "10s",
            "minSyncPeriod": "0s",
            "localhostNodePorts": False,
        },
    }
    return _write(layout.config / "kube-proxy.yaml", yaml.safe_dump(config))


def write_registry_config(layout: Layout) -> Path:
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(layout.registry_data)},
            "delete": {"enabled": True},
        },
        "http": {"addr": f"127.0.0.1:{layout.ports.registry}"},
    }
    return _write(layout.config / "registry.yaml", yaml.safe_dump(config))


def write_all(layout: Layout) -> None:
    write_kubeconfigs(layout)
    write_cni_config(layout)
    write_containerd_config(layout)
    host_resolv_conf(layout)
    write_corefile(layout)
    write_kubelet_config(layout)
    write_proxy_config(layout)
    write_registry_config(layout)
