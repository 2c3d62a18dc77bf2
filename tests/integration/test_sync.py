"""Live sync on the real cluster: images with and without a shell, only differences sent,
every kind of change, ignore files, new pods, dropped streams, process restarts."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubeloop.agent import AgentError, AgentStream
from kubeloop.cluster import ClusterInfo
from kubeloop.kube import Kube
from kubeloop.sync import Ignore, Syncer, SyncRule, scan
from tests.integration.conftest import eventually

PYTHON = "python:3.11-slim"
DISTROLESS = "localhost:5000/pause:3.10"  # one static binary, no shell, tar or Python


def deployment(name: str, namespace: str, image: str, replicas: int = 1) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": image}
    if image == PYTHON:
        container["command"] = ["sleep", "3600"]
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"terminationGracePeriodSeconds": 0,
                                       "containers": [container]}}},
    }  # fmt: skip


async def rolled_out(kube: Kube, namespace: str, name: str, replicas: int = 1) -> None:
    await kube.wait_for(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
                        lambda d: d.get("status", {}).get("readyReplicas") == replicas,
                        f"{name} ready", 90)  # fmt: skip


def tree(root: Path) -> None:
    (root / "pkg").mkdir(parents=True)
    (root / "main.py").write_text("print('v1')\n")
    (root / "pkg" / "util.py").write_text("X = 1\n")
    (root / "run.sh").write_text("#!/bin/sh\necho run\n")
    (root / "run.sh").chmod(0o755)
    (root / "current").symlink_to("main.py")


async def remote_matches_local(stream: AgentStream, root: Path, remote: str,
                               excludes: tuple[str, ...] = ()) -> None:  # fmt: skip
    local = scan(root, Ignore(root, list(excludes)))
    listing = await stream.listing(remote)
    assert set(listing) == set(local), (sorted(listing), sorted(local))
    for rel, entry in local.items():
        assert listing[rel].kind == entry.kind, rel
        if entry.kind == "F":
            assert listing[rel].digest == entry.digest and listing[rel].mode == entry.mode, rel
        if entry.kind == "L":
            assert listing[rel].digest == entry.digest, rel


async def test_sync_into_images_with_and_without_a_shell(
    tmp_path: Path, namespace: str, kube: Kube, cluster: ClusterInfo
) -> None:
    tree(tmp_path / "src")
    for name, image in (("py", PYTHON), ("bare", DISTROLESS)):
        await kube.apply(deployment(name, namespace, image))
        await rolled_out(kube, namespace, name)
        syncer = Syncer(kube, cluster, namespace, f"app={name}",
                        [SyncRule(tmp_path / "src", "/srv/app")])  # fmt: skip
        await syncer.refresh_pods()
        try:
            (synced,) = syncer.pods.values()
            assert synced.sent_files == 3  # three files (the symlink is not a file)
            await remote_matches_local(synced.stream, tmp_path / "src", "/srv/app")
            (tmp_path / "src" / "main.py").write_text(f"print('{name}')\n")
            batch = await syncer.push({str(tmp_path / "src" / "main.py")})
            assert batch is not None and batch.written == 1
            assert await synced.stream.read("/srv/app/main.py") == f"print('{name}')\n".encode()
        finally:
            for synced in syncer.pods.values():
                await synced.stream.close()
        # No pod restart was needed to start syncing.
        pods = await kube.request("GET", f"/api/v1/namespaces/{namespace}/pods",
                                  params={"labelSelector": f"app={name}"})  # fmt: skip
        assert [p["status"]["containerStatuses"][0]["restartCount"] for p in pods["items"]] == [0]


async def test_initial_sync_sends_only_differences(
    tmp_path: Path, namespace: str, kube: Kube, cluster: ClusterInfo
) -> None:
    tree(tmp_path / "src")
    await kube.apply(deployment("web", namespace, PYTHON))
    await rolled_out(kube, namespace, "web")
    rule = [SyncRule(tmp_path / "src", "/app")]
    first = Syncer(kube, cluster, namespace, "app=web", rule)
    await first.refresh_pods()
    (synced,) = first.pods.values()
    assert synced.sent_files == 3  # three files (the symlink is not a file)
    await synced.stream.close()

    (tmp_path / "src" / "pkg" / "util.py").write_text("X = 2\n")
    second = Syncer(kube, cluster, namespace, "app=web", rule)
    await second.refresh_pods()
    (again,) = second.pods.values()
    assert again.sent_files == 1  # only the changed file
    await remote_matches_local(again.stream, tmp_path / "src", "/app")
    await again.stream.close()


async def test_every_kind_of_change_and_ignore_files(
    tmp_path: Path, namespace: str, kube: Kube, cluster: ClusterInfo
) -> None:
    src = tmp_path / "src"
    tree(src)
    (src / ".gitignore").write_text("*.log\n")
    (src / "pkg" / ".gitignore").write_text("generated/\n")
    (src / ".dockerignore").write_text("secrets.txt\n")
    await kube.apply(deployment("web", namespace, PYTHON))
    await rolled_out(kube, namespace, "web")
    syncer = Syncer(
        kube, cluster, namespace, "app=web", [SyncRule(src, "/app", ("*.tmp",))], on_event=print
    )
    await syncer.refresh_pods()
    (synced,) = syncer.pods.values()
    try:
        changed: set[str] = set()

        def touch(path: Path) -> None:
            changed.add(str(path))

        (src / "main.py").unlink()  # delete
        touch(src / "main.py")
        (src / "pkg" / "util.py").rename(src / "pkg" / "helpers.py")  # rename
        touch(src / "pkg" / "util.py")
        touch(src / "pkg" / "helpers.py")
        (src / "new" / "deep").mkdir(parents=True)  # new directories
        (src / "new" / "deep" / "a.txt").write_text("a")
        touch(src / "new")
        (src / "pkg" / "helpers.py").chmod(0o700)  # mode
        (src / "current").unlink()
        (src / "current").symlink_to("pkg/helpers.py")  # symlink retargeted
        touch(src / "current")
        big = src / "big.bin"  # a large file, streamed
        with big.open("wb") as handle:
            for _ in range(64):
                handle.write(os.urandom(1 << 20))
        touch(big)
        for ignored in ("app.log", "secrets.txt", "x.tmp", "pkg/generated/out.py"):
            (src / ignored).parent.mkdir(parents=True, exist_ok=True)
            (src / ignored).write_text("ignored")
            touch(src / ignored)
        await syncer.push(changed)
        await remote_matches_local(synced.stream, src, "/app", ("*.tmp",))
        listing = await synced.stream.listing("/app")
        assert "main.py" not in listing and "pkg/util.py" not in listing
        assert listing["big.bin"].kind == "F" and listing["pkg/helpers.py"].mode == 0o700
        assert not {"app.log", "secrets.txt", "x.tmp", "pkg/generated"} & set(listing)
    finally:
        await synced.stream.close()


async def test_new_pods_and_dropped_streams_are_brought_up_to_date(
    tmp_path: Path, namespace: str, kube: Kube, cluster: ClusterInfo
) -> None:
    src = tmp_path / "src"
    tree(src)
    await kube.apply(deployment("web", namespace, PYTHON, replicas=2))
    await rolled_out(kube, namespace, "web", 2)
    syncer = Syncer(kube, cluster, namespace, "app=web", [SyncRule(src, "/app")])
    stop = asyncio.Event()
    task = asyncio.create_task(syncer.run(stop, pod_interval=0.2))
    try:
        await eventually(lambda: len(syncer.pods) == 2, 10, 0.05)  # every replica
        (src / "main.py").write_text("print('all replicas')\n")

        async def every_replica_updated() -> bool:
            contents = [await p.stream.read("/app/main.py") for p in list(syncer.pods.values())]
            assert contents == [b"print('all replicas')\n"] * 2
            return True

        await eventually(every_replica_updated, 5, 0.05)

        # Scale up: the new pod is found and synced.
        scaled = deployment("web", namespace, PYTHON, replicas=3)
        await kube.apply(scaled)
        await rolled_out(kube, namespace, "web", 3)
        await eventually(lambda: len(syncer.pods) == 3, 10, 0.05)

        # Drop one stream (as a lost connection would); a change made meanwhile arrives.
        victim_name, victim = next(iter(syncer.pods.items()))
        os.kill(victim.stream.process.pid, signal.SIGKILL)
        dropped = time.monotonic()
        (src / "pkg" / "util.py").write_text("X = 'after the drop'\n")

        async def resynced() -> bool:
            synced = syncer.pods.get(victim_name)
            fresh = synced is not None and synced.stream.alive and synced is not victim
            wanted = b"X = 'after the drop'\n"
            return (
                fresh
                and synced is not None
                and await synced.stream.read("/app/pkg/util.py") == wanted
            )

        await eventually(resynced, 5, 0.05)
        assert time.monotonic() - dropped < 5
        assert await syncer.pods[victim_name].stream.read("/app/pkg/util.py") == (
            b"X = 'after the drop'\n")  # fmt: skip
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_process_restart_keeps_the_pod_and_reset_restores_it(
    tmp_path: Path, namespace: str, kube: Kube, docker_engine: None, cluster_name: str
) -> None:
    import shutil

    from kubeloop.devloop import open_session
    from kubeloop.sync.devmode import ORIGINAL, reset

    folder = tmp_path / "add"
    shutil.copytree(Path(__file__).parents[2] / "examples" / "add", folder)
    config = folder / "kubeloop.yaml"
    config.write_text(config.read_text().replace("namespace: add", f"namespace: {namespace}"))
    session = await open_session(config, cluster=cluster_name)
    try:
        await session.deploy(quiet=True, dev_mode=True)
        path = f"/apis/apps/v1/namespaces/{namespace}/deployments/add"
        live = await kube.get(path)
        assert live is not None and ORIGINAL in live["metadata"]["annotations"]
        # The app folder's rule (the add example syncs its tests too).
        syncer = next(s for s in session.syncers() if s.rules[0].remote == "/app")
        stop = asyncio.Event()
        task = asyncio.create_task(syncer.run(stop))

        async def synced_pod_ip() -> str:
            assert syncer.pods, "no pod synced yet"
            pod = await kube.get(f"/api/v1/namespaces/{namespace}/pods/{next(iter(syncer.pods))}")
            assert pod is not None
            return str(pod["status"]["podIP"])

        pod_ip = await eventually(synced_pod_ip, 10, 0.05)
        server = folder / "app" / "server.py"
        server.write_text(server.read_text().replace('"sum":', '"synced_sum":'))
        saved = time.monotonic()
        async with httpx.AsyncClient(timeout=1) as client:

            async def synced_body() -> dict[str, object]:
                body = dict((await client.get(f"http://{pod_ip}:8000/add/2/3")).json())
                assert "synced_sum" in body, body
                return body

            body = await eventually(synced_body, 10, 0.02)
        assert body.get("synced_sum") == 5
        assert time.monotonic() - saved < 3
        pods = await kube.request("GET", f"/api/v1/namespaces/{namespace}/pods",
                                  params={"labelSelector": "app=add"})  # fmt: skip
        assert [p["status"]["containerStatuses"][0]["restartCount"] for p in pods["items"]] == [0]
        stop.set()
        await asyncio.wait_for(task, 30)

        assert await reset(kube, namespace) == ["deployment/add"]
        restored = await kube.get(path)
        assert restored is not None
        assert ORIGINAL not in (restored["metadata"].get("annotations") or {})
        template = restored["spec"]["template"]["spec"]
        assert not template.get("initContainers")
        assert template["containers"][0].get("command") is None
    finally:
        await session.close()


async def two_way_syncer(tmp_path: Path, namespace: str, kube: Kube,
                         cluster: ClusterInfo) -> tuple[Path, Syncer]:  # fmt: skip
    """A local tree and a two-way syncer for it, targeting a fresh one-pod Deployment."""
    src = tmp_path / "src"
    tree(src)
    await kube.apply(deployment("web", namespace, PYTHON))
    await rolled_out(kube, namespace, "web")
    return src, Syncer(kube, cluster, namespace, "app=web", [SyncRule(src, "/app", two_way=True)])


async def test_two_way_brings_container_changes_back_and_keeps_conflicts(
    tmp_path: Path, namespace: str, kube: Kube, cluster: ClusterInfo, env: Any
) -> None:
    from tests.integration.conftest import kubectl

    src, syncer = await two_way_syncer(tmp_path, namespace, kube, cluster)
    await syncer.refresh_pods()
    (pod,) = syncer.pods
    try:

        async def in_container(script: str) -> None:
            await kubectl(env, "exec", "-n", namespace, pod, "-c", "app", "--",
                          "python3", "-c", script)  # fmt: skip

        # The app writes a new file and changes one: both come back.
        await in_container(
            "import os; os.makedirs('/app/migrations', exist_ok=True);"
            "open('/app/migrations/0001_init.py','w').write('# generated\\n');"
            "open('/app/pkg/util.py','w').write('X = 99\\n')"
        )
        events = await syncer.pull()
        assert (src / "migrations" / "0001_init.py").read_text() == "# generated\n"
        assert (src / "pkg" / "util.py").read_text() == "X = 99\n"
        assert any("0001_init.py" in e for e in events)
        # Pulled files are not sent back (no echo).
        assert await syncer.push({str(src / "pkg" / "util.py")}) is None

        # Both sides change the same file: neither version is lost.
        (src / "main.py").write_text("print('local edit')\n")
        # Noticed locally but not yet pushed (as between a save and its batch):
        assert syncer.changes({str(src / "main.py")})
        await in_container("open('/app/main.py','w').write(\"print('container edit')\\n\")")
        events = await syncer.pull()
        assert (src / "main.py").read_text() == "print('local edit')\n"
        assert (src / "main.py.remote-conflict").read_text() == "print('container edit')\n"
        assert any(e.startswith("conflict: main.py") for e in events)

        # Deleted in the container (and unchanged locally): removed locally too.
        await in_container("import os; os.remove('/app/run.sh')")
        await syncer.pull()
        assert not (src / "run.sh").exists()
    finally:
        for synced in syncer.pods.values():
            await synced.stream.close()


async def test_two_way_follows_the_agents_change_reports_not_a_poll(
    tmp_path: Path, namespace: str, kube: Kube, cluster: ClusterInfo, env: Any
) -> None:
    from tests.integration.conftest import kubectl

    src, syncer = await two_way_syncer(tmp_path, namespace, kube, cluster)
    events: list[str] = []
    syncer.on_event = events.append
    stop = asyncio.Event()
    # A poll every 60 s could not explain anything arriving within the waits below.
    task = asyncio.create_task(syncer.run(stop, pull_interval=60))
    try:
        await eventually(lambda: syncer.pods, 30)
        (pod,) = syncer.pods

        async def in_container(script: str) -> None:
            await kubectl(env, "exec", "-n", namespace, pod, "-c", "app", "--",
                          "python3", "-c", script)  # fmt: skip

        await asyncio.sleep(0.5)  # the initial sync and the first full look are done
        # A changed file, and a new folder made with files in it at once.
        await in_container(
            "import os; open('/app/pkg/util.py','w').write('X = 7\\n');"
            "os.makedirs('/app/db/migrations/v1');"
            "open('/app/db/migrations/v1/0001.sql','w').write('create table t();\\n')"
        )
        await eventually(lambda: (src / "pkg" / "util.py").read_text() == "X = 7\n", 5)
        new_file = src / "db" / "migrations" / "v1" / "0001.sql"
        await eventually(new_file.exists, 5)
        assert new_file.read_text() == "create table t();\n"
        # A file moved within the folder, and a folder removed as a whole.
        await in_container("import os, shutil; os.rename('/app/main.py', '/app/app.py');"
                           "shutil.rmtree('/app/db')")  # fmt: skip
        await eventually(lambda: not (src / "main.py").exists(), 5)
        await eventually(lambda: not new_file.exists(), 5)
        await eventually(lambda: not (src / "db").exists(), 5)  # emptied folders too
        assert (src / "app.py").read_text() == "print('v1')\n"
        # Local changes still go out, and are neither pulled back as a conflict nor
        # taken for deletions (a name starting with a space once was).
        (src / "pkg" / "util.py").write_text("X = 'local'\n")
        (src / " notes.txt").write_text("mine\n")
        stream = syncer.pods[pod].stream

        async def pushed() -> bool:
            return (await stream.read("/app/pkg/util.py") == b"X = 'local'\n"
                    and await stream.read("/app/ notes.txt") == b"mine\n")  # fmt: skip

        await eventually(pushed, 5, 0.01)
        await asyncio.sleep(0.5)
        assert (src / "pkg" / "util.py").read_text() == "X = 'local'\n"
        assert (src / " notes.txt").read_text() == "mine\n"
        assert not [e for e in events if "conflict" in e or "polling" in e], events
        # The watched folder itself replaced (its watch ends): watched afresh, so what
        # is written there later still arrives within seconds.
        await in_container("import os; os.rename('/app', '/app.old'); os.makedirs('/app');"
                           "open('/app/fresh.txt', 'w').write('1')")  # fmt: skip
        await eventually((src / "fresh.txt").exists, 5)
        await eventually(lambda: not (src / "app.py").exists(), 5)  # deleted over there
        await asyncio.sleep(0.3)
        await in_container("open('/app/later.txt', 'w').write('2')")
        await eventually((src / "later.txt").exists, 5)
        assert not [e for e in events if "polling" in e], events
        # A folder that cannot be watched is an error the syncer turns into polling.
        with pytest.raises(AgentError, match="outside every sync destination"):
            await stream.watch("/no/such/folder", lambda _report: None)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_container_restart_with_a_volume_destination(
    tmp_path: Path, namespace: str, kube: Kube, docker_engine: None, cluster_name: str
) -> None:
    """restart: container — the supervisor exits, the kubelet restarts the container, the
    synced files survive on the volume, and the new container serves them."""
    from kubeloop.devloop import open_session

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "message.txt").write_text("first")
    (tmp_path / "app.yaml").write_text("""apiVersion: apps/v1
