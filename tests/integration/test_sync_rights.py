"""The agent's rights on the real cluster: it takes the app's own identity, asks for
nothing Pod Security 'baseline' refuses, and where more is needed it says so before
anything is changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubeloop.agent import AgentError
from kubeloop.cluster import ClusterInfo
from kubeloop.kube import Kube
from kubeloop.sync import Syncer, SyncRule
from tests.integration.conftest import Env, enforce_baseline, kubectl
from tests.integration.test_sync import PYTHON, rolled_out


def app(name: str, namespace: str, uid: int | None, volume_at: str | None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": PYTHON, "command": ["sleep", "3600"]}
    pod: dict[str, Any] = {"terminationGracePeriodSeconds": 0, "containers": [container]}
    if uid is not None:
        container["securityContext"] = {"runAsUser": uid, "runAsGroup": uid,
                                        "allowPrivilegeEscalation": False}  # fmt: skip
    if volume_at:
        container["volumeMounts"] = [{"name": "work", "mountPath": volume_at}]
        pod["volumes"] = [{"name": "work", "emptyDir": {}}]
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": pod}},
    }  # fmt: skip


@pytest.fixture
async def baseline(kube: Kube, namespace: str) -> str:
    """The test namespace, with Pod Security 'baseline' enforced (as managed clusters do)."""
    await enforce_baseline(kube, namespace)
    return namespace


async def synced_once(kube: Kube, cluster: ClusterInfo, namespace: str, name: str, src: Path,
                      dest: str) -> Syncer:  # fmt: skip
    syncer = Syncer(kube, cluster, namespace, f"app={name}", [SyncRule(src, dest)])
    pods = await syncer.running_pods()
    await syncer.attach(pods[0])
    return syncer


async def agent_specs(kube: Kube, namespace: str, name: str) -> list[dict[str, Any]]:
    pods = await kube.request("GET", f"/api/v1/namespaces/{namespace}/pods",
                              params={"labelSelector": f"app={name}"})  # fmt: skip
    return list(pods["items"][0]["spec"].get("ephemeralContainers") or [])


async def test_root_and_non_root_apps_sync_under_baseline_as_the_app(
    tmp_path: Path, kube: Kube, cluster: ClusterInfo, baseline: str, env: Env
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "main.py").write_text("print('hi')\n")
    cases = (("rootapp", None, None, "/app", "0"), ("userapp", 1000, "/work", "/work/app", "1000"))
    for name, uid, volume, dest, owner in cases:
        await kube.apply(app(name, baseline, uid, volume))
        await rolled_out(kube, baseline, name)
        syncer = await synced_once(kube, cluster, baseline, name, src, dest)
        try:
            (synced,) = syncer.pods.values()
            assert await synced.stream.read(f"{dest}/main.py") == b"print('hi')\n"
            (spec,) = await agent_specs(kube, baseline, name)
            # Nothing added: the runtime's defaults, then the app's own user.
            assert "capabilities" not in spec["securityContext"], spec
            out = await kubectl(env, "exec", "-n", baseline, synced.pod, "-c", "app", "--",
                                "stat", "-c", "%u", f"{dest}/main.py")  # fmt: skip
            assert out.strip() == owner
        finally:
            for synced in syncer.pods.values():
                await synced.stream.close()


async def test_a_folder_the_app_may_not_write_needs_root_and_baseline_says_no(
    tmp_path: Path, kube: Kube, cluster: ClusterInfo, baseline: str
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "main.py").write_text("print('hi')\n")
    await kube.apply(app("locked", baseline, 1000, None))
    await rolled_out(kube, baseline, "locked")
    with pytest.raises(Exception, match="SYS_PTRACE") as failure:
        await synced_once(kube, cluster, baseline, "locked", src, "/opt/app")
    assert "baseline" in str(failure.value) and "writable" in str(failure.value)
    # Only the app-rights agent was added; the refused root one left no trace.
    assert [s["name"].endswith("-root") for s in await agent_specs(kube, baseline, "locked")] \
        == [False]  # fmt: skip


async def test_a_destination_of_slash_is_refused(
    tmp_path: Path, kube: Kube, cluster: ClusterInfo, namespace: str
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    await kube.apply(app("web", namespace, None, None))
    await rolled_out(kube, namespace, "web")
    with pytest.raises(AgentError, match="other than /"):
        await synced_once(kube, cluster, namespace, "web", src, "/")
