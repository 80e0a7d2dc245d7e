"""Budget: sliding-window RPM/TPM admission, settling, oversized requests, shared cool-down."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from analysis_engine.budget import Budget

T = TypeVar("T")


class FakeClock:
    """A monotonic clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)  # let other tasks run, as a real sleep would


def make(rpm: int = 1000, tpm: int = 1_000_000) -> tuple[Budget, FakeClock]:
    clock = FakeClock()
    return Budget(rpm, tpm, clock=clock, sleep=clock.sleep), clock


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def test_rpm_limit_waits_for_the_oldest_request_to_leave_the_window() -> None:
    budget, clock = make(rpm=3)

    async def scenario() -> list[float]:
        granted = []
        for _ in range(4):
            lease = await budget.acquire(10)
            granted.append(lease.granted_at)
            clock.now += 5  # calls spaced 5 s apart
        return granted

    assert run(scenario()) == [0, 5, 10, 60]


def test_tpm_limit_and_sliding_window() -> None:
    budget, clock = make(tpm=1000)

    async def scenario() -> list[float]:
        first = await budget.acquire(500)
        clock.now = 30
        second = await budget.acquire(500)
        clock.now = 40
        third = await budget.acquire(400)  # fits once the t=0 entry expires at t=60
        return [first.granted_at, second.granted_at, third.granted_at]

    assert run(scenario()) == [0, 30, 60]
    assert budget.in_window() == (2, 900)


def test_settle_corrects_the_estimate_both_ways() -> None:
    budget, clock = make(tpm=1000)

    async def scenario() -> tuple[float, float]:
        lease = await budget.acquire(900)
        lease.settle(100)  # the call was cheaper than estimated
        cheap = await budget.acquire(800)
        cheap.settle(950)  # this one was dearer: the window now holds 1050
        clock.now = 1
        late = await budget.acquire(10)
        return cheap.granted_at, late.granted_at

    cheap_at, late_at = run(scenario())
    assert cheap_at == 0  # admitted at once thanks to the first settle
    assert late_at == 60  # had to wait for both t=0 entries to expire


def test_oversized_request_is_admitted_when_the_window_is_empty() -> None:
    budget, clock = make(tpm=1000)

    async def scenario() -> list[float]:
        small = await budget.acquire(500)
        clock.now = 10
        huge = await budget.acquire(5000)  # larger than the whole budget
        after = await budget.acquire(10)  # must wait until the huge one has left
        return [small.granted_at, huge.granted_at, after.granted_at]

    assert run(scenario()) == [0, 60, 120]


def test_oversized_request_goes_at_once_into_an_empty_window() -> None:
    budget, _ = make(tpm=1000)
    lease = run(budget.acquire(50_000))
    assert lease.granted_at == 0 and lease.waited_s == 0


def test_pause_until_holds_every_concurrent_caller() -> None:
    budget, _ = make()

    async def scenario() -> list[float]:
        budget.pause_until(26.0)  # one caller got a 429 with retryDelay 26s
        leases = await asyncio.gather(*(budget.acquire(10) for _ in range(5)))
        return [lease.granted_at for lease in leases]

    granted = run(scenario())
    assert all(t >= 26.0 for t in granted)
    assert max(granted) < 27.5  # nobody waited much longer than the cool-down


def test_pause_only_extends() -> None:
    budget, _ = make()
    budget.pause_until(30)
    budget.pause_until(10)
    assert budget.paused_until == 30


def test_waiters_are_served_in_arrival_order() -> None:
    budget, _ = make(tpm=1000)

    async def scenario() -> tuple[float, float]:
        await budget.acquire(900)
        big = asyncio.create_task(budget.acquire(500))
        await asyncio.sleep(0)
        small = asyncio.create_task(budget.acquire(50))  # would fit now, but queues behind
        return (await big).granted_at, (await small).granted_at

    big_at, small_at = run(scenario())
    assert big_at == 60
    assert small_at >= big_at


def test_cancelled_waiter_charges_nothing() -> None:
    budget, _ = make(rpm=1)

    async def scenario() -> tuple[int, int]:
        await budget.acquire(10)
        waiter = asyncio.create_task(budget.acquire(10))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        return budget.in_window()

    assert run(scenario()) == (1, 10)


def test_real_clock_smoke() -> None:
    budget = Budget(rpm=2, tpm=1000, window_s=0.2)

    async def scenario() -> float:
        await budget.acquire(1)
        await budget.acquire(1)
        third = await budget.acquire(1)
        return third.waited_s

    assert 0.1 < run(scenario()) < 1.0


def test_rejects_nonsense_limits() -> None:
    with pytest.raises(ValueError):
        Budget(0, 100)
