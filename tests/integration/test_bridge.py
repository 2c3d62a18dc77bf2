"""`kubeloop bridge` on the real cluster: a workload's traffic reaches a local command,
which reaches the cluster's Services by name with the pod's environment and files; the
cluster gets its traffic back at once on a clean stop, after a SIGKILL, and by itself
when the client freezes (heartbeats stop); bad input changes nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kubeloop.agent import SWAP_ROUTER, cluster_agent_image
from kubeloop.bridge import Bridge, BridgeSpec, reset_swaps
from kubeloop.bridge._proxy import ProxiedCommand
from kubeloop.bridge._swap import GUARD_SECONDS, Swap
from kubeloop.cluster import ClusterInfo
from kubeloop.errors import KubeloopError
from kubeloop.kube import Kube
from tests.integration.conftest import Env, enforce_baseline, eventually, kubectl

PYTHON = "python:3.11-slim"
SERVER = """
import http.server as h, os, sys
class H(h.BaseHTTPRequestHandler):
    def do_GET(s):
        body = os.environ.get("REPLY", "cluster").encode()
        s.send_response(200); s.end_headers(); s.wfile.write(body)
    def log_message(s, *a): pass
h.HTTPServer(("", int(sys.argv[1])), H).serve_forever()
"""
# The local command: answers with the pod's configuration and what it read from the
# database Service by name, and notes every request it got (the kubelet's must not come).
LOCAL = """
import http.server as h, json, os, sys, urllib.request
class H(h.BaseHTTPRequestHandler):
    def do_GET(s):
        with open(os.environ["SEEN"], "a") as seen:
            seen.write(s.headers.get("User-Agent", "") + "\\n")
        db = urllib.request.urlopen("http://db:5432/").read().decode()
        root = os.environ["KUBELOOP_ROOT"]
        body = json.dumps({"where": "local", "greeting": os.environ.get("GREETING"),
                           "db": db, "file": open(root + "/etc/web/mode").read(),
                           "uid": os.getuid(), "home": os.environ.get("HOME")}).encode()
        s.send_response(200); s.end_headers(); s.wfile.write(body)
    def log_message(s, *a): pass
