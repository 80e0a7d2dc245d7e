"""Circuit breaker for Gemini quota storms, shared by every Airflow component.

The first run that ends with the sentinel ("All segments failed analysis") opens it; while
it is open, launches wait (rescheduled: not failed, not alerted) instead of pushing every
queued run into an exhausted quota. It closes by itself after the cool-down (at least
``ANALYSIS_BREAKER_COOLDOWN_SECONDS``, longer when the run reported a longer Gemini
``retryDelay``) or at the first success. One Discord message when it opens, one when it
closes, with counts.

State (``shared_state``; everything is encoded in key names, so a listing is the state):
``analysis_breaker.trip.<at>.<until>.<failure id>`` per sentinel run,
``analysis_breaker.close.<episode start>.<at>`` when an episode ends,
``analysis_breaker.held.<episode start>.<run hash>`` per launch held back,
``analysis_breaker.msg.<episode start>.<opened|closed>`` the claims of the two messages.
An *episode* is computed from the trips and closes by the same pure function everywhere.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from analysis_pipeline.alerts import discord
from analysis_pipeline.alerts.message import breaker_embed
from analysis_pipeline.shared_state import SharedStore, airflow_store, claim, new_token

log = logging.getLogger(__name__)

PREFIX = "analysis_breaker."
COOLDOWN_LEVER = "ANALYSIS_BREAKER_COOLDOWN_SECONDS"
DEFAULT_COOLDOWN_SECONDS = 600
MAX_COOLDOWN_SECONDS = 3600
_RETRY_DELAY = (
    re.compile(r"retryDelay['\"]?\s*[:=]\s*['\"]?(\d+(?:\.\d+)?)s", re.IGNORECASE),
    re.compile(r"retry in (\d+(?:\.\d+)?)\s*s", re.IGNORECASE),
)


@dataclass
class Episode:
    start: int
    until: int
    trips: int
    ids: list[str]
    closed_at: int | None = None

    def is_open(self, now: float) -> bool:
        return self.closed_at is None and now < self.until

    def needs_closing(self, now: float) -> bool:
        return self.closed_at is None and now >= self.until


def cooldown_seconds(
    result: Mapping[str, Any] | None = None, last_lines: Sequence[str] = ()
) -> int:
    """The lever, or the longest Gemini retryDelay the run reported if that is longer."""
    try:
        base = int(os.environ.get(COOLDOWN_LEVER, DEFAULT_COOLDOWN_SECONDS))
    except ValueError:
        base = DEFAULT_COOLDOWN_SECONDS
    delays = [float((result or {}).get("retry_after_seconds") or 0)]
    for line in last_lines:
        for pattern in _RETRY_DELAY:
            delays.extend(float(m) for m in pattern.findall(line))
    return int(min(max(base, *delays), MAX_COOLDOWN_SECONDS))


def episodes(keys: Iterable[str]) -> list[Episode]:
    """Pure: the breaker's history from the store's key names."""
    trips: list[tuple[int, int, str]] = []
    closes: dict[int, int] = {}
    for key in keys:
        parts = key[len(PREFIX) :].split(".")
        if parts[0] == "trip" and len(parts) >= 4 and parts[1].isdigit() and parts[2].isdigit():
            trips.append((int(parts[1]), int(parts[2]), ".".join(parts[4:]) or "?"))
        elif parts[0] == "close" and len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            start, at = int(parts[1]), int(parts[2])
            closes[start] = min(at, closes.get(start, at))
    found: list[Episode] = []
    for at, until, analysis_id in sorted(trips):
        current = found[-1] if found else None
        end = None if current is None else (current.closed_at or current.until)
        if current is not None and end is not None and at < end:
            current.until = max(current.until, until)
            current.trips += 1
            current.ids.append(analysis_id)
        else:
            found.append(Episode(at, until, 1, [analysis_id], closes.get(at)))
    return found


def current(store: SharedStore) -> Episode | None:
    found = episodes(store.keys(PREFIX))
    return found[-1] if found else None


def _run_hash(context: Mapping[str, Any]) -> str:
    ti = context.get("ti")
    raw = f"{getattr(ti, 'dag_id', '?')}|{getattr(ti, 'run_id', '?')}"
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


def trip(
    context: Mapping[str, Any],
    analysis_id: str,
    *,
    cooldown: int,
    store: SharedStore | None = None,
    now: float | None = None,
) -> Episode | None:
    """A run ended with the sentinel: open (or extend) the breaker; announce an opening."""
    store = store or airflow_store()
    if store is None:  # outside Airflow there is nothing to share the breaker with
        return None
    now = int(time.time() if now is None else now)
    try:
        store.put(f"{PREFIX}trip.{now}.{now + cooldown}.{_run_hash(context)}.{analysis_id}", "1")
        episode = current(store)
        if episode is not None and episode.closed_at is None:
            _announce(store, episode, opened=True)  # claimed: only the first trip posts
        return episode
    except Exception as exc:  # the breaker is an optimisation: never fail the run over it
        log.warning("Gemini breaker not updated (%s)", type(exc).__name__)
        return None


def hold_until(
    context: Mapping[str, Any], *, store: SharedStore | None = None, now: float | None = None
) -> int | None:
    """Epoch seconds a launch should wait until, or None when it may go now."""
    store = store or airflow_store()
    if store is None:
        return None
    now = int(time.time() if now is None else now)
    try:
        episode = current(store)
        if episode is None:
            return None
        if episode.is_open(now):
            store.put(f"{PREFIX}held.{episode.start}.{_run_hash(context)}", "1")
            return episode.until
        if episode.needs_closing(now):
            _close(store, episode, at=episode.until)
        return None
    except Exception as exc:
        log.warning("Gemini breaker unreadable (%s); launching", type(exc).__name__)
        return None


def succeeded(*, store: SharedStore | None = None, now: float | None = None) -> None:
    """A run succeeded: the quota is back, close an open episode."""
    store = store or airflow_store()
    if store is None:
        return
    now = int(time.time() if now is None else now)
    try:
        episode = current(store)
        if episode is not None and episode.closed_at is None:
            _close(store, episode, at=min(now, episode.until))
    except Exception as exc:
        log.warning("Gemini breaker not closed (%s)", type(exc).__name__)


def _close(store: SharedStore, episode: Episode, *, at: int) -> None:
    store.put(f"{PREFIX}close.{episode.start}.{at}", "1")
    episode.closed_at = at
    if _announce(store, episode, opened=False):
        _forget_before(store, episode.start)


def _announce(store: SharedStore, episode: Episode, *, opened: bool) -> bool:
    which = "opened" if opened else "closed"
    if not claim(store, f"{PREFIX}msg.{episode.start}.{which}", new_token()):
        return False
    held = len(store.keys(f"{PREFIX}held.{episode.start}."))
    end = episode.until if opened else (episode.closed_at or episode.until)
    embed = breaker_embed(
        opened=opened,
        since=episode.start,
        until=end,
        sentinels=episode.trips,
        held=held,
        ids=episode.ids,
    )
    log.warning("Gemini quota breaker %s (episode %s)", which, episode.start)
    try:
        url = discord.webhook_url()
        if url:
            discord.post_message(url, embed)
    except Exception as exc:
        log.warning("breaker message not sent (%s)", type(exc).__name__)
    return True


def _forget_before(store: SharedStore, start: int) -> None:
    for key in store.keys(PREFIX):
        parts = key[len(PREFIX) :].split(".")
        if len(parts) > 1 and parts[1].isdigit() and int(parts[1]) < start:
            store.delete(key)
