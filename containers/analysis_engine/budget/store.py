"""Where the budget's shared state lives: `memory://` (this process) or Redis/Valkey.

Three kinds of state, each per model:

- the **moving window** of requests and tokens: the `limits` library's
  `MovingWindowRateLimiter` over its memory or Redis storage (weighted cost = tokens);
- the **queue** of containers waiting for that window, ordered by (priority, when the
  analysis started), so only the first in line may take from the window (no starvation);
  a ticket whose holder stopped refreshing it (a crashed container) is dropped after
  `ALIVE_SECONDS`;
- the **pause** deadline set after a 429, which holds every container until it passes;
- the **pace**: the earliest time the next call may be admitted (spacing, see `core`);
- the **ceiling** learnt from 429s (AIMD, see `core`): a little under the window's tokens
  when the service said "full" (another client on the key, a budget set above the real
  quota), and from when a whole quiet window counts; admission stays under it.

Deadlines and queue times are in the budget's clock (wall time, shared across hosts).
Redis keys share one hash tag, so the multi-key script also runs on a clustered or
serverless Valkey/ElastiCache endpoint.
"""

from __future__ import annotations

import asyncio
from bisect import insort
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio
from limits.aio.storage import MemoryStorage, RedisStorage, Storage

# A ticket not refreshed for this long belongs to a container that died: it loses its place.
ALIVE_SECONDS = 10.0
# Keys left behind by a fleet that stopped altogether go away on their own.
KEY_TTL_SECONDS = 3600
KEY_PREFIX = "{gemini-budget}"
CONNECT_TIMEOUT_SECONDS = 2.0
SOCKET_TIMEOUT_SECONDS = 5.0

# One round trip per poll: drop dead tickets, (re)join the queue at the score given (it
# changes when a container's next call is a finishing one), refresh ours, read the
# head of the line, the pause, the learnt ceiling and the pace. KEYS: queue, alive, pauses,
# ceilings, pace.
# ARGV: ticket, score, now, alive_until, model, ttl.
_POLL_SCRIPT = """
local stale = redis.call('zrangebyscore', KEYS[2], '-inf', ARGV[3])
for _, member in ipairs(stale) do
  redis.call('zrem', KEYS[1], member)
  redis.call('zrem', KEYS[2], member)
end
redis.call('zadd', KEYS[1], ARGV[2], ARGV[1])
redis.call('zadd', KEYS[2], ARGV[4], ARGV[1])
redis.call('expire', KEYS[1], ARGV[6])
redis.call('expire', KEYS[2], ARGV[6])
local head = redis.call('zrange', KEYS[1], 0, 0)
local pause = redis.call('zscore', KEYS[3], ARGV[5])
local ceiling = redis.call('hmget', KEYS[4], ARGV[5] .. ':tokens', ARGV[5] .. ':at')
local next_at = redis.call('hget', KEYS[5], ARGV[5])
return {head[1] or '', pause or '-inf', ceiling[1] or '', ceiling[2] or '', next_at or '-inf'}
"""

# Extend a model's pause (never shorten it) and keep the reason of the pause that holds.
# KEYS: pauses, reasons. ARGV: model, deadline, reason, ttl.
_PAUSE_SCRIPT = """
local current = redis.call('zscore', KEYS[1], ARGV[1])
if (not current) or tonumber(ARGV[2]) >= tonumber(current) then
  redis.call('zadd', KEYS[1], ARGV[2], ARGV[1])
  redis.call('hset', KEYS[2], ARGV[1], ARGV[3])
end
redis.call('expire', KEYS[1], ARGV[4])
redis.call('expire', KEYS[2], ARGV[4])
return 1
"""


@dataclass(frozen=True)
class QueueView:
    """What one poll saw: who is first in line, and until when the model is paused."""

    head: str | None
    paused_until: float
    # The learnt ceiling as last set: (tokens, quiet since); None when never lowered.
    ceiling: tuple[float, float] | None = None
    # The earliest time the next call may be admitted (pacing).
    next_at: float = float("-inf")


@dataclass(frozen=True)
class StoreView:
    """What `describe` read: the line's length, the pause and the learnt ceiling."""

    waiting: int
    paused_until: float
    pause_reason: str | None
    ceiling: tuple[float, float] | None


