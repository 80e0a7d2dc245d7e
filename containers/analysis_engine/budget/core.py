"""Admission: estimate before a call, settle after it, wait in line, honour 429s.

One `Budget` per container. Per model it keeps the container's waiting calls in a local
line (finishing calls first, then first come first served); one *leader* task per model
takes the container's turns at the store (see `store`), which admits the local head when
the container is first in the fleet's line and the call fits: the moving window of
requests and tokens, under the learnt ceiling, after the pause, at the pace.

- **Fair shares.** The fleet's line serves the kinds by weight (`GEMINI_BUDGET_WEIGHT`, the
  capacity module's `gemini_weight`): while both kinds wait, each gets tokens in proportion
  to its weight, and a kind that waits for nothing leaves its share to the other. Within a
  kind an analysis' finishing calls (REDUCE: it ends the analysis and frees its container
  and DAG slot) go first, then the analysis *submitted* first (`ANALYSIS_SUBMITTED_AT`, the
  DAG run's time: a retried analysis keeps its place). **Aging** bounds every wait: a
  container that has gone `aging_s` (one window) with a call waiting and nothing admitted
  goes to the front. So while the window has room for a call of each waiting container,
  none goes longer than two windows without an admission (one to age, one for its call to
  fit), pauses after 429s aside.
- **Settling.** `Lease.settle(actual)` re-sizes the call's charge to the tokens the service
  counted, both ways, even when the window is full (a call that used more than its
  estimate is charged in full: the budget never under-counts).
- **429.** `pause(model, seconds, refused=lease)` takes the refused call out of the window
  (the service did not count it), holds every container sharing the store for the
  retryDelay, and applies the control law (`law`): the ceiling drops only when our window
  held a meaningful share of it when the service refused, and recovers within a stated
  number of quiet windows.
- **Daily quota.** `exhausted(model, reason)` marks the model spent until the daily reset:
  every container's waiting and later calls to it fail at once with that reason
  (`BudgetExhausted`, not retryable now), and the per-minute ceiling is left alone.
- **Pace.** With a shared store consecutive admissions are spaced at `PACE_BURST` x the
  ceiling's mean rate, so a freed window is not refilled in one burst the service would
  meet all at once.
- **Margin.** The window is kept `WINDOW_MARGIN_SECONDS` longer than the quota's minute: a
  call reaches the service a little after it was admitted (the request's upload, a busy
  CPU), and the service counts it from then. A time-scaled window of a few seconds keeps at
  most 1/30 of itself.
- **A store that lost its keys** (restart, failover) shows a new epoch: every container
  puts back its own calls still in the window, at their own times, so the fleet's window
  is whole again but for the calls of containers that have since finished, and the first
  to notice puts back the ceiling it had learnt. The 429s that
  this gap can cause are not our share (the window looks emptier than the service's), so
  they pause, never lower the ceiling.
- **A store that is down** for longer than `store_grace_s` does not fail the waiting calls:
  the container goes on alone with `1/N` of the fleet's last ceiling (N = the containers
  it last saw in the window or the line), retries the store every few seconds and hands
  its calls back to it when it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace

from analysis_engine.budget import law
from analysis_engine.budget.store import (
    Admission,
    AdmitRequest,
    BudgetStore,
    LeaseRecord,
    MemoryStore,
)
from analysis_engine.errors import ModelCallError

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

WINDOW_SECONDS = 60
WINDOW_MARGIN_SECONDS = 1.0
# Ceiling on one container's in-flight MAP calls when the budget would admit more.
MAX_IN_FLIGHT = 64
STORE_GRACE_SECONDS = 30.0
# While the store is down: how often to try it again.
STORE_RETRY_SECONDS = 5.0
# Shared store: admissions are spaced at this multiple of the ceiling's mean rate.
PACE_BURST = 3.0
# A container waiting this many windows without an admission goes first.
AGING_WINDOWS = 1.0
# Within a kind, a finishing call's place is its analysis' submission time; a MAP call's is
# that plus this (later than any submission time, a Unix time).
_STAGE_SPAN = 1e10


class BudgetStoreError(ModelCallError):
    """The shared budget store could not be used; retrying later may work."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, attempts=0, retryable=True)


