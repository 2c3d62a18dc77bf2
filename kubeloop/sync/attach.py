"""Kept for callers that predate kubeloop.agent: the agent image for a cluster."""

from __future__ import annotations

from kubeloop.agent import cluster_agent_image
from kubeloop.cluster import ClusterInfo


async def ensure_agent_image(cluster: ClusterInfo) -> str:
    """Push the agent image for this machine's architecture; the reference pods use."""
    return await cluster_agent_image(cluster)
