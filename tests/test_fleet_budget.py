"""The fleet budget on a real `redis-server`: one window shared by separate processes, a 429
pause that reaches every container, queue order (no starvation, first analysis first, task
before proctor), and a store that is or becomes unreachable.

Each `Budget` below has its own connections to the store, exactly as separate containers do.
Windows are 1-2 s of real time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from pydantic import BaseModel

from analysis_engine.budget import Budget, BudgetStoreError, ModelLimits, open_budget
from analysis_engine.budget.store import ALIVE_SECONDS, RedisStore
from analysis_engine.gemini import GeminiClient
from analysis_engine.settings import Settings
from devtools.fake_gemini import FakeGemini
from devtools.redis_server import RedisServer, free_port

T = TypeVar("T")
MODEL = "gemini-2.5-flash"
BASE_ENV = {"ANALYSIS_ID": "a1", "INPUT_URI": "file:///in.mp4", "OUTPUT_URI": "file:///out/"}


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer(password="fleet-token") as started:
        yield started


def container(uri: str, *, tpm: int = 1000, window_s: int = 2, **kwargs: Any) -> Budget:
    return Budget(
        RedisStore(uri), limits=ModelLimits(1000, tpm), window_s=window_s, margin_s=0, **kwargs
    )


# Run in a separate interpreter: one "container" acquiring N calls, printing grant times.
_WORKER = """
import asyncio, json, sys
from analysis_engine.budget import Budget, ModelLimits
from analysis_engine.budget.store import ALIVE_SECONDS, RedisStore

async def main(uri, calls, tokens):
    budget = Budget(RedisStore(uri), limits=ModelLimits(1000, 1000), window_s=2, margin_s=0)
    granted = [(await budget.acquire(tokens, model="m")).granted_at for _ in range(calls)]
    await budget.aclose()
    print(json.dumps(granted))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


def test_two_processes_share_one_window(server: RedisServer) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, server.uri, "3", "400"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    grants = sorted(t for out in outs for t in json.loads(out))
    assert len(grants) == 6
    # 1000 tokens per 2 s across both: at most two 400-token calls in any window, so each
    # grant is a full window after the one two places before it.
    gaps = [later - earlier for earlier, later in zip(grants, grants[2:], strict=False)]
    assert min(gaps) >= 1.95, gaps
    assert grants[-1] - grants[0] < 2 * 2 + 1.5  # and no time wasted beyond the window


def test_a_pause_in_one_container_holds_the_other(server: RedisServer) -> None:
    async def scenario() -> tuple[float, float]:
        hit, other = container(server.uri), container(server.uri)
        start = time.time()
        await hit.acquire(400, model=MODEL)
        await hit.pause(MODEL, 1.0)  # what a 429 with retryDelay "1s" does
        held = await other.acquire(10, model=MODEL)
        # The ceiling learnt from the 429 (0.9 x the 400 in the window) holds the other too.
        ceiling, _ = other._ceilings[MODEL] or (0.0, 0.0)
        free = await other.acquire(10, model="gemini-2.5-pro")
        await hit.aclose()
        await other.aclose()
        assert ceiling == pytest.approx(360.0)
        return held.granted_at - start, free.granted_at - start

    held, free = run(scenario())
    # Held by the pause (1 s), then by the ceiling until the 400 left the window (2 s):
    # no climbing back within a window of a 429.
    assert 1.95 <= held < 2.6
    assert free < held + 0.5  # other models are not paused


def test_a_large_call_is_not_overtaken_by_later_small_ones(server: RedisServer) -> None:
    async def scenario() -> tuple[float, list[float]]:
        now = time.time()
        first = container(server.uri, started_at=now - 10)  # the analysis that started first
        later = container(server.uri, started_at=now)
        await first.acquire(600, model=MODEL)
        big = asyncio.create_task(first.acquire(900, model=MODEL))  # needs the window to clear
        await asyncio.sleep(0.2)
        small = [asyncio.create_task(later.acquire(50, model=MODEL)) for _ in range(2)]
        big_lease = await big
        small_leases = await asyncio.gather(*small)
        for budget in (first, later):
            await budget.aclose()
        return big_lease.granted_at, [lease.granted_at for lease in small_leases]

    big_at, small_at = run(scenario())
    # Each small call would have fitted beside the 600 at once; none went ahead of the big.
    assert all(at >= big_at for at in small_at)


