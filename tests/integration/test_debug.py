"""`kubeloop debug` on the real cluster, driven through the Debug Adapter Protocol as an
IDE would: attach to the Python service, stop at a breakpoint in the request handler
when a request from the cluster comes in, read a local variable, continue, and the
request completes. Ending the session removes the debugger; bad input changes nothing."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kubeloop.agent import cluster_agent_image, go_arch
from kubeloop.cluster import ClusterInfo, seed_base_image
from kubeloop.config import SyncSpec
from kubeloop.dashboard import Dashboard
from kubeloop.debug import Debugger, DebugSpec
from kubeloop.debug._payload import delve_binary
from kubeloop.devloop.dev import DevLoop
from kubeloop.devloop.session import open_session
from kubeloop.errors import KubeloopError
from kubeloop.images.registry import ImageConfig, push_files
from kubeloop.kube import Kube
from kubeloop.proc import run
from kubeloop.sync.devmode import inject_supervisor
from tests.integration.conftest import Env, eventually, kubectl
from tests.integration.dap import Dap
from tests.integration.jdwp import Jdwp
from tests.integration.test_core_loop import copy_example

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


async def run_supervised(
    kube: Kube,
    cluster: ClusterInfo,
    namespace: str,
    deployment: dict[str, Any],
    code: dict[str, str] | None,
) -> None:
    """``deployment`` under kubeloop's supervisor (as dev mode runs it), ``code`` as the
    ConfigMap it mounts at /app, its Service ``web`` and an idle client pod, all running."""
    spec = SyncSpec.model_validate({"selector": {"app": "web"}, "src": ".", "dest": "/app",
                                    "restart": "process"})  # fmt: skip
    await inject_supervisor([deployment], [spec], await cluster_agent_image(cluster),
                            cluster.registry)  # fmt: skip
    objects = [
        deployment,
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": namespace},
         "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8000}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "namespace": namespace},
         "spec": {"terminationGracePeriodSeconds": 0,
                  "containers": [{"name": "c", "image": "python:3.11-slim", "command": ["sleep", "3600"]}]}},
    ]  # fmt: skip
    if code is not None:
        objects.insert(0, {"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": "code", "namespace": namespace}, "data": code})  # fmt: skip
    for obj in objects:
        await kube.apply(obj)
    await kube.wait_for(f"/apis/apps/v1/namespaces/{namespace}/deployments/web",
                        lambda d: d.get("status", {}).get("readyReplicas") == 1, "web", 120)  # fmt: skip
    await kube.wait_pod_running(namespace, "client", 90)


@pytest.fixture
async def app(kube: Kube, cluster: ClusterInfo, namespace: str) -> AsyncIterator[str]:
    """A Python web service under kubeloop's supervisor, and a client pod."""
    await run_supervised(kube, cluster, namespace, workload(namespace), {"server.py": SERVER})
    yield namespace


@contextlib.asynccontextmanager
async def debugging(kube: Kube, cluster: ClusterInfo, spec: DebugSpec) -> AsyncIterator[Debugger]:
    """`kubeloop debug` as the command runs it (until Ctrl-C), once its debugger answers;
    cancelled on the way out, which undoes it."""
    debugger = Debugger(kube, cluster, spec)
    task = asyncio.create_task(debugger.run())
    try:
        await asyncio.wait_for(debugger.ready.wait(), 90)
        yield debugger
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def get(env: Env, namespace: str, timeout: float = 60) -> str:
    script = ("import urllib.request; print(urllib.request.urlopen('http://web/', "
              f"timeout={timeout}).read().decode())")  # fmt: skip
    return (await kubectl(env, "exec", "-n", namespace, "client", "--", "python3", "-c", script,
                          timeout=timeout + 10)).strip()  # fmt: skip


async def test_a_breakpoint_in_the_handler_stops_a_request_from_the_cluster(
    kube: Kube, cluster: ClusterInfo, app: str, env: Env
) -> None:
    async with debugging(kube, cluster, DebugSpec("web", app, local_port=0)) as debugger:
        dap = await Dap.connect(debugger.local_port)
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


GO_SERVER = """\
package main

import (
	"fmt"
	"net/http"
)

func handler(w http.ResponseWriter, r *http.Request) {
	total := 0
	for i := 0; i < 10; i++ {
		total += i
	}
	fmt.Fprintf(w, "{\\"total\\": %d}", total)
}

func main() {
	http.HandleFunc("/", handler)
	http.ListenAndServe(":8000", nil)
}
"""
GO_BREAK_LINE = 14  # fmt.Fprintf(...): `total` is set by then


