"""The native cluster's firewall: the rules it adds (pod forwarding, the registry guard,
refusing unprogrammed Service addresses), reading kube-proxy's rules, telling the
Kubernetes components' chains from other tools', and removing exactly what is ours.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Callable

from kubeloop import ui
from kubeloop.cluster.native.changes import owns_kube_chains
from kubeloop.cluster.native.layout import POD_CIDR, SERVICE_CIDR, Layout
from kubeloop.core import WaitTimeout, wait_until
from kubeloop.proc import run

FORWARD_CHAIN = "KUBELOOP-FORWARD"
OUTPUT_CHAIN = "KUBELOOP-OUTPUT"
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


# --- our rules --------------------------------------------------------------------------


async def ensure_forward_rules(layout: Layout) -> None:
    """Accept pod traffic in FORWARD (bridged packets pass iptables through br_netfilter,
    and a Docker engine sets the FORWARD policy to DROP), keep traffic for unprogrammed
    Service addresses, from pods or from the host, on this machine, and keep non-root
    users off the registry."""
    refuse = _unprogrammed_service_rules()
    accept = [[direction, POD_CIDR, "-j", "ACCEPT"] for direction in ("-s", "-d")]
    await _ensure_chain(FORWARD_CHAIN, refuse + accept, "FORWARD")
    guard = registry_guard_rule(layout.ports.registry)
    await _ensure_chain(OUTPUT_CHAIN, [guard, *refuse], "OUTPUT")


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


# --- kube-proxy's rules -----------------------------------------------------------------


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

    async def routed() -> bool:
        dump = await run(["iptables-save", "-t", "nat"], check=False)
        missing = addresses - programmed_service_addresses(dump.stdout)
        if not missing or dump.returncode != 0:
            return True
        on_wait(f"kube-proxy: routing {', '.join(sorted(missing))}")
        return False

    with contextlib.suppress(WaitTimeout):
        await wait_until(routed, timeout, 0.05, "kube-proxy to route the Services")


# --- the Kubernetes components' chains --------------------------------------------------


def is_kube_component_chain(chain: str) -> bool:
    return chain in KUBE_FIXED_CHAINS or _KUBE_HASHED_CHAIN.fullmatch(chain) is not None


def kube_component_chains(save_output: str) -> list[str]:
    """The kubelet's and kube-proxy's chains in an ``iptables-save`` dump."""
    found = {line[1:].split()[0] for line in save_output.splitlines() if line.startswith(":")}
    return sorted(c for c in found if is_kube_component_chain(c))


async def host_kube_chains() -> list[str]:
    """The kubelet's and kube-proxy's chains on this host (IPv4 and IPv6)."""
    found: list[str] = []
    for save in ("iptables-save", "ip6tables-save"):
        if shutil.which(save):
            found += kube_component_chains((await run([save], check=False)).stdout)
    return found


# --- removal ----------------------------------------------------------------------------


def iptables_cleanup_script(save_output: str, network: str, kube_chains: bool) -> str | None:
    """An ``iptables-restore --noflush`` script removing the cluster's rules and chains.

    Ours: ``KUBELOOP-*``; when ``kube_chains`` (this cluster made them), the chains of the
    kubelet and kube-proxy (never other ``KUBE-*`` chains); chains that rules tagged with
    our CNI network's name jump to, and portmap's shared ``CNI-HOSTPORT-*`` chains once
    they hold nothing else. Rules of other tools are left untouched.
    """
    out: list[str] = []
    for table_name, table_chains in _parse_save(save_output):
        ours, deletions = _ours_in_table(table_chains, network, kube_chains)
        if not ours and not deletions:
            continue
        out.append(f"*{table_name}")
        out += deletions
        out += [f"-F {c}" for c in sorted(ours) if c in table_chains]
        out += [f"-X {c}" for c in sorted(ours) if c in table_chains]
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else None


def _parse_save(save_output: str) -> list[tuple[str, dict[str, list[str]]]]:
    """``iptables-save`` output as [(table, {chain: its -A rules})], in order."""
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
    return order


def _ours_in_table(
    table_chains: dict[str, list[str]], network: str, kube_chains: bool
) -> tuple[set[str], list[str]]:
    """(our chains in one table, ``-D`` lines for our rules in chains that are not)."""
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
    return ours, deletions


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
