"""CloudWatch EMF lines: what the containers print parses as EMF and carries the contract's
metrics (pure builders here; the container runs in test_task_analyzer_e2e.py check the
lines a real run prints)."""

from __future__ import annotations

import copy
import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from analysis_engine import metrics
from analysis_engine.result import ALL_SEGMENTS_FAILED
from devtools import emf

FINISHED = datetime.now(UTC).replace(microsecond=0)


def result(**overrides: Any) -> dict[str, Any]:
    base = {
        "schema_version": 1,
        "kind": "task_analysis",
        "analysis_id": "sub-1",
        "status": "complete",
        "error": None,
        "coverage": {
            "segments_total": 4,
            "segments_analysed": 3,
            "segments_failed": 1,
            "duration_s": 480.0,
        },
        "usage": {
            "calls": 4,
            "attempts": 7,
            "input_tokens": 120_000,
            "output_tokens": 4_000,
            "rate_limited": 2,
            "budget_wait_s": 12.5,
            "estimated_usd": 0.046,
        },
        "timings": {"total_s": 95.25},
        "finished_at": FINISHED.isoformat().replace("+00:00", "Z"),
    }
    return {**base, **overrides}


def only_document(lines: list[str]) -> dict[str, Any]:
    assert len(lines) == 1
    document = json.loads(lines[0])
    emf.validate(document)
    return document


def test_a_finished_analysis_is_one_valid_emf_document_with_every_metric() -> None:
    doc = only_document(metrics.analysis_document(result(), namespace="AnalysisPipeline"))
    directive = doc["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "AnalysisPipeline"
    assert directive["Dimensions"] == [["Kind"], ["Kind", "Status"]]
    units = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
    assert units == {
        "Analyses": "Count", "SentinelFailures": "Count", "DurationSeconds": "Seconds",
        "RecordingSeconds": "Seconds", "InputTokens": "Count", "OutputTokens": "Count",
        "EstimatedUSD": "None", "SegmentsAnalysed": "Count", "SegmentsFailed": "Count",
        "GeminiCalls": "Count", "Gemini429s": "Count", "BudgetWaitSeconds": "Seconds",
    }  # fmt: skip
    assert (doc["Kind"], doc["Status"], doc["AnalysisId"]) == ("task_analysis", "complete", "sub-1")
    assert (doc["Analyses"], doc["SentinelFailures"], doc["Gemini429s"]) == (1, 0, 2)
    assert (doc["GeminiCalls"], doc["BudgetWaitSeconds"], doc["EstimatedUSD"]) == (7, 12.5, 0.046)
    assert doc["_aws"]["Timestamp"] == int(FINISHED.timestamp() * 1000)


def test_the_sentinel_is_counted_and_unknown_figures_are_left_out() -> None:
    failed = result(status="failed", error=ALL_SEGMENTS_FAILED, timings={})
    failed["usage"] = {**failed["usage"], "estimated_usd": None}
    doc = only_document(metrics.analysis_document(failed, namespace="X"))
    assert (doc["Status"], doc["SentinelFailures"], doc["Error"]) == (
        "failed", 1, ALL_SEGMENTS_FAILED,
    )  # fmt: skip
    names = {m["Name"] for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert "EstimatedUSD" not in names and "DurationSeconds" not in names  # never a guess


def test_an_invalid_input_result_without_usage_still_makes_a_valid_document() -> None:
    rejected = {"kind": "proctor_video", "analysis_id": None, "status": "invalid_input",
                "error": "ANALYSIS_ID: is required but not set", "usage": {}, "coverage": None,
                "timings": {}, "finished_at": "not a time"}  # fmt: skip
    doc = only_document(metrics.analysis_document(rejected, namespace="X"))
    assert (doc["Kind"], doc["Status"], doc["Analyses"], doc["InputTokens"]) == (
        "proctor_video", "invalid_input", 1, 0,
    )  # fmt: skip


def test_the_start_document_counts_one_container() -> None:
    doc = only_document(metrics.started_document(kind="proctor_video", namespace="X"))
    assert doc["AnalysesStarted"] == 1
    assert doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Kind"]]


@pytest.mark.parametrize(
    "value, expected",
    [("", "AnalysisPipeline"), ("Team/Analyses", "Team/Analyses"),
     ("AWS/ECS", "AnalysisPipeline"), ("bad\nname", "AnalysisPipeline")],
)  # fmt: skip
def test_the_namespace_setting_falls_back_to_the_default_when_unusable(
    value: str, expected: str
) -> None:
    assert metrics.namespace_from_env({"METRICS_NAMESPACE": value}) == expected


def test_lines_are_written_bare_and_a_broken_stream_never_raises() -> None:
    out = io.StringIO()
    metrics.emit(metrics.started_document(kind="task_analysis", namespace="X"), stream=out)
    assert out.getvalue().endswith("}\n") and out.getvalue().startswith('{"Kind"')

    class Broken(io.StringIO):
        def write(self, _: str) -> int:
            raise OSError("stdout closed")

    metrics.emit(["{}"], stream=Broken())  # logged, not raised


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda d: d.pop("_aws"), "'_aws' is a required property"),
        (lambda d: d["_aws"].pop("Timestamp"), "'Timestamp' is a required property"),
        (lambda d: d["_aws"]["CloudWatchMetrics"][0].update(Namespace="AWS/Mine"), "Namespace"),
        (lambda d: d["_aws"]["CloudWatchMetrics"][0]["Metrics"][0].update(Unit="Tokens"),
         "Tokens"),
        (lambda d: d.update(Analyses="1"), "metric 'Analyses' must be a number"),
        (lambda d: d.update(Analyses=list(range(101))), "1 to 100 values"),
        (lambda d: d.pop("Kind"), "dimension 'Kind'"),
        (lambda d: d.update(Kind=3), "dimension 'Kind'"),
    ],
)  # fmt: skip
def test_the_validator_refuses_what_cloudwatch_would_not_extract(
    break_it: Any, message: str
) -> None:
    doc = json.loads(metrics.analysis_document(result(), namespace="X")[0])
    emf.validate(copy.deepcopy(doc))
    break_it(doc)
    with pytest.raises(emf.EmfError, match=message.replace("(", r"\(")):
        emf.validate(doc)


