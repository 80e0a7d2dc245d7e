"""The JSON Schemas shipped in analysis_pipeline.schemas, tested against the code: the conf
schemas are what the DAGs' Params generate (they cannot drift), and the result schema holds
for what the containers' own code writes (the container runs in test_task_analyzer_e2e.py and
test_proctor_e2e.py validate real outputs too)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

REPO = Path(__file__).resolve().parents[1]

from analysis_engine.result import ALL_SEGMENTS_FAILED, build_result  # noqa: E402
from analysis_pipeline.config import DEFAULT_ALLOWED_INPUT_PREFIXES  # noqa: E402
from analysis_pipeline.schemas import NAMES, load_schema, main  # noqa: E402

PREFIX = DEFAULT_ALLOWED_INPUT_PREFIXES.split(",")[0]


def test_every_schema_is_a_valid_draft_2020_12_schema() -> None:
    for name in NAMES:
        jsonschema.Draft202012Validator.check_schema(load_schema(name))


def test_the_shipped_conf_schemas_are_what_the_dags_params_generate(capsys) -> None:
    assert main(["--check"]) == 0, capsys.readouterr().out


def test_the_dags_are_built_with_those_params(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("ANALYSIS_LAUNCHER", "local")  # settings from the environment
    monkeypatch.setenv("ALLOWED_INPUT_PREFIXES", PREFIX)
    dags = DagBag(dag_folder=str(REPO / "dags")).dags
    for kind in ("task_analysis", "proctor_video"):
        schema = load_schema(f"{kind}.conf")
        params = dags[kind].params
        assert set(params.keys()) == set(schema["properties"]), kind
        for name in params:
            param = params.get_param(name)
            shipped = {k: v for k, v in schema["properties"][name].items()
                       if k not in ("description", "default")}  # fmt: skip
            assert dict(param.schema) == shipped, (kind, name)


TASK = {"submission_id": "S-1", "screenshare_uri": f"{PREFIX}tasks/S-1/screen.mp4"}


@pytest.mark.parametrize(
    "conf, valid",
    [
        (TASK, True),
        ({**TASK, "rubric": [{"name": "Tests", "scale": {"min": 0, "max": 3}}], "rerun": True},
         True),
        ({**TASK, "webcam_uri": f"{PREFIX}webcam/S-1/", "task_brief": "Build X"}, True),
        ({**TASK, "rubric": "free text"}, False),
        ({**TASK, "rerun": "yes"}, False),
        ({"screenshare_uri": TASK["screenshare_uri"]}, False),
        ({**TASK, "screenshare_uri": "s3://elsewhere/x.mp4"}, False),
    ],
)  # fmt: skip
def test_the_task_conf_schema_accepts_what_the_dag_accepts(conf: dict, valid: bool) -> None:
    from analysis_pipeline.params import InvalidRequestError, validate_request

    schema = load_schema("task_analysis.conf")
    ok = jsonschema.Draft202012Validator(schema).is_valid(conf)
    assert ok is valid
    try:
        validate_request("task_analysis", conf, prefixes=(PREFIX,))
        code_ok = True
    except InvalidRequestError:
        code_ok = False
    assert code_ok is valid


def test_the_proctor_conf_schema_knows_sources_and_test_names() -> None:
    schema = load_schema("proctor_video.conf")
    good = {"attempt_id": "A-1", "webcam_uri": f"{PREFIX}webcam/A-1/", "test_name": "Go"}
    jsonschema.validate(good, schema)
    jsonschema.validate({**good, "source": "submission"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**good, "source": "elsewhere"}, schema)


def _usage() -> dict[str, Any]:
    from analysis_engine.gemini.client import ModelUsage

    return {"gemini-2.5-flash": ModelUsage(calls=5, failed_calls=1, input_tokens=9000,
                                           output_tokens=400, rate_limited=1,
                                           budget_wait_s=2.5)}  # fmt: skip


TASK_REPORT = {
    "source": "reduce", "summary": "s", "timeline": [], "integrity_flags": [], "strengths": [],
    "concerns": [], "tools_used": [], "notable_events": [], "idle_ranges": [],
    "not_analysed_ranges": [], "rubric_scale": None,
    "rubric_scores": [
        {"criterion": "Tests", "score": 3, "rationale": "r", "evidence_s": [1.5],
         "scale": {"min": 0, "max": 3}},
        {"criterion": "Docs", "score": None, "not_scored": True, "rationale": "r",
         "evidence_s": [], "scale": {"min": 1, "max": 5}},
    ],
}  # fmt: skip
PROCTOR_REPORT = {
    "source": "signals_only", "summary": "s",
    "integrity": {"level": "medium", "reasons": ["camera covered 9 s"], "rules_level": "medium"},
    "events": [{"type": "camera_covered", "start_s": 3.0, "end_s": 12.0, "confidence": 0.9,
                "source": "signal", "description": "black", "evidence": {}}],
    "event_counts": {"camera_covered": 1}, "recording": {"video": "video.mp4"},
    "signals": {}, "not_analysed_ranges": [],
}  # fmt: skip


@pytest.mark.parametrize(
    "kind, status, error, report",
    [
        ("task_analysis", "complete", None, TASK_REPORT),
        ("proctor_video", "failed", ALL_SEGMENTS_FAILED, PROCTOR_REPORT),
        ("task_analysis", "invalid_input", "INPUT_URI: not a video", None),
    ],
)
def test_results_the_container_code_builds_match_the_result_schema(
    kind: str, status: str, error: str | None, report: dict | None
) -> None:
    result = build_result(
        kind=kind, analysis_id="S-1", status=status, error=error, report=report,  # type: ignore[arg-type]
        coverage={"segments_total": 2, "segments_analysed": 0, "segments_failed": 2,
                  "segments_skipped": 0, "duration_s": 60.0, "failed_ranges": [],
                  "skipped_ranges": [], "cut_short_by": None},
        usage=_usage(), timings={"total_s": 12.0}, models={"map": "gemini-2.5-flash"},
        started_at="2026-12-07T10:00:00Z", input_uri="s3://r/k", input_identity="etag:x;size:1",
        rerun_id="submission:S-1:rerun-1",
    )  # fmt: skip
    jsonschema.validate(json.loads(json.dumps(result)), load_schema("result"))
    broken = {**result, "status": "done"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, load_schema("result"))
