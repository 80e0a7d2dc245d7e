"""Budget with the memory store: admission, oversized calls, settling, pauses, the control
law after a 429 (pure and applied), the daily quota, cancellation, the in-flight bound, and
the settings that configure it.

Windows are 1 s of real time (the library keeps wall time), so each wait costs ~1 s.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from analysis_engine.budget import (
    Budget,
    BudgetExhausted,
    BudgetState,
    BudgetStoreError,
    law,
    open_budget,
)
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
    assert window == (1, 5000)  # charged in full: it holds the whole window
    assert 0.9 <= after_gap < 1.6


def test_settle_charges_what_the_service_counted_both_ways_even_in_a_full_window() -> None:
    async def scenario() -> tuple[tuple[int, int], ...]:
        budget = memory(tpm=1000)
        dear = await budget.acquire(100, model=MODEL)
        await dear.settle(400)
        after_dear = await budget.in_window(MODEL)
        cheap = await budget.acquire(300, model=MODEL)
        await cheap.settle(10)  # the service counted 10: the rest is free again
        after_cheap = await budget.in_window(MODEL)
        full = await budget.acquire(590, model=MODEL)  # the window is full now
        await full.settle(900)  # over the limit: still counted, never dropped
        after_full = await budget.in_window(MODEL)
        await budget.aclose()
        return after_dear, after_cheap, after_full

    assert run(scenario()) == ((1, 400), (2, 410), (3, 1310))


def test_the_window_is_kept_a_margin_longer_than_the_quotas_minute() -> None:
    async def scenario(window_s: int) -> float:
        clock = VirtualClock()
        budget = Budget.in_memory(
            1000, 1000, window_s=window_s, clock=clock, sleep=clock.sleep, poll_s=0.01
        )
        first = await budget.acquire(1000, model=MODEL)
        second = await budget.acquire(1000, model=MODEL)
        await budget.aclose()
        return second.granted_at - first.granted_at

    # A call reaching the service later than it was admitted never meets the previous
    # window's calls still counted there: 1 s, at most 1/30 of a time-scaled window.
    assert 61.0 <= run(scenario(60)) < 61.1
    assert 31.0 <= run(scenario(30)) < 31.1
    assert 6.2 <= run(scenario(6)) < 6.3


class VirtualClock:
    """Time that passes only when the budget sleeps (one waiting call at a time)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


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


def test_a_429_with_a_full_window_lowers_the_ceiling_and_holds_admission() -> None:
    async def scenario() -> tuple[float, float, BudgetState]:
        budget = memory(tpm=1000)
        start = time.time()
        await budget.acquire(950, model=MODEL)
        refused = await budget.acquire(50, model=MODEL)
        # The service said "full" with 950 counted (the refused 50 never counted there).
        await budget.pause(MODEL, 0.0, refused=refused)
        learnt = await budget.state(MODEL)
        small, other = await asyncio.gather(
            budget.acquire(100, model=MODEL),  # would fit the limit, not the ceiling
            budget.acquire(900, model="gemini-2.5-pro"),  # its own ceiling
        )
        await budget.aclose()
        return small.granted_at - start, other.granted_at - start, learnt

    small, other, learnt = run(scenario())
    assert (learnt.window_tokens, learnt.ceiling_tokens) == (950, 855)  # 0.9 x the 950
    # Held until the 950 left the window (1 s): the ceiling does not climb back within the
    # window after a 429, so 950 + 100 never went in together.
    assert 0.95 <= small < 1.5 and other < 0.4


def test_a_429_with_a_nearly_empty_window_pauses_but_keeps_the_ceiling() -> None:
    """The issue's reproduction: an empty window, two 36k-token calls, one refusal. It was
    not our share (our window held one call), so nothing but the pause changes."""

    async def scenario() -> tuple[BudgetState, float]:
        budget = memory(tpm=1_000_000)
        await budget.acquire(36_000, model=MODEL)
        refused = await budget.acquire(36_000, model=MODEL)
        await budget.pause(MODEL, 0.3, refused=refused, reason="HTTP 429 RESOURCE_EXHAUSTED")
        state = await budget.state(MODEL)
        started = time.time()
        await budget.acquire(36_000, model=MODEL)
        held = time.time() - started
        await budget.aclose()
        return state, held

    state, held = run(scenario())
    assert state.ceiling_tokens == 1_000_000 and state.window_tokens == 36_000
    assert 0.25 <= held < 0.6  # the pause, then at once: no window-long wait per call


