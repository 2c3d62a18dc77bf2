"""The core loop on the real cluster: deploy the examples, prune, delete exactly what was
deployed, explain failing pods, and the dev loop's rebuild + port-forward + logs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from kubeloop.cluster import ClusterInfo
from kubeloop.cluster.native.iptables import programmed_service_addresses
from kubeloop.deploy import RolloutError
from kubeloop.devloop import open_session
from kubeloop.devloop.dev import DevLoop
from kubeloop.devloop.portforward import Forwarder
from kubeloop.kube import Kube
from kubeloop.proc import run
from tests.integration.conftest import eventually
from tests.integration.tools import ensure_buildx, ensure_helm

EXAMPLES = Path(__file__).parents[2] / "examples"


def copy_example(name: str, target: Path, namespace: str) -> Path:
    """A private copy of an example, in its own namespace."""
    folder = target / name
    shutil.copytree(EXAMPLES / name, folder)
    config = folder / "kubeloop.yaml"
    text = config.read_text()
    lines = [f"namespace: {namespace}" if line.startswith("namespace:") else line
             for line in text.splitlines()]  # fmt: skip
    if not any(line.startswith("namespace:") for line in lines):
        lines.insert(1, f"namespace: {namespace}")
    config.write_text("\n".join(lines) + "\n")
    return folder


# Seconds to wait for a new Service's first answer: kube-proxy programs its rules a
# moment after the endpoints are ready, and under a loaded CI run that moment has been
# longer than 5 s. Until then the native cluster refuses the connection.
NEW_SERVICE_SECONDS = 20.0


async def get_json(url: str) -> dict[str, object]:
    """GET JSON, once (wrap it in eventually() to wait for a new Service)."""
    async with httpx.AsyncClient(timeout=5) as client:
        reply = await client.get(url)
    reply.raise_for_status()
    return dict(reply.json())


async def deploy_project(config: Path, cluster_name: str) -> None:
    """Deploy a project once, as `kubeloop deploy` does."""
    session = await open_session(config, cluster=cluster_name)
    try:
        await session.deploy(quiet=True)
    finally:
        await session.close()


async def service_url(kube: Kube, namespace: str, name: str) -> str:
    svc = await kube.get(f"/api/v1/namespaces/{namespace}/services/{name}")
    assert svc is not None
    return f"http://{svc['spec']['clusterIP']}"


async def test_two_services_talk_through_dns_and_redeploy_is_a_no_op(
    tmp_path: Path,
    namespace: str,
    kube: Kube,
    docker_engine: None,
    cluster: ClusterInfo,
    cluster_name: str,
) -> None:
    folder = copy_example("stocks", tmp_path, namespace)
    session = await open_session(folder / "kubeloop.yaml", cluster=cluster_name)
    try:
        await session.deploy(quiet=True)
        url = await service_url(kube, namespace, "consumer")

        async def three_averages() -> dict[str, object]:
            averages = dict((await get_json(f"{url}/average"))["averages"])  # type: ignore[call-overload]
            assert len(averages) == 3, averages
            return averages

        # The first answer (a new Service), then the consumer's first three averages.
        averages = await eventually(three_averages, NEW_SERVICE_SECONDS + 10, 0.2)
        assert set(averages) == {"ACME", "GLOBEX", "INITECH"}
        again = await session.deploy(quiet=True)
        assert again.built == []  # same sources: no build, same tags, nothing to roll
    finally:
        await session.close()


async def test_prune_and_delete_touch_only_what_kubeloop_applied(
    tmp_path: Path, namespace: str, kube: Kube, docker_engine: None, cluster_name: str
) -> None:
    folder = copy_example("add", tmp_path, namespace)
    extra = folder / "k8s" / "extra.yaml"
    extra.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra}\ndata: {a: '1'}\n")
    foreign = {"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "not-ours", "namespace": namespace}}  # fmt: skip
    await kube.apply(foreign)
    session = await open_session(folder / "kubeloop.yaml", cluster=cluster_name)
    try:
        await session.deploy(quiet=True)
        # When deploy returns, kube-proxy already routes the new Service from the host:
        # the very first request is answered, no retry.
        url = await service_url(kube, namespace, "add")
        routed = programmed_service_addresses((await run(["iptables-save", "-t", "nat"])).stdout)
        assert url.removeprefix("http://") in routed
        reply = await get_json(f"{url}/add/2/40")
        assert reply["sum"] == 42
        cm_path = f"/api/v1/namespaces/{namespace}/configmaps"
        assert await kube.get(f"{cm_path}/extra") is not None

        extra.unlink()
        await session.deploy(quiet=True)
        assert await kube.get(f"{cm_path}/extra") is None  # pruned

        removed = await session.delete()
        assert sorted(removed) == sorted([f"deployment/add -n {namespace}",
                                          f"service/add -n {namespace}"])  # fmt: skip
        assert await kube.get(f"{cm_path}/not-ours") is not None
        assert await kube.get(f"{cm_path}/kubeloop-inventory-add") is None
    finally:
        await session.close()


def _broken_project(folder: Path, namespace: str, container: str) -> Path:
    folder.mkdir()
    (folder / "kubeloop.yaml").write_text(
        f"name: broken\nnamespace: {namespace}\nmanifests: {{raw: [app.yaml]}}\n"
        "deploy: {timeout: 60}\n"
    )
    (folder / "app.yaml").write_text(
        f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: broken}}
spec:
  selector: {{matchLabels: {{app: broken}}}}
  template:
    metadata: {{labels: {{app: broken}}}}
    spec:
      terminationGracePeriodSeconds: 0
      containers: [{container}]
""".replace("]\nNODESELECTOR]", "]\n      nodeSelector: {disk: ssd}")
    )  # a pod spec field after containers
    return folder / "kubeloop.yaml"


