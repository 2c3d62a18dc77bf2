"""Run one service on the developer's machine as if it were in the cluster: the
workload's traffic comes to the local command, which reaches the cluster's Services by
name with the pod's environment and files. No root, no VPN; the cluster goes back to
normal by itself within seconds when the developer's machine goes away."""

from kubeloop.bridge._bridge import Bridge, BridgeSpec, parse_header, parse_port
from kubeloop.bridge._context import PodContext, expand, masked, pod_context
from kubeloop.bridge._swap import reset_swaps

__all__ = ["Bridge", "BridgeSpec", "PodContext", "expand", "masked", "parse_header", "parse_port",
           "pod_context", "reset_swaps"]  # fmt: skip
