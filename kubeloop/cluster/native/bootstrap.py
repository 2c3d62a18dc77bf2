"""Objects a fresh native cluster needs before workloads run: cluster DNS and its RBAC."""

from __future__ import annotations

from kubeloop.cluster.native.layout import DNS_SERVICE_IP, NODE_IP
from kubeloop.core import Obj
from kubeloop.kube import Kube


def objects() -> list[Obj]:
    labels = {"k8s-app": "kube-dns", "app.kubernetes.io/managed-by": "kubeloop"}
    ports = [
        {"name": "dns", "port": 53, "protocol": "UDP"},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
    ]
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:coredns"},
            "rules": [
                {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
                 "verbs": ["list", "watch"]},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                 "verbs": ["list", "watch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "system:coredns"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                          "name": "system:coredns"}],
        },
        # CoreDNS runs on the host, so the Service has no selector and points at the
        # node address through an EndpointSlice we own.
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
            "spec": {"clusterIP": DNS_SERVICE_IP, "ports": ports},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "kube-dns-host",
                "namespace": "kube-system",
                "labels": {"kubernetes.io/service-name": "kube-dns",
                           "endpointslice.kubernetes.io/managed-by": "kubeloop"},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [NODE_IP], "conditions": {"ready": True}}],
            "ports": ports,
        },
    ]  # fmt: skip


async def apply(kube: Kube) -> None:
    for obj in objects():
        await kube.apply(obj)
