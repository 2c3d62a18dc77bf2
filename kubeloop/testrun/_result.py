"""The outcome of one test entry, decided from its exit code and its JUnit report."""

from __future__ import annotations

from dataclasses import dataclass

from kubeloop.testrun._junit import MAX_REPORT, JUnitError, JUnitSummary, parse_junit

TIMED_OUT = 124  # as coreutils' timeout


@dataclass(frozen=True)
class TestResult:
    __test__ = False  # not a pytest test class

    name: str
    code: int  # 0: passed
    seconds: float
    summary: JUnitSummary | None = None
    problem: str | None = None  # what failed besides the command's own exit code
    report: bytes | None = None  # the JUnit XML as read back (bounded)

    @property
    def ok(self) -> bool:
        return self.code == 0

    def line(self) -> str:
        """``unit: passed in 1.2s (42 passed)`` / ``unit: FAILED (exit 1) in 1.2s (...)``"""
        state = "passed" if self.ok else f"FAILED (exit {self.code})"
        text = f"{self.name}: {state} in {self.seconds:.1f}s"
        if self.summary is not None:
            text += f" ({self.summary.line()})"
        if self.problem:
            text += f": {self.problem}"
        return text


def verdict(name: str, code: int, seconds: float, junit: str | None,
            report: bytes | None, overflow: bool = False, timed_out: float | None = None,
            problem: str | None = None) -> TestResult:  # fmt: skip
    """An entry's result: a timeout, a missing, unreadable or empty report, and failed
    tests in the report all fail it even when the command exited 0."""
    if timed_out is not None:
        return TestResult(name, TIMED_OUT, seconds,
                          problem=f"timed out after {timed_out:g}s; it was stopped")  # fmt: skip
    if problem is not None:
        return TestResult(name, code or 1, seconds, problem=problem)
    if junit is None:
        return TestResult(name, code, seconds)
    if report is None:
        return TestResult(name, code or 1, seconds, problem=f"no JUnit report at {junit} "
                          "after the run (does the command write it there?)")  # fmt: skip
    if overflow:
        return TestResult(name, code or 1, seconds,
                          problem=f"the JUnit report is larger than {MAX_REPORT >> 20} MiB")  # fmt: skip
    try:
        summary = parse_junit(report)
    except JUnitError as exc:
        return TestResult(name, code or 1, seconds, problem=f"JUnit report {junit}: {exc}",
                          report=report)  # fmt: skip
    if summary.executed == 0:
        return TestResult(name, code or 1, seconds, summary, "no test ran", report)
    if summary.failed and code == 0:
        code = 1
    return TestResult(name, code, seconds, summary, report=report)


def worst(results: list[TestResult]) -> int:
    """The exit code of a run: the worst of its entries'."""
    return max((r.code for r in results), default=0)