h.HTTPServer(("", 8000), H).serve_forever()
"""


def server_pod_spec(name: str, port: int, reply: str, probe: bool = True) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": name, "image": PYTHON, "command": ["python3", "-c", SERVER, str(port)],
        "ports": [{"containerPort": port}], "env": [{"name": "REPLY", "value": reply}],
    }  # fmt: skip
    if probe:  # an HTTP probe: were it routed local, the local answer would count
        container["readinessProbe"] = {"httpGet": {"path": "/healthz", "port": port},
                                       "periodSeconds": 1}  # fmt: skip
    return {"terminationGracePeriodSeconds": 0, "containers": [container]}


def deployment(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}}  # fmt: skip


def service(name: str, namespace: str, port: int, target: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"app": name}, "ports": [{"port": port, "targetPort": target}]}}  # fmt: skip


@pytest.fixture
async def app(kube: Kube, namespace: str) -> AsyncIterator[str]:
    """web (port 8000, configured from a ConfigMap) and db Services, and a client pod."""
    web = server_pod_spec("web", 8000, "cluster")
    web["containers"][0]["env"].append(
        {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "web", "key": "greeting"}}}
    )
    web["containers"][0]["volumeMounts"] = [{"name": "cfg", "mountPath": "/etc/web"}]
    web["volumes"] = [{"name": "cfg", "configMap": {"name": "web"}}]
    objects = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web", "namespace": namespace},
         "data": {"greeting": "hello from the ConfigMap", "mode": "dev"}},
        deployment("db", namespace, server_pod_spec("db", 5432, "rows-from-db", probe=False)),
        service("db", namespace, 5432, 5432),
        deployment("web", namespace, web),
        service("web", namespace, 80, 8000),
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "namespace": namespace},
         "spec": {"terminationGracePeriodSeconds": 0,
                  "containers": [{"name": "c", "image": PYTHON, "command": ["sleep", "3600"]}]}},
    ]  # fmt: skip
    for obj in objects:
        await kube.apply(obj)
    for name in ("web", "db"):
        await kube.wait_for(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
                            lambda d: d.get("status", {}).get("readyReplicas") == 1,
                            f"{name} ready", 90)  # fmt: skip
    await kube.wait_pod_running(namespace, "client", 90)
    yield namespace


async def ask(env: Env, namespace: str, url: str = "http://web/") -> str:
    """GET from inside the cluster (the client pod): what any other pod would see."""
    script = ("import urllib.request,sys\ntry: print(urllib.request.urlopen(sys.argv[1], "
              "timeout=3).read().decode())\nexcept Exception as e: print('error', e)")  # fmt: skip
    return (await kubectl(env, "exec", "-n", namespace, "client", "--", "python3", "-c",
                          script, url)).strip()  # fmt: skip


def local_command(tmp_path: Path) -> list[str]:
    (tmp_path / "local.py").write_text(LOCAL)
    return [sys.executable, str(tmp_path / "local.py")]


async def test_traffic_comes_here_and_the_local_command_reaches_the_cluster(
    tmp_path: Path, kube: Kube, cluster: ClusterInfo, app: str, env: Env
) -> None:
    seen = tmp_path / "seen.txt"
    spec = BridgeSpec("deployment/web", 8000, local_command(tmp_path), app,
                      env={"SEEN": str(seen)})  # fmt: skip
    bridge = Bridge(kube, cluster, spec)
    task = asyncio.create_task(bridge.run())
    try:
        reply = json.loads(await eventually(lambda: _local(ask(env, app)), 60, 0.3))
        # The bytes travel on the port-forwarded data lane, not the slower exec stream.
        assert [link.stream.transport for link in bridge.links.values()] == ["lane"]
        assert reply["greeting"] == "hello from the ConfigMap"  # valueFrom, resolved
        assert reply["db"] == "rows-from-db"  # a Service by name, from the pod
        assert reply["file"] == "dev"  # the mounted ConfigMap
        assert reply["uid"] == os.getuid() and reply["home"] == os.environ.get("HOME")
        # Several probe periods pass bridged: the kubelet's probes went to the pod, the
        # pod stayed Ready (the local command never saw one).
        await asyncio.sleep(3)
        pods = await kube.request("GET", f"/api/v1/namespaces/{app}/pods",
                                  params={"labelSelector": "app=web"})  # fmt: skip
        assert all(c["ready"] for p in pods["items"] for c in p["status"]["containerStatuses"])
        assert "kube-probe" not in seen.read_text()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # A clean stop gives the traffic back at once (the stream's end reaches the agent).
    await eventually(lambda: _is(ask(env, app), "cluster"), 5, 0.1)


async def _local(reply: Any) -> str | None:
    text = await reply
    return text if text.startswith("{") else None


async def bridge_cli(
    tmp_path: Path, namespace: str, cluster: ClusterInfo
) -> asyncio.subprocess.Process:
    kubeloop = Path(sys.executable).with_name("kubeloop")
    return await asyncio.create_subprocess_exec(
        str(kubeloop), "bridge", "deployment/web", "--port", "8000", "-n", namespace,
        "--cluster", cluster.name, "--var", f"SEEN={tmp_path / 'seen.txt'}", "--",
        *local_command(tmp_path), stdout=asyncio.subprocess.DEVNULL,
        stderr=(tmp_path / "bridge.log").open("a"), start_new_session=True,
    )  # fmt: skip


async def test_sigkill_and_a_frozen_client_give_the_traffic_back(
    tmp_path: Path, cluster: ClusterInfo, app: str, env: Env
) -> None:
    for how in (signal.SIGKILL, signal.SIGSTOP):
        process = await bridge_cli(tmp_path, app, cluster)
        try:
            await eventually(lambda: _local(ask(env, app)), 60, 0.3)
            os.kill(process.pid, how)
            stopped = time.monotonic()
            await eventually(lambda: _is(ask(env, app), "cluster"), 30, 0.2)
            took = time.monotonic() - stopped
            # SIGKILL: the exec stream ends with kubeloop, the agent gives the port back.
            # SIGSTOP (a laptop asleep): only the missing heartbeats do, within ~10 s.
            assert took < (5 if how == signal.SIGKILL else 25), (how, took)
        finally:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                with _quiet():
                    os.killpg(process.pid, sig)
            await process.wait()


async def _is(reply: Any, expected: str) -> bool:
    return bool(await reply == expected)


class _quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return isinstance(exc[1], ProcessLookupError)


async def test_a_distroless_target_is_bridged(
    tmp_path: Path, kube: Kube, cluster: ClusterInfo, app: str, env: Env
) -> None:
    """An image with one static binary (no shell, no iptables, no Python)."""
    pause = {"terminationGracePeriodSeconds": 0,
             "containers": [{"name": "bare", "image": "localhost:5000/pause:3.10",
                             "ports": [{"containerPort": 9000}]}]}  # fmt: skip
    await kube.apply(deployment("bare", app, pause))
    await kube.wait_for(f"/apis/apps/v1/namespaces/{app}/deployments/bare",
                        lambda d: d.get("status", {}).get("readyReplicas") == 1, "bare", 90)  # fmt: skip
    pods = await kube.request("GET", f"/api/v1/namespaces/{app}/pods",
                              params={"labelSelector": "app=bare"})  # fmt: skip
    ip = pods["items"][0]["status"]["podIP"]
    (tmp_path / "s.py").write_text(SERVER)
    spec = BridgeSpec("bare", 9000, [sys.executable, str(tmp_path / "s.py"), "9000"], app,
                      env={"REPLY": "bridged"})  # fmt: skip
    task = asyncio.create_task(Bridge(kube, cluster, spec).run())
    try:
        await eventually(lambda: _is(ask(env, app, f"http://{ip}:9000/"), "bridged"), 60, 0.3)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_bad_input_is_explained_and_changes_nothing(
    tmp_path: Path, kube: Kube, cluster: ClusterInfo, app: str, env: Env
) -> None:
    command = local_command(tmp_path)
    cases = [
        (BridgeSpec("deployment/nope", 8000, command, app), "not found"),
        (BridgeSpec("web", 8001, command, app), "does not expose port 8001"),
        (BridgeSpec("web", 8000, [sys.executable, "-c", "raise SystemExit(3)"], app),
         "exited at once"),
    ]  # fmt: skip
    for spec, message in cases:
        with pytest.raises(KubeloopError, match=message):
            await Bridge(kube, cluster, spec).run()
    assert await ask(env, app) == "cluster"
    # Someone else bridges the port: a second bridge is refused, the first keeps it.
    first = asyncio.create_task(Bridge(kube, cluster, BridgeSpec(
        "web", 8000, command, app, env={"SEEN": str(tmp_path / "seen")})).run())  # fmt: skip
    try:
        await eventually(lambda: _local(ask(env, app)), 60, 0.3)
        with pytest.raises(KubeloopError, match="already bridged"):
            await Bridge(kube, cluster, BridgeSpec("web", 8000, command, app)).run()
        assert (await ask(env, app)).startswith("{")
    finally:
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first


async def test_a_namespace_that_refuses_net_admin_is_told_before_any_change(
    tmp_path: Path, kube: Kube, cluster: ClusterInfo, app: str
) -> None:
    await enforce_baseline(kube, app)
    with pytest.raises(KubeloopError, match="NET_ADMIN") as refused:
        await Bridge(kube, cluster, BridgeSpec("web", 8000, local_command(tmp_path), app)).run()
    assert "baseline" in str(refused.value)
    pods = await kube.request("GET", f"/api/v1/namespaces/{app}/pods",
                              params={"labelSelector": "app=web"})  # fmt: skip
    assert not pods["items"][0]["spec"].get("ephemeralContainers")  # asked first (dry run)


# A client in the cluster asks over ONE keep-alive connection, with a different header
# each time: personal mode routes each request, not each connection.
KEEP_ALIVE = """
import http.client, sys
c = http.client.HTTPConnection("web", 80, timeout=5)
out = []
for value in sys.argv[1:]:
    c.request("GET", "/", headers={"X-Kubeloop-Session": value} if value != "-" else {})
    out.append(c.getresponse().read().decode())