class BudgetStore(Protocol):
    """Shared state behind a Budget (see the module doc)."""

    shared: bool
    limits_storage: Storage

    async def poll(self, model: str, ticket: str, score: float, now: float) -> QueueView: ...

    async def leave(self, model: str, ticket: str) -> None: ...

    async def extend_pause(self, model: str, deadline: float, reason: str = "") -> None: ...

    async def describe(self, model: str, now: float) -> StoreView: ...

    async def paused_until(self, model: str) -> float: ...

    async def ceiling(self, model: str) -> tuple[float, float] | None: ...

    async def set_ceiling(self, model: str, tokens: float, now: float) -> None: ...

    async def set_next_at(self, model: str, at: float) -> None: ...

    async def aclose(self) -> None: ...


@dataclass
class _MemoryQueue:
    order: list[tuple[float, str]] = field(default_factory=list)
    alive: dict[str, float] = field(default_factory=dict)


class MemoryStore:
    """`memory://`: this process only (a container's own share, as before the fleet budget)."""

    shared = False

    def __init__(self) -> None:
        self.limits_storage: Storage = MemoryStorage()
        self._queues: dict[str, _MemoryQueue] = {}
        self._pauses: dict[str, float] = {}
        self._pause_reasons: dict[str, str] = {}
        self._ceilings: dict[str, tuple[float, float]] = {}
        self._next_at: dict[str, float] = {}

    async def poll(self, model: str, ticket: str, score: float, now: float) -> QueueView:
        queue = self._queues.setdefault(model, _MemoryQueue())
        for member, until in list(queue.alive.items()):
            if until <= now:
                self._drop(queue, member)
        if (score, ticket) not in queue.order:  # new, or its head call changed stage
            queue.order = [entry for entry in queue.order if entry[1] != ticket]
            insort(queue.order, (score, ticket))
        queue.alive[ticket] = now + ALIVE_SECONDS
        head = queue.order[0][1] if queue.order else None
        return QueueView(
            head,
            self._pauses.get(model, float("-inf")),
            self._ceilings.get(model),
            self._next_at.get(model, float("-inf")),
        )

    async def leave(self, model: str, ticket: str) -> None:
        queue = self._queues.get(model)
        if queue is not None:
            self._drop(queue, ticket)

    @staticmethod
    def _drop(queue: _MemoryQueue, ticket: str) -> None:
        if queue.alive.pop(ticket, None) is not None:
            queue.order = [entry for entry in queue.order if entry[1] != ticket]

    async def extend_pause(self, model: str, deadline: float, reason: str = "") -> None:
        if deadline >= self._pauses.get(model, float("-inf")):
            self._pauses[model] = deadline
            self._pause_reasons[model] = reason

    async def describe(self, model: str, now: float) -> StoreView:
        queue = self._queues.get(model)
        alive = sum(1 for until in queue.alive.values() if until > now) if queue else 0
        return StoreView(
            alive,
            self._pauses.get(model, float("-inf")),
            self._pause_reasons.get(model),
            self._ceilings.get(model),
        )

    async def paused_until(self, model: str) -> float:
        return self._pauses.get(model, float("-inf"))

    async def ceiling(self, model: str) -> tuple[float, float] | None:
        return self._ceilings.get(model)

    async def set_ceiling(self, model: str, tokens: float, now: float) -> None:
        self._ceilings[model] = (tokens, now)

    async def set_next_at(self, model: str, at: float) -> None:
        self._next_at[model] = at

    async def aclose(self) -> None:
        return None