@pytest.mark.parametrize(
    ("container", "expected"),
    [
        ("{name: app, image: 'localhost:5000/does/not-exist:1'}", "the image cannot be pulled"),
        (
            "{name: app, image: 'python:3.11-slim', command: [python3, -c, "
            "\"print('config file missing: /etc/app.conf'); raise SystemExit(3)\"]}",
            "the container keeps crashing",
        ),
        (
            "{name: app, image: 'localhost:5000/pause:3.10'}]\nNODESELECTOR",
            "cannot be scheduled",
        ),
        (
            "{name: app, image: 'python:3.11-slim', command: [sleep, '600'], readinessProbe: "
            "{tcpSocket: {port: 9}, periodSeconds: 1}}",
            "readiness probe keeps failing",
        ),
    ],
    ids=["image-pull", "crash-loop", "unschedulable", "failing-probe"],
)
async def test_failing_pods_are_explained(
    tmp_path: Path, namespace: str, container: str, expected: str, cluster_name: str
) -> None:
    config = _broken_project(tmp_path / "broken", namespace, container)
    session = await open_session(config, cluster=cluster_name)
    try:
        with pytest.raises(RolloutError) as caught:
            await session.deploy(quiet=True)
    finally:
        await session.close()
    message = caught.value.message
    assert "pod broken-" in message and expected in message
    if "crashing" in expected:
        assert "config file missing: /etc/app.conf" in message  # the last log lines


async def test_dev_loop_syncs_or_rebuilds_and_keeps_forward_and_logs(
    tmp_path: Path, namespace: str, docker_engine: None, cluster_name: str
) -> None:
    folder = copy_example("add", tmp_path, namespace)
    config = folder / "kubeloop.yaml"
    config.write_text(config.read_text().replace("localPort: 8000", "localPort: 18411"))
    session = await open_session(config, cluster=cluster_name)
    lines: list[tuple[str, str]] = []
    iterations = []
    loop = DevLoop(session, printer=lambda prefix, _c, line: lines.append((prefix, line)),
                   on_iteration=iterations.append)  # fmt: skip
    session.config.project.dev.cleanup = True
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))

    async def answer_with(key: str) -> dict[str, object]:
        async def reply_with_key() -> dict[str, object]:
            reply = await get_json("http://127.0.0.1:18411/add/1/2")
            assert key in reply, reply
            return reply

        return await eventually(reply_with_key, 30)

    def forwarding_and_syncing() -> bool:
        ready = bool(loop.forwarders) and loop.forwarders[0].ready.is_set()
        return ready and bool(loop.syncers) and bool(loop.syncers[0].pods)

    try:
        await eventually(forwarding_and_syncing, 30)
        forwarder: Forwarder = loop.forwarders[0]
        assert (await get_json("http://127.0.0.1:18411/add/1/2"))["sum"] == 3
        first_pod = forwarder.current_pod

        # 1. A source file under the sync rule: live in the same pod, nothing rebuilt.
        key = f"sum_{namespace.replace('-', '_')}"
        server = folder / "app" / "server.py"
        server.write_text(server.read_text().replace('"sum":', f'"{key}":'))
        assert (await answer_with(key)).get(key) == 3
        assert forwarder.current_pod == first_pod and iterations == []

        # 2. The Dockerfile (outside the sync rule): rebuilt, rolled out, forward moved.
        dockerfile = folder / "Dockerfile"
        dockerfile.write_text(dockerfile.read_text() + f"\nENV BUILD_MARK={namespace}\n")
        # The forward may move before deploy() returns.
        await eventually(lambda: iterations and forwarder.current_pod != first_pod, 60)
        assert iterations and iterations[0].rebuilt == ["add"]
        assert forwarder.current_pod != first_pod and forwarder.moves >= 1
        assert (await answer_with(key)).get(key) == 3  # the new image has the synced code

        def new_pod_logged() -> bool:
            logged = any(p.startswith(str(forwarder.current_pod)) and "add 1.0 2.0" in line
                         for p, line in lines)  # fmt: skip
            assert logged, lines
            return logged

        await eventually(new_pod_logged, 10)  # the new pod's log stream follows in a moment
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await session.close()
    # dev.cleanup: what dev deployed is gone once it stops.
    kube = await Kube.connect(session.cluster.kubeconfig, session.cluster.context)
    try:
        assert await kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/add") is None
    finally:
        await kube.close()


