"""The Gemini budget's state as EMF metrics, from one container of the fleet (a real
redis-server as the shared store; the budget is read through `Budget.state` only)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from analysis_engine.budget import Budget, BudgetState, ModelLimits
from analysis_engine.budget.redis_store import RedisStore
from analysis_engine.budget_metrics import (
    BudgetReporter,
    RedisElection,
    budget_document,
    interval_from_env,
    reporter_for,
)
from devtools import emf
from devtools.redis_server import RedisServer

MODEL = "gemini-2.5-flash"


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as started:
        yield started


def state(**overrides: Any) -> BudgetState:
    values = dict(
        model=MODEL, shared=True, waiting=3, window_requests=12, window_tokens=400_000,
        limit_requests=1000, limit_tokens=1_000_000, ceiling_tokens=450_000,
        paused_until=None, pause_reason=None, at=time.time(),
    )  # fmt: skip
    return BudgetState(**{**values, **overrides})


def test_a_budget_state_is_one_valid_emf_document() -> None:
    now = time.time()
    paused = state(paused_until=now + 4.5, pause_reason="HTTP 429 RESOURCE_EXHAUSTED", at=now)
    (line,) = budget_document(paused, namespace="AnalysisPipeline")
    doc = json.loads(line)
    emf.validate(doc)
    assert doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Model"]]
    assert doc["Model"] == MODEL and doc["PauseReason"] == "HTTP 429 RESOURCE_EXHAUSTED"
    assert (doc["BudgetQueueDepth"], doc["BudgetWindowTokens"], doc["BudgetLimitTokens"]) == (
        3, 400_000, 1_000_000,
    )  # fmt: skip
    assert (doc["BudgetCeilingTokens"], doc["BudgetCeilingPercent"]) == (450_000, 45.0)
    assert (doc["BudgetPaused"], doc["BudgetPauseRemainingSeconds"]) == (1, 4.5)
    (calm,) = budget_document(state(ceiling_tokens=1_000_000), namespace="X")
    calm_doc = json.loads(calm)
    assert (calm_doc["BudgetPaused"], calm_doc["BudgetCeilingPercent"]) == (0, 100.0)
    assert "PauseReason" not in calm_doc


def test_only_one_container_of_the_fleet_reports_and_another_takes_over(
    server: RedisServer,
) -> None:
    async def scenario() -> list[list[str]]:
        budgets = [
            Budget(RedisStore(server.uri), limits=ModelLimits(100, 10_000), window_s=2)
            for _ in range(3)
        ]
        await budgets[0].acquire(500, model=MODEL)
        written: list[list[str]] = [[], [], []]
        reporters = [
            BudgetReporter(
                budget,
                models=[MODEL, MODEL],
                namespace="X",
                election=RedisElection(server.uri, ttl_s=1.0),
                emit=lambda lines, i=i: written[i].extend(lines),
            )
            for i, budget in enumerate(budgets)
        ]
        for _ in range(3):  # three beats: the same container reports each time
            assert sum([await r.beat() for r in reporters]) == 1
        holder = next(i for i, lines in enumerate(written) if lines)
        await reporters[holder]._election.aclose()  # it finished: the key is released
        assert sum([await r.beat() for i, r in enumerate(reporters) if i != holder]) == 1
        for reporter in reporters:
            await reporter._election.aclose()
        for budget in budgets:
            await budget.aclose()
        return written

    written = asyncio.run(scenario())
    counts = sorted(len(lines) for lines in written)
    assert counts == [0, 1, 3]  # one document per model (listed once) per beat
    docs = [json.loads(line) for lines in written for line in lines]
    for doc in docs:
        emf.validate(doc)
    assert {d["BudgetWindowTokens"] for d in docs} == {500}  # the fleet's window, not a share


def test_a_dead_reporter_is_replaced_once_its_key_lapses(server: RedisServer) -> None:
    async def scenario() -> tuple[bool, bool]:
        first, second = (RedisElection(server.uri, ttl_s=1.0) for _ in range(2))
        assert await first.holds() and not await second.holds()
        await first._redis.aclose()  # crashed: no release, no renewal
        refused_while_alive = not await second.holds()
        await asyncio.sleep(1.2)
        taken = await second.holds()
        await second.aclose()
        return refused_while_alive, taken

    assert asyncio.run(scenario()) == (True, True)


def test_an_unshared_budget_has_no_fleet_reporter() -> None:
    budget = Budget.in_memory(80, 80_000)
    assert reporter_for(budget, budget_uri="memory://", models=[MODEL], namespace="X",
                        interval_s=10) is None  # fmt: skip


def test_a_store_that_fails_costs_a_beat_not_the_analysis() -> None:
    class Broken:
        async def holds(self) -> bool:
            raise ConnectionError("store gone")

        async def aclose(self) -> None:
            pass

    reporter = BudgetReporter(
        Budget.in_memory(80, 80_000), models=[MODEL], namespace="X", election=Broken()
    )
    assert asyncio.run(reporter.beat()) is False


@pytest.mark.parametrize(
    "env, window_s, expected",
    [({}, 60, 10.0), ({}, 6, 1.0), ({"BUDGET_METRICS_SECONDS": "30"}, 60, 30.0),
     ({"BUDGET_METRICS_SECONDS": "often"}, 60, 10.0), ({"BUDGET_METRICS_SECONDS": "0"}, 60, 0.5)],
)  # fmt: skip
def test_the_reporting_interval(env: dict[str, str], window_s: int, expected: float) -> None:
    assert interval_from_env(env, window_s=window_s) == expected
