"""Trigger parameters: JSON schemas for the Airflow trigger form, and the same rules in Python.

The schema is what makes the UI form and the REST API refuse a bad trigger before a run
exists; ``validate_request`` repeats the rules at run time (defence in depth: a run can also
be created with ``airflow dags test`` or a cleared task after a settings change).
The regular expressions are kept ECMAScript-compatible because the UI form evaluates them
in the browser too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from airflow.sdk import Param

from analysis_pipeline.config import Kind, allowed_input_prefixes, output_uri_for

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
# After the allowed prefix: no leading '/', no '..' anywhere, no '//' (empty segment), no
# '%' (encoded tricks), no backslash or whitespace (not even the trailing newline a bare `$`
# lets through); only characters S3 keys from TUS actually use.
# No '.' path segment either ('a/./b', a bare '.'), which would name the allowed root itself.
_KEY_TAIL = r"(?!/)(?!.*\.\.)(?!.*//)(?!(?:.*/)?\.(?:/|$))(?!.*\s)[A-Za-z0-9_.=+/-]+"
# ECS refuses RunTask when containerOverrides exceed 8192 characters, and ANALYSIS_CONTEXT
# travels there: the brief and rubric together must leave room for the rest.
MAX_TEXT = 3_000
MAX_CONTEXT = 6_000
MAX_NAME = 200
MAX_CRITERIA = 20
MAX_CRITERION_DESCRIPTION = 1_000
MAX_SCALE = 100

_SCALE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["min", "max"],
    "additionalProperties": False,
    "properties": {
        "min": {"type": "integer", "minimum": 0, "maximum": MAX_SCALE - 1},
        "max": {"type": "integer", "minimum": 1, "maximum": MAX_SCALE},
    },
    "description": "Whole-number scale the criterion is scored on (min < max); default 1-5.",
}
CRITERION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME},
        "description": {"type": "string", "maxLength": MAX_CRITERION_DESCRIPTION},
        "scale": _SCALE_SCHEMA,
    },
}


class InvalidRequestError(ValueError):
    """A trigger's parameters break the contract; retrying cannot help."""


def uri_pattern(prefixes: tuple[str, ...], *, prefix_only: bool = False) -> str:
    alternatives = "|".join(_escape(p) for p in prefixes)
    tail = _KEY_TAIL + "/" if prefix_only else _KEY_TAIL
    return f"^(?:{alternatives}){tail}$"


def _escape(text: str) -> str:
    # Not re.escape: it escapes '-', which is an invalid escape in the browser's 'u' mode.
    return re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", text)


def _id_param(description: str) -> Param:
    return Param(
        type="string",
        pattern=ID_PATTERN,
        minLength=1,
        maxLength=128,
        # `$` in a JSON-schema pattern accepts a trailing newline; refuse all whitespace.
        **{"not": {"pattern": r"\s"}},
        description=description,
    )


def _uri_param(
    description: str, prefixes: tuple[str, ...], *, required: bool, prefix_only: bool = False
) -> Param:
    pattern = uri_pattern(prefixes, prefix_only=prefix_only)
    if required:
        return Param(type="string", pattern=pattern, description=description)
    # Optional: null/empty, or a valid URI. `anyOf` keeps the form field optional.
    return Param(
        None,
        type=["null", "string"],
        anyOf=[{"type": "null"}, {"type": "string", "maxLength": 0}, {"pattern": pattern}],
        description=description,
    )


def _text_param(description: str) -> Param:
    return Param(None, type=["null", "string"], maxLength=MAX_TEXT, description=description)


def _rubric_param() -> Param:
    return Param(
        None,
        type=["null", "array"],
        items=CRITERION_SCHEMA,
        minItems=1,
        maxItems=MAX_CRITERIA,
        title="Rubric",
        description=(
            'Optional rubric: a JSON list of criteria, each {"name", "description"?, '
            '"scale"?: {"min", "max"}} (default scale 1-5). The report scores each one '
            "on its own scale."
        ),
    )


def _rerun_param() -> Param:
    return Param(
        False,
        type="boolean",
        title="Rerun",
        description=(
            "Analyse again even when a complete result of this recording exists (paid for "
            "again; the earlier result is kept beside the new one). Default: reuse it."
        ),
    )


