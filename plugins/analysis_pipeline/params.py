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
from dataclasses import dataclass
from typing import Any

from airflow.sdk import Param

from analysis_pipeline.config import Kind, allowed_input_prefixes

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


def _uri_param(description: str, *, required: bool, prefix_only: bool = False) -> Param:
    pattern = uri_pattern(allowed_input_prefixes(), prefix_only=prefix_only)
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


def task_analysis_params() -> dict[str, Param]:
    prefixes = ", ".join(allowed_input_prefixes())
    return {
        "submission_id": _id_param("Submission id; also names the result folder."),
        "screenshare_uri": _uri_param(
            f"Screen recording: one object or a chunk prefix ending in '/'. Under: {prefixes}",
            required=True,
        ),
        "webcam_uri": _uri_param(
            "Optional webcam chunk prefix (proctored task): also triggers proctor_video.",
            required=False,
            prefix_only=True,
        ),
        "task_brief": _text_param("Optional task brief shown to the model as data."),
        "rubric": _text_param("Optional rubric shown to the model as data."),
    }


def proctor_video_params() -> dict[str, Param]:
    prefixes = ", ".join(allowed_input_prefixes())
    return {
        "attempt_id": _id_param("Test-attempt id; also names the result folder."),
        "webcam_uri": _uri_param(
            f"Webcam chunk prefix ending in '/'. Under: {prefixes}",
            required=True,
            prefix_only=True,
        ),
    }


@dataclass(frozen=True)
class AnalysisRequest:
    """One validated run: what the container will be told."""

    kind: Kind
    analysis_id: str
    input_uri: str
    context: dict[str, Any]
    webcam_uri: str | None = None


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


def validate_request(
    kind: Kind, params: Mapping[str, Any], *, prefixes: tuple[str, ...] | None = None
) -> AnalysisRequest:
    prefixes = prefixes or allowed_input_prefixes()
    if kind == "task_analysis":
        webcam = params.get("webcam_uri") or None
        context = {k: _check_text(params[k], k) for k in ("task_brief", "rubric") if params.get(k)}
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
        )
    return AnalysisRequest(
        kind=kind,
        analysis_id=_check_id(params.get("attempt_id"), "attempt_id"),
        input_uri=_check_uri(params.get("webcam_uri"), "webcam_uri", prefixes, prefix_only=True),
        context={},
    )


def request_from_context(kind: Kind, context: Mapping[str, Any]) -> AnalysisRequest:
    """The validated request of the run a task context belongs to."""
    return validate_request(kind, context["params"])


def context_json(context: Mapping[str, Any]) -> str:
    """ANALYSIS_CONTEXT as the container receives it (non-ASCII kept as is: shorter)."""
    return json.dumps(context, sort_keys=True, ensure_ascii=False)
