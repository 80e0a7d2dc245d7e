"""Reports that are never silently wrong: checkpoint identity, one bad segment, deadlines and
stops inside MAP, hierarchical REDUCE, time conventions, a worse rerun, rubric scales. Pure
core against an in-process model client; the container paths are in test_task_analyzer_e2e."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from test_mapreduce import MemoryCheckpoints, ScriptedClient, make_plan

from analysis_engine.mapreduce import (
    Clip,
    MapConfig,
    MapRunner,
    checkpoint_key,
    fingerprint,
    fingerprint_basis,
)
from analysis_engine.models import Interval, ModelReply, Segment
from analysis_engine.publish import publish_result
from analysis_engine.reduce import ReduceStage, reduce_findings
from analysis_engine.result import coverage_of, map_status
from analysis_engine.stopping import RunStop
from analysis_engine.storage import Storage
from proctor_video.kind import ProctorVideoKind
from proctor_video.schemas import Observation, SegmentObservations
from task_analyzer.kind import TaskAnalysisKind
from task_analyzer.schemas import Activity, NotableEvent, SegmentAnalysis, TaskReport


def _runner(client: Any, plan: Any, store: Any, config: MapConfig, **kw: Any) -> MapRunner:
    clips = {s.index: Clip(Path(f"seg{s.index}.mp4"), "video/mp4") for s in plan.segments}
    return MapRunner(client=client, spec=kw.pop("spec", TaskAnalysisKind()), config=config,
                     checkpoints=store, clips=clips, **kw)  # fmt: skip


# ---------------------------------------------------------------- checkpoint identity
@pytest.mark.parametrize(
    "changed",
    [
        {"input_identity": "etag:other;size:10"},  # a corrected recording at the same key
        {"context": {"rubric": "Edited rubric"}},  # an edited rubric
        {"media_resolution": "low"},
        {"model": "m2"},
    ],
)
def test_a_checkpoint_is_reused_only_when_everything_that_made_it_is_the_same(
    changed: dict[str, Any],
) -> None:
    base = {"model": "m1", "concurrency": 2, "tokens_per_second": 300,
            "input_identity": "etag:abc;size:10", "context": {"rubric": "Correctness"}}  # fmt: skip
    store = MemoryCheckpoints()
    plan = make_plan(3)
    asyncio.run(_runner(ScriptedClient(), plan, store, MapConfig(**base)).run(plan))
    same = ScriptedClient()
    outcomes = asyncio.run(_runner(same, plan, store, MapConfig(**base)).run(plan))
    assert same.generated == [] and all(o.from_checkpoint for o in outcomes)
    other = ScriptedClient()
    outcomes = asyncio.run(_runner(other, plan, store, MapConfig(**{**base, **changed})).run(plan))
    assert len(other.generated) == 3 and not any(o.from_checkpoint for o in outcomes)


# ---------------------------------------------------------------- one bad segment
def test_an_old_format_checkpoint_or_a_crash_fails_only_its_own_segment() -> None:
    plan = make_plan(4)
    config = MapConfig(model="m1", concurrency=2, tokens_per_second=300)
    kind = TaskAnalysisKind()
    seg1 = plan.segments[1]
    prompt = kind.map_prompt(seg1, total=4, duration_s=plan.duration_s, absolute_times=False)
    store = MemoryCheckpoints()
    # Right fingerprint, wrong shape (an older writer): analysed again, not a crash.
    store.data[checkpoint_key(seg1)] = {
        "fingerprint": fingerprint(fingerprint_basis(seg1, kind, config, prompt)),
        "result": {"summary": "old layout"},
    }
    store.data[checkpoint_key(plan.segments[0])] = ["not", "a", "dict"]

    class Brittle(TaskAnalysisKind):
        def to_absolute(self, output: Any, segment: Segment, **kw: Any) -> dict[str, Any]:
            if segment.index == 2:
                raise KeyError("activities")
            return super().to_absolute(output, segment, **kw)

    client = ScriptedClient()
    outcomes = asyncio.run(_runner(client, plan, store, config, spec=Brittle()).run(plan))
    assert [o.state for o in outcomes] == ["analysed", "analysed", "failed", "analysed"]
    assert "unexpected error: KeyError" in (outcomes[2].error or "")
    assert map_status(outcomes) == ("partial", "1 of 4 segments failed analysis")


# ---------------------------------------------------------------- deadline and stop in MAP
def test_past_the_deadline_no_call_starts_and_the_rest_is_skipped_with_the_reason() -> None:
    client = ScriptedClient(delay=0.1)
    plan = make_plan(10)
    config = MapConfig(model="m1", concurrency=1, tokens_per_second=300)

    async def go() -> list[Any]:
        stop = RunStop(deadline_s=0.25)
        return await _runner(client, plan, MemoryCheckpoints(), config, stop=stop).run(plan)

    outcomes = asyncio.run(go())
    states = [o.state for o in outcomes]
    assert 1 <= states.count("analysed") <= 3 and states.count("failed") == 0
    assert len(client.generated) <= states.count("analysed") + 1  # at most one cut in flight
    coverage = coverage_of(outcomes, plan.duration_s)
    assert coverage["cut_short_by"] == "deadline"
    assert {r["reason"] for r in coverage["skipped_ranges"]} == {"deadline"}
    status, error = map_status(outcomes)
    assert status == "partial" and error is not None and error.startswith("deadline:")


def test_a_stop_cancels_calls_in_flight_and_deletes_every_upload() -> None:
    client = ScriptedClient(delay=30)  # a call that would outlive any stop timeout
    plan = make_plan(4)
    config = MapConfig(model="m1", concurrency=2, tokens_per_second=300)

    async def go() -> list[Any]:
        stop = RunStop()
        runner = _runner(client, plan, MemoryCheckpoints(), config, stop=stop)
        loop = asyncio.get_running_loop()
        loop.call_later(0.2, stop._on_sigterm, 15, None)  # what SIGTERM calls
        return await asyncio.wait_for(runner.run(plan), 5)

    outcomes = asyncio.run(go())
    assert [o.skip_reason for o in outcomes] == ["stopped"] * 4
    assert map_status(outcomes) == ("failed", "stopped")
    assert client.uploaded and sorted(client.uploaded) == sorted(client.deleted)


# ---------------------------------------------------------------- hierarchical REDUCE
class ReduceRecorder(ScriptedClient):
    def __init__(self) -> None:
        super().__init__(delay=0)
        self.prompts: list[str] = []

    async def generate(self, *, prompt: str, **kw: Any) -> Any:
        self.prompts.append(prompt)
        marker = f"part-summary-{len(self.prompts)}"
        parsed = TaskReport(summary=marker, timeline=[], rubric_scores=[],
                            integrity_flags=[], strengths=[], concerns=[])  # fmt: skip
        return ModelReply(parsed=parsed, model="r", input_tokens=1, output_tokens=1, attempts=1)


def _finding(i: int, size: int) -> tuple[Segment, dict[str, Any]]:
    output = {"summary": f"segment-marker-{i:03d} " + "x" * size, "activities": [],
              "tools_used": [], "notable_events": []}  # fmt: skip
    return Segment(i, i * 60.0, (i + 1) * 60.0), output


def _build(findings: Any, stage: ReduceStage) -> str:
    from task_analyzer import prompts

    coverage = {"skipped_ranges": [], "failed_ranges": []}
    return prompts.reduce_prompt(findings, coverage=coverage, context={}, stage=stage)


def test_reduce_covers_every_segment_of_a_recording_too_long_for_one_prompt() -> None:
    client = ReduceRecorder()
    findings = [_finding(i, 3000) for i in range(40)]  # ~125 kB of findings
    limit = 30_000
    result = asyncio.run(reduce_findings(client=client, model="r", schema=TaskReport,
                                         findings=findings, build_prompt=_build,
                                         max_prompt_chars=limit))  # fmt: skip
    assert result.error is None and result.compacted == []
    assert result.levels >= 2 and result.calls == len(client.prompts) > 2
    assert all(len(p) <= limit for p in client.prompts)
    for i in range(40):  # every segment reached a REDUCE call whole
        assert sum(f"segment-marker-{i:03d}" in p for p in client.prompts) == 1
    final = client.prompts[-1]
    assert "consolidated reports of consecutive parts" in final
    assert all(f"part-summary-{n}" in final for n in range(1, result.calls - 1))
    assert result.reduced is not None and result.reduced.summary == f"part-summary-{result.calls}"


def test_a_finding_too_large_for_any_prompt_is_compacted_and_says_so() -> None:
    client = ReduceRecorder()
    findings = [_finding(0, 200), _finding(1, 50_000), _finding(2, 200)]
    result = asyncio.run(reduce_findings(client=client, model="r", schema=TaskReport,
                                         findings=findings, build_prompt=_build,
                                         max_prompt_chars=20_000))  # fmt: skip
    assert result.reduced is not None and all(len(p) <= 20_000 for p in client.prompts)
    assert result.compacted == [{"start_s": 60.0, "end_s": 120.0, "level": 0}]
    assert result.coverage_note()["compacted"] == result.compacted


# ---------------------------------------------------------------- time conventions
def _task_answer(times: list[float]) -> SegmentAnalysis:
    return SegmentAnalysis(
        summary="s",
        activities=[Activity(start_s=t, end_s=t + 2, description="d") for t in times],
        tools_used=[],
        notable_events=[NotableEvent(at_s=t, kind="error", description="d", evidence="e")
                        for t in times],
    )  # fmt: skip


@pytest.mark.parametrize("absolute_times", [True, False])
@pytest.mark.parametrize("answer", [[95.0, 100.0, 110.0], [5.0, 10.0, 20.0]])
def test_either_time_convention_lands_on_the_recording_clock(
    absolute_times: bool, answer: list[float]
) -> None:
    segment = Segment(3, 90.0, 120.0)
    data = TaskAnalysisKind().to_absolute(
        _task_answer(answer), segment, absolute_times=absolute_times
    )
    assert [e["at_s"] for e in data["notable_events"]] == [95.0, 100.0, 110.0]
    assert data["time_basis"]["outside_clip"] == 0


def test_times_that_fit_no_convention_are_counted_not_silently_pinned_to_an_edge() -> None:
    segment = Segment(3, 90.0, 120.0)
    data = TaskAnalysisKind().to_absolute(_task_answer([500.0, 700.0]), segment,
                                          absolute_times=True)  # fmt: skip
    assert data["time_basis"]["outside_clip"] == 6  # 2 activities (start, end), 2 events
    coverage = coverage_of([_analysed(segment, data)], 120)
    assert coverage["times"]["times_outside_segment"] == 6


def _analysed(segment: Segment, data: dict[str, Any]) -> Any:
    from analysis_engine.mapreduce import SegmentOutcome

    return SegmentOutcome(segment=segment, output=data)


def test_proctor_times_on_the_test_clock_or_the_clip_both_land_on_the_test_clock() -> None:
    kind = ProctorVideoKind()
    kind._offset = 12.0  # the stitched file starts 12 s into the test
    segment = Segment(2, 20.0, 30.0)  # test clock 32-42 s

    def answer(start: float) -> SegmentObservations:
        obs = Observation(type="looking_away", start_s=start, end_s=start + 3, confidence=0.8,
                          description="d")  # fmt: skip
        return SegmentObservations(summary="s", candidate_visible_fraction=1.0,
                                   max_people_visible=1, observations=[obs])  # fmt: skip

    for start in (34.0, 2.0, 22.0):  # test clock, clip, the file's own clock
        data = kind.to_absolute(answer(start), segment, absolute_times=True)
        assert data["observations"][0]["start_s"] == 34.0, start


def test_clip_offset_prompts_give_the_absolute_start_and_ask_for_absolute_times() -> None:
    client = ScriptedClient()
    prompts: list[str] = []
    original = client.generate

    async def recording(**kwargs: Any) -> Any:
        prompts.append(kwargs["prompt"])
        return await original(**kwargs)

    client.generate = recording  # type: ignore[method-assign]
    plan = make_plan(3)
    clips = {s.index: Clip(Path("rec.mp4"), "video/mp4", Interval(s.start_s, s.end_s))
             for s in plan.segments}  # fmt: skip
    runner = MapRunner(client=client, spec=TaskAnalysisKind(), clips=clips,
                       config=MapConfig(model="m", concurrency=1, tokens_per_second=300),
                       checkpoints=MemoryCheckpoints())  # fmt: skip
    outcomes = asyncio.run(runner.run(plan))
    third = next(p for p in prompts if "segment 3 of 3" in p)
    assert "WHOLE RECORDING" in third and "starts at 120.0 s" in third
    # The scripted model answers 10-20 s (clip convention) although absolute times were asked.
    assert outcomes[2].output["activities"][0]["start_s"] == 130.0


# ---------------------------------------------------------------- a worse rerun
def _result(status: str, identity: str | None, finished: str) -> dict[str, Any]:
    return {
        "status": status, "kind": "task_analysis", "analysis_id": "a", "error": None,
        "input": {"uri": "s3://r/k", "identity": identity}, "finished_at": finished,
    }  # fmt: skip


@pytest.mark.parametrize(
    "new_status, new_identity, kept",
    [
        ("failed", "etag:1;size:1", True),  # same input, worse: the complete one stays
        ("failed", None, True),  # identity unknown (stopped before fetching): keep
        ("partial", "etag:1;size:1", True),
        ("failed", "etag:2;size:1", False),  # another recording: the new result replaces
        ("complete", "etag:1;size:1", False),
    ],
)
def test_a_worse_rerun_never_replaces_a_better_result_of_the_same_input(
    tmp_path: Path, new_status: str, new_identity: str | None, kept: bool
) -> None:
    storage, out = Storage(), f"file://{tmp_path}/out/"
    publish_result(storage, out, _result("complete", "etag:1;size:1", "2026-01-01T00:00:00Z"))
    new = _result(new_status, new_identity, "2026-01-02T03:04:05Z")
    published = publish_result(storage, out, new)
    main = json.loads((tmp_path / "out" / "result.json").read_text())
    if kept:
        assert main["finished_at"] == "2026-01-01T00:00:00Z"
        beside = tmp_path / "out" / f"result.{new_status}-20260102T030405Z.json"
        assert json.loads(beside.read_text())["status"] == new_status
        assert published.kept is not None and published.uri.endswith(beside.name)
    else:
        assert main["finished_at"] == "2026-01-02T03:04:05Z" and published.kept is None
        # The complete result it replaced is kept beside, and the new one names it.
        assert main["previous_result"] == "result.complete-20260101T000000Z.json"
        earlier = json.loads((tmp_path / "out" / main["previous_result"]).read_text())
        assert earlier["finished_at"] == "2026-01-01T00:00:00Z"


def test_a_failed_result_replaced_by_a_retry_is_not_kept(tmp_path: Path) -> None:
    storage, out = Storage(), f"file://{tmp_path}/out/"
    publish_result(storage, out, _result("failed", "etag:1;size:1", "2026-01-01T00:00:00Z"))
    publish_result(storage, out, _result("complete", "etag:1;size:1", "2026-01-02T00:00:00Z"))
    main = json.loads((tmp_path / "out" / "result.json").read_text())
    assert main.get("previous_result") is None  # nobody read a report of it
    assert sorted(p.name for p in (tmp_path / "out").glob("result*.json")) == ["result.json"]


def test_a_rerun_makes_its_own_answers_and_reuses_only_its_own_checkpoints() -> None:
    base = {"model": "m1", "concurrency": 2, "tokens_per_second": 300,
            "input_identity": "etag:abc;size:10"}  # fmt: skip
    store, plan = MemoryCheckpoints(), make_plan(3)
    asyncio.run(_runner(ScriptedClient(), plan, store, MapConfig(**base)).run(plan))
    rerun = ScriptedClient()
    asyncio.run(_runner(rerun, plan, store, MapConfig(**base, rerun_id="run-2")).run(plan))
    assert len(rerun.generated) == 3  # analysed again, although nothing else changed
    retry = ScriptedClient()  # the same rerun's retry: its own answers are reused
    asyncio.run(_runner(retry, plan, store, MapConfig(**base, rerun_id="run-2")).run(plan))
    assert retry.generated == []


# ---------------------------------------------------------------- rubric scale
@pytest.mark.parametrize(
    "context, scale",
    [
        ({}, (1, 5)),
        ({"rubric": "Correctness, testing. Score each criterion from 0 to 10."}, (0, 10)),
        ({"rubric": ["Correctness (rated out of 4)"]}, (0, 4)),
        ({"rubric": "anything", "rubric_scale": [1, 3]}, (1, 3)),
    ],
)
def test_rubric_scores_are_bounded_by_the_rubrics_scale(
    context: dict[str, Any], scale: tuple[int, int]
) -> None:
    from task_analyzer import prompts
    from task_analyzer.schemas import RubricScore

    kind = TaskAnalysisKind(context)
    reduced = TaskReport(
        summary="s", timeline=[], integrity_flags=[], strengths=[], concerns=[],
        rubric_scores=[RubricScore(criterion=c, score=s, rationale="r", evidence_s=[])
                       for c, s in (("over", 11), ("under", -1), ("in", scale[1]))],
    )  # fmt: skip
    coverage = {"duration_s": 60, "skipped_ranges": [], "failed_ranges": []}
    report = kind.assemble_report(reduced=reduced, analysed=[], coverage=coverage,
                                  run=None, extras={})  # type: ignore[arg-type]  # fmt: skip
    scores = {s["criterion"]: s for s in report["rubric_scores"]}
    assert (scores["over"]["score"], scores["over"]["score_out_of_scale"]) == (scale[1], 11)
    assert (scores["under"]["score"], scores["under"]["score_out_of_scale"]) == (scale[0], -1)
    assert "score_out_of_scale" not in scores["in"]
    assert report["rubric_scale"] == {"min": scale[0], "max": scale[1]}
    prompt = prompts.reduce_prompt([], coverage=coverage, context=context)
    assert f"a score from {scale[0]} to {scale[1]}" in prompt


STRUCTURED = {
    "rubric_scale": {"min": 1, "max": 4},
    "rubric": [
        {"name": "Correctness", "description": "The endpoint returns the right data.",
         "scale": {"min": 0, "max": 10}},
        {"name": "Testing", "description": "Writes and runs tests."},
        {"name": "Communication"},
    ],
}  # fmt: skip


def test_a_structured_rubric_comes_back_scored_criterion_by_criterion_on_its_scales() -> None:
    from analysis_engine.report_html import render_report
    from task_analyzer import prompts
    from task_analyzer.schemas import RubricScore

    reduced = TaskReport(
        summary="s", timeline=[], integrity_flags=[], strengths=[], concerns=[],
        rubric_scores=[
            RubricScore(criterion="  testing ", score=9, rationale="r", evidence_s=[]),
            RubricScore(criterion="CORRECTNESS", score=7, rationale="r", evidence_s=[12.0]),
            RubricScore(criterion="Style", score=3, rationale="invented", evidence_s=[]),
        ],
    )  # fmt: skip
    coverage = {"duration_s": 60, "skipped_ranges": [], "failed_ranges": []}
    report = TaskAnalysisKind(STRUCTURED).assemble_report(
        reduced=reduced, analysed=[], coverage=coverage, run=None, extras={},  # type: ignore[arg-type]
    )  # fmt: skip
    scores = report["rubric_scores"]
    # The rubric's criteria, in its order, under its names, each on its own scale.
    assert [s["criterion"] for s in scores] == ["Correctness", "Testing", "Communication", "Style"]
    assert (scores[0]["score"], scores[0]["scale"]) == (7, {"min": 0, "max": 10})
    assert (scores[1]["score"], scores[1]["score_out_of_scale"]) == (4, 9)  # the rubric's 1-4
    assert scores[1]["scale"] == {"min": 1, "max": 4}
    assert (scores[2]["score"], scores[2]["not_scored"]) == (None, True)  # left out: said so
    assert scores[3]["in_rubric"] is False  # made up by the model: kept, marked
    assert report["rubric_scale"] is None  # the criteria do not share one
    prompt = prompts.reduce_prompt([], coverage=coverage, context=STRUCTURED)
    assert "on that criterion's own scale" in prompt
    assert '"criterion": "Correctness"' in prompt and '"scale": "0 to 10"' in prompt
    assert "Writes and runs tests." in prompt
    html = render_report({"kind": "task_analysis", "status": "complete", "report": report})
    assert "<b>7</b>/10" in html and "<b>4</b>/4" in html and "<b>?</b>/4" in html
    assert "(not in the rubric)" in html


def test_detector_events_reach_reduce_as_whole_json_with_a_count_of_those_left_out() -> None:
    from proctor_video.prompts import whole_items

    events = [{"type": "face_absent", "start_s": i, "end_s": i + 1} for i in range(2000)]
    text = whole_items(events, 5_000)
    listed, note = text.split("\n")
    shown = json.loads(listed)  # never cut mid-JSON
    assert len(listed) <= 5_000 and shown == events[: len(shown)]
    assert note == f"({2000 - len(shown)} later detector events not shown here.)"
    assert whole_items(events[:3], 5_000) == json.dumps(events[:3])


# ---------------------------------------------------------------- one identity, both sides
def test_the_container_stamps_the_input_identity_the_dag_computes(
    tmp_path: Path, moto_s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The DAG reuses a complete result only when `input.identity` equals what it computes
    for the trigger's input, so the container must produce the very same string."""
    from conftest import AWS_TEST_ENV

    from analysis_engine.recording import fetch_recording
    from analysis_engine.settings import Settings
    from analysis_pipeline.identity import input_identity

    for key, value in {**AWS_TEST_ENV, "AWS_ENDPOINT_URL": moto_s3.endpoint}.items():
        monkeypatch.setenv(key, value)
    chunks = tmp_path / "chunks"
    chunks.mkdir()
    for i in range(3):
        (chunks / f"{i}.webm").write_bytes(b"chunk %d" % i * 100)
        moto_s3.put(f"s3://recordings/ident/chunks/{i}.webm", b"chunk %d" % i * 100)
    moto_s3.put("s3://recordings/ident/one.bin", b"recording" * 100)
    inputs = [f"file://{chunks}/0.webm", f"file://{chunks}/", "s3://recordings/ident/one.bin",
              "s3://recordings/ident/chunks/"]  # fmt: skip
    storage = Storage()
    for uri in inputs:
        settings = Settings(analysis_id="a", input_uri=uri, output_uri=f"file://{tmp_path}/o/")
        if uri.endswith("/"):  # the prefix's identity, before stitching (not a recording)
            from analysis_engine.recording import prefix_identity

            ours = prefix_identity(storage, uri)
        else:
            ours = fetch_recording(settings, storage, tmp_path / "work").identity
        assert ours == input_identity(uri), uri


def test_a_deadline_passed_before_map_starts_no_call_and_fails_with_that_reason() -> None:
    from analysis_engine.result import exit_code_for

    client = ScriptedClient()
    plan = make_plan(3, skipped={1})
    config = MapConfig(model="m1", concurrency=2, tokens_per_second=300)

    async def go() -> list[Any]:
        stop = RunStop(deadline_s=0.0)
        return await _runner(client, plan, MemoryCheckpoints(), config, stop=stop).run(plan)

    outcomes = asyncio.run(go())
    assert client.generated == [] and client.uploaded == []
    assert [o.reason for o in outcomes] == ["deadline", "idle", "deadline"]
    status, error = map_status(outcomes)
    assert status == "failed" and error is not None and error.startswith("deadline:")
    assert exit_code_for(status, error) == 1  # not the retry-later sentinel
