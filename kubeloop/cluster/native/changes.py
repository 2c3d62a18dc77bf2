"""What a native cluster changes on the host (kernel settings, /dev/kmsg, mount
propagation, the pod bridge, its cgroup parent): each original value is recorded before
the change, so that ``delete`` can put the host back as it was.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from kubeloop import ui
from kubeloop.cluster.native.layout import BRIDGE, NODE_IP, Layout
from kubeloop.proc import run

SYSCTLS = {
    "net/ipv4/ip_forward": "1",
    "net/bridge/bridge-nf-call-iptables": "1",
    "net/bridge/bridge-nf-call-ip6tables": "1",
}
# Kernel settings the kubelet changes on start (setupKernelTunables): recorded before it
# runs, so that delete puts back what the host had.
KUBELET_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
KUBE_CHAINS_KEY = "iptables:kube-chains"
BR_NETFILTER_KEY = "module:br_netfilter"
CGROUP_ROOT = Path("/sys/fs/cgroup")
SYS_ROOT = Path("/sys")


def _changes_file(layout: Layout) -> Path:
    return layout.state_root / "host-changes.json"


def load_changes(layout: Layout) -> dict[str, str]:
    """The recorded changes: ``{key: original value}``."""
    try:
        data = json.loads(_changes_file(layout).read_text())
        return {str(k): str(v) for k, v in data.items()}
    except (OSError, ValueError):
        return {}


def record(layout: Layout, key: str, original: str) -> None:
    """Remember a host setting's original value the first time we change it."""
    changes = load_changes(layout)
    if key not in changes:
        changes[key] = original
        _changes_file(layout).write_text(json.dumps(changes, indent=1))


def owns_kube_chains(layout: Layout) -> bool:
    """Whether this cluster's kubelet and kube-proxy made the host's KUBE-* chains: the
    record says so, or a cluster made by a kubeloop older than the record exists."""
    return KUBE_CHAINS_KEY in load_changes(layout) or layout.marker.exists()


def _root_propagation() -> str:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == "/":
            optional = fields[6 : fields.index("-")]
            return "shared" if any(f.startswith("shared:") for f in optional) else "private"
    return "private"


async def prepare(layout: Layout) -> None:
    """Make the host ready; every change is recorded before it is made. (The firewall
    rules are iptables.ensure_forward_rules' job.)"""
    layout.state_root.mkdir(parents=True, exist_ok=True)
    # Past the preflight, which refuses another Kubernetes' chains: from here on the
    # kubelet's and kube-proxy's chains are this cluster's, and delete removes them.
    record(layout, KUBE_CHAINS_KEY, "absent")
    if not Path("/proc/sys/net/bridge").exists():
        record(layout, BR_NETFILTER_KEY, "absent")
        await run(["modprobe", "br_netfilter"], check=False)
    _set_sysctls(layout)
    if not Path("/dev/kmsg").exists():  # some containers and VMs lack it; kubelet needs it
        record(layout, "kmsg-link", "absent")
        os.symlink("/dev/console", "/dev/kmsg")
    if _root_propagation() != "shared":  # kubelet's mount propagation needs it
        record(layout, "root-propagation", _root_propagation())
        await run(["mount", "--make-rshared", "/"])
    await _ensure_bridge()
    for directory in cgroup_dirs(layout):
        directory.mkdir(exist_ok=True)


def _set_sysctls(layout: Layout) -> None:
    for key in KUBELET_SYSCTLS:
        path = Path("/proc/sys") / key
        if path.exists():
            record(layout, f"sysctl:{key}", path.read_text().strip())
    for key, value in SYSCTLS.items():
        path = Path("/proc/sys") / key
        if not path.exists():
            continue
        current = path.read_text().strip()
        if current != value:
            record(layout, f"sysctl:{key}", current)
            path.write_text(value)


async def _ensure_bridge() -> None:
    """Create the pod bridge up front so components can bind to the node address."""
    if not Path(f"/sys/class/net/{BRIDGE}").exists():
        await run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    addresses = (await run(["ip", "-o", "-4", "addr", "show", "dev", BRIDGE])).stdout
    if f"{NODE_IP}/" not in addresses:
        await run(["ip", "addr", "add", f"{NODE_IP}/16", "dev", BRIDGE])
    await run(["ip", "link", "set", BRIDGE, "up"])


def cgroup_version() -> int:
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return 2
    return 1


def cgroup_dirs(layout: Layout) -> list[Path]:
    """The cluster's cgroup parent in each hierarchy (one on cgroup v2)."""
    parent = layout.cgroup_parent.lstrip("/")
    if cgroup_version() == 2:
        return [CGROUP_ROOT / parent]
    return [
        hierarchy / parent
        for hierarchy in CGROUP_ROOT.iterdir()
        if hierarchy.is_dir() and not hierarchy.is_symlink() and hierarchy.name != "unified"
    ]


async def restore(layout: Layout) -> None:
    """Put back every recorded host setting (the module last: its settings go with it)."""
    changes = load_changes(layout)
    for key, original in changes.items():
        if key.startswith("sysctl:"):
            path = Path("/proc/sys") / key.removeprefix("sysctl:")
            try:
                if path.exists() and path.read_text().strip() != original:
                    path.write_text(original)
            except OSError as exc:
                ui.warn(f"could not restore {key} to {original}: {exc}")
        elif key == "kmsg-link" and Path("/dev/kmsg").is_symlink():
            Path("/dev/kmsg").unlink()
        elif key == "root-propagation" and original == "private":
            await run(["mount", "--make-rprivate", "/"], check=False)
    if BR_NETFILTER_KEY in changes:
        user = br_netfilter_user(SYS_ROOT)
        if user is None:
            await run(["modprobe", "-r", "br_netfilter"], check=False)
        elif user != "not loaded":
            ui.info(f"br_netfilter stays loaded: {user} uses it")


def br_netfilter_user(sys_root: Path) -> str | None:
    """What keeps the br_netfilter module we loaded from being unloaded, or None when
    nothing does: another module holding it, or another bridge (a Docker engine's relies
    on it without holding it)."""
    module = sys_root / "module" / "br_netfilter"
    if not (module / "refcnt").exists():
        return "not loaded"  # gone already, or built into the kernel
    holders = sorted(p.name for p in (module / "holders").glob("*"))
    if holders or (module / "refcnt").read_text().strip() != "0":
        return f"module {', '.join(holders) or '(unnamed)'}"
    bridges = sorted(p.parent.name for p in (sys_root / "class" / "net").glob("*/bridge"))
    others = [b for b in bridges if b != BRIDGE]
    return f"bridge {', '.join(others)}" if others else None
