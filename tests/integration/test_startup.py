"""`kubeloop dev`'s start-up on the real cluster, through the real command: the `-v`
timeline names its phases, the first request that reaches the app is answered by the new
version's pod (never refused after the port opens, never an old pod's answer), dev mode's
pod needs no init container, and a failing rollout is still explained."""

from __future__ import annotations

import asyncio
import http.client
import json
import sys
from pathlib import Path

import pytest

from kubeloop.devloop import open_session
from kubeloop.kube import Kube
from tests.integration.conftest import eventually
from tests.integration.test_core_loop import _broken_project, copy_example

PORT = 18421


def ask(port: int) -> str | dict[str, object]:
    """One GET through the local port: the reply, or what went wrong ('refused' when
    nothing listens yet, anything else an error that must not happen after that)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.connect()
    except ConnectionRefusedError:
        return "refused"
    try:
        connection.request("GET", "/add/1/2")
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            return f"HTTP {response.status}"
        return dict(json.loads(body))
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        connection.close()


def app_naming_its_pod(folder: Path) -> None:
    """The copy's app tells which pod answered (the kubelet sets HOSTNAME to its name)."""
    server = folder / "app" / "server.py"
    server.write_text(server.read_text().replace(
        '"sum": int(result)', '"pod": os.environ.get("HOSTNAME"), "sum": int(result)'
    ))  # fmt: skip


async def test_dev_start_timeline_and_first_answer_from_the_new_pod(
    tmp_path: Path, namespace: str, kube: Kube, docker_engine: None, cluster_name: str
) -> None:
    folder = copy_example("add", tmp_path, namespace)
    app_naming_its_pod(folder)
    config = folder / "kubeloop.yaml"
    config.write_text(config.read_text().replace("localPort: 8000", f"localPort: {PORT}"))
    # The plain app runs first: dev's apply wraps it (a new pod template), so a ready pod
    # of the old version is there while dev starts, as after any change.
    session = await open_session(config, cluster=cluster_name)
    try:
        await session.deploy(quiet=True)
    finally:
        await session.close()
    old_pods = await pod_names(kube, namespace)

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubeloop", "dev", "-v", "--config", str(config), "--cleanup",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    output = bytearray()
    reader = asyncio.create_task(collect(process.stdout, output))
    seen: list[str | dict[str, object]] = []
    try:

        async def answered() -> dict[str, object] | None:
            if process.returncode is not None:
                pytest.fail(f"kubeloop dev exited ({process.returncode}):\n{output.decode()}")
            seen.append(await asyncio.to_thread(ask, PORT))
            return seen[-1] if isinstance(seen[-1], dict) else None

        first = await eventually(answered, 180, 0.02)
        text = output.decode()
        # Until the forward opened, nothing listened; then the first answer, from a pod
        # of the new version, and no refused, reset or failed request in between.
        assert all(attempt == "refused" for attempt in seen[:-1]), (seen, text)
        assert first["sum"] == 3 and first["pod"] not in old_pods, (first, old_pods, text)
        live = await kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/add")
        assert live is not None
        pod_spec = live["spec"]["template"]["spec"]
        # Dev mode's supervisor is in the image, not copied in by an init container.
        assert not pod_spec.get("initContainers"), pod_spec
        assert "-sv" in pod_spec["containers"][0]["image"], pod_spec
        assert pod_spec["containers"][0]["command"][:2] == ["/kubeloop/kubeloop-agent",
                                                            "supervise"]  # fmt: skip

        def timeline_printed() -> bool:
            text = output.decode()
            phases = ["python started, kubeloop imported", "load the config",
                      "connect to the API server", "build: content tags", "render",
                      "dev mode: supervisor wrapped in", "apply: server-side apply",
                      f"forwarding 127.0.0.1:{PORT}", "rollout: every pod ready",
                      "rollout: kube-proxy routes the Services", "rolled out"]  # fmt: skip
            missing = [p for p in phases if not any(p in line for line in timeline(text))]
            assert not missing, (missing, text)
            return True

        await eventually(timeline_printed, 60)
        assert f"(pod {first['pod']})" in output.decode()  # the forward went to that pod
    finally:
        if process.returncode is None:
            process.send_signal(2)
        await asyncio.wait_for(process.wait(), 60)
        await reader


def timeline(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("timeline ")]


async def pod_names(kube: Kube, namespace: str) -> set[str]:
    listing = await kube.request("GET", f"/api/v1/namespaces/{namespace}/pods",
                                 params={"labelSelector": "app=add"})  # fmt: skip
    return {pod["metadata"]["name"] for pod in listing.get("items", [])}


async def collect(stream: asyncio.StreamReader, into: bytearray) -> None:
    while chunk := await stream.read(65536):
        into += chunk


async def test_dev_explains_a_failing_rollout(tmp_path: Path, namespace: str) -> None:
    """The forward and logs start before the rollout ends now; a pod that cannot start
    still ends `dev` with the reason, and nothing of the start-up is left running."""
    config = _broken_project(tmp_path / "broken", namespace,
                             "{name: app, image: 'localhost:5000/does/not-exist:1'}")  # fmt: skip
    with config.open("a") as handle:
        handle.write("portForward: [{resource: deployment/broken, port: 80, localPort: 18422}]\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubeloop", "dev", "-v", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(process.communicate(), 120)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = " ".join(out.decode().split())  # the console wraps long lines
    assert process.returncode != 0, text
    assert "rollout failed" in text and "the image cannot be pulled" in text, text
    assert "Traceback" not in text, text
