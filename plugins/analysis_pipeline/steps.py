"""The DAG steps around the launch: validate, check the result, publish.

Plain functions (easy to test) plus the TaskFlow wrappers the DAG files use.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from airflow.sdk import task
from airflow.sdk.exceptions import AirflowFailException

from analysis_pipeline import config, storage
from analysis_pipeline.callback.tasks import failures_recorded
from analysis_pipeline.outcome import classify
from analysis_pipeline.params import InvalidRequestError, validate_request

log = logging.getLogger(__name__)


def validate_recordings(kind: config.Kind, params: Mapping[str, Any]) -> dict[str, Any]:
    """Refuse a run whose params break the contract or whose recording is missing/empty.

    Both are the caller's mistake: fail at once (no retry, no Fargate time). Storage errors
    (throttling, outage) are left to propagate, so the normal retries apply. A missing
    *webcam* stream does not fail the recruiter-facing task analysis: the reason is recorded
    here and ``proctor_video`` (still triggered) fails and alerts for it on its own.
    """
    try:
        request = validate_request(kind, params)
        if config.launcher_mode() == "ecs":
            config.ecs_network()  # SettingsError names what ecs mode cannot place tasks without
        checked: dict[str, Any] = {"input_bytes": storage.require_recording(request.input_uri)}
    except (InvalidRequestError, storage.RecordingMissingError, config.SettingsError) as exc:
        raise AirflowFailException(str(exc)) from exc
    if request.webcam_uri:
        try:
            checked["webcam_bytes"] = storage.require_recording(request.webcam_uri)
        except storage.RecordingMissingError as exc:
            log.warning("Proctoring of %s will fail on its own: %s", request.analysis_id, exc)
            checked["webcam_problem"] = str(exc)
    return {
        "analysis_id": request.analysis_id,
        "input_uri": request.input_uri,
        "webcam_uri": request.webcam_uri,
        "output_uri": request.output_uri(),
        **checked,
    }


def summarize(kind: config.Kind, result: Mapping[str, Any], output_uri: str) -> dict[str, Any]:
    """The small XCom summary of one analysis (the report itself stays in result.json)."""
    coverage = result.get("coverage") or {}
    usage = result.get("usage") or {}
    report = result.get("report") or {}
    summary: dict[str, Any] = {
        "kind": kind,
        "analysis_id": result.get("analysis_id"),
        "status": result.get("status"),
        "error": result.get("error"),
        "result_uri": output_uri + "result.json",
        "coverage": coverage,
        "usage": {
            k: usage.get(k) for k in ("calls", "input_tokens", "output_tokens", "estimated_usd")
        },
        "report_uri": output_uri + "report.html",
        "finished_at": result.get("finished_at"),
    }
    if kind == "proctor_video" and isinstance(report, Mapping):
        summary["events"] = len(report.get("events") or [])
        summary["video_uri"] = video_uri(report, output_uri)
    return summary


def video_uri(report: Mapping[str, Any], output_uri: str) -> str | None:
    """The stitched video the container actually wrote (`report.recording.video`:
    `video.webm`, or `video.mp4` for H.264 and Safari chunks); None when it wrote none."""
    recording = report.get("recording")
    name = recording.get("video") if isinstance(recording, Mapping) else None
    if isinstance(name, str) and re.fullmatch(r"video\.(webm|mp4)", name):
        return output_uri + name
    return None


def check_result(
    kind: config.Kind, params: Mapping[str, Any], launched: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Read this run's result (the one the launch found: `result.json`, or the file written
    beside a better earlier result) and turn it into the run's summary (or raise its
    classification)."""
    request = validate_request(kind, params)
    output_uri = request.output_uri()
    result_uri = (launched or {}).get("result_uri") or output_uri + "result.json"
    result = storage.read_json(result_uri)
    summary = summarize(kind, classify(exit_code=None, result=result), output_uri)
    return {**summary, "result_uri": result_uri, "current_result_uri": output_uri + "result.json"}


def publish(summary: Mapping[str, Any]) -> dict:
    """The run's summary as its XCom (the backend learns the outcome from the signed
    callback `report_outcome` queues, analysis_pipeline.callback)."""
    return dict(summary)


# --- TaskFlow wrappers used by the DAG files -----------------------------------------------
@task(task_id="validate")
def validate_step(kind: config.Kind, params: dict | None = None, **context: Any) -> dict[str, Any]:
    with failures_recorded(context, step="validate"):  # for the result callback
        return validate_recordings(kind, params or {})


@task(task_id="check_result", retries=1)
def check_result_step(
    kind: config.Kind, params: dict | None = None, **context: Any
) -> dict[str, Any]:
    with failures_recorded(context, step="check_result"):
        launched = context["ti"].xcom_pull(task_ids="launch")
        return check_result(kind, params or {}, launched if isinstance(launched, dict) else None)


@task(task_id="publish")
def publish_step(summary: dict[str, Any]) -> dict[str, Any]:
    return publish(summary)


@task.short_circuit(task_id="proctoring_requested")
def proctoring_requested(validated: dict[str, Any]) -> bool:
    """Only a proctored task (one with a webcam stream) triggers proctor_video."""
    return bool(validated.get("webcam_uri"))
