"""The task-analysis kind: MAP/REDUCE specifics plugged into the shared runner."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from analysis_engine.models import Segment
from analysis_engine.reduce import ReduceStage
from analysis_engine.result import Kind
from analysis_engine.timecode import TIME_BASIS_KEY, shift_onto_clock
from task_analyzer import prompts
from task_analyzer.rubric import (
    DEFAULT_SCALE,
    Criterion,
    bounded_scores,
    common_scale,
    rubric_scale,
    score_criteria,
    structured_criteria,
)
from task_analyzer.schemas import SegmentAnalysis, TaskReport

if TYPE_CHECKING:  # the run context pulls in adapters; the kind itself stays pure
    from analysis_engine.kinds import RunContext


class TaskAnalysisKind:
    name: Kind = "task_analysis"
    prompt_version = prompts.PROMPT_VERSION
    map_schema = SegmentAnalysis
    reduce_schema = TaskReport
    skip_idle = True

    def __init__(self, context: dict[str, Any] | None = None) -> None:
        self._context = context or {}

    def prepare(self, run: RunContext) -> dict[str, Any]:
        self._context = run.settings.analysis_context
        return {}

    def map_prompt(
        self, segment: Segment, *, total: int, duration_s: float, absolute_times: bool = False
    ) -> str:
        return prompts.map_prompt(
            segment, total=total, duration_s=duration_s, context=self._context,
            absolute_times=absolute_times,
        )  # fmt: skip

    def to_absolute(
        self, output: BaseModel, segment: Segment, *, absolute_times: bool = False
    ) -> dict[str, Any]:
        """Times onto the recording's clock, in whichever convention the model answered."""
        data = output.model_dump()
        refs = [(a, k) for a in data["activities"] for k in ("start_s", "end_s")]
        refs += [(e, "at_s") for e in data["notable_events"]]
        asked, other = ("clip", 0.0), ("recording", segment.start_s)
        data[TIME_BASIS_KEY] = shift_onto_clock(
            refs,
            clip_start_s=segment.start_s,
            clip_end_s=segment.end_s,
            candidates=[other, asked] if absolute_times else [asked, other],
        )
        for activity in data["activities"]:
            activity["end_s"] = max(activity["end_s"], activity["start_s"])
        return data

    def reduce_prompt(
        self,
        analysed: Sequence[tuple[Segment, dict[str, Any]]],
        *,
        coverage: dict[str, Any],
        run: RunContext,
        extras: dict[str, Any],
        stage: ReduceStage | None = None,
    ) -> str:
        return prompts.reduce_prompt(
            analysed, coverage=coverage, context=self._context, stage=stage or ReduceStage()
        )

    def assemble_report(
        self,
        *,
        reduced: BaseModel | None,
        analysed: Sequence[tuple[Segment, dict[str, Any]]],
        coverage: dict[str, Any],
        run: RunContext,
        extras: dict[str, Any],
    ) -> dict[str, Any]:
        return assemble_report(
            reduced, analysed, coverage, scale=rubric_scale(self._context),
            criteria=structured_criteria(self._context),
        )  # fmt: skip

    def fallback_report(self, *, run: RunContext, extras: dict[str, Any]) -> dict[str, Any] | None:
        return None  # nothing about a screen recording is known without the model


def assemble_report(
    reduced: BaseModel | None,
    analysed: Sequence[tuple[Segment, dict[str, Any]]],
    coverage: dict[str, Any],
    *,
    scale: tuple[int, int] = DEFAULT_SCALE,
    criteria: list[Criterion] | None = None,
) -> dict[str, Any]:
    """REDUCE's answer plus the mechanical facts from MAP; MAP alone if REDUCE failed.
    With structured `criteria`, the scores are the rubric's (see task_analyzer.rubric)."""
    base = {
        "tools_used": _tools(analysed),
        "notable_events": sorted(
            (event for _, output in analysed for event in output["notable_events"]),
            key=lambda event: event["at_s"],
        ),
        "idle_ranges": [
            {"start_s": r["start_s"], "end_s": r["end_s"]}
            for r in coverage["skipped_ranges"]
            if r["reason"] == "idle"
        ],
        # Failed segments, and those a stop or the run deadline kept from starting.
        "not_analysed_ranges": [
            {"start_s": r["start_s"], "end_s": r["end_s"], "reason": r["reason"]}
            for r in sorted(
                [
                    *coverage["failed_ranges"],
                    *(r for r in coverage["skipped_ranges"] if r["reason"] != "idle"),
                ],
                key=lambda r: r["start_s"],
            )
        ],
    }
    if reduced is not None:
        report = _within(reduced.model_dump(), coverage["duration_s"])
        if criteria:
            report["rubric_scores"] = score_criteria(report["rubric_scores"], criteria)
            shared = common_scale(criteria)
            report["rubric_scale"] = {"min": shared[0], "max": shared[1]} if shared else None
        else:
            report["rubric_scores"] = bounded_scores(report["rubric_scores"], scale)
            report["rubric_scale"] = {"min": scale[0], "max": scale[1]}
        return {"source": "reduce", **report, **base}
    return {
        "source": "map_only",
        "summary": " ".join(output["summary"] for _, output in analysed)
        or "No activity: the whole recording was idle.",
        "timeline": [
            {k: a[k] for k in ("start_s", "end_s", "description")}
            for _, output in analysed
            for a in output["activities"]
        ],
        "rubric_scores": [],
        "integrity_flags": [],
        "strengths": [],
        "concerns": [],
        **base,
    }


def _within(report: dict[str, Any], duration_s: float) -> dict[str, Any]:
    """REDUCE writes recording times itself; keep every one inside the recording."""

    def clamp(value: float) -> float:
        return round(min(max(float(value), 0.0), duration_s), 2)

    for entry in report["timeline"]:
        entry["start_s"], entry["end_s"] = clamp(entry["start_s"]), clamp(entry["end_s"])
        entry["end_s"] = max(entry["end_s"], entry["start_s"])
    for item in (*report["rubric_scores"], *report["integrity_flags"]):
        item["evidence_s"] = [clamp(t) for t in item["evidence_s"]]
    return report


def _tools(analysed: Sequence[tuple[Segment, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One entry per tool, with the segments it was seen in."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for segment, output in analysed:
        for tool in output["tools_used"]:
            key = (tool["name"].strip().lower(), tool["category"])
            entry = seen.setdefault(
                key,
                {"name": tool["name"], "category": tool["category"], "evidence": tool["evidence"],
                 "first_seen_s": segment.start_s, "segments": []},
            )  # fmt: skip
            entry["segments"].append(segment.index)
    return list(seen.values())
