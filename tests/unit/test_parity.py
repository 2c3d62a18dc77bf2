"""Parity's pure logic: flattening objects into behaviour fields, classifying, masking,
ignore rules, pruning a live object to its render, and the report's formats."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console

from kubeloop.cli import main
from kubeloop.config import ConfigError, parse
from kubeloop.parity import (
    MASK,
    IgnoreRule,
    category,
    compare,
    flatten,
    parse_rules,
    prune_to,
    strip_server_fields,
    table,
    to_json,
    without_dev_mode,
)
from kubeloop.parity.normalise import quantity

STOCKS = Path(__file__).parents[2] / "examples" / "stocks" / "kubeloop.yaml"


def deployment(**changes: Any) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "web", "image": "web:1", "command": ["python", "app.py"],
        "env": [{"name": "MODE", "value": "fast"},
                {"name": "DB_PASSWORD", "value": "hunter2"},
                {"name": "URL", "value": "http://db.shop.svc.cluster.local"}],
        "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}},
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
        "volumeMounts": [{"name": "conf", "mountPath": "/etc/conf"}],
    }  # fmt: skip
    obj: dict[str, Any] = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"env": "dev"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [container],
                                       "volumes": [{"name": "conf",
                                                    "configMap": {"name": "conf"}}]}}},
    }  # fmt: skip
    for path, value in changes.items():
        target = obj
        *parents, last = path.split("__")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[last] = value
    return obj


def one(report: Any) -> Any:
    assert len(report.differences) == 1, report.differences
    return report.differences[0]


def test_flatten_names_fields_by_what_they_are() -> None:
    fields = flatten(deployment())
    assert fields["replicas"] == 1
    assert fields["containers.web.image"] == "web:1"
    assert fields["containers.web.command"] == ["python", "app.py"]
    assert fields["containers.web.env.MODE"] == "fast"
    assert fields["containers.web.resources.limits.cpu"] == quantity(0.5)
    assert fields["containers.web.resources.limits.memory"] == quantity(2**30)
    assert str(fields["containers.web.resources.limits.memory"]) == "1Gi"  # as written
    assert fields["containers.web.readinessProbe"] == {"httpGet": {"path": "/healthz",
                                                                   "port": 8080}}  # fmt: skip
    assert fields["volumes.conf"] == {"configMap": {"name": "conf"}}
    assert "containers.web.volumeMounts.conf" in fields
    assert not any("metadata" in f or "labels" in f for f in fields), fields


def test_quantities_compare_by_amount() -> None:
    assert quantity("500m") == quantity(0.5) == quantity("0.5")
    assert quantity("1Gi") == quantity("1024Mi")
    assert quantity("1G") != quantity("1Gi")
    assert quantity("not a quantity") == "not a quantity"


def test_identical_renders_have_no_difference_and_exit_0() -> None:
    report = compare([deployment()], [deployment()], [])
    assert report.differences == []
    assert report.exit_code == 0


def test_list_order_is_not_a_difference() -> None:
    reordered = deployment()
    env = reordered["spec"]["template"]["spec"]["containers"][0]["env"]
    env.reverse()
    assert compare([deployment()], [reordered], []).differences == []


@pytest.mark.parametrize(
    ("change", "field", "about"),
    [
        ({"spec__replicas": 3}, "replicas", "replicas"),
        ({"spec__template__spec__containers__0__image": "web:2"}, "containers.web.image", "image"),
        ({"spec__template__spec__containers__0__command": ["gunicorn"]},
         "containers.web.command", "command"),
        ({"spec__template__spec__containers__0__resources": {"limits": {"cpu": "2",
                                                                      "memory": "1Gi"}}},
         "containers.web.resources.limits.cpu", "resources"),
        ({"spec__template__spec__containers__0__readinessProbe": {"exec": {"command": ["true"]}}},
         "containers.web.readinessProbe", "probe"),
        ({"spec__template__spec__containers__0__securityContext": {"runAsUser": 0}},
         "containers.web.securityContext.runAsUser", "security"),
        ({"spec__template__spec__securityContext": {"runAsNonRoot": True}},
         "securityContext.runAsNonRoot", "security"),
        ({"spec__template__spec__volumes": [{"name": "conf", "emptyDir": {}}]},
         "volumes.conf", "volumes"),
        ({"spec__template__spec__containers__0__volumeMounts": [
            {"name": "conf", "mountPath": "/etc/other"}]},
         "containers.web.volumeMounts.conf", "volumes"),
    ],
)  # fmt: skip
def test_each_behaviour_is_named_and_classified(change: dict[str, Any], field: str,
                                                about: str) -> None:  # fmt: skip
    diff = one(compare([deployment()], [deployment(**change)], [], "dev", "prod"))
    assert (diff.object, diff.field, diff.category) == ("deployment/web", field, about)
    assert diff.expected_by is None


def test_cpu_written_differently_is_the_same() -> None:
    other = deployment(spec__template__spec__containers__0__resources={
        "limits": {"cpu": 0.5, "memory": "1024Mi"}})  # fmt: skip
    assert compare([deployment()], [other], []).differences == []


def test_namespace_in_service_addresses_is_not_a_difference() -> None:
    staged = deployment()
    staged["spec"]["template"]["spec"]["containers"][0]["env"][2]["value"] = (
        "http://db.shop-staging.svc.cluster.local")  # fmt: skip
    assert (
        compare([deployment()], [staged], [], namespaces=("shop", "shop-staging")).differences == []
    )
    # ... but another host is.
    staged["spec"]["template"]["spec"]["containers"][0]["env"][2]["value"] = (
        "http://db.prod.example"
    )
    diff = one(compare([deployment()], [staged], [], namespaces=("shop", "shop-staging")))
    assert diff.field == "containers.web.env.URL"


def test_secret_values_are_never_in_the_report() -> None:
    secret_a = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
                "stringData": {"password": "hunter2", "user": "app"}}  # fmt: skip
    secret_b = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
                "data": {"password": "c3VwZXJzZWNyZXQ=", "user": "YXBw", "extra": "eA=="}}  # fmt: skip
    env_b = deployment()
    env_b["spec"]["template"]["spec"]["containers"][0]["env"][1]["value"] = "supersecret"
    report = compare([secret_a, deployment()], [secret_b, env_b], [])
    fields = {(d.object, d.field): d for d in report.differences}
    # stringData and data are the same thing: 'user' (app) is equal on both sides.
    assert set(fields) == {("secret/db", "data.password"), ("secret/db", "data.extra"),
                           ("deployment/web", "containers.web.env.DB_PASSWORD")}  # fmt: skip
    assert fields["secret/db", "data.password"].a == fields["secret/db", "data.password"].b == MASK
    assert fields["secret/db", "data.extra"].a is None  # absent, and told so
    assert all(d.masked and d.category in {"secret", "env"} for d in fields.values())
    text = to_json(report) + _text(report)
    for secret in ("hunter2", "supersecret", "c3VwZXJzZWNyZXQ=", "eA=="):
        assert secret not in text


def test_configmap_feature_flags_are_compared_one_by_one() -> None:
    def flags(text: str, mode: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "flags"},
                "data": {"flags.json": text, "MODE": mode,
                         "app.properties": "cache=on\nbeta_checkout=false\n"}}  # fmt: skip

    a = flags('{"new_ui": false, "limits": {"max": 5}}', "fast")
    b = flags('{"new_ui": true, "limits": {"max": 5}}', "slow")
    b["data"]["app.properties"] = "cache=on\nbeta_checkout=true\n"
    report = compare([a], [b], [])
    got = {(d.field, d.category, d.a, d.b) for d in report.differences}
    assert got == {("data.flags.json.new_ui", "feature flag", False, True),
                   ("data.MODE", "config", "fast", "slow"),
                   ("data.app.properties.beta_checkout", "feature flag", "false", "true")}  # fmt: skip


def test_service_and_ingress_differences() -> None:
    def objs(kind: str, port: int, host: str) -> list[dict[str, Any]]:
        return [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                 "spec": {"type": kind, "ports": [{"name": "http", "port": port}]}},
                {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                 "metadata": {"name": "web"},
                 "spec": {"rules": [{"host": host, "http": {"paths": []}}]}}]  # fmt: skip

    report = compare(
        objs("ClusterIP", 80, "dev.example"), objs("NodePort", 8080, "example.com"), []
    )
    got = {(d.object, d.field, d.category) for d in report.differences}
    assert got == {("service/web", "type", "service"),
                   ("service/web", "ports.http.port", "service"),
                   ("ingress/web", "hosts", "ingress")}  # fmt: skip
    hosts = next(d for d in report.differences if d.field == "hosts")
    assert (hosts.a, hosts.b) == (["dev.example"], ["example.com"])


def test_object_on_one_side_only() -> None:
    extra = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "extra"}, "data": {}}
    diff = one(compare([deployment()], [deployment(), extra], [], "dev", "prod"))
    assert (diff.object, diff.field, diff.category) == ("configmap/extra", "", "object")
    assert (diff.a_present, diff.b_present) == (False, True)


@pytest.mark.parametrize(
    ("rule", "obj", "field", "expected"),
    [
        ("deployment/*: replicas", "deployment/web", "replicas", True),
        ("deployment/web:replicas", "deployment/web", "replicas", True),
        ("Deployment/web: replicas", "deployment/web", "replicas", True),
        ("deployment/*: replicas", "statefulset/web", "replicas", False),
        ("deployment/web: env.MODE", "deployment/web", "containers.web.env.MODE", True),
        ("deployment/web: env.MODE", "deployment/web", "containers.web.env.MODEL", False),
        ("deployment/web: containers.web.env", "deployment/web", "containers.web.env.X", True),
        ("image", "deployment/api", "containers.api.image", True),
        ("configmap/flags: data.beta_*", "configmap/flags", "data.beta_checkout", True),
        ("configmap/flags: data.beta_*", "configmap/flags", "data.alpha", False),
        ("ingress/public", "ingress/public", "", True),
        ("ingress/public", "ingress/public", "rules.x", True),
        ("deployment/web: replicas", "deployment/web", "", False),
    ],
)  # fmt: skip
def test_ignore_rules(rule: str, obj: str, field: str, expected: bool) -> None:
    assert IgnoreRule.parse(rule).matches(obj, field) is expected


@pytest.mark.parametrize("bad", ["", "   ", "deploy ment/web: replicas", "web: env X",
                                 "deployment/: replicas", ": x", "a/b/c: d", "x" * 501])  # fmt: skip
def test_bad_ignore_rules_are_refused_with_the_syntax(bad: str) -> None:
    with pytest.raises(ValueError, match="KIND/NAME: FIELD"):
        IgnoreRule.parse(bad)


def test_bad_rule_in_kubeloop_yaml_names_the_line() -> None:
    text = ("name: shop\nmanifests: {raw: [k8s.yaml]}\n"
            "parity:\n  ignore:\n    - 'deployment/web: replicas'\n    - 'web: env X'\n")  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        parse(text, Path("kubeloop.yaml"))
    message = str(caught.value)
    assert "kubeloop.yaml:6: parity.ignore.1" in message
    assert "KIND/NAME: FIELD" in message
    loaded = parse(text.replace("web: env X", "image"), Path("kubeloop.yaml"))
    assert loaded.project.parity.ignore == ["deployment/web: replicas", "image"]


def test_expected_differences_exit_0_and_unused_rules_are_told() -> None:
    rules = parse_rules(["deployment/*: replicas", "configmap/gone"])
    report = compare([deployment()], [deployment(spec__replicas=3)], rules)
    assert one(report).expected_by == "deployment/*: replicas"
    assert report.exit_code == 0
    assert report.unused_rules == ["configmap/gone"]
    assert "configmap/gone" in _text(report)


def _text(report: Any) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(table(report))
    return console.export_text()


def test_table_and_json_show_sides_and_status() -> None:
    rules = parse_rules(["replicas"])
    report = compare([deployment()], [deployment(spec__replicas=3,
                     spec__template__spec__containers__0__image="web:2")], rules, "dev", "prod")  # fmt: skip
    text = _text(report)
    assert "dev ↔ prod" in text
    assert "containers.web.image" in text and "unexpected" in text
    assert "expected (replicas)" in text
    assert "1 unexpected difference, 1 expected" in text
    data = json.loads(to_json(report))
    assert data["unexpected"] == 1 and data["expected"] == 1
    row = next(d for d in data["differences"] if d["field"] == "containers.web.image")
    assert (row["a"], row["b"], row["expected"]) == ("web:1", "web:2", False)


def live_of(rendered: dict[str, Any]) -> dict[str, Any]:
    """What the API server gives back for ``rendered``: status, server metadata and
    defaults added, quantities in their canonical form."""
    live = copy.deepcopy(rendered)
    live["metadata"].update(uid="1", resourceVersion="9", generation=2,
                            managedFields=[{"manager": "kubeloop"}],
                            annotations={"deployment.kubernetes.io/revision": "1"})  # fmt: skip
    live["status"] = {"replicas": 1}
    spec = live["spec"]
    spec.update(revisionHistoryLimit=10, progressDeadlineSeconds=600,
                strategy={"type": "RollingUpdate"})  # fmt: skip
    pod = spec["template"]["spec"]
    pod.update(restartPolicy="Always", dnsPolicy="ClusterFirst", securityContext={},
               schedulerName="default-scheduler", terminationGracePeriodSeconds=30)  # fmt: skip
    container = pod["containers"][0]
    container.update(imagePullPolicy="IfNotPresent", terminationMessagePath="/dev/termination-log")
    container["resources"]["limits"]["cpu"] = "500m"
    container["readinessProbe"].update(timeoutSeconds=1, periodSeconds=10, failureThreshold=3)
    container["readinessProbe"]["httpGet"]["scheme"] = "HTTP"
    pod["volumes"][0]["configMap"]["defaultMode"] = 420
    return live


def test_live_defaults_are_not_drift() -> None:
    rendered = deployment()
    live = prune_to(strip_server_fields(live_of(rendered)), rendered)
    assert compare([rendered], [live], []).differences == []


def test_live_drift_by_hand_is_found() -> None:
    rendered = deployment()
    live = live_of(rendered)
    container = live["spec"]["template"]["spec"]["containers"][0]
    container["env"].append({"name": "DEBUG", "value": "1"})  # kubectl set env
    container["command"] = ["sleep", "infinity"]
    container["securityContext"] = {"privileged": True}
    live["spec"]["replicas"] = 4  # kubectl scale
    report = compare([rendered], [prune_to(strip_server_fields(live), rendered)], [], "dev", "live")
    assert {d.field for d in report.differences} == {
        "containers.web.env.DEBUG", "containers.web.command",
        "containers.web.securityContext.privileged", "replicas"}  # fmt: skip


def test_parity_cli_on_stocks(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["parity", "default", "staging", "-f", str(STOCKS)])
    assert result.exit_code == 0, result.output
    assert "0 unexpected differences, 3 expected" in result.output
    result = runner.invoke(main, ["parity", "default", "nope", "-f", str(STOCKS)])
    assert result.exit_code == 2
    assert "no environment 'nope' (known: default, local, staging)" in result.output
    result = runner.invoke(main, ["parity", "default", "-f", str(STOCKS)])
    assert result.exit_code == 2 and "name two environments" in result.output
    result = runner.invoke(main, ["parity", "a", "b", "--live", "-f", str(STOCKS)])
    assert result.exit_code == 2 and "--live compares one environment" in result.output


def test_category_of_unknown_fields_is_other() -> None:
    assert category("Deployment", "strategy.type") == "other"
    assert category("Deployment", "containers.web.image") == "image"


def test_dev_mode_workload_is_compared_as_before_dev_mode() -> None:
    from kubeloop.sync.devmode import ORIGINAL

    rendered = deployment()
    live = live_of(rendered)
    original = copy.deepcopy(live["spec"]["template"])
    live["metadata"]["annotations"][ORIGINAL] = json.dumps(original)
    wrapped = live["spec"]["template"]["spec"]["containers"][0]
    wrapped["command"] = ["/kubeloop/agent", "supervise", "--", "python", "app.py"]
    assert (
        one(compare([rendered], [prune_to(live, rendered)], [])).field == "containers.web.command"
    )
    before = without_dev_mode(live)
    assert before is not None
    assert (
        compare([rendered], [prune_to(strip_server_fields(before), rendered)], []).differences == []
    )
    # Not in dev mode, or a recorded template that is not one: read as it is.
    assert without_dev_mode(live_of(rendered)) is None
    live["metadata"]["annotations"][ORIGINAL] = "[1, 2"
    assert without_dev_mode(live) is None


def test_notes_are_shown() -> None:
    report = compare([deployment()], [deployment()], [])
    report.notes = ["deployment/web is in dev mode (kubeloop dev): compared as it was before"]
    assert "deployment/web is in dev mode" in _text(report)
    assert json.loads(to_json(report))["notes"] == report.notes


def test_ignore_live_is_its_own_list_and_validated() -> None:
    base = "name: shop\nmanifests: {raw: [k8s.yaml]}\nparity:\n"
    loaded = parse(base + "  ignoreLive: ['deployment/web: replicas']\n", Path("kubeloop.yaml"))
    assert loaded.project.parity.ignore_live == ["deployment/web: replicas"]
    assert loaded.project.parity.ignore == []
    with pytest.raises(ConfigError, match=r"kubeloop.yaml:4: parity.ignoreLive.0"):
        parse(base + "  ignoreLive: ['a b: c']\n", Path("kubeloop.yaml"))


def test_deeply_nested_values_are_bounded() -> None:
    deep: Any = "x"
    for _ in range(5000):
        deep = {"a": deep}
    a = {"apiVersion": "v1", "kind": "Thing", "metadata": {"name": "t"}, "spec": {"v": deep}}
    b = {**a, "spec": {"v": {"a": 1}}}
    report = compare([a], [b], [])
    assert report.differences and all(d.object == "thing/t" for d in report.differences)
    assert "not compared" in to_json(report) + _text(report)
