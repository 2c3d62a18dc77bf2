"""kubeloop.core.wait_until: the one polling wait every layer uses."""

from __future__ import annotations

import asyncio

import pytest

from kubeloop.core import WaitTimeout, wait_until
from kubeloop.errors import KubeloopError


async def test_returns_as_soon_as_the_condition_holds() -> None:
    calls: list[int] = []

    def third_time() -> bool:
        calls.append(1)
        return len(calls) == 3

    await wait_until(third_time, timeout=5, interval=0.001)
    assert len(calls) == 3


async def test_an_async_condition_is_awaited() -> None:
    async def ready() -> bool:
        await asyncio.sleep(0)
        return True

    await wait_until(ready, timeout=1)


async def test_a_timeout_names_what_was_awaited_and_checks_once_more() -> None:
    calls: list[int] = []

    def never() -> bool:
        calls.append(1)
        return False

    with pytest.raises(WaitTimeout) as caught:
        await wait_until(never, timeout=0.05, interval=0.01, what="the node to be Ready")
    assert isinstance(caught.value, KubeloopError)
    assert caught.value.message == "timed out after 0s waiting for the node to be Ready"
    assert len(calls) >= 2


async def test_a_zero_timeout_still_checks_once() -> None:
    await wait_until(lambda: True, timeout=0)


async def test_an_error_from_the_condition_ends_the_wait() -> None:
    def died() -> bool:
        raise KubeloopError("etcd exited during start-up")

    with pytest.raises(KubeloopError, match="etcd exited"):
        await wait_until(died, timeout=10)