@pytest.mark.parametrize("how", ["ctrl-c in a terminal", "sigint", "sigterm", "sigkill"])
async def test_stopping_the_dev_command_leaves_nothing_running(
    tmp_path: Path, namespace: str, kube: Kube, docker_engine: None, how: str
) -> None:
    """The real CLI, as a developer runs it: `kubeloop dev --cleanup`, then stopped. A
    terminal's Ctrl-C signals the whole process group (kubectl children too); SIGINT or
    SIGTERM to kubeloop alone (an IDE's stop button, a process manager) must stop it the
    same way: exit 128+signal without a traceback, what dev deployed removed (its
    dev-mode change with it). Even after SIGKILL, no port-forward or agent stream is
    left running: the kernel ends them with kubeloop."""
    from kubeloop.cluster.native.sweep import processes_mentioning

    folder = copy_example("add", tmp_path, namespace)
    config = folder / "kubeloop.yaml"
    config.write_text(config.read_text().replace("localPort: 8000", "localPort: 18412"))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubeloop", "dev", "--config", str(config), "--cleanup",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its own process group, as a shell gives a foreground job
    )  # fmt: skip
    assert process.stdout is not None
    output = bytearray()
    reader = asyncio.create_task(_collect(process.stdout, output))
    try:

        async def answer() -> dict[str, object]:
            if process.returncode is not None:  # pytest.fail ends eventually() at once
                pytest.fail(f"kubeloop dev exited ({process.returncode}):\n{output.decode()}")
            return await get_json("http://127.0.0.1:18412/add/20/22")

        answered = await eventually(answer, 180, 0.2)
        assert answered.get("sum") == 42, output.decode()
        assert processes_mentioning(namespace)  # its port-forward and agent streams
        if how == "ctrl-c in a terminal":
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.send_signal({"sigint": signal.SIGINT, "sigterm": signal.SIGTERM,
                                 "sigkill": signal.SIGKILL}[how])  # fmt: skip
        code = await asyncio.wait_for(process.wait(), 30)
    finally:
        if process.returncode is None:
            process.kill()
        await reader
    text = output.decode()

    def no_kubectl_left_behind() -> bool:
        assert processes_mentioning(namespace) == []
        return True

    # SIGKILL: the kernel signals the children as kubeloop goes.
    await eventually(no_kubectl_left_behind, 5)
    with pytest.raises(httpx.ConnectError):
        await get_json("http://127.0.0.1:18412/add/1/1")  # the port is free again
    if how == "sigkill":
        return
    assert code == (143 if how == "sigterm" else 130), text
    assert "Traceback" not in text, text
    assert "removed" in text and "objects that dev deployed" in text, text
    assert await kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/add") is None


async def _collect(stream: asyncio.StreamReader, into: bytearray) -> None:
    while chunk := await stream.read(65536):
        into += chunk


