"""The dashboard in a real browser (Debian's headless Chromium, driven by Playwright):
against a real `kubeloop dev --ui` on the cluster (rows, logs, the buttons, a synced
edit), and under a log flood (the tab stays responsive, memory stays bounded)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.async_api import BrowserContext, Page

from kubeloop.cluster import ClusterInfo
from kubeloop.dashboard import DashboardServer, Hub
from kubeloop.dashboard.browser import headless_chromium
from kubeloop.kube import Kube
from tests.integration.conftest import eventually
from tests.integration.test_core_loop import copy_example

# The page as a test artifact (the README's docs/dashboard.png is one, copied by hand):
# KUBELOOP_TEST_ARTIFACTS=docs writes it there; by default it goes to the temp folder, so a
# test run does not change the checkout.
ARTIFACTS = Path(os.environ.get("KUBELOOP_TEST_ARTIFACTS") or
                 Path(tempfile.gettempdir()) / "kubeloop-test-artifacts")  # fmt: skip
SCREENSHOT = ARTIFACTS / "dashboard.png"
FORWARD_PORT = 18431


@dataclass
class DevUnderUI:
    folder: Path
    url: str
    page: Page
    output: bytearray
    state_dir: Path


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[BrowserContext]:
    async with headless_chromium() as context:
        yield context


async def start_dev(folder: Path, state_dir: Path, cluster_name: str,
                    *flags: str) -> tuple[asyncio.subprocess.Process, bytearray, asyncio.Task[None]]:  # fmt: skip
    """`kubeloop dev --cleanup` as a user starts it (its own process group, as a shell's
    foreground job), its output collected."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubeloop", "dev", "--config", str(folder / "kubeloop.yaml"),
        "--cleanup", "--cluster", cluster_name, *flags,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "KUBELOOP_STATE_DIR": str(state_dir)}, start_new_session=True,
    )  # fmt: skip
    assert process.stdout is not None
    output = bytearray()
    return process, output, asyncio.create_task(_collect(process.stdout, output))


async def drop_namespace(cluster: ClusterInfo, name: str) -> None:
    """dev --cleanup removes what it deployed; the namespace it made goes here."""
    kube = await Kube.connect(cluster.kubeconfig, cluster.context)
    try:
        await kube.delete({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                          grace_seconds=0)  # fmt: skip
    finally:
        await kube.close()


async def stop_dev(process: asyncio.subprocess.Process, reader: asyncio.Task[None]) -> int:
    if process.returncode is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), 60)
        except TimeoutError:
            process.kill()
    await reader
    return await process.wait()


def recorded_url(process: asyncio.subprocess.Process, output: bytearray, state_dir: Path) -> str:
    """The URL in the dev session's record (empty until its dashboard is open)."""
    if process.returncode is not None:
        pytest.fail(f"kubeloop dev exited ({process.returncode}):\n{output.decode()}")
    files = list((state_dir / "dashboards").glob("*.json"))
    assert files, output.decode()
    return str(json.loads(files[0].read_text())["url"])


def copy_project(tmp: Path, namespace: str, port: int) -> Path:
    folder = copy_example("add", tmp, namespace)
    config = folder / "kubeloop.yaml"
    config.write_text(config.read_text().replace("localPort: 8000", f"localPort: {port}"))
    return folder


@pytest.fixture(scope="module")
async def dev(
    tmp_path_factory: pytest.TempPathFactory, docker_engine: None, cluster_name: str,
    cluster: ClusterInfo, browser: BrowserContext,
) -> AsyncIterator[DevUnderUI]:  # fmt: skip
    """One `kubeloop dev --ui` for the module, as a user starts it, and a page on it."""
    tmp = tmp_path_factory.mktemp("dashboard")
    namespace = f"t-ui-{uuid.uuid4().hex[:8]}"
    folder = copy_project(tmp, namespace, FORWARD_PORT)
    state_dir = tmp / "state"
    process, output, reader = await start_dev(folder, state_dir, cluster_name, "--ui")
    page = await browser.new_page()
    try:
        url = await eventually(lambda: recorded_url(process, output, state_dir), 60)
        assert url.startswith("http://127.0.0.1:") and "token=" in url
        await page.goto(url)
        yield DevUnderUI(folder, url, page, output, state_dir)
    finally:
        await page.close()
        await stop_dev(process, reader)
        await drop_namespace(cluster, namespace)


async def _collect(stream: asyncio.StreamReader, into: bytearray) -> None:
    while chunk := await stream.read(65536):
        into += chunk


async def _text(page: Page, selector: str) -> str:
    return await page.locator(selector).first.inner_text()


