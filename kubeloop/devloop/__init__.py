"""The inner loop: a project session (build, render, deploy, delete), merged logs,
port-forwards that survive rollouts, and the watch loop behind ``kubeloop dev``."""

from kubeloop.devloop.session import Session, open_session

__all__ = ["Session", "open_session"]
