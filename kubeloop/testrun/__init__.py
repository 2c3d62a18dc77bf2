"""Tests and linters run in the cluster (``kubeloop test``): in a running, synced dev
container (exec) or as a Job from the built image, with live prefixed output, timeouts,
JUnit summaries and the worst exit code."""

from kubeloop.testrun._junit import JUnitError, JUnitSummary, parse_junit
from kubeloop.testrun._project import OnSync, report, run_project_tests, select
from kubeloop.testrun._result import TestResult, verdict, worst
from kubeloop.testrun._runner import Target, job_object, run_entry, run_tests

__all__ = [
    "JUnitError",
    "JUnitSummary",
    "OnSync",
    "Target",
    "TestResult",
    "job_object",
    "parse_junit",
    "report",
    "run_entry",
    "run_project_tests",
    "run_tests",
    "select",
    "verdict",
    "worst",
]
