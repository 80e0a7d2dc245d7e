"""report.html beside result.json at publish time, and the demo's scripted answers.

The page is a view of result.json: it is written after it, only when result.json is the one
written (never beside a better earlier result that was kept), and a rendering or storage
failure never costs the result. The story's answers satisfy the real response schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from analysis_engine import publish
from analysis_engine.report_html import output
from analysis_engine.storage import Storage
from devtools import story
from devtools.fake_gemini import FakeConfig
from proctor_video.schemas import ProctorSummary, SegmentObservations
from task_analyzer.schemas import SegmentAnalysis, TaskReport


def result(status: str = "complete", **extra: Any) -> dict[str, Any]:
    return {
        "schema_version": 1, "kind": "task_analysis", "analysis_id": "S-42", "status": status,
        "error": None, "input": {"uri": "file:///x.mp4", "identity": "abc"},
        "report": {"summary": "<b>bold</b> claim", "source": "reduce"}, "coverage": None,
        "usage": {}, "timings": {}, "models": {}, "started_at": "t0",
        "finished_at": "2026-01-01T00:00:00Z", **extra,
    }  # fmt: skip


def test_publish_writes_the_report_beside_the_result(tmp_path: Path) -> None:
    published = publish.publish_result(Storage(), tmp_path.as_uri() + "/", result())
    assert published.written
    assert json.loads((tmp_path / "result.json").read_text())["analysis_id"] == "S-42"
    page = (tmp_path / "report.html").read_text()
    assert "S-42" in page and "&lt;b&gt;bold&lt;/b&gt; claim" in page
    assert not list(tmp_path.glob("*.tmp*"))  # atomic: no half-written leftovers


def test_a_rendering_error_never_costs_the_result(tmp_path: Path, monkeypatch) -> None:
    def broken(_: Any) -> str:
        raise RuntimeError("template exploded")

    monkeypatch.setattr(output, "render_report", broken)
    published = publish.publish_result(Storage(), tmp_path.as_uri() + "/", result())
    assert published.written and (tmp_path / "result.json").is_file()
    assert not (tmp_path / "report.html").exists()


def test_a_storage_error_on_the_page_is_swallowed() -> None:
    class Failing:
        def join(self, base: str, name: str) -> str:
            return base + name

        def write_bytes(self, uri: str, data: bytes, *, content_type: str) -> str:
            raise OSError("disk full")

    assert output.write_report(Failing(), "file:///nowhere/", result()) is None


def test_a_kept_better_result_keeps_its_page(tmp_path: Path) -> None:
    out = tmp_path.as_uri() + "/"
    publish.publish_result(Storage(), out, result("complete"))
    first = (tmp_path / "report.html").read_text()
    worse = result("failed", error="All segments failed analysis")
    published = publish.publish_result(Storage(), out, worse)
    assert published.kept is not None
    assert (tmp_path / "report.html").read_text() == first


# ---------------------------------------------------------------------- the demo's script
def test_scripted_answers_satisfy_the_real_schemas() -> None:
    schemas = {
        "task_map": SegmentAnalysis, "task_reduce": TaskReport,
        "proctor_map": SegmentObservations, "proctor_reduce": ProctorSummary,
    }  # fmt: skip
    for kind, model in schemas.items():
        schema = model.model_json_schema()
        assert story.answer_kind(schema) == kind
        prompt = "This clip is segment 2 of 8; it covers 00:00:30-00:01:00 of a 00:04:00 test."
        answer = story.scripted_answer(schema, prompt)
        model.model_validate(answer)
        assert str(answer["summary"]).startswith(story.FAKE_LABEL)


def test_map_answers_hold_the_events_of_their_clip_on_the_clip_clock() -> None:
    schema = SegmentAnalysis.model_json_schema()
    answer = story.scripted_answer(schema, "it covers 00:00:50-00:01:10 of a 00:04:00 recording")
    assert [(e["kind"], e["at_s"]) for e in answer["notable_events"]] == [
        ("error", 2.0), ("ai_assistant_use", 14.0),
    ]  # fmt: skip
    idle = story.scripted_answer(schema, "it covers 00:02:00-00:02:30 of a 00:04:00 recording")
    assert idle["notable_events"] == [] and idle["activities"] == []
    assert story.scripted_answer(schema, "no window stated") is None


def test_unknown_answers_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="answers"):
        FakeConfig().update({"answers": "random"})
