"""The host processes of a native cluster: command lines and health checks.

Flags follow Kubernetes' own hack/local-up-cluster.sh, trimmed to one node, with every
path and port taken from the layout so nothing lands outside the cluster's directories.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from kubeloop.cluster.native.daemons import Daemon, exited_early
from kubeloop.cluster.native.layout import NODE_IP, SERVICE_CIDR, Layout
from kubeloop.core import WaitTimeout, wait_until
from kubeloop.errors import KubeloopError


@dataclass(frozen=True)
class Health:
    url: str
    client_cert: str | None = None  # name of a pki cert/key pair to present
    verify: bool = False


def _daemon(layout: Layout, name: str, argv: list[str]) -> Daemon:
    return Daemon(name, tuple(argv), layout.pids, layout.logs)


def daemons(layout: Layout, bins: Mapping[str, Path]) -> dict[str, Daemon]:
    pki, cfg, p = layout.pki, layout.config, layout.ports
    registry = shutil.which("docker-registry") or "docker-registry"
    containerd = shutil.which("containerd") or "containerd"
    return {
        "registry": _daemon(layout, "registry", [registry, "serve", str(cfg / "registry.yaml")]),
        "etcd": _daemon(layout, "etcd", [
            str(bins["etcd"]),
            "--name", layout.node_name,
            "--data-dir", str(layout.etcd_data),
            *_etcd_tls_flags(layout),
            "--log-level", "warn",
            "--quota-backend-bytes", str(4 << 30),
        ]),
        "containerd": _daemon(layout, "containerd",
                              [containerd, "--config", str(cfg / "containerd.toml")]),
        "kube-apiserver": _daemon(layout, "kube-apiserver", [
            str(bins["kube-apiserver"]),
            f"--etcd-servers=https://127.0.0.1:{p.etcd_client}",
            f"--etcd-cafile={pki / 'ca.crt'}",
            f"--etcd-certfile={pki / 'apiserver-etcd-client.crt'}",
            f"--etcd-keyfile={pki / 'apiserver-etcd-client.key'}",
            # Every client of ours presents a certificate; an anonymous request is refused
            # (401) instead of reaching whatever RBAC grants system:anonymous.
            "--anonymous-auth=false",
            "--bind-address=0.0.0.0",
            f"--secure-port={p.apiserver}",
            f"--advertise-address={NODE_IP}",
            f"--cert-dir={layout.state_root / 'certs'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            "--profiling=false",
            "--v=1",
        ]),
        "kube-controller-manager": _daemon(layout, "kube-controller-manager", [
            str(bins["kube-controller-manager"]),
            *_secured_controller_flags(layout, "controller-manager", p.controller_manager),
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            "--use-service-account-credentials=true",
            "--allocate-node-cidrs=false",
        ]),
        "kube-scheduler": _daemon(layout, "kube-scheduler", [
            str(bins["kube-scheduler"]),
            *_secured_controller_flags(layout, "scheduler", p.scheduler),
        ]),
        "kubelet": _daemon(layout, "kubelet", [
            str(bins["kubelet"]),
            f"--config={cfg / 'kubelet.yaml'}",
            f"--kubeconfig={cfg / 'kubelet.kubeconfig'}",
            f"--root-dir={layout.kubelet_root}",
            f"--cert-dir={layout.state_root / 'certs'}",
            f"--hostname-override={layout.node_name}",
            f"--node-ip={NODE_IP}",
            "--v=1",
        ]),
        "kube-proxy": _daemon(layout, "kube-proxy", [
            str(bins["kube-proxy"]),
            f"--config={cfg / 'kube-proxy.yaml'}",
            "--v=1",
        ]),
        "coredns": _daemon(layout, "coredns", [str(bins["coredns"]), "-conf", str(cfg / "Corefile")]),
    }  # fmt: skip


def _etcd_tls_flags(layout: Layout) -> list[str]:
    """etcd on loopback, over TLS for clients and the peer port alike, and only for
    callers with a certificate of the cluster's CA: any local user could otherwise read
    the cluster's secrets or rewrite its state over plain HTTP."""
    pki, p = layout.pki, layout.ports
    server = [pki / "etcd-server.crt", pki / "etcd-server.key", pki / "ca.crt"]
    client_url, peer_url = f"https://127.0.0.1:{p.etcd_client}", f"https://127.0.0.1:{p.etcd_peer}"
    return [
        "--listen-client-urls", client_url,
        "--advertise-client-urls", client_url,
        "--listen-peer-urls", peer_url,
        "--initial-advertise-peer-urls", peer_url,
        "--initial-cluster", f"{layout.node_name}={peer_url}",
        "--cert-file", str(server[0]), "--key-file", str(server[1]),
        "--trusted-ca-file", str(server[2]), "--client-cert-auth",
        "--peer-cert-file", str(server[0]), "--peer-key-file", str(server[1]),
        "--peer-trusted-ca-file", str(server[2]), "--peer-client-cert-auth",
    ]  # fmt: skip