def task_analysis_params(prefixes: tuple[str, ...] | None = None) -> dict[str, Param]:
    prefixes = prefixes or allowed_input_prefixes()
    shown = ", ".join(prefixes)
    return {
        "submission_id": _id_param("Submission id; also names the result folder."),
        "screenshare_uri": _uri_param(
            f"Screen recording: one object or a chunk prefix ending in '/'. Under: {shown}",
            prefixes,
            required=True,
        ),
        "webcam_uri": _uri_param(
            "Optional webcam chunk prefix (proctored task): also triggers proctor_video.",
            prefixes,
            required=False,
            prefix_only=True,
        ),
        "task_brief": _text_param("Optional task brief shown to the model as data."),
        "rubric": _rubric_param(),
        "rerun": _rerun_param(),
    }


def proctor_video_params(prefixes: tuple[str, ...] | None = None) -> dict[str, Param]:
    prefixes = prefixes or allowed_input_prefixes()
    shown = ", ".join(prefixes)
    return {
        "attempt_id": _id_param(
            "Test-attempt id (or, with source 'submission', the task submission's id); also "
            "names the result folder."
        ),
        "webcam_uri": _uri_param(
            f"Webcam chunk prefix ending in '/'. Under: {shown}",
            prefixes,
            required=True,
            prefix_only=True,
        ),
        "source": Param(
            "attempt",
            type="string",
            enum=list(SOURCES),
            title="Source",
            description=(
                "'attempt': a proctored test (results under proctor_video/<attempt_id>/); "
                "'submission': the webcam of a proctored task, set by task_analysis (results "
                "under task_analysis/<submission id>/webcam/)."
            ),
        ),
        "rerun": _rerun_param(),
        "test_name": Param(
            None,
            type=["null", "string"],
            maxLength=MAX_NAME,
            description="Optional name of the test, shown to the model as data.",
        ),
    }


# Where a proctor_video run's webcam comes from: a proctored test (an attempt), or the webcam
# stream of a proctored task (a submission; task_analysis triggers those).
SOURCES = ("attempt", "submission")


@dataclass(frozen=True)
class AnalysisRequest:
    """One validated run: what the container will be told."""

    kind: Kind
    analysis_id: str
    input_uri: str
    context: dict[str, Any]
    webcam_uri: str | None = None
    # When the run was submitted (its run_after): the analysis' place in the fleet's Gemini
    # line, the same on every retry and Clear of the run.
    submitted_at: datetime | None = None
    source: str = "attempt"
    rerun: bool = False

    @property
    def key(self) -> str:
        """The analysis' identity within its kind: an attempt id, or `submission:<id>` for
        a task's webcam (':' is in no id, so the two can never be mistaken for each other)."""
        return self.analysis_id if self.source == "attempt" else f"submission:{self.analysis_id}"

    def output_uri(self, *, env: Mapping[str, str] | None = None) -> str:
        """Where this analysis' results go (a task's webcam: inside the task's folder)."""
        if self.kind == "proctor_video" and self.source == "submission":
            return output_uri_for("task_analysis", self.analysis_id, env=env) + "webcam/"
        return output_uri_for(self.kind, self.analysis_id, env=env)


def _check_id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(ID_PATTERN, value):
        raise InvalidRequestError(f"{field} must match {ID_PATTERN}, got {str(value)[:40]!r}")
    return value


