"""Installing the host commands kubeloop runs, from Debian packages (apt-get, as root).

A low module on purpose: the native cluster needs containerd and friends, base images
need debootstrap, tests need buildah; none of them should import another layer to get
a package installed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping

from kubeloop import ui
from kubeloop.errors import KubeloopError
from kubeloop.proc import run


def missing(commands: Mapping[str, str]) -> list[str]:
    """The packages (``{command: package}``) whose command is not on PATH, sorted."""
    return sorted({pkg for cmd, pkg in commands.items() if shutil.which(cmd) is None})


async def ensure_commands(commands: Iterable[str], quiet: bool = False) -> None:
    """Install each command that is not on PATH from the package of the same name."""
    await install(missing({c: c for c in commands}), quiet)


async def install(packages: list[str], quiet: bool = False) -> None:
    """Install ``packages`` with apt-get (as root); nothing to do when the list is empty.
    Without apt or root, say what to install instead."""
    if not packages:
        return
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        raise KubeloopError(
            f"missing host packages: {', '.join(packages)}",
            "install them with your package manager "
            f"(Debian: apt-get install {' '.join(packages)})",
        )
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    with ui.step(f"installing {', '.join(packages)}", quiet) as progress:
        # An install stopped half-way (Ctrl-C) leaves dpkg asking for this first.
        await run(["dpkg", "--configure", "-a"], env=env, check=False, timeout=600)
        progress.detail("apt-get update")
        await run([apt, "update", "-q"], env=env, timeout=600)
        progress.detail("apt-get install")
        await run(
            [apt, "install", "-y", "-q", "--no-install-recommends", *packages],
            env=env,
            timeout=1200,
        )
