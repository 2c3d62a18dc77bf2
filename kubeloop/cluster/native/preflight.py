"""What a host needs before a native cluster starts on it: Linux and root, cgroup
controllers, free ports, free address ranges, the commands it runs, and no other
Kubernetes' firewall chains. Every problem comes with its fix.
"""

from __future__ import annotations

import ipaddress
import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

from kubeloop.cluster.native.changes import CGROUP_ROOT, owns_kube_chains
from kubeloop.cluster.native.iptables import host_kube_chains
from kubeloop.cluster.native.layout import BRIDGE, POD_CIDR, SERVICE_CIDR, Layout
from kubeloop.cluster.native.packages import HOST_PACKAGES
from kubeloop.errors import PreflightError
from kubeloop.proc import port_free, port_owner

CGROUP_V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "pids", "devices", "freezer")


@dataclass(frozen=True)
class Problem:
    what: str
    fix: str


def raise_if_any(problems: list[Problem]) -> None:
    if problems:
        raise PreflightError([(p.what, p.fix) for p in problems])


def preflight_basics() -> list[Problem]:
    """What no amount of fixing inside kubeloop can change: the OS and the user."""
    if platform.system() != "Linux":
        return [Problem("the native provider runs only on Linux",
                        "use --provider k3d, kind or minikube, or --provider existing")]  # fmt: skip
    if os.geteuid() != 0:
        return [Problem(
            "the native provider must run as root (it starts containerd, kubelet and iptables)",
            "run 'sudo kubeloop cluster create', or use --provider k3d/kind/minikube",
        )]  # fmt: skip
    return []


def preflight(layout: Layout) -> list[Problem]:
    problems = preflight_basics()
    if problems and platform.system() != "Linux":
        return problems
    problems += cgroup_problems(CGROUP_ROOT)
    for name, port in layout.ports.host_ports().items():
        if not port_free(port, "0.0.0.0"):
            problems.append(Problem(
                f"port {port} ({name.replace('_', ' ')}) is in use by {port_owner(port)}",
                "stop that process, or delete the cluster that holds it "
                "('kubeloop cluster list')",
            ))  # fmt: skip
    try:
        routes = Path("/proc/net/route").read_text()
    except OSError:
        routes = ""
    for conflict in route_conflicts(routes):
        problems.append(Problem(conflict, "remove that route or interface, or use a host "
                                          "where these ranges are free"))  # fmt: skip
    return problems


def cgroup_problems(root: Path) -> list[Problem]:
    """Controllers the kubelet needs that the cgroup tree at ``root`` lacks."""
    if (root / "cgroup.controllers").exists():
        controllers = (root / "cgroup.controllers").read_text().split()
        absent = [c for c in ("cpu", "memory", "pids") if c not in controllers]
        if absent:
            return [Problem(f"cgroup v2 controllers unavailable: {', '.join(absent)}",
                            "enable them in the parent cgroup's cgroup.subtree_control")]  # fmt: skip
        return []
    mounted = {p.name for p in root.iterdir()} if root.is_dir() else set()
    absent = [c for c in CGROUP_V1_CONTROLLERS if c not in mounted]
    if not absent:
        return []
    return [Problem(
        f"cgroup v1 controllers not mounted: {', '.join(absent)}",
        f"mount them, e.g. 'mkdir -p {root}/{absent[0]} && mount -t cgroup "
        f"-o {absent[0]} cgroup {root}/{absent[0]}', or boot with cgroup v2",
    )]  # fmt: skip


def route_conflicts(route_table: str) -> list[str]:
    """Routes (``/proc/net/route`` rows) inside the pod or service range: they would take
    the cluster's traffic, or the cluster would cut them off. A broader route (a VPN's
    10.0.0.0/8) is not one: the cluster's more specific routes win for its own ranges."""
    ranges = {"pod network": ipaddress.ip_network(POD_CIDR),
              "service network": ipaddress.ip_network(SERVICE_CIDR)}  # fmt: skip
    found: list[str] = []
    for row in route_table.splitlines()[1:]:
        fields = row.split()
        if len(fields) < 8 or fields[0] == BRIDGE:
            continue
        dest, mask = (ipaddress.IPv4Address(bytes.fromhex(h)[::-1]) for h in (fields[1], fields[7]))
        route = ipaddress.ip_network(f"{dest}/{mask}", strict=False)
        for what, network in ranges.items():
            if route.prefixlen >= network.prefixlen and route.overlaps(network):
                found.append(f"the {what} {network} overlaps {route}, routed on {fields[0]}")
    return found


def missing_commands() -> list[Problem]:
    return [
        Problem(f"'{cmd}' is not installed", f"apt-get install {pkg}")
        for cmd, pkg in HOST_PACKAGES.items()
        if shutil.which(cmd) is None
    ]


async def foreign_kube_chains(layout: Layout) -> list[Problem]:
    """Refuse a host where another Kubernetes' kubelet or kube-proxy made chains: ours
    would rewrite them, and delete could not tell them apart."""
    if owns_kube_chains(layout):
        return []
    found = await host_kube_chains()
    if not found:
        return []
    names = ", ".join(sorted(set(found))[:4])
    return [Problem(
        f"iptables already holds another Kubernetes' chains ({names}); the native cluster's "
        "kubelet and kube-proxy would take them over",
        "stop that Kubernetes and remove its rules (k3s: k3s-killall.sh; see them with "
        "iptables-save | grep KUBE-), or use it: kubeloop cluster create --provider existing",
    )]  # fmt: skip
