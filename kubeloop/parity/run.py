"""Parity of a project: two environments rendered side by side, or one environment
against what runs in the cluster now."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from kubeloop.core import Obj
from kubeloop.parity.compare import ParityReport, compare
from kubeloop.parity.ignore import parse_rules
from kubeloop.parity.live import read_live

if TYPE_CHECKING:
    from kubeloop.config import LoadedConfig
    from kubeloop.devloop import Session

DEFAULT = "default"  # the project's settings with no environment applied


def load_environment(config_path: Path | None, environment: str) -> LoadedConfig:
    """The config with ``environment``'s overrides (``default``: none, unless the file
    defines an environment by that name)."""
    from kubeloop.config import load
    from kubeloop.errors import KubeloopError

    base = load(config_path)
    known = base.project.environments
    if environment == DEFAULT and DEFAULT not in known:
        return base
    if environment not in known:
        names = ", ".join(sorted({DEFAULT, *known}))
        raise KubeloopError(f"{base.path.name} defines no environment '{environment}' "
                            f"(known: {names})",
                            "'default' is the project without overrides; the others are "
                            "under 'environments:' in kubeloop.yaml", exit_code=2)  # fmt: skip
    return load(base.path, environment)


async def images_of(config: LoadedConfig, registry: str) -> dict[str, str]:
    """The reference each artifact has for its current sources (nothing is built)."""
    from kubeloop.build.artifacts import reference_of

    return {a.image: await reference_of(config, a, registry) for a in config.project.artifacts}


def _artifacts(config: LoadedConfig) -> list[Obj]:
    """The build settings as objects, so that a build argument an environment changes
    is named (its effect on the image shows as a different tag too)."""
    return [{"kind": "Artifact", "metadata": {"name": a.image},
             "spec": a.model_dump(by_alias=True, exclude={"image"})}
            for a in config.project.artifacts]  # fmt: skip


async def compare_environments(config_path: Path | None, env_a: str, env_b: str) -> ParityReport:
    """Render ``env_a`` and ``env_b`` (``default`` is the project without overrides)
    and compare them; no cluster is needed."""
    from kubeloop.render import render

    config_a = load_environment(config_path, env_a)
    config_b = load_environment(config_a.path, env_b)
    # Image references without a registry: both sides would name the same one.
    images_a = {k: v.lstrip("/") for k, v in (await images_of(config_a, "")).items()}
    images_b = {k: v.lstrip("/") for k, v in (await images_of(config_b, "")).items()}
    objects_a = await render(config_a, images_a) + _artifacts(config_a)
    objects_b = await render(config_b, images_b) + _artifacts(config_b)
    rules = parse_rules(config_a.project.parity.ignore)
    return compare(objects_a, objects_b, rules, env_a, env_b,
                   (config_a.project.namespace, config_b.project.namespace))  # fmt: skip


async def compare_live(session: Session) -> ParityReport:
    """Render the session's environment with the image references its sources have now
    and compare it with the objects in the cluster."""
    from kubeloop.render import render

    config = session.config
    rendered = await render(config, await images_of(config, session.registry))
    notes: list[str] = []
    live = await read_live(session.kube, rendered, session.namespace, notes)
    live += await _deployed_not_rendered(session, rendered, notes)
    # parity.ignore says how environments differ from each other, not how the cluster
    # may differ from the render: a hand-made change to a field staging is meant to
    # set differently is still drift.
    rules = parse_rules(config.project.parity.ignore_live)
    name = config.environment or DEFAULT
    report = compare(rendered, live, rules, name, "live")
    if rendered and not live:
        notes.append(f"nothing of {name} runs in namespace {session.namespace}: deploy it "
                     f"first (kubeloop deploy{f' --env {name}' if config.environment else ''})")  # fmt: skip
    report.notes = sorted(notes)
    return report


async def _deployed_not_rendered(session: Session, rendered: list[Obj],
                                 notes: list[str]) -> list[Obj]:  # fmt: skip
    """Objects kubeloop deployed for the project (its inventory) that the render no
    longer has and that still run: left by a deploy with prune off, or by a render
    changed since the last deploy."""
    from kubeloop.deploy import inventory
    from kubeloop.errors import KubeloopError
    from kubeloop.kube import KubeError
    from kubeloop.parity.live import strip_server_fields
    from kubeloop.parity.normalise import object_key

    try:
        entries = await inventory.read(session.kube, session.config.project.name,
                                       session.namespace)  # fmt: skip
    except KubeloopError as exc:
        notes.append(f"objects deployed but no longer rendered are not listed: {exc.message}")
        return []
    have = {object_key(o) for o in rendered}
    found: list[Obj] = []
    for entry in entries:
        obj = entry.ref.as_object()
        # The project's own namespace is where it runs, not a difference.
        if entry.ref.kind == "Namespace" or object_key(obj) in have:
            continue
        try:
            live = await session.kube.get(await session.kube.object_path(obj, session.namespace))
        except KubeError as exc:
            if exc.status is not None:
                raise
            continue  # a kind the cluster no longer serves
        if live is not None:
            found.append(strip_server_fields(live))
    return found