class RedisStore:
    """`redis://` / `rediss://`: one Redis or Valkey shared by every container of both kinds."""

    shared = True

    def __init__(self, uri: str) -> None:
        options: dict[str, Any] = {
            "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "socket_timeout": SOCKET_TIMEOUT_SECONDS,
        }
        # limits speaks to Redis through redis-py's asyncio client (one client library).
        self.limits_storage = RedisStorage(
            f"async+{uri}", implementation="redispy", key_prefix=f"{KEY_PREFIX}:window", **options
        )
        self._redis = redis.asyncio.Redis.from_url(uri, decode_responses=True, **options)
        self._poll = self._redis.register_script(_POLL_SCRIPT)
        self._extend_pause = self._redis.register_script(_PAUSE_SCRIPT)

    @staticmethod
    def check(uri: str) -> None:
        """Raise (redis.RedisError / OSError) unless the store answers a PING quickly."""
        client = redis.Redis.from_url(
            uri,
            socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
            socket_timeout=CONNECT_TIMEOUT_SECONDS,
        )
        try:
            client.ping()
        finally:
            client.close()

    @staticmethod
    def _keys(model: str) -> list[str]:
        return [
            f"{KEY_PREFIX}:queue:{model}",
            f"{KEY_PREFIX}:alive:{model}",
            _pauses_key(),
            _ceilings_key(),
            _pace_key(),
        ]

    async def poll(self, model: str, ticket: str, score: float, now: float) -> QueueView:
        alive_until = repr(now + ALIVE_SECONDS)
        args = [ticket, repr(score), repr(now), alive_until, model, KEY_TTL_SECONDS]
        head, pause, tokens, at, next_at = await self._poll(keys=self._keys(model), args=args)
        ceiling = (float(tokens), float(at)) if tokens and at else None
        return QueueView(head or None, float(pause), ceiling, float(next_at))

    async def leave(self, model: str, ticket: str) -> None:
        queue, alive, *_ = self._keys(model)
        async with self._redis.pipeline(transaction=True) as pipe:
            await pipe.zrem(queue, ticket).zrem(alive, ticket).execute()

    async def extend_pause(self, model: str, deadline: float, reason: str = "") -> None:
        await self._extend_pause(
            keys=[_pauses_key(), _pause_reasons_key()],
            args=[model, repr(deadline), reason, KEY_TTL_SECONDS],
        )

    async def describe(self, model: str, now: float) -> StoreView:
        _, alive, *_ = self._keys(model)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zcount(alive, f"({now!r}", "+inf")
            pipe.zscore(_pauses_key(), model)
            pipe.hget(_pause_reasons_key(), model)
            pipe.hmget(_ceilings_key(), [f"{model}:tokens", f"{model}:at"])
            waiting, pause, reason, (tokens, at) = await pipe.execute()
        return StoreView(
            int(waiting),
            float("-inf") if pause is None else float(pause),
            reason,
            (float(tokens), float(at)) if tokens and at else None,
        )

    async def paused_until(self, model: str) -> float:
        score = await self._redis.zscore(_pauses_key(), model)
        return float("-inf") if score is None else float(score)

    async def ceiling(self, model: str) -> tuple[float, float] | None:
        tokens, at = await self._redis.hmget(_ceilings_key(), [f"{model}:tokens", f"{model}:at"])
        return (float(tokens), float(at)) if tokens and at else None

    async def set_ceiling(self, model: str, tokens: float, now: float) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(_ceilings_key(), mapping={f"{model}:tokens": tokens, f"{model}:at": now})
            pipe.expire(_ceilings_key(), KEY_TTL_SECONDS)
            await pipe.execute()

    async def set_next_at(self, model: str, at: float) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(_pace_key(), model, repr(at))
            pipe.expire(_pace_key(), KEY_TTL_SECONDS)
            await pipe.execute()

    async def aclose(self) -> None:
        await self._redis.aclose()
        bridge = getattr(self.limits_storage, "bridge", None)
        connection = bridge.get_connection() if bridge is not None else None
        if connection is not None:
            await asyncio.shield(connection.aclose())


def _pauses_key() -> str:
    return f"{KEY_PREFIX}:pauses"


def _pause_reasons_key() -> str:
    return f"{KEY_PREFIX}:pause-reasons"


def _ceilings_key() -> str:
    return f"{KEY_PREFIX}:ceilings"


def _pace_key() -> str:
    return f"{KEY_PREFIX}:pace"


def redacted(uri: str) -> str:
    """The URI without its password/token, for logs and error messages."""
    parts = urlsplit(uri)
    if parts.password is None and not parts.username:
        return uri
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}:***@" if parts.username else "***@"
    return urlunsplit((parts.scheme, f"{user}{host}{port}", parts.path, parts.query, ""))
