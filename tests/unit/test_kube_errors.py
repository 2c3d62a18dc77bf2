"""What a developer reads when the cluster does not answer (a loopback port nobody
listens on: a real refused connection, no cluster needed)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from kubeloop.kube import Kube
from kubeloop.kube.client import KubeError


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_an_unreachable_cluster_is_named_with_how_to_start_it(tmp_path: Path) -> None:
    server = f"https://127.0.0.1:{closed_port()}"
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: dev\n"
        f"clusters: [{{name: c, cluster: {{server: '{server}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: dev, context: {cluster: c, user: u}}]\n"
    )
    with pytest.raises(KubeError) as caught:
        await Kube.connect(kubeconfig)
    assert caught.value.message.startswith(f"cannot reach the Kubernetes API server at {server}")
    assert caught.value.hint is not None and "kubeloop cluster create" in caught.value.hint


async def test_a_broken_kubeconfig_is_named_as_such(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\ncontexts: []\nclusters: []\n")
    with pytest.raises(KubeError) as caught:
        await Kube.connect(kubeconfig, "missing")
    assert caught.value.message.startswith("cannot load the cluster's connection settings")


def test_the_kube_layer_does_not_import_the_cluster_layer() -> None:
    code = "import kubeloop.kube, sys; print(' '.join(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.split()  # fmt: skip
    assert "kubeloop.kube.client" in loaded
    assert not [m for m in loaded if m.startswith("kubeloop.cluster")]
