"""What both launchers do once a container has stopped: classify it and tell the breaker."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from analysis_pipeline import storage
from analysis_pipeline.alerts import breaker
from analysis_pipeline.outcome import AllSegmentsFailed, classify, drop_stale

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


def own_result(
    output_uri: str, launched_at: datetime | None
) -> tuple[str | None, dict[str, Any] | None]:
    """(uri, content) of the result this launch's container wrote: `result.json`, or, when a
    better earlier result of the same recording stayed there, the file the container wrote
    beside it (`result.<status>-<time>.json`, the newest that started after the launch)."""
    main = output_uri + "result.json"
    result = drop_stale(storage.read_json(main), launched_at)
    if result is not None:
        return main, result
    for name in sorted(storage.list_names(output_uri, prefix="result."), reverse=True):
        if name == "result.json" or not name.endswith(".json"):
            continue
        beside = drop_stale(storage.read_json(output_uri + name), launched_at)
        if beside is not None:
            return output_uri + name, beside
    return None, None


def run_id_of(context: Mapping[str, Any]) -> str | None:
    """The DAG run's id (a rerun's RERUN_ID)."""
    run_id = context.get("run_id") or getattr(context.get("ti"), "run_id", None)
    return str(run_id) if run_id else None
