"""Pure parts of the bridge: port and header arguments, Kubernetes' $(VAR) expansion, the
downward API, resolver settings, what may be printed of the pod's environment, and swap
mode's patch."""

from __future__ import annotations

import json

import pytest

from kubeloop.bridge import BridgeSpec, PodContext, expand, masked, parse_header, parse_port
from kubeloop.bridge._context import _field
from kubeloop.bridge._local import resolver_settings
from kubeloop.bridge._swap import SWAPPED, swap_patch
from kubeloop.errors import KubeloopError
from kubeloop.sync.devmode import ORIGINAL


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


def test_headers() -> None:
    assert parse_header("X-Team: alice") == ("X-Team", "alice")
    assert parse_header("x-team=bob") == ("x-team", "bob")
    assert parse_header("carol") == ("X-Kubeloop-Session", "carol")
    for bad in ("X Team: a", "X-Team:", ": a", "X: a\r\nY: b", "X: " + "a" * 200):
        with pytest.raises(KubeloopError, match="header"):
            parse_header(bad)


def test_routes_by_mode() -> None:
    spec = BridgeSpec("web", 8000, ["true"], mode="personal", header=("X-Team", "alice"))
    assert spec.route() == ("personal", "X-Team", "alice")
    mode, name, value = BridgeSpec("web", 8000, ["true"], mode="personal").route()
    assert (mode, name) == ("personal", "X-Kubeloop-Session") and value  # the user's name
    assert BridgeSpec("web", 8000, ["true"]).route() == ("steal", "", "")


def test_swap_patch_records_the_template_and_keeps_only_what_the_agent_needs() -> None:
    app = {"name": "web", "image": "shop/web:1", "args": ["serve"], "workingDir": "/app",
           "ports": [{"containerPort": 8000}], "resources": {"limits": {"memory": "1Gi"}},
           "readinessProbe": {"httpGet": {"port": 8000}}, "lifecycle": {"preStop": {}},
           "securityContext": {"runAsNonRoot": True}}  # fmt: skip
    template = {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "side", "image": "s"}, app]}}  # fmt: skip
    workload = {"kind": "Deployment", "metadata": {"name": "web", "resourceVersion": "7"},
                "spec": {"template": template}}  # fmt: skip
    patch = swap_patch(workload, "web", "reg/kubeloop/agent:1", "swap")
    assert patch[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "7"}
    assert json.loads(patch[1]["value"][ORIGINAL]) == template  # recorded in the same patch
    assert patch[2]["path"] == "/spec/template/spec/containers/1"
    swapped = patch[2]["value"]
    assert swapped["command"] == ["/kubeloop-agent", "idle", "--router", "swap"]
    assert swapped["ports"] == app["ports"] and swapped["resources"] == app["resources"]
    assert not {"args", "workingDir", "readinessProbe", "lifecycle"} & swapped.keys()
    assert swapped["securityContext"] == {"runAsNonRoot": True, "runAsUser": 65534}
    assert patch[3]["value"] == {SWAPPED: "true"}


def test_the_pods_variables_can_be_chosen() -> None:
    pod = {"DB_HOST": "db", "DB_PASSWORD": "x", "AWS_KEY": "k", "PATH": "/bin"}
    everything = BridgeSpec("web", 8000, ["true"])
    assert everything.pod_env(pod) == pod
    only_db = BridgeSpec("web", 8000, ["true"], env_include=["DB_*"], env_exclude=["*PASSWORD"])
    assert only_db.pod_env(pod) == {"DB_HOST": "db"}
    assert BridgeSpec("web", 8000, ["true"], env_exclude=["AWS_*", "PATH"]).pod_env(pod) == {
        "DB_HOST": "db", "DB_PASSWORD": "x"}  # fmt: skip