def test_task_analyses_go_before_proctor_videos(server: RedisServer) -> None:
    async def scenario() -> tuple[float, float]:
        now = time.time()
        proctor = container(server.uri, priority=1, started_at=now - 60)
        task = container(server.uri, priority=0, started_at=now)
        await task.acquire(1000, model=MODEL)  # the window is full for 2 s
        waiting = [
            asyncio.create_task(proctor.acquire(800, model=MODEL)),
            asyncio.create_task(task.acquire(800, model=MODEL)),
        ]
        proctor_lease, task_lease = await asyncio.gather(*waiting)
        for budget in (proctor, task):
            await budget.aclose()
        return task_lease.granted_at, proctor_lease.granted_at

    task_at, proctor_at = run(scenario())
    assert task_at < proctor_at  # despite the proctor video's earlier start
    assert proctor_at - task_at >= 1.9  # it needed the next window


def test_a_finishing_call_goes_ahead_of_map_calls_of_its_kind(server: RedisServer) -> None:
    """REDUCE ends an analysis (freeing its container and DAG slot): it goes ahead of older
    analyses' waiting MAP calls, but never ahead of task analyses from a proctor video."""

    async def scenario() -> tuple[float, float, float]:
        now = time.time()
        older = container(server.uri, priority=0, started_at=now - 10)
        younger = container(server.uri, priority=0, started_at=now)
        proctor = container(server.uri, priority=1, started_at=now - 60)
        await older.acquire(1000, model=MODEL)  # the window is full for 2 s
        older_map = asyncio.create_task(older.acquire(900, model=MODEL))
        proctor_reduce = asyncio.create_task(proctor.acquire(50, model=MODEL, finishing=True))
        await asyncio.sleep(0.2)  # both already in line when the REDUCE arrives
        younger_reduce = asyncio.create_task(younger.acquire(200, model=MODEL, finishing=True))
        leases = await asyncio.gather(younger_reduce, older_map, proctor_reduce)
        for budget in (older, younger, proctor):
            await budget.aclose()
        return leases[0].granted_at, leases[1].granted_at, leases[2].granted_at

    reduce_at, map_at, proctor_at = run(scenario())
    # The REDUCE took the freed window; the 900-token MAP call no longer fitted beside it
    # and waited for the next one (had the MAP gone first, the REDUCE would have waited).
    assert map_at - reduce_at >= 1.7
    assert proctor_at >= map_at  # the proctor's REDUCE still waited behind the task's MAP


def test_unreachable_store_is_a_one_line_start_up_error() -> None:
    uri = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    settings = Settings.from_env({**BASE_ENV, "GEMINI_BUDGET_URI": uri})
    started = time.monotonic()
    with pytest.raises(BudgetStoreError) as caught:
        open_budget(settings)
    assert time.monotonic() - started < 5  # never a hang
    message = str(caught.value)
    assert message.startswith("GEMINI_BUDGET_URI: the shared budget store redis://***@127.0.0.1")
    assert "unreachable" in message and "\n" not in message
    assert "hunter2" not in message
    assert caught.value.retryable


def test_store_lost_mid_run_fails_the_waiting_call_instead_of_hanging(
    server: RedisServer,
) -> None:
    async def scenario() -> float:
        budget = container(server.uri, tpm=1000, window_s=60, store_grace_s=1.0)
        await budget.acquire(1000, model=MODEL)  # the window is full for a minute
        waiting = asyncio.create_task(budget.acquire(500, model=MODEL))
        await asyncio.sleep(0.3)
        server.stop()
        started = time.monotonic()
        with pytest.raises(BudgetStoreError, match="budget store unreachable"):
            await waiting
        elapsed = time.monotonic() - started
        await budget.aclose()
        return elapsed

    assert run(scenario()) < 10


def test_open_budget_with_a_reachable_store_is_shared(server: RedisServer) -> None:
    settings = Settings.from_env({**BASE_ENV, "GEMINI_BUDGET_URI": server.uri})

    async def scenario() -> tuple[bool, tuple[int, int]]:
        budget = open_budget(settings, kind="proctor_video")
        await budget.acquire(5000, model=MODEL)
        window = await budget.in_window(MODEL)
        await budget.aclose()
        return budget.shared, window

    shared, (requests, tokens) = run(scenario())
    assert shared and requests == 1 and 5000 <= tokens < 5000 + 80


