"""Attaching the agent to a running container: an ephemeral container from kubeloop's
agent image that shares the target's process namespace (no pod restart, nothing added to
the target image), then one ``kubectl exec -i`` stream to it."""

from __future__ import annotations

import asyncio
from typing import Any

from kubeloop.cluster import ClusterInfo
from kubeloop.errors import KubeloopError
from kubeloop.images.registry import ImageConfig, manifest_exists, push_files
from kubeloop.kube import Kube
from kubeloop.proc import spawn_tethered
from kubeloop.render.render import kubectl_command
from kubeloop.sync.protocol import AgentStream

Obj = dict[str, Any]
AGENT_PREFIX = "kubeloop-sync"


async def ensure_agent_image(cluster: ClusterInfo) -> str:
    """Push the agent image (once per agent version); return the reference pods use."""
    from kubeloop.cluster.native.binaries import agent_version, ensure_binaries

    if not cluster.registry:
        raise KubeloopError(f"cluster '{cluster.name}' has no registry for kubeloop's sync agent")
    version = agent_version()
    push_ref = f"{cluster.registry}/kubeloop/agent:{version}"
    if not await manifest_exists(push_ref):
        binary = (await ensure_binaries(quiet=True))["kubeloop-agent"]
        await push_files(push_ref, {"kubeloop-agent": (binary.read_bytes(), 0o755)},
                         ImageConfig(entrypoint=["/kubeloop-agent"], cmd=["idle"]))  # fmt: skip
    return f"{cluster.registry_for_pods or cluster.registry}/kubeloop/agent:{version}"


def ephemeral_spec(name: str, image: str, target: str) -> Obj:
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/kubeloop-agent", "idle"],
        "targetContainerName": target,
        # Root with ptrace rights reaches the target's files through /proc/1/root even
        # when the target runs as another user.
        "securityContext": {
            "runAsUser": 0,
            "runAsNonRoot": False,
            "capabilities": {"add": ["SYS_PTRACE", "DAC_OVERRIDE", "CHOWN", "FOWNER"]},
        },
    }


def _ephemeral_state(pod: Obj, name: str) -> str:
    for status in (pod.get("status") or {}).get("ephemeralContainerStatuses") or []:
        if status["name"] == name:
            state = status.get("state") or {}
            return next(iter(state), "waiting")
    return "absent"


def _agent_name(pod: Obj, container: str, version: str) -> str:
    """A running agent of this version for ``container``, or a new name (a stopped
    ephemeral container cannot be restarted, and an older agent may speak another
    protocol)."""
    base = f"{AGENT_PREFIX}-{version[:8]}-{container}"[:55]
    taken = [e["name"] for e in (pod.get("spec") or {}).get("ephemeralContainers") or []]
    for index, name in enumerate([base] + [f"{base}-{i}" for i in range(2, 50)]):
        del index
        if name not in taken or _ephemeral_state(pod, name) in ("running", "waiting"):
            return name
    raise KubeloopError(f"too many stopped sync agents in pod {pod['metadata']['name']}")


async def ensure_agent(kube: Kube, namespace: str, pod_name: str, container: str, image: str,
                       timeout: float = 60) -> str:  # fmt: skip
    path = f"/api/v1/namespaces/{namespace}/pods/{pod_name}"
    pod = await kube.get(path)
    if pod is None:
        raise KubeloopError(f"pod {pod_name} is gone")
    name = _agent_name(pod, container, image.rsplit(":", 1)[-1])
    if _ephemeral_state(pod, name) == "absent":
        await kube.request(
            "PATCH", f"{path}/ephemeralcontainers",
            body={"spec": {"ephemeralContainers": [ephemeral_spec(name, image, container)]}},
            content_type="application/strategic-merge-patch+json",
        )  # fmt: skip
    await kube.wait_for(path, lambda p: _ephemeral_state(p, name) == "running",
                        f"sync agent in pod {pod_name}", timeout, interval=0.05)  # fmt: skip
    return name


async def open_stream(cluster: ClusterInfo, namespace: str, pod: str, agent: str) -> AgentStream:
    process = await spawn_tethered(
        kubectl_command(), "--kubeconfig", cluster.kubeconfig, "--context", cluster.context,
        "exec", "-i", "-n", namespace, pod, "-c", agent, "--",
        "/kubeloop-agent", "serve", "/proc/1/root",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    return AgentStream(process, f"{pod}/{agent}")
