"""The native cluster is a real Kubernetes: CNI addresses, Services through kube-proxy,
cluster DNS, exec/logs/port-forward, and a Deployment built from a local Dockerfile."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from typing import Any

import httpx
import pytest

from kubeloop.build import build_and_push
from kubeloop.cluster import ClusterInfo, cluster_status, create_cluster
from kubeloop.cluster.native.daemons import running_pid
from kubeloop.cluster.native.layout import KUBERNETES_VERSION, POD_CIDR, SERVICE_CIDR, Layout
from kubeloop.cluster.native.provider import daemon_specs
from kubeloop.errors import KubeloopError
from kubeloop.kube import Kube
from tests.integration.conftest import APPS, Env, kubectl

PYTHON = "python:3.11-slim"


def server_pod(name: str, namespace: str, image: str = PYTHON) -> dict[str, Any]:
    """A pod running a one-line HTTP server on port 8080 (the seeded Python image)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "web",
                "image": image,
                "command": ["python3", "-u", "-c",
                            "import http.server as h, socket\n"
                            "class H(h.BaseHTTPRequestHandler):\n"
                            "  def do_GET(s):\n"
                            "    b=('pod '+socket.gethostname()).encode()\n"
                            "    s.send_response(200); s.end_headers(); s.wfile.write(b)\n"
                            "    print('GET', s.path, flush=True)\n"
                            "print('ready', flush=True)\n"
                            "h.HTTPServer(('', 8080), H).serve_forever()"],
                "ports": [{"containerPort": 8080}],
                "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
            }],
        },
    }  # fmt: skip


def service(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]},
    }


async def test_node_is_ready_on_the_pinned_version(
    kube: Kube, cluster: ClusterInfo, cluster_name: str
) -> None:
    status = await cluster_status(cluster_name)
    assert status.healthy, status
    assert (await kube.version())["gitVersion"] == KUBERNETES_VERSION
    nodes = (await kube.request("GET", "/api/v1/nodes"))["items"]
    assert [n["metadata"]["name"] for n in nodes] == [cluster_name]


async def test_pod_gets_an_address_from_the_cni_bridge(kube: Kube, namespace: str) -> None:
    await kube.apply(server_pod("web", namespace))
    pod = await kube.wait_pod_running(namespace, "web", timeout=90)
    address = ipaddress.ip_address(pod["status"]["podIP"])
    assert address in ipaddress.ip_network(POD_CIDR)
    async with httpx.AsyncClient(timeout=5) as client:
        reply = await client.get(f"http://{address}:8080/")
    assert reply.text == "pod web"


async def test_service_routes_through_kube_proxy_and_dns_resolves(
    kube: Kube, env: Env, namespace: str
) -> None:
    await kube.apply(server_pod("backend", namespace))
    created = await kube.apply(service("backend", namespace))
    cluster_ip = created["spec"]["clusterIP"]
    await kube.apply(server_pod("client", namespace))
    await asyncio.gather(kube.wait_pod_running(namespace, "backend", 90),
                         kube.wait_pod_running(namespace, "client", 90))  # fmt: skip
    # From inside a pod: the Service's DNS name resolves to its ClusterIP, and the
    # ClusterIP answers through kube-proxy's rules.
    fqdn = f"backend.{namespace}.svc.cluster.local"
    # kube-proxy programs a new Service's rules within about a second: retry briefly.
    script = (
        "import socket, time, urllib.request\n"
        f"print(socket.gethostbyname('{fqdn}'))\n"
        "for attempt in range(100):\n"
        "    try:\n"
        "        print(urllib.request.urlopen('http://backend/', timeout=5).read().decode())\n"
        "        break\n"
        "    except OSError:\n"
        "        time.sleep(0.1)\n"
    )
    out = await kubectl(env, "exec", "-n", namespace, "client", "--", "python3", "-c", script)
    resolved, answer = out.strip().splitlines()
    assert resolved == cluster_ip
    assert answer == "pod backend"
    # From the host too (kube-proxy programs the OUTPUT chain).
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await client.get(f"http://{cluster_ip}/")).text == "pod backend"
    # An address in the service range that no Service holds (or that kube-proxy has not
    # programmed yet) is refused on this machine, never routed off it: a gateway once
    # answered such a request with a 404 that looked like the app's own.
    unused = await unused_service_address(kube)
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(timeout=3) as client:
            await client.get(f"http://{unused}/")
    probe = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(('{unused}', 80), timeout=3); print('connected')\n"
        "except ConnectionRefusedError: print('refused')\n"
        "except OSError as e: print('other', e)\n"
    )
    out = await kubectl(env, "exec", "-n", namespace, "client", "--", "python3", "-c", probe)
    assert out.strip() == "refused"


