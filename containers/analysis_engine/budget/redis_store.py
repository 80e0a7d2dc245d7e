"""The fleet's budget in Redis or Valkey: one Lua script per operation, one round trip each.

Every key carries the hash tag `{gemini-budget}`, so every script's keys live in one hash
slot: the scripts run unchanged on a single node, on a cluster-mode endpoint with every slot
on one node (ElastiCache Serverless behaves as one), and on a sharded cluster through a
cluster-aware client (`redis+cluster://` / `rediss+cluster://`, which follows the slot to its
node). A plain `redis://` URI that lands on one node of a sharded cluster is refused at
start-up (`check`), never by failing every call later.

The user Terraform creates may touch only these keys (`ACL_KEY_PATTERN`), and the start-up
check runs a real budget script under it, so a wrong password, certificate, ACL or topology
stops the container at once with one line.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from analysis_engine.budget import law
from analysis_engine.budget.store import (
    ALIVE_SECONDS,
    Admission,
    AdmitRequest,
    LeaseRecord,
    Snapshot,
)

KEY_PREFIX = "{gemini-budget}"
# What the store's user must be allowed to touch (terraform/budget_store.tf writes the ACL).
ACL_KEY_PATTERN = f"{KEY_PREFIX}:*"
# Keys left behind by a fleet that stopped altogether go away on their own.
KEY_TTL_SECONDS = 3600
CONNECT_TIMEOUT_SECONDS = 2.0
SOCKET_TIMEOUT_SECONDS = 5.0
SCHEMES = ("redis://", "rediss://", "redis+cluster://", "rediss+cluster://")

# KEYS of every per-model script, in this order (see _keys).
_KEY_NAMES = ("window", "tokens", "queue", "tickets", "alive", "since", "served", "active")

_CEILING_NOW = """
local function ceiling_now(m, limit, now, window_s, step)
  local learnt = tonumber(redis.call('hget', KEYS[9], m .. ':ceiling'))
  if not learnt then return limit end
  local quiet = tonumber(redis.call('hget', KEYS[9], m .. ':quiet')) or now
  local windows = math.floor(math.max(0, now - quiet) / window_s)
  return math.min(limit, learnt + step * limit * windows)
end

