"""Building images and pushing them to the cluster's registry."""

from kubeloop.build.docker import BuildResult, build_and_push, content_tag
from kubeloop.build.engine import ensure_docker_engine

__all__ = ["BuildResult", "build_and_push", "content_tag", "ensure_docker_engine"]
