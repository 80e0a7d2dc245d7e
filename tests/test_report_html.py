"""report.html rendering (pure): content of both kinds, escaping of untrusted text, odd input.

The browser-level checks (console errors, timeline marks, seeking the video) are in
tests/test_browser_report.py; the cost estimate's arithmetic is at the bottom."""

from __future__ import annotations

import copy
import re
from html.parser import HTMLParser
from typing import Any

import pytest

from analysis_engine.errors import InvalidInputError
from analysis_engine.pricing import DEFAULT_PRICES, Price, price_for, priced, prices_from_env
from analysis_engine.report_html import render_report

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>"\'&'

USAGE = {
    "calls": 4,
    "attempts": 5,
    "input_tokens": 1_000_000,
    "output_tokens": 100_000,
    "per_model": {
        "gemini-2.5-flash": {"calls": 4, "attempts": 5, "input_tokens": 1_000_000,
                             "output_tokens": 100_000},
    },
}  # fmt: skip


def task_result(**report: Any) -> dict[str, Any]:
    base = {
        "source": "reduce",
        "summary": "Built the endpoint; pasted the fix from an AI assistant.",
        "timeline": [{"start_s": 0, "end_s": 45, "description": "Types the app"}],
        "rubric_scores": [
            {"criterion": "Correctness", "score": 4, "rationale": "Tests pass at the end.",
             "evidence_s": [100.0, 12.5]},
        ],
        "integrity_flags": [
            {"type": "external_code_paste", "severity": "high",
             "description": "40 lines pasted at once", "evidence_s": [82.0]},
        ],
        "strengths": ["Re-runs the tests"],
        "concerns": ["Pasted code"],
        "tools_used": [{"name": "VS Code", "category": "editor", "evidence": "editor window",
                        "first_seen_s": 0.0, "segments": [0]}],
        "notable_events": [
            {"at_s": 52.0, "kind": "error", "description": "KeyError", "evidence": "traceback"},
            {"at_s": 82.0, "kind": "large_paste", "description": "paste", "evidence": "40 lines"},
        ],
        "idle_ranges": [{"start_s": 105.0, "end_s": 225.0}],
        "not_analysed_ranges": [{"start_s": 225.0, "end_s": 240.0, "reason": "429 quota"}],
    }  # fmt: skip
    base.update(report)
    return {
        "schema_version": 1,
        "kind": "task_analysis",
        "analysis_id": "S-1001",
        "status": "partial",
        "error": "1 of 5 segments failed analysis",
        "report": base,
        "coverage": {
            "segments_total": 6,
            "segments_analysed": 4,
            "segments_failed": 1,
            "segments_skipped": 1,
            "segments_from_checkpoint": 0,
            "duration_s": 240.0,
            "seconds_analysed": 105.0,
            "seconds_failed": 15.0,
            "seconds_skipped": 120.0,
            "failed_ranges": [
                {"index": 5, "start_s": 225.0, "end_s": 240.0, "reason": "429 quota"}
            ],
            "skipped_ranges": [{"index": 4, "start_s": 105.0, "end_s": 225.0, "reason": "idle"}],
        },
        "usage": priced(USAGE),
        "timings": {},
        "models": {"map": "gemini-2.5-flash", "reduce": "gemini-2.5-flash"},
        "started_at": "2026-01-01T10:00:00Z",
        "finished_at": "2026-01-01T10:04:00Z",
    }


def proctor_result() -> dict[str, Any]:
    events = [
        {"type": "camera_covered", "start_s": 9.0, "end_s": 18.0, "confidence": 0.95,
         "source": "signal", "description": "black picture",
         "evidence": {"detector": "blackdetect", "thumbnail_at_s": 13.5,
                      "thumbnail": "evidence/000-camera_covered-00013.5s.jpg"}},
        {"type": "recording_gap", "start_s": 21.0, "end_s": 24.0, "confidence": 1.0,
         "source": "signal", "description": "No recording for 3.0 s (missing).", "evidence": {}},
        {"type": "other_voice", "start_s": 26.0, "end_s": 33.0, "confidence": 0.9,
         "source": "model", "description": "A second voice dictates answers.", "evidence": {}},
    ]  # fmt: skip
    return {
        "schema_version": 1,
        "kind": "proctor_video",
        "analysis_id": "A-7",
        "status": "complete",
        "error": None,
        "report": {
            "source": "reduce",
            "summary": "Someone read out answers.",
            "integrity": {
                "level": "high",
                "reasons": ["A second voice at 0:26-0:33."],
                "rules_level": "medium",
            },
            "events": events,
            "event_counts": {},
            "recording": {
                "video": "video.webm",
                "duration_s": 36.0,
                "video_start_s": 0.0,
                "chunks_total": 12,
                "chunks_used": 11,
                "missing_chunks": [7],
                "gap_seconds": 3.0,
            },
            "signals": {},
            "not_analysed_ranges": [],
        },
        "coverage": None,
        "usage": priced(USAGE),
        "timings": {},
        "models": {"map": "gemini-2.5-flash"},
        "started_at": "2026-01-01T10:00:00Z",
        "finished_at": "2026-01-01T10:01:00Z",
    }