async def test_rows_and_a_log_line_appear_live(dev: DevUnderUI) -> None:
    page = dev.page
    workload = page.locator('[data-row="workload:deployment/add"]')
    await workload.locator("text=rolled out").wait_for(timeout=120_000)
    assert "Running, 1/1 ready, 0 restarts" in await workload.inner_text()
    artifact = await _text(page, '[data-row="artifact:add"]')
    assert "built" in artifact or "cached" in artifact, artifact
    forward = page.locator('[data-row="forward:service/add:80"]')
    await forward.locator("text=forwarding").wait_for(timeout=60_000)
    link = forward.locator("a")
    assert await link.get_attribute("href") == f"http://127.0.0.1:{FORWARD_PORT}/"

    # A request through the forward makes the app log a line: it shows up, and the
    # filter keeps it while hiding others.
    async def answer() -> int:
        async with httpx.AsyncClient(timeout=5) as client:
            return (await client.get(f"http://127.0.0.1:{FORWARD_PORT}/add/40/2")).json()["sum"]

    assert await eventually(answer, 30) == 42
    logs = page.locator("#logs")
    await logs.locator("text=add 40.0 2.0 = 42.0").wait_for(timeout=20_000)
    await page.fill("#log-filter", r"add \d+\.0 2\.0")
    await page.wait_for_timeout(300)
    assert set((await logs.inner_text()).splitlines()) and all(
        "2.0 = " in line for line in (await logs.inner_text()).splitlines()
    )
    await page.fill("#log-filter", "")


async def test_rebuild_button_shows_the_new_build(dev: DevUnderUI) -> None:
    page = dev.page
    builds = page.locator('[data-row="artifact:add"] [data-builds]')
    await page.locator('[data-row="artifact:add"] >> text=/built|cached/').first.wait_for(
        timeout=120_000
    )
    before = int(await builds.inner_text())
    await page.click('button[data-action="rebuild"][data-target="add"]')
    result = page.locator('[data-result="rebuild:add"]')
    await result.locator("text=/rolled out in/").wait_for(timeout=120_000)
    assert "add:" in await result.inner_text()
    assert int(await builds.inner_text()) == before + 1


async def test_a_saved_file_moves_the_sync_counter(dev: DevUnderUI) -> None:
    page = dev.page
    row = page.locator('[data-row="sync:/app (app=add)"]')
    files = row.locator("[data-sync-files]")
    await row.locator("text=/add-/").first.wait_for(timeout=60_000)
    before = int(await files.get_attribute("data-sync-files") or "0")
    server = dev.folder / "app" / "server.py"
    server.write_text(server.read_text() + "\n# saved from the dashboard test\n")

    async def moved() -> int:
        return int(await files.get_attribute("data-sync-files") or "0") > before

    await eventually(moved, 30)


async def test_resync_and_restart_buttons_answer_in_place(dev: DevUnderUI) -> None:
    page = dev.page
    await page.click('button[data-action="resync"]')
    await page.locator('[data-result^="resync:"] >> text=/resyncing 1 pod/').wait_for(
        timeout=30_000
    )
    await page.click('button[data-action="restart"][data-target="deployment/add"]')
    restarted = page.locator('[data-result="restart:deployment/add"]')
    await restarted.locator("text=/process restarted in 1 pod/").wait_for(timeout=30_000)


async def test_run_a_test_entry_from_the_page(dev: DevUnderUI) -> None:
    page = dev.page
    await page.click('button[data-action="test"][data-target="unit"]')
    result = page.locator('[data-result="test:unit"]')
    await result.locator("text=/unit: passed/").wait_for(timeout=60_000)
    assert "passed" in await _text(page, '[data-row="test:unit"]')
    await page.locator("#logs").locator("text=/test.unit .*passed/").first.wait_for(timeout=10_000)
    await page.fill("#log-filter", "")  # the README's picture: every row, the buttons' results
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOT), full_page=True)


async def test_only_this_session_with_its_token_gets_an_answer(dev: DevUnderUI) -> None:
    base, token = dev.url.split("/?token=")
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await client.get(f"{base}/api/state")).status_code == 403
        assert (await client.get(f"{base}/api/state?token=x{token}")).status_code == 403
        assert (
            await client.post(f"{base}/api/command", json={"action": "resync"})
        ).status_code == 403
        # a page elsewhere whose name resolves to 127.0.0.1 (DNS rebinding)
        rebound = await client.get(f"{base}/api/state?token={token}", headers={"Host": "evil.test"})
        assert rebound.status_code == 403
        state = await client.get(f"{base}/api/state?token={token}")
        assert state.status_code == 200 and "deployment/add" in state.json()["rows"]["workloads"]
        assert state.headers["Referrer-Policy"] == "no-referrer"
        unknown = await client.post(f"{base}/api/command", json={"action": "format-disk"},
                                    headers={"X-Kubeloop-Token": token})  # fmt: skip
        assert unknown.status_code == 400 and "unknown action" in unknown.text
    # `kubeloop ui` finds the running session's URL.
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubeloop", "ui", stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "KUBELOOP_STATE_DIR": str(dev.state_dir)},
    )  # fmt: skip
    out, _ = await process.communicate()
    assert process.returncode == 0 and out.decode().strip() == dev.url


