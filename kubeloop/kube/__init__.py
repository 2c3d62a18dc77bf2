"""All Kubernetes API access goes through here (kr8s underneath, async)."""

from kubeloop.kube.client import Kube, KubeError, label_selector

__all__ = ["Kube", "KubeError", "label_selector"]
