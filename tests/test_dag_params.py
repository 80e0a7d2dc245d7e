"""Trigger-param validation: the DAGs' JSON schemas (what the UI form and REST API enforce)
and the same rules in Python (what the validate step re-checks)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import SETTINGS_ENV, terraform_settings

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from airflow.dag_processing.dagbag import DagBag  # noqa: E402
from airflow.sdk.exceptions import ParamValidationError  # noqa: E402
from airflow.serialization.serialized_objects import DagSerialization  # noqa: E402

from analysis_pipeline.params import (  # noqa: E402
    InvalidRequestError,
    context_json,
    validate_request,
)

PREFIXES = "s3://recordings/uploads/,file:///data/rec"
SCREEN = "s3://recordings/uploads/tasks/S-1/screen.mp4"
WEBCAM = "s3://recordings/uploads/webcam/S-1/"


@pytest.fixture(scope="module")
def dags() -> dict[str, Any]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SETTINGS_ENV, json.dumps(terraform_settings(ALLOWED_INPUT_PREFIXES=PREFIXES)))
        patch.delenv("ALLOWED_INPUT_PREFIXES", raising=False)
        bag = DagBag(dag_folder=str(REPO / "dags"))
    assert not bag.import_errors
    return bag.dags


def validate(dag: Any, conf: dict[str, Any]) -> dict[str, Any]:
    """Exactly what DagRun creation (UI form, REST API) does with the serialized DAG."""
    serialized = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    return serialized.params.deep_merge(conf).validate()


GOOD_TASK = [
    {"submission_id": "S-1", "screenshare_uri": SCREEN},
    {"submission_id": "sub_2026.11-27", "screenshare_uri": "s3://recordings/uploads/t/S-1/"},
    {"submission_id": "S-1", "screenshare_uri": SCREEN, "webcam_uri": WEBCAM},
    {"submission_id": "S-1", "screenshare_uri": SCREEN, "webcam_uri": None},
    {"submission_id": "S-1", "screenshare_uri": SCREEN, "webcam_uri": ""},
    {
        "submission_id": "S-1",
        "screenshare_uri": SCREEN,
        "task_brief": "Build X",
        "rubric": [
            {"name": "Correctness", "description": "Right answers", "scale": {"min": 0, "max": 10}},
            {"name": "Testing"},
        ],
    },
    {"submission_id": "S-1", "screenshare_uri": "file:///data/rec/S-1/screen.webm"},
    {"submission_id": "a" * 128, "screenshare_uri": SCREEN},
]

BAD_TASK = {
    "missing id": {"screenshare_uri": SCREEN},
    "missing screenshare": {"submission_id": "S-1"},
    "empty id": {"submission_id": "", "screenshare_uri": SCREEN},
    "id with space": {"submission_id": "S 1", "screenshare_uri": SCREEN},
    "id with slash": {"submission_id": "S/1", "screenshare_uri": SCREEN},
    "id path trick": {"submission_id": "../S-1", "screenshare_uri": SCREEN},
    "id leading dot": {"submission_id": ".hidden", "screenshare_uri": SCREEN},
    "id leading dash": {"submission_id": "-rf", "screenshare_uri": SCREEN},
    "id unicode": {"submission_id": "S-1é", "screenshare_uri": SCREEN},
    "id too long": {"submission_id": "a" * 129, "screenshare_uri": SCREEN},
    "id trailing newline": {"submission_id": "S-1\n", "screenshare_uri": SCREEN},
    "other bucket": {"submission_id": "S-1", "screenshare_uri": "s3://other/uploads/x.mp4"},
    "lookalike prefix": {"submission_id": "S-1", "screenshare_uri": "s3://recordings/uploads-x/a"},
    "prefix itself": {"submission_id": "S-1", "screenshare_uri": "s3://recordings/uploads/"},
    "dotdot": {"submission_id": "S-1", "screenshare_uri": "s3://recordings/uploads/../secret/x"},
    "dotdot end": {"submission_id": "S-1", "screenshare_uri": "s3://recordings/uploads/a/.."},
    "encoded dotdot": {
        "submission_id": "S-1",
        "screenshare_uri": "s3://recordings/uploads/%2e%2e/x",
    },
    "double slash": {"submission_id": "S-1", "screenshare_uri": "s3://recordings/uploads//x.mp4"},
    "backslash": {"submission_id": "S-1", "screenshare_uri": "s3://recordings/uploads/a\\..\\b"},
    "trailing newline uri": {"submission_id": "S-1", "screenshare_uri": SCREEN + "\n"},
    "file escape": {"submission_id": "S-1", "screenshare_uri": "file:///data/rec/../../etc/pw"},
    "file lookalike": {"submission_id": "S-1", "screenshare_uri": "file:///data/record/x.mp4"},
    "http uri": {"submission_id": "S-1", "screenshare_uri": "https://recordings/uploads/x.mp4"},
    "webcam not a prefix": {
        "submission_id": "S-1",
        "screenshare_uri": SCREEN,
        "webcam_uri": "s3://recordings/uploads/webcam/S-1/0.webm",
    },
    "webcam outside": {
        "submission_id": "S-1",
        "screenshare_uri": SCREEN,
        "webcam_uri": "s3://elsewhere/webcam/S-1/",
    },
    "brief too long": {
        "submission_id": "S-1",
        "screenshare_uri": SCREEN,
        "task_brief": "x" * 3001,
    },
    "dot segment": {"submission_id": "S-1", "screenshare_uri": "s3://recordings/uploads/./x.mp4"},
    # The rubric is a list of criteria, not free text.
    "rubric as text": {"submission_id": "S-1", "screenshare_uri": SCREEN, "rubric": "Y"},
    "criterion without name": {"submission_id": "S-1", "screenshare_uri": SCREEN,
                               "rubric": [{"description": "d"}]},
    "criterion unknown key": {"submission_id": "S-1", "screenshare_uri": SCREEN,
                              "rubric": [{"name": "n", "weight": 2}]},
    "scale not integers": {"submission_id": "S-1", "screenshare_uri": SCREEN,
                           "rubric": [{"name": "n", "scale": {"min": 0.5, "max": 4}}]},
    "scale too wide": {"submission_id": "S-1", "screenshare_uri": SCREEN,
                       "rubric": [{"name": "n", "scale": {"min": 0, "max": 1000}}]},
    "too many criteria": {"submission_id": "S-1", "screenshare_uri": SCREEN,
                          "rubric": [{"name": f"c{i}"} for i in range(21)]},
    "empty rubric": {"submission_id": "S-1", "screenshare_uri": SCREEN, "rubric": []},
}  # fmt: skip

GOOD_PROCTOR = [
    {"attempt_id": "A-77", "webcam_uri": WEBCAM},
    {"attempt_id": "A-77", "webcam_uri": WEBCAM, "test_name": "Backend engineer, 2026"},
    {"attempt_id": "A-77", "webcam_uri": "file:///data/rec/webcam/A-77/"},
]

BAD_PROCTOR = {
    "missing id": {"webcam_uri": WEBCAM},
    "missing webcam": {"attempt_id": "A-77"},
    "bad id": {"attempt_id": "A 77;rm", "webcam_uri": WEBCAM},
    "webcam object": {"attempt_id": "A-77", "webcam_uri": "s3://recordings/uploads/w/0.webm"},
    "webcam outside": {"attempt_id": "A-77", "webcam_uri": "s3://recordings/other/w/"},
    "webcam dotdot": {"attempt_id": "A-77", "webcam_uri": "s3://recordings/uploads/w/../../"},
    "allowed root itself": {"attempt_id": "A-77", "webcam_uri": "file:///data/rec/./"},
    "test name too long": {"attempt_id": "A-77", "webcam_uri": WEBCAM, "test_name": "t" * 201},
}


@pytest.mark.parametrize("conf", GOOD_TASK)
def test_task_analysis_schema_accepts(dags: dict[str, Any], conf: dict[str, Any]) -> None:
    validate(dags["task_analysis"], conf)
    request = validate_request("task_analysis", conf, prefixes=tuple(_prefixes()))
    assert request.analysis_id == conf["submission_id"]


@pytest.mark.parametrize("case", sorted(BAD_TASK))
def test_task_analysis_schema_rejects(dags: dict[str, Any], case: str) -> None:
    conf = BAD_TASK[case]
    with pytest.raises(ParamValidationError):
        validate(dags["task_analysis"], conf)
    with pytest.raises(InvalidRequestError):
        validate_request("task_analysis", conf, prefixes=tuple(_prefixes()))


@pytest.mark.parametrize("conf", GOOD_PROCTOR)
def test_proctor_video_schema_accepts(dags: dict[str, Any], conf: dict[str, Any]) -> None:
    validate(dags["proctor_video"], conf)
    assert validate_request("proctor_video", conf, prefixes=tuple(_prefixes())).input_uri


@pytest.mark.parametrize("case", sorted(BAD_PROCTOR))
def test_proctor_video_schema_rejects(dags: dict[str, Any], case: str) -> None:
    conf = BAD_PROCTOR[case]
    with pytest.raises(ParamValidationError):
        validate(dags["proctor_video"], conf)
    with pytest.raises(InvalidRequestError):
        validate_request("proctor_video", conf, prefixes=tuple(_prefixes()))


def test_context_carries_brief_and_rubric_only_when_given() -> None:
    prefixes = tuple(_prefixes())
    plain = validate_request(
        "task_analysis", {"submission_id": "S-1", "screenshare_uri": SCREEN}, prefixes=prefixes
    )
    assert plain.context == {} and plain.webcam_uri is None
    rubric = [{"name": " Correctness ", "description": "d", "scale": {"min": 1, "max": 4}},
              {"name": "Testing"}]  # fmt: skip
    full = validate_request(
        "task_analysis",
        {"submission_id": "S-1", "screenshare_uri": SCREEN, "task_brief": "B", "rubric": rubric},
        prefixes=prefixes,
    )
    assert full.context == {
        "task_brief": "B",
        "rubric": [{"name": "Correctness", "description": "d", "scale": {"min": 1, "max": 4}},
                   {"name": "Testing"}],
    }  # fmt: skip
    # The test name reaches the proctoring container too.
    proctor = validate_request(
        "proctor_video", {"attempt_id": "A-1", "webcam_uri": WEBCAM, "test_name": "Go test"},
        prefixes=prefixes,
    )  # fmt: skip
    assert proctor.context == {"test_name": "Go test"}


@pytest.mark.parametrize(
    "rubric, message",
    [([{"name": "a", "scale": {"min": 5, "max": 5}}], r"rubric\[0\]\.scale must be"),
     ([{"name": "Same"}, {"name": "same "}], "different names")],
)  # fmt: skip
def test_rubric_rules_json_schema_cannot_state(rubric: Any, message: str, dags: Any) -> None:
    conf = {"submission_id": "S-1", "screenshare_uri": SCREEN, "rubric": rubric}
    validate(dags["task_analysis"], conf)  # the form lets it through...
    with pytest.raises(InvalidRequestError, match=message):  # ...validate refuses it by name
        validate_request("task_analysis", conf, prefixes=tuple(_prefixes()))


def test_prefix_without_trailing_slash_is_not_a_wildcard(monkeypatch) -> None:
    from analysis_pipeline.config import allowed_input_prefixes

    monkeypatch.setenv("ALLOWED_INPUT_PREFIXES", "s3://rec, s3://rec2/in")
    assert allowed_input_prefixes() == ("s3://rec/", "s3://rec2/in/")


def _prefixes() -> list[str]:
    return [p if p.endswith("/") else p + "/" for p in PREFIXES.split(",")]


def test_brief_and_rubric_together_must_fit_the_ecs_overrides(dags: dict[str, Any]) -> None:
    criteria = [{"name": f"criterion {i}", "description": "d" * 900} for i in range(4)]
    conf = {"submission_id": "S-1", "screenshare_uri": SCREEN,
            "task_brief": "é" * 3000, "rubric": criteria}  # fmt: skip
    validate(dags["task_analysis"], conf)  # each field alone is within the form's limit
    with pytest.raises(InvalidRequestError, match="8192"):
        validate_request("task_analysis", conf, prefixes=tuple(_prefixes()))
    conf["rubric"] = criteria[:3]
    request = validate_request("task_analysis", conf, prefixes=tuple(_prefixes()))
    assert len(context_json(request.context)) <= 6000
