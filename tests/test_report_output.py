"""report.html beside result.json at publish time, and the demo's scripted answers.

The page is a view of result.json: it is written after it, only when result.json is the one
written (never beside a better earlier result that was kept), and a rendering or storage
failure never costs the result. The story's answers satisfy the real response schemas."""

from __future__ import annotations

import base64
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


def proctor_result(*thumbnails: str) -> dict[str, Any]:
    events = [
        {"type": "camera_covered", "start_s": 3.0, "end_s": 9.0, "source": "signal",
         "evidence": {"thumbnail": name, "thumbnail_at_s": 5.0}}
        for name in thumbnails
    ]  # fmt: skip
    report = {"source": "reduce", "summary": "s", "events": events,
              "recording": {"video": "video.webm", "duration_s": 12.0}}  # fmt: skip
    return result(kind="proctor_video", report=report)


class Recording(Storage):
    """The real file storage, noting what each write asked for (S3 tags)."""

    def __init__(self) -> None:
        super().__init__()
        self.retention: dict[str, str | None] = {}

    def write_bytes(self, uri: str, data: bytes, *, content_type: str,
                    retention: str | None = None) -> str:  # fmt: skip
        self.retention[uri.rsplit("/", 1)[-1]] = retention
        return super().write_bytes(uri, data, content_type=content_type, retention=retention)


def test_thumbnails_are_embedded_so_one_presigned_link_shows_them(tmp_path: Path) -> None:
    jpeg = b"\xff\xd8\xff\xe0 tiny jpeg \xff\xd9"
    (tmp_path / "evidence").mkdir()
    (tmp_path / "evidence" / "000-a.jpg").write_bytes(jpeg)
    (tmp_path / "evidence" / "001-big.jpg").write_bytes(b"x" * (output.MAX_EMBEDDED_BYTES + 1))
    storage = Recording()
    names = ("evidence/000-a.jpg", "evidence/001-big.jpg", "evidence/002-gone.jpg")
    publish.publish_result(storage, tmp_path.as_uri() + "/", proctor_result(*names))
    page = (tmp_path / "report.html").read_text()
    assert 'src="data:image/jpeg;base64,' + base64.b64encode(jpeg).decode() + '"' in page
    # Too large or missing: still the sibling link, never a broken page.
    assert 'src="evidence/001-big.jpg"' in page and 'src="evidence/002-gone.jpg"' in page
    # A page holding the candidate's face expires with the thumbnails (lifecycle tag).
    assert storage.retention["report.html"] == "thumbnail"
    publish.publish_result(storage, tmp_path.as_uri() + "/", result())
    assert storage.retention["report.html"] is None  # a task report carries no face


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
