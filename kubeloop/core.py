"""Names every layer of kubeloop shares: the shape of a Kubernetes object, and the one
way to wait for something by polling.

This module sits at the bottom (it imports only the standard library and
``kubeloop.errors``), so the cluster, image, kube and project layers can all use it.
"""

from __future__ import annotations

import asyncio
import inspect
import shutil
from collections.abc import Awaitable, Callable
from typing import Any

from kubeloop.errors import KubeloopError
from kubeloop.paths import cache_dir

# A Kubernetes object or API response as decoded JSON: its fields are whatever the kind
# says, so no narrower type is true for all of them.
Obj = dict[str, Any]

# The labels kubeloop puts on every object it applies (pod templates too).
MANAGED_BY = "app.kubernetes.io/managed-by"
PROJECT_LABEL = "kubeloop.dev/project"


def kubectl_command() -> str:
    """kubeloop's own kubectl (the native cluster's version, in the binaries cache) when
    there is one, else the one on PATH."""
    cached = sorted((cache_dir() / "bin").glob("kubernetes-*/kubectl"), reverse=True)
    if cached:
        return str(cached[0])
    found = shutil.which("kubectl")
    if found:
        return found
    raise KubeloopError(
        "this needs kubectl, which is not installed",
        "install kubectl, or create a native cluster (it brings one)",
    )


Condition = Callable[[], bool | Awaitable[bool]]


class WaitTimeout(KubeloopError):
    """``wait_until`` gave up; callers that know more catch it and say more."""

    def __init__(self, what: str, timeout: float) -> None:
        super().__init__(f"timed out after {timeout:.0f}s waiting for {what}")
        self.what = what
        self.timeout = timeout


async def wait_until(
    condition: Condition, timeout: float, interval: float = 0.1, what: str = "a condition"
) -> None:
    """Check ``condition`` (plain or async) every ``interval`` seconds until it is true.

    It is checked at least once, and once more after ``timeout`` has passed, before
    ``WaitTimeout`` is raised. An exception from ``condition`` ends the wait at once
    (how a caller fails fast, e.g. on a process that died).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise WaitTimeout(what, timeout)
        await asyncio.sleep(interval)
