"""Admission: estimate before a call, settle after it, wait in line, honour 429 pauses.

One `Budget` per container. Per model it keeps the container's waiting calls in a local
line (finishing calls first, then first come first served); one *leader* task per model
stands in the store's queue for the whole container and admits the local head whenever
the container is first in line and the call fits the moving window (requests and tokens)
— then the next one at once.

- **Order.** The store's queue is ordered by (priority, stage, when the analysis started):
  task analyses before proctor videos; within a kind, a *finishing* call (REDUCE: the
  analysis' MAP is done) before MAP calls, then the analysis that started first. Only the
  first container in line takes from the window, so a large call at the head waits for
  room instead of being overtaken by small ones forever, and the oldest analysis drains
  first. A finishing call is small and ends an analysis: queued behind the whole fleet's
  MAP calls it would hold a finished analysis' container (and its DAG slot, and the next
  submission behind that slot) for up to a window, to save the older analyses well under
  a second of quota.
- **Oversized calls.** A call larger than a whole window's tokens is admitted once the
  window is empty and is charged the whole window (it could never fit otherwise).
- **Settling.** `Lease.settle(actual)` charges the tokens above the estimate. A call that
  used fewer keeps its estimate until it leaves the window (the moving window cannot
  un-count): the budget errs towards spending less, never more.
- **429.** `pause(model, seconds)` holds every container sharing the store for that model,
  and lowers a shared *ceiling* on the model's tokens per window (the quota is smaller than
  the budget: another client on the key, a budget set too high). The ceiling follows AIMD,
  the control law TCP uses for the same problem (an unknown, shared capacity that only
  says "too much"): on a 429 it drops to `CEILING_BACKOFF` x what the service evidently
  admitted when it said "full" (the window's charges less those of calls it refused, which
  cost nothing there: `pause(..., refused=lease)` records them), never above where it was;
  it rises only after a whole window free of 429s, counted from the end of the pause (the
  service's retryDelay says when its window frees), and then only additively:
  `CEILING_STEP` x the configured limit per quiet window. So the budget probes for more
  quota gently, a probe that finds none costs a 429 or two, not a burst, and a ceiling
  knocked to the floor by a 429 that was not about our share (the service's own overload,
  another client's burst) is back at the limit within 1/CEILING_STEP windows, not hours.
- **Pace.** With a shared store, consecutive admissions are spaced by what each call costs
  at `PACE_BURST` x the ceiling's average rate (an "earliest next admission" in the store,
  GCRA without a burst allowance): a freed window is not refilled in one burst, which the
  service would meet all at once before the first 429 could pause anyone. With the
  spacing, a budget set above the real quota overshoots by a call or two, and the fleet's
  calls stay spread the way the moving window will free them; 3x the mean rate still
  keeps the window full.
- **Margin.** The window is kept `WINDOW_MARGIN_SECONDS` longer than the quota's minute: a
  call reaches the service a little after it was admitted, so a window exactly as long as
  the service's would admit the next call just before the service forgets the old one.
- **Store trouble.** A store that fails for longer than `store_grace_s` fails the waiting
  calls with `BudgetStoreError` (a retryable model-call failure) instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from limits import RateLimitItemPerSecond
from limits.aio.strategies import MovingWindowRateLimiter

from analysis_engine.budget.store import BudgetStore, MemoryStore
from analysis_engine.errors import ModelCallError

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

WINDOW_SECONDS = 60
WINDOW_MARGIN_SECONDS = 1
# The token window is kept in at most ~this many units (1 unit = tpm/1000 tokens, rounded
# up per call): the store's moving window holds one entry per unit.
TOKEN_UNITS_PER_WINDOW = 1000
# Ceiling on one container's in-flight MAP calls when the budget would admit more.
MAX_IN_FLIGHT = 64
STORE_GRACE_SECONDS = 30.0
# After a 429 the ceiling drops to this fraction of the window's tokens (multiplicative
# decrease), then rises by CEILING_STEP x the configured limit per whole window without a
# 429 (additive increase: a constant step, so recovery from the floor takes at most
# 1/CEILING_STEP windows) until it is back at the configured limit.
CEILING_BACKOFF = 0.9
CEILING_STEP = 0.05
CEILING_FLOOR = 0.05  # of the limit: never so low that nothing but oversized calls fit
# Shared store: admissions are spaced at this multiple of the ceiling's mean rate.
PACE_BURST = 3.0
# Priorities in the store's queue: lower goes first.
PRIORITIES = {"task_analysis": 0, "proctor_video": 1}
# Queue scores: priority x _KIND_SPAN + stage x _STAGE_SPAN + the analysis' start (a Unix
# time, < _STAGE_SPAN); stage 0 is a finishing call, 1 a MAP call.
_KIND_SPAN = 1e11
_STAGE_SPAN = 1e10


class BudgetStoreError(ModelCallError):
    """The shared budget store could not be used; retrying later may work."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, attempts=0, retryable=True)


