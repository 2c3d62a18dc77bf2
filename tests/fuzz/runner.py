"""What the fuzzers share: cases run in a worker process (``python -m MODULE --worker``)
that prints one line per case, 'INDEX OUTCOME' or 'INDEX crash BASE64-TRACEBACK'. A case
over the time limit is a hang: the worker is killed and a new one goes on with the next
case, so one hang costs one case, not the run."""

from __future__ import annotations

import base64
import os
import selectors
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Report:
    cases: int = 0
    seconds: float = 0.0
    crashes: dict[int, str] = field(default_factory=dict)
    hangs: list[int] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    known: dict[str, list[int]] = field(default_factory=dict)  # known bug: its cases

    def failing(self) -> list[int]:
        return [*self.crashes, *self.hangs, *(i for cases in self.known.values() for i in cases)]

    def summary(self, kind: Callable[[str], str] = lambda tb: tb[:120]) -> str:
        """Counts, then crashes grouped by ``kind`` of their traceback's last line."""
        shown = ", ".join(f"{k} {n}" for k, n in sorted(self.outcomes.items()))
        lines = [f"{self.cases} cases in {self.seconds:.1f}s: {len(self.crashes)} crashes, "
                 f"{len(self.hangs)} hangs ({shown})"]  # fmt: skip
        kinds = Counter(kind(tb.strip().splitlines()[-1]) for tb in self.crashes.values())
        lines += [f"  {n:5d} × {k}" for k, n in kinds.most_common()]
        if self.hangs:
            lines.append(f"  hangs: cases {self.hangs[:20]}")
        for bug, indexes in self.known.items():
            lines.append(f"  known bug, {len(indexes)} cases (first {indexes[:5]}): {bug}")
        return "\n".join(lines)


def worker_line(index: int, status: str, failure: str) -> None:
    print(index, status, base64.b64encode(failure.encode()).decode(), flush=True)


def known_bug(failure: str, known: dict[str, tuple[str, ...]]) -> str | None:
    return next((bug for bug, marks in known.items() if all(m in failure for m in marks)), None)


def fuzz(module: str, cases: int, seed: int, limit: float = 2.0,
         known: dict[str, tuple[str, ...]] | None = None) -> Report:  # fmt: skip
    """Run ``cases`` cases of ``module``'s worker; crashes matching ``known`` signatures
    are counted apart, in ``Report.known``."""
    report = Report(cases=cases)
    started = time.monotonic()
    next_index = 0
    while next_index < cases:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, "--worker", "--seed", str(seed),
             "--start", str(next_index), "--cases", str(cases)],
            stdout=subprocess.PIPE, cwd=Path(__file__).parents[2],
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )  # fmt: skip
        assert proc.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + limit + 10  # the first case also pays the imports
        while next_index < cases:
            if not selector.select(max(0.0, deadline - time.monotonic())):
                report.hangs.append(next_index)
                proc.kill()
                next_index += 1
                break
            line = proc.stdout.readline()
            if not line:  # the worker died (a crash below Python)
                report.crashes[next_index] = f"worker died with {proc.wait()}"
                next_index += 1
                break
            index, status, *rest = line.decode().split()
            if status == "crash":
                failure = base64.b64decode(rest[0]).decode()
                bug = known_bug(failure, known or {})
                if bug is None:
                    report.crashes[int(index)] = failure
                else:
                    report.known.setdefault(bug, []).append(int(index))
            else:
                report.outcomes[status] += 1
            next_index = int(index) + 1
            deadline = time.monotonic() + limit
        proc.kill()
        proc.wait()
        selector.close()
    report.seconds = time.monotonic() - started
    return report
