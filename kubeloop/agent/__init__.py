"""kubeloop's pod side: a small static agent (``src/``, Go) that runs as an ephemeral
container beside a target container, and the client that speaks to it over one
``kubectl exec`` stream. Live sync builds on it; so will bridge, debug and forwards."""

from kubeloop.agent._attach import (
    APP,
    NET,
    ROOT,
    SWAP,
    SWAP_ROUTER,
    Attached,
    cluster_agent_image,
    ensure_agent,
    node_arch,
    open_stream,
    target_container,
)
from kubeloop.agent._binary import agent_binary, agent_version, ensure_agent_image, go_arch
from kubeloop.agent._channel import Channel, splice
from kubeloop.agent._stream import AgentError, AgentStream, Op, Sent, WatchReport
from kubeloop.agent._wire import RemoteEntry, valid_relative

__all__ = [
    "APP",
    "NET",
    "ROOT",
    "SWAP",
    "SWAP_ROUTER",
    "AgentError",
    "AgentStream",
    "Attached",
    "Channel",
    "Op",
    "RemoteEntry",
    "Sent",
    "WatchReport",
    "agent_binary",
    "agent_version",
    "cluster_agent_image",
    "ensure_agent",
    "ensure_agent_image",
    "go_arch",
    "node_arch",
    "open_stream",
    "splice",
    "target_container",
    "valid_relative",
]
