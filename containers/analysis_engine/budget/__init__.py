"""The Gemini budget: requests and tokens per minute, per model, for one container or the
whole fleet (`GEMINI_BUDGET_URI`).

- `memory://` (default): the limits are this container's share.
- `redis://…` / `rediss://…` (one endpoint: a single node, or a cluster-mode endpoint such as
  ElastiCache Serverless for Valkey) and `redis+cluster://…` / `rediss+cluster://…` (a
  sharded Redis Cluster, through a cluster-aware client): every container of both kinds
  shares one store, so `GEMINI_RPM_BUDGET` / `GEMINI_TPM_BUDGET` (or `GEMINI_MODEL_BUDGETS`
  per model) are the fleet's limits: a lone analysis may use the whole quota, the kinds
  share it by `GEMINI_BUDGET_WEIGHT`, the oldest submission goes first within a kind
  (`ANALYSIS_SUBMITTED_AT`), a 429 pauses everyone on that model.
- The store is checked at start-up with a real budget operation (the `state()` script,
  under the store's user): an unreachable store, a wrong token, certificate or ACL, or a
  sharded cluster behind a plain URI is a one-line start-up error (`BudgetStoreError`,
  retryable), never a silent fallback to an unshared budget.

`core` is the admission logic, `law` the control law after a 429, `store` the state behind
it (`memory://`) and `redis_store` the shared one.

What others read (metrics, `result.json`):

- `Budget.counters()` -> `BudgetCounters(admitted, waited_s, waited_max_s, rate_limited,
  longest_gap_s)`: this container's calls admitted, their total and longest wait in line
  (seconds), the 429 answers they got, and the longest it had a call waiting with nothing
  admitted. Local, free to call.
- `await Budget.state(model)` -> `BudgetState`: the model's line (`waiting` containers, and
  `waiting_by_kind`), window (`window_requests`, `window_tokens`), limits, learnt
  `ceiling_tokens`, the pause (`paused_until`, `pause_reason`) and `daily_exhausted` as the
  store holds them now; one store round trip, meant to be called every few seconds by one
  container of the fleet.
"""

from __future__ import annotations

import asyncio
import time

import redis

from analysis_engine.budget.core import (
    MAX_IN_FLIGHT,
    WINDOW_SECONDS,
    Budget,
    BudgetCounters,
    BudgetExhausted,
    BudgetState,
    BudgetStoreError,
    Clock,
    Lease,
    ModelLimits,
    Sleep,
)
from analysis_engine.budget.redis_store import SCHEMES, RedisStore, StoreTopologyError, redacted
from analysis_engine.budget.store import BudgetStore, MemoryStore
from analysis_engine.settings import Settings

__all__ = [
    "MAX_IN_FLIGHT",
    "WINDOW_SECONDS",
    "Budget",
    "BudgetCounters",
    "BudgetExhausted",
    "BudgetState",
    "BudgetStoreError",
    "Lease",
    "ModelLimits",
    "open_budget",
]


def open_budget(
    settings: Settings,
    *,
    kind: str | None = None,
    clock: Clock = time.time,
    sleep: Sleep = asyncio.sleep,
) -> Budget:
    """The budget the settings describe; checks a shared store works before any work."""
    uri = settings.gemini_budget_uri
    store: BudgetStore
    if uri.startswith(SCHEMES):
        try:
            RedisStore.check(
                uri,
                model=settings.map_model,
                window_s=settings.gemini_budget_window_seconds + 1,
            )
        except Exception as exc:  # redis errors, DNS, TLS, auth, ACL, topology
            raise BudgetStoreError(_unusable(uri, exc)) from None
        store = RedisStore(uri)
    else:
        store = MemoryStore()
    return Budget(
        store,
        limits=ModelLimits(settings.gemini_rpm_budget, settings.gemini_tpm_budget),
        model_limits={
            model: ModelLimits(values["rpm"], values["tpm"])
            for model, values in settings.gemini_model_budgets.items()
        },
        window_s=settings.gemini_budget_window_seconds,
        kind=kind or "",
        weight=settings.gemini_budget_weight,
        submitted_at=settings.submitted_at,
        clock=clock,
        sleep=sleep,
    )


def _unusable(uri: str, exc: BaseException) -> str:
    text = str(exc).strip()
    detail = text.splitlines()[0][:240] if text else ""
    where = f"GEMINI_BUDGET_URI: the shared budget store {redacted(uri)}"
    if isinstance(exc, StoreTopologyError):
        return f"{where} cannot be used: {detail}"
    if isinstance(exc, redis.AuthenticationError):
        what = "refused the budget's credentials"
    elif isinstance(exc, redis.ConnectionError | redis.TimeoutError | OSError):
        what = "is unreachable"
    else:
        what = "cannot be used"
    return f"{where} {what} ({type(exc).__name__}{': ' + detail if detail else ''})"
