"""The native cluster's doors, tried on the real cluster: etcd only for TLS clients with
a certificate, the registry only for root, no anonymous API requests; and create
upgrading an outdated cluster in place, restarting only what changed."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from kubeloop.cluster import ClusterInfo, cluster_status, create_cluster
from kubeloop.cluster.native.daemons import running_pid, started_with
from kubeloop.cluster.native.layout import Layout
from kubeloop.cluster.native.preflight import foreign_kube_chains
from kubeloop.cluster.native.provider import CONFIG_VERSION, daemon_specs
from kubeloop.paths import default_kubeconfig


@pytest.fixture
def layout(cluster: ClusterInfo, cluster_name: str) -> Layout:
    return Layout.for_cluster(cluster_name)


def _tls(layout: Layout, cert: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(layout.pki / "ca.crt"))
    if cert:
        context.load_cert_chain(str(layout.pki / f"{cert}.crt"), str(layout.pki / f"{cert}.key"))
    return context


async def test_etcd_refuses_a_client_without_a_certificate(layout: Layout) -> None:
    etcd = f"127.0.0.1:{layout.ports.etcd_client}"
    async with httpx.AsyncClient(verify=_tls(layout, "apiserver-etcd-client"), timeout=5) as ok:
        assert (await ok.get(f"https://{etcd}/health")).json()["health"] == "true"
        members = (await ok.post(f"https://{etcd}/v3/cluster/member/list", json={})).json()
        assert all(url.startswith("https://") for m in members["members"] for url in m["peerURLs"])
    refused = (httpx.HTTPError, ssl.SSLError)  # TLS 1.3 says so on the first read
    with pytest.raises(refused):  # no certificate, no answer
        async with httpx.AsyncClient(verify=_tls(layout, None), timeout=5) as client:
            await client.post(f"https://{etcd}/v3/kv/range", json={"key": "Lw=="})
    with pytest.raises(httpx.HTTPError):  # and nothing answers plain HTTP
        async with httpx.AsyncClient(timeout=5) as client:
            await client.post(f"http://{etcd}/v3/kv/range", json={"key": "Lw=="})
    with pytest.raises(refused):  # the peer port asks for a certificate too
        async with httpx.AsyncClient(verify=_tls(layout, None), timeout=5) as client:
            await client.get(f"https://127.0.0.1:{layout.ports.etcd_peer}/members")


def _curl_as(user: str | None, url: str) -> subprocess.CompletedProcess[str]:
    argv = ["curl", "-sS", "--max-time", "5", url]
    if user:
        argv = ["runuser", "-u", user, "--", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def test_the_registry_refuses_every_user_but_root(layout: Layout) -> None:
    for address in ("127.0.0.1", "localhost"):
        url = f"http://{address}:{layout.ports.registry}/v2/_catalog"
        refused = _curl_as("nobody", url)
        assert refused.returncode == 7, refused  # curl: could not connect
        root = _curl_as(None, url)
        assert root.returncode == 0 and "repositories" in root.stdout, root


async def test_the_api_server_answers_anonymous_requests_with_401(layout: Layout) -> None:
    for address in ("127.0.0.1", "10.244.0.1"):
        base = f"https://{address}:{layout.ports.apiserver}"
        async with httpx.AsyncClient(verify=_tls(layout, None), timeout=5) as anonymous:
            for path in ("/version", "/healthz", "/readyz", "/api/v1/namespaces"):
                assert (await anonymous.get(base + path)).status_code == 401, path
    async with httpx.AsyncClient(verify=_tls(layout, "admin"), timeout=5) as admin:
        assert (await admin.get(f"https://127.0.0.1:{layout.ports.apiserver}/readyz")).is_success


async def test_another_kubernetes_chains_refuse_a_new_cluster(
    tmp_path: Path, layout: Layout
) -> None:
    # The running cluster's kube-proxy chains, seen from a cluster with no record of
    # them, are another Kubernetes' chains.
    fresh = Layout("fresh", tmp_path / "state", tmp_path / "run")
    [problem] = await foreign_kube_chains(fresh)
    assert "another Kubernetes' chains (KUBE-" in problem.what
    assert "k3s-killall.sh" in problem.fix
    assert await foreign_kube_chains(layout) == []


def test_the_users_kubeconfig_names_are_kubeloops(layout: Layout) -> None:
    config = yaml.safe_load(default_kubeconfig().read_text())
    name = f"kubeloop-{layout.name}"
    [context] = [c for c in config["contexts"] if c["name"] == name]
    assert context["context"] == {"cluster": name, "user": name}
    assert name in [u["name"] for u in config["users"]]
    ours = yaml.safe_load(layout.admin_kubeconfig.read_text())
    same = [u for u in config["users"] if u["user"] == ours["users"][0]["user"]]
    assert [u["name"] for u in same] == [name]  # no "admin" copy of our credentials


async def test_create_upgrades_an_outdated_cluster_restarting_only_what_changed(
    layout: Layout,
) -> None:
    specs = daemon_specs(layout)
    before = {n: running_pid(d) for n, d in specs.items()}
    # As an older kubeloop left it: another config version, and kube-proxy started
    # without a fingerprint (its pid file had two fields).
    layout.config_stamp.write_text("1")
    proxy = specs["kube-proxy"]
    proxy.pid_file.write_text(" ".join(proxy.pid_file.read_text().split()[:2]) + "\n")
    assert started_with(proxy) is None

    await create_cluster(layout.name, provider="native", quiet=True)
    after = {n: running_pid(d) for n, d in specs.items()}
    assert after["kube-proxy"] not in (None, before["kube-proxy"])
    assert {n: p for n, p in after.items() if n != "kube-proxy"} == {
        n: p for n, p in before.items() if n != "kube-proxy"
    }
    assert layout.config_stamp.read_text() == CONFIG_VERSION
    assert started_with(proxy) is not None
    assert (await cluster_status(layout.name)).healthy