def _check_text(value: Any, field: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise InvalidRequestError(f"{field} must be text of at most {MAX_TEXT} characters")
    return value


def _check_uri(
    value: Any, field: str, prefixes: tuple[str, ...], *, prefix_only: bool = False
) -> str:
    if not isinstance(value, str) or not re.fullmatch(
        uri_pattern(prefixes, prefix_only=prefix_only), value
    ):
        where = ", ".join(prefixes)
        shape = "a prefix ending in '/'" if prefix_only else "an object or prefix"
        raise InvalidRequestError(
            f"{field} must be {shape} under {where} without '..', '//' or unusual "
            f"characters, got {str(value)[:80]!r}"
        )
    return value


def _check_rubric(value: Any) -> list[dict[str, Any]]:
    """The structured rubric (the schema's rules, plus min < max, which JSON Schema cannot
    say), as the container receives it."""
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_CRITERIA:
        raise InvalidRequestError(f"rubric must be a list of 1 to {MAX_CRITERIA} criteria")
    criteria = []
    for i, item in enumerate(value):
        where = f"rubric[{i}]"
        if not isinstance(item, Mapping) or set(item) - {"name", "description", "scale"}:
            raise InvalidRequestError(
                f"{where} must be an object with name, description and scale only"
            )
        name = item.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
            raise InvalidRequestError(f"{where}.name must be text of 1 to {MAX_NAME} characters")
        criterion: dict[str, Any] = {"name": name.strip()}
        description = item.get("description")
        if description is not None:
            if not isinstance(description, str) or len(description) > MAX_CRITERION_DESCRIPTION:
                raise InvalidRequestError(
                    f"{where}.description must be text of at most "
                    f"{MAX_CRITERION_DESCRIPTION} characters"
                )
            criterion["description"] = description
        if item.get("scale") is not None:
            criterion["scale"] = _check_scale(item["scale"], f"{where}.scale")
        criteria.append(criterion)
    names = [c["name"].casefold() for c in criteria]
    if len(set(names)) != len(names):
        raise InvalidRequestError("rubric criteria must have different names")
    return criteria


def _check_scale(value: Any, where: str) -> dict[str, int]:
    ok = (
        isinstance(value, Mapping)
        and set(value) == {"min", "max"}
        and all(isinstance(value[k], int) and not isinstance(value[k], bool) for k in value)
        and 0 <= value["min"] < value["max"] <= MAX_SCALE
    )
    if not ok:
        raise InvalidRequestError(
            f'{where} must be {{"min": int, "max": int}} with 0 <= min < max <= {MAX_SCALE}'
        )
    return {"min": value["min"], "max": value["max"]}


def validate_request(
    kind: Kind, params: Mapping[str, Any], *, prefixes: tuple[str, ...] | None = None
) -> AnalysisRequest:
    prefixes = prefixes or allowed_input_prefixes()
    if kind == "task_analysis":
        webcam = params.get("webcam_uri") or None
        context: dict[str, Any] = {}
        if params.get("task_brief"):
            context["task_brief"] = _check_text(params["task_brief"], "task_brief")
        if params.get("rubric") is not None:
            context["rubric"] = _check_rubric(params["rubric"])
        if len(context_json(context)) > MAX_CONTEXT:
            raise InvalidRequestError(
                f"task_brief and rubric together must stay under {MAX_CONTEXT} characters "
                "(they travel in the ECS task overrides, limited to 8192)"
            )
        return AnalysisRequest(
            kind=kind,
            analysis_id=_check_id(params.get("submission_id"), "submission_id"),
            input_uri=_check_uri(params.get("screenshare_uri"), "screenshare_uri", prefixes),
            context=context,
            webcam_uri=(
                _check_uri(webcam, "webcam_uri", prefixes, prefix_only=True) if webcam else None
            ),
            rerun=_check_rerun(params.get("rerun")),
        )
    test_name = params.get("test_name")
    if test_name is not None and (not isinstance(test_name, str) or len(test_name) > MAX_NAME):
        raise InvalidRequestError(f"test_name must be text of at most {MAX_NAME} characters")
    source = params.get("source") or "attempt"
    if source not in SOURCES:
        raise InvalidRequestError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    return AnalysisRequest(
        kind=kind,
        analysis_id=_check_id(params.get("attempt_id"), "attempt_id"),
        input_uri=_check_uri(params.get("webcam_uri"), "webcam_uri", prefixes, prefix_only=True),
        context={"test_name": test_name} if test_name else {},
        source=source,
        rerun=_check_rerun(params.get("rerun")),
    )


def _check_rerun(value: Any) -> bool:
    if value in (None, False, True):
        return bool(value)
    raise InvalidRequestError(f"rerun must be true or false, got {str(value)[:20]!r}")


def request_from_context(kind: Kind, context: Mapping[str, Any]) -> AnalysisRequest:
    """The validated request of the run a task context belongs to."""
    request = validate_request(kind, context["params"])
    submitted_at = getattr(context.get("dag_run"), "run_after", None)
    return replace(request, submitted_at=submitted_at) if submitted_at else request


def context_json(context: Mapping[str, Any]) -> str:
    """ANALYSIS_CONTEXT as the container receives it (non-ASCII kept as is: shorter)."""
    return json.dumps(context, sort_keys=True, ensure_ascii=False)
