"""kubeloop.testrun's pure logic: JUnit reports (counts, hostile XML, size limit), the
output splitter and its report marker, results and exit codes, the Job made from a
workload's template, entry selection and the ``on`` key. The in-container script is run
for real with the local ``sh``: stdin's end stops the command, a stale report is
removed, the report follows the marker."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from kubeloop.config import parse
from kubeloop.config.schema import TestEntry
from kubeloop.errors import KubeloopError
from kubeloop.testrun import (
    JUnitError,
    Target,
    job_object,
    parse_junit,
    select,
    verdict,
    worst,
)
from kubeloop.testrun._junit import MAX_REPORT
from kubeloop.testrun._output import MAX_LINE, Output, clean, new_marker, wrapped
from kubeloop.testrun._runner import workload_kind

REPORT = b"""<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="4">
<testcase classname="tests.test_add" name="test_add"/>
<testcase classname="tests.test_add" name="test_parse"><failure message="x">boom</failure></testcase>
<testcase classname="tests.test_add" name="test_io"><error message="y"/></testcase>
<testcase classname="tests.test_add" name="test_later"><skipped/></testcase>
</testsuite></testsuites>"""


def entry(**fields: object) -> TestEntry:
    return TestEntry.model_validate({"name": "unit", "command": ["pytest"],
                                     "workload": "add", **fields})  # fmt: skip


# --- JUnit ------------------------------------------------------------------------------


def test_junit_counts_and_names() -> None:
    summary = parse_junit(REPORT)
    assert (summary.passed, summary.failed, summary.skipped) == (1, 2, 1)
    assert summary.failed_names == ["test_parse", "test_io"]
    assert summary.line() == "1 passed, 2 failed, 1 skipped: test_parse, test_io"


def test_junit_single_suite_root_and_many_failures() -> None:
    cases = "".join(f'<testcase name="t{i}"><failure/></testcase>' for i in range(13))
    summary = parse_junit(f"<testsuite>{cases}</testsuite>".encode())
    assert summary.failed == 13
    assert summary.line().endswith("t9 and 3 more")


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b'<!DOCTYPE x [<!ENTITY a "aaaa">]><testsuites>&a;</testsuites>', "does not read"),
        (b"<testsuites><testcase>", "not well-formed"),
        (b"<html/>", "not <testsuites>"),
        (b"<testsuites>" + b" " * (MAX_REPORT + 1) + b"</testsuites>", "larger than"),
    ],
)
def test_junit_refuses_hostile_or_wrong_reports(data: bytes, why: str) -> None:
    with pytest.raises(JUnitError, match=why):
        parse_junit(data)


def test_junit_names_are_printable() -> None:
    summary = parse_junit(b'<testsuite><testcase name="a&#10;b&#13;c"><error/></testcase>'
                          b"</testsuite>")  # fmt: skip
    assert summary.failed_names == ["abc"]


# --- output -----------------------------------------------------------------------------


def test_output_splits_lines_and_keeps_the_report_after_the_marker() -> None:
    lines: list[str] = []
    marker = new_marker()
    out = Output(lines.append, marker)
    for piece in (b"one\ntw", b"o\n\x1b[31mred\x1b[0m\r\n", b"\n" + marker.encode(),
                  b"\n<testsuites>", b"</testsuites>\n"):  # fmt: skip
        out.feed(piece)
    out.close()
    assert lines == ["one", "two", "red"]  # the blank line the script adds is dropped
    assert out.report == b"<testsuites></testsuites>\n"


def test_output_without_marker_and_long_lines() -> None:
    lines: list[str] = []
    out = Output(lines.append)
    out.feed(b"x" * (MAX_LINE * 4 + 10))
    out.feed(b"\n\nend")
    out.close()
    assert [len(line) for line in lines[:4]] == [MAX_LINE] * 4
    assert lines[4:] == ["x" * 10, "", "end"]
    assert out.report is None


def test_output_report_is_bounded() -> None:
    out = Output(lambda _: None, "m")
    out.feed(b"m\n")
    out.feed(b"a" * (MAX_REPORT + 100))
    assert out.overflow and out.report is not None and len(out.report) == MAX_REPORT + 1


def test_clean_removes_terminal_controls() -> None:
    assert clean("\x1b]0;title\x07ok\x1b[2J\tend\x00") == "ok\tend"


# --- results ----------------------------------------------------------------------------


def test_verdicts() -> None:
    assert verdict("u", 0, 1.0, None, None).ok
    assert verdict("u", 3, 1.0, None, None).code == 3
    timed = verdict("u", 143, 9.0, "/r.xml", None, timed_out=5)
    assert timed.code == 124 and "timed out after 5s" in (timed.problem or "")
    missing = verdict("u", 0, 1.0, "/r.xml", None)
    assert missing.code == 1 and "no JUnit report at /r.xml" in (missing.problem or "")
    empty = verdict("u", 0, 1.0, "/r.xml", b"<testsuites/>")
    assert empty.code == 1 and empty.problem == "no test ran"
    failed = verdict("u", 0, 1.0, "/r.xml", REPORT)
    assert failed.code == 1 and failed.line().startswith("u: FAILED (exit 1)")
    assert "(1 passed, 2 failed, 1 skipped: test_parse, test_io)" in failed.line()
    broken = verdict("u", 0, 1.0, "/r.xml", b"<x")
    assert broken.code == 1 and "not well-formed" in (broken.problem or "")
    assert worst([verdict("a", 0, 0, None, None), verdict("b", 2, 0, None, None),
                  timed]) == 124  # fmt: skip
    assert worst([]) == 0


# --- the script in the container, run here with sh ---------------------------------------


async def _run_script(argv: list[str], close_after: float | None = None) -> tuple[int, bytes]:
    process = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE,
                                                   stdout=asyncio.subprocess.PIPE)  # fmt: skip
    assert process.stdin is not None and process.stdout is not None
    if close_after is not None:
        await asyncio.sleep(close_after)
        process.stdin.close()
    out = await asyncio.wait_for(process.stdout.read(), 10)
    return await asyncio.wait_for(process.wait(), 10), out


async def test_script_exports_variables_and_returns_the_code(tmp_path: Path) -> None:
    argv = wrapped(["sh", "-c", 'echo "$A $B"; exit 7'], {"A": "x y", "B": "$HOME"}, None,
                   "m", watch=True)  # fmt: skip
    code, out = await _run_script(argv)
    assert (code, out) == (7, b"x y $HOME\n")


async def test_script_sends_the_fresh_report_after_the_marker(tmp_path: Path) -> None:
    report = tmp_path / "r.xml"
    report.write_text("stale")
    marker = new_marker()
    argv = wrapped(["sh", "-c", f"echo hi; echo '<testsuite/>' > {report}"], {}, str(report),
                   marker, watch=True)  # fmt: skip
    code, out = await _run_script(argv)
    assert code == 0 and out == f"hi\n\n{marker}\n<testsuite/>\n".encode()
    report.write_text("stale")
    code, out = await _run_script(wrapped(["false"], {}, str(report), marker, watch=True))
    assert code == 1 and out == b"" and not report.exists()  # stale report removed


async def test_script_stops_the_command_when_stdin_ends(tmp_path: Path) -> None:
    started = time.monotonic()
    code, _ = await _run_script(wrapped(["sleep", "30"], {}, None, "m", watch=True), 0.3)
    assert code == 143 and time.monotonic() - started < 5  # SIGTERM


async def test_script_without_watch_ignores_stdin() -> None:
    code, out = await _run_script(wrapped(["sh", "-c", "sleep 0.5; echo done"], {}, None, "m",
                                          watch=False), 0.05)  # fmt: skip
    assert (code, out) == (0, b"done\n")


def test_bad_variable_name_refused() -> None:
    with pytest.raises(ValueError, match="not a valid variable name"):
        wrapped(["true"], {"A-B": "1"}, None, "m", watch=False)


# --- Jobs, selection, config --------------------------------------------------------------


TEMPLATE = {"spec": {
    "serviceAccountName": "app", "securityContext": {"runAsUser": 1000},
    "affinity": {"podAntiAffinity": {}},
    "volumes": [{"name": "cfg", "configMap": {"name": "c"}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "d"}}],
    "containers": [
        {"name": "side", "image": "side:1"},
        {"name": "app", "image": "localhost:5000/add:kl-1", "command": ["serve"],
         "env": [{"name": "A", "value": "1"}], "envFrom": [{"secretRef": {"name": "s"}}],
         "ports": [{"containerPort": 80}], "readinessProbe": {"httpGet": {"port": 80}},
         "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"},
                          {"name": "data", "mountPath": "/data"}]},
    ]}}  # fmt: skip


def test_job_from_the_workload_template() -> None:
    target = Target("k", "c", "ns", "proj")
    job = job_object(entry(**{"in": "job", "container": "app", "timeout": 60}), TEMPLATE,
                     target, {"X": "1"}, "m")  # fmt: skip
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "localhost:5000/add:kl-1"
    assert container["env"] == [{"name": "A", "value": "1"}]
    assert container["envFrom"] == [{"secretRef": {"name": "s"}}]
    assert container["command"][:2] == ["sh", "-c"] and container["command"][-1] == "pytest"
    assert "X=1" in container["command"]
    assert "readinessProbe" not in container and "ports" not in container
    assert [v["name"] for v in pod["volumes"]] == ["cfg"]  # the claim is left out
    assert container["volumeMounts"] == [{"name": "cfg", "mountPath": "/cfg"}]
    assert pod["serviceAccountName"] == "app" and "affinity" not in pod
    assert pod["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] == 90
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert "kubeloop.dev/project" not in labels and labels["kubeloop.dev/test"] == "unit"
    assert job["metadata"]["namespace"] == "ns" and job["metadata"]["name"].startswith(
        "kl-test-unit-"
    )
    default = job_object(entry(), TEMPLATE, target, {}, "m")["spec"]["template"]["spec"]
    assert default["containers"][0]["image"] == "side:1"  # the first container
    with pytest.raises(KubeloopError, match="no container 'nope'"):
        job_object(entry(container="nope"), TEMPLATE, target, {}, "m")


def test_workload_references() -> None:
    assert workload_kind("add") == ("Deployment", "add")
    assert workload_kind("sts/db") == ("StatefulSet", "db")
    with pytest.raises(KubeloopError, match="not KIND/NAME"):
        workload_kind("service/x")


CONFIG = """
name: p
manifests: {raw: [k8s.yaml]}
test:
  - {name: unit, workload: add, command: [pytest], on: sync}
  - {name: lint, workload: add, command: [ruff, check], in: job}