async def test_kubeloop_ui_opens_the_dashboard_of_a_dev_started_without_it(
    tmp_path: Path, docker_engine: None, cluster_name: str, cluster: ClusterInfo,
    browser: BrowserContext,
) -> None:  # fmt: skip
    state_dir = tmp_path / "state"
    env = {**os.environ, "KUBELOOP_STATE_DIR": str(state_dir)}

    async def kubeloop_ui() -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kubeloop", "ui", stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env=env,
        )  # fmt: skip
        out, _ = await process.communicate()
        return await process.wait(), out.decode()

    code, text = await kubeloop_ui()
    assert code == 1 and "no `kubeloop dev` session is running" in text, text
    namespace = f"t-ui-late-{uuid.uuid4().hex[:8]}"
    folder = copy_project(tmp_path, namespace, FORWARD_PORT + 1)
    process, output, reader = await start_dev(folder, state_dir, cluster_name)
    page = await browser.new_page()
    try:

        async def answer() -> int:
            recorded_url(process, output, state_dir)  # fails at once if dev exited
            async with httpx.AsyncClient(timeout=5) as client:
                reply = await client.get(f"http://127.0.0.1:{FORWARD_PORT + 1}/add/1/2")
            return int(reply.json()["sum"])

        assert await eventually(answer, 180, 0.2) == 3
        assert recorded_url(process, output, state_dir) == ""  # no server until asked
        code, text = await kubeloop_ui()
        assert code == 0 and text.startswith("http://127.0.0.1:"), text
        url = text.strip()
        assert recorded_url(process, output, state_dir) == url
        await page.goto(url)
        workload = page.locator('[data-row="workload:deployment/add"]')
        await workload.locator("text=rolled out").wait_for(timeout=30_000)
        assert "ready" in await _text(page, '[data-row="artifact:add"]')  # built before
        assert await eventually(answer, 30) == 3
        await page.locator("#logs").locator("text=add 1.0 2.0 = 3.0").wait_for(timeout=20_000)
        assert (await kubeloop_ui())[1].strip() == url  # asked again: the same one
    finally:
        await page.close()
        code = await stop_dev(process, reader)
        await drop_namespace(cluster, namespace)
    assert code == 130, output.decode()
    assert "Traceback" not in output.decode(), output.decode()
    assert "dashboard: http://127.0.0.1:" in output.decode()
    assert not list((state_dir / "dashboards").glob("*.json"))  # its record went with it


@pytest.mark.timeout(90)
async def test_a_log_flood_keeps_the_page_responsive_and_bounded(browser: BrowserContext) -> None:
    """10,000 lines a second for 10 s into the hub the page follows: the page answers
    within a frame budget throughout, its memory and DOM stay bounded, and it catches up."""
    hub = Hub()
    server = DashboardServer(hub)
    url = await server.start()
    page = await browser.new_page()
    cdp = await browser.new_cdp_session(page)
    await cdp.send("Performance.enable")
    try:
        await page.goto(url)
        await page.locator("#connection >> text=live").wait_for()
        delays: list[float] = []
        started = time.monotonic()
        sent = 0

        async def flood() -> None:
            nonlocal sent
            while (elapsed := time.monotonic() - started) < 10:
                while sent < int(elapsed * 10_000):
                    hub.log(f"chatty-7d9f-{sent % 3}", f"line {sent} " + "x" * 80)
                    sent += 1
                await asyncio.sleep(0.005)

        async def probe() -> None:
            while time.monotonic() - started < 10:
                asked = time.monotonic()
                await page.evaluate("() => new Promise(r => requestAnimationFrame(() => r(1)))")
                delays.append(time.monotonic() - asked)
                await asyncio.sleep(0.25)

        await asyncio.gather(flood(), probe())
        assert sent >= 95_000
        last = f"line {sent - 1} "
        await page.locator("#logs").locator(f"text={last}").wait_for(timeout=15_000)
        metrics = {
            m["name"]: m["value"] for m in (await cdp.send("Performance.getMetrics"))["metrics"]
        }
        kept = await page.evaluate("() => logs.length")
        shown = len((await page.locator("#logs").inner_text()).splitlines())
    finally:
        await page.close()
        await server.close()
    delays.sort()
    print(f"log flood: {sent} lines; frame delay p50 {delays[len(delays) // 2] * 1000:.0f} ms, "
          f"max {delays[-1] * 1000:.0f} ms; JS heap {metrics['JSHeapUsedSize'] / 2**20:.1f} MiB; "
          f"{kept} lines held, {shown} shown")  # fmt: skip
    assert delays[len(delays) // 2] < 0.25 and delays[-1] < 1.5, delays  # a frame comes, always
    assert kept <= 7500 and shown <= 500  # bounded in memory and in the DOM
    assert metrics["JSHeapUsedSize"] < 64 * 1024 * 1024, metrics
    assert len(hub.logs) == hub.logs.maxlen  # the server keeps a bounded tail too
