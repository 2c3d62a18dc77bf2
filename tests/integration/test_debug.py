"""`kubeloop debug` on the real cluster, driven through the Debug Adapter Protocol as an
IDE would: attach to the Python service, stop at a breakpoint in the request handler
when a request from the cluster comes in, read a local variable, continue, and the
request completes. Ending the session removes the debugger; bad input changes nothing."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kubeloop.agent import cluster_agent_image
from kubeloop.cluster import ClusterInfo
from kubeloop.config import SyncSpec
from kubeloop.debug import Debugger, DebugSpec
from kubeloop.errors import KubeloopError
from kubeloop.kube import Kube
from kubeloop.sync.devmode import inject_supervisor
from tests.integration.conftest import Env, eventually, kubectl
from tests.integration.dap import Dap

SERVER = """\
import http.server, json


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        total = sum(range(10))
        body = json.dumps({"total": total}).encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)


http.server.HTTPServer(("", 8000), Handler).serve_forever()
"""
BREAK_LINE = 7  # body = json.dumps(...): `total` is set by then


def workload(namespace: str, name: str = "web") -> dict[str, Any]:
    container = {"name": "web", "image": "python:3.11-slim",
                 "command": ["python3", "/app/server.py"],
                 "volumeMounts": [{"name": "code", "mountPath": "/app"}]}  # fmt: skip
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"terminationGracePeriodSeconds": 0,
                                           "containers": [container],
                                           "volumes": [{"name": "code", "configMap": {
                                               "name": "code"}}]}}}}  # fmt: skip


@pytest.fixture
async def app(kube: Kube, cluster: ClusterInfo, namespace: str) -> AsyncIterator[str]:
    """A Python web service under kubeloop's supervisor (as dev mode runs it), and a
    client pod."""
    deployment = workload(namespace)
    spec = SyncSpec.model_validate({"selector": {"app": "web"}, "src": ".", "dest": "/app",
                                    "restart": "process"})  # fmt: skip
    await inject_supervisor([deployment], [spec], await cluster_agent_image(cluster),
                            cluster.registry)  # fmt: skip
    objects = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "code", "namespace": namespace},
         "data": {"server.py": SERVER}},
        deployment,
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": namespace},
         "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8000}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "namespace": namespace},
         "spec": {"terminationGracePeriodSeconds": 0,
                  "containers": [{"name": "c", "image": "python:3.11-slim", "command": ["sleep", "3600"]}]}},
    ]  # fmt: skip
    for obj in objects:
        await kube.apply(obj)
    await kube.wait_for(f"/apis/apps/v1/namespaces/{namespace}/deployments/web",
                        lambda d: d.get("status", {}).get("readyReplicas") == 1, "web", 120)  # fmt: skip
    await kube.wait_pod_running(namespace, "client", 90)
    yield namespace


async def get(env: Env, namespace: str, timeout: float = 60) -> str:
    script = ("import urllib.request; print(urllib.request.urlopen('http://web/', "
              f"timeout={timeout}).read().decode())")  # fmt: skip
    return (await kubectl(env, "exec", "-n", namespace, "client", "--", "python3", "-c", script,
                          timeout=timeout + 10)).strip()  # fmt: skip


async def test_a_breakpoint_in_the_handler_stops_a_request_from_the_cluster(
    kube: Kube, cluster: ClusterInfo, app: str, env: Env
) -> None:
    debugger = Debugger(kube, cluster, DebugSpec("web", app, local_port=0))
    task = asyncio.create_task(debugger.run())
    try:
        await asyncio.wait_for(debugger.ready.wait(), 90)
        dap = await Dap.connect(debugger.spec.local_port)
        try:
            await dap.request("initialize", adapterID="debugpy", clientID="kubeloop-test",
                              linesStartAt1=True, columnsStartAt1=True, pathFormat="path")  # fmt: skip
            attached = dap.send("attach", justMyCode=False)
            await dap.event("initialized")
            placed = await dap.request("setBreakpoints", source={"path": "/app/server.py"},
                                       breakpoints=[{"line": BREAK_LINE}])  # fmt: skip
            assert placed["breakpoints"][0]["verified"], placed
            await dap.request("configurationDone")
            await asyncio.wait_for(attached, 20)
            request = asyncio.create_task(get(env, app))
            stopped = await dap.event("stopped", 60)
            assert stopped["reason"] == "breakpoint"
            frames = (await dap.request("stackTrace", threadId=stopped["threadId"]))["stackFrames"]
            assert frames[0]["line"] == BREAK_LINE
            assert frames[0]["source"]["path"].endswith("/app/server.py")
            scopes = (await dap.request("scopes", frameId=frames[0]["id"]))["scopes"]
            local = next(s for s in scopes if s["name"].lower().startswith("local"))
            variables = (await dap.request("variables",
                                           variablesReference=local["variablesReference"]))  # fmt: skip
            values = {v["name"]: v["value"] for v in variables["variables"]}
            assert values["total"] == "45"
            assert not request.done()  # held at the breakpoint
            await dap.request("continue", threadId=stopped["threadId"])
            assert await asyncio.wait_for(request, 30) == '{"total": 45}'
        finally:
            await dap.close()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # Ended: the debugger is gone from the pod and the app runs on without it.
    listing = await kubectl(env, "exec", "-n", app, "deploy/web", "-c", "web", "--", "ls", "/tmp")
    assert "kubeloop-debug" not in listing or "python" not in await kubectl(
        env, "exec", "-n", app, "deploy/web", "-c", "web", "--", "ls", "/tmp/kubeloop-debug"
    )
    assert await eventually(lambda: get(env, app, 5), 30, 0.5) == '{"total": 45}'


async def test_bad_input_is_explained_and_changes_nothing(
    kube: Kube, cluster: ClusterInfo, app: str, env: Env
) -> None:
    with pytest.raises(KubeloopError, match="not found"):
        await Debugger(kube, cluster, DebugSpec("nope", app)).run()
    # A port already in use here: told before anything changes in the pod.
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        port = busy.getsockname()[1]
        with pytest.raises(KubeloopError, match=f"local port {port} is not free"):
            await Debugger(kube, cluster, DebugSpec("web", app, local_port=port)).run()
    finally:
        busy.close()
    # A container that does not run under the supervisor.
    await kube.apply(workload(app, "plain"))
    await kube.wait_for(f"/apis/apps/v1/namespaces/{app}/deployments/plain",
                        lambda d: d.get("status", {}).get("readyReplicas") == 1, "plain", 90)  # fmt: skip
    with pytest.raises(KubeloopError, match="supervisor"):
        await Debugger(kube, cluster, DebugSpec("plain", app)).run()