async def test_kustomize_overlays_render_and_deploy(
    tmp_path: Path, namespace: str, kube: Kube, cluster_name: str
) -> None:
    base = tmp_path / "base"
    overlay = tmp_path / "overlays" / "dev"
    base.mkdir()
    overlay.mkdir(parents=True)
    (base / "kustomization.yaml").write_text("resources: [cm.yaml]\n")
    (base / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n"
                                  "data: {level: base}\n")  # fmt: skip
    (overlay / "kustomization.yaml").write_text(
        "resources: [../../base]\nnamePrefix: dev-\n"
        "patches:\n- patch: |-\n    apiVersion: v1\n    kind: ConfigMap\n"
        "    metadata: {name: settings}\n    data: {level: dev}\n"
    )
    (tmp_path / "kubeloop.yaml").write_text(
        f"name: kz\nnamespace: {namespace}\nmanifests: {{kustomize: [overlays/dev]}}\n"
    )
    await deploy_project(tmp_path / "kubeloop.yaml", cluster_name)
    found = await kube.get(f"/api/v1/namespaces/{namespace}/configmaps/dev-settings")
    assert found is not None and found["data"] == {"level": "dev"}


# A tiny HTTP service per language `kubeloop init` knows, with no dependencies to fetch.
INIT_SOURCES = {
    "python": {"main.py": (
        "import http.server, os\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200); self.end_headers()\n"
        "        self.wfile.write(b'greetings from python')\n"
        "http.server.HTTPServer(('', int(os.environ['PORT'])), H).serve_forever()\n")},
    "node": {
        "package.json": '{"name": "greeter", "version": "1.0.0", "main": "index.js"}\n',
        "index.js": (
            "require('http').createServer((req, res) => res.end('greetings from node'))\n"
            "  .listen(Number(process.env.PORT));\n")},
    "go": {
        "go.mod": "module example.com/greeter\n\ngo 1.19\n",
        "main.go": (
            "package main\n\nimport (\n\t\"net/http\"\n\t\"os\"\n)\n\n"
            "func main() {\n"
            "\thttp.HandleFunc(\"/\", func(w http.ResponseWriter, r *http.Request) {\n"
            "\t\tw.Write([]byte(\"greetings from go\"))\n\t})\n"
            "\thttp.ListenAndServe(\":\"+os.Getenv(\"PORT\"), nil)\n}\n")},
}  # fmt: skip
INIT_BASES = {"python": [], "node": ["node:18-slim"], "go": ["golang:1.19", "debian:bookworm-slim"]}


@pytest.mark.parametrize("language", ["python", "node", "go"])
async def test_init_generates_a_project_that_deploys(
    tmp_path: Path,
    namespace: str,
    kube: Kube,
    docker_engine: None,
    language: str,
    cluster_name: str,
) -> None:
    """What `kubeloop init` writes builds and runs as generated, from base images seeded
    from Debian packages (node 18, Go 1.19 then a Debian runtime stage)."""
    from kubeloop.cluster import seed_base_image

    for base in INIT_BASES[language]:
        await seed_base_image(base, cluster_name, quiet=True)
    service = tmp_path / "greeter"
    service.mkdir()
    for name, text in INIT_SOURCES[language].items():
        (service / name).write_text(text)
    result = await run([sys.executable, "-m", "kubeloop", "init", str(service)])
    assert "wrote" in result.stdout
    config = service / "kubeloop.yaml"
    config.write_text(
        config.read_text().replace("name: greeter", f"name: greeter\nnamespace: {namespace}")
    )
    await deploy_project(config, cluster_name)
    url = await service_url(kube, namespace, "greeter")
    async with httpx.AsyncClient(timeout=5) as client:

        async def greets() -> bool:
            text = (await client.get(url)).text
            assert text == f"greetings from {language}"
            return True

        await eventually(greets, NEW_SERVICE_SECONDS)


def test_the_add_example_passes_its_own_tests_and_linter() -> None:
    example = EXAMPLES / "add"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    str(example / "tests")], check=True, cwd=example)  # fmt: skip
    subprocess.run([sys.executable, "-m", "ruff", "check", str(example)], check=True)


