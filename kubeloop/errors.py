"""The one exception type users see: what went wrong and how to fix it."""

from __future__ import annotations


class KubeloopError(Exception):
    """An error with a message for the user and, where we know one, a fix.

    The CLI prints ``message`` and ``hint`` and exits with ``exit_code``; library
    callers can read the same fields.
    """

    def __init__(self, message: str, hint: str | None = None, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  fix: {self.hint}"
        return self.message


class PreflightError(KubeloopError):
    """The host lacks something a cluster needs; nothing was started."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        lines = [f"  - {what}\n      fix: {fix}" for what, fix in problems]
        super().__init__(
            "the host is not ready for this cluster:\n" + "\n".join(lines), exit_code=2
        )
        self.problems = problems
