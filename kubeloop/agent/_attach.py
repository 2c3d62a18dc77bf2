"""Attaching the agent to a running container: an ephemeral container from kubeloop's
agent image that shares the target's process namespace (no pod restart, nothing added to
the target image), then one ``kubectl exec -i`` stream to it.

Rights. The agent container starts as root with the container runtime's default
capabilities plus any the target container added, then takes the app's own user, group
and groups (src/main.go): it reaches the app's files because the kernel lets a process
look into another of the same user, and it can do there exactly what the app could.
Nothing beyond what Pod Security ``baseline`` allows is asked for. Only where the app's
user may not write the synced folder does kubeloop ask for a root agent with
``SYS_PTRACE`` (the ``root`` profile), and it says so when admission refuses that.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass

from kubeloop.agent._binary import agent_version, ensure_agent_image, go_arch
from kubeloop.agent._stream import AgentStream
from kubeloop.cluster import ClusterInfo
from kubeloop.core import Obj, kubectl_command
from kubeloop.errors import KubeloopError
from kubeloop.kube import Kube, KubeError
from kubeloop.proc import spawn_tethered

AGENT_PREFIX = "kubeloop-agent"
# Profiles: the app's identity (sync), root with SYS_PTRACE (sync where the app's user
# may not write), the network only with NET_ADMIN (bridge: redirect a port), and the
# agent that replaced the app in its own container (bridge's swap mode).
APP, ROOT, NET, SWAP = "app", "root", "net", "swap"
# The router of a swapped container (an ephemeral one's is named after the container).
SWAP_ROUTER = "swap"


@dataclass(frozen=True)
class Attached:
    pod: str
    agent: str  # the ephemeral container's name (swap: the app container's)
    container_id: str  # the target container's runtime id (finds its process)
    profile: str


def ephemeral_spec(name: str, image: str, target: Obj, profile: str) -> Obj:
    added = list(((target.get("securityContext") or {}).get("capabilities") or {}).get("add") or [])
    if profile == ROOT:
        added += ["SYS_PTRACE"]
    elif profile == NET:
        added += ["NET_ADMIN"]
    security: Obj = {"runAsUser": 0, "runAsNonRoot": False}
    if added:
        security["capabilities"] = {"add": sorted(set(added))}
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        # The bridge's agent routes ports for every session on the pod (src/router.go).
        "command": ["/kubeloop-agent", "idle", *(["--router", name] if profile == NET else [])],
        "targetContainerName": target["name"],
        "securityContext": security,
    }


async def node_arch(kube: Kube, pod: Obj) -> str:
    """The architecture of the node the pod runs on (the agent is built for it)."""
    node = await kube.get(f"/api/v1/nodes/{pod['spec'].get('nodeName', '')}")
    labels = ((node or {}).get("metadata") or {}).get("labels") or {}
    return str(labels.get("kubernetes.io/arch", go_arch()))


async def cluster_agent_image(cluster: ClusterInfo, arch: str | None = None) -> str:
    """The agent image in the cluster's registry (pushed once per version and
    architecture); the reference its pods use."""
    if not cluster.registry:
        raise KubeloopError(f"cluster '{cluster.name}' has no registry for kubeloop's agent")
    return await ensure_agent_image(cluster.registry, cluster.registry_for_pods, arch)


def _ephemeral_state(pod: Obj, name: str) -> str:
    for status in (pod.get("status") or {}).get("ephemeralContainerStatuses") or []:
        if status["name"] == name:
            state = status.get("state") or {}
            return next(iter(state), "waiting")
    return "absent"


def _agent_name(pod: Obj, container: str, profile: str) -> str:
    """A running agent of this version and profile for ``container``, or a new name (a
    stopped ephemeral container cannot be restarted, and an older agent may speak
    another protocol)."""
    suffix = {ROOT: "-root", NET: "-net"}.get(profile, "")
    base = f"{AGENT_PREFIX}-{agent_version()[:8]}-{container}"[: 60 - len(suffix)] + suffix
    taken = [e["name"] for e in (pod.get("spec") or {}).get("ephemeralContainers") or []]
    for name in [base] + [f"{base}-{i}" for i in range(2, 20)]:
        # A name in the spec whose status has not come yet is starting: another session
        # (a second developer, a second bridge) just asked for it, and it is shared.
        if name not in taken or _ephemeral_state(pod, name) != "terminated":
            return name[:63]
    raise KubeloopError(f"too many stopped kubeloop agents in pod {pod['metadata']['name']}",
                        "restart the pod (kubectl delete pod); ephemeral containers stay "
                        "until the pod goes")  # fmt: skip


def target_container(pod: Obj, container: str | None) -> Obj:
    containers = pod["spec"]["containers"]
    if container is None:
        return dict(containers[0])
    for candidate in containers:
        if candidate["name"] == container:
            return dict(candidate)
    raise KubeloopError(f"pod {pod['metadata']['name']} has no container '{container}'",
                        f"containers: {', '.join(c['name'] for c in containers)}")  # fmt: skip


def container_id(pod: Obj, container: str) -> str:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status["name"] == container:
            return str(status.get("containerID") or "").rpartition("://")[2]
    return ""


async def ensure_agent(kube: Kube, namespace: str, pod_name: str, container: str | None,
                       image: str, profile: str = APP, timeout: float = 60) -> Attached:  # fmt: skip
    """A running agent for the container (reused if one of this version and profile
    runs), added to the pod as an ephemeral container when needed."""
    path = f"/api/v1/namespaces/{namespace}/pods/{pod_name}"
    pod = await kube.get(path)
    if pod is None:
        raise KubeloopError(f"pod {pod_name} is gone")
    target = target_container(pod, container)
    name = _agent_name(pod, target["name"], profile)
    if _ephemeral_state(pod, name) == "absent":
        body = {"spec": {"ephemeralContainers": [ephemeral_spec(name, image, target, profile)]}}
        for dry_run in (True, False):  # ask admission first: a refusal changes nothing
            try:
                await kube.request("PATCH", f"{path}/ephemeralcontainers", body=body,
                                   content_type="application/strategic-merge-patch+json",
                                   params={"dryRun": "All"} if dry_run else None)  # fmt: skip
            except KubeError as exc:
                if exc.status in (403, 422):
                    raise _refused(namespace, pod_name, profile, exc) from exc
                raise
    await kube.wait_for(path, lambda p: _ephemeral_state(p, name) == "running",
                        f"kubeloop's agent in pod {pod_name}", timeout, interval=0.05)  # fmt: skip
    return Attached(pod_name, name, container_id(pod, target["name"]), profile)


def _refused(namespace: str, pod: str, profile: str, exc: KubeError) -> KubeloopError:
    if profile == NET:
        return KubeloopError(
            f"the cluster refused the bridge's agent (NET_ADMIN) in pod {pod}: {exc.message}",
            f"redirecting the pod's port needs NET_ADMIN, which namespace {namespace} does "
            "not allow (Pod Security 'baseline' or 'restricted'): bridge with --mode swap "
            "(the app container is replaced by kubeloop's agent while the bridge runs; no "
            "NET_ADMIN needed), or use a namespace labelled "
            "pod-security.kubernetes.io/enforce=privileged for development",
        )
    if profile == ROOT:
        return KubeloopError(
            f"the cluster refused a root agent with SYS_PTRACE in pod {pod}: {exc.message}",
            f"the app's own user may not write the synced folder, and namespace {namespace} "
            "does not allow more (Pod Security 'baseline' refuses SYS_PTRACE): make the "
            "folder writable by the app's user (e.g. chown in the Dockerfile), or sync into "
            "a folder the app owns",
        )
    return KubeloopError(f"the cluster refused kubeloop's agent in pod {pod}: {exc.message}",
                         "ephemeral containers must be allowed (Kubernetes 1.25+, RBAC "
                         "'patch' on pods/ephemeralcontainers)")  # fmt: skip


async def _port_forward(cluster: ClusterInfo, namespace: str, pod: str,
                        port: int) -> tuple[asyncio.subprocess.Process, int]:  # fmt: skip
    """``kubectl port-forward`` to ``port`` of the pod, on a free local port."""
    argv = [kubectl_command(), "--kubeconfig", cluster.kubeconfig, "--context", cluster.context,
            "port-forward", "-n", namespace, f"pod/{pod}", f":{port}",
            "--address", "127.0.0.1"]  # fmt: skip
    process = await spawn_tethered(*argv, stdout=asyncio.subprocess.PIPE,
                                   stderr=asyncio.subprocess.PIPE)  # fmt: skip
    assert process.stdout is not None
    with contextlib.suppress(TimeoutError):
        line = await asyncio.wait_for(process.stdout.readline(), 20)
        if found := re.search(rb"127\.0\.0\.1:(\d+) ->", line):
            return process, int(found[1])
    detail = await _stderr_of(process)
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    raise KubeloopError(f"cannot port-forward to kubeloop's agent in pod {pod}: {detail}")


async def open_stream(cluster: ClusterInfo, namespace: str, attached: Attached,
                      lane: bool | None = None) -> AgentStream:  # fmt: skip
    """A stream to the agent. ``lane`` (default: for the bridge's profiles) moves its
    frames to a port-forwarded connection, three times faster than the exec stream; if
    that cannot be opened, the stream is opened again without it."""
    if lane is None:
        lane = attached.profile in (NET, SWAP)
    stream = await _exec_stream(cluster, namespace, attached)
    if not lane:
        return stream
    try:
        await stream.open_lane(lambda port: _port_forward(cluster, namespace, attached.pod, port))
    except KubeloopError as exc:
        await stream.close()
        stream = await _exec_stream(cluster, namespace, attached)
        stream.on_warning(f"kubeloop's agent in {attached.pod}: {exc.message}; "
                          "carrying its traffic on the slower exec stream")  # fmt: skip
    return stream


async def _exec_stream(cluster: ClusterInfo, namespace: str, attached: Attached) -> AgentStream:
    argv = [kubectl_command(), "--kubeconfig", cluster.kubeconfig, "--context", cluster.context,
            "exec", "-i", "-n", namespace, attached.pod, "-c", attached.agent, "--",
            "/kubeloop-agent", "serve", "--container-id", attached.container_id]  # fmt: skip
    if attached.profile == ROOT:
        argv.append("--as-root")
    elif attached.profile == NET:
        argv += ["--net-only", "--router", attached.agent]
    elif attached.profile == SWAP:
        argv += ["--net-only", "--router", SWAP_ROUTER]
    process = await spawn_tethered(*argv, stdin=asyncio.subprocess.PIPE,
                                   stdout=asyncio.subprocess.PIPE,
                                   stderr=asyncio.subprocess.PIPE)  # fmt: skip
    stream = AgentStream(process, f"{attached.pod}/{attached.agent}")
    try:
        await stream.hello()
    except KubeloopError as exc:
        detail = await _stderr_of(process)
        await stream.close()
        raise KubeloopError(f"cannot talk to kubeloop's agent in pod {attached.pod}: "
                            f"{detail or exc.message}") from exc  # fmt: skip
    stream.start_stderr_drain()
    return stream


async def _stderr_of(process: asyncio.subprocess.Process) -> str:
    if process.stderr is None:
        return ""
    try:
        data = await asyncio.wait_for(process.stderr.read(4096), 5)
    except TimeoutError:
        return ""
    return data.decode(errors="replace").strip()
