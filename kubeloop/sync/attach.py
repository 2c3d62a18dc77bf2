"""Kept for callers that predate kubeloop.agent: the agent image for a cluster."""

from __future__ import annotations

from kubeloop.agent import ensure_agent_image as _ensure_image
from kubeloop.cluster import ClusterInfo
from kubeloop.errors import KubeloopError


async def ensure_agent_image(cluster: ClusterInfo) -> str:
    """Push the agent image for this machine's architecture; the reference pods use."""
    if not cluster.registry:
        raise KubeloopError(f"cluster '{cluster.name}' has no registry for kubeloop's agent")
    return await _ensure_image(cluster.registry, cluster.registry_for_pods)
