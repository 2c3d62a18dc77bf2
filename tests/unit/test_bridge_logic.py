"""Pure parts of the bridge: port arguments, Kubernetes' $(VAR) expansion, the downward
API, resolver settings, and what may be printed of the pod's environment."""

from __future__ import annotations

import pytest

from kubeloop.bridge import PodContext, expand, masked, parse_port
from kubeloop.bridge._context import _field
from kubeloop.bridge._local import resolver_settings
from kubeloop.errors import KubeloopError


def test_ports() -> None:
    assert parse_port("8000") == (8000, None)
    assert parse_port("8000:9000") == (8000, 9000)
    for bad in ("x", "0", "8000:70000", ":1"):
        with pytest.raises(KubeloopError):
            parse_port(bad)


def test_references_expand_as_kubernetes_does() -> None:
    env = {"HOST": "db", "PORT": "5432"}
    assert expand("postgres://$(HOST):$(PORT)/app", env) == "postgres://db:5432/app"
    assert expand("$(MISSING) stays, $$(HOST) escapes", env) == "$(MISSING) stays, $(HOST) escapes"


def test_downward_api_fields() -> None:
    pod = {"metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"}},
           "spec": {"nodeName": "n1"}, "status": {"podIP": "10.244.0.9"}}  # fmt: skip
    assert _field(pod, "metadata.name") == "web-1"
    assert _field(pod, "metadata.labels['app']") == "web"
    assert _field(pod, "status.podIP") == "10.244.0.9"
    assert _field(pod, "spec.serviceAccountName") == ""


def test_resolver_keeps_the_pods_search_domains_only() -> None:
    pod = (
        "search shop.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
    )
    assert resolver_settings(pod) == (
        "nameserver 127.0.0.1\nsearch shop.svc.cluster.local svc.cluster.local\noptions ndots:5\n"
    )


def test_secret_values_are_masked_when_printed() -> None:
    context = PodContext(env={"USER": "app", "PASSWORD": "hunter2"}, secret_env={"PASSWORD"})
    assert masked(context) == {"PASSWORD": "*****", "USER": "app"}
