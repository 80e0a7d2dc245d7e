"""Pure assembly of `result.json`: status, coverage, usage, exit codes. No I/O here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from analysis_engine.mapreduce import SegmentOutcome
from analysis_engine.pricing import Price, priced
from analysis_engine.timecode import TIME_BASIS_KEY

SCHEMA_VERSION = 1
# The exact text the DAGs and the Discord alert look for. Never reword it.
ALL_SEGMENTS_FAILED = "All segments failed analysis"

Status = Literal["complete", "partial", "failed", "invalid_input"]
Kind = Literal["task_analysis", "proctor_video"]

EXIT_CODES: Mapping[str, int] = {"complete": 0, "partial": 0, "invalid_input": 2}
EXIT_ALL_SEGMENTS_FAILED = 3
EXIT_UNEXPECTED = 1


def exit_code_for(status: Status, error: str | None) -> int:
    """0 complete/partial, 2 invalid input, 3 all segments failed, 1 anything else."""
    if status in EXIT_CODES:
        return EXIT_CODES[status]
    if status == "failed" and error == ALL_SEGMENTS_FAILED:
        return EXIT_ALL_SEGMENTS_FAILED
    return EXIT_UNEXPECTED


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class ModelCost(Protocol):
    """Per-model cost as the model client counts it (failed attempts included)."""

    calls: int  # attempts that reached the model, whatever their outcome
    failed_calls: int
    input_tokens: int
    output_tokens: int
    rate_limited: int  # attempts refused for quota (429)
    budget_wait_s: float  # seconds the attempts waited for the Gemini budget


def usage_summary(
    per_model: Mapping[str, ModelCost], prices: Mapping[str, Price] | None = None
) -> dict[str, Any]:
    """`calls` are answers used; `attempts` everything billed, retries included;
    `rate_limited` the attempts the service refused for quota (429) and `budget_wait_s` the
    time this analysis' calls waited for the Gemini budget (its share of the quota, or the
    fleet's queue with a shared store); `estimated_usd` per model and in total from the price
    table (analysis_engine.pricing)."""
    models = {
        name: {
            "calls": cost.calls - cost.failed_calls,
            "attempts": cost.calls,
            "input_tokens": cost.input_tokens,
            "output_tokens": cost.output_tokens,
            "rate_limited": cost.rate_limited,
            "budget_wait_s": round(cost.budget_wait_s, 3),
        }
        for name, cost in per_model.items()
    }
    totals: dict[str, Any] = {
        key: sum(m[key] for m in models.values())
        for key in ("calls", "attempts", "input_tokens", "output_tokens", "rate_limited")
    }
    totals["budget_wait_s"] = round(sum(m["budget_wait_s"] for m in models.values()), 3)
    return priced({**totals, "per_model": models}, prices)


def coverage_of(outcomes: Iterable[SegmentOutcome], duration_s: float) -> dict[str, Any]:
    """Segments total/analysed/failed/skipped, seconds covered, and what is missing."""
    outcomes = list(outcomes)
    by_state: dict[str, list[SegmentOutcome]] = {"analysed": [], "failed": [], "skipped": []}
    for outcome in outcomes:
        by_state[outcome.state].append(outcome)

    def seconds(state: str) -> float:
        return round(sum(o.segment.duration_s for o in by_state[state]), 3)

    return {
        "segments_total": len(outcomes),
        "segments_analysed": len(by_state["analysed"]),
        "segments_failed": len(by_state["failed"]),
        "segments_skipped": len(by_state["skipped"]),
        "segments_from_checkpoint": sum(1 for o in outcomes if o.from_checkpoint),
        "duration_s": round(duration_s, 3),
        "seconds_analysed": seconds("analysed"),
        "seconds_failed": seconds("failed"),
        "seconds_skipped": seconds("skipped"),
        "failed_ranges": [_range(o, reason=o.reason) for o in by_state["failed"]],
        "skipped_ranges": [_range(o, reason=o.reason) for o in by_state["skipped"]],
        # Set when the run stopped starting work early ("deadline" or "stopped").
        "cut_short_by": _cut_short_by(outcomes),
        "times": _time_conventions(by_state["analysed"]),
    }


def _time_conventions(analysed: Iterable[SegmentOutcome]) -> dict[str, int]:
    """How MAP answers gave their times (timecode.shift_onto_clock's notes): answers in
    another convention than asked are read correctly but counted; times that fit no
    convention were clamped to their segment, and are counted so it is never unnoticed."""
    notes = [o.output.get(TIME_BASIS_KEY) or {} for o in analysed if o.output is not None]
    return {
        "segments_other_convention": sum(1 for n in notes if n.get("answered") != n.get("asked")),
        "times_outside_segment": sum(int(n.get("outside_clip", 0)) for n in notes),
    }


def _cut_short_by(outcomes: Iterable[SegmentOutcome]) -> str | None:
    reasons = {o.skip_reason for o in outcomes if o.skip_reason is not None}
    return "stopped" if "stopped" in reasons else next(iter(reasons), None)


def _range(outcome: SegmentOutcome, *, reason: str | None) -> dict[str, Any]:
    seg = outcome.segment
    return {"index": seg.index, "start_s": seg.start_s, "end_s": seg.end_s, "reason": reason}


def map_status(outcomes: Iterable[SegmentOutcome]) -> tuple[Status, str | None]:
    """complete when every analysable segment succeeded; the sentinel when every one failed;
    a run cut short (SIGTERM, deadline) says so, and is `failed` only if nothing was analysed."""
    outcomes = [o for o in outcomes if o.segment.skip_reason is None]  # idle is by design
    total = len(outcomes)
    analysed = sum(1 for o in outcomes if o.state == "analysed")
    failed = sum(1 for o in outcomes if o.state == "failed")
    cut = _cut_short_by(outcomes)
    not_started = sum(1 for o in outcomes if o.skip_reason is not None)
    if failed == 0 and cut is None:
        return "complete", None
    if analysed == 0:
        if cut == "stopped":
            return "failed", "stopped"
        if cut is not None:
            return "failed", "deadline: the run deadline passed before any segment was analysed"
        refused = [o for o in outcomes if o.state == "failed"]
        if refused and not any(o.retryable for o in refused):
            # Not the sentinel (exit 3, retried for hours): running again would fail alike.
            return "failed", permanent_failure_reason(refused)
        return "failed", ALL_SEGMENTS_FAILED
    parts = [f"{failed} of {total} segments failed analysis"] if failed else []
    if cut is not None:
        parts.append(f"{cut}: {not_started} of {total} segments not analysed")
    if cut == "stopped":
        parts.reverse()  # the contract's reason comes first
    return "partial", "; ".join(parts)


def permanent_failure_reason(refused: Iterable[SegmentOutcome]) -> str:
    """One line naming why the model refused every segment (the first refusal that was
    actually answered, not one skipped because of it)."""
    ordered = sorted(refused, key=lambda o: (o.attempts == 0, o.segment.index))
    return f"Every segment failed for a reason retrying will not fix: {ordered[0].error}"


def build_result(
    *,
    kind: Kind,
    analysis_id: str | None,
    status: Status,
    error: str | None,
    report: dict[str, Any] | None,
    coverage: dict[str, Any] | None,
    usage: Mapping[str, ModelCost],
    timings: Mapping[str, float],
    models: Mapping[str, str],
    started_at: str,
    finished_at: str | None = None,
    input_uri: str | None = None,
    input_identity: str | None = None,
    prices: Mapping[str, Price] | None = None,
    rerun_id: str | None = None,
) -> dict[str, Any]:
    """`input` says which recording this result was made from (its identity is None when the
    run stopped before the recording was fetched); `rerun_id` which purposeful rerun made it
    (None: an ordinary run); `previous_result` (set when published) the earlier result it
    replaced, kept beside it."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "analysis_id": analysis_id,
        "input": {"uri": input_uri, "identity": input_identity},
        "status": status,
        "error": _one_line(error),
        "report": None if status == "invalid_input" else report,
        "coverage": coverage,
        "usage": usage_summary(usage, prices),
        "timings": {key: round(value, 3) for key, value in timings.items()},
        "models": dict(models),
        "started_at": started_at,
        "finished_at": finished_at or utc_now(),
        "rerun_id": rerun_id,
        "previous_result": None,
    }


def _one_line(text: str | None, limit: int = 500) -> str | None:
    if text is None:
        return None
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
