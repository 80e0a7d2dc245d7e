"""The Gemini budget: requests and tokens per minute, per model, for one container or the
whole fleet (`GEMINI_BUDGET_URI`), built on the `limits` library's moving window.

- `memory://` (default): the limits are this container's share, as before.
- `redis://…` / `rediss://…`: every container of both kinds shares one Redis/Valkey, so
  `GEMINI_RPM_BUDGET` / `GEMINI_TPM_BUDGET` (or `GEMINI_MODEL_BUDGETS` per model) are the
  fleet's limits: a lone analysis may use the whole quota, a 429 pauses everyone on that
  model, and calls are admitted in (priority, analysis start) order.
- An unreachable store is a one-line start-up error (`BudgetStoreError`, retryable), never a
  silent fallback to an unshared budget that would overspend the quota N times over.

`core` is the admission logic, `store` the state behind it.

What others read (metrics, `result.json`):

- `Budget.counters()` -> `BudgetCounters(admitted, waited_s, waited_max_s, rate_limited)`:
  this container's calls admitted, their total and longest wait in line (seconds) and the
  429 answers they got. Local, free to call.
- `await Budget.state(model)` -> `BudgetState`: the model's line (`waiting` containers),
  window (`window_requests`, `window_tokens`), limits, learnt `ceiling_tokens`, and the pause
  (`paused_until`, `pause_reason`) as the store holds them now; a few store reads, meant to
  be called every few seconds by one container of the fleet.
"""

from __future__ import annotations

import asyncio
import time

from analysis_engine.budget.core import (
    MAX_IN_FLIGHT,
    PRIORITIES,
    WINDOW_SECONDS,
    Budget,
    BudgetCounters,
    BudgetState,
    BudgetStoreError,
    Clock,
    Lease,
    ModelLimits,
    Sleep,
)
from analysis_engine.budget.store import MemoryStore, RedisStore, redacted
from analysis_engine.settings import Settings

__all__ = [
    "MAX_IN_FLIGHT",
    "PRIORITIES",
    "WINDOW_SECONDS",
    "Budget",
    "BudgetCounters",
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
    """The budget the settings describe; checks a shared store answers before any work."""
    uri = settings.gemini_budget_uri
    if uri.startswith(("redis://", "rediss://")):
        try:
            RedisStore.check(uri)
        except Exception as exc:  # redis errors, DNS, TLS, auth: all mean "not usable now"
            detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise BudgetStoreError(
                f"GEMINI_BUDGET_URI: the shared budget store {redacted(uri)} is unreachable "
                f"({type(exc).__name__}{': ' + detail if detail else ''})"
            ) from None
        store: MemoryStore | RedisStore = RedisStore(uri)
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
        priority=PRIORITIES.get(kind or "", 0),
        clock=clock,
        sleep=sleep,
    )
