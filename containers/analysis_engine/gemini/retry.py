"""The one retry loop: every Gemini call (generate, upload, files.get) goes through it.

Full-jitter exponential backoff, floored by the server's `RetryInfo.retryDelay` (which the
SDK itself ignores). tenacity (a dependency of the SDK) could run this loop, but every
decision in it is ours (what is retryable, the retryDelay floor, the attempt count the
caller reports), and the loop is shorter than the hooks tenacity would need for them.
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

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")

    def wait_s(self, attempt: int, retry_after_s: float | None, rng: random.Random) -> float:
        """Full jitter, floored by the server's retryDelay (plus a little spread above it,
        so callers released by the same delay do not all return in the same instant)."""
        cap = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        wait = rng.uniform(0, cap)
        if retry_after_s is not None:
            wait = max(wait, retry_after_s + rng.uniform(0, 0.1 * retry_after_s))
        return wait


class Retrier:
    """Runs attempts under a `RetryPolicy` with an injectable sleep and random source."""

    def __init__(self, policy: RetryPolicy, *, sleep: Sleep, rng: random.Random) -> None:
        self.policy = policy
        self._sleep = sleep
        self._rng = rng

    async def run(self, label: str, attempt: Callable[[int], Awaitable[R]]) -> tuple[R, int]:
        """The first successful attempt's result and its number, or ModelCallError."""
        attempts = self.policy.max_attempts
        for n in range(1, attempts + 1):
            try:
                return await attempt(n), n
            except AttemptFailed as failure:
                if not failure.retryable:
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
