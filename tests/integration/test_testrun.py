"""``kubeloop test`` on the real cluster, with the ``add`` example deployed once for the
module: entries in the dev container (exec) and as Jobs, passing and failing, JUnit
summaries, a run with no test, entries in parallel with prefixed output and the worst
exit code (the real CLI), a hanging test stopped by its timeout (the process gone from
the pod; the Job removed), the workload's env and ConfigMap in a Job, a missing
workload, and ``on: sync`` in ``kubeloop dev``."""

from __future__ import annotations

import asyncio
import io
import os
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from rich.console import Console

from kubeloop import ui
from kubeloop.devloop import open_session
from kubeloop.devloop.dev import DevLoop
from kubeloop.kube import Kube
from kubeloop.proc import run
from kubeloop.testrun import TestResult, run_project_tests
from tests.integration.conftest import Env, eventually, kubectl
from tests.integration.test_core_loop import copy_example

# As examples/add's: the unit entry writes no bytecode. A same-size edit synced in the
# same second as the run before would otherwise find pytest's cached .pyc still "fresh"
# (Python checks the source's size and whole-second mtime) and run the old test.
ENTRIES = """
test:
  - {name: unit, workload: add, on: sync, junit: /tmp/junit-unit.xml,
     env: {PYTHONDONTWRITEBYTECODE: "1"},
     command: [pytest-3, -q, -p, no:cacheprovider, /tests, --junitxml=/tmp/junit-unit.xml]}
  - {name: lint, workload: add, command: [pyflakes3, /app, /tests]}
  - {name: fail, workload: add, command: [python3, -c, "import sys; print('bad'); sys.exit(3)"]}
  - {name: zero, workload: add, junit: /tmp/z.xml,
     command: [pytest-3, -q, -p, no:cacheprovider, /app, --junitxml=/tmp/z.xml]}
  - {name: hang, workload: add, timeout: 2, command: [sleep, "4242"]}
  - {name: missing, workload: nothere, command: ["true"]}
  - {name: unit-job, in: job, workload: add, junit: /tmp/j.xml,
     command: [pytest-3, -q, -p, no:cacheprovider, /tests, --junitxml=/tmp/j.xml]}
  - {name: env-job, in: job, workload: add, env: {EXTRA: x},
     command: [sh, -c, 'test "$GREETING$FROM_MAP$EXTRA" = "hiyesx" || { env; exit 9; }']}
  - {name: hang-job, in: job, workload: add, timeout: 5, command: [sleep, "4242"]}
  - {name: slow, workload: add, command: [sleep, "4545"]}
"""
# The workload's own variable and one from a ConfigMap (envFrom), which a Job must get.
CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: add-env}\ndata: {FROM_MAP: 'yes'}\n"


@dataclass
class Project:
    folder: Path
    config: Path
    namespace: str
    cluster: str


@pytest.fixture(scope="module")
async def project(tmp_path_factory: pytest.TempPathFactory, docker_engine: None,
                  cluster_name: str) -> AsyncIterator[Project]:  # fmt: skip
    namespace = f"t-test-{os.getpid()}"
    folder = copy_example("add", tmp_path_factory.mktemp("testrun"), namespace)
    config = folder / "kubeloop.yaml"
    text = config.read_text().replace("localPort: 8000", "localPort: 18471")
    config.write_text(text[: text.index("\ntest:")] + ENTRIES)
    (folder / "k8s" / "env.yaml").write_text(CONFIGMAP)
    manifest = folder / "k8s" / "add.yaml"
    manifest.write_text(manifest.read_text().replace(
        "ports: [{containerPort: 8000}]",
        "ports: [{containerPort: 8000}]\n          env: [{name: GREETING, value: hi}]\n"
        "          envFrom: [{configMapRef: {name: add-env}}]"))  # fmt: skip
    session = await open_session(config, cluster=cluster_name)
    try:
        await session.deploy(quiet=True)
        yield Project(folder, config, namespace, cluster_name)
    finally:
        await session.delete()
        await session.kube.delete({"apiVersion": "v1", "kind": "Namespace",
                                   "metadata": {"name": namespace}}, grace_seconds=0)  # fmt: skip
        await session.close()


async def _run(project: Project, *names: str,
               keep: bool = False) -> tuple[dict[str, TestResult], list[str]]:  # fmt: skip
    lines: list[str] = []
    results = await run_project_tests(project.config, None, project.cluster, names, keep=keep,
                                      on_line=lambda n, line: lines.append(f"{n} | {line}"))  # fmt: skip
    return {r.name: r for r in results}, lines


async def _pod_commands(env: Env, project: Project) -> str:
    return await kubectl(env, "exec", "-n", project.namespace, "deploy/add", "-c", "add", "--",
                         "sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '")  # fmt: skip


async def test_cli_runs_entries_in_parallel_with_prefixes_and_the_worst_code(
    project: Project,
) -> None:
    result = await run([sys.executable, "-m", "kubeloop", "test", "unit", "lint", "fail",
                        "--config", str(project.config), "--cluster", project.cluster],
                       check=False, timeout=120)  # fmt: skip
    out = result.stderr
    assert result.returncode == 3, out  # the worst: fail's own exit code
    assert "unit | 2 passed" in out and "fail | bad" in out, out
    assert "✓ unit: passed in" in out and "(2 passed)" in out, out
    assert "✓ lint: passed" in out and "✗ fail: FAILED (exit 3)" in out, out