print("|".join(out))
"""


async def ask_with_headers(env: Env, namespace: str, *values: str) -> str:
    return (await kubectl(env, "exec", "-n", namespace, "client", "--", "python3", "-c",
                          KEEP_ALIVE, *values)).strip()  # fmt: skip


def personal(namespace: str, who: str, tmp_path: Path) -> BridgeSpec:
    (tmp_path / "s.py").write_text(SERVER)
    return BridgeSpec("web", 8000, [sys.executable, str(tmp_path / "s.py"), "8000"], namespace,
                      env={"REPLY": who}, mode="personal",
                      header=("X-Kubeloop-Session", who))  # fmt: skip


async def test_personal_bridges_share_a_workload_by_header(
    tmp_path: Path, kube: Kube, cluster: ClusterInfo, app: str, env: Env
) -> None:
    tasks = [asyncio.create_task(Bridge(kube, cluster, personal(app, who, tmp_path)).run())
             for who in ("alice", "bob")]  # fmt: skip
    try:
        expected = "alice|cluster|bob|alice|cluster"
        await eventually(lambda: _is(ask_with_headers(env, app, "alice", "-", "bob", "alice",
                                                      "carol"), expected), 60, 0.3)  # fmt: skip
        # The same header value twice is someone else's session: refused, nothing changes.
        with pytest.raises(KubeloopError, match="already bridged by someone else"):
            await Bridge(kube, cluster, personal(app, "bob", tmp_path)).run()
        # Steal mode on a port in personal use is refused too.
        with pytest.raises(KubeloopError, match="already bridged"):
            await Bridge(kube, cluster, BridgeSpec("web", 8000, ["true"], app)).run()
        assert await ask_with_headers(env, app, "bob", "-") == "bob|cluster"
        # Probes (no header, from the node) kept the pod Ready throughout.
        await asyncio.sleep(2)
        pods = await kube.request("GET", f"/api/v1/namespaces/{app}/pods",
                                  params={"labelSelector": "app=web"})  # fmt: skip
        assert all(c["ready"] for p in pods["items"] for c in p["status"]["containerStatuses"])
        # One developer leaves: the other keeps the route.
        tasks[0].cancel()
        with pytest.raises(asyncio.CancelledError):
            await tasks[0]
        assert await ask_with_headers(env, app, "alice", "bob") == "cluster|bob"
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    await eventually(lambda: _is(ask_with_headers(env, app, "bob"), "cluster"), 5, 0.1)


H2C_SERVER = """package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	s := &http.Server{Addr: ":" + os.Args[1], Protocols: &p,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "local %s", r.Proto)
		})}
	panic(s.ListenAndServe())
}
"""


# An h2c client with prior knowledge in a few lines (the client pod has no HTTP/2
# library): the preface, SETTINGS, one HEADERS frame (HPACK literals), then DATA frames.
H2C_CLIENT = """
import socket, struct, sys
def lit(name, value):
    return bytes([0, len(name)]) + name.encode() + bytes([len(value)]) + value.encode()
