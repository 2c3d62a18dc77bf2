"""The host side of a native cluster: what it needs (preflight), what it changes
(recorded, so ``delete`` can put it back), and the sweep that removes every trace.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import platform
import re
import shutil
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kubeloop import ui
from kubeloop.cluster.native.configs import CNI_BIN_DIRS
from kubeloop.cluster.native.layout import BRIDGE, NODE_IP, POD_CIDR, SERVICE_CIDR, Layout
from kubeloop.errors import KubeloopError, PreflightError
from kubeloop.proc import run

# Debian package providing each host command the native cluster runs.
HOST_PACKAGES = {
    "containerd": "containerd",
    "runc": "runc",
    "docker-registry": "docker-registry",
    "iptables": "iptables",
    "ip": "iproute2",
    "conntrack": "conntrack",
    "mount": "mount",
}
CNI_PACKAGE = "containernetworking-plugins"
CGROUP_V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "pids", "devices", "freezer")
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
CGROUP_ROOT = Path("/sys/fs/cgroup")
SYS_ROOT = Path("/sys")


@dataclass(frozen=True)
class Problem:
    what: str
    fix: str


# --- packages ---------------------------------------------------------------------------


def missing_packages() -> list[str]:
    missing = [pkg for cmd, pkg in HOST_PACKAGES.items() if shutil.which(cmd) is None]
    if not any((Path(d) / "bridge").exists() for d in CNI_BIN_DIRS):
        missing.append(CNI_PACKAGE)
    return sorted(set(missing))


async def ensure_packages(extra: tuple[str, ...] = (), quiet: bool = False) -> None:
    """Install missing Debian packages (apt-get, as root); idempotent and quick when
    everything is present."""
    needed = missing_packages() + [p for p in extra if shutil.which(p) is None]
    if not needed:
        return
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        raise KubeloopError(
            f"missing host packages: {', '.join(needed)}",
            f"install them with your package manager (Debian: apt-get install {' '.join(needed)})",
        )
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    with ui.step(f"installing {', '.join(needed)}", quiet) as progress:
        # An install stopped half-way (Ctrl-C) leaves dpkg asking for this first.
        await run(["dpkg", "--configure", "-a"], env=env, check=False, timeout=600)
        progress.detail("apt-get update")
        await run([apt, "update", "-q"], env=env, timeout=600)
        progress.detail("apt-get install")
        await run(
            [apt, "install", "-y", "-q", "--no-install-recommends", *needed], env=env, timeout=1200
        )
    # Debian's docker-registry starts a service with its own config on :5000 where init
    # systems run; ours owns that port.
    if "docker-registry" in needed and shutil.which("service"):
        await run(["service", "docker-registry", "stop"], check=False, timeout=30)


# --- preflight ------------------------------------------------------------------------


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


def _port_owner(port: int) -> str:
    """Best effort: the command holding a TCP port, to put in the error message."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                inode = fields[9]
                break
    if inode is None:
        return "another process"
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            if os.readlink(fd) == f"socket:[{inode}]":
                pid = fd.parent.parent.name
                return f"'{Path(f'/proc/{pid}/comm').read_text().strip()}' (pid {pid})"
        except OSError:
            continue
    return "another process"