async def unused_service_address(kube: Kube) -> str:
    services = await kube.request("GET", "/api/v1/services")
    taken = {item["spec"].get("clusterIP") for item in services["items"]}
    top = ipaddress.ip_network(SERVICE_CIDR).broadcast_address
    return next(str(top - n) for n in range(2, 256) if str(top - n) not in taken)


async def test_exec_logs_follow_and_port_forward(kube: Kube, env: Env, namespace: str) -> None:
    await kube.apply(server_pod("web", namespace))
    await kube.wait_pod_running(namespace, "web", 90)
    out = await kubectl(env, "exec", "-n", namespace, "web", "--", "echo", "inside")
    assert out.strip() == "inside"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        local_port = probe.getsockname()[1]
    forward = await asyncio.create_subprocess_exec(
        *env.kubectl_argv("port-forward", "-n", namespace, "pod/web", f"{local_port}:8080"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    logs = await asyncio.create_subprocess_exec(
        *env.kubectl_argv("logs", "-f", "-n", namespace, "web"),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert forward.stdout is not None and logs.stdout is not None
        await asyncio.wait_for(forward.stdout.readline(), 20)  # "Forwarding from ..."
        async with httpx.AsyncClient(timeout=5) as client:
            reply = await client.get(f"http://127.0.0.1:{local_port}/through-forward")
        assert reply.text == "pod web"
        seen = ""
        deadline = time.monotonic() + 20
        while "/through-forward" not in seen and time.monotonic() < deadline:
            seen += (await asyncio.wait_for(logs.stdout.readline(), 20)).decode()
        assert "GET /through-forward" in seen
    finally:
        for process in (forward, logs):
            process.kill()
            await process.wait()


async def test_deployment_built_from_a_local_dockerfile_rolls_out(
    kube: Kube, cluster: ClusterInfo, namespace: str, docker_engine: None
) -> None:
    assert cluster.registry
    built = await build_and_push(APPS / "hello", "kubeloop-tests/hello", cluster.registry)
    labels = {"app": "hello"}
    await kube.apply({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "hello", "namespace": namespace},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
                    "name": "hello", "image": built.image,
                    "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
                }]},
            },
        },
    })  # fmt: skip
    deployment = await kube.wait_for(
        f"/apis/apps/v1/namespaces/{namespace}/deployments/hello",
        lambda d: d.get("status", {}).get("readyReplicas") == 2,
        "deployment hello to have 2 ready replicas",
        timeout=120,
    )
    assert deployment["status"]["updatedReplicas"] == 2
    pods = await kube.request("GET", f"/api/v1/namespaces/{namespace}/pods")
    async with httpx.AsyncClient(timeout=5) as client:
        for pod in pods["items"]:
            reply = await client.get(f"http://{pod['status']['podIP']}:8080/x")
            assert reply.text == f"hello from {pod['metadata']['name']} path=/x\n"
    # Same sources, same tag: nothing to build the second time.
    again = await build_and_push(APPS / "hello", "kubeloop-tests/hello", cluster.registry)
    assert again.image == built.image and not again.built


async def test_create_on_a_healthy_cluster_is_a_fast_no_op(
    cluster: ClusterInfo, cluster_name: str
) -> None:
    specs = daemon_specs(Layout.for_cluster(cluster_name))
    before = {n: running_pid(d) for n, d in specs.items()}
    started = time.monotonic()
    again = await create_cluster(cluster_name, provider="native", quiet=True)
    elapsed = time.monotonic() - started
    assert again == cluster
    assert {n: running_pid(d) for n, d in specs.items()} == before
    assert elapsed < 5, f"a no-op create took {elapsed:.1f}s"


async def test_a_second_native_cluster_is_refused_clearly(
    cluster: ClusterInfo, cluster_name: str
) -> None:
    with pytest.raises(KubeloopError) as caught:
        await create_cluster("second", provider="native", quiet=True)
    assert f"named '{cluster_name}' already exists" in caught.value.message
    assert caught.value.hint and "kubeloop cluster delete" in caught.value.hint
