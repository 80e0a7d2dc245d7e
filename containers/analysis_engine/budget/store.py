"""Where the budget's state lives, and the one operation that must be atomic: admission.

Per model the store keeps:

- the **window**: every admitted call (lease) with its time and tokens, kept for the
  budget's window; requests are counted, tokens summed; a lease can be re-sized when the
  call's real token count is known (`settle`), removed when the service refused it
  (`refund`: a 429 costs nothing there), or restored with its original time (`restore`,
  after the store lost its keys);
- the **line** of containers waiting for that window (one ticket each) and who is first:
  an *aged* ticket (one that waited `aging_s` without an admission) first, then the kind
  furthest behind its weighted share (virtual time: tokens admitted ÷ weight), then within
  a kind its finishing calls, then the analysis submitted first. Only the first in line
  takes from the window, so a large call is never overtaken by small ones;
- the **pause** after a 429 (until when, and why), the learnt **ceiling** (see `law`), the
  **pace** (the earliest next admission), a **daily** mark (the model's daily quota is
  spent), and the store's **epoch** (a new one means the store lost its keys).

`memory://` (`MemoryStore`) serves one container: its line has one place. Redis/Valkey
(`redis_store.RedisStore`) serves the fleet and decides each admission in one script.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from typing import Protocol

from analysis_engine.budget import law

# A ticket not refreshed for this long belongs to a container that died: it loses its place.
ALIVE_SECONDS = 10.0


@dataclass(frozen=True)
class AdmitRequest:
    """One container's turn at the store: join or refresh its place, and admit `tokens`
    now if it is first in line and the call fits."""

    model: str
    ticket: str
    kind: str
    weight: float
    order: float  # place within its kind: lower first (finishing calls, then submission)
    now: float
    lease: str  # the lease id this admission would get
    tokens: int
    rpm: int
    tpm: int
    window_s: float  # how long a lease counts
    pace_burst: float  # admissions spaced at this multiple of the ceiling's mean rate; 0: none
    aging_s: float
    epoch: str  # the epoch to set when the store has none


@dataclass(frozen=True)
class Admission:
    """What one turn saw, and whether the call was admitted."""

    admitted: bool
    wait_s: float  # when not admitted: worth waiting this long (0: poll again soon)
    head: str | None
    paused_until: float  # 0.0 when never paused
    pause_reason: str | None
    ceiling_tokens: float
    window_tokens: int
    window_requests: int
    epoch: str
    daily: str | None  # why the model's daily quota is spent, while it is
    waiting: int  # containers in line
    active: int  # containers admitted a call within the last window


@dataclass(frozen=True)
class Snapshot:
    """The model's state without taking a turn (`BudgetState` is built from it)."""

    waiting: int
    waiting_by_kind: dict[str, int]
    window_tokens: int
    window_requests: int
    ceiling: law.Ceiling | None
    ceiling_version: int
    paused_until: float
    pause_reason: str | None
    daily: str | None
    epoch: str | None


@dataclass(frozen=True)
class LeaseRecord:
    """An admitted call as the container remembers it (to restore a store that lost it)."""

    model: str
    lease: str
    admitted_at: float
    tokens: int
    window_before: int = 0  # tokens already in the window when it was admitted


class BudgetStore(Protocol):
    """Shared state behind a Budget (see the module doc)."""

    shared: bool

    async def admit(self, request: AdmitRequest) -> Admission: ...

    async def leave(self, model: str, ticket: str) -> None: ...

    async def settle(self, record: LeaseRecord, tokens: int, now: float, window_s: float) -> None:
        """Re-size a lease to `tokens` (restoring it if the store lost it). The call was
        answered: a suspicion (see `law`) at or below its `window_before` is cleared."""
        ...

    async def refund(self, model: str, lease: str) -> int:
        """Forget a lease (the service refused the call, so it did not count there); returns
        the tokens of the leases admitted before it and still counted: the window the
        service held when it said "full"."""
        ...

    async def restore(self, records: list[LeaseRecord], now: float, window_s: float) -> int:
        """Put back leases still inside the window that the store no longer has."""
        ...

    async def snapshot(self, model: str, now: float, window_s: float) -> Snapshot: ...

    async def update_ceiling(
        self, model: str, ceiling: law.Ceiling, version: int, pause_until: float, reason: str
    ) -> bool:
        """Set the ceiling if it is still at `version` (else False: read again), and
        extend the pause (never shorten it)."""
        ...

    async def exhaust(self, model: str, reason: str, until: float, now: float) -> None: ...

    async def aclose(self) -> None: ...


@dataclass
class _Model:
    window: deque[tuple[float, str]] = field(default_factory=deque)  # (admitted_at, lease)
    tokens: dict[str, int] = field(default_factory=dict)
    used: int = 0
    tickets: dict[str, tuple[float, float]] = field(default_factory=dict)  # order, alive until
    pause: float = 0.0
    reason: str | None = None
    ceiling: law.Ceiling | None = None
    version: int = 0
    next_at: float = 0.0
    daily: tuple[str, float] | None = None  # reason, until
    last_admitted: float = float("-inf")