def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload
headers = [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "web")]
if len(sys.argv) == 3:
    headers.append((sys.argv[1], sys.argv[2]))
s = socket.create_connection(("web", 80), timeout=5)
s.sendall(b"PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n" + frame(4, 0, 0, b"")
          + frame(1, 5, 1, b"".join(lit(n, v) for n, v in headers)))
buf, body = b"", b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    buf += chunk
    while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
        size = int.from_bytes(buf[:3], "big")
        kind, flags, stream = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
        payload, buf = buf[9:9 + size], buf[9 + size:]
        if kind == 0 and stream == 1:
            body += payload
        if stream == 1 and flags & 1:
            print(body.decode()); sys.exit(0)
"""


async def test_personal_mode_routes_h2c(
    tmp_path: Path, kube: Kube, cluster: ClusterInfo, app: str, env: Env
) -> None:
    """HTTP/2 with prior knowledge, how gRPC speaks inside a cluster."""
    (tmp_path / "main.go").write_text(H2C_SERVER)
    (tmp_path / "go.mod").write_text("module h2c\n\ngo 1.24\n")
    build = await asyncio.create_subprocess_exec("go", "build", "-o", "h2c", ".", cwd=tmp_path)
    assert await build.wait() == 0
    spec = BridgeSpec("web", 8000, [str(tmp_path / "h2c"), "8000"], app, mode="personal",
                      header=("X-Kubeloop-Session", "alice"))  # fmt: skip
    task = asyncio.create_task(Bridge(kube, cluster, spec).run())
    try:

        async def h2c(*header: str) -> str:
            return (await kubectl(env, "exec", "-n", app, "client", "--", "python3", "-c",
                                  H2C_CLIENT, *header)).strip()  # fmt: skip

        await eventually(lambda: _is(h2c("x-kubeloop-session", "alice"), "local HTTP/2.0"), 60, 0.3)
        # Without the header the request goes on to the app, which speaks HTTP/1.1 only:
        # the bridge answers for it that the app refused HTTP/2 (it never went local).
        assert "kubeloop bridge" in await h2c()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def web_template(kube: Kube, namespace: str) -> tuple[dict[str, Any], dict[str, str]]:
    web = await kube.request("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/web")
    annotations = {
        k: v
        for k, v in (web["metadata"].get("annotations") or {}).items()
        if k != "deployment.kubernetes.io/revision"
    }  # the controller's count
    return web["spec"], annotations


async def test_swap_replaces_the_pods_and_puts_them_back_identical(
    tmp_path: Path, kube: Kube, cluster: ClusterInfo, app: str, env: Env
) -> None:
    """In a namespace that refuses NET_ADMIN (Pod Security baseline): swap needs none."""
    await enforce_baseline(kube, app)
    before = await web_template(kube, app)
    (tmp_path / "s.py").write_text(SERVER)
    spec = BridgeSpec("web", 8000, [sys.executable, str(tmp_path / "s.py"), "8000"], app,
                      env={"REPLY": "swapped"}, mode="swap")  # fmt: skip
    task = asyncio.create_task(Bridge(kube, cluster, spec).run())
    try:
        await eventually(lambda: _is(ask(env, app), "swapped"), 90, 0.3)
        pods = await kube.request("GET", f"/api/v1/namespaces/{app}/pods",
                                  params={"labelSelector": "app=web"})  # fmt: skip
        images = [c["image"] for p in pods["items"] for c in p["spec"]["containers"]]
        assert images and all("kubeloop/agent" in i for i in images)  # the app runs nowhere
        assert (await web_template(kube, app))[0] != before[0]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert await web_template(kube, app) == before  # put back at once, identical
    await eventually(lambda: _is(ask(env, app), "cluster"), 60, 0.3)
    # A swap whose session is gone: `kubeloop reset` puts it back too.
    workload = await kube.request("GET", f"/apis/apps/v1/namespaces/{app}/deployments/web")
    image = await cluster_agent_image(cluster)
    left = Swap(kube, app, workload, "web", image, SWAP_ROUTER)
    await left.start()
    assert await reset_swaps(kube, app) == ["deployment/web"]
    assert await web_template(kube, app) == before
    await left.restore()  # ends its guard; nothing left to put back


async def test_a_killed_swap_is_put_back_by_the_cluster(
    tmp_path: Path, kube: Kube, cluster: ClusterInfo, app: str, env: Env
) -> None:
    before = await web_template(kube, app)
    kubeloop = Path(sys.executable).with_name("kubeloop")
    (tmp_path / "s.py").write_text(SERVER)
    process = await asyncio.create_subprocess_exec(
        str(kubeloop), "bridge", "web", "-p", "8000", "-n", app, "--mode", "swap",
        "--cluster", cluster.name, "-e", "REPLY=swapped", "--",
        sys.executable, str(tmp_path / "s.py"), "8000", stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        await eventually(lambda: _is(ask(env, app), "swapped"), 90, 0.3)
        # Alive, the session keeps the guard's lease: nothing is put back under it.
        await asyncio.sleep(GUARD_SECONDS + 4)
        assert await ask(env, app) == "swapped"
        os.killpg(process.pid, signal.SIGKILL)
        killed = time.monotonic()
        await eventually(lambda: _is(ask(env, app), "cluster"), 45, 0.5)
        assert time.monotonic() - killed < 30
        assert await web_template(kube, app) == before
    finally:
        with _quiet():
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


async def socks_get(port: int, host: str, target_port: int) -> bytes:
    """A GET through the bridge's SOCKS5 proxy, the name resolved in the pod (socks5h)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x05\x01\x00")
    assert await reader.readexactly(2) == b"\x05\x00"
    name = host.encode()
    writer.write(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + target_port.to_bytes(2, "big"))
    assert (await reader.readexactly(10))[1] == 0  # succeeded
    writer.write(b"GET / HTTP/1.0\r\n\r\n")
    reply = await reader.read()
    writer.close()
    return reply