def test_a_dead_containers_place_in_line_expires(server: RedisServer) -> None:
    async def scenario() -> tuple[str | None, str | None]:
        store = RedisStore(server.uri)
        now = time.time()
        await store.poll(MODEL, "crashed", 0.0, now)  # first in line, then never polls again
        behind = await store.poll(MODEL, "alive", 1.0, now + 1)
        later = await store.poll(MODEL, "alive", 1.0, now + ALIVE_SECONDS + 1)
        await store.aclose()
        return behind.head, later.head

    assert run(scenario()) == ("crashed", "alive")


class _Note(BaseModel):
    summary: str


def test_a_budget_twice_the_real_quota_meets_few_429s(server: RedisServer) -> None:
    """Another client on the key: the fleet's budget is twice what the service grants. Three
    "containers" (each its own client and store connections) drain 40 calls; the 429s teach
    every one of them the real quota (AIMD ceiling) and pacing keeps the overshoot to a call
    or two, so at most 10% of the calls meet a 429 and every call succeeds. Time-scaled: the
    quota's minute is 2 s; 10 calls of 1000 tokens fill it. (The ceiling that climbed back
    within a few windows, before this control law, met 429s on 20% of the calls here.)"""
    window_s, quota_tpm, calls, containers, workers = 2, 10_000, 40, 3, 4
    prompt = "x" * 4000  # 1000 tokens at the fake's 4 characters a token

    async def scenario(fake: FakeGemini) -> float:
        settings = dataclasses.replace(
            Settings.from_env({**BASE_ENV, "GEMINI_BUDGET_URI": server.uri}),
            gemini_base_url=fake.base_url,
            gemini_tpm_budget=2 * quota_tpm,
            gemini_rpm_budget=1000,
            gemini_budget_window_seconds=window_s,
        )
        clients = [GeminiClient.from_settings(settings) for _ in range(containers)]
        todo = iter(range(calls))

        async def worker(client: GeminiClient) -> None:
            for _ in todo:
                await client.generate(
                    model=MODEL, prompt=prompt, schema=_Note, estimated_input_tokens=1000
                )

        started = time.monotonic()
        await asyncio.gather(*(worker(c) for c in clients for _ in range(workers)))
        elapsed = time.monotonic() - started
        for client in clients:
            await client.aclose()
        return elapsed

    with FakeGemini(quota_tpm=quota_tpm, quota_window_s=float(window_s), latency_s=0.1) as fake:
        elapsed = run(scenario(fake))
        stats = fake.stats
    generated, refused = stats["calls"]["generate"], stats["quota_rejections"]
    assert generated - refused == calls  # every call answered
    assert refused >= 1  # the budget really was above the quota
    assert refused <= 0.10 * generated, (refused, generated)
    # 40k tokens through 10k per 2 s (+1 s margin, 0.9 x the quota): ~12 s, not a crawl.
    assert elapsed < 16, elapsed


def test_state_is_the_fleets_line_window_ceiling_and_pause(server: RedisServer) -> None:
    async def scenario() -> tuple[Any, Any]:
        holder, waiter, observer = (container(server.uri) for _ in range(3))
        await holder.acquire(900, model=MODEL)  # the window is full for 2 s
        waiting = asyncio.create_task(waiter.acquire(500, model=MODEL))
        await asyncio.sleep(0.3)
        busy = await observer.state(MODEL)  # a container that waits for nothing itself
        await waiting
        await holder.pause(MODEL, 3.0, reason="HTTP 429 RESOURCE_EXHAUSTED")
        paused = await observer.state(MODEL)
        for budget in (holder, waiter, observer):
            await budget.aclose()
        return busy, paused

    busy, paused = run(scenario())
    assert busy.shared and busy.waiting == 1 and busy.paused_until is None
    assert (busy.window_requests, busy.window_tokens) == (1, 900)
    assert busy.ceiling_tokens == busy.limit_tokens == 1000
    assert paused.window_tokens == 500  # the 900 left the window, the waiter's 500 came in
    assert paused.pause_reason == "HTTP 429 RESOURCE_EXHAUSTED"
    assert paused.paused_until is not None and 2.5 < paused.paused_until - paused.at <= 3.0
    assert paused.ceiling_tokens == 450  # 0.9 x 500: every container learns it