def test_dashboard_figures_come_from_the_documents_alone() -> None:
    start = FINISHED.timestamp() - 3600  # CloudWatch takes timestamps up to 14 days old

    def at(seconds: float) -> str:
        return datetime.fromtimestamp(start + seconds, UTC).isoformat().replace("+00:00", "Z")

    lines = [
        *metrics.started_document(kind="task_analysis", namespace="X",
                                  at=datetime.fromtimestamp(start, UTC)),
        *metrics.started_document(kind="task_analysis", namespace="X",
                                  at=datetime.fromtimestamp(start, UTC)),
        *metrics.started_document(kind="proctor_video", namespace="X",
                                  at=datetime.fromtimestamp(start + 10, UTC)),
        *metrics.analysis_document(result(finished_at=at(600)), namespace="X"),
        *metrics.analysis_document(
            result(kind="proctor_video", status="failed", error=ALL_SEGMENTS_FAILED,
                   finished_at=at(1800)), namespace="X"),
    ]  # fmt: skip
    docs = emf.documents("log line\n" + "\n".join(lines) + "\nlast line")
    for doc in docs:
        emf.validate(doc)
    figures = emf.dashboard_figures(emf.extract(docs), period_s=60)
    assert figures["drain"]["started"] == 3 and figures["drain"]["finished"] == 2
    assert figures["drain"]["in_flight_at_end"] == 1
    assert [p["finished"] for p in figures["drain"]["progress"]] == [1, 2]
    assert figures["failures"]["failure_rate"] == 0.5
    assert figures["failures"]["sentinel"] == 1 and figures["failures"]["gemini_429s"] == 4
    assert figures["cost"]["estimated_usd"] == pytest.approx(0.092)
    assert figures["cost"]["usd_per_hour"] == pytest.approx(0.092 / 0.5)  # over 30 minutes