@pytest.mark.parametrize("builder", ["buildah", "podman", "buildkit"])
async def test_other_builders_build_and_deploy(
    tmp_path: Path,
    namespace: str,
    kube: Kube,
    builder: str,
    monkeypatch: pytest.MonkeyPatch,
    cluster_name: str,
) -> None:
    """buildah and podman (installed on demand) build without a Docker engine; Docker Hub
    base images resolve to the cluster registry through kubeloop's registries.conf. With
    the buildx plugin (built from its Go module into kubeloop's cache), 'docker' artifacts
    build with BuildKit, offline, from the seeded base image."""
    kind = builder
    if builder == "buildkit":
        from kubeloop.build import ensure_docker_engine

        await ensure_docker_engine(quiet=True)
        plugins = tmp_path / "docker-config" / "cli-plugins"
        plugins.mkdir(parents=True)
        (plugins / "docker-buildx").symlink_to(await ensure_buildx())
        monkeypatch.setenv("DOCKER_CONFIG", str(plugins.parent))
        kind = "docker"
    else:
        from kubeloop.apt import ensure_commands

        await ensure_commands((builder,), quiet=True)
    folder = tmp_path / "hello"
    shutil.copytree(EXAMPLES / "hello", folder)
    (folder / "server.py").write_text(
        (folder / "server.py").read_text() + f"\n# {builder} {namespace}\n"
    )
    (folder / "kubeloop.yaml").write_text(
        f"name: {builder}\nnamespace: {namespace}\n"
        f"artifacts: [{{image: hello, builder: {kind}}}]\nmanifests: {{raw: [pod.yaml]}}\n"
    )
    (folder / "pod.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: hello}\n"
        "spec: {containers: [{name: hello, image: hello}]}\n"
    )
    session = await open_session(folder / "kubeloop.yaml", cluster=cluster_name)
    try:
        timings = await session.build()
        assert timings.built == ["hello"]
        image = session.last_built["hello"]
        assert image.startswith(f"localhost:5000/{builder}/hello:kl-")
        await session.deploy(quiet=True)
    finally:
        await session.close()
    if builder == "buildkit":
        history = await run(["docker", "history", "--no-trunc", "--format", "{{.Comment}}", image])
        assert "buildkit.dockerfile.v0" in history.stdout  # BuildKit's mark; classic has none
    pod = await kube.wait_pod_running(namespace, "hello", 60)
    async with httpx.AsyncClient(timeout=5) as client:
        reply = await client.get(f"http://{pod['status']['podIP']}:8080/{builder}")
    assert reply.text == f"hello from hello path=/{builder}\n"


async def test_helm_charts_render_and_deploy(
    tmp_path: Path, namespace: str, kube: Kube, monkeypatch: pytest.MonkeyPatch, cluster_name: str
) -> None:
    """With helm installed (built from its Go module into kubeloop's cache when missing)."""
    helm = await ensure_helm()
    chart = tmp_path / "charts" / "cfg"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: cfg\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("level: chart-default\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: '{{ .Release.Name }}-settings'}\n"
        "data: {level: '{{ .Values.level }}'}\n"
    )
    (tmp_path / "values-dev.yaml").write_text("level: from-values-file\n")
    (tmp_path / "kubeloop.yaml").write_text(
        f"name: hm\nnamespace: {namespace}\nmanifests:\n  helm:\n    - chart: charts/cfg\n"
        "      release: demo\n      valuesFiles: [values-dev.yaml]\n"
    )
    monkeypatch.setenv("PATH", f"{helm.parent}:{os.environ['PATH']}")
    await deploy_project(tmp_path / "kubeloop.yaml", cluster_name)
    found = await kube.get(f"/api/v1/namespaces/{namespace}/configmaps/demo-settings")
    assert found is not None and found["data"] == {"level": "from-values-file"}


def _workloads_project(folder: Path, namespace: str) -> Path:
    """A Deployment, a StatefulSet, a DaemonSet and a Job under one 'restart: process' sync
    rule; no image to build."""
    folder.mkdir()
    (folder / "src").mkdir()
    (folder / "src" / "file.txt").write_text("synced\n")
    pod = ("    metadata: {labels: {app: KIND, dev: 'yes'}}\n    spec:\n"
           "      terminationGracePeriodSeconds: 0\nRESTART"
           "      containers: [{name: main, image: 'python:3.11-slim', "
           "command: [sleep, '3600']}]\n")  # fmt: skip
    docs = []
    for kind, api, extra in [("Deployment", "apps/v1", ""), ("StatefulSet", "apps/v1", "  serviceName: s\n"),
                             ("DaemonSet", "apps/v1", ""), ("Job", "batch/v1", "")]:  # fmt: skip
        name = kind.lower()
        selector = "" if kind == "Job" else f"  selector: {{matchLabels: {{app: {name}}}}}\n"
        restart = "      restartPolicy: Never\n" if kind == "Job" else ""
        docs.append(f"apiVersion: {api}\nkind: {kind}\nmetadata: {{name: {name}}}\nspec:\n"
                    f"{extra}{selector}  template:\n"
                    + pod.replace("KIND", name).replace("RESTART", restart))  # fmt: skip
    (folder / "workloads.yaml").write_text("---\n".join(docs))
    (folder / "kubeloop.yaml").write_text(
        f"name: wl\nnamespace: {namespace}\nmanifests: {{raw: [workloads.yaml]}}\n"
        "sync: [{selector: {dev: 'yes'}, src: src, dest: /srv, restart: process}]\n"
    )
    return folder / "kubeloop.yaml"


