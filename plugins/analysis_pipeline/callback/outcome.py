"""What a finished analysis run means for the backend (pure): complete, partial or failed,
with the reason and whether a retry may help.

Inputs, all read by the `report_outcome` task: the states of the run's steps, the reason the
failed step recorded before it raised (`failure_record`, an XCom of that step: it is pushed
before the task's state changes, so it is there when this runs), `check_result`'s summary
when it succeeded, and `result.json` otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The steps of an analysis run, in order; the first that failed is the one to report.
STEPS = ("validate", "launch", "check_result")
FAILED_STATES = frozenset({"failed", "upstream_failed"})
FAILURE_XCOM_KEY = "failure"

# Failures no retry can fix: the input itself, or the model refusing the key or the model.
PERMANENT_ERRORS = frozenset(
    {"AnalysisInvalidInput", "InvalidRequestError", "RecordingMissingError"}
)
PERMANENT_REFUSAL = "retrying will not fix"  # analysis_engine.result.permanent_failure_reason
SENTINEL = "All segments failed analysis"


@dataclass(frozen=True)
class RunOutcome:
    status: str  # complete | partial | failed
    result_status: str | None = None  # result.json's own status, when there is one
    reason: str | None = None
    retryable: bool | None = None  # failed only: may the same trigger succeed later?
    failed_step: str | None = None
    result: Mapping[str, Any] = field(default_factory=dict)  # summary or result.json


def one_line(text: Any, limit: int = 500) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def failure_record(exc: BaseException, *, step: str) -> dict[str, Any]:
    """What a step records about its failure (the original error when it was wrapped into an
    AirflowFailException to stop retries)."""
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    error_type = type(cause).__name__
    reason = one_line(getattr(exc, "reason", None) or str(exc) or error_type)
    return {
        "step": step,
        "error_type": error_type,
        "reason": reason,
        "retryable": is_retryable(error_type, reason),
    }


def is_retryable(error_type: str, reason: str) -> bool:
    return error_type not in PERMANENT_ERRORS and PERMANENT_REFUSAL not in reason


def decide(
    *,
    states: Mapping[str, str | None],
    failures: Mapping[str, Mapping[str, Any] | None],
    summary: Mapping[str, Any] | None,
    result: Mapping[str, Any] | None,
) -> RunOutcome:
    """The run's outcome. `states`: step -> final state; `failures`: step -> its record."""
    if states.get("check_result") == "success" and summary:
        status = str(summary.get("status"))
        if status in ("complete", "partial"):
            return RunOutcome(status, status, summary.get("error"), None, None, summary)
    failed_step = next((s for s in STEPS if states.get(s) == "failed"), None)
    record = failures.get(failed_step) if failed_step else None
    from_result = _from_result(result)
    if record:
        reason, retryable = str(record.get("reason") or ""), bool(record.get("retryable"))
    elif from_result is not None:
        reason, retryable = from_result
    else:
        reason, retryable = _unrecorded(failed_step), True
    return RunOutcome(
        status="failed",
        result_status=(result or {}).get("status"),
        reason=reason or _unrecorded(failed_step),
        retryable=retryable,
        failed_step=failed_step or _first_not_done(states),
        result=dict(result or {}),
    )


def _from_result(result: Mapping[str, Any] | None) -> tuple[str, bool] | None:
    """A failed or refused result.json speaks for itself."""
    if not result or result.get("status") not in ("failed", "invalid_input"):
        return None
    error = one_line(result.get("error") or f"status {result.get('status')}")
    if result.get("status") == "invalid_input":
        return f"invalid input: {error}", False
    return error, PERMANENT_REFUSAL not in error


def _unrecorded(step: str | None) -> str:
    if step is None:
        return "the run ended before the analysis finished"
    return f"the {step} step failed (see its Airflow log)"


def _first_not_done(states: Mapping[str, str | None]) -> str | None:
    return next((s for s in STEPS if states.get(s) != "success"), None)
