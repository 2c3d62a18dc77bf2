"""kubeloop: develop software on Kubernetes.

The library is the product; the ``kubeloop`` command is a thin layer over it. Everything
a program needs is importable from here::

    import kubeloop

    config = kubeloop.load_config("kubeloop.yaml")
    objects = await kubeloop.render_manifests(config)
    print(kubeloop.render_yaml(objects))

Names are imported on first use (PEP 562), so that ``import kubeloop`` and
``kubeloop --help`` stay fast. Three functions carry a longer name here than in their
package, because the package of the same name would shadow them as soon as it is
imported: ``render_manifests`` is ``kubeloop.render.render``, ``deploy_objects`` is
``kubeloop.deploy.deploy`` and ``load_config`` is ``kubeloop.config.load``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"  # the one version: pyproject.toml reads it from here

# Public name -> (module, name in that module).
_EXPORTS: dict[str, tuple[str, str]] = {
    # clusters
    "create_cluster": ("kubeloop.cluster", "create_cluster"),
    "delete_cluster": ("kubeloop.cluster", "delete_cluster"),
    "cluster_status": ("kubeloop.cluster", "cluster_status"),
    "get_cluster": ("kubeloop.cluster", "get_cluster"),
    "seed_base_image": ("kubeloop.cluster", "seed_base_image"),
    "ClusterInfo": ("kubeloop.cluster", "ClusterInfo"),
    "ClusterStatus": ("kubeloop.cluster", "ClusterStatus"),
    # project configuration
    "load_config": ("kubeloop.config", "load"),
    "LoadedConfig": ("kubeloop.config", "LoadedConfig"),
    "Project": ("kubeloop.config", "Project"),
    "ConfigError": ("kubeloop.config", "ConfigError"),
    # the inner loop, step by step
    "build_all": ("kubeloop.build", "build_all"),
    "Built": ("kubeloop.build", "Built"),
    "render_manifests": ("kubeloop.render.render", "render"),
    "render_yaml": ("kubeloop.render.render", "render_yaml"),
    "deploy_objects": ("kubeloop.deploy", "deploy"),
    "delete_project": ("kubeloop.deploy", "delete_project"),
    "wait_rollout": ("kubeloop.deploy", "wait_rollout"),
    "Kube": ("kubeloop.kube", "Kube"),
    "KubeError": ("kubeloop.kube", "KubeError"),
    # ... or all of it for one project
    "Session": ("kubeloop.devloop", "Session"),
    "open_session": ("kubeloop.devloop", "open_session"),
    "DevLoop": ("kubeloop.devloop.dev", "DevLoop"),
    "Syncer": ("kubeloop.sync", "Syncer"),
    "SyncRule": ("kubeloop.sync", "SyncRule"),
    "Bridge": ("kubeloop.bridge", "Bridge"),
    "BridgeSpec": ("kubeloop.bridge", "BridgeSpec"),
    "Debugger": ("kubeloop.debug", "Debugger"),
    "DebugSpec": ("kubeloop.debug", "DebugSpec"),
    # errors
    "KubeloopError": ("kubeloop.errors", "KubeloopError"),
    "PreflightError": ("kubeloop.errors", "PreflightError"),
}
# Subpackages reachable as attributes without importing them first (kubeloop.deploy...).
_SUBPACKAGES = frozenset({"agent", "bridge", "build", "cluster", "config", "debug", "deploy",
                          "devloop", "images", "kube", "render", "sync"})  # fmt: skip

# Everything in _EXPORTS, and the version (a unit test keeps the two in step).
__all__ = [
    "Bridge",
    "BridgeSpec",
    "Built",
    "ClusterInfo",
    "ClusterStatus",
    "ConfigError",
    "DebugSpec",
    "Debugger",
    "DevLoop",
    "Kube",
    "KubeError",
    "KubeloopError",
    "LoadedConfig",
    "PreflightError",
    "Project",
    "Session",
    "SyncRule",
    "Syncer",
    "__version__",
    "build_all",
    "cluster_status",
    "create_cluster",
    "delete_cluster",
    "delete_project",
    "deploy_objects",
    "get_cluster",
    "load_config",
    "open_session",
    "render_manifests",
    "render_yaml",
    "seed_base_image",
    "wait_rollout",
]

if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ imports
    from kubeloop.build import Built, build_all
    from kubeloop.cluster import (
        ClusterInfo,
        ClusterStatus,
        cluster_status,
        create_cluster,
        delete_cluster,
        get_cluster,
        seed_base_image,
    )
    from kubeloop.config import ConfigError, LoadedConfig, Project
    from kubeloop.config import load as load_config
    from kubeloop.deploy import delete_project, wait_rollout
    from kubeloop.deploy import deploy as deploy_objects
    from kubeloop.devloop import Session, open_session
    from kubeloop.devloop.dev import DevLoop
    from kubeloop.errors import KubeloopError, PreflightError
    from kubeloop.kube import Kube, KubeError
    from kubeloop.render.render import render as render_manifests
    from kubeloop.render.render import render_yaml
    from kubeloop.sync import Syncer, SyncRule


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        module, attribute = _EXPORTS[name]
        value: object = getattr(importlib.import_module(module), attribute)
        globals()[name] = value  # the next access is a plain attribute lookup
        return value
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, *_SUBPACKAGES})
