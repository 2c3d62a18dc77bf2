"""A headless Chromium from Debian packages, driven with Playwright: how the dashboard's
tests and benchmark look at the page as a user's browser does.

Playwright is a development dependency and never downloads a browser here: it drives
the system's ``chromium`` (installed through apt when missing).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from kubeloop.apt import install, missing
from kubeloop.errors import KubeloopError

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext

# A closed network makes Chromium wait on lookups for its own services: all off.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]  # fmt: skip


async def ensure_chromium(quiet: bool = True) -> str:
    """The path of ``chromium``, installed from Debian packages when missing."""
    await install(missing({"chromium": "chromium"}), quiet)
    path = shutil.which("chromium")
    if path is None:
        raise KubeloopError("chromium is not on PATH after installing it",
                            "install the Debian package chromium")  # fmt: skip
    return path


@asynccontextmanager
async def headless_chromium() -> AsyncIterator[BrowserContext]:
    """A fresh browser profile in a headless Chromium, closed on exit."""
    try:
        from playwright.async_api import async_playwright
    except ImportError as exc:
        raise KubeloopError("the playwright package is missing",
                            "pip install 'kubeloop[dev]' (or pip install playwright)") from exc  # fmt: skip
    executable = await ensure_chromium()
    with tempfile.TemporaryDirectory(prefix="kubeloop-chromium-") as profile:
        async with async_playwright() as driver:
            context = await driver.chromium.launch_persistent_context(
                profile, executable_path=executable, headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 900},
                # The page's own CSP forbids eval, which Playwright's waits use.
                bypass_csp=True,
            )  # fmt: skip
            try:
                yield context
            finally:
                await context.close()