async def test_the_proxy_fallback_reaches_services_by_name(
    tmp_path: Path, kube: Kube, cluster: ClusterInfo, app: str, env: Env
) -> None:
    """Where the command cannot have namespaces of its own: HTTP_PROXY / ALL_PROXY."""
    seen = tmp_path / "seen.txt"
    spec = BridgeSpec("web", 8000, local_command(tmp_path), app, env={"SEEN": str(seen)},
                      outbound="proxy")  # fmt: skip
    bridge = Bridge(kube, cluster, spec)
    task = asyncio.create_task(bridge.run())
    try:
        # The local command's urllib honours http_proxy: `db` resolves in the pod.
        reply = json.loads(await eventually(lambda: _local(ask(env, app)), 60, 0.3))
        assert reply["db"] == "rows-from-db" and reply["greeting"] == "hello from the ConfigMap"
        local = bridge.local
        assert isinstance(local, ProxiedCommand) and local.connections >= 1
        assert (await socks_get(local.proxy_port, "db", 5432)).endswith(b"rows-from-db")
        # HTTP CONNECT (how HTTPS clients use HTTP_PROXY).
        reader, writer = await asyncio.open_connection("127.0.0.1", local.proxy_port)
        writer.write(b"CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n")
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        writer.write(b"GET / HTTP/1.0\r\n\r\n")
        assert (await reader.read()).endswith(b"rows-from-db")
        writer.close()
        # A name the pod cannot resolve is refused, not hung.
        with pytest.raises(AssertionError):
            await socks_get(local.proxy_port, "no-such-service", 80)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