kind: Deployment
metadata: {name: reader}
spec:
  selector: {matchLabels: {app: reader}}
  template:
    metadata: {labels: {app: reader}}
    spec:
      terminationGracePeriodSeconds: 1
      volumes: [{name: data, emptyDir: {}}]
      containers:
        - name: reader
          image: python:3.11-slim
          volumeMounts: [{name: data, mountPath: /data}]
          command: [python3, -c, "import http.server as h, pathlib\\ntext = pathlib.Path('/data/message.txt').read_text() if pathlib.Path('/data/message.txt').exists() else 'none'\\nclass H(h.BaseHTTPRequestHandler):\\n  def do_GET(s):\\n    s.send_response(200); s.end_headers(); s.wfile.write(text.encode())\\nh.HTTPServer(('', 8080), H).serve_forever()"]
""")
    (tmp_path / "kubeloop.yaml").write_text(
        f"name: reader\nnamespace: {namespace}\nmanifests: {{raw: [app.yaml]}}\n"
        "sync:\n  - selector: {app: reader}\n    src: data\n    dest: /data\n"
        "    restart: container\n"
    )
    session = await open_session(tmp_path / "kubeloop.yaml", cluster=cluster_name)
    try:
        await session.deploy(quiet=True, dev_mode=True)
        (syncer,) = session.syncers()
        stop = asyncio.Event()
        task = asyncio.create_task(syncer.run(stop, pod_interval=0.2))
        await eventually(lambda: syncer.pods, 30, 0.05)
        pod_name = next(iter(syncer.pods))
        (tmp_path / "data" / "message.txt").write_text("second")
        async with httpx.AsyncClient(timeout=1) as client:

            async def serves_second() -> bool:
                pod = await kube.get(f"/api/v1/namespaces/{namespace}/pods/{pod_name}")
                assert pod is not None
                text = (await client.get(f"http://{pod['status']['podIP']}:8080/")).text
                assert text == "second"
                return True

            await eventually(serves_second, 40)
        # The container, not the pod, was restarted (its status may trail by a moment).
        restarted = await kube.wait_for(
            f"/api/v1/namespaces/{namespace}/pods/{pod_name}",
            lambda p: p["status"]["containerStatuses"][0]["restartCount"] >= 1,
            "the container restart to show in the pod status", 10,
        )  # fmt: skip
        assert restarted["metadata"]["name"] == pod_name
        stop.set()
        await asyncio.wait_for(task, 30)
    finally:
        await session.close()


async def test_sync_survives_an_api_server_restart(
    tmp_path: Path, namespace: str, kube: Kube, cluster: ClusterInfo, cluster_name: str
) -> None:
    """Every exec stream runs through the API server: when it goes away, the streams drop;
    once it is back, the syncer reconnects and resyncs a change made meanwhile (< 5 s)."""
    from kubeloop.cluster import create_cluster
    from kubeloop.cluster.native.daemons import running_pid
    from kubeloop.cluster.native.layout import Layout
    from kubeloop.cluster.native.provider import daemon_specs

    src = tmp_path / "src"
    tree(src)
    await kube.apply(deployment("web", namespace, PYTHON))
    await rolled_out(kube, namespace, "web")
    events: list[str] = []
    syncer = Syncer(kube, cluster, namespace, "app=web", [SyncRule(src, "/app")],
                    on_event=events.append)  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(syncer.run(stop, pod_interval=0.2))
    try:
        await eventually(lambda: syncer.pods, 30, 0.05)
        (pod,) = syncer.pods
        apiserver = daemon_specs(Layout.for_cluster(cluster_name))["kube-apiserver"]
        pid = running_pid(apiserver)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        (src / "main.py").write_text("print('written while the API server was down')\n")
        await asyncio.sleep(1)
        await create_cluster(cluster_name, provider="native", quiet=True)  # brings it back
        back = time.monotonic()
        wanted = b"print('written while the API server was down')\n"

        async def resynced() -> bool:
            synced = syncer.pods.get(pod)
            assert synced is not None and synced.stream.alive
            assert await synced.stream.read("/app/main.py") == wanted
            return True

        await eventually(resynced, 15)
        assert time.monotonic() - back < 5, events
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
