"""``kubeloop debug``: a debugger in code that runs in the cluster (Python: debugpy),
forwarded to this machine, with no image rebuild."""

from kubeloop.debug._ide import merge_launch_json, vscode_config, write_launch_json
from kubeloop.debug._session import Debugger, DebugSpec

__all__ = [
    "DebugSpec",
    "Debugger",
    "merge_launch_json",
    "vscode_config",
    "write_launch_json",
]