"""


def test_selection_and_the_on_key(tmp_path: Path) -> None:
    config = parse(CONFIG, tmp_path / "kubeloop.yaml")
    assert [(e.name, e.on, e.in_) for e in config.project.test] == [
        ("unit", "sync", "dev"), ("lint", "demand", "job")]  # fmt: skip
    assert [e.name for e in select(config, [])] == ["unit", "lint"]
    assert [e.name for e in select(config, ["lint"])] == ["lint"]
    with pytest.raises(KubeloopError, match="no test named nope") as caught:
        select(config, ["nope"])
    assert caught.value.hint == "known: lint, unit"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            "test: [{name: a, workload: w, command: [x]}, {name: a, workload: w, command: [y]}]",
            "test names must be unique",
        ),
        ("test: [{name: a, workload: w, command: []}]", "command"),
        ("test: [{name: a, workload: w, command: [x], in: pod}]", "in"),
        ("test: [{name: a, workload: w, command: [x], junit: rel.xml}]", "junit"),
        ("test: [{name: A_b, workload: w, command: [x]}]", "name"),
    ],
)
def test_bad_entries_are_explained(tmp_path: Path, body: str, error: str) -> None:
    from kubeloop.config import ConfigError

    with pytest.raises(ConfigError, match=error):
        parse(f"name: p\nmanifests: {{raw: [k.yaml]}}\n{body}\n", tmp_path / "kubeloop.yaml")
