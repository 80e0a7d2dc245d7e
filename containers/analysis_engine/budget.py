"""An async request/token budget over a sliding 60-second window.

Several containers share one Gemini project quota; each gets a share (`GEMINI_RPM_BUDGET`,
`GEMINI_TPM_BUDGET`) and this budget keeps the container inside it, so they queue politely
instead of stampeding the quota and collecting 429s.

- `acquire(estimated_tokens)` waits until one more request and that many tokens fit in
  the last 60 s, then records them and returns a `Lease`.
- `Lease.settle(actual_tokens)` replaces the estimate with what the call really used, so
  a poor estimate only distorts the window until the call returns.
- `pause_until(deadline)` is a shared cool-down: after a 429 with a `retryDelay`, every
  caller waits, not just the one that got the 429.
- A request larger than the whole per-minute token budget is admitted once the window
  holds no tokens at all (it could never fit otherwise: waiting for it must not deadlock).

Waiters are served first come, first served, so a large request is not starved by a
stream of small ones. Pure module: no I/O; the clock and sleep are injectable for tests.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

WINDOW_SECONDS = 60.0
# A waiter re-checks at least this often, so a settle that frees tokens or a new pause
# is noticed without a wake-up channel (which an injected test sleep could not serve).
RECHECK_SECONDS = 1.0


@dataclass
class _Entry:
    at: float
    tokens: int


@dataclass
class Lease:
    """One admitted request. Settle it with the tokens the call really used."""

    estimated_tokens: int
    granted_at: float
    waited_s: float
    _entry: _Entry
    settled: bool = False

    @property
    def tokens(self) -> int:
        """What the window currently charges for this request."""
        return self._entry.tokens

    def settle(self, actual_tokens: int) -> None:
        """Charge `actual_tokens` instead of the estimate (idempotent: the last call wins)."""
        self._entry.tokens = max(0, int(actual_tokens))
        self.settled = True


class Budget:
    """Requests-per-minute and tokens-per-minute limits shared by all callers in a process."""

    def __init__(
        self,
        rpm: int,
        tpm: int,
        *,
        window_s: float = WINDOW_SECONDS,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        recheck_s: float = RECHECK_SECONDS,
    ) -> None:
        if rpm < 1 or tpm < 1:
            raise ValueError(f"rpm and tpm must be >= 1 (got rpm={rpm}, tpm={tpm})")
        self.rpm = rpm
        self.tpm = tpm
        self.window_s = window_s
        self._clock = clock
        self._sleep = sleep
        self._recheck_s = recheck_s
        self._entries: deque[_Entry] = deque()
        self._paused_until = float("-inf")
        self._queue = asyncio.Lock()  # FIFO: only the head of the line polls the window

    # -- the shared cool-down ----------------------------------------------------------

    def pause_until(self, deadline: float) -> None:
        """Hold every caller until `deadline` (same clock as the budget's). Only extends."""
        self._paused_until = max(self._paused_until, deadline)

    @property
    def paused_until(self) -> float:
        return self._paused_until

    # -- introspection -----------------------------------------------------------------

    def in_window(self) -> tuple[int, int]:
        """(requests, tokens) charged in the current window."""
        self._prune(self._clock())
        return len(self._entries), sum(e.tokens for e in self._entries)

    # -- admission ---------------------------------------------------------------------

    async def acquire(self, estimated_tokens: int) -> Lease:
        """Wait until the request fits, then charge it. Cancelling while waiting is safe."""
        tokens = max(0, int(estimated_tokens))
        started = self._clock()
        async with self._queue:
            while True:
                now = self._clock()
                wait = self._wait_needed(now, tokens)
                if wait <= 0:
                    entry = _Entry(now, tokens)
                    self._entries.append(entry)
                    return Lease(tokens, now, now - started, entry)
                await self._sleep(min(wait, self._recheck_s))

    def _wait_needed(self, now: float, tokens: int) -> float:
        """Seconds until a request of `tokens` would fit, assuming nothing else changes."""
        self._prune(now)
        waits = [self._paused_until - now]
        if len(self._entries) >= self.rpm:
            # The oldest requests must leave the window until only rpm - 1 remain.
            waits.append(self._expiry(self._entries[len(self._entries) - self.rpm], now))
        waits.append(self._token_wait(now, tokens))
        return max(waits)

    def _token_wait(self, now: float, tokens: int) -> float:
        in_window = sum(e.tokens for e in self._entries)
        if in_window == 0 or in_window + tokens <= self.tpm:
            return 0.0
        # Drop entries oldest first until the rest plus this request fit; an oversized
        # request needs every charged entry gone.
        remaining = in_window
        for entry in self._entries:
            remaining -= entry.tokens
            if remaining == 0 or remaining + tokens <= self.tpm:
                return self._expiry(entry, now)
        return 0.0  # unreachable: remaining reaches 0 at the last entry

    def _expiry(self, entry: _Entry, now: float) -> float:
        return entry.at + self.window_s - now

    def _prune(self, now: float) -> None:
        horizon = now - self.window_s
        while self._entries and self._entries[0].at <= horizon:
            self._entries.popleft()
