"""One Discord message per burst of failures with the same cause, across every process.

State lives in the shared store (``analysis_pipeline.shared_state``: Variables in the
metadata database), keyed by the failure's group and a clock-aligned window:

- each failure writes its own member key ``…<group>.<window>.f.<ms>.<failure id>.<analysis
  id>`` (so counting is a listing, never a lost increment);
- one process ``claim``s the burst and posts; the others edit the posted message with the
  count they list, or, if it is not posted yet, leave it to the poster, which lists again
  after posting and edits once if more arrived meanwhile.

Nothing is locked while Discord is called (its ``retry_after`` waits included).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time

from analysis_pipeline.alerts import discord
from analysis_pipeline.alerts.message import Alert, failure_embed
from analysis_pipeline.alerts.redaction import known_secrets
from analysis_pipeline.shared_state import SharedStore, claim, new_token

log = logging.getLogger(__name__)

PREFIX = "analysis_alerts."
DEFAULT_WINDOW_SECONDS = 900


def window_seconds() -> float:
    try:
        value = float(os.environ.get("ANALYSIS_ALERT_WINDOW_SECONDS", DEFAULT_WINDOW_SECONDS))
    except ValueError:
        return float(DEFAULT_WINDOW_SECONDS)
    return value if value > 0 else float(DEFAULT_WINDOW_SECONDS)


def group_prefix(alert: Alert, now: float, window: float) -> str:
    digest = hashlib.sha256(alert.key.encode()).hexdigest()[:16]
    return f"{PREFIX}{digest}.{int(now // window)}."


def _members(store: SharedStore, group: str) -> list[tuple[int, str]]:
    """(time in ms, analysis id) of every failure in the burst, oldest first; a failure
    reported twice (the worker and the dag-processor) counts once."""
    found: dict[str, tuple[int, str]] = {}
    for key in store.keys(group + "f."):
        parts = key[len(group) + 2 :].split(".", 2)
        if len(parts) == 3 and parts[0].isdigit():
            at, failure_id, analysis_id = int(parts[0]), parts[1], parts[2]
            if failure_id not in found or at < found[failure_id][0]:
                found[failure_id] = (at, analysis_id)
    return sorted(found.values())


def notify(alert: Alert, url: str, store: SharedStore, *, now: float | None = None) -> str:
    """Post or update the burst message; returns 'posted', 'updated' or 'counted'."""
    now = time.time() if now is None else now
    window = window_seconds()
    group = group_prefix(alert, now, window)
    store.put(f"{group}f.{int(now * 1000):015d}.{alert.failure_id}.{alert.analysis_id}", "1")
    secrets = known_secrets(url)

    def embed_for(members: list[tuple[int, str]]) -> dict:
        since = members[0][0] / 1000 if members else now
        ids = [analysis_id for _, analysis_id in members]
        return failure_embed(
            alert, count=max(len(members), 1), since=since, ids=ids, secrets=secrets
        )

    token = new_token()
    if claim(store, group + "lead", token):
        members = _members(store, group)
        try:
            message_id = discord.post_message(url, embed_for(members))
        except discord.DiscordError:
            store.delete(group + "lead")  # let the next failure of the burst try again
            raise
        store.put(group + "msg", message_id or "")
        later = _members(store, group)
        if message_id and len(later) > len(members):
            discord.edit_message(url, message_id, embed_for(later))
        _forget_old_windows(store, group)
        return "posted"
    message_id = store.get(group + "msg")
    if not message_id:
        return "counted"  # the poster lists the members after posting and includes this one
    discord.edit_message(url, message_id, embed_for(_members(store, group)))
    return "updated"


def _forget_old_windows(store: SharedStore, group: str) -> None:
    """Delete every cause's keys from windows before the previous one (best effort), so
    the Variables table holds at most two windows of alert state."""
    current = int(group.rstrip(".").rsplit(".", 1)[1])
    try:
        for key in store.keys(PREFIX):
            parts = key[len(PREFIX) :].split(".", 2)
            if len(parts) > 1 and parts[1].isdigit() and int(parts[1]) < current - 1:
                store.delete(key)
    except Exception as exc:
        log.info("old alert windows not cleaned (%s)", type(exc).__name__)
