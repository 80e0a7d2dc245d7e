"""Pure assembly of `result.json`: status, coverage, usage, exit codes. No I/O here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from analysis_engine.models import Segment

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


def usage_summary(per_model: Mapping[str, ModelCost]) -> dict[str, Any]:
    """`calls` are answers used; `attempts` everything billed, retries included."""
    models = {
        name: {
            "calls": cost.calls - cost.failed_calls,
            "attempts": cost.calls,
            "input_tokens": cost.input_tokens,
            "output_tokens": cost.output_tokens,
        }
        for name, cost in per_model.items()
    }
    totals = {
        key: sum(m[key] for m in models.values())
        for key in ("calls", "attempts", "input_tokens", "output_tokens")
    }
    return {**totals, "per_model": models}


@dataclass(frozen=True)
class SegmentOutcome:
    """What happened to one segment: analysed (fresh or from a checkpoint), failed or skipped."""

    segment: Segment
    output: dict[str, Any] | None = None
    error: str | None = None
    attempts: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    from_checkpoint: bool = False

    @property
    def state(self) -> Literal["analysed", "failed", "skipped"]:
        if self.segment.skip_reason is not None:
            return "skipped"
        return "analysed" if self.output is not None else "failed"


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
        "failed_ranges": [_range(o, reason=o.error) for o in by_state["failed"]],
        "skipped_ranges": [_range(o, reason=o.segment.skip_reason) for o in by_state["skipped"]],
    }


def _range(outcome: SegmentOutcome, *, reason: str | None) -> dict[str, Any]:
    seg = outcome.segment
    return {"index": seg.index, "start_s": seg.start_s, "end_s": seg.end_s, "reason": reason}


def map_status(outcomes: Iterable[SegmentOutcome]) -> tuple[Status, str | None]:
    """complete when every analysable segment succeeded; the sentinel when none did."""
    states = [o.state for o in outcomes if o.state != "skipped"]
    failed = states.count("failed")
    if failed == 0:
        return "complete", None
    if failed == len(states):
        return "failed", ALL_SEGMENTS_FAILED
    return "partial", f"{failed} of {len(states)} segments failed analysis"


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
) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "analysis_id": analysis_id,
        "status": status,
        "error": _one_line(error),
        "report": None if status == "invalid_input" else report,
        "coverage": coverage,
        "usage": usage_summary(usage),
        "timings": {key: round(value, 3) for key, value in timings.items()},
        "models": dict(models),
        "started_at": started_at,
        "finished_at": finished_at or utc_now(),
    }


def _one_line(text: str | None, limit: int = 500) -> str | None:
    if text is None:
        return None
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
