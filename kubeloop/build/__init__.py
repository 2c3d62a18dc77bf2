"""Building images and pushing them to the cluster's registry."""

from kubeloop.build.artifacts import Built, build_all, build_artifact
from kubeloop.build.docker import BuildResult, build_and_push, content_tag
from kubeloop.build.engine import ensure_docker_engine

__all__ = [
    "BuildResult",
    "Built",
    "build_all",
    "build_and_push",
    "build_artifact",
    "content_tag",
    "ensure_docker_engine",
]
