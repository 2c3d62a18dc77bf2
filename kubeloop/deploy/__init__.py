"""Apply rendered objects with server-side apply, prune what left the render, wait for
the rollout and explain failures."""

from kubeloop.deploy.apply import DeleteResult, DeployResult, delete_project, deploy
from kubeloop.deploy.rollout import RolloutError, has_ready_endpoint, wait_rollout

__all__ = [
    "DeleteResult",
    "DeployResult",
    "RolloutError",
    "delete_project",
    "deploy",
    "has_ready_endpoint",
    "wait_rollout",
]
