"""Running independent steps at once, the way a start-up needs: all results, or the
first error with the other steps stopped (``asyncio.gather`` alone leaves them running;
``TaskGroup`` wraps the error in an ExceptionGroup, which callers would have to unwrap to
explain a failing deploy)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any


async def all_of(*steps: Awaitable[Any]) -> list[Any]:
    """Await ``steps`` concurrently; on the first error (or a cancel), cancel the rest,
    wait for them to end, and raise it."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