class BudgetExhausted(ModelCallError):
    """The model's daily quota is spent (fleet-wide): no call to it will be admitted today."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, attempts=0, retryable=False)


@dataclass(frozen=True)
class ModelLimits:
    """Requests and tokens per window for one model."""

    rpm: int
    tpm: int

    def __post_init__(self) -> None:
        if self.rpm < 1 or self.tpm < 1:
            raise ValueError(f"rpm and tpm must be >= 1 (got rpm={self.rpm}, tpm={self.tpm})")


@dataclass(frozen=True)
class BudgetCounters:
    """What the budget cost this container's analysis so far (for `result.json`).

    `waited_s` sums every admitted call's wait in line (calls of one analysis wait side by
    side, so it can exceed the run's wall time); `rate_limited` counts the 429 answers the
    container's calls got (each also paused the model, see `pause`); `longest_gap_s` is the
    longest the container had a call waiting with nothing admitted (the aging bound's
    measure)."""

    admitted: int
    waited_s: float
    waited_max_s: float
    rate_limited: int
    longest_gap_s: float = 0.0


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
    waiting_by_kind: Mapping[str, int] = field(default_factory=dict)
    daily_exhausted: str | None = None  # why the model's daily quota is spent, while it is


@dataclass
class Lease:
    """One admitted call. Settle it with the input tokens the call really used."""

    model: str
    estimated_tokens: int
    charged_tokens: int
    granted_at: float
    waited_s: float
    _budget: Budget = field(repr=False)
    _record: LeaseRecord = field(repr=False)

    async def settle(self, actual_tokens: int) -> None:
        """Charge what the service counted instead of the estimate (both ways)."""
        await self._budget._settle(self, max(0, int(actual_tokens)))


@dataclass
class _Waiter:
    tokens: int
    future: asyncio.Future[LeaseRecord]
    enqueued_at: float
    finishing: bool = False


@dataclass
class _Line:
    waiters: deque[_Waiter] = field(default_factory=deque)
    leader: asyncio.Task[None] | None = None
    since: float = 0.0  # since when a call waits with nothing admitted


class Budget:
    """Fleet-wide (shared store) or per-container (memory) RPM/TPM admission, per model."""

    def __init__(
        self,
        store: BudgetStore,
        *,
        limits: ModelLimits,
        model_limits: Mapping[str, ModelLimits] | None = None,
        window_s: int = WINDOW_SECONDS,
        kind: str = "",
        weight: float = 1.0,
        submitted_at: float | None = None,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        poll_s: float | None = None,
        store_grace_s: float = STORE_GRACE_SECONDS,
        margin_s: float | None = None,
        aging_windows: float = AGING_WINDOWS,
    ) -> None:
        if window_s < 1:
            raise ValueError("window_s must be a whole number of seconds >= 1")
        if weight <= 0:
            raise ValueError("weight must be > 0")
        self._store = store
        self._default = limits
        self._model_limits = dict(model_limits or {})
        self.window_s = int(window_s)
        margin = min(WINDOW_MARGIN_SECONDS, self.window_s / 30) if margin_s is None else margin_s
        self._kept_s = self.window_s + margin  # see the module doc
        self._clock = clock
        self._sleep = sleep
        # Quick enough that a freed window is taken within a fraction of a call's latency.
        self._poll_s = poll_s if poll_s is not None else min(0.2, max(0.02, window_s / 300))
        self._store_grace_s = store_grace_s
        self._aging_s = aging_windows * self._kept_s
        self.kind = kind
        self.weight = float(weight)
        submitted = clock() if submitted_at is None else float(submitted_at)
        self._orders = {True: submitted, False: _STAGE_SPAN + submitted}
        self._ticket = f"{submitted:017.6f}-{uuid.uuid4().hex[:12]}"
        self._epoch: str | None = None
        self._lines: dict[str, _Line] = {}
        self._log: dict[str, LeaseRecord] = {}  # this container's leases, oldest first
        self._seen: dict[str, Admission] = {}  # the last turn at the shared store, per model
        self._ceiling_seen: dict[str, float] = {}  # the ceiling as last seen, per model
        self._local_pauses: dict[str, float] = {}
        self._fallback: MemoryStore | None = None
        self._failing_since: float | None = None
        self._next_retry = 0.0
        self._closed = False
        self._admitted = 0
        self._waited_total_s = 0.0
        self._waited_max_s = 0.0
        self._rate_limited = 0
        self._longest_gap_s = 0.0

    @classmethod
    def in_memory(cls, rpm: int, tpm: int, **kwargs: object) -> Budget:
        """This container's own share (the `memory://` store)."""
        return cls(MemoryStore(), limits=ModelLimits(rpm, tpm), **kwargs)  # type: ignore[arg-type]

    @property
    def shared(self) -> bool:
        return self._store.shared

    @property
    def degraded(self) -> bool:
        """True while the shared store is unreachable and this container goes on alone."""
        return self._fallback is not None

    def limits_for(self, model: str) -> ModelLimits:
        return self._model_limits.get(model, self._default)

    def in_flight_bound(self, model: str, tokens_per_call: int, floor: int) -> int:
        """How many calls of this size one container may keep waiting or in flight.

        With a shared store the window decides (a lone analysis may take the whole quota;
        the line keeps the fleet in order); a per-container share keeps `floor`.
        """
        if not self.shared:
            return floor
        limits = self.limits_for(model)
        fits = min(limits.rpm, limits.tpm // max(1, tokens_per_call))
        return max(floor, min(MAX_IN_FLIGHT, fits))

    # -- after a 429 -----------------------------------------------------------------------

    async def pause(
        self, model: str, seconds: float, *, refused: Lease | None = None, reason: str = "429"
    ) -> None:
        """After a 429: hold every caller of `model` (fleet-wide with a shared store) for
        `seconds`, take the refused call out of the window (the service did not count it)
        and apply the control law (`law`). `reason` is shown by `state()` while it holds."""
        now = self._clock()
        until = now + max(0.0, seconds)
        self._rate_limited += 1
        self._local_pauses[model] = max(self._local_pauses.get(model, 0.0), until)
        limits = self.limits_for(model)
        store = self._active_store()
        try:
            held: int | None = None  # what the service held: the leases admitted before
            if refused is not None:
                self._log.pop(refused._record.lease, None)
                held = await store.refund(model, refused._record.lease)
            for _ in range(5):  # compare-and-set: another container may update it too
                snap = await store.snapshot(model, now, self._kept_s)
                held = snap.window_tokens if held is None else held
                ceiling, verdict = law.after_429(
                    snap.ceiling,
                    window_tokens=held,
                    limit=self._tpm(model, limits),
                    now=now,
                    pause_until=until,
                    window_s=self._kept_s,
                )
                if await store.update_ceiling(model, ceiling, snap.ceiling_version, until, reason):
                    self._ceiling_seen[model] = ceiling.tokens
                    break
        except Exception as exc:  # the pause above still holds this container
            log.warning("could not share a Gemini 429 pause: %s", _short(exc))
            return
        log.info(
            "Gemini 429 for %s with %d tokens in the window (%s): pausing %.1f s, "
            "admitting up to %d tokens/window",
            model, held, verdict, seconds, ceiling.tokens,
        )  # fmt: skip
        if verdict == "not ours" and ceiling.streak == law.WARN_STREAK:
            log.warning(
                "Gemini answered 429 for %s %d times in a row with the fleet's window under "
                "%.0f%% of its ceiling: another client may be using the project's quota "
                "(lower GEMINI_TPM_BUDGET, or raise gemini_reserved_fraction)",
                model, ceiling.streak, 100 * law.SHARE,
            )  # fmt: skip

    async def exhausted(self, model: str, reason: str) -> None:
        """The model's daily quota is spent: fail its calls fleet-wide until the reset."""
        now = self._clock()
        self._rate_limited += 1
        try:
            await self._active_store().exhaust(model, reason, next_daily_reset(now), now)
        except Exception as exc:
            log.warning("could not share a spent daily quota: %s", _short(exc))
        log.error("Gemini daily quota spent for %s: %s", model, reason)

    async def paused_until(self, model: str) -> float:
        """The pause deadline for `model`, in the budget's clock (-inf when none)."""
        snap = await self._active_store().snapshot(model, self._clock(), self._kept_s)
        until = max(snap.paused_until, self._local_pauses.get(model, 0.0))
        return until if until > 0 else float("-inf")

    # -- introspection ---------------------------------------------------------------------

    def counters(self) -> BudgetCounters:
        """This container's admissions, waits and 429s so far (no store access)."""
        return BudgetCounters(
            admitted=self._admitted,
            waited_s=self._waited_total_s,
            waited_max_s=self._waited_max_s,
            rate_limited=self._rate_limited,
            longest_gap_s=self._longest_gap_s,
        )

    async def state(self, model: str) -> BudgetState:
        """The model's budget now: line, window, ceiling, pause. One store round trip;
        cheap enough to call every few seconds from one container of the fleet."""
        now = self._clock()
        limits = self.limits_for(model)
        snap = await self._active_store().snapshot(model, now, self._kept_s)
        ceiling = law.current(snap.ceiling, limit=limits.tpm, now=now, window_s=self._kept_s)
        paused = snap.paused_until > now
        return BudgetState(
            model=model,
            shared=self.shared,
            waiting=snap.waiting,
            window_requests=snap.window_requests,
            window_tokens=snap.window_tokens,
            limit_requests=limits.rpm,
            limit_tokens=limits.tpm,
            ceiling_tokens=int(ceiling),
            paused_until=snap.paused_until if paused else None,
            pause_reason=snap.pause_reason if paused else None,
            at=now,
            waiting_by_kind=snap.waiting_by_kind,
            daily_exhausted=snap.daily,
        )

    async def in_window(self, model: str) -> tuple[int, int]:
        """(requests, tokens) charged in the current window for `model`."""
        snap = await self._active_store().snapshot(model, self._clock(), self._kept_s)
        return snap.window_requests, snap.window_tokens

    # -- admission -------------------------------------------------------------------------

    async def acquire(self, estimated_tokens: int, *, model: str, finishing: bool = False) -> Lease:
        """Wait in line until the call fits, then charge it. Cancelling while waiting is safe.

        `finishing`: the analysis' last calls (REDUCE), which go ahead of MAP calls of the
        same kind (see the module doc)."""
        if self._closed:
            raise BudgetStoreError("the Gemini budget is closed")
        tokens = max(0, int(estimated_tokens))
        line = self._lines.setdefault(model, _Line())
        future: asyncio.Future[LeaseRecord] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(tokens, future, self._clock(), finishing)
        if not any(not w.future.done() for w in line.waiters):
            line.since = waiter.enqueued_at
        if finishing:  # ahead of this container's waiting MAP calls, behind other finishers
            ahead = sum(1 for w in line.waiters if w.finishing)
            line.waiters.insert(ahead, waiter)
        else:
            line.waiters.append(waiter)
        if line.leader is None or line.leader.done():
            line.leader = asyncio.create_task(self._lead(model, line), name=f"budget-{model}")
        record = await waiter.future
        waited = record.admitted_at - waiter.enqueued_at
        self._admitted += 1
        self._waited_total_s += waited
        self._waited_max_s = max(self._waited_max_s, waited)
        return Lease(
            model=model,
            estimated_tokens=tokens,
            charged_tokens=record.tokens,
            granted_at=record.admitted_at,
            waited_s=waited,
            _budget=self,
            _record=record,
        )

    async def _lead(self, model: str, line: _Line) -> None:
        """Take this container's turns at the store while it has waiting calls."""
        while True:
            try:
                await self._serve(model, line)
            finally:
                with contextlib.suppress(Exception):
                    await self._active_store().leave(model, self._ticket)
            # A call that arrived while we were leaving saw this task still running and
            # started no leader of its own: serve it (no await between check and return).
            if not line.waiters:
                return

    async def _serve(self, model: str, line: _Line) -> None:
        while line.waiters:
            waiter = line.waiters[0]
            if waiter.future.done():  # cancelled while waiting
                line.waiters.popleft()
                continue
            now = self._clock()
            local_pause = self._local_pauses.get(model, 0.0)
            if local_pause > now:  # set by this container's own 429 (shared or not)
                await self._sleep(local_pause - now)
                continue
            lease = uuid.uuid4().hex[:16]
            admission = await self._turn(model, waiter, lease, now)
            if admission is None:
                continue  # the store is failing; _turn waited
            if admission.daily is not None:
                self._fail_all(line, BudgetExhausted(admission.daily))
                return
            if not admission.admitted:
                wait = admission.wait_s if admission.wait_s > 0 else self._poll_s
                await self._sleep(min(wait, self._poll_s) if self.shared else wait)
                continue
            line.waiters.popleft()
            before = max(0, admission.window_tokens - waiter.tokens)
            record = LeaseRecord(model, lease, now, waiter.tokens, before)
            self._remember(record)
            self._longest_gap_s = max(self._longest_gap_s, now - line.since)
            line.since = now
            if waiter.future.done():  # cancelled meanwhile: its charge stays, safely
                continue
            waiter.future.set_result(record)

    async def _turn(self, model: str, waiter: _Waiter, lease: str, now: float) -> Admission | None:
        """One turn at the store (the fallback while it is down); None when it failed."""
        limits = self.limits_for(model)
        if self._fallback is not None and now >= self._next_retry:
            await self._try_store_again(model, now)
        fallback = self._fallback
        request = AdmitRequest(
            model=model,
            ticket=self._ticket,
            kind=self.kind,
            weight=self.weight,
            order=self._orders[waiter.finishing],
            now=now,
            lease=lease,
            tokens=waiter.tokens,
            rpm=limits.rpm,
            tpm=limits.tpm,
            window_s=self._kept_s,
            pace_burst=PACE_BURST if self.shared and fallback is None else 0.0,
            aging_s=self._aging_s,
            epoch=uuid.uuid4().hex,  # a fresh one: a store that lost its keys gets a new epoch
        )
        if fallback is not None:
            share = self._fallback_share(model, limits)
            return await fallback.admit(replace(request, rpm=share.rpm, tpm=share.tpm))
        try:
            admission = await self._store.admit(request)
        except Exception as exc:  # the store: Redis errors, timeouts, OSError
            await self._store_failed(model, exc, now)
            return None
        self._failing_since = None
        if self._epoch is not None and admission.epoch != self._epoch:
            # The turn admitted nothing the store had lost (it counted a window without this
            # container's calls): give the call back, restore, and take the turn again.
            if admission.admitted:
                await self._store.refund(model, lease)
            self._epoch = admission.epoch
            await self._restore_lost_state(admission.epoch, now)
            return await self._turn(model, waiter, lease, self._clock())
        self._epoch = admission.epoch
        self._seen[model] = admission
        self._ceiling_seen[model] = admission.ceiling_tokens
        return admission

    async def _store_failed(self, model: str, exc: BaseException, now: float) -> None:
        self._failing_since = now if self._failing_since is None else self._failing_since
        if now - self._failing_since < self._store_grace_s:
            log.warning("Gemini budget store error (retrying): %s", _short(exc))
            await self._sleep(min(1.0, self._store_grace_s / 10))
            return
        fallback = MemoryStore()
        fallback.epoch = "fallback"
        await fallback.restore(list(self._log.values()), now, self._kept_s)
        self._fallback, self._next_retry = fallback, now + STORE_RETRY_SECONDS
        share = self._fallback_share(model, self.limits_for(model))
        log.error(
            "Gemini budget store unreachable for %.0f s (%s): going on alone with %d tokens "
            "and %d requests per window (1/%d of the fleet's), retrying the store every %.0f s",
            now - self._failing_since, _short(exc), share.tpm, share.rpm,
            self._fleet_size(model), STORE_RETRY_SECONDS,
        )  # fmt: skip

    async def _try_store_again(self, model: str, now: float) -> None:
        self._next_retry = now + STORE_RETRY_SECONDS
        try:
            snap = await self._store.snapshot(model, now, self._kept_s)
            restored = await self._store.restore(list(self._log.values()), now, self._kept_s)
        except Exception:
            return
        self._fallback, self._failing_since = None, None
        self._epoch = snap.epoch or self._epoch
        log.warning(
            "Gemini budget store reachable again: handed back %d call(s) of this container",
            restored,
        )

    def _fleet_size(self, model: str) -> int:
        seen = self._seen.get(model)
        return max(1, seen.active, seen.waiting) if seen is not None else 1

    def _fallback_share(self, model: str, limits: ModelLimits) -> ModelLimits:
        seen = self._seen.get(model)
        ceiling = min(limits.tpm, seen.ceiling_tokens) if seen is not None else limits.tpm
        size = self._fleet_size(model)
        return ModelLimits(max(1, limits.rpm // size), max(1, int(ceiling // size)))

    async def _restore_lost_state(self, epoch: str, now: float) -> None:
        """The store came back empty (restart, failover): put back this container's calls
        still in the window, at their own times."""
        self._trim_log(now)
        try:
            restored = await self._store.restore(list(self._log.values()), now, self._kept_s)
            for model, tokens in self._ceiling_seen.items():  # a learnt ceiling is kept
                if tokens < self.limits_for(model).tpm:  # (version 0: the first container's)
                    await self._store.update_ceiling(model, law.Ceiling(tokens, now), 0, 0.0, "")
        except Exception as exc:
            log.warning("could not restore the budget store's window: %s", _short(exc))
            return
        log.warning(
            "Gemini budget store lost its state (new epoch %s): this container's %d call(s) "
            "still in the window are back in it (%d put back now, the others as they ended)",
            epoch[:8], len(self._log), restored,
        )  # fmt: skip

    def _remember(self, record: LeaseRecord) -> None:
        self._log[record.lease] = record
        self._trim_log(record.admitted_at)

    def _trim_log(self, now: float) -> None:
        while self._log:
            oldest = next(iter(self._log.values()))
            if oldest.admitted_at > now - self._kept_s:
                return
            del self._log[oldest.lease]

    def _fail_all(self, line: _Line, error: ModelCallError) -> None:
        log.error("%s; failing %d waiting call(s)", error.reason, len(line.waiters))
        while line.waiters:
            waiter = line.waiters.popleft()
            if not waiter.future.done():
                waiter.future.set_exception(error)

    def _active_store(self) -> BudgetStore:
        return self._fallback or self._store

    def _tpm(self, model: str, limits: ModelLimits) -> int:
        if self._fallback is not None:
            return self._fallback_share(model, limits).tpm
        return limits.tpm

    async def _settle(self, lease: Lease, actual_tokens: int) -> None:
        record = lease._record  # an answered call: always tell the store (see law)
        now = self._clock()
        try:
            await self._active_store().settle(record, actual_tokens, now, self._kept_s)
        except Exception as exc:  # never fail a paid-for answer over bookkeeping
            log.warning("could not settle a Gemini lease: %s", _short(exc))
            return
        lease.charged_tokens = actual_tokens
        if record.lease in self._log:
            self._log[record.lease] = replace(record, tokens=actual_tokens)

    async def aclose(self) -> None:
        """Leave every line and close the store's connections."""
        if self._closed:
            return
        self._closed = True
        if self._admitted:
            # One line per container: what the quota cost this run in waiting (benchmarks
            # read it; operators see whether the budget was the bottleneck).
            log.info(
                "Gemini budget (%s): %d calls admitted, waited max %.2f s, total %.2f s, "
                "%d 429s, longest without an admission %.2f s",
                "shared" if self.shared else "this container",
                self._admitted,
                self._waited_max_s,
                self._waited_total_s,
                self._rate_limited,
                self._longest_gap_s,
            )
        for line in self._lines.values():
            if line.leader is not None and not line.leader.done():
                line.leader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await line.leader
        with contextlib.suppress(Exception):
            await self._store.aclose()


def next_daily_reset(now: float) -> float:
    """The next midnight in US Pacific time, when Gemini's per-day quotas reset."""
    try:
        from zoneinfo import ZoneInfo

        zone: dt.tzinfo = ZoneInfo("America/Los_Angeles")
    except Exception:  # no time zone data in the image: Pacific standard time
        zone = dt.timezone(dt.timedelta(hours=-8))
    local = dt.datetime.fromtimestamp(now, zone)
    midnight = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(), zone)
    return max(now + 1.0, midnight.timestamp())


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


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
]