WRAPPED = ("deployment", "statefulset", "daemonset")


async def _templates(kube: Kube, namespace: str) -> dict[str, tuple[str, dict[str, str]]]:
    """Each workload's live pod template (as JSON) and kubeloop's annotations (the
    controllers' own, like the revision, count rollouts)."""
    found = {}
    for name in (*WRAPPED, "job"):
        group = "batch" if name == "job" else "apps"
        live = await kube.get(f"/apis/{group}/v1/namespaces/{namespace}/{name}s/{name}")
        assert live is not None, name
        annotations = live["metadata"].get("annotations") or {}
        found[name] = (json.dumps(live["spec"]["template"], sort_keys=True),
                       {k: v for k, v in annotations.items() if k.startswith("kubeloop.dev/")})  # fmt: skip
    return found


async def _dev_until_deployed(session: object, keep: bool) -> None:
    """Run the dev loop until its first deploy is done, then stop it as Ctrl-C would."""
    loop = DevLoop(session, printer=lambda *_: None)  # type: ignore[arg-type]
    loop.session.config.project.dev.keep_changes = keep
    task = asyncio.create_task(loop.run())
    await eventually(lambda: loop.syncers or task.done(), 180, 0.2)
    assert loop.syncers, "dev did not deploy"
    task.cancel()  # what SIGINT/SIGTERM do to the command's task
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 60)


async def test_dev_mode_change_is_undone_when_dev_stops_and_reset_covers_every_kind(
    tmp_path: Path, namespace: str, kube: Kube, cluster_name: str
) -> None:
    """The restored workloads are identical to a plain deploy's (the pod template's diff is
    empty): when dev stops (default), and by reset after `dev` with keepChanges. Jobs are
    not wrapped (immutable pod template), so there is nothing to undo there."""
    from kubeloop.devloop.session import Session
    from kubeloop.sync.devmode import AGENT, ORIGINAL, reset

    config = _workloads_project(tmp_path / "wl", namespace)
    session: Session = await open_session(config, cluster=cluster_name)
    try:
        await session.deploy(quiet=True)
        plain = await _templates(kube, namespace)
        assert all(ORIGINAL not in annotations for _, annotations in plain.values())

        await _dev_until_deployed(session, keep=False)
        assert await _templates(kube, namespace) == plain  # undone as dev stopped

        await _dev_until_deployed(session, keep=True)
        kept = await _templates(kube, namespace)
        for name in WRAPPED:
            assert AGENT in kept[name][0] and ORIGINAL in kept[name][1], name
        assert kept["job"] == plain["job"]  # a Job is never wrapped
        restored = await reset(kube, namespace, "wl")
        assert sorted(restored) == sorted(f"{name}/{name}" for name in WRAPPED)
        assert await _templates(kube, namespace) == plain
        assert await reset(kube, namespace, "wl") == []  # nothing left to undo
    finally:
        await session.close()


async def test_sigterm_to_the_dev_command_restores_the_workloads(
    tmp_path: Path, namespace: str, kube: Kube, cluster_name: str
) -> None:
    """The real CLI without --cleanup: SIGTERM (an IDE's stop button) ends it cleanly and
    the workloads are back as a plain deploy left them."""
    config = _workloads_project(tmp_path / "wl", namespace)
    await deploy_project(config, cluster_name)
    plain = await _templates(kube, namespace)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubeloop", "dev", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    output = bytearray()
    reader = asyncio.create_task(_collect(process.stdout, output))
    try:

        def watching() -> bool:
            if b"watching" in output:
                return True
            if process.returncode is not None:  # pytest.fail ends eventually() at once
                pytest.fail(f"kubeloop dev exited ({process.returncode}):\n{output.decode()}")
            return False

        await eventually(watching, 180, 0.2)
        wrapped = await _templates(kube, namespace)
        assert all(wrapped[name] != plain[name] for name in WRAPPED), output.decode()
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 60)
    finally:
        if process.returncode is None:
            process.kill()
        await reader
    text = output.decode()
    assert code == 143 and "Traceback" not in text, text
    assert "restored deployment/deployment" in text, text
    assert await _templates(kube, namespace) == plain
