"""Render a project's manifests: raw YAML, Jinja2 templates, kustomize, Helm; then put
the built image references in."""

from kubeloop.render.images import replace_images
from kubeloop.render.render import render, render_yaml

__all__ = ["render", "render_yaml", "replace_images"]
