"""Budget on the `limits` moving window, memory store: admission, oversized calls, settling,
pauses, cancellation, the in-flight bound, and the settings that configure it.

Windows are 1 s of real time (the library keeps wall time), so each wait costs ~1 s.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from analysis_engine.budget import Budget, BudgetStoreError, open_budget
from analysis_engine.errors import InvalidInputError
from analysis_engine.settings import Settings

T = TypeVar("T")
MODEL = "gemini-2.5-flash"
BASE_ENV = {"ANALYSIS_ID": "a1", "INPUT_URI": "file:///in.mp4", "OUTPUT_URI": "file:///out/"}


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def memory(rpm: int = 1000, tpm: int = 1_000_000, **kwargs: Any) -> Budget:
    return Budget.in_memory(rpm, tpm, window_s=1, margin_s=0, **kwargs)


def test_rpm_limit_holds_the_next_call_until_the_oldest_leaves_the_window() -> None:
    async def scenario() -> list[float]:
        budget = memory(rpm=3)
        start = time.time()
        leases = [await budget.acquire(10, model=MODEL) for _ in range(4)]
        await budget.aclose()
        return [lease.granted_at - start for lease in leases]

    granted = run(scenario())
    assert max(granted[:3]) < 0.3
    assert 0.9 <= granted[3] < 1.6


def test_tpm_limit_counts_tokens_per_model_separately() -> None:
    async def scenario() -> tuple[list[float], tuple[int, int]]:
        budget = memory(tpm=1000)
        start = time.time()
        first = await budget.acquire(600, model=MODEL)
        other = await budget.acquire(900, model="gemini-2.5-pro")  # its own window
        second = await budget.acquire(600, model=MODEL)  # waits for the first to expire
        window = await budget.in_window(MODEL)
        await budget.aclose()
        return [lease.granted_at - start for lease in (first, other, second)], window

    (first, other, second), window = run(scenario())
    assert first < 0.3 and other < 0.3
    assert 0.9 <= second < 1.6
    assert window == (1, 600)


def test_oversized_call_waits_for_an_empty_window_then_takes_all_of_it() -> None:
    async def scenario() -> tuple[float, float, tuple[int, int]]:
        budget = memory(tpm=1000)
        start = time.time()
        await budget.acquire(300, model=MODEL)
        huge = await budget.acquire(5000, model=MODEL)  # more than a whole window
        window = await budget.in_window(MODEL)
        after = await budget.acquire(10, model=MODEL)
        await budget.aclose()
        return huge.granted_at - start, after.granted_at - huge.granted_at, window

    huge_at, after_gap, window = run(scenario())
    assert 0.9 <= huge_at < 1.6  # no deadlock: admitted once the window emptied
    assert window == (1, 1000)  # charged the whole window
    assert 0.9 <= after_gap < 1.6


def test_settle_charges_tokens_above_the_estimate_and_keeps_the_estimate_below_it() -> None:
    async def scenario() -> tuple[tuple[int, int], tuple[int, int]]:
        budget = memory(tpm=1000)
        dear = await budget.acquire(100, model=MODEL)
        await dear.settle(400)
        after_dear = await budget.in_window(MODEL)
        cheap = await budget.acquire(300, model=MODEL)
        await cheap.settle(10)  # never un-counted: errs towards spending less
        after_cheap = await budget.in_window(MODEL)
        await budget.aclose()
        return after_dear, after_cheap

    assert run(scenario()) == ((1, 400), (2, 700))


def test_the_window_is_kept_a_margin_longer_than_the_quotas_minute() -> None:
    async def scenario() -> float:
        budget = Budget.in_memory(1000, 1000, window_s=1)  # the default 1 s margin
        first = await budget.acquire(1000, model=MODEL)
        second = await budget.acquire(1000, model=MODEL)
        await budget.aclose()
        return second.granted_at - first.granted_at

    # A call reaching the service later than it was admitted never meets the previous
    # window's calls still counted there.
    assert 2.0 <= run(scenario()) < 2.6


def test_pause_holds_every_caller_of_that_model_only() -> None:
    async def scenario() -> tuple[float, float]:
        budget = memory()
        start = time.time()
        await budget.pause(MODEL, 0.8)
        other = await budget.acquire(10, model="gemini-2.5-pro")
        held = await budget.acquire(10, model=MODEL)
        await budget.aclose()
        return other.granted_at - start, held.granted_at - start

    other, held = run(scenario())
    assert other < 0.3
    assert 0.8 <= held < 1.3


def test_cancelling_a_waiting_call_lets_the_next_one_through() -> None:
    async def scenario() -> float:
        budget = memory(tpm=1000)
        start = time.time()
        await budget.acquire(900, model=MODEL)
        doomed = asyncio.create_task(budget.acquire(900, model=MODEL))
        await asyncio.sleep(0.1)
        doomed.cancel()
        small = await budget.acquire(50, model=MODEL)  # fits beside the first call
        await budget.aclose()
        return small.granted_at - start

    assert run(scenario()) < 0.5


def test_a_finishing_call_goes_ahead_of_this_containers_waiting_map_calls() -> None:
    async def scenario() -> list[str]:
        budget = memory(tpm=1000)
        order: list[str] = []

        async def call(name: str, tokens: int, *, finishing: bool = False) -> None:
            await budget.acquire(tokens, model=MODEL, finishing=finishing)
            order.append(name)

        await budget.acquire(1000, model=MODEL)  # the window is full for 1 s
        waiting = [asyncio.create_task(call(f"map-{i}", 400)) for i in range(2)]
        await asyncio.sleep(0.1)
        waiting.append(asyncio.create_task(call("reduce", 400, finishing=True)))
        await asyncio.gather(*waiting)
        await budget.aclose()
        return order

    assert run(scenario()) == ["reduce", "map-0", "map-1"]


def test_in_flight_bound_follows_the_window_only_with_a_shared_store() -> None:
    budget = memory(rpm=1000, tpm=1_000_000)
    assert budget.in_flight_bound(MODEL, 36_000, 4) == 4  # a container's own share
    budget._store.shared = True  # type: ignore[misc]  # what the Redis store reports
    assert budget.in_flight_bound(MODEL, 36_000, 4) == 27  # 1M tokens / 36k per call
    assert budget.in_flight_bound(MODEL, 1000, 4) == 64  # capped
    assert budget.in_flight_bound(MODEL, 900_000, 4) == 4  # never below MAP_CONCURRENCY


def test_settings_parse_the_budget_store_and_per_model_limits() -> None:
    env = {
        **BASE_ENV,
        "GEMINI_BUDGET_URI": "rediss://user:tok@cache.example:6379",
        "GEMINI_MODEL_BUDGETS": json.dumps({"gemini-2.5-pro": {"rpm": 150, "tpm": 2_000_000}}),
        "GEMINI_BUDGET_WINDOW_SECONDS": "6",
    }
    settings = Settings.from_env(env)
    assert settings.gemini_budget_uri == "rediss://user:tok@cache.example:6379"
    assert settings.gemini_model_budgets == {"gemini-2.5-pro": {"rpm": 150, "tpm": 2_000_000}}
    assert settings.gemini_budget_window_seconds == 6
    assert "tok" not in repr(settings)
    default = Settings.from_env(BASE_ENV)
    assert default.gemini_budget_uri == "memory://" and default.gemini_model_budgets == {}
    budget = open_budget(Settings.from_env({**env, "GEMINI_BUDGET_URI": "memory://"}))
    assert budget.limits_for("gemini-2.5-pro").tpm == 2_000_000
    assert budget.limits_for("gemini-2.5-flash").tpm == default.gemini_tpm_budget


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("GEMINI_BUDGET_URI", "http://cache:6379", "must start with memory://, redis://"),
        ("GEMINI_BUDGET_URI", "redis://:secret@/0", "has no host"),
        ("GEMINI_MODEL_BUDGETS", "{nope", "is not valid JSON"),
        ("GEMINI_MODEL_BUDGETS", "[1]", "must be a JSON object"),
        ("GEMINI_MODEL_BUDGETS", '{"m": {"rpm": 5}}', "must map to exactly"),
        ("GEMINI_MODEL_BUDGETS", '{"m": {"rpm": 0, "tpm": 5000}}', "'m'.rpm must be an integer"),
        ("GEMINI_MODEL_BUDGETS", '{"m": {"rpm": 5, "tpm": 1.5}}', "'m'.tpm must be an integer"),
        ("GEMINI_BUDGET_WINDOW_SECONDS", "0.5", "is not an integer"),
    ],
)
def test_bad_budget_settings_name_the_field(name: str, value: str, reason: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        Settings.from_env({**BASE_ENV, name: value})
    assert caught.value.field == name
    assert reason in str(caught.value)
    assert "secret" not in str(caught.value)


def test_closed_budget_refuses_new_calls() -> None:
    async def scenario() -> None:
        budget = memory()
        await budget.aclose()
        await budget.acquire(1, model=MODEL)

    with pytest.raises(BudgetStoreError):
        run(scenario())


def test_a_429_lowers_the_ceiling_under_the_window_and_it_recovers_additively() -> None:
    async def scenario() -> tuple[float, float, tuple[float, float] | None]:
        budget = memory(tpm=1000)
        start = time.time()
        await budget.acquire(300, model=MODEL)
        await budget.pause(MODEL, 0.0)  # the service said "full" at 300 tokens
        learnt = budget._ceilings[MODEL]
        small, other = await asyncio.gather(
            budget.acquire(100, model=MODEL),  # would fit the limit, not the ceiling
            budget.acquire(900, model="gemini-2.5-pro"),  # its own ceiling
        )
        await budget.aclose()
        return small.granted_at - start, other.granted_at - start, learnt

    small, other, learnt = run(scenario())
    assert learnt is not None and learnt[0] == pytest.approx(270.0)  # 0.9 x the 300
    # Held until the 300 left the window (1 s): the ceiling (270) does not climb back
    # within the window after a 429, so 300 + 100 never went in together.
    assert 0.95 <= small < 1.5 and other < 0.4
    budget = memory(tpm=1000)
    budget._ceilings[MODEL] = (270.0, 100.0)
    limits = budget.limits_for(MODEL)
    # +5% of the limit per whole quiet window of 1 s, nothing in between.
    assert budget._ceiling(MODEL, limits, 100.0) == 270.0
    assert budget._ceiling(MODEL, limits, 100.99) == 270.0
    assert budget._ceiling(MODEL, limits, 101.0) == pytest.approx(320.0)
    assert budget._ceiling(MODEL, limits, 103.5) == pytest.approx(420.0)
    assert budget._ceiling(MODEL, limits, 200.0) == 1000.0
    # From the floor (5% of the limit) back to the limit within 1/CEILING_STEP = 19 windows.
    budget._ceilings[MODEL] = (50.0, 100.0)
    assert budget._ceiling(MODEL, limits, 118.99) < 1000.0
    assert budget._ceiling(MODEL, limits, 119.0) == 1000.0


def test_a_429_in_a_burst_never_raises_the_ceiling_and_restarts_the_quiet_count() -> None:
    async def scenario() -> tuple[float, float]:
        budget = memory(tpm=1000)
        # Learnt 200 four quiet windows ago: recovered to 200 + 4 x 5% of 1000 = 400 by now.
        await budget._store.set_ceiling(MODEL, 200.0, time.time() - 4.5)
        await budget.acquire(600, model=MODEL)  # refused calls' charges stay in the window
        before = time.time()
        await budget.pause(MODEL, 0.5)
        tokens, quiet_since = budget._ceilings[MODEL] or (0.0, 0.0)
        await budget.aclose()
        return tokens, quiet_since - before

    tokens, quiet_after = run(scenario())
    assert tokens == pytest.approx(400.0)  # min(where it was, 0.9 x 600)
    assert 0.45 <= quiet_after <= 0.6  # counted from the end of the pause


def test_counters_and_state_report_waits_429s_window_ceiling_and_pause() -> None:
    async def scenario() -> tuple[Any, Any, Any]:
        budget = memory(rpm=10, tpm=1000)
        await budget.acquire(600, model=MODEL)
        await budget.acquire(600, model=MODEL)  # waits ~1 s for the first to leave
        await budget.pause(MODEL, 5.0, reason="HTTP 429 RESOURCE_EXHAUSTED")
        state = await budget.state(MODEL)
        other = await budget.state("gemini-2.5-pro")
        counters = budget.counters()
        await budget.aclose()
        return counters, state, other

    counters, state, other = run(scenario())
    assert counters.admitted == 2 and counters.rate_limited == 1
    assert 0.9 <= counters.waited_max_s <= counters.waited_s < 1.6
    assert (state.model, state.shared, state.limit_requests, state.limit_tokens) == (
        MODEL,
        False,
        10,
        1000,
    )
    assert (state.window_requests, state.window_tokens) == (1, 600)
    assert state.ceiling_tokens == 540  # 0.9 x the 600 in the window when it said "full"
    assert state.paused_until is not None and 4.5 < state.paused_until - state.at <= 5.0
    assert state.pause_reason == "HTTP 429 RESOURCE_EXHAUSTED"
    assert (other.window_tokens, other.ceiling_tokens, other.paused_until) == (0, 1000, None)
