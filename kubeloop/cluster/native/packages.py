"""The Debian packages behind the host commands a native cluster runs."""

from __future__ import annotations

import shutil
from pathlib import Path

from kubeloop import apt
from kubeloop.cluster.native.configs import CNI_BIN_DIRS
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


def missing_packages() -> list[str]:
    missing = apt.missing(HOST_PACKAGES)
    if not any((Path(d) / "bridge").exists() for d in CNI_BIN_DIRS):
        missing.append(CNI_PACKAGE)
    return sorted(set(missing))


async def ensure_packages(quiet: bool = False) -> None:
    """Install the missing host packages; idempotent and quick when all are present."""
    needed = missing_packages()
    await apt.install(needed, quiet)
    # Debian's docker-registry starts a service with its own config on :5000 where init
    # systems run; ours owns that port.
    if "docker-registry" in needed and shutil.which("service"):
        await run(["service", "docker-registry", "stop"], check=False, timeout=30)