def cgroup_version() -> int:
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return 2
    return 1


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
        if _port_in_use(port):
            problems.append(Problem(
                f"port {port} ({name.replace('_', ' ')}) is in use by {_port_owner(port)}",
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


def check(layout: Layout) -> None:
    problems = preflight(layout) + missing_commands()
    if problems:
        raise PreflightError([(p.what, p.fix) for p in problems])


def programmed_service_addresses(nat_rules: str) -> set[str]:
    """Cluster IPs that kube-proxy's ``KUBE-SERVICES`` chain routes, from
    ``iptables-save -t nat``: a Service answers from the host once its address is here."""
    found = set()
    for line in nat_rules.splitlines():
        parts = line.split()
        if parts[:2] == ["-A", "KUBE-SERVICES"] and "-d" in parts:
            found.add(parts[parts.index("-d") + 1].removesuffix("/32"))
    return found


async def wait_services_programmed(addresses: set[str], timeout: float = 15.0,
                                   on_wait: Callable[[str], None] = lambda _: None) -> None:  # fmt: skip
    """Wait until kube-proxy routes every one of ``addresses``: it programs a Service a
    moment after the endpoints are ready, and a client's first request in that moment is
    refused. Gives up quietly after ``timeout``: the rollout itself is done."""
    if not addresses:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        dump = await run(["iptables-save", "-t", "nat"], check=False)
        missing = addresses - programmed_service_addresses(dump.stdout)
        if not missing or dump.returncode != 0 or loop.time() > deadline:
            return
        on_wait(f"kube-proxy: routing {', '.join(sorted(missing))}")
        await asyncio.sleep(0.05)


# --- host changes -----------------------------------------------------------------------


def _changes_file(layout: Layout) -> Path:
    return layout.state_root / "host-changes.json"


def _load_changes(layout: Layout) -> dict[str, str]:
    try:
        data = json.loads(_changes_file(layout).read_text())
        return {str(k): str(v) for k, v in data.items()}
    except (OSError, ValueError):
        return {}


def _record(layout: Layout, key: str, original: str) -> None:
    """Remember a host setting's original value the first time we change it."""
    changes = _load_changes(layout)
    if key not in changes:
        changes[key] = original
        _changes_file(layout).write_text(json.dumps(changes, indent=1))


def _root_propagation() -> str:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == "/":
            optional = fields[6 : fields.index("-")]
            return "shared" if any(f.startswith("shared:") for f in optional) else "private"
    return "private"


async def prepare(layout: Layout) -> None:
    """Make the host ready; every change is recorded before it is made."""
    layout.state_root.mkdir(parents=True, exist_ok=True)
    # Past the preflight, which refuses another Kubernetes' chains: from here on the
    # kubelet's and kube-proxy's chains are this cluster's, and delete removes them.
    _record(layout, KUBE_CHAINS_KEY, "absent")
    if not Path("/proc/sys/net/bridge").exists():
        _record(layout, BR_NETFILTER_KEY, "absent")
        await run(["modprobe", "br_netfilter"], check=False)
    for key in KUBELET_SYSCTLS:
        path = Path("/proc/sys") / key
        if path.exists():
            _record(layout, f"sysctl:{key}", path.read_text().strip())
    for key, value in SYSCTLS.items():
        path = Path("/proc/sys") / key
        if not path.exists():
            continue
        current = path.read_text().strip()
        if current != value:
            _record(layout, f"sysctl:{key}", current)
            path.write_text(value)
    if not Path("/dev/kmsg").exists():  # some containers and VMs lack it; kubelet needs it
        _record(layout, "kmsg-link", "absent")
        os.symlink("/dev/console", "/dev/kmsg")
    if _root_propagation() != "shared":  # kubelet's mount propagation needs it
        _record(layout, "root-propagation", _root_propagation())
        await run(["mount", "--make-rshared", "/"])
    await _ensure_bridge()
    await _ensure_forward_rules(layout)
    _ensure_cgroup_parent(layout)


FORWARD_CHAIN = "KUBELOOP-FORWARD"
OUTPUT_CHAIN = "KUBELOOP-OUTPUT"


async def _ensure_chain(chain: str, rules: list[list[str]], parent: str) -> None:
    """Create ``chain`` holding ``rules`` in that order and jump to it from the top of
    ``parent``; idempotent, and it repairs a chain or jump made by an older kubeloop."""
    if (await run(["iptables", "-t", "filter", "-S", chain], check=False)).returncode:
        await run(["iptables", "-t", "filter", "-N", chain])
    for position, rule in enumerate(rules, start=1):
        if (await run(["iptables", "-C", chain, *rule], check=False)).returncode == 0:
            continue
        await run(["iptables", "-I", chain, str(position), *rule])
    listing = (await run(["iptables", "-t", "filter", "-S", parent])).stdout
    if jump_is_placed(listing, parent, chain):
        return
    # Absent, or after a rule that may accept first (older kubeloops appended to OUTPUT,
    # and a host firewall's "accept loopback" would then skip the registry guard).
    while (await run(["iptables", "-D", parent, "-j", chain], check=False)).returncode == 0:
        pass
    await run(["iptables", "-I", parent, "1", "-j", chain])


def jump_is_placed(listing: str, parent: str, chain: str) -> bool:
    """Whether ``parent`` (an ``iptables -S`` listing) jumps to ``chain`` before any rule
    but the Kubernetes components' own jumps, which accept nothing themselves."""
    for line in listing.splitlines():
        parts = line.split()
        if parts[:2] != ["-A", parent]:
            continue
        target = next((parts[i + 1] for i, p in enumerate(parts[:-1]) if p in ("-j", "-g")), "")
        if target == chain:
            return True
        if not target.startswith("KUBE-"):
            return False
    return False


def _unprogrammed_service_rules() -> list[list[str]]:
    # A packet still addressed to the service range after kube-proxy's DNAT is for a
    # Service kube-proxy has not programmed yet (it lags the API by up to a second or two)
    # or one that does not exist. Without a rule it follows the default route off the
    # machine, where a gateway may even answer it (seen: an egress proxy's 404). Refusing
    # it keeps cluster traffic on the host and makes a client's retry loop see "refused".
    return [
        ["-d", SERVICE_CIDR, "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"],
        ["-d", SERVICE_CIDR, "-j", "REJECT"],
    ]


def registry_guard_rule(port: int) -> list[str]:
    """The rule keeping every user but root off the registry: it is the docker.io mirror
    pods pull from, so whoever pushes to it chooses what pods run. containerd, dockerd,
    buildah and kubeloop's own pushes run as root; the registry listens on loopback only."""
    return ["-d", "127.0.0.1/32", "-p", "tcp", "--dport", str(port),
            "-m", "owner", "!", "--uid-owner", "0",
            "-j", "REJECT", "--reject-with", "tcp-reset"]  # fmt: skip


async def _ensure_forward_rules(layout: Layout) -> None:
    """Accept pod traffic in FORWARD (bridged packets pass iptables through br_netfilter,
    and a Docker engine sets the FORWARD policy to DROP), keep traffic for unprogrammed
    Service addresses, from pods or from the host, on this machine, and keep non-root
    users off the registry."""
    refuse = _unprogrammed_service_rules()
    accept = [[direction, POD_CIDR, "-j", "ACCEPT"] for direction in ("-s", "-d")]
    await _ensure_chain(FORWARD_CHAIN, refuse + accept, "FORWARD")
    guard = registry_guard_rule(layout.ports.registry)
    await _ensure_chain(OUTPUT_CHAIN, [guard, *refuse], "OUTPUT")


async def _ensure_bridge() -> None:
    """Create the pod bridge up front so components can bind to the node address."""
    if not Path(f"/sys/class/net/{BRIDGE}").exists():
        await run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    addresses = (await run(["ip", "-o", "-4", "addr", "show", "dev", BRIDGE])).stdout
    if f"{NODE_IP}/" not in addresses:
        await run(["ip", "addr", "add", f"{NODE_IP}/16", "dev", BRIDGE])
    await run(["ip", "link", "set", BRIDGE, "up"])


def _cgroup_dirs(layout: Layout) -> list[Path]:
    parent = layout.cgroup_parent.lstrip("/")
    if cgroup_version() == 2:
        return [CGROUP_ROOT / parent]
    return [
        hierarchy / parent
        for hierarchy in CGROUP_ROOT.iterdir()
        if hierarchy.is_dir() and not hierarchy.is_symlink() and hierarchy.name != "unified"
    ]


def _ensure_cgroup_parent(layout: Layout) -> None:
    for directory in _cgroup_dirs(layout):
        directory.mkdir(exist_ok=True)


async def restore(layout: Layout) -> None:
    """Put back every recorded host setting (the module last: its settings go with it)."""
    changes = _load_changes(layout)
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


# --- ownership of the Kubernetes chains -------------------------------------------------

KUBE_CHAINS_KEY = "iptables:kube-chains"
BR_NETFILTER_KEY = "module:br_netfilter"
# The chains the kubelet and kube-proxy (iptables mode) make. Another Kubernetes on the
# host makes the same ones, which is why create refuses to share them; other KUBE-*
# chains (kube-router's KUBE-ROUTER-*, KUBE-POD-FW-*...) are never ours.
KUBE_FIXED_CHAINS = frozenset({
    "KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ",
    "KUBE-MARK-DROP", "KUBE-FORWARD", "KUBE-EXTERNAL-SERVICES", "KUBE-PROXY-FIREWALL",
    "KUBE-FIREWALL", "KUBE-PROXY-CANARY", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT",
    "KUBE-LOAD-BALANCER",
})  # fmt: skip
_KUBE_HASHED_CHAIN = re.compile(r"KUBE-(SVC|SVL|SEP|EXT|FW|XLB)-[A-Z0-9]{16}")


def is_kube_component_chain(chain: str) -> bool:
    return chain in KUBE_FIXED_CHAINS or _KUBE_HASHED_CHAIN.fullmatch(chain) is not None


def owns_kube_chains(layout: Layout) -> bool:
    """Whether this cluster's kubelet and kube-proxy made the host's KUBE-* chains: the
    record says so, or a cluster made by a kubeloop older than the record exists."""
    return KUBE_CHAINS_KEY in _load_changes(layout) or layout.marker.exists()


def kube_component_chains(save_output: str) -> list[str]:
    """The kubelet's and kube-proxy's chains in an ``iptables-save`` dump."""
    found = {line[1:].split()[0] for line in save_output.splitlines() if line.startswith(":")}
    return sorted(c for c in found if is_kube_component_chain(c))


async def foreign_kube_chains(layout: Layout) -> list[Problem]:
    """Refuse a host where another Kubernetes' kubelet or kube-proxy made chains: ours
    would rewrite them, and delete could not tell them apart."""
    if owns_kube_chains(layout):
        return []
    found: list[str] = []
    for save in ("iptables-save", "ip6tables-save"):
        if shutil.which(save):
            found += kube_component_chains((await run([save], check=False)).stdout)
    if not found:
        return []
    names = ", ".join(sorted(set(found))[:4])
    return [Problem(
        f"iptables already holds another Kubernetes' chains ({names}); the native cluster's "
        "kubelet and kube-proxy would take them over",
        "stop that Kubernetes and remove its rules (k3s: k3s-killall.sh; see them with "
        "iptables-save | grep KUBE-), or use it: kubeloop cluster create --provider existing",
    )]  # fmt: skip


# --- sweep ------------------------------------------------------------------------------


def cgroup_processes(layout: Layout) -> set[int]:
    pids: set[int] = set()
    for directory in _cgroup_dirs(layout):
        if not directory.exists():
            continue
        for folder, _dirs, files in os.walk(directory, onerror=lambda _e: None):
            if "cgroup.procs" not in files:
                continue
            try:
                pids.update(int(p) for p in Path(folder, "cgroup.procs").read_text().split())
            except OSError:
                continue  # removed while we looked
    return pids


async def kill_pod_processes(layout: Layout, timeout: float = 5.0) -> None:
    """Kill every process in the cluster's pods, found through their cgroups."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while pids := cgroup_processes(layout):
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if loop.time() > deadline:
            raise KubeloopError(f"pod processes would not die: {sorted(pids)}")
        await asyncio.sleep(0.05)


def processes_mentioning(*needles: str) -> list[int]:
    """Pids whose command line names one of ``needles`` (e.g. our containerd socket)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(n in text for n in needles) and int(cmdline.parent.name) != os.getpid():
            found.append(int(cmdline.parent.name))
    return found


async def kill_processes(pids: list[int], timeout: float = 3.0) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        await asyncio.sleep(0.05)


def mounts_under(*roots: Path) -> list[str]:
    found = []
    prefixes = [str(r).rstrip("/") + "/" for r in roots]
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4].replace("\\040", " ")
        if any(target.startswith(p) or target + "/" == p for p in prefixes):
            found.append(target)
    return found


def unmount_all(*roots: Path) -> None:
    """Detach every mount below ``roots``, deepest first (rootfs, volumes, netns)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    mnt_detach = 2
    for _ in range(5):
        targets = sorted(set(mounts_under(*roots)), key=lambda t: t.count("/"), reverse=True)
        if not targets:
            return
        for target in targets:
            libc.umount2(target.encode(), mnt_detach)


async def remove_network(layout: Layout) -> None:
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        for port in Path(f"/sys/class/net/{BRIDGE}/brif").iterdir():
            await run(["ip", "link", "delete", port.name], check=False)
        await run(["ip", "link", "delete", BRIDGE], check=False)
    results = Path("/var/lib/cni/results")
    if results.exists():
        for cached in results.glob(f"{layout.cni_network}-*"):
            cached.unlink(missing_ok=True)


_COMMENT = re.compile(r'--comment "?([^"]*(?:\\"[^"]*)*)"?')


def iptables_cleanup_script(save_output: str, network: str, kube_chains: bool) -> str | None:
    """An ``iptables-restore --noflush`` script removing the cluster's rules and chains.

    Ours: ``KUBELOOP-*``; when ``kube_chains`` (this cluster made them), the chains of the
    kubelet and kube-proxy (never other ``KUBE-*`` chains); chains that rules tagged with
    our CNI network's name jump to, and portmap's shared ``CNI-HOSTPORT-*`` chains once
    they hold nothing else. Rules of other tools are left untouched.
    """
    out: list[str] = []
    table = None
    chains: dict[str, list[str]] = {}
    order: list[tuple[str, dict[str, list[str]]]] = []
    for line in save_output.splitlines():
        if line.startswith("*"):
            table = line[1:]
            chains = {}
            order.append((table, chains))
        elif line.startswith(":") and table:
            chains[line[1:].split()[0]] = []
        elif line.startswith("-A ") and table:
            chains.setdefault(line.split()[1], []).append(line)
    for table_name, table_chains in order:
        ours = {
            c for c in table_chains
            if c.startswith("KUBELOOP-") or (kube_chains and is_kube_component_chain(c))
        }  # fmt: skip
        tagged = f'name: \\"{network}\\"'
        for rules in table_chains.values():
            for rule in rules:
                if tagged in rule and " -j " in rule:
                    target = rule.split(" -j ")[1].split()[0]
                    if target.startswith("CNI-"):
                        ours.add(target)
        for chain in table_chains:
            if chain.startswith("CNI-DN-") or chain.startswith("CNI-HOSTPORT-"):
                rules = table_chains[chain]
                if all(tagged in r or _jumps_to_ours(r, ours) for r in rules):
                    ours.add(chain)
        deletions = [
            rule.replace("-A ", "-D ", 1)
            for chain, rules in table_chains.items()
            if chain not in ours
            for rule in rules
            if tagged in rule or _jumps_to_ours(rule, ours)
        ]
        if not ours and not deletions:
            continue
        out.append(f"*{table_name}")
        out += deletions
        out += [f"-F {c}" for c in sorted(ours) if c in table_chains]
        out += [f"-X {c}" for c in sorted(ours) if c in table_chains]
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else None


def _jumps_to_ours(rule: str, ours: set[str]) -> bool:
    return any(flag in rule and rule.split(flag)[1].split()[0] in ours for flag in (" -j ", " -g "))


async def remove_iptables(layout: Layout) -> None:
    kube_chains = owns_kube_chains(layout)
    for save, restore_cmd in (("iptables-save", "iptables-restore"),
                              ("ip6tables-save", "ip6tables-restore")):  # fmt: skip
        if shutil.which(save) is None:
            continue
        dump = await run([save], check=False)
        script = iptables_cleanup_script(dump.stdout, layout.cni_network, kube_chains)
        if script:
            result = await run([restore_cmd, "--noflush"], input=script.encode(), check=False)
            if result.returncode != 0:
                ui.warn(f"{restore_cmd} could not remove every rule: {result.stderr.strip()}")


def remove_cgroups(layout: Layout) -> None:
    """Remove the cluster's cgroups, deepest first. The kubelet's own clean-up may remove
    some at the same moment, so a folder that vanishes mid-walk is not an error."""
    for directory in _cgroup_dirs(layout):
        for folder, _dirs, _files in os.walk(directory, topdown=False, onerror=lambda _e: None):
            try:
                os.rmdir(folder)
            except OSError:
                pass


def leftovers(layout: Layout) -> list[str]:
    """What of the cluster is still on the host (empty after a clean delete)."""
    found: list[str] = []
    needles = (str(layout.state_root), str(layout.run_root))
    pids = processes_mentioning(*needles)
    if pids:
        found.append(f"processes {pids}")
    mounts = mounts_under(layout.state_root, layout.run_root)
    if mounts:
        found.append(f"mounts {mounts[:5]}")
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        found.append(f"network interface {BRIDGE}")
    found += [f"cgroup {d}" for d in _cgroup_dirs(layout) if d.exists()]
    found += [f"directory {p}" for p in (layout.state_root, layout.run_root) if p.exists()]
    return found