-- Forget the leases that left the window; returns (requests, tokens) still in it.
local function prune(now, window_s)
  local cutoff = now - window_s
  local expired = redis.call('zrangebyscore', KEYS[1], '-inf', cutoff)
  local freed = 0
  for i = 1, #expired, 500 do
    local part = {unpack(expired, i, math.min(i + 499, #expired))}
    for _, size in ipairs(redis.call('hmget', KEYS[2], unpack(part))) do
      freed = freed + (tonumber(size) or 0)
    end
    redis.call('hdel', KEYS[2], unpack(part))
  end
  if #expired > 0 then redis.call('zremrangebyscore', KEYS[1], '-inf', cutoff) end
  local requests = redis.call('zcard', KEYS[1])
  local used = (tonumber(redis.call('hget', KEYS[2], '_sum')) or 0) - freed
  if requests == 0 then used = 0 end
  redis.call('hset', KEYS[2], '_sum', used)
  return requests, used
end
"""

# One turn at the store (see store.AdmitRequest and store.py's module doc for the rules).
# KEYS: window, tokens, queue, tickets, alive, since, served, active, state, daily.
# ARGV: model, ticket, kind, weight, order, now, lease, tokens, rpm, tpm, window_s,
#       pace_burst, aging_s, epoch, alive_s, ttl, step.
_ADMIT = (
    _CEILING_NOW
    + """
local m, ticket, kind = ARGV[1], ARGV[2], ARGV[3]
local weight, now, tokens = tonumber(ARGV[4]), tonumber(ARGV[6]), tonumber(ARGV[8])
local rpm, tpm, window_s = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local burst, ttl = tonumber(ARGV[12]), tonumber(ARGV[16])

local epoch = redis.call('hget', KEYS[9], 'epoch')
if not epoch then
  epoch = ARGV[14]
  redis.call('hset', KEYS[9], 'epoch', epoch)
end

for _, t in ipairs(redis.call('zrangebyscore', KEYS[5], '-inf', now)) do
  redis.call('zrem', KEYS[3], t)
  redis.call('zrem', KEYS[5], t)
  redis.call('zrem', KEYS[6], t)
  redis.call('hdel', KEYS[4], t)
end

if not redis.call('zscore', KEYS[3], ticket) then
  -- A kind that had nobody in line starts no earlier than the fleet's virtual time (the
  -- start of the last admission): no credit for idling (start-time fair queueing).
  local idle = true
  local flat = redis.call('hgetall', KEYS[4])
  for i = 2, #flat, 2 do
    if flat[i] == kind then idle = false end
  end
  local vt = tonumber(redis.call('hget', KEYS[7], '_vt')) or 0
  if idle and (tonumber(redis.call('hget', KEYS[7], kind)) or 0) < vt then
    redis.call('hset', KEYS[7], kind, vt)
  end
  redis.call('zadd', KEYS[6], now, ticket)
end
redis.call('zadd', KEYS[3], ARGV[5], ticket)
redis.call('hset', KEYS[4], ticket, kind)
redis.call('zadd', KEYS[5], now + tonumber(ARGV[15]), ticket)
redis.call('hset', KEYS[7], 'w:' .. kind, ARGV[4])

-- First in line: the ticket that waited longest past the aging bound, else the first of
-- the kind furthest behind its weighted share.
local aged = now - tonumber(ARGV[13])
local head = redis.call('zrangebyscore', KEYS[6], '-inf', aged, 'LIMIT', 0, 1)[1]
if not head then
  local best, seen = nil, {}
  for _, t in ipairs(redis.call('zrange', KEYS[3], 0, -1)) do
    local k = redis.call('hget', KEYS[4], t) or ''
    if not seen[k] then
      seen[k] = true
      local v = tonumber(redis.call('hget', KEYS[7], k)) or 0
      if best == nil or v < best then head, best = t, v end
    end
  end
end

local requests, used = prune(now, window_s)
local ceiling = ceiling_now(m, tpm, now, window_s, tonumber(ARGV[17]))
local pause = tonumber(redis.call('hget', KEYS[9], m .. ':pause')) or 0
local reason = redis.call('hget', KEYS[9], m .. ':reason') or ''
local daily = redis.call('get', KEYS[10]) or ''
local next_at = tonumber(redis.call('hget', KEYS[9], m .. ':next')) or 0

local wait = -1
if daily ~= '' then
  wait = 0
elseif pause > now then
  wait = pause - now
elseif head ~= ticket then
  wait = 0
elseif requests + 1 > rpm then
  local oldest = redis.call('zrange', KEYS[1], 0, 0, 'WITHSCORES')[2]
  wait = math.max(0, tonumber(oldest) + window_s - now)
elseif used > 0 and used + tokens > ceiling then
  wait = 0
elseif burst > 0 and next_at > now then
  wait = next_at - now
end

local admitted = 0
if wait < 0 then
  admitted, wait = 1, 0
  redis.call('zadd', KEYS[1], now, ARGV[7])
  redis.call('hset', KEYS[2], ARGV[7], tokens)
  used, requests = used + tokens, requests + 1
  redis.call('hset', KEYS[2], '_sum', used)
  local start = tonumber(redis.call('hget', KEYS[7], kind)) or 0
  redis.call('hset', KEYS[7], '_vt', tostring(start))
  redis.call('hset', KEYS[7], kind, tostring(start + tokens / weight))
  redis.call('zadd', KEYS[6], now, ticket)
  redis.call('zadd', KEYS[8], now, ticket)
  if burst > 0 then
    local spacing = tokens * window_s / (burst * ceiling)
    redis.call('hset', KEYS[9], m .. ':next', tostring(math.max(next_at, now) + spacing))
  end
end
redis.call('zremrangebyscore', KEYS[8], '-inf', now - window_s)
for i = 1, 9 do redis.call('expire', KEYS[i], ttl) end
return {admitted, tostring(wait), head or '', tostring(pause), reason, tostring(ceiling),
        tostring(used), requests, epoch, daily, redis.call('zcard', KEYS[3]),
        redis.call('zcard', KEYS[8])}
"""
)

# The state of one model without taking a turn (also the start-up check: it runs under the
# store's user with every key an admission touches).
# KEYS: as _ADMIT. ARGV: model, now, window_s.
_SNAPSHOT = (
    _CEILING_NOW
    + """
local m, now, window_s = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local requests, used = prune(now, window_s)
local by_kind = {}
local alive = redis.call('zrangebyscore', KEYS[5], '(' .. ARGV[2], '+inf')
for _, t in ipairs(alive) do
  local k = redis.call('hget', KEYS[4], t) or ''
  by_kind[k] = (by_kind[k] or 0) + 1
end
local kinds = {}
for k, n in pairs(by_kind) do
  table.insert(kinds, k)
  table.insert(kinds, n)
end
local fields = redis.call('hmget', KEYS[9], m .. ':ceiling', m .. ':quiet', m .. ':streak',
  m .. ':episode', m .. ':suspect', m .. ':version', m .. ':pause', m .. ':reason', 'epoch')
return {#alive, kinds, tostring(used), requests, fields[1] or '', fields[2] or '',
        fields[3] or '', fields[4] or '', fields[5] or '', fields[6] or '', fields[7] or '',
        fields[8] or '', redis.call('get', KEYS[10]) or '', fields[9] or ''}
"""
)

# Leave the line. KEYS: as _ADMIT. ARGV: ticket.
_LEAVE = """
redis.call('zrem', KEYS[3], ARGV[1])
redis.call('zrem', KEYS[5], ARGV[1])
redis.call('zrem', KEYS[6], ARGV[1])
redis.call('hdel', KEYS[4], ARGV[1])
return 1
"""

# Re-size a lease (restoring it at its own time if the store lost it); an answered call
# clears a suspicion at or below the window it was admitted into (see law).
# KEYS: window, tokens, state. ARGV: lease, tokens, admitted_at, now, window_s, ttl, model,
# window_before, clears.
_SETTLE = """
local m = ARGV[7]
local suspect = tonumber(redis.call('hget', KEYS[3], m .. ':suspect')) or 0
if suspect > 0 and suspect * tonumber(ARGV[9]) <= tonumber(ARGV[8]) then
  redis.call('hset', KEYS[3], m .. ':suspect', 0)
  redis.call('hincrby', KEYS[3], m .. ':version', 1)
end
local new = tonumber(ARGV[2])
local old = redis.call('hget', KEYS[2], ARGV[1])
local sum = tonumber(redis.call('hget', KEYS[2], '_sum')) or 0
if old then
  sum = sum + new - tonumber(old)
elseif tonumber(ARGV[3]) > tonumber(ARGV[4]) - tonumber(ARGV[5]) then
  redis.call('zadd', KEYS[1], ARGV[3], ARGV[1])
  sum = sum + new
else
  return 0
end
redis.call('hset', KEYS[2], ARGV[1], new)
redis.call('hset', KEYS[2], '_sum', sum)
redis.call('expire', KEYS[1], ARGV[6])
redis.call('expire', KEYS[2], ARGV[6])
return 1
"""

# Forget a lease the service refused; returns the tokens of the leases admitted before it
# and still counted (the window the service held). KEYS: window, tokens. ARGV: lease.
_REFUND = """
local old = redis.call('hget', KEYS[2], ARGV[1])
local sum = tonumber(redis.call('hget', KEYS[2], '_sum')) or 0
if not old then return tostring(sum) end
local at = redis.call('zscore', KEYS[1], ARGV[1])
local before = 0
local earlier = redis.call('zrangebyscore', KEYS[1], '-inf', '(' .. at)
for i = 1, #earlier, 500 do
  local part = {unpack(earlier, i, math.min(i + 499, #earlier))}
  for _, size in ipairs(redis.call('hmget', KEYS[2], unpack(part))) do
    before = before + (tonumber(size) or 0)
  end
end
redis.call('hdel', KEYS[2], ARGV[1])
redis.call('zrem', KEYS[1], ARGV[1])
sum = sum - tonumber(old)
if redis.call('zcard', KEYS[1]) == 0 then sum = 0 end
redis.call('hset', KEYS[2], '_sum', sum)
return tostring(before)
"""

# Put back leases the store lost. KEYS: window, tokens.
# ARGV: now, window_s, ttl, then (lease, admitted_at, tokens) triples.
_RESTORE = """
local now, window_s = tonumber(ARGV[1]), tonumber(ARGV[2])
local sum = tonumber(redis.call('hget', KEYS[2], '_sum')) or 0
local restored = 0
for i = 4, #ARGV, 3 do
  if tonumber(ARGV[i + 1]) > now - window_s and not redis.call('hget', KEYS[2], ARGV[i]) then
    redis.call('zadd', KEYS[1], ARGV[i + 1], ARGV[i])
    redis.call('hset', KEYS[2], ARGV[i], ARGV[i + 2])
    sum = sum + tonumber(ARGV[i + 2])
    restored = restored + 1
  end
end
redis.call('hset', KEYS[2], '_sum', sum)
redis.call('expire', KEYS[1], ARGV[3])
redis.call('expire', KEYS[2], ARGV[3])
return restored
"""

# The learnt ceiling, compare-and-set on its version; the pause only ever moves later.
# KEYS: state. ARGV: model, version, tokens, quiet, streak, episode, suspect, pause, reason,
# ttl.
_UPDATE_CEILING = """
local m = ARGV[1]
if (tonumber(redis.call('hget', KEYS[1], m .. ':version')) or 0) ~= tonumber(ARGV[2]) then
  return 0
end
redis.call('hset', KEYS[1], m .. ':ceiling', ARGV[3], m .. ':quiet', ARGV[4],
  m .. ':streak', ARGV[5], m .. ':episode', ARGV[6], m .. ':suspect', ARGV[7],
  m .. ':version', tonumber(ARGV[2]) + 1)
if tonumber(ARGV[8]) >= (tonumber(redis.call('hget', KEYS[1], m .. ':pause')) or 0) then
  redis.call('hset', KEYS[1], m .. ':pause', ARGV[8], m .. ':reason', ARGV[9])
end
redis.call('expire', KEYS[1], ARGV[10])
return 1
"""


class StoreTopologyError(RuntimeError):
    """A plain client met a sharded cluster (MOVED): the URI must say `+cluster`."""


def _state_key() -> str:
    return f"{KEY_PREFIX}:state"


def _keys(model: str) -> list[str]:
    return [
        *(f"{KEY_PREFIX}:{name}:{model}" for name in _KEY_NAMES),
        _state_key(),
        f"{KEY_PREFIX}:daily:{model}",
    ]


def _plain_uri(uri: str) -> tuple[str, bool]:
    """(the URI redis-py understands, whether it names a sharded cluster)."""
    scheme, _, rest = uri.partition("://")
    if scheme.endswith("+cluster"):
        return f"{scheme.removesuffix('+cluster')}://{rest}", True
    return uri, False


_OPTIONS: dict[str, Any] = {
    "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
    "socket_timeout": SOCKET_TIMEOUT_SECONDS,
}


def _retry() -> Retry:
    """One quick retry (a pooled connection the store closed while restarting), then the
    error: the budget's own loop waits and retries, and its grace decides (redis-py's
    default, three retries backing off to 10 s, held a turn for 15 s)."""
    return Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 1)


class RedisStore:
    """`redis://`, `rediss://` (one endpoint) or `redis+cluster://`, `rediss+cluster://` (a
    sharded cluster, through redis-py's cluster client): shared by every container."""

    shared = True

    def __init__(self, uri: str) -> None:
        plain, cluster = _plain_uri(uri)
        options = {**_OPTIONS, "decode_responses": True, "retry": _retry()}
        if cluster:
            self._redis: Any = redis.asyncio.cluster.RedisCluster.from_url(plain, **options)
        else:
            self._redis = redis.asyncio.Redis.from_url(plain, **options)
        scripts = {
            "admit": _ADMIT,
            "snapshot": _SNAPSHOT,
            "leave": _LEAVE,
            "settle": _SETTLE,
            "refund": _REFUND,
            "restore": _RESTORE,
            "ceiling": _UPDATE_CEILING,
        }
        self._scripts = {name: self._redis.register_script(text) for name, text in scripts.items()}

    @staticmethod
    def check(uri: str, *, model: str, window_s: float) -> None:
        """Run the budget's snapshot script once, as every container will, or raise (redis
        errors, OSError, StoreTopologyError): auth, TLS, ACL, scripts and topology all
        answer here, not 30 s into the first call."""
        plain, cluster = _plain_uri(uri)
        options = {**_OPTIONS, "socket_timeout": CONNECT_TIMEOUT_SECONDS}
        client: Any = (
            redis.cluster.RedisCluster.from_url(plain, **options)
            if cluster
            else redis.Redis.from_url(plain, **options)
        )
        try:
            client.register_script(_SNAPSHOT)(
                keys=_keys(model), args=[model, repr(time.time()), repr(float(window_s))]
            )
        except redis.exceptions.MovedError as exc:
            raise StoreTopologyError(
                f"it is one node of a sharded Redis Cluster (MOVED {exc}): use "
                f"{uri.split('://', 1)[0]}+cluster://… so the budget follows the slots"
            ) from None
        finally:
            client.close()

    async def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await self._scripts[name](keys=keys, args=args)

    async def admit(self, request: AdmitRequest) -> Admission:
        args = [
            request.model,
            request.ticket,
            request.kind,
            repr(float(request.weight)),
            repr(float(request.order)),
            repr(request.now),
            request.lease,
            int(request.tokens),
            int(request.rpm),
            int(request.tpm),
            repr(float(request.window_s)),
            repr(float(request.pace_burst)),
            repr(float(request.aging_s)),
            request.epoch,
            repr(ALIVE_SECONDS),
            KEY_TTL_SECONDS,
            repr(law.STEP),
        ]
        reply = await self._run("admit", _keys(request.model), args)
        admitted, wait, head, pause, reason, ceiling, used, requests, epoch, daily = reply[:10]
        return Admission(
            admitted=bool(int(admitted)),
            wait_s=float(wait),
            head=head or None,
            paused_until=float(pause),
            pause_reason=(reason or None) if float(pause) > request.now else None,
            ceiling_tokens=float(ceiling),
            window_tokens=int(float(used)),
            window_requests=int(requests),
            epoch=epoch,
            daily=daily or None,
            waiting=int(reply[10]),
            active=int(reply[11]),
        )

    async def leave(self, model: str, ticket: str) -> None:
        await self._run("leave", _keys(model), [ticket])

    async def settle(self, record: LeaseRecord, tokens: int, now: float, window_s: float) -> None:
        args = [record.lease, int(tokens), repr(record.admitted_at), repr(now), repr(window_s)]
        args += [KEY_TTL_SECONDS, record.model, int(record.window_before), repr(law.CLEARS)]
        await self._run("settle", [*_keys(record.model)[:2], _state_key()], args)

    async def refund(self, model: str, lease: str) -> int:
        return int(float(await self._run("refund", _keys(model)[:2], [lease])))

    async def restore(self, records: list[LeaseRecord], now: float, window_s: float) -> int:
        by_model: dict[str, list[LeaseRecord]] = defaultdict(list)
        for record in records:
            by_model[record.model].append(record)
        restored = 0
        for model, kept in by_model.items():
            args: list[Any] = [repr(now), repr(window_s), KEY_TTL_SECONDS]
            for record in kept:
                args += [record.lease, repr(record.admitted_at), int(record.tokens)]
            restored += int(await self._run("restore", _keys(model)[:2], args))
        return restored

    async def snapshot(self, model: str, now: float, window_s: float) -> Snapshot:
        reply = await self._run("snapshot", _keys(model), [model, repr(now), repr(window_s)])
        waiting, kinds, used, requests, tokens, quiet, streak, episode, suspect = reply[:9]
        version, pause, reason, daily, epoch = reply[9:14]
        ceiling = (
            law.Ceiling(
                float(tokens),
                float(quiet),
                int(streak or 0),
                float(episode or 0),
                float(suspect or 0),
            )
            if tokens and quiet
            else None
        )
        return Snapshot(
            waiting=int(waiting),
            waiting_by_kind={kinds[i]: int(kinds[i + 1]) for i in range(0, len(kinds), 2)},
            window_tokens=int(float(used)),
            window_requests=int(requests),
            ceiling=ceiling,
            ceiling_version=int(version or 0),
            paused_until=float(pause or 0.0),
            pause_reason=reason or None,
            daily=daily or None,
            epoch=epoch or None,
        )

    async def update_ceiling(
        self, model: str, ceiling: law.Ceiling, version: int, pause_until: float, reason: str
    ) -> bool:
        args = [
            model,
            version,
            repr(ceiling.tokens),
            repr(ceiling.quiet_since),
            ceiling.streak,
            repr(ceiling.episode_until),
            repr(ceiling.suspect),
            repr(pause_until),
            reason,
            KEY_TTL_SECONDS,
        ]
        return bool(int(await self._run("ceiling", [_state_key()], args)))

    async def exhaust(self, model: str, reason: str, until: float, now: float) -> None:
        await self._redis.set(_keys(model)[-1], reason, px=max(1, int((until - now) * 1000)))

    async def aclose(self) -> None:
        await asyncio.shield(self._redis.aclose())


def redacted(uri: str) -> str:
    """The URI without its password/token, for logs and error messages."""
    parts = urlsplit(uri)
    if parts.password is None and not parts.username:
        return uri
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}:***@" if parts.username else "***@"
    return urlunsplit((parts.scheme, f"{user}{host}{port}", parts.path, parts.query, ""))
