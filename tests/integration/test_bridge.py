"""`kubeloop bridge` on the real cluster: a workload's traffic reaches a local command,
which reaches the cluster's Services by name with the pod's environment and files; the
cluster gets its traffic back at once on a clean stop, after a SIGKILL, and by itself
when the client freezes (heartbeats stop); bad input changes nothing."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kubeloop.bridge import Bridge, BridgeSpec
from kubeloop.cluster import ClusterInfo
from kubeloop.errors import KubeloopError
from kubeloop.kube import Kube
from tests.integration.conftest import Env, eventually, kubectl

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
        stderr=asyncio.subprocess.DEVNULL, start_new_session=True,
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
    await kube.request(
        "PATCH", f"/api/v1/namespaces/{app}",
        body={"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "baseline"}}},
        content_type="application/merge-patch+json",
    )  # fmt: skip
    with pytest.raises(KubeloopError, match="NET_ADMIN") as refused:
        await Bridge(kube, cluster, BridgeSpec("web", 8000, local_command(tmp_path), app)).run()
    assert "baseline" in str(refused.value)
    pods = await kube.request("GET", f"/api/v1/namespaces/{app}/pods",
                              params={"labelSelector": "app=web"})  # fmt: skip
    assert not pods["items"][0]["spec"].get("ephemeralContainers")  # asked first (dry run)
