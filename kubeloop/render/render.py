"""The renderers. Each returns plain dicts; errors name the file and what to fix."""

from __future__ import annotations

import glob
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from kubeloop.config import LoadedConfig
from kubeloop.core import MANAGED_BY, PROJECT_LABEL, Obj, kubectl_command
from kubeloop.errors import KubeloopError
from kubeloop.proc import run
from kubeloop.render.images import pod_template, replace_images
from kubeloop.render.values import HeldValues, Structured, TemplateText, documents

try:
    from yaml import CSafeDumper as _Dumper
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeDumper as _Dumper  # type: ignore[assignment]
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]


def _documents(text: str, source: str) -> list[Obj]:
    try:
        docs = list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as exc:
        raise KubeloopError(f"{source}: not valid YAML: {exc}") from exc
    except (ValueError, OverflowError, TypeError, IndexError, RecursionError) as exc:
        # PyYAML's constructors on values Python cannot hold (a 5,000-digit integer, the
        # 13th month) raise these, not YAMLError.
        raise KubeloopError(f"{source}: a value cannot be read: {exc}") from exc
    return _objects(docs, source)


def _objects(docs: list[Any], source: str) -> list[Obj]:
    objects: list[Obj] = []
    for doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            raise KubeloopError(f"{source}: every document must be a Kubernetes object "
                                "with apiVersion and kind")  # fmt: skip
        if str(doc["kind"]).endswith("List") and isinstance(doc.get("items"), list):
            objects.extend(doc["items"])
        else:
            objects.append(doc)
    return objects


def _expand(root: Path, pattern: str) -> list[Path]:
    matches = sorted(Path(p) for p in glob.glob(str(root / pattern), recursive=True))
    if not matches:
        raise KubeloopError(f"manifest path '{pattern}' matches no file under {root}",
                            "fix the path in kubeloop.yaml")  # fmt: skip
    return [m for m in matches if m.is_file()]


def render_raw(root: Path, patterns: list[str]) -> list[Obj]:
    objects: list[Obj] = []
    for pattern in patterns:
        for path in _expand(root, pattern):
            name = str(path.relative_to(root))
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise KubeloopError(f"{name}: cannot be read as UTF-8 text: {exc}") from exc
            objects += _documents(text, name)
    return objects


def _template_environment(root: Path, held: HeldValues) -> Any:
    """Sandboxed, strict about undefined names, and every printed value held back (see
    kubeloop.render.values): a value is data, it cannot add YAML structure."""
    import jinja2
    from jinja2.runtime import Macro
    from jinja2.sandbox import SandboxedEnvironment

    class Environment(SandboxedEnvironment):
        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
            result = super().call(__context, __obj, *args, **kwargs)
            # A macro writes template text (its own values are held already).
            return TemplateText(result) if isinstance(__obj, Macro) else result

    env = Environment(
        loader=jinja2.FileSystemLoader(str(root)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        finalize=held.finalize,
    )
    env.filters["tojson"] = lambda value: Structured(value, as_json=True)
    env.filters["toyaml"] = lambda value: Structured(value, as_json=False)
    return env


def render_templates(root: Path, patterns: list[str], context: Mapping[str, Any]) -> list[Obj]:
    import jinja2

    held = HeldValues()
    env = _template_environment(root, held)
    objects: list[Obj] = []
    for pattern in patterns:
        for path in _expand(root, pattern):
            name = path.relative_to(root).as_posix()
            try:
                text = env.get_template(name).render(**context)
            except jinja2.UndefinedError as exc:
                raise KubeloopError(f"{name}: {exc.message}",
                                    "define it under 'values' in kubeloop.yaml") from exc  # fmt: skip
            except jinja2.TemplateSyntaxError as exc:
                raise KubeloopError(f"{name}:{exc.lineno}: template error: {exc.message}") from exc
            except jinja2.TemplateError as exc:
                raise KubeloopError(f"{name}: template error: {exc}") from exc
            except UnicodeDecodeError as exc:
                raise KubeloopError(f"{name}: cannot be read as UTF-8 text: {exc}") from exc
            except (ArithmeticError, LookupError, TypeError, ValueError, RecursionError) as exc:
                # The template's own expressions ({{ 1 / 0 }}, {{ n + "x" }}) raise these.
                raise KubeloopError(f"{name}: template error: {type(exc).__name__}: {exc}") from exc
            objects += _objects(documents(text, held, name), name)
    return objects


async def render_kustomize(root: Path, directories: list[str]) -> list[Obj]:
    objects: list[Obj] = []
    for directory in directories:
        path = root / directory
        if not (path / "kustomization.yaml").exists() and not (path / "kustomization.yml").exists():
            raise KubeloopError(f"{directory} has no kustomization.yaml")
        out = await run([kubectl_command(), "kustomize", str(path)], timeout=120)
        objects += _documents(out.stdout, f"kustomize {directory}")
    return objects


async def render_helm(config: LoadedConfig) -> list[Obj]:
    project = config.project
    if not project.manifests.helm:
        return []
    helm = shutil.which("helm")
    if helm is None:
        raise KubeloopError("kubeloop.yaml names a Helm chart, but 'helm' is not installed",
                            "install Helm 3 (https://helm.sh/docs/intro/install/)")  # fmt: skip
    objects: list[Obj] = []
    for release in project.manifests.helm:
        argv = [helm, "template", release.release or project.name, str(config.root / release.chart),
                "--namespace", project.namespace]  # fmt: skip
        for values in release.values_files:
            argv += ["--values", str(config.root / values)]
        for key, value in release.set.items():
            argv += ["--set", f"{key}={value}"]
        out = await run(argv, timeout=120)
        objects += _documents(out.stdout, f"helm chart {release.chart}")
    return objects


def _label(objects: list[Obj], project: str) -> None:
    for obj in objects:
        labels = obj.setdefault("metadata", {}).setdefault("labels", {}) or {}
        labels[MANAGED_BY] = "kubeloop"  # kubeloop applies it, whatever rendered it (Helm)
        labels[PROJECT_LABEL] = project
        obj["metadata"]["labels"] = labels
        # Pods carry the project label too, so logs and port-forwards can find them.
        template = pod_template(obj)
        if template is not None:
            template.setdefault("metadata", {}).setdefault("labels", {})[PROJECT_LABEL] = project


async def render(config: LoadedConfig, built: Mapping[str, str] | None = None) -> list[Obj]:
    """All objects of the project, labelled, with built images swapped in."""
    project = config.project
    manifests = project.manifests
    context = {
        **project.values,
        "values": project.values,
        "namespace": project.namespace,
        "project": project.name,
        "environment": config.environment or "default",
    }
    objects = render_raw(config.root, manifests.raw)
    objects += render_templates(config.root, manifests.templates, context)
    objects += await render_kustomize(config.root, manifests.kustomize)
    objects += await render_helm(config)
    _label(objects, project.name)
    if built:
        replace_images(objects, built)
    return objects


def render_yaml(objects: list[Obj]) -> str:
    """The objects as one multi-document YAML stream, in order."""
    return yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
