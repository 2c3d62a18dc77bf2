"""Removing a native cluster's traces from the host: pod processes (found by cgroup),
orphans naming its directories, mounts, the bridge and veths, cgroups; and the check
that nothing is left.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from pathlib import Path

from kubeloop.cluster.native.changes import cgroup_dirs
from kubeloop.cluster.native.layout import BRIDGE, Layout
from kubeloop.core import WaitTimeout, wait_until
from kubeloop.errors import KubeloopError
from kubeloop.proc import run

MNT_DETACH = 2


def cgroup_processes(layout: Layout) -> set[int]:
    pids: set[int] = set()
    for directory in cgroup_dirs(layout):
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


def _kill(pids: set[int] | list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


async def kill_pod_processes(layout: Layout, timeout: float = 5.0) -> None:
    """Kill every process in the cluster's pods, found through their cgroups."""
    left: set[int] = set()

    def none_left() -> bool:
        left.clear()
        left.update(cgroup_processes(layout))
        _kill(left)
        return not left

    try:
        await wait_until(none_left, timeout, 0.05, "the pod processes to die")
    except WaitTimeout:
        raise KubeloopError(f"pod processes would not die: {sorted(left)}") from None


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
    """SIGKILL ``pids`` and wait up to ``timeout`` for them to go (quietly after that)."""
    _kill(pids)

    def gone() -> bool:
        return not any(Path(f"/proc/{p}").exists() for p in pids)

    with contextlib.suppress(WaitTimeout):
        await wait_until(gone, timeout, 0.05, "killed processes to go")


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
    libc = ctypes.CDLL(None, use_errno=True)
    for _ in range(5):
        targets = sorted(set(mounts_under(*roots)), key=lambda t: t.count("/"), reverse=True)
        if not targets:
            return
        for target in targets:
            libc.umount2(target.encode(), MNT_DETACH)


async def remove_network(layout: Layout) -> None:
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        for port in Path(f"/sys/class/net/{BRIDGE}/brif").iterdir():
            await run(["ip", "link", "delete", port.name], check=False)
        await run(["ip", "link", "delete", BRIDGE], check=False)
    results = Path("/var/lib/cni/results")
    if results.exists():
        for cached in results.glob(f"{layout.cni_network}-*"):
            cached.unlink(missing_ok=True)


def remove_cgroups(layout: Layout) -> None:
    """Remove the cluster's cgroups, deepest first. The kubelet's own clean-up may remove
    some at the same moment, so a folder that vanishes mid-walk is not an error."""
    for directory in cgroup_dirs(layout):
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
    found += [f"cgroup {d}" for d in cgroup_dirs(layout) if d.exists()]
    found += [f"directory {p}" for p in (layout.state_root, layout.run_root) if p.exists()]
    return found
