"""The Gemini budget's state as metrics, every few seconds, from ONE container of the fleet.

With a shared budget (`GEMINI_BUDGET_URI=redis://…`) every container sees the same line,
window, ceiling and pause; if all of them printed it, CloudWatch would get N copies of one
figure. So the containers elect one reporter through the same store: a key taken with
`SET NX PX` and kept alive while its holder runs (compare-and-extend); when that container
finishes or dies, the key lapses within a few intervals and another one takes over.

With `memory://` each container's budget is its own share and there is no fleet figure to
report: nothing is emitted (each analysis still reports its own wait and 429s at its end).

Metrics (namespace `METRICS_NAMESPACE`, dimension `Model`): `BudgetQueueDepth` (containers
waiting in the model's line), `BudgetWindowRequests`, `BudgetWindowTokens`,
`BudgetLimitRequests`, `BudgetLimitTokens`, `BudgetCeilingTokens`, `BudgetCeilingPercent`
(ceiling / limit: under 100 after a 429), `BudgetPaused` (1 while a 429 pause holds) and
`BudgetPauseRemainingSeconds`, `BudgetDailyExhausted` (1 while the model's daily quota is
spent). Never fatal: a failed read or election only skips a beat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from analysis_engine import metrics
from analysis_engine.budget import Budget, BudgetState

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_SECONDS = 10.0
INTERVAL_ENV = "BUDGET_METRICS_SECONDS"
ELECTION_KEY = "{gemini-budget}:metrics-reporter"  # the budget store's hash tag

# Extend the key's life only while we hold it. KEYS: key. ARGV: token, ttl_ms.
_KEEP = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
# Give it up only if it is still ours.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class Election(Protocol):
    async def holds(self) -> bool: ...

    async def aclose(self) -> None: ...


class RedisElection:
    """One reporter among every container sharing the store."""

    def __init__(self, uri: str, *, ttl_s: float) -> None:
        import redis.asyncio
        import redis.asyncio.cluster

        # The budget store's URI forms: redis(s):// one endpoint, redis(s)+cluster:// a
        # sharded cluster (the key shares the store's hash tag, so it lives in its slot).
        scheme, _, rest = uri.partition("://")
        options: dict[str, Any] = {
            "decode_responses": True, "socket_connect_timeout": 2.0, "socket_timeout": 2.0,
        }  # fmt: skip
        if scheme.endswith("+cluster"):
            plain = f"{scheme.removesuffix('+cluster')}://{rest}"
            self._redis: Any = redis.asyncio.cluster.RedisCluster.from_url(plain, **options)
        else:
            self._redis = redis.asyncio.Redis.from_url(uri, **options)
        self._token = uuid.uuid4().hex
        self._ttl_ms = max(1000, int(ttl_s * 1000))
        self._keep = self._redis.register_script(_KEEP)
        self._release = self._redis.register_script(_RELEASE)
        self._held = False

    async def holds(self) -> bool:
        if self._held and await self._keep(keys=[ELECTION_KEY], args=[self._token, self._ttl_ms]):
            return True
        taken = await self._redis.set(ELECTION_KEY, self._token, nx=True, px=self._ttl_ms)
        if taken and not self._held:
            log.info("this container reports the Gemini budget's metrics")
        self._held = bool(taken)
        return self._held

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            if self._held:
                await self._release(keys=[ELECTION_KEY], args=[self._token])
        with contextlib.suppress(Exception):
            await self._redis.aclose()


def budget_document(state: BudgetState, *, namespace: str) -> list[str]:
    """One model's budget state as an EMF document (pure)."""
    from datetime import UTC, datetime

    context = metrics.context_for(
        namespace, {"Model": state.model}, [("Model",)], datetime.fromtimestamp(state.at, UTC)
    )
    remaining = max(0.0, state.paused_until - state.at) if state.paused_until else 0.0
    ceiling_pct = 100.0 * state.ceiling_tokens / state.limit_tokens if state.limit_tokens else 0.0
    for name, value, unit in (
        ("BudgetQueueDepth", state.waiting, "Count"),
        ("BudgetWindowRequests", state.window_requests, "Count"),
        ("BudgetWindowTokens", state.window_tokens, "Count"),
        ("BudgetLimitRequests", state.limit_requests, "Count"),
        ("BudgetLimitTokens", state.limit_tokens, "Count"),
        ("BudgetCeilingTokens", state.ceiling_tokens, "Count"),
        ("BudgetCeilingPercent", round(ceiling_pct, 2), "Percent"),
        ("BudgetPaused", 1 if state.paused_until else 0, "Count"),
        ("BudgetPauseRemainingSeconds", round(remaining, 3), "Seconds"),
        ("BudgetDailyExhausted", 1 if getattr(state, "daily_exhausted", None) else 0, "Count"),
    ):
        context.put_metric(name, value, unit)
    if state.pause_reason:
        context.set_property("PauseReason", state.pause_reason[:300])
    return metrics.serialize(context)


class BudgetReporter:
    """Every `interval_s`, if this container is the elected one, one document per model."""

    def __init__(
        self,
        budget: Budget,
        *,
        models: Iterable[str],
        namespace: str,
        election: Election,
        interval_s: float = DEFAULT_INTERVAL_SECONDS,
        emit: Callable[[Sequence[str]], Any] = metrics.emit,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self._budget = budget
        self._models = sorted(set(models))
        self._namespace = namespace
        self._election = election
        self._interval_s = interval_s
        self._emit = emit
        self._sleep = sleep
        self._failures = 0

    async def beat(self) -> bool:
        """One report if elected; True when one was written."""
        try:
            if not await self._election.holds():
                return False
            for model in self._models:
                state = await self._budget.state(model)
                self._emit(budget_document(state, namespace=self._namespace))
        except Exception as exc:  # the store hiccuped: the analysis goes on, a beat is lost
            self._failures += 1
            if self._failures in (1, 10, 100):
                log.warning("budget metrics skipped (%d so far): %s: %s",
                            self._failures, type(exc).__name__, exc)  # fmt: skip
            return False
        return True

    async def run(self) -> None:
        """Report until cancelled."""
        try:
            while True:
                await self.beat()
                await self._sleep(self._interval_s)
        finally:
            await self._election.aclose()


def reporter_for(
    budget: Budget,
    *,
    budget_uri: str,
    models: Iterable[str],
    namespace: str,
    interval_s: float,
) -> BudgetReporter | None:
    """The fleet's reporter candidate, or None for an unshared (`memory://`) budget."""
    if not budget.shared:
        return None
    election = RedisElection(budget_uri, ttl_s=3 * interval_s)
    return BudgetReporter(
        budget, models=models, namespace=namespace, election=election, interval_s=interval_s
    )


def interval_from_env(env: Any, *, window_s: float) -> float:
    """`BUDGET_METRICS_SECONDS`, default 10 s (a sixth of a shorter, time-scaled window)."""
    raw = (env.get(INTERVAL_ENV) or "").strip()
    try:
        value = float(raw) if raw else min(DEFAULT_INTERVAL_SECONDS, window_s / 6)
    except ValueError:
        log.warning("%s=%r is not a number; using the default", INTERVAL_ENV, raw[:20])
        value = min(DEFAULT_INTERVAL_SECONDS, window_s / 6)
    return min(max(value, 0.5), 300.0)
