"""``kubeloop parity`` through the real command: the stocks example's staging
environment against the default (expected differences pass, a leaked one fails CI), and
``--live`` against objects deployed to the real cluster (the API server's defaults are
no drift; changes made by hand are, with Secret values never shown)."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import APPS, Env, kubectl

KUBELOOP = str(Path(sys.executable).with_name("kubeloop"))


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def rows(self) -> set[tuple[str, str]]:
        return {(d["object"], d["field"]) for d in self.json()["differences"]}


async def parity(*args: str) -> Result:
    proc = await asyncio.create_subprocess_exec(
        KUBELOOP, "parity", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


@pytest.fixture
def stocks(tmp_path: Path) -> Path:
    shutil.copytree(APPS / "stocks", tmp_path / "stocks")
    return tmp_path / "stocks" / "kubeloop.yaml"


async def test_stocks_staging_expected_differences_pass(stocks: Path) -> None:
    result = await parity("default", "staging", "-f", str(stocks), "-o", "json")
    assert result.code == 0, result.err
    data = result.json()
    assert data["unexpected"] == 0
    assert result.rows() == {("deployment/consumer", "replicas"),
                             ("deployment/generator", "replicas"),
                             ("deployment/consumer", "containers.consumer.env.WINDOW")}  # fmt: skip
    # The consumer's address of the generator names each environment's own namespace:
    # the same Service, so no difference.
    assert not any("GENERATOR_URL" in field for _, field in result.rows())


async def test_stocks_leaked_difference_fails_until_removed(stocks: Path) -> None:
    original = stocks.read_text()
    leaked = original.replace("      window: 100\n",
                              "      window: 100\n      tick_seconds: 1.0\n")  # fmt: skip
    # ... and an image built differently for staging only.
    leaked = leaked.replace("  staging:\n", "  staging:\n    artifacts:\n"
                            "      - {image: generator, context: generator, "
                            "buildArgs: {DEBUG: '1'}}\n"
                            "      - {image: consumer, context: consumer}\n")  # fmt: skip
    assert leaked.count("tick_seconds: 1.0") == 1 and "DEBUG" in leaked
    stocks.write_text(leaked)

    table = await parity("default", "staging", "-f", str(stocks))
    assert table.code == 1, table.err
    assert "containers.generator.env.TICK_SECONDS" in table.out
    assert "unexpected" in table.out
    assert "3 unexpected differences, 3 expected" in table.out

    result = await parity("default", "staging", "-f", str(stocks), "-o", "json")
    assert result.code == 1
    unexpected = {(d["object"], d["field"], d["category"], str(d["a"]), str(d["b"]))
                  for d in result.json()["differences"] if not d["expected"]}  # fmt: skip
    image = next(u for u in unexpected if u[1] == "containers.generator.image")
    assert image[3].startswith("stocks/generator:kl-") and image[3] != image[4]
    assert unexpected - {image} == {
        ("deployment/generator", "containers.generator.env.TICK_SECONDS", "env", "0.1", "1.0"),
        ("artifact/generator", "buildArgs.DEBUG", "build", "None", "1"),
    }  # fmt: skip

    stocks.write_text(original)
    assert (await parity("default", "staging", "-f", str(stocks))).code == 0


MANIFESTS = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: flags}
data:
  flags.json: '{"new_ui": false, "limit": 5}'
  MODE: fast
---
apiVersion: v1
kind: Secret
metadata: {name: db}
stringData: {password: hunter2}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
        - name: web
          image: python:3.11-slim
          command: [sleep, "600"]
          env:
            - {name: LEVEL, value: info}
            - name: MODE
              valueFrom: {configMapKeyRef: {name: flags, key: MODE}}
            - name: PASSWORD
              valueFrom: {secretKeyRef: {name: db, key: password}}
          resources:
            requests: {cpu: 0.05, memory: 32Mi}
            limits: {memory: 0.5Gi}
          readinessProbe:
            exec: {command: ["true"]}
            periodSeconds: 1
          securityContext: {allowPrivilegeEscalation: false}
          volumeMounts: [{name: flags, mountPath: /etc/flags}]
      volumes:
        - {name: flags, configMap: {name: flags}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8000}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  rules:
    - host: web.example.test
      http:
        paths:
          - path: /
            pathType: Prefix
            backend: {service: {name: web, port: {number: 80}}}
"""


@dataclass
class Deployed:
    config: Path
    namespace: str
    cluster: str

    async def live(self, *extra: str) -> Result:
        return await parity("--live", "-f", str(self.config), "--cluster", self.cluster,
                            *extra)  # fmt: skip


