"""The one retry loop: every Gemini call (generate, upload, files.get) goes through it.

Full-jitter exponential backoff, floored by the server's `RetryInfo.retryDelay` (which the
SDK itself ignores) up to a cap (`GEMINI_MAX_RETRY_DELAY_SECONDS`): a server asking for an
hour must not hold a container for an hour per attempt. A permanent refusal is never
retried, and one that holds for a whole model or key stops later calls before they are
sent (`Refusals`).

tenacity (a dependency of the SDK, so in the image anyway) could run this loop, but every
decision in it is ours (what is retryable, the capped retryDelay floor, refusals shared
across calls, the attempt count the caller reports), and the loop is shorter than the
hooks tenacity would need for them.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from analysis_engine.errors import ModelCallError
from analysis_engine.gemini.failures import AttemptFailed, attempt_failure

log = logging.getLogger(__name__)
R = TypeVar("R")
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0
    max_retry_delay_s: float = 90.0  # the most of a server's retryDelay we honour

    def honoured(self, retry_after_s: float | None) -> float | None:
        """The server's retryDelay, capped."""
        return None if retry_after_s is None else min(retry_after_s, self.max_retry_delay_s)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")

    def wait_s(self, attempt: int, retry_after_s: float | None, rng: random.Random) -> float:
        """Full jitter, floored by the server's retryDelay (plus a little spread above it,
        so callers released by the same delay do not all return in the same instant)."""
        cap = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        wait = rng.uniform(0, cap)
        retry_after_s = self.honoured(retry_after_s)
        if retry_after_s is not None:
            wait = max(wait, retry_after_s + rng.uniform(0, 0.1 * retry_after_s))
        return wait


class Refusals:
    """Permanent refusals that hold beyond one request (see failures.Scope): a call that
    would get the same answer is not sent. Shared by every call of one client."""

    def __init__(self) -> None:
        self._reasons: dict[str, str] = {}  # "" (the key) or a model name -> reason

    def record(self, failure: AttemptFailed, model: str | None) -> None:
        if failure.scope == "key":
            self._reasons.setdefault("", failure.reason)
        elif failure.scope == "model" and model:
            self._reasons.setdefault(model, failure.reason)

    def reason(self, model: str | None) -> str | None:
        """Why a call (to `model`) would be refused, or None."""
        return self._reasons.get("") or (self._reasons.get(model) if model else None)


class Retrier:
    """Runs attempts under a `RetryPolicy` with an injectable sleep and random source."""

    def __init__(self, policy: RetryPolicy, *, sleep: Sleep, rng: random.Random) -> None:
        self.policy = policy
        self.refusals = Refusals()
        self._sleep = sleep
        self._rng = rng

    async def run(
        self, label: str, attempt: Callable[[int], Awaitable[R]], *, model: str | None = None
    ) -> tuple[R, int]:
        """The first successful attempt's result and its number, or ModelCallError."""
        attempts = self.policy.max_attempts
        for n in range(1, attempts + 1):
            refused = self.refusals.reason(model)
            if refused is not None:  # an earlier call got the answer this one would get
                raise ModelCallError(f"{label}: {refused}", attempts=n - 1, retryable=False)
            try:
                return await attempt(n), n
            except AttemptFailed as failure:
                if not failure.retryable:
                    self.refusals.record(failure, model)
                    raise ModelCallError(
                        f"{label}: {failure.reason}", attempts=n, retryable=False
                    ) from None
                if n == attempts:
                    raise ModelCallError(f"{label}: {failure.reason}", attempts=n) from None
                wait = self.policy.wait_s(n, failure.retry_after_s, self._rng)
                log.info(
                    "%s: attempt %d/%d failed (%s); retrying in %.2fs",
                    label,
                    n,
                    attempts,
                    failure.reason,
                    wait,
                )
                await self._sleep(wait)
        raise AssertionError("unreachable")  # the loop always returns or raises


async def call_sdk(coro: Awaitable[R], deadline_s: float) -> R:
    """Await one SDK call under a deadline (a hung call is abandoned), turning its failures
    into AttemptFailed."""
    try:
        return await asyncio.wait_for(coro, deadline_s)
    except Exception as exc:
        raise attempt_failure(exc, deadline_s=deadline_s) from exc