class MemoryStore:
    """`memory://`: one container's own share (and a container's fallback while the shared
    store is unreachable). One process, so its line is simply first come, first served."""

    shared = False

    def __init__(self) -> None:
        self._models: dict[str, _Model] = {}
        self.epoch = ""

    def _model(self, model: str) -> _Model:
        return self._models.setdefault(model, _Model())

    def _prune(self, state: _Model, now: float, window_s: float) -> None:
        while state.window and state.window[0][0] <= now - window_s:
            _, lease = state.window.popleft()
            state.used -= state.tokens.pop(lease, 0)
        if not state.window:
            state.used = 0

    async def admit(self, request: AdmitRequest) -> Admission:
        state = self._model(request.model)
        now = request.now
        if not self.epoch:
            self.epoch = request.epoch
        self._prune(state, now, request.window_s)
        state.tickets = {t: v for t, v in state.tickets.items() if v[1] > now}
        state.tickets[request.ticket] = (request.order, now + ALIVE_SECONDS)
        head = min(state.tickets.items(), key=lambda item: (item[1][0], item[0]))[0]
        ceiling = law.current(state.ceiling, limit=request.tpm, now=now, window_s=request.window_s)
        daily = state.daily[0] if state.daily and state.daily[1] > now else None
        wait = _refusal(
            head == request.ticket,
            state.pause,
            now,
            len(state.window),
            state.used,
            request,
            ceiling,
            state.next_at,
            state.window[0][0] if state.window else now,
        )
        admitted = daily is None and wait is None
        if admitted:
            state.window.append((now, request.lease))
            state.tokens[request.lease] = request.tokens
            state.used += request.tokens
            state.last_admitted = now
            if request.pace_burst > 0:
                spacing = request.tokens * request.window_s / (request.pace_burst * ceiling)
                state.next_at = max(state.next_at, now) + spacing
        return Admission(
            admitted=admitted,
            wait_s=wait or 0.0,
            head=head,
            paused_until=state.pause,
            pause_reason=state.reason if state.pause > now else None,
            ceiling_tokens=ceiling,
            window_tokens=state.used,
            window_requests=len(state.window),
            epoch=self.epoch,
            daily=daily,
            waiting=len(state.tickets),
            active=1 if state.last_admitted > now - request.window_s else 0,
        )

    async def leave(self, model: str, ticket: str) -> None:
        self._model(model).tickets.pop(ticket, None)

    async def settle(self, record: LeaseRecord, tokens: int, now: float, window_s: float) -> None:
        state = self._model(record.model)
        suspect = state.ceiling.suspect if state.ceiling is not None else 0.0
        if state.ceiling is not None and 0 < suspect * law.CLEARS <= record.window_before:
            state.ceiling = replace(state.ceiling, suspect=0.0)
            state.version += 1
        if record.lease in state.tokens:
            state.used += tokens - state.tokens[record.lease]
            state.tokens[record.lease] = tokens
        elif record.admitted_at > now - window_s:
            self._insert(state, record, tokens)

    @staticmethod
    def _insert(state: _Model, record: LeaseRecord, tokens: int) -> None:
        entries = sorted([*state.window, (record.admitted_at, record.lease)])
        state.window = deque(entries)
        state.tokens[record.lease] = tokens
        state.used += tokens

    async def refund(self, model: str, lease: str) -> int:
        state = self._model(model)
        if lease not in state.tokens:
            return state.used
        at = next(t for t, held in state.window if held == lease)
        before = sum(state.tokens[held] for t, held in state.window if t < at)
        state.used -= state.tokens.pop(lease)
        state.window = deque(entry for entry in state.window if entry[1] != lease)
        return before

    async def restore(self, records: list[LeaseRecord], now: float, window_s: float) -> int:
        restored = 0
        for record in records:
            state = self._model(record.model)
            if record.lease not in state.tokens and record.admitted_at > now - window_s:
                self._insert(state, record, record.tokens)
                restored += 1
        return restored

    async def snapshot(self, model: str, now: float, window_s: float) -> Snapshot:
        state = self._model(model)
        self._prune(state, now, window_s)
        alive = [t for t, (_, until) in state.tickets.items() if until > now]
        daily = state.daily[0] if state.daily and state.daily[1] > now else None
        return Snapshot(
            waiting=len(alive),
            waiting_by_kind={},
            window_tokens=state.used,
            window_requests=len(state.window),
            ceiling=state.ceiling,
            ceiling_version=state.version,
            paused_until=state.pause,
            pause_reason=state.reason,
            daily=daily,
            epoch=self.epoch or None,
        )

    async def update_ceiling(
        self, model: str, ceiling: law.Ceiling, version: int, pause_until: float, reason: str
    ) -> bool:
        state = self._model(model)
        if state.version != version:
            return False
        state.ceiling, state.version = ceiling, version + 1
        if pause_until >= state.pause:
            state.pause, state.reason = pause_until, reason
        return True

    async def exhaust(self, model: str, reason: str, until: float, now: float) -> None:
        self._model(model).daily = (reason, until)

    async def aclose(self) -> None:
        return None


def _refusal(
    first: bool,
    paused_until: float,
    now: float,
    requests: int,
    used: int,
    request: AdmitRequest,
    ceiling: float,
    next_at: float,
    oldest: float,
) -> float | None:
    """None when the call may be admitted now, else the seconds worth waiting (0: poll).
    The same rules as the Redis store's admission script."""
    if paused_until > now:
        return paused_until - now
    if not first:
        return 0.0
    if requests + 1 > request.rpm:
        return max(0.0, oldest + request.window_s - now)
    # A call larger than the whole ceiling is admitted alone, into an empty window.
    if used > 0 and used + request.tokens > ceiling:
        return 0.0
    if request.pace_burst > 0 and next_at > now:
        return next_at - now
    return None
