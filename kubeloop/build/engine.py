"""A Docker engine to build with: use the running one, or start Debian's on Linux."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess

from kubeloop import ui
from kubeloop.errors import KubeloopError
from kubeloop.paths import cache_dir
from kubeloop.proc import run


async def _answers() -> bool:
    if shutil.which("docker") is None:
        return False
    result = await run(
        ["docker", "info", "--format", "{{.ServerVersion}}"], check=False, timeout=10
    )
    return result.returncode == 0


async def ensure_docker_engine(quiet: bool = False) -> None:
    """Make sure ``docker build`` has an engine; start ``dockerd`` when we may.

    The engine is the user's tool, not part of a cluster: it is started once and left
    running, like a desktop Docker would be.
    """
    if await _answers():
        return
    if os.geteuid() != 0 or (shutil.which("apt-get") is None and shutil.which("dockerd") is None):
        raise KubeloopError("no Docker engine answers", "start Docker (e.g. 'sudo dockerd &')")
    if shutil.which("dockerd") is None:
        with ui.step("installing docker.io", quiet):
            env = {"DEBIAN_FRONTEND": "noninteractive"}
            await run(["apt-get", "update", "-q"], env=env, timeout=600)
            await run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "docker.io"],
                      env=env, timeout=1200)  # fmt: skip
    log = cache_dir() / "dockerd.log"
    with ui.step("starting the Docker engine", quiet), log.open("ab") as out:
        # A detached daemon that outlives us: Popen only spawns it, nothing blocks.
        subprocess.Popen(  # noqa: ASYNC220
            ["dockerd"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(300):
            if await _answers():
                return
            await asyncio.sleep(0.1)
    raise KubeloopError(f"dockerd did not start; see {log}")