def _secured_controller_flags(layout: Layout, name: str, port: int) -> list[str]:
    """Flags the controller manager and the scheduler share: their kubeconfig for
    everything, a loopback-only serving port with our certificate, no leader election."""
    kubeconfig = layout.config / f"{name}.kubeconfig"
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={layout.state_root / 'certs'}",
        f"--tls-cert-file={layout.pki / f'{name}-serving.crt'}",
        f"--tls-private-key-file={layout.pki / f'{name}-serving.key'}",
        "--leader-elect=false",
        "--v=1",
    ]


def health_checks(layout: Layout) -> dict[str, Health]:
    p = layout.ports
    return {
        "registry": Health(f"http://127.0.0.1:{p.registry}/v2/"),
        "etcd": Health(f"https://127.0.0.1:{p.etcd_client}/health",
                       client_cert="apiserver-etcd-client", verify=True),
        "kube-apiserver": Health(f"https://127.0.0.1:{p.apiserver}/readyz", client_cert="admin",
                                 verify=True),
        "kube-controller-manager": Health(f"https://127.0.0.1:{p.controller_manager}/healthz"),
        "kube-scheduler": Health(f"https://127.0.0.1:{p.scheduler}/healthz"),
        "kubelet": Health(f"http://127.0.0.1:{p.kubelet_healthz}/healthz"),
        "kube-proxy": Health(f"http://127.0.0.1:{p.proxy_healthz}/livez"),
        "coredns": Health(f"http://127.0.0.1:{p.coredns_ready}/ready"),
    }  # fmt: skip


def _ssl_context(layout: Layout, health: Health) -> ssl.SSLContext | bool:
    if not health.url.startswith("https"):
        return False
    if not health.verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context(cafile=str(layout.pki / "ca.crt"))
    if health.client_cert:
        context.load_cert_chain(
            str(layout.pki / f"{health.client_cert}.crt"),
            str(layout.pki / f"{health.client_cert}.key"),
        )
    return context


async def healthy(layout: Layout, name: str, daemon: Daemon | None = None) -> bool:
    if name == "containerd":
        return await _socket_answers(layout.containerd_socket)
    health = health_checks(layout)[name]
    try:
        async with httpx.AsyncClient(verify=_ssl_context(layout, health), timeout=2.0) as client:
            response = await client.get(health.url)
    except (httpx.HTTPError, OSError):
        return False
    return response.status_code == 200


async def _socket_answers(path: Path) -> bool:
    try:
        _reader, writer = await asyncio.open_unix_connection(str(path))
    except OSError:
        return False
    writer.close()
    return True


async def wait_healthy(layout: Layout, daemon: Daemon, timeout: float = 60.0) -> None:
    """Wait until the component answers its health check; fail fast if it exits."""

    async def up() -> bool:
        if await healthy(layout, daemon.name, daemon):
            return True
        died = exited_early(daemon)
        if died is not None:
            raise KubeloopError(
                f"{daemon.name} exited during start-up. The end of {daemon.log_file}:\n{died}",
                "fix what the log names, then run 'kubeloop cluster create' again "
                "(it resumes where it stopped)",
            )
        return False

    try:
        await wait_until(up, timeout, 0.1, f"{daemon.name} to become healthy")
    except WaitTimeout:
        raise KubeloopError(
            f"{daemon.name} did not become healthy within {timeout:.0f}s; see {daemon.log_file}",
        ) from None


async def secure_etcd_peer_url(layout: Layout) -> None:
    """etcd keeps its member's peer address in its data, so one an older kubeloop made
    still lists a plain-HTTP peer URL after the switch to TLS: correct the record (the
    listener itself already follows the flags)."""
    p = layout.ports
    base = f"https://127.0.0.1:{p.etcd_client}/v3/cluster/member"
    health = Health(base, client_cert="apiserver-etcd-client", verify=True)
    try:
        async with httpx.AsyncClient(verify=_ssl_context(layout, health), timeout=5.0) as client:
            members = (await client.post(f"{base}/list", json={})).json().get("members", [])
            for member in members:
                if any(url.startswith("http://") for url in member.get("peerURLs", [])):
                    update = {"ID": member["ID"], "peerURLs": [f"https://127.0.0.1:{p.etcd_peer}"]}
                    (await client.post(f"{base}/update", json=update)).raise_for_status()
    except (httpx.HTTPError, OSError, ValueError, KeyError) as exc:
        raise KubeloopError(
            f"could not update etcd's peer address to TLS: {exc}",
            f"see {layout.logs / 'etcd.log'}; then run 'kubeloop cluster create' again",
        ) from exc
