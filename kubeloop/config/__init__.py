"""Project configuration: the ``kubeloop.yaml`` schema and its loader."""

from kubeloop.config.loader import CONFIG_NAME, ConfigError, LoadedConfig, find_config, load, parse
from kubeloop.config.schema import (
    Artifact,
    BridgeEntry,
    Manifests,
    PortForward,
    Project,
    SyncSpec,
    json_schema,
)

__all__ = [
    "CONFIG_NAME",
    "Artifact",
    "BridgeEntry",
    "ConfigError",
    "LoadedConfig",
    "Manifests",
    "PortForward",
    "Project",
    "SyncSpec",
    "find_config",
    "json_schema",
    "load",
    "parse",
]
