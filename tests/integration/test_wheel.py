"""`pip install` works: the wheel carries prebuilt static agents for linux/amd64 and
linux/arm64, and an installed kubeloop syncs into a pod with no Go on PATH and an empty
cache (nothing is compiled at run time)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from kubeloop.cluster import ClusterInfo
from kubeloop.kube import Kube
from tests.integration.conftest import Env, eventually, kubectl

ROOT = Path(__file__).parents[2]
POD = {"terminationGracePeriodSeconds": 0,
       "containers": [{"name": "app", "image": "python:3.11-slim",
                       "command": ["sleep", "3600"]}]}  # fmt: skip


def build_wheel(out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out),
                    str(ROOT)], check=True, timeout=600)  # fmt: skip
    return next(out.glob("kubeloop-*.whl"))


def fresh_venv(folder: Path, wheel: Path) -> Path:
    """A venv with only the wheel installed; its dependencies are taken from the test's
    environment by a path entry (no download), which runs none of that environment's
    .pth hooks: its editable kubeloop stays out."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=120)
    python = folder / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
                   check=True, timeout=300)  # fmt: skip
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    Path(site, "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return python


def agent_path(python: Path, user_env: dict[str, str], cwd: Path) -> str:
    script = "import asyncio, kubeloop.agent as a; print(asyncio.run(a.agent_binary()))"
    return subprocess.run([str(python), "-c", script], check=True, capture_output=True,
                          text=True, env=user_env, cwd=cwd).stdout.strip()  # fmt: skip


async def test_an_installed_wheel_syncs_without_go(
    tmp_path: Path, kube: Kube, cluster: ClusterInfo, namespace: str, env: Env
) -> None:
    wheel = await asyncio.to_thread(build_wheel, tmp_path / "dist")
    names = zipfile.ZipFile(wheel).namelist()
    agents = sorted(n for n in names if n.startswith("kubeloop/agent/bin/"))
    assert [a.rsplit("-", 1)[1] for a in agents] == ["amd64", "arm64"]
    python = await asyncio.to_thread(fresh_venv, tmp_path / "venv", wheel)

    # No Go, an empty cache: kubectl is the only tool on PATH besides the system's.
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "kubectl").symlink_to(env.kubectl)
    user_env = {**os.environ, "PATH": f"{tools}:/usr/bin:/bin",
                "KUBELOOP_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": ""}  # fmt: skip
    found = await asyncio.to_thread(agent_path, python, user_env, tmp_path)
    assert "/site-packages/kubeloop/agent/bin/" in found and "/cache/" not in found

    await kube.apply({"apiVersion": "apps/v1", "kind": "Deployment",
                      "metadata": {"name": "app", "namespace": namespace},
                      "spec": {"selector": {"matchLabels": {"app": "app"}},
                               "template": {"metadata": {"labels": {"app": "app"}},
                                            "spec": POD}}})  # fmt: skip
    await kube.wait_for(f"/apis/apps/v1/namespaces/{namespace}/deployments/app",
                        lambda d: d.get("status", {}).get("readyReplicas") == 1, "app", 90)  # fmt: skip
    src = tmp_path / "src"
    src.mkdir()
    (src / "hello.txt").write_text("from the wheel")
    process = await asyncio.create_subprocess_exec(
        str(python.parent / "kubeloop"), "sync", "--cluster", cluster.name, "-n", namespace,
        "-l", "app=app", f"{src}:/tmp/synced", env=user_env, cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL, stderr=(tmp_path / "sync.log").open("w"),
    )  # fmt: skip
    try:

        async def synced() -> bool:
            out = await kubectl(env, "exec", "-n", namespace, "deploy/app", "--", "cat",
                                "/tmp/synced/hello.txt")  # fmt: skip
            return out == "from the wheel"

        await eventually(synced, 90, 0.5)
    finally:
        process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.wait(), 30)
    assert not (tmp_path / "cache" / "agent").exists()  # nothing was built
