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


async def _render_one(tmp_path: Path, template: str, values: dict[str, object]) -> list[dict]:  # type: ignore[type-arg]
    import json

    (tmp_path / "t.yaml.j2").write_text(template)
    config = parse(_project(tmp_path, "{templates: [t.yaml.j2]}", json.dumps(values)).read_text(),
                   tmp_path / "kubeloop.yaml")  # fmt: skip
    return await render(config)


CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, labels: {app: {{ app }}}}\n"
SECRET = "x\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: stolen}\n"


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ("data: {v: {{ v }}}", SECRET),  # flow mapping, plain
        ("data:\n  v: {{ v }}", SECRET),  # block mapping, plain
        ("data:\n  v: '{{ v }}'", SECRET + "'\nmore: '"),  # single-quoted, quote inside
        ('data: {v: "{{ v }}"}', 'x", evil: "y'),  # double-quoted, breaks out of the quote
        ("data: {v: {{ v }}}", "x, evil: y}\n---\n{a: b"),  # ends the flow mapping
        ("data:\n  v: |\n    {{ v }}", "line1\nline2\n---\nkind: Secret"),  # block scalar
        ("data:\n  v: pre-{{ v }}-post", "\n---\napiVersion: v1\n"),  # inside a longer scalar
    ],
    ids=["flow", "block", "single-quoted", "double-quoted", "flow-end", "block-scalar", "inside"],
)
async def test_a_value_cannot_add_structure(tmp_path: Path, line: str, value: str) -> None:
    objects = await _render_one(tmp_path, CM + line + "\n", {"v": value, "app": "web"})
    assert [o["kind"] for o in objects] == ["ConfigMap"]
    assert list(objects[0]["data"]) == ["v"]
    text = objects[0]["data"]["v"]
    assert value in text or value.strip() in text  # verbatim (a block scalar keeps its own)


async def test_labels_cannot_be_injected_through_a_flow_mapping(tmp_path: Path) -> None:
    objects = await _render_one(tmp_path, CM, {"app": "web, kubeloop.dev/project: other"})
    labels = objects[0]["metadata"]["labels"]
    assert labels["app"] == "web, kubeloop.dev/project: other"
    assert labels["kubeloop.dev/project"] == "p"


async def test_values_keep_their_types(tmp_path: Path) -> None:
    template = CM + (
        "data:\n  n: {{ n }}\n  quoted: '{{ n }}'\n  joined: {{ n }}{{ n }}\n"
        "  suffixed: {{ n }}-x\n  flag: {{ flag }}\n  list: {{ items }}\n  map: {{ nested }}\n"
        "  text: {{ text }}\n  num_text: {{ num_text }}\n  json: '{{ nested | tojson }}'\n"
        "  yaml: {{ nested | toyaml }}\n  empty: {{ nothing }}\n"
    )
    values = {"n": 4, "flag": True, "items": ["a", "b"], "nested": {"k": [1, "x"]},
              "text": "[not, a, list]", "num_text": "8080", "nothing": None, "app": "web"}  # fmt: skip
    data = (await _render_one(tmp_path, template, values))[0]["data"]
    assert data == {"n": 4, "quoted": "4", "joined": 44, "suffixed": "4-x", "flag": True,
                    "list": ["a", "b"], "map": {"k": [1, "x"]}, "text": "[not, a, list]",
                    "num_text": 8080, "json": '{"k": [1, "x"]}', "yaml": {"k": [1, "x"]},
                    "empty": None}  # fmt: skip


async def test_macros_and_loops_still_write_structure(tmp_path: Path) -> None:
    template = (
        "{% macro labels(name) %}{app: {{ name }}, tier: web}{% endmacro %}"
        "{% for app in apps %}---\napiVersion: v1\nkind: ConfigMap\n"
        "metadata: {name: {{ app }}, labels: {{ labels(app) }}}\n{% endfor %}"
    )
    objects = await _render_one(tmp_path, template, {"apps": ["a", "b, c: d"]})
    assert [o["metadata"]["name"] for o in objects] == ["a", "b, c: d"]
    assert objects[1]["metadata"]["labels"]["app"] == "b, c: d"
    assert objects[1]["metadata"]["labels"]["tier"] == "web"


async def test_a_file_put_in_a_block_scalar_with_indent(tmp_path: Path) -> None:
    """The usual way to embed a file (``indent(n)`` to the block's indentation) gives the
    file as it was, and a multi-line value without indent is embedded whole too."""
    template = CM + "data:\n  a.ini: |\n    {{ ini | indent(4) }}\n  b.ini: |\n    {{ ini }}\n"
    ini = "[s]\nkey = 1\n---\nkind: Secret\n"
    data = (await _render_one(tmp_path, template, {"ini": ini, "app": "w"}))[0]["data"]
    assert data == {"a.ini": ini, "b.ini": ini}


@pytest.mark.parametrize(
    "template",
    ["x: {{ 1 / 0 }}\n", "x: {{ n + 'a' }}\n", "x: {{ items[9] }}\n", "v: " + "9" * 5000 + "\n"],
    ids=["zero-division", "type", "index", "5000-digits"],
)
async def test_template_mistakes_are_kubeloop_errors(tmp_path: Path, template: str) -> None:
    with pytest.raises(KubeloopError, match=r"t\.yaml\.j2"):
        await _render_one(tmp_path, template, {"n": 1, "items": []})
