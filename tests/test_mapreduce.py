"""The pure MAP/REDUCE core against an in-process model client (the real SDK path is
covered end to end in test_task_analyzer_e2e.py against the fake Gemini server)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from analysis_engine.errors import ModelCallError
from analysis_engine.mapreduce import (
    Clip,
    MapConfig,
    MapRunner,
    SegmentOutcome,
    analysed_outputs,
)
from analysis_engine.models import MediaHandle, ModelReply, Segment, SegmentPlan
from analysis_engine.reduce import run_reduce
from analysis_engine.result import (
    ALL_SEGMENTS_FAILED,
    coverage_of,
    exit_code_for,
    map_status,
)
from task_analyzer.kind import TaskAnalysisKind, assemble_report
from task_analyzer.schemas import Activity, NotableEvent, SegmentAnalysis, TaskReport


class ScriptedClient:
    """Answers every MAP call with one activity at 10-20 s of the clip; fails chosen clips."""

    def __init__(self, *, failing: set[str] = frozenset(), delay: float = 0.01) -> None:
        self.failing = failing
        self.delay = delay
        self.in_flight = 0
        self.max_in_flight = 0
        self.generated: list[str] = []
        self.uploaded: list[str] = []
        self.deleted: list[str] = []
        self.finishing_calls = 0

    async def upload(self, path: Path, *, mime_type: str) -> MediaHandle:
        self.uploaded.append(path.name)
        return MediaHandle(mime_type=mime_type, uri=f"mem://{path.name}", name=path.name)

    async def delete(self, handle: MediaHandle) -> None:
        self.deleted.append(handle.name or "")

    async def generate(
        self,
        *,
        model: str,
        prompt: str,
        schema: Any,
        media: Any = None,
        estimated_input_tokens: int,
        media_resolution: str = "default",
        finishing: bool = False,
    ) -> Any:
        self.finishing_calls += finishing
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            name = media.name if media else "reduce"
            self.generated.append(name)
            if name in self.failing:
                raise ModelCallError("429 RESOURCE_EXHAUSTED", attempts=3)
            if schema is TaskReport:
                parsed = TaskReport(
                    summary="ok",
                    timeline=[],
                    rubric_scores=[],
                    integrity_flags=[],
                    strengths=[],
                    concerns=[],
                )
            else:
                parsed = SegmentAnalysis(
                    summary=f"work in {name}",
                    activities=[Activity(start_s=10, end_s=20, description="typing")],
                    tools_used=[],
                    notable_events=[
                        NotableEvent(at_s=999, kind="error", description="x", evidence="traceback")
                    ],
                )
            return ModelReply(
                parsed=parsed, model=model, input_tokens=1000, output_tokens=50, attempts=1
            )
        finally:
            self.in_flight -= 1


class MemoryCheckpoints:
    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}

    def load(self, key: str) -> dict[str, Any] | None:
        return self.data.get(key)

    def save(self, key: str, payload: dict[str, Any]) -> None:
        self.data[key] = payload


def make_plan(n: int, seconds: float = 60.0, skipped: set[int] = frozenset()) -> SegmentPlan:
    segments = tuple(
        Segment(i, i * seconds, (i + 1) * seconds, "idle" if i in skipped else None)
        for i in range(n)
    )
    return SegmentPlan(segments=segments, mode="copy", duration_s=n * seconds)


def run_map(
    client: ScriptedClient,
    plan: SegmentPlan,
    checkpoints: MemoryCheckpoints,
    *,
    concurrency: int = 3,
    model: str = "m1",
) -> list[SegmentOutcome]:
    clips = {s.index: Clip(Path(f"seg{s.index}.mp4"), "video/mp4") for s in plan.segments}
    runner = MapRunner(
        client=client,
        spec=TaskAnalysisKind(),
        config=MapConfig(model=model, concurrency=concurrency, tokens_per_second=300),
        checkpoints=checkpoints,
        clips=clips,
    )
    return asyncio.run(runner.run(plan))


def test_map_respects_concurrency_and_shifts_times_onto_the_recording_clock() -> None:
    client = ScriptedClient()
    outcomes = run_map(client, make_plan(8), MemoryCheckpoints(), concurrency=3)
    assert client.max_in_flight == 3
    assert [o.state for o in outcomes] == ["analysed"] * 8
    assert map_status(outcomes) == ("complete", None)
    third = outcomes[2].output
    assert third["activities"][0]["start_s"] == 130.0  # 120 s segment start + 10 s
    assert third["notable_events"][0]["at_s"] == 180.0  # clamped to the segment end
    assert sorted(client.uploaded) == sorted(client.deleted)  # every upload cleaned up
    assert sum(o.input_tokens for o in outcomes) == 8000


def test_skipped_segments_cost_no_call_and_are_reported() -> None:
    client = ScriptedClient()
    outcomes = run_map(client, make_plan(6, skipped={1, 2}), MemoryCheckpoints())
    assert len(client.generated) == 4
    coverage = coverage_of(outcomes, 360)
    assert coverage["segments_skipped"] == 2
    assert coverage["seconds_skipped"] == 120
    assert coverage["skipped_ranges"][0] == {
        "index": 1,
        "start_s": 60,
        "end_s": 120,
        "reason": "idle",
    }


def test_some_failures_make_a_partial_result_that_names_the_missing_ranges() -> None:
    client = ScriptedClient(failing={"seg3.mp4"})
    outcomes = run_map(client, make_plan(5), MemoryCheckpoints())
    status, error = map_status(outcomes)
    assert status == "partial" and error == "1 of 5 segments failed analysis"
    coverage = coverage_of(outcomes, 300)
    assert coverage["failed_ranges"][0]["start_s"] == 180
    assert "429" in coverage["failed_ranges"][0]["reason"]
    assert [o.attempts for o in outcomes] == [1, 1, 1, 3, 1]


def test_all_failures_give_the_exact_sentinel_and_exit_3() -> None:
    client = ScriptedClient(failing={f"seg{i}.mp4" for i in range(4)})
    outcomes = run_map(client, make_plan(4), MemoryCheckpoints())
    status, error = map_status(outcomes)
    assert (status, error) == ("failed", ALL_SEGMENTS_FAILED)
    assert exit_code_for(status, error) == 3
    assert exit_code_for("failed", "unexpected error: boom") == 1
    assert exit_code_for("invalid_input", "x") == 2


def test_rerun_spends_calls_only_on_segments_without_a_checkpoint() -> None:
    checkpoints = MemoryCheckpoints()
    first = ScriptedClient(failing={"seg1.mp4", "seg4.mp4"})
    run_map(first, make_plan(6), checkpoints)
    assert len(checkpoints.data) == 4
    second = ScriptedClient()
    outcomes = run_map(second, make_plan(6), checkpoints)
    assert sorted(second.generated) == ["seg1.mp4", "seg4.mp4"]
    assert sum(o.from_checkpoint for o in outcomes) == 4
    assert map_status(outcomes) == ("complete", None)
    assert sum(o.input_tokens for o in outcomes) == 2000  # checkpoints cost nothing


def test_checkpoint_from_another_model_is_not_reused() -> None:
    checkpoints = MemoryCheckpoints()
    run_map(ScriptedClient(), make_plan(3), checkpoints, model="m1")
    client = ScriptedClient()
    run_map(client, make_plan(3), checkpoints, model="m2")
    assert len(client.generated) == 3


def test_reduce_failure_is_returned_not_raised() -> None:
    client = ScriptedClient(failing={"reduce"})
    reduced, error = asyncio.run(
        run_reduce(client=client, model="r", prompt="p", schema=TaskReport)
    )
    assert reduced is None and error is not None and error.startswith("REDUCE failed")
    assert client.finishing_calls == 1  # REDUCE asks the budget for a finishing call's place


def test_map_only_report_keeps_the_findings_when_reduce_failed() -> None:
    client = ScriptedClient()
    outcomes = run_map(client, make_plan(2, skipped={1}), MemoryCheckpoints())
    report = assemble_report(None, analysed_outputs(outcomes), coverage_of(outcomes, 120))
    assert report["source"] == "map_only"
    assert report["timeline"] == [{"start_s": 10.0, "end_s": 20.0, "description": "typing"}]
    assert report["idle_ranges"] == [{"start_s": 60.0, "end_s": 120.0}]


@pytest.mark.parametrize("seconds, expected", [(0, "00:00:00"), (3725.4, "01:02:05")])
def test_prompt_clock(seconds: float, expected: str) -> None:
    from analysis_engine.timecode import clock

    assert clock(seconds) == expected


def test_reduce_times_are_kept_inside_the_recording() -> None:
    from task_analyzer.schemas import IntegrityFlag, RubricScore, TimelineEntry

    reduced = TaskReport(
        summary="s",
        timeline=[TimelineEntry(start_s=-5, end_s=9999, description="overshoot")],
        rubric_scores=[RubricScore(criterion="c", score=3, rationale="r", evidence_s=[50, 700])],
        integrity_flags=[
            IntegrityFlag(type="other", severity="low", description="d", evidence_s=[601])
        ],
        strengths=[],
        concerns=[],
    )
    outcomes = run_map(ScriptedClient(), make_plan(2), MemoryCheckpoints())
    report = assemble_report(reduced, analysed_outputs(outcomes), coverage_of(outcomes, 120))
    assert report["timeline"][0] == {
        "start_s": 0.0,
        "end_s": 120.0,
        "description": "overshoot",
    }
    assert report["rubric_scores"][0]["evidence_s"] == [50.0, 120.0]
    assert report["integrity_flags"][0]["evidence_s"] == [120.0]


def test_clips_of_one_recording_share_a_single_upload() -> None:
    from analysis_engine.models import Interval

    client = ScriptedClient()
    seen: list[Interval | None] = []
    original = client.generate

    async def recording_generate(**kwargs: Any) -> Any:
        seen.append(kwargs["media"].clip)
        return await original(**kwargs)

    client.generate = recording_generate  # type: ignore[method-assign]
    plan = make_plan(4, skipped={2})
    clips = {
        s.index: Clip(Path("rec.mp4"), "video/mp4", Interval(s.start_s, s.end_s))
        for s in plan.to_analyse
    }
    runner = MapRunner(client=client, spec=TaskAnalysisKind(), clips=clips,
                       config=MapConfig(model="m", concurrency=3, tokens_per_second=300),
                       checkpoints=MemoryCheckpoints())  # fmt: skip
    outcomes = asyncio.run(runner.run(plan))
    assert [o.state for o in outcomes] == ["analysed", "analysed", "skipped", "analysed"]
    assert client.uploaded == ["rec.mp4"] and client.deleted == ["rec.mp4"]
    assert sorted(seen) == [Interval(0, 60), Interval(60, 120), Interval(180, 240)]


def test_a_checkpoint_that_cannot_be_saved_does_not_fail_the_segment() -> None:
    from analysis_engine.errors import StorageError

    class BrokenStore(MemoryCheckpoints):
        def save(self, key: str, payload: dict[str, Any]) -> None:
            raise StorageError("s3://results/x/checkpoints: SlowDown")

    outcomes = run_map(ScriptedClient(), make_plan(3), BrokenStore())
    assert [o.state for o in outcomes] == ["analysed"] * 3


def test_the_api_key_is_scrubbed_from_every_result_field() -> None:
    from analysis_engine.publish import scrubbed

    result = {"error": "x", "coverage": {"failed_ranges": [{"reason": "bad key sk-123 in url"}]}}
    assert "sk-123" not in json.dumps(scrubbed(result, "sk-123"))
    assert scrubbed(result, "") is result
