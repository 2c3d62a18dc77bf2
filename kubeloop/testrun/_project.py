"""``kubeloop test`` for a project, and ``on: sync`` entries inside ``kubeloop dev``."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubeloop.config import LoadedConfig, load
from kubeloop.config.schema import TestEntry
from kubeloop.errors import KubeloopError
from kubeloop.testrun._result import TestResult, worst
from kubeloop.testrun._runner import OnLine, Target, run_tests

if TYPE_CHECKING:
    from kubeloop.devloop.session import Session

COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "red")
ANSI = ("36", "35", "32", "33", "34", "31")  # the same colours


def select(config: LoadedConfig, names: list[str] | tuple[str, ...]) -> list[TestEntry]:
    """The entries named (all of them when none is), in the config's order."""
    entries = config.project.test
    if not entries:
        raise KubeloopError(f"{config.path} has no test entries",
                            "add a 'test:' section (see the README: Tests in the cluster)")  # fmt: skip
    known = {e.name for e in entries}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise KubeloopError(f"no test named {', '.join(unknown)} in {config.path}",
                            f"known: {', '.join(sorted(known))}")  # fmt: skip
    return [e for e in entries if not names or e.name in names]


def printer(names: list[str], rich: bool = False) -> OnLine:
    """Each entry's lines behind its name, one colour per entry. Plain writes to stderr
    by default: loading Rich would cost a test run more than its output does; ``rich``
    goes through kubeloop's console (where a spinner or dev's log view shares it)."""
    width = max((len(n) for n in names), default=0)
    index = {n: i % len(COLOURS) for i, n in enumerate(names)}

    def show(name: str, line: str) -> None:
        prefix = f"{name.ljust(width)} |"
        if rich:
            from rich.markup import escape

            from kubeloop.ui import console

            colour = COLOURS[index.get(name, 0)]
            console().print(f"[{colour}]{escape(prefix)}[/{colour}] {escape(line)}",
                            soft_wrap=True)  # fmt: skip
        else:
            _write(f"{_paint(prefix, ANSI[index.get(name, 0)])} {line}")

    return show


def report(results: list[TestResult], show: Callable[[str], None] | None = None,
           rich: bool = False) -> None:  # fmt: skip
    """One line per entry: a mark, its outcome and its JUnit summary."""
    for result in results:
        if show is None and not rich:
            mark = _paint("✓", "32") if result.ok else _paint("✗", "31")
            _write(f"{mark} {result.line()}")
            continue
        from rich.markup import escape

        from kubeloop.ui import info

        mark = "[green]✓[/green]" if result.ok else "[red]✗[/red]"
        (show or info)(f"{mark} {escape(result.line())}")


def _paint(text: str, code: str) -> str:
    if not sys.stderr.isatty() or os.environ.get("NO_COLOR"):
        return text
    return f"\x1b[{code}m{text}\x1b[0m"


def _write(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


async def run_project_tests(config_path: Path | None, environment: str | None,
                            cluster: str | None, names: list[str] | tuple[str, ...] = (), *,
                            keep: bool = False, env: dict[str, str] | None = None,
                            report_dir: Path | None = None,
                            on_line: OnLine | None = None) -> list[TestResult]:  # fmt: skip
    """``kubeloop test``: the named entries (or all) at once. Exec-only runs need kubectl
    alone; a Job entry first builds what changed and renders, for the image references."""
    config = load(config_path, environment)
    entries = select(config, names)
    show = on_line or printer([e.name for e in entries])
    if all(e.in_ == "dev" for e in entries):
        from kubeloop.cluster import project_cluster  # here: an exec-only run stays a fast start

        info = project_cluster(cluster, config.project.context)
        target = Target(info.kubeconfig, info.context, config.project.namespace,
                        config.project.name)  # fmt: skip
        return await run_tests(entries, target, show, keep=keep, env=env, report_dir=report_dir)
    from kubeloop.devloop.session import open_session

    session = await open_session(config_path, environment, cluster)
    try:
        target = await session_target(session, quiet=False)
        return await run_tests(entries, target, show, keep=keep, env=env, report_dir=report_dir)
    finally:
        await session.close()


async def session_target(session: Session, quiet: bool = True) -> Target:
    """A target from an open session: built images (unchanged ones are not rebuilt) and
    the render they go into."""
    from kubeloop import ui

    with ui.step(f"building {session.config.project.name}", quiet) as step:
        await session.build(on_line=lambda image, line: step.detail(f"{image}: {line}"))
    return Target(session.cluster.kubeconfig, session.cluster.context, session.namespace,
                  session.config.project.name, session.kube,
                  await session.render())  # fmt: skip


def exit_code(results: list[TestResult]) -> int:
    return worst(results)


class OnSync:
    """``kubeloop dev``'s ``on: sync`` entries: run once a sync has settled (no batch for
    ``settle`` seconds), one run at a time; a sync during a run brings one more run
    after it. Results are printed in dev's output."""

    def __init__(self, session: Session, entries: list[TestEntry], settle: float = 0.3,
                 on_result: Callable[[list[TestResult]], None] | None = None) -> None:  # fmt: skip
        self.session = session
        self.entries = entries
        self.settle = settle
        self.on_result = on_result or (lambda results: report(results, rich=True))
        self.runs = 0
        self._wanted = asyncio.Event()
        self._show = printer([e.name for e in entries], rich=True)

    @classmethod
    def for_session(cls, session: Session) -> OnSync | None:
        entries = [e for e in session.config.project.test if e.on == "sync"]
        return cls(session, entries) if entries else None

    def notify(self, _batch: object = None) -> None:
        """Called by each sync batch (Syncer.on_batch)."""
        self._wanted.set()

    def after(self, previous: Callable[[Any], None]) -> Callable[[Any], None]:
        """A Syncer.on_batch that calls ``previous`` (another listener), then notify."""

        def both(batch: Any) -> None:
            previous(batch)
            self.notify()

        return both

    async def run(self) -> None:
        while True:
            await self._wanted.wait()
            while self._wanted.is_set():  # settle: until the batches stop coming
                self._wanted.clear()
                await asyncio.sleep(self.settle)
            try:
                needs_job = any(e.in_ == "job" for e in self.entries)
                if needs_job:
                    target = await session_target(self.session)
                else:
                    target = Target(self.session.cluster.kubeconfig,
                                    self.session.cluster.context, self.session.namespace,
                                    self.session.config.project.name)  # fmt: skip
                results = await run_tests(self.entries, target, self._show)
            except KubeloopError as exc:
                from kubeloop import ui

                ui.warn(f"tests after sync: {exc.message}")
                continue
            self.runs += 1
            self.on_result(results)
