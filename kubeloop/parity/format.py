"""The report for people (a Rich table) and for programs (JSON)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from kubeloop.parity.compare import Difference, ParityReport
from kubeloop.parity.normalise import render_value

if TYPE_CHECKING:
    from rich.console import RenderableType

CELL = 60  # characters of a value shown in a cell; JSON output has them whole


def _cell(present: bool, value: Any) -> str:
    if not present:
        return "[dim](absent)[/dim]"
    text = render_value(value)
    if len(text) > CELL:
        text = text[: CELL - 1] + "…"
    return text.replace("[", r"\[")


def _status(diff: Difference) -> str:
    if diff.expected_by is None:
        return "[bold red]unexpected[/bold red]"
    rule = diff.expected_by.replace("[", r"\[")
    return f"[dim]expected ({rule})[/dim]"


def table(report: ParityReport, show_expected: bool = True) -> RenderableType:
    """The differences, one row each, unexpected ones first; a summary below."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    rows = sorted(report.differences, key=lambda d: (d.expected_by is not None, d.object))
    if not show_expected:
        rows = [d for d in rows if d.expected_by is None]
    grid = Table(title=f"parity: {report.a} ↔ {report.b}", show_lines=False)
    # Names whole, values folded: a name cut in two cannot be searched for or copied.
    for column in ("object", "field", "about"):
        grid.add_column(column, no_wrap=True)
    for column in (report.a, report.b):
        grid.add_column(column, overflow="fold", ratio=1)
    grid.add_column("", max_width=30)
    for d in rows:
        grid.add_row(d.object, d.field or "[dim](the object)[/dim]", d.category,
                     _cell(d.a_present, d.a), _cell(d.b_present, d.b), _status(d))  # fmt: skip
    unexpected = len(report.unexpected)
    expected = len(report.differences) - unexpected
    rules = "parity.ignoreLive" if report.b == "live" else "parity.ignore"
    summary = (f"{report.objects} objects compared: {unexpected} unexpected "
               f"difference{'s' if unexpected != 1 else ''}, {expected} expected ({rules})")  # fmt: skip
    parts: list[RenderableType] = [grid] if rows else []
    parts.append(Text(summary, style="bold red" if unexpected else "green"))
    for note in report.notes:
        parts.append(Text(note, style="dim"))
    for rule in report.unused_rules:
        parts.append(Text(f"{rules} rule '{rule}' matched no difference (still needed?)",
                          style="yellow"))  # fmt: skip
    return Group(*parts)


def to_json(report: ParityReport) -> str:
    return json.dumps(report.to_dict(), indent=2, sort_keys=False, default=str)
