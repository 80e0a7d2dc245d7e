"""Admission: when a launch may start, and how long it waits when it may not.

A launch that cannot start right now (Fargate refused it for capacity or quota, or the
Gemini circuit breaker is open) is *rescheduled*: ``AirflowRescheduleException`` puts the
task ``up_for_reschedule``, which is neither a failure nor a retry, so no alert fires and no
retry is spent. The wait is bounded by the time since the first reschedule of this try
(not by a count: jittered backoff makes a count mean anything from 18 to 24 hours).
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk.exceptions import AirflowFailException, AirflowRescheduleException

CAPACITY_REASON_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"^RESOURCE:", re.IGNORECASE),
    re.compile(r"reached the limit on the number of", re.IGNORECASE),
    re.compile(r"capacity is unavailable", re.IGNORECASE),
    re.compile(r"rate exceeded", re.IGNORECASE),
)
THROTTLING_CODES = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "LimitExceededException"}
)
# A day of waiting: then a human should look (quota request stuck, region outage), so the
# task fails normally and alerts.
MAX_ADMISSION_WAIT = timedelta(hours=24)


class NotAdmittedForTooLong(AirflowFailException):
    """Admission refusals went on past MAX_ADMISSION_WAIT: a human should look.

    Not retried: a retry would restart the wait and wait another day.
    """


class NotAdmitted(AirflowRescheduleException):
    """The launch may not start now (capacity, quota, open breaker): try again later."""

    def __init__(self, reason: str, *, reschedule_date: datetime) -> None:
        super().__init__(reschedule_date)
        self.reason = reason

    def __str__(self) -> str:
        return f"Not admitted ({self.reason}); retry at {self.reschedule_date}"


# Kept as the name operators know from the logs and the README.
FargateCapacityUnavailable = NotAdmitted
FargateNotAdmittedForTooLong = NotAdmittedForTooLong


def is_capacity_refusal(reasons: Sequence[str]) -> bool:
    return bool(reasons) and all(
        any(p.search(reason) for p in CAPACITY_REASON_PATTERNS) for reason in reasons
    )


def admission_backoff(
    reschedule_count: int,
    *,
    base: timedelta = timedelta(minutes=1),
    cap: timedelta = timedelta(minutes=15),
) -> timedelta:
    """Exponential, jittered to 50-100%: 12 refused launches must not retry in lockstep."""
    ceiling = min(base * (2 ** min(reschedule_count, 16)), cap)
    return max(timedelta(seconds=15), ceiling * random.uniform(0.5, 1.0))


def first_reschedule(context: Mapping[str, Any]) -> datetime | None:
    """When this try was first rescheduled (None on the first attempt or outside Airflow)."""
    if not int(context.get("task_reschedule_count", 0) or 0):
        return None
    getter = getattr(context.get("ti"), "get_first_reschedule_date", None)
    try:
        return getter(context) if getter else None
    except Exception:  # a lookup failure must not turn a wait into a failure
        return None


def not_admitted(
    context: Mapping[str, Any],
    reason: str,
    *,
    not_before: datetime | None = None,
    now: datetime | None = None,
) -> AirflowFailException | AirflowRescheduleException:
    """The exception to raise for a refused launch: reschedule, or give up after a day."""
    now = now or datetime.now(UTC)
    first = first_reschedule(context)
    if first is not None and now - first >= MAX_ADMISSION_WAIT:
        waited = (now - first).total_seconds() / 3600
        return NotAdmittedForTooLong(f"not admitted for {waited:.1f} h; last: {reason}")
    count = int(context.get("task_reschedule_count", 0) or 0)
    when = now + admission_backoff(count)
    if not_before is not None and not_before > when:
        when = not_before
    return NotAdmitted(reason, reschedule_date=when)