async def distroless_go_image(cluster: ClusterInfo, folder: Path) -> str:
    """GO_SERVER built here (no optimisations, so locals can be read) into an image that
    holds nothing but the binary: no shell, no libc."""
    (folder / "go.mod").write_text("module example.com/web\n\ngo 1.22\n")
    (folder / "main.go").write_text(GO_SERVER)
    await run(["go", "build", "-gcflags=all=-N -l", "-o", "server", "."], cwd=folder,
              env={**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local",
                   "GOFLAGS": "-buildvcs=false"}, timeout=300)  # fmt: skip
    binary = (folder / "server").read_bytes()
    tag = hashlib.sha256(binary).hexdigest()[:12]
    assert cluster.registry is not None
    await push_files(f"{cluster.registry}/kubeloop-test/goweb:{tag}", {"server": (binary, 0o755)},
                     ImageConfig(entrypoint=["/server"], architecture=go_arch()))  # fmt: skip
    return f"{cluster.registry_for_pods or cluster.registry}/kubeloop-test/goweb:{tag}"


# Cold, its base image is made from Debian packages (the JRE: 2 min) or Delve built.
@pytest.mark.timeout(600)
async def test_go_in_a_distroless_image_stops_at_a_breakpoint_through_delve(
    kube: Kube, cluster: ClusterInfo, namespace: str, env: Env, tmp_path: Path
) -> None:
    deployment = workload(namespace)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container.update(image=await distroless_go_image(cluster, tmp_path), command=["/server"])
    container.pop("volumeMounts")
    deployment["spec"]["template"]["spec"].pop("volumes")
    await run_supervised(kube, cluster, namespace, deployment, None)
    assert await eventually(lambda: get(env, namespace, 5), 60, 0.5) == '{"total": 45}'

    await delve_binary(go_arch())  # built once (a minute or two cold), then cached
    async with debugging(kube, cluster, DebugSpec("web", namespace, local_port=0)) as debugger:
        assert debugger.language is not None and debugger.language.name == "go"
        dap = await Dap.connect(debugger.local_port)
        try:
            await dap.request("initialize", adapterID="go", clientID="kubeloop-test",
                              linesStartAt1=True, columnsStartAt1=True, pathFormat="path")  # fmt: skip
            attached = dap.send("attach", mode="remote")
            await dap.event("initialized")
            source = str(tmp_path / "main.go")
            placed = await dap.request("setBreakpoints", source={"path": source},
                                       breakpoints=[{"line": GO_BREAK_LINE}])  # fmt: skip
            assert placed["breakpoints"][0]["verified"], placed
            await dap.request("configurationDone")
            await asyncio.wait_for(attached, 20)
            request = asyncio.create_task(get(env, namespace))
            stopped = await dap.event("stopped", 60)
            assert stopped["reason"] == "breakpoint", stopped
            # Delve may answer "debuggee is running" for a moment after its stopped event
            # (its state flips after the event is sent); an IDE asks again, so do we.
            frames = (
                await eventually(
                    lambda: dap.request("stackTrace", threadId=stopped["threadId"]), 5, 0.1
                )
            )["stackFrames"]
            assert frames[0]["line"] == GO_BREAK_LINE
            assert frames[0]["source"]["path"] == source
            scopes = (await dap.request("scopes", frameId=frames[0]["id"]))["scopes"]
            local = next(s for s in scopes if s["name"].lower().startswith("local"))
            variables = (await dap.request("variables",
                                           variablesReference=local["variablesReference"]))  # fmt: skip
            assert {v["name"]: v["value"] for v in variables["variables"]}["total"] == "45"
            assert not request.done()  # held at the breakpoint
            await dap.request("continue", threadId=stopped["threadId"])
            assert await asyncio.wait_for(request, 30) == '{"total": 45}'
        finally:
            await dap.close()
    # Ended: the app runs on without Delve.
    assert await eventually(lambda: get(env, namespace, 5), 30, 0.5) == '{"total": 45}'


NODE_SERVER = """\
const http = require("http");
http.createServer((req, res) => {
  let total = 0;
  for (let i = 0; i < 10; i++) total += i;
  res.end(JSON.stringify({ total: total }));
}).listen(8000);
"""
NODE_BREAK_LINE = 4  # res.end(...), 0-based as the inspector counts


