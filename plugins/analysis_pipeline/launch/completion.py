"""What both launchers do once a container has stopped: classify it and tell the breaker."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from analysis_pipeline.alerts import breaker
from analysis_pipeline.outcome import AllSegmentsFailed, classify

# The container must stop starting model calls early enough to REDUCE and write its
# result before Airflow's timeout stops it: 10% of the timeout, between 5 and 15 minutes.
MIN_DEADLINE_MARGIN = timedelta(minutes=5)
MAX_DEADLINE_MARGIN = timedelta(minutes=15)


def run_deadline_seconds(execution_timeout: timedelta) -> int:
    """``RUN_DEADLINE_SECONDS`` for a launch with this timeout (always shorter than it)."""
    margin = min(max(execution_timeout * 0.1, MIN_DEADLINE_MARGIN), MAX_DEADLINE_MARGIN)
    margin = min(margin, execution_timeout / 2)  # tiny test timeouts keep half
    return max(int((execution_timeout - margin).total_seconds()), 1)


def classify_run(
    context: Mapping[str, Any],
    analysis_id: str,
    *,
    exit_code: int | None,
    result: Mapping[str, Any] | None,
    last_lines: Sequence[str] = (),
) -> dict[str, Any]:
    """``outcome.classify`` plus the breaker: the sentinel trips it, a success closes it."""
    try:
        classified = classify(exit_code=exit_code, result=result, last_lines=last_lines)
    except AllSegmentsFailed:
        cooldown = breaker.cooldown_seconds(result, last_lines)
        breaker.trip(context, analysis_id, cooldown=cooldown)
        raise
    breaker.succeeded()
    return classified