@pytest.fixture(scope="module")
async def deployed(env: Env, cluster_name: str,
                   tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Deployed]:  # fmt: skip
    """A project with every kind parity reads, deployed once (not waited for: parity
    reads objects, not pods)."""
    root = tmp_path_factory.mktemp("parity")
    namespace = f"parity-{uuid.uuid4().hex[:8]}"
    (root / "k8s.yaml").write_text(MANIFESTS)
    (root / "old.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: old}\n"
                                   "data: {LEGACY: 'true'}\n")  # fmt: skip
    config = root / "kubeloop.yaml"
    # Deployed with old.yaml and prune off, then the render stops naming it: the
    # ConfigMap it made still runs, and parity must say so.
    config.write_text(f"name: paritytest\nnamespace: {namespace}\ndeploy: {{prune: false}}\n"
                      "manifests: {raw: [k8s.yaml, old.yaml]}\n")  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        KUBELOOP, "deploy", "--no-wait", "--config", str(config), "--cluster", cluster_name,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode == 0, out.decode()
    config.write_text(config.read_text().replace("k8s.yaml, old.yaml", "k8s.yaml"))
    try:
        yield Deployed(config, namespace, cluster_name)
    finally:
        await kubectl(env, "delete", "namespace", namespace, "--wait=false",
                      "--ignore-not-found")  # fmt: skip


async def test_live_defaults_are_no_drift_but_a_left_over_object_is(deployed: Deployed) -> None:
    # The API server added defaults everywhere (strategy, probe timings, protocol, the
    # volume's mode, quantities in their own spelling): none of it is drift. The one
    # difference is the ConfigMap deployed but no longer rendered.
    result = await deployed.live("-o", "json")
    data = result.json()
    old = {"object": "configmap/old", "field": "", "category": "object", "a": None,
           "b": "present", "a_present": False, "b_present": True, "masked": False,
           "expected": False, "rule": None}  # fmt: skip
    assert data["differences"] == [old], data
    assert result.code == 1
    assert (data["a"], data["b"], data["objects"]) == ("default", "live", 6)


async def test_live_drift_is_found_and_secret_values_never_shown(deployed: Deployed,
                                                                 env: Env) -> None:  # fmt: skip
    ns = ["-n", deployed.namespace]
    await kubectl(env, "set", "env", "deployment/web", "LEAK=1", *ns)
    await kubectl(env, "scale", "deployment/web", "--replicas=2", *ns)
    await kubectl(env, "patch", "configmap", "flags", "--type", "merge", "-p",
                  json.dumps({"data": {"flags.json": '{"new_ui": true, "limit": 5}'}}), *ns)  # fmt: skip
    await kubectl(env, "patch", "secret", "db", "--type", "merge", "-p",
                  json.dumps({"stringData": {"password": "s3cr3t-live"}}), *ns)  # fmt: skip
    await kubectl(env, "delete", "ingress", "web", *ns)

    result = await deployed.live("-o", "json")
    assert result.code == 1, result.out + result.err
    rows = {(d["object"], d["field"]): d for d in result.json()["differences"]}
    assert set(rows) == {("deployment/web", "containers.web.env.LEAK"),
                         ("deployment/web", "replicas"),
                         ("configmap/flags", "data.flags.json.new_ui"),
                         ("secret/db", "data.password"),
                         ("ingress/web", ""), ("configmap/old", "")}  # fmt: skip
    assert rows["deployment/web", "containers.web.env.LEAK"]["a_present"] is False
    assert (rows["deployment/web", "replicas"]["a"], rows["deployment/web", "replicas"]["b"]) == (
        1,
        2,
    )
    flag = rows["configmap/flags", "data.flags.json.new_ui"]
    assert (flag["category"], flag["a"], flag["b"]) == ("feature flag", False, True)
    assert rows["secret/db", "data.password"]["masked"] is True
    assert (rows["ingress/web", ""]["a_present"], rows["ingress/web", ""]["b_present"]) == (
        True,
        False,
    )

    table = await deployed.live()
    assert table.code == 1
    assert "6 unexpected differences" in table.out
    for shown in (result.out, table.out, result.err, table.err):
        for secret in ("hunter2", "s3cr3t-live"):
            assert secret not in shown
            assert base64.b64encode(secret.encode()).decode() not in shown

    # Rules for the differences between environments do not excuse drift; declared
    # in ignoreLive (a field the cluster changes by design), the same drift passes.
    text = deployed.config.read_text()
    rules = ("    - 'deployment/web: replicas'\n    - 'env.LEAK'\n"
             "    - 'configmap/flags: data.flags.json.new_ui'\n"
             "    - 'secret/db: data.*'\n    - ingress/web\n    - configmap/old\n")  # fmt: skip
    try:
        deployed.config.write_text(text + "parity:\n  ignore:\n" + rules)
        assert (await deployed.live()).code == 1
        deployed.config.write_text(text + "parity:\n  ignoreLive:\n" + rules)
        table = await deployed.live()
        assert table.code == 0, table.out
        assert "0 unexpected differences, 6 expected (parity.ignoreLive)" in table.out
    finally:
        deployed.config.write_text(text)
