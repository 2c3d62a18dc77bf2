"""``kubeloop debug``: a debugger in code that runs in the cluster (Python: debugpy),
forwarded to this machine, with no image rebuild."""

from kubeloop.debug._session import Debugger, DebugSpec, vscode_config

__all__ = ["DebugSpec", "Debugger", "vscode_config"]
