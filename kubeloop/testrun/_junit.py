"""JUnit XML reports read back from a container: bounded, parsed without DTDs or
entities (defusedxml), reduced to counts and the names of the failed tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.etree.ElementTree import Element

MAX_REPORT = 8 << 20  # bytes; a bigger report is refused, not read
MAX_NAMES = 10  # failed tests named in the summary line


class JUnitError(ValueError):
    """The report is not JUnit XML kubeloop can read (the message says why)."""


@dataclass(frozen=True)
class JUnitSummary:
    passed: int = 0
    failed: int = 0  # failures and errors
    skipped: int = 0
    failed_names: list[str] = field(default_factory=list)

    @property
    def executed(self) -> int:
        return self.passed + self.failed

    def line(self) -> str:
        """``42 passed, 1 failed: test_x`` (skips counted when there are some)."""
        parts = [f"{self.passed} passed"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.skipped:
            parts.append(f"{self.skipped} skipped")
        text = ", ".join(parts)
        if self.failed_names:
            shown = self.failed_names[:MAX_NAMES]
            more = len(self.failed_names) - len(shown)
            text += ": " + ", ".join(shown) + (f" and {more} more" if more else "")
        return text


def parse_junit(data: bytes) -> JUnitSummary:
    """Count the ``testcase`` elements of a JUnit report (``testsuites`` or a single
    ``testsuite`` root): one with a ``failure`` or ``error`` child failed, one with
    ``skipped`` was skipped, the others passed."""
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring

    if len(data) > MAX_REPORT:
        raise JUnitError(f"the report is larger than {MAX_REPORT >> 20} MiB")
    try:
        root = fromstring(data, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise JUnitError(f"the report holds XML kubeloop does not read ({exc})") from None
    except SyntaxError as exc:  # ParseError
        raise JUnitError(f"the report is not well-formed XML ({exc})") from None
    if root.tag not in ("testsuites", "testsuite"):
        raise JUnitError(f"the report's root is <{root.tag[:40]}>, not <testsuites> or "
                         "<testsuite>")  # fmt: skip
    passed = failed = skipped = 0
    names: list[str] = []
    for case in root.iter("testcase"):
        outcome = _outcome(case)
        if outcome == "failed":
            failed += 1
            names.append(_name(case))
        elif outcome == "skipped":
            skipped += 1
        else:
            passed += 1
    return JUnitSummary(passed, failed, skipped, names)


def _outcome(case: Element) -> str:
    tags = {child.tag for child in case}
    if tags & {"failure", "error"}:
        return "failed"
    if "skipped" in tags:
        return "skipped"
    return "passed"


def _name(case: Element) -> str:
    name = (case.get("name") or "?").strip()
    # Printable and short: it comes from the container.
    return "".join(c for c in name if c.isprintable())[:120] or "?"