@dataclass(frozen=True)
class ModelLimits:
    """Requests and tokens per window for one model."""

    rpm: int
    tpm: int

    def __post_init__(self) -> None:
        if self.rpm < 1 or self.tpm < 1:
            raise ValueError(f"rpm and tpm must be >= 1 (got rpm={self.rpm}, tpm={self.tpm})")

    @property
    def token_unit(self) -> int:
        return max(1, math.ceil(self.tpm / TOKEN_UNITS_PER_WINDOW))

    @property
    def token_units(self) -> int:
        return max(1, self.tpm // self.token_unit)

    def units(self, tokens: int) -> int:
        return math.ceil(max(0, tokens) / self.token_unit)


@dataclass
class Lease:
    """One admitted call. Settle it with the input tokens the call really used."""

    model: str
    estimated_tokens: int
    charged_tokens: int
    granted_at: float
    waited_s: float
    _budget: Budget = field(repr=False)
    _charged_units: int = field(default=0, repr=False)

    async def settle(self, actual_tokens: int) -> None:
        """Charge what `actual_tokens` exceeds the charge by (the estimate is a floor)."""
        await self._budget._settle(self, max(0, int(actual_tokens)))


@dataclass(frozen=True)
class BudgetCounters:
    """What the budget cost this container's analysis so far (for `result.json`).

    `waited_s` sums every admitted call's wait in line (calls of one analysis wait side by
    side, so it can exceed the run's wall time); `rate_limited` counts the 429 answers the
    container's calls got (each also paused the model, see `pause`)."""

    admitted: int
    waited_s: float
    waited_max_s: float
    rate_limited: int


@dataclass(frozen=True)
class BudgetState:
    """The budget of one model as the store holds it now (metrics, operators).

    Times are in the budget's clock (Unix time); `paused_until` is None when no pause holds.
    With `memory://` it describes this container's own share."""

    model: str
    shared: bool
    waiting: int  # containers in the store's line for this model (each may hold many calls)
    window_requests: int
    window_tokens: int
    limit_requests: int
    limit_tokens: int
    ceiling_tokens: int  # admission stays under this; below limit_tokens after a 429
    paused_until: float | None
    pause_reason: str | None
    at: float


@dataclass
class _Waiter:
    tokens: int
    future: asyncio.Future[tuple[float, int]]
    enqueued_at: float
    finishing: bool = False


@dataclass
class _Line:
    waiters: deque[_Waiter] = field(default_factory=deque)
    leader: asyncio.Task[None] | None = None


class Budget:
    """Fleet-wide (shared store) or per-container (memory) RPM/TPM admission, per model."""

    def __init__(
        self,
        store: BudgetStore,
        *,
        limits: ModelLimits,
        model_limits: Mapping[str, ModelLimits] | None = None,
        window_s: int = WINDOW_SECONDS,
        priority: int = 0,
        started_at: float | None = None,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        poll_s: float | None = None,
        store_grace_s: float = STORE_GRACE_SECONDS,
        margin_s: int = WINDOW_MARGIN_SECONDS,
    ) -> None:
        if window_s < 1:
            raise ValueError("window_s must be a whole number of seconds >= 1")
        self._store = store
        self._default = limits
        self._model_limits = dict(model_limits or {})
        self.window_s = int(window_s)
        self._kept_s = self.window_s + int(margin_s)  # see the module doc
        self._clock = clock
        self._sleep = sleep
        # Quick enough that a freed window is taken within a fraction of a call's latency.
        self._poll_s = poll_s if poll_s is not None else min(0.2, max(0.02, window_s / 300))
        self._store_grace_s = store_grace_s
        self._limiter = MovingWindowRateLimiter(store.limits_storage)
        start = clock() if started_at is None else started_at
        # Lower scores go first; equal scores fall back to the ticket's text (its start).
        self._scores = {
            finishing: priority * _KIND_SPAN + (0 if finishing else _STAGE_SPAN) + start
            for finishing in (True, False)
        }
        self._ticket = f"{start:017.6f}-{uuid.uuid4().hex[:12]}"
        self._lines: dict[str, _Line] = {}
        self._ceilings: dict[str, tuple[float, float] | None] = {}  # as last seen, per model
        self._closed = False
        self._admitted = 0
        self._waited_total_s = 0.0
        self._waited_max_s = 0.0
        self._rate_limited = 0

    @classmethod
    def in_memory(cls, rpm: int, tpm: int, **kwargs: object) -> Budget:
        """This container's own share (the `memory://` store)."""
        return cls(MemoryStore(), limits=ModelLimits(rpm, tpm), **kwargs)  # type: ignore[arg-type]

    @property
    def shared(self) -> bool:
        return self._store.shared

    def limits_for(self, model: str) -> ModelLimits:
        return self._model_limits.get(model, self._default)

    def in_flight_bound(self, model: str, tokens_per_call: int, floor: int) -> int:
        """How many calls of this size one container may keep waiting or in flight.

        With a shared store the window decides (a lone analysis may take the whole quota;
        the queue keeps the fleet in order); a per-container share keeps `floor`.
        """
        if not self.shared:
            return floor
        limits = self.limits_for(model)
        fits = min(limits.rpm, limits.token_units // max(1, limits.units(tokens_per_call)))
        return max(floor, min(MAX_IN_FLIGHT, fits))

    # -- the shared cool-down ------------------------------------------------------------

    async def pause(
        self, model: str, seconds: float, *, refused: Lease | None = None, reason: str = "429"
    ) -> None:
        """After a 429: hold every caller of `model` (fleet-wide with a shared store) for
        `seconds`, and lower the model's ceiling under what the service admitted (AIMD).
        `refused` is the call the 429 answered: the service did not count it. `reason` is
        shown by `state()` while the pause holds."""
        now = self._clock()
        until = now + max(0.0, seconds)
        self._rate_limited += 1
        await self._store.extend_pause(model, until, reason)
        limits = self.limits_for(model)
        _, refused_item = self._counted_items(limits)
        if refused is not None and refused._charged_units:
            cost = min(refused._charged_units, limits.token_units)
            await self._limiter.hit(refused_item, model, cost=cost)
        admitted = await self._admitted_tokens(model, limits)
        seen = await self._store.ceiling(model)  # fresh: other containers meet 429s too
        self._ceilings[model] = seen
        current = self._ceiling(model, limits, now)
        # Decrease: the service said "full" with about `admitted` in its window. Never raise
        # it here: a 429 in a burst that followed an earlier one says nothing new.
        lowered = max(CEILING_FLOOR * limits.tpm, min(current, CEILING_BACKOFF * admitted))
        # Increase only after a whole window free of 429s, counted from when the service
        # said its window frees: every 429 restarts that count.
        quiet_since = max(until, seen[1]) if seen is not None else until
        await self._store.set_ceiling(model, lowered, quiet_since)
        self._ceilings[model] = (lowered, quiet_since)
        log.info("Gemini quota full for %s: admitting up to %d tokens/window", model, lowered)

    async def _admitted_tokens(self, model: str, limits: ModelLimits) -> int:
        """Tokens in the window that the service counted: charged minus refused (a 429
        costs nothing at the service, but the moving window cannot un-count a charge)."""
        token_item, refused_item = self._counted_items(limits)
        charged = await self._limiter.get_window_stats(token_item, model)
        refused = await self._limiter.get_window_stats(refused_item, model)
        # (limit - charged.remaining) - (limit - refused.remaining)
        units = max(0, refused.remaining - charged.remaining)
        return units * limits.token_unit

    def _ceiling(self, model: str, limits: ModelLimits, now: float) -> float:
        """Tokens per window admission stays under: the learnt level plus one additive step
        per whole window since the last 429's pause ended, up to the configured limit."""
        seen = self._ceilings.get(model)
        if seen is None:
            return float(limits.tpm)
        tokens, quiet_since = seen
        quiet_windows = math.floor(max(0.0, now - quiet_since) / self._kept_s)
        return min(float(limits.tpm), tokens + CEILING_STEP * limits.tpm * quiet_windows)

    async def paused_until(self, model: str) -> float:
        """The pause deadline for `model`, in the budget's clock (-inf when none)."""
        return await self._store.paused_until(model)

    # -- introspection ---------------------------------------------------------------------

    def counters(self) -> BudgetCounters:
        """This container's admissions, waits and 429s so far (no store access)."""
        return BudgetCounters(
            admitted=self._admitted,
            waited_s=self._waited_total_s,
            waited_max_s=self._waited_max_s,
            rate_limited=self._rate_limited,
        )

    async def state(self, model: str) -> BudgetState:
        """The model's budget now: line, window, ceiling, pause. A few store reads; cheap
        enough to call every few seconds from one container of the fleet."""
        now = self._clock()
        limits = self.limits_for(model)
        requests, tokens = await self.in_window(model)
        view = await self._store.describe(model, now)
        self._ceilings[model] = view.ceiling
        paused = view.paused_until > now
        return BudgetState(
            model=model,
            shared=self.shared,
            waiting=view.waiting,
            window_requests=requests,
            window_tokens=tokens,
            limit_requests=limits.rpm,
            limit_tokens=limits.tpm,
            ceiling_tokens=int(self._ceiling(model, limits, now)),
            paused_until=view.paused_until if paused else None,
            pause_reason=view.pause_reason if paused else None,
            at=now,
        )

    async def in_window(self, model: str) -> tuple[int, int]:
        """(requests, tokens) charged in the current window for `model`."""
        limits = self.limits_for(model)
        requests, tokens = self._items(limits)
        req = await self._limiter.get_window_stats(requests, model)
        tok = await self._limiter.get_window_stats(tokens, model)
        return limits.rpm - req.remaining, (limits.token_units - tok.remaining) * limits.token_unit

    # -- admission -------------------------------------------------------------------------

    async def acquire(self, estimated_tokens: int, *, model: str, finishing: bool = False) -> Lease:
        """Wait in line until the call fits, then charge it. Cancelling while waiting is safe.

        `finishing`: the analysis' last calls (REDUCE), which go ahead of MAP calls of the
        same kind (see the module doc)."""
        if self._closed:
            raise BudgetStoreError("the Gemini budget is closed")
        tokens = max(0, int(estimated_tokens))
        line = self._lines.setdefault(model, _Line())
        future = asyncio.get_running_loop().create_future()
        waiter = _Waiter(tokens, future, self._clock(), finishing)
        if finishing:  # ahead of this container's waiting MAP calls, behind other finishers
            ahead = sum(1 for w in line.waiters if w.finishing)
            line.waiters.insert(ahead, waiter)
        else:
            line.waiters.append(waiter)
        if line.leader is None or line.leader.done():
            line.leader = asyncio.create_task(self._lead(model, line), name=f"budget-{model}")
        granted_at, units = await waiter.future
        limits = self.limits_for(model)
        waited = granted_at - waiter.enqueued_at
        self._admitted += 1
        self._waited_total_s += waited
        self._waited_max_s = max(self._waited_max_s, waited)
        return Lease(
            model=model,
            estimated_tokens=tokens,
            charged_tokens=units * limits.token_unit,
            granted_at=granted_at,
            waited_s=granted_at - waiter.enqueued_at,
            _budget=self,
            _charged_units=units,
        )

    async def _lead(self, model: str, line: _Line) -> None:
        """Stand in the store's queue for this container while it has waiting calls."""
        while True:
            try:
                await self._serve(model, line)
            finally:
                with contextlib.suppress(Exception):
                    await self._store.leave(model, self._ticket)
            # A call that arrived while we were leaving saw this task still running and
            # started no leader of its own: serve it (no await between check and return).
            if not line.waiters:
                return

    async def _serve(self, model: str, line: _Line) -> None:
        failing_since: float | None = None
        while line.waiters:
            waiter = line.waiters[0]
            if waiter.future.done():  # cancelled while waiting
                line.waiters.popleft()
                continue
            try:
                score = self._scores[waiter.finishing]
                wait, units = await self._try_admit(model, waiter.tokens, score)
                failing_since = None
            except Exception as exc:  # the store: Redis errors, timeouts, OSError
                now = self._clock()
                failing_since = now if failing_since is None else failing_since
                if now - failing_since >= self._store_grace_s:
                    self._fail_all(line, exc)
                    return
                log.warning("Gemini budget store error (retrying): %s", _short(exc))
                await self._sleep(min(1.0, self._store_grace_s / 10))
                continue
            if wait <= 0:
                line.waiters.popleft()
                if waiter.future.done():  # cancelled meanwhile: its charge stays, safely
                    continue
                waiter.future.set_result((self._clock(), units))
                continue
            await self._sleep(min(wait, self._poll_s))

    def _fail_all(self, line: _Line, exc: BaseException) -> None:
        error = BudgetStoreError(f"Gemini budget store unreachable: {_short(exc)}")
        log.error("%s; failing %d waiting call(s)", error.reason, len(line.waiters))
        while line.waiters:
            waiter = line.waiters.popleft()
            if not waiter.future.done():
                waiter.future.set_exception(error)

    async def _try_admit(self, model: str, tokens: int, score: float) -> tuple[float, int]:
        """(0, units charged) when admitted now, else (seconds worth waiting, 0)."""
        now = self._clock()
        view = await self._store.poll(model, self._ticket, score, now)
        self._ceilings[model] = view.ceiling
        if view.paused_until > now:
            return view.paused_until - now, 0
        if view.head != self._ticket:
            return self._poll_s, 0
        limits = self.limits_for(model)
        requests, token_item = self._items(limits)
        units = limits.units(tokens)
        ceiling = self._ceiling(model, limits, now)
        if ceiling < limits.tpm:
            admitted = await self._admitted_tokens(model, limits)
            if admitted and admitted + units * limits.token_unit > ceiling:
                return self._poll_s, 0
        if units > limits.token_units:
            # Larger than a whole window: admitted alone, charged the whole window.
            stats = await self._limiter.get_window_stats(token_item, model)
            if stats.remaining < limits.token_units:
                return self._poll_s, 0
            units = limits.token_units
        elif self.shared and view.next_at > now:
            return min(view.next_at - now, self._poll_s), 0  # paced (see the module doc)
        if not await self._limiter.test(requests, model):
            return self._poll_s, 0
        if units and not await self._limiter.hit(token_item, model, cost=units):
            return self._poll_s, 0
        # Only the first in line hits, so the request slot just tested is still free.
        await self._limiter.hit(requests, model)
        if self.shared:
            spacing = units * limits.token_unit * self._kept_s / (PACE_BURST * ceiling)
            await self._store.set_next_at(model, max(view.next_at, now) + spacing)
        return 0.0, units

    async def _settle(self, lease: Lease, actual_tokens: int) -> None:
        limits = self.limits_for(lease.model)
        extra = limits.units(actual_tokens) - lease._charged_units
        if extra <= 0:
            return
        _, token_item = self._items(limits)
        extra = min(extra, limits.token_units)
        try:
            charged = await self._limiter.hit(token_item, lease.model, cost=extra)
        except Exception as exc:  # never fail a paid-for answer over bookkeeping
            log.warning("could not settle a Gemini lease: %s", _short(exc))
            return
        if charged:
            lease._charged_units += extra
            lease.charged_tokens = lease._charged_units * limits.token_unit
        else:
            log.info("window full: %d tokens above the estimate not counted", actual_tokens)

    def _counted_items(
        self, limits: ModelLimits
    ) -> tuple[RateLimitItemPerSecond, RateLimitItemPerSecond]:
        """(tokens charged, tokens refused by a 429) per window, in token units."""
        return (
            self._items(limits)[1],
            RateLimitItemPerSecond(limits.token_units, self._kept_s, namespace="gemini-refused"),
        )

    def _items(self, limits: ModelLimits) -> tuple[RateLimitItemPerSecond, RateLimitItemPerSecond]:
        return (
            RateLimitItemPerSecond(limits.rpm, self._kept_s, namespace="gemini-requests"),
            RateLimitItemPerSecond(limits.token_units, self._kept_s, namespace="gemini-tokens"),
        )

    async def aclose(self) -> None:
        """Leave every queue and close the store's connections."""
        if self._closed:
            return
        self._closed = True
        if self._admitted:
            # One line per container: what the quota cost this run in waiting (benchmarks
            # read it; operators see whether the budget was the bottleneck).
            log.info(
                "Gemini budget (%s): %d calls admitted, waited max %.2f s, total %.2f s",
                "shared" if self.shared else "this container",
                self._admitted,
                self._waited_max_s,
                self._waited_total_s,
            )
        for line in self._lines.values():
            if line.leader is not None and not line.leader.done():
                line.leader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await line.leader
        with contextlib.suppress(Exception):
            await self._store.aclose()


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