class Inspector:
    """Enough of the V8 inspector protocol (Chrome DevTools Protocol) to drive Node."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws, self.seq = ws, 0
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.answers: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            data = json.loads(message.data)
            if "id" in data:
                self.answers.pop(data["id"]).set_result(data)
            else:
                self.events.put_nowait(data)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.seq += 1
        answer = self.answers[self.seq] = asyncio.get_running_loop().create_future()
        await self.ws.send_json({"id": self.seq, "method": method, "params": params})
        data = await asyncio.wait_for(answer, 20)
        assert "error" not in data, data
        return dict(data["result"])

    async def event(self, method: str, timeout: float = 30) -> dict[str, Any]:
        while True:
            data = await asyncio.wait_for(self.events.get(), timeout)
            if data["method"] == method:
                return dict(data["params"])


# Cold, its base image is made from Debian packages (the JRE: 2 min) or Delve built.
@pytest.mark.timeout(600)
async def test_node_stops_at_a_breakpoint_through_its_inspector(
    kube: Kube, cluster: ClusterInfo, cluster_name: str, namespace: str, env: Env
) -> None:
    await seed_base_image("node:18-slim", cluster_name, quiet=True)
    deployment = workload(namespace)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container.update(image="node:18-slim", command=["node", "/app/server.js"])
    await run_supervised(kube, cluster, namespace, deployment, {"server.js": NODE_SERVER})
    assert await eventually(lambda: get(env, namespace, 5), 60, 0.5) == '{"total":45}'

    async with debugging(kube, cluster, DebugSpec("web", namespace, local_port=0)) as debugger:
        assert debugger.language is not None and debugger.language.name == "node"
        async with aiohttp.ClientSession() as http:
            base = f"127.0.0.1:{debugger.local_port}"
            async with http.get(f"http://{base}/json/list") as listing:
                target = (await listing.json())[0]
            path = target["webSocketDebuggerUrl"].split("/", 3)[3]
            async with http.ws_connect(f"ws://{base}/{path}") as ws:
                inspector = Inspector(ws)
                await inspector.call("Debugger.enable")
                # The inspector listens before the script runs: once the app answers, its
                # script is loaded and the breakpoint resolves at once.
                assert await eventually(lambda: get(env, namespace, 5), 30, 0.2) == '{"total":45}'
                # By pattern: Node runs the ConfigMap's file by its real path (a symlink).
                placed = await inspector.call("Debugger.setBreakpointByUrl",
                                              urlRegex=r"^file:///app/.*server\.js$",
                                              lineNumber=NODE_BREAK_LINE)  # fmt: skip
                assert placed["locations"], placed  # the script is loaded: resolved at once
                request = asyncio.create_task(get(env, namespace))
                paused = await inspector.event("Debugger.paused", 60)
                frame = paused["callFrames"][0]
                assert frame["location"]["lineNumber"] == NODE_BREAK_LINE
                assert paused["hitBreakpoints"] == [placed["breakpointId"]]
                local = next(s for s in frame["scopeChain"] if s["type"] == "local")
                props = await inspector.call("Runtime.getProperties",
                                             objectId=local["object"]["objectId"])  # fmt: skip
                values = {p["name"]: p["value"].get("value") for p in props["result"]}
                assert values["total"] == 45
                assert not request.done()  # held at the breakpoint
                await inspector.call("Debugger.resume")
                assert await asyncio.wait_for(request, 30) == '{"total":45}'
                inspector.task.cancel()
    assert await eventually(lambda: get(env, namespace, 5), 30, 0.5) == '{"total":45}'


async def test_a_killed_session_is_undone_by_the_agent(
    app: str, env: Env, cluster: ClusterInfo, tmp_path: Path
) -> None:
    """SIGKILL of `kubeloop debug`: its stream ends, and the agent removes the debugger
    and restarts the app without it (well within 30 s)."""
    kubeloop = str(Path(sys.executable).with_name("kubeloop"))
    process = await asyncio.create_subprocess_exec(
        kubeloop, "debug", "web", "-n", app, "--port", "0", cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        seen = b""
        while b"answers on" not in seen:
            line = await asyncio.wait_for(process.stdout.readline(), 120)
            assert line, seen.decode()
            seen += line
        listing = await kubectl(env, "exec", "-n", app, "deploy/web", "-c", "web", "--",
                                "ls", "/tmp/kubeloop-debug")  # fmt: skip
        assert "python" in listing
    finally:
        process.kill()
        await process.wait()
    killed = asyncio.get_running_loop().time()

    async def undone() -> bool:
        listing = await kubectl(env, "exec", "-n", app, "deploy/web", "-c", "web", "--",
                                "ls", "/tmp/kubeloop-debug")  # fmt: skip
        return "python" not in listing

    assert await eventually(undone, 30, 0.2)
    assert asyncio.get_running_loop().time() - killed < 30
    assert await eventually(lambda: get(env, app, 5), 30, 0.5) == '{"total": 45}'


JAVA_SERVER = """\
import com.sun.net.httpserver.HttpServer;
import java.net.InetSocketAddress;

