from pathlib import Path

import pytest

from kubeloop.config import ConfigError, json_schema, parse

GOOD = """\
name: shop
artifacts:
  - image: web
    context: web
manifests:
  templates: [k8s/*.j2]
values:
  replicas: 1
  db: {host: local}
environments:
  staging:
    namespace: shop-staging
    values:
      replicas: 3
      db: {port: 5432}
"""


def test_environment_overrides_merge_deeply() -> None:
    base = parse(GOOD, Path("/p/kubeloop.yaml")).project
    assert base.namespace == "default" and base.values["replicas"] == 1
    staged = parse(GOOD, Path("/p/kubeloop.yaml"), "staging").project
    assert staged.namespace == "shop-staging"
    assert staged.values == {"replicas": 3, "db": {"host": "local", "port": 5432}}
    assert staged.artifacts[0].context == "web"


def test_errors_name_file_line_key_and_expectation() -> None:
    text = GOOD.replace("    context: web", "    contxt: web").replace("name: shop", "name: Shop!")
    with pytest.raises(ConfigError) as caught:
        parse(text, Path("/p/kubeloop.yaml"))
    problems = caught.value.problems
    assert "kubeloop.yaml:1: name: String should match pattern" in problems[0]
    assert any(p.startswith("kubeloop.yaml:4: artifacts.0.contxt: unknown key") for p in problems)


def test_missing_and_unknown_environment() -> None:
    with pytest.raises(ConfigError, match="manifests: required key is missing"):
        parse("name: x\n", Path("/p/kubeloop.yaml"))
    with pytest.raises(ConfigError, match="environment 'prod' is not defined"):
        parse(GOOD, Path("/p/kubeloop.yaml"), "prod")
    with pytest.raises(ConfigError, match=r"kubeloop.yaml:2: not valid YAML"):
        parse("name: x\n  bad: [\n", Path("/p/kubeloop.yaml"))


def test_json_schema_is_published() -> None:
    schema = json_schema()
    assert schema["title"] == "kubeloop.yaml"
    assert {"artifacts", "manifests", "portForward", "environments"} <= set(schema["properties"])
    assert "keepChanges" in schema["$defs"]["DevSettings"]["properties"]


CI = """\
  ci:
    deploy: {timeout: 600}
    dev: {cleanup: true}
    sync: [{selector: {app: web}, src: app, dest: /srv}]
    portForward: [{resource: deployment/web, port: 80, localPort: 8080}]
deploy: {timeout: 60, prune: false}
"""


def test_environments_override_deploy_dev_sync_and_forwards() -> None:
    ci = parse(GOOD + CI, Path("/p/kubeloop.yaml"), "ci").project
    assert (ci.deploy.timeout, ci.deploy.prune, ci.dev.cleanup) == (600, False, True)
    assert [s.dest for s in ci.sync] == ["/srv"]
    assert ci.port_forward[0].local_port == 8080
    with pytest.raises(ConfigError, match="unknown key"):
        parse(GOOD + "  bad:\n    deploy: {timout: 1}\n", Path("/p/kubeloop.yaml"), "bad")