def test_the_control_law_tells_our_429s_from_the_services_and_states_its_bounds() -> None:
    limit, window = 1000.0, 60.0

    def after(ceiling: law.Ceiling | None, tokens: float, now: float) -> Any:
        return law.after_429(
            ceiling, window_tokens=tokens, limit=limit, now=now, pause_until=now + 5,
            window_s=window,
        )  # fmt: skip

    # A full window: the quota is below what we held.
    full, verdict = after(None, 950, 100.0)
    assert verdict == "full window" and full.tokens == pytest.approx(855.0)  # 0.9 x 950
    assert full.quiet_since == 105.0  # recovery counts from the pause's end
    # +5% of the limit per whole quiet window, nothing in between, up to the limit.
    assert law.current(full, limit=limit, now=164.9, window_s=window) == pytest.approx(855.0)
    assert law.current(full, limit=limit, now=165.0, window_s=window) == pytest.approx(905.0)
    assert law.current(full, limit=limit, now=105 + 3 * 60, window_s=window) == limit
    # Stated bounds: one full-window 429 at worst to 0.81 (4 quiet windows back), the
    # deepest confirmed decrease to 0.225 (16), the floor (19).
    worst, _ = after(None, 900, 100.0)
    assert worst.tokens == pytest.approx(810.0) and law.recovery_windows(0.81) == 4
    assert law.recovery_windows(0.225) == 16 and law.recovery_windows(law.FLOOR) == 19
    # A nearly empty window: not our share; the ceiling stays whatever the streak.
    kept, verdict = after(None, 200, 100.0)
    assert verdict == "not ours" and kept.tokens == limit and kept.streak == 1
    same, _ = after(kept, 100, 102.0)  # within that 429's pause: the same episode
    assert same.streak == 1
    for at in (110.0, 120.0, 130.0):
        kept, verdict = after(kept, 100, at)
    assert verdict == "not ours" and kept.tokens == limit and kept.streak == 4
    # A meaningful share, not full: a first 429 only marks the level...
    marked, verdict = after(None, 500, 100.0)
    assert verdict == "suspect" and marked.tokens == limit and marked.suspect == 500
    again, verdict = after(marked, 480, 103.0)  # same episode: still only a suspicion
    assert verdict == "suspect" and again.tokens == limit
    # ... a second one in a later episode of the run confirms it.
    confirmed, verdict = after(again, 450, 110.0)
    assert verdict == "confirmed" and confirmed.tokens == pytest.approx(450.0)  # 0.9 x 500
    assert confirmed.suspect == 0.0
    # A quiet window ends the run: the suspicion is forgotten.
    forgotten, verdict = after(marked, 450, 105.0 + 60.0)
    assert verdict == "suspect" and forgotten.tokens == limit


def test_a_spent_daily_quota_fails_calls_at_once_and_leaves_the_ceiling_alone() -> None:
    async def scenario() -> tuple[BudgetState, float]:
        budget = memory(tpm=1000)
        await budget.acquire(600, model=MODEL)
        await budget.exhausted(MODEL, "daily quota exhausted (GenerateRequestsPerDay...)")
        state = await budget.state(MODEL)
        started = time.time()
        with pytest.raises(BudgetExhausted, match="daily quota exhausted") as caught:
            await budget.acquire(10, model=MODEL)
        assert not caught.value.retryable
        other = await budget.acquire(10, model="gemini-2.5-pro")  # other models go on
        await budget.aclose()
        assert other.waited_s < 0.3
        return state, time.time() - started

    state, failed_after = run(scenario())
    assert failed_after < 0.3
    assert state.daily_exhausted is not None and state.ceiling_tokens == 1000
    assert state.paused_until is None
    # The mark lasts until the next midnight in Pacific time.
    noon_utc = 1_767_268_800.0  # 2026-01-01 12:00 UTC = 04:00 PST
    assert law_reset(noon_utc) == noon_utc + 20 * 3600


def law_reset(now: float) -> float:
    from analysis_engine.budget.core import next_daily_reset

    return next_daily_reset(now)


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
    assert state.ceiling_tokens == 1000  # a first 429 at 60% of the ceiling: a suspicion
    assert counters.longest_gap_s == pytest.approx(counters.waited_max_s, abs=0.05)
    assert state.paused_until is not None and 4.5 < state.paused_until - state.at <= 5.0
    assert state.pause_reason == "HTTP 429 RESOURCE_EXHAUSTED"
    assert (other.window_tokens, other.ceiling_tokens, other.paused_until) == (0, 1000, None)


def test_an_answered_call_above_a_suspected_level_clears_the_suspicion() -> None:
    """Random 429s (an overloaded service) at mid-level windows must not add up to a
    "confirmed" quota: a call answered with at least that much before it proves the quota
    is higher, so the next 429 is a first suspicion again, not a decrease."""

    async def scenario() -> tuple[int, int, int]:
        budget = memory(tpm=1000)
        first = await budget.acquire(500, model=MODEL)
        refused = await budget.acquire(100, model=MODEL)
        await budget.pause(MODEL, 0.0, refused=refused)  # 500 held: a suspicion
        close = await budget.acquire(60, model=MODEL)  # admitted with 500 before it
        await close.settle(60)  # answered, but within the margin: it proves nothing
        answered = await budget.acquire(60, model=MODEL)  # 560 before it: > 1.1 x 500
        await answered.settle(60)  # ... answered: the quota is above 500
        refused = await budget.acquire(100, model=MODEL)
        await asyncio.sleep(0.01)  # a later episode
        await budget.pause(MODEL, 0.0, refused=refused)  # 620 held: a suspicion again
        kept = (await budget.state(MODEL)).ceiling_tokens
        refused = await budget.acquire(100, model=MODEL)
        await asyncio.sleep(0.01)
        await budget.pause(MODEL, 0.0, refused=refused)  # nothing answered since: confirmed
        confirmed = (await budget.state(MODEL)).ceiling_tokens
        await first.settle(500)
        await budget.aclose()
        return kept, confirmed, answered.charged_tokens

    kept, confirmed, charged = run(scenario())
    assert kept == 1000 and charged == 60
    assert confirmed == 558  # 0.9 x the 620 the service held
