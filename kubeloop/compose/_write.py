"""Write a :class:`Translation` as files a person keeps: one manifest file per service
(or a small Helm chart), ``kubeloop.yaml``, and the notes as comments in it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kubeloop import ui
from kubeloop.compose._load import load_compose
from kubeloop.compose._translate import WAIT_IMAGE, Note, Translation, translate
from kubeloop.config.schema import Project
from kubeloop.core import Obj
from kubeloop.errors import KubeloopError
from kubeloop.images.seed import SEED_RECIPES


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Plain YAML for people: a label set written twice is written twice, not aliased."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _dump(documents: list[Any]) -> str:
    return yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                         width=100, allow_unicode=True)  # fmt: skip


def _manifest_text(header: str, objects: list[Obj]) -> str:
    return f"# {header}\n" + _dump(objects)


def _helm_template(text: str, name: str, profiles: list[str]) -> str:
    """The manifest text with the replica count from values (and, for a service behind
    Compose profiles, the whole file behind them)."""
    text = re.sub(r"^  replicas: \d+$", f'  replicas: {{{{ index .Values.replicas "{name}" }}}}',
                  text, count=1, flags=re.M)  # fmt: skip
    if profiles:
        condition = " ".join(f'(index .Values.profiles "{p}")' for p in profiles)
        test = f"or {condition}" if len(profiles) > 1 else condition
        text = f"{{{{- if {test} }}}}\n{text}{{{{- end }}}}\n"
    return text


@dataclass(frozen=True)
class InitResult:
    written: list[Path]
    skipped: list[Path]
    notes: list[Note]
    translation: Translation
    compose_files: list[Path]


def project_files(translation: Translation, source: str, helm: bool = False) -> dict[str, str]:
    """Relative path → text of every file for ``translation``."""
    files: dict[str, str] = {}
    base: list[str] = []
    by_profile: dict[str, list[str]] = {}
    header = f"from the '{{}}' service of {source} (kubeloop init --compose)"
    prefix = "chart/templates" if helm else "k8s"
    if translation.volumes:
        path = f"{prefix}/volumes.yaml"
        files[path] = _manifest_text(f"named volumes of {source}", translation.volumes)
        base.append(path)
    for service in translation.services:
        path = f"{prefix}/{service.name}.yaml"
        text = _manifest_text(header.format(service.compose_name), service.objects)
        files[path] = _helm_template(text, service.name, service.profiles) if helm else text
        for profile in service.profiles:
            by_profile.setdefault(profile, []).append(path)
        if not service.profiles:
            base.append(path)
    if any((s.artifact or {}).get("context") == "." for s in translation.services):
        # kubeloop's own files are not build input: editing them must not rebuild images.
        files[".dockerignore"] = "kubeloop.yaml\nk8s/\nchart/\n"
    config = _config(translation, base, by_profile, helm)
    files["kubeloop.yaml"] = _config_text(translation, source, config)
    if helm:
        files["chart/Chart.yaml"] = _dump([{
            "apiVersion": "v2", "name": translation.project, "version": "0.1.0",
            "description": f"Made from {source} by kubeloop init --compose --helm"}])  # fmt: skip
        values: dict[str, Any] = {"replicas": {s.name: _replicas(s.objects)
                                               for s in translation.services}}  # fmt: skip
        if by_profile:
            values["profiles"] = {p: False for p in sorted(by_profile)}
        files["chart/values.yaml"] = (
            "# Compose profiles are turned on per kubeloop environment.\n" + _dump([values])
        )
    # What the generated config says must be what kubeloop accepts.
    Project.model_validate(yaml.safe_load(files["kubeloop.yaml"]))
    return files


def _replicas(objects: list[Obj]) -> int:
    return int(next(o["spec"]["replicas"] for o in objects if o["kind"] == "Deployment"))


def _config(translation: Translation, base: list[str], by_profile: dict[str, list[str]],
            helm: bool) -> dict[str, Any]:  # fmt: skip
    services = translation.services
    plain = [s for s in services if not s.profiles]

    def section(chosen: list[Any]) -> dict[str, Any]:
        part: dict[str, Any] = {}
        artifacts = [s.artifact for s in chosen if s.artifact]
        if artifacts:
            part["artifacts"] = artifacts
        part["portForward"] = [f for s in chosen for f in s.port_forwards]
        part["sync"] = [r for s in chosen for r in s.syncs]
        return part

    config: dict[str, Any] = {"apiVersion": "kubeloop/v1", "name": translation.project,
                              "namespace": translation.project}  # fmt: skip
    main = section(plain)
    config["artifacts"] = main.pop("artifacts", [])
    if helm:
        config["manifests"] = {"helm": [{"chart": "chart"}]}
    else:
        config["manifests"] = {"raw": base or ["k8s/*.yaml"]}
    config.update({k: v for k, v in main.items() if v})
    if not config["artifacts"]:
        del config["artifacts"]
    environments: dict[str, Any] = {}
    for profile in sorted(by_profile):
        chosen = plain + [s for s in services if profile in s.profiles]
        # An environment's lists replace the project's: only those that differ are written.
        everywhere = section(plain)
        env = {k: v for k, v in section(chosen).items() if v != everywhere.get(k)}
        if helm:
            env["manifests"] = {
                "helm": [{"chart": "chart", "set": {f"profiles.{profile}": "true"}}]
            }
        else:
            env["manifests"] = {"raw": base + by_profile[profile]}
        environments[profile] = env
    environments.setdefault("local", {})
    config["environments"] = environments
    return config


def _config_text(translation: Translation, source: str, config: dict[str, Any]) -> str:
    lines = [f"# Made from {source} by 'kubeloop init --compose': run 'kubeloop dev'.",
             "# Services answer on the same localhost ports as under Compose; saved files "
             "under a sync rule go live without a rebuild."]  # fmt: skip
    for title, translated in (("Not translated", False), ("Translated with a note", True)):
        notes = [n for n in translation.notes if n.translated == translated]
        if notes:
            lines.append(f"# {title}:")
            lines += [f"#   {_where(n)}: {n.message}" for n in notes]
    return "\n".join(lines) + "\n" + _dump([config])


def _where(note: Note) -> str:
    return f"{note.service}.{note.key}" if note.service else note.key


def init_from_compose(folder: Path, compose_file: str | None = None, name: str | None = None,
                      helm: bool = False) -> InitResult:  # fmt: skip
    """Read the compose project in ``folder`` and write its kubeloop project beside it.
    Existing files are left as they are (and returned as skipped)."""
    from kubeloop.init import project_name

    if not folder.is_dir():
        raise KubeloopError(f"{folder} is not a folder")
    if compose_file and (folder / compose_file).is_dir():
        # `kubeloop init --compose DIR`: the option took the folder for its FILE.
        folder, compose_file = folder / compose_file, None
    data, compose_files = load_compose(folder, compose_file)
    root = compose_files[0].parent
    project = name or _project_name(data, root, project_name)
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", project) or len(project) > 40:
        raise KubeloopError(f"'{project}' is not a valid project name",
                            "use lowercase letters, digits and '-' (at most 40): --name NAME")  # fmt: skip
    source = compose_files[0].name
    translation = translate(data, root, project, source)
    files = project_files(translation, source, helm)
    written: list[Path] = []
    skipped: list[Path] = []
    for relative, text in files.items():
        path = root / relative
        if path.exists():
            if relative != ".dockerignore":  # a project's own one is no news
                skipped.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return InitResult(written, skipped, translation.notes, translation, compose_files)


def _project_name(data: dict[str, Any], root: Path, fallback: Any) -> str:
    named = data.get("name")
    if isinstance(named, str) and named:
        return re.sub(r"[^a-z0-9-]+", "-", named.lower()).strip("-")[:40] or "app"
    return str(fallback(root))


def seed_hint(translation: Translation) -> list[str]:
    """Images a cluster without a public registry can get from Debian packages."""
    images = set(translation.images)
    if any("initContainers" in o["spec"]["template"]["spec"] for s in translation.services
           for o in s.objects if o["kind"] == "Deployment"):  # fmt: skip
        images.add(WAIT_IMAGE)
    return sorted(i for i in images if i in SEED_RECIPES)


def print_result(result: InitResult) -> None:
    """What was written, what was not translated and why, and what to run next."""
    for path in result.written:
        ui.info(f"wrote {path}")
    for path in result.skipped:
        ui.warn(f"{path} exists; left as it is")
    translated = [n for n in result.notes if n.translated]
    skipped = [n for n in result.notes if not n.translated]
    files = " + ".join(p.name for p in result.compose_files)
    ui.info(f"{len(result.translation.services)} services from {files}; {len(translated)} "
            f"translation notes (in kubeloop.yaml), {len(skipped)} not translated")  # fmt: skip
    for note in skipped:
        ui.warn(f"not translated: {_where(note)}: {note.message}")
    seeds = seed_hint(result.translation)
    if seeds:
        ui.info(
            f"on a cluster without a public registry: kubeloop cluster seed-image {' '.join(seeds)}"
        )
    forwards = [f for s in result.translation.services if not s.profiles for f in s.port_forwards]
    urls = ", ".join(f"localhost:{f['localPort']}" for f in forwards)
    ui.info(f"next: kubeloop dev{f'  (then {urls})' if urls else ''}")
