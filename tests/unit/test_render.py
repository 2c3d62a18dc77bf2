from pathlib import Path

import pytest

from kubeloop.config import parse
from kubeloop.errors import KubeloopError
from kubeloop.render import render, replace_images
from kubeloop.render.images import image_name

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      initContainers: [{name: init, image: "web:dev"}]
      containers: [{name: web, image: web}, {name: side, image: "busybox:1"}]
"""


def _project(tmp_path: Path, manifests: str, values: str = "{}") -> Path:
    path = tmp_path / "kubeloop.yaml"
    path.write_text(
        f"name: p\nartifacts: [{{image: web}}]\nmanifests: {manifests}\nvalues: {values}\n"
    )
    return path


async def test_raw_manifests_get_labels_and_built_images(tmp_path: Path) -> None:
    (tmp_path / "k8s").mkdir()
    (tmp_path / "k8s" / "web.yaml").write_text(DEPLOYMENT)
    config = parse(
        _project(tmp_path, "{raw: [k8s/*.yaml]}").read_text(), tmp_path / "kubeloop.yaml"
    )
    objects = await render(config, {"web": "localhost:5000/p/web:kl-1"})
    spec = objects[0]["spec"]["template"]["spec"]
    assert [c["image"] for c in spec["initContainers"] + spec["containers"]] == [
        "localhost:5000/p/web:kl-1", "localhost:5000/p/web:kl-1", "busybox:1"]  # fmt: skip
    assert objects[0]["metadata"]["labels"]["kubeloop.dev/project"] == "p"
    assert objects[0]["spec"]["template"]["metadata"]["labels"]["kubeloop.dev/project"] == "p"


async def test_templates_are_sandboxed_and_strict(tmp_path: Path) -> None:
    (tmp_path / "t.yaml.j2").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {n: '{{ replicas }}'}\n")  # fmt: skip
    config = parse(_project(tmp_path, "{templates: [t.yaml.j2]}", "{replicas: 4}").read_text(),
                   tmp_path / "kubeloop.yaml")  # fmt: skip
    assert (await render(config))[0]["data"] == {"n": "4"}
    (tmp_path / "t.yaml.j2").write_text("x: {{ missing }}\n")
    with pytest.raises(KubeloopError, match="'missing' is undefined"):
        await render(config)
    (tmp_path / "t.yaml.j2").write_text("x: {{ ''.__class__.__mro__ }}\n")
    with pytest.raises(KubeloopError):
        await render(config)


async def test_missing_paths_and_helm_are_explained(tmp_path: Path) -> None:
    config = parse(
        _project(tmp_path, "{raw: [nope/*.yaml]}").read_text(), tmp_path / "kubeloop.yaml"
    )
    with pytest.raises(KubeloopError, match="matches no file"):
        await render(config)


def test_image_names_and_unused_artifacts() -> None:
    assert image_name("localhost:5000/a/b:tag") == "localhost:5000/a/b"
    assert image_name("web@sha256:abc") == "web"
    assert image_name("web") == "web"
    unused = replace_images([{"kind": "Pod", "spec": {"containers": [{"image": "a"}]}}],
                            {"a": "r/a:1", "b": "r/b:1"})  # fmt: skip
    assert unused == ["b"]


async def test_helm_charts_need_helm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no helm on it
    config = parse(_project(tmp_path, "{helm: [{chart: charts/web}]}").read_text(),
                   tmp_path / "kubeloop.yaml")  # fmt: skip
    with pytest.raises(KubeloopError, match="'helm' is not installed") as caught:
        await render(config)
    assert caught.value.hint and "install Helm" in caught.value.hint