async def test_dev_entries_junit_zero_tests_timeout_and_missing_workload(
    project: Project, env: Env
) -> None:
    results, lines = await _run(project, "unit", "zero", "hang", "missing")
    assert results["unit"].ok and results["unit"].summary is not None
    assert results["unit"].summary.passed == 2
    assert results["zero"].code != 0 and results["zero"].problem == "no test ran"
    assert results["hang"].code == 124 and "timed out after 2s" in str(results["hang"].problem)
    assert results["hang"].seconds < 15
    assert results["missing"].code == 1
    assert "nothere in namespace" in str(results["missing"].problem)
    # The hanging command was stopped in the container, not only here.
    assert "sleep 4242" not in await _pod_commands(env, project)

    # A failing test in the saved code is named in the summary.
    await kubectl(env, "exec", "-n", project.namespace, "deploy/add", "-c", "add", "--", "sed",
                  "-i", "s/== 5/== 6/", "/tests/test_add.py")  # fmt: skip
    try:
        results, lines = await _run(project, "unit")
        failed = results["unit"]
        assert failed.code == 1 and failed.summary is not None
        assert (failed.summary.passed, failed.summary.failed_names) == (1, ["test_add"])
        assert "1 passed, 1 failed: test_add" in failed.line()
        assert any(line.startswith("unit | ") and "assert 5 == 6" in line for line in lines)
    finally:
        await kubectl(env, "exec", "-n", project.namespace, "deploy/add", "-c", "add", "--",
                      "sed", "-i", "s/== 6/== 5/", "/tests/test_add.py")  # fmt: skip


async def test_sigterm_stops_the_command_in_the_container(project: Project, env: Env) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubeloop", "test", "slow", "--config", str(project.config),
        "--cluster", project.cluster, stderr=asyncio.subprocess.PIPE)  # fmt: skip
    try:
        await eventually(lambda: _running(env, project, "sleep 4545"), 30, 0.3)
    finally:
        process.terminate()
        _, err = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 143, err.decode()
    assert "sleep 4545" not in await _pod_commands(env, project)


async def _running(env: Env, project: Project, command: str) -> bool:
    return command in await _pod_commands(env, project)


async def test_job_entries_env_junit_and_timeout_removes_the_job(
    project: Project, kube: Kube
) -> None:
    results, lines = await _run(project, "unit-job", "env-job", "hang-job")
    assert results["unit-job"].ok and results["unit-job"].summary is not None
    assert results["unit-job"].summary.passed == 2
    assert results["env-job"].ok, lines
    assert results["hang-job"].code == 124, lines
    jobs = await kube.request("GET", f"/apis/batch/v1/namespaces/{project.namespace}/jobs")
    assert jobs.get("items") == []  # all removed (no --keep), the timed-out one too

    async def no_test_pods() -> bool:
        pods = await kube.request("GET", f"/api/v1/namespaces/{project.namespace}/pods",
                                  params={"labelSelector": "kubeloop.dev/test"})  # fmt: skip
        return not pods.get("items")

    await eventually(no_test_pods, 30)

    results, lines = await _run(project, "env-job", keep=True)  # --keep: the Job stays
    assert results["env-job"].ok, lines
    jobs = await kube.request("GET", f"/apis/batch/v1/namespaces/{project.namespace}/jobs")
    (kept,) = jobs["items"]
    assert kept["metadata"]["labels"]["kubeloop.dev/test"] == "env-job"
    await kube.delete({**kept, "apiVersion": "batch/v1", "kind": "Job"}, grace_seconds=0)


async def test_dev_runs_on_sync_entries_after_a_sync(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown = io.StringIO()
    monkeypatch.setattr(ui, "_console", Console(file=shown, width=200, soft_wrap=True))
    session = await open_session(project.config, cluster=project.cluster)
    loop = DevLoop(session, printer=lambda *_: None)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    try:
        await eventually(lambda: bool(loop.syncers) and bool(loop.syncers[0].pods), 60)
        await eventually(lambda: all(s.pods for s in loop.syncers), 30)

        def shows(text: str) -> Callable[[], bool]:
            def check() -> bool:  # on failure, what dev printed
                assert text in shown.getvalue(), shown.getvalue()[-3000:]
                return True

            return check

        test_file = project.folder / "tests" / "test_add.py"
        test_file.write_text(test_file.read_text().replace("== 5", "== 7"))
        # Bounded, but not tight: a run is a sync, a settle and pytest in the pod, which
        # a loaded CI machine has taken over 30 s to finish.
        await eventually(shows("✗ unit: FAILED (exit 1)"), 90)
        assert "1 passed, 1 failed: test_add" in shown.getvalue()
        test_file.write_text(test_file.read_text().replace("== 7", "== 5"))
        await eventually(shows("✓ unit: passed"), 90)
        assert "lint" not in shown.getvalue()  # not an on: sync entry
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await session.close()
