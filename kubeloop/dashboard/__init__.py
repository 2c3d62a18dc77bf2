"""The live web dashboard of ``kubeloop dev --ui`` (and ``kubeloop ui``): a hub the dev
loop publishes to, a local server (127.0.0.1, per-session token) and a plain HTML/JS
page served from the package (no build step, nothing fetched from elsewhere: it works
offline).

The web server's modules are imported on first use (``kubeloop dev`` without a page
imports only the session records)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from kubeloop.dashboard.sessions import (
    RunningDashboard,
    choose,
    dashboard_for,
    dashboard_url,
    running,
)

if TYPE_CHECKING:
    from kubeloop.dashboard.hub import Hub
    from kubeloop.dashboard.live import Dashboard
    from kubeloop.dashboard.server import DashboardServer

__all__ = ["Dashboard", "DashboardServer", "Hub", "RunningDashboard", "choose", "dashboard_for",
           "dashboard_url", "running"]  # fmt: skip

_LAZY = {"Dashboard": "live", "DashboardServer": "server", "Hub": "hub"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"kubeloop.dashboard.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'kubeloop.dashboard' has no attribute {name!r}")