class _Collector(HTMLParser):
    """Elements and attributes as a browser's parser would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def parse(html: str) -> _Collector:
    collector = _Collector()
    collector.feed(html)
    return collector


def with_class(page: _Collector, cls: str) -> list[dict[str, str | None]]:
    return [a for _, a in page.tags if cls in (a.get("class") or "").split()]


def test_task_report_shows_every_part() -> None:
    html = render_report(task_result())
    expected = (
        "Built the endpoint", "Correctness", "Tests pass at the end.", "4</b>/5",
        "40 lines pasted at once", "VS Code", "Re-runs the tests", "KeyError",
        "1 of 5 segments failed analysis", "429 quota", "$0.5500", "2025-07-01",
    )  # fmt: skip
    for text in expected:
        assert text in html, text
    page = parse(html)
    # One mark per notable event, placed on the recording clock (52 s of 240 s).
    marks = [a for a in with_class(page, "tl-event") if a.get("data-t")]
    assert [float(m["data-t"] or 0) for m in marks] == [52.0, 82.0]
    assert "left:21.667%" in (marks[0].get("style") or "")
    # Rubric evidence links seek to the cited times, in time order.
    seeks = [a.get("data-t") for a in with_class(page, "seek")]
    assert seeks.index("12.5") < seeks.index("100.0")
    assert with_class(page, "tl-idle") and with_class(page, "tl-failed")


def test_untrusted_text_is_escaped_everywhere() -> None:
    result = task_result(
        summary=HOSTILE,
        strengths=[HOSTILE],
        rubric_scores=[{"criterion": HOSTILE, "score": "5", "rationale": HOSTILE,
                        "evidence_s": ["1", "nan", None, -3]}],
        tools_used=[{"name": HOSTILE, "category": HOSTILE, "evidence": HOSTILE,
                     "first_seen_s": "x"}],
        notable_events=[{"at_s": 1, "kind": HOSTILE, "description": HOSTILE,
                         "evidence": HOSTILE}],
    )  # fmt: skip
    result["analysis_id"] = HOSTILE
    html = render_report(result)
    page = parse(html)
    assert not any(tag == "img" for tag, _ in page.tags)
    assert all("alert" not in s for s in page.scripts)
    assert not any(k.startswith("on") for _, attrs in page.tags for k in attrs)
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    # Numbers that are not numbers are dropped, not rendered into attributes.
    assert [a.get("data-t") for a in with_class(page, "seek")].count("1.0") >= 1


def test_proctor_report_timeline_gaps_video_and_thumbnails() -> None:
    html = render_report(proctor_result())
    page = parse(html)
    assert 'class="pill level-high"' in html and "A second voice at 0:26-0:33." in html
    assert "(automatic rules alone: medium)" in html
    marks = [a for a in with_class(page, "tl-event") if a.get("data-t")]
    assert len(marks) == 3  # one per event, the gap included
    gap = next(a for a in marks if "tl-gap" in (a.get("class") or ""))
    assert gap["data-t"] == "21.0"
    # The recorded lane has a hole where the gap is: 0-21 and 24-36.
    recorded = [a["style"] for a in with_class(page, "tl-recorded") if a.get("style")]
    assert recorded == ["left:0.0%;width:58.333%", "left:66.667%;width:33.333%"]
    video = next(a for tag, a in page.tags if tag == "video")
    assert video["data-src"] == "video.webm" and video["data-offset"] == "0.0"
    assert "src" not in video  # set by the script: the sibling, or the link's presigned URL
    thumbs = [a["src"] for tag, a in page.tags if tag == "img"]
    assert thumbs == ["evidence/000-camera_covered-00013.5s.jpg"]


@pytest.mark.parametrize(
    "name",
    ["https://evil.example/x.jpg", "../result.json", "evidence/../../x.jpg", "javascript:x",
     "evidence/a b.jpg"],
)  # fmt: skip
def test_only_sibling_outputs_are_linked(name: str) -> None:
    result = proctor_result()
    result["report"]["events"][0]["evidence"]["thumbnail"] = name
    result["report"]["recording"]["video"] = name
    page = parse(render_report(result))
    assert not [a for tag, a in page.tags if tag in ("img", "video")]


def test_content_security_policy_forbids_external_assets() -> None:
    html = render_report(proctor_result(), nonce="n0nce")
    page = parse(html)
    csp = next(
        a["content"] for t, a in page.tags if a.get("http-equiv") == "Content-Security-Policy"
    )
    assert "default-src 'none'" in (csp or "") and "script-src 'nonce-n0nce'" in (csp or "")
    assert [a.get("nonce") for t, a in page.tags if t == "script"] == ["n0nce"]
    assert not re.search(r"(src|href)=\"(https?:)?//", html)


@pytest.mark.parametrize("status", ["invalid_input", "failed"])
def test_results_without_a_report_still_render(status: str) -> None:
    for kind in ("task_analysis", "proctor_video", "something_else"):
        result = {"kind": kind, "analysis_id": "X", "status": status,
                  "error": "INPUT_URI: not an s3:// or file:// URI", "report": None,
                  "coverage": None, "usage": {}, "models": {}}  # fmt: skip
        html = render_report(result)
        assert "INPUT_URI: not an s3:// or file:// URI" in html
        assert f'class="pill status-{status}"' in html


def test_map_only_report_says_so() -> None:
    html = render_report(task_result(source="map_only", rubric_scores=[]))
    assert "assembled from the per-segment findings only" in html
    assert "No rubric scores." in html


def test_garbage_values_do_not_break_rendering() -> None:
    result = task_result()
    broken = copy.deepcopy(result)
    broken["report"].update(
        timeline="not a list", rubric_scores=[1, None, {"score": "high"}], notable_events=[{}],
        idle_ranges=[{"start_s": "abc"}], tools_used=None,
    )  # fmt: skip
    broken["coverage"] = {"duration_s": float("inf"), "failed_ranges": "x"}
    broken["usage"] = {"per_model": {"m": "x"}}
    html = render_report(broken)
    assert "?</b>/5" in html


# ---------------------------------------------------------------------- the cost estimate
def test_priced_adds_usd_per_model_and_total() -> None:
    usage = priced(USAGE)
    flash = usage["per_model"]["gemini-2.5-flash"]
    assert flash["estimated_usd"] == pytest.approx(0.30 + 0.25)
    assert usage["estimated_usd"] == pytest.approx(0.55)
    assert usage["pricing"]["as_of"] == "2025-07-01"
    assert flash["calls"] == 4  # counts are kept


def test_unknown_model_has_no_estimate_and_no_total() -> None:
    usage = priced({**USAGE, "per_model": {**USAGE["per_model"], "my-model": {
        "input_tokens": 10, "output_tokens": 1}}})  # fmt: skip
    assert usage["per_model"]["my-model"]["estimated_usd"] is None
    assert usage["estimated_usd"] is None


def test_price_lookup_prefers_the_longest_known_name() -> None:
    assert price_for("gemini-2.5-flash-001", DEFAULT_PRICES) == DEFAULT_PRICES["gemini-2.5-flash"]
    assert price_for("gemini-2.5-flash-lite", DEFAULT_PRICES) == Price(0.10, 0.40)
    assert price_for("gemini-2.5-flashy", DEFAULT_PRICES) is None


def test_price_table_setting() -> None:
    table = prices_from_env({"GEMINI_PRICES": '{"my-model": {"input": 1, "output": 2}}'})
    assert table["my-model"] == Price(1.0, 2.0) and "gemini-2.5-flash" in table
    assert prices_from_env({}) is DEFAULT_PRICES
    for bad in ("[1]", "{", '{"m": {"input": -1, "output": 1}}', '{"m": {"input": "1"}}'):
        with pytest.raises(InvalidInputError, match="GEMINI_PRICES"):
            prices_from_env({"GEMINI_PRICES": bad})