RELOADING = """
import http.server as h, importlib, sys
sys.path.insert(0, sys.argv[1])
import handler
class H(h.BaseHTTPRequestHandler):
    def do_GET(s):
        importlib.reload(handler)  # what a dev server's autoreloader does, per request here
        s.send_response(200); s.end_headers(); s.wfile.write(handler.reply().encode())
    def log_message(s, *a): pass
h.HTTPServer(("", 8000), H).serve_forever()
"""


async def test_a_local_edit_is_live_on_the_next_request(
    tmp_path: Path, kube: Kube, cluster: ClusterInfo, app: str, env: Env
) -> None:
    """The seed's workflow: edit the code on your machine, the cluster's next request
    runs it, no image, no rollout; stopping gives the Service back."""
    code = tmp_path / "handler.py"
    code.write_text("def reply():\n    return 'v1'\n")
    (tmp_path / "server.py").write_text(RELOADING)
    spec = BridgeSpec(
        "web", 8000, [sys.executable, str(tmp_path / "server.py"), str(tmp_path)], app
    )
    task = asyncio.create_task(Bridge(kube, cluster, spec).run())
    try:
        await eventually(lambda: _is(ask(env, app), "v1"), 60, 0.3)
        code.write_text("def reply():\n    return 'v2, edited'\n")
        assert await ask(env, app) == "v2, edited"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    await eventually(lambda: _is(ask(env, app), "cluster"), 5, 0.1)