public class Server {
    public static void main(String[] args) throws Exception {
        HttpServer server = HttpServer.create(new InetSocketAddress(8000), 0);
        server.createContext("/", exchange -> {
            int total = 0;
            for (int i = 0; i < 10; i++) total += i;
            byte[] body = ("{\\"total\\": " + total + "}").getBytes();
            exchange.sendResponseHeaders(200, body.length);
            exchange.getResponseBody().write(body);
            exchange.close();
        });
        server.start();
    }
}
"""
JAVA_BREAK_LINE = 10  # byte[] body = ...: `total` is set by then


# Cold, its base image is made from Debian packages (the JRE: 2 min) or Delve built.
@pytest.mark.timeout(600)
async def test_the_jvm_stops_at_a_breakpoint_through_jdwp(
    kube: Kube, cluster: ClusterInfo, cluster_name: str, namespace: str, env: Env, tmp_path: Path
) -> None:
    await seed_base_image("eclipse-temurin:17-jre", cluster_name, quiet=True)
    (tmp_path / "Server.java").write_text(JAVA_SERVER)
    await run(["javac", "-g", "--release", "17", "Server.java"], cwd=tmp_path, timeout=120)
    classes = {p.name: base64.b64encode(p.read_bytes()).decode() for p in tmp_path.glob("*.class")}
    await kube.apply({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "code", "namespace": namespace},
                      "binaryData": classes})  # fmt: skip
    deployment = workload(namespace)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container.update(image="eclipse-temurin:17-jre", command=["java", "-cp", "/app", "Server"])
    await run_supervised(kube, cluster, namespace, deployment, None)
    assert await eventually(lambda: get(env, namespace, 5), 60, 0.5) == '{"total": 45}'

    async with debugging(kube, cluster, DebugSpec("web", namespace, local_port=0)) as debugger:
        assert debugger.language is not None and debugger.language.name == "jvm"
        # The JDWP agent listens before main() runs: once the app answers, Server is loaded.
        assert await eventually(lambda: get(env, namespace, 5), 60, 0.5) == '{"total": 45}'
        jdwp = await Jdwp.connect(debugger.local_port)
        try:
            assert (await jdwp.version()).startswith("17")
            server = await jdwp.class_id("LServer;")
            handler = await jdwp.method_id(server, "lambda$main$0")
            placed = await jdwp.break_at(server, handler, JAVA_BREAK_LINE)
            request = asyncio.create_task(get(env, namespace))
            hit, thread = await jdwp.breakpoint_hit(60)
            assert hit == placed
            assert await jdwp.local_int(server, handler, thread, "total") == 45
            assert not request.done()  # held at the breakpoint
            await jdwp.resume()
            assert await asyncio.wait_for(request, 30) == '{"total": 45}'
        finally:
            await jdwp.close()
    assert await eventually(lambda: get(env, namespace, 5), 30, 0.5) == '{"total": 45}'


async def test_dev_debug_runs_the_app_under_its_debugger_across_a_rebuild(
    tmp_path: Path, namespace: str, docker_engine: None, cluster_name: str
) -> None:
    """`kubeloop dev --debug` on the add example: the debugger answers an IDE; a rebuild
    replaces the pod and the debugger follows, on the same local port."""
    folder = copy_example("add", tmp_path, namespace)
    config = folder / "kubeloop.yaml"
    config.write_text(config.read_text().replace("localPort: 8000", "localPort: 0"))
    session = await open_session(config, cluster=cluster_name)
    session.config.project.dev.cleanup = True
    loop = DevLoop(session, printer=lambda *_: None, debug=True)
    dashboard = await Dashboard.open()  # its Debuggers rows, as the page shows them
    dashboard.watch_session(session)
    loop.attach_dashboard(dashboard)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))

    async def attached() -> tuple[str, int]:
        """(pod, local port) of the debugger, once an IDE's attach got `initialized`."""
        _, debugger = loop.debuggers["deployment/add"]
        await asyncio.wait_for(debugger.ready.wait(), 5)
        dap = await Dap.connect(debugger.local_port)
        try:
            await dap.request("initialize", adapterID="debugpy", clientID="kubeloop-test",
                              linesStartAt1=True, columnsStartAt1=True, pathFormat="path")  # fmt: skip
            dap.send("attach", justMyCode=False)
            await dap.event("initialized", 10)
        finally:
            await dap.close()
        return debugger.pod, debugger.local_port

    try:
        first_pod, port = await eventually(attached, 120, 0.5)
        dockerfile = folder / "Dockerfile"
        dockerfile.write_text(dockerfile.read_text() + f"\nENV BUILD_MARK={namespace}\n")

        async def moved() -> tuple[str, int]:
            pod, local = await attached()
            assert pod != first_pod
            return pod, local

        assert (await eventually(moved, 120, 0.5))[1] == port

        def shown() -> dict[str, Any]:
            row: dict[str, Any] = dashboard.hub.rows["debuggers"]["deployment/add"]
            assert row["ready"] and row["pod"] != first_pod, row
            return row

        row = await eventually(shown, 10)
        assert row["language"] == "python" and row["address"] == f"127.0.0.1:{port}"
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        await dashboard.close()
        await session.close()
