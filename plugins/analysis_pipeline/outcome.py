"""What a finished container run means for Airflow: success, retry later, or fail for good.

The launch step classifies the run as soon as the container stops (a retry must re-run the
container, so the decision belongs to the step that runs it); ``check_result`` then turns
the same ``result.json`` into the run's summary. ``AnalysisRetryPolicy`` gives each kind of
failure its own backoff.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from analysis_pipeline import compat

if compat.RETRY_POLICY:
    from airflow.sdk.definitions.retry_policy import RetryDecision, RetryPolicy
else:  # Airflow 3.2: the class exists, the launch does not attach it (launch.task)
    RetryDecision = None  # type: ignore[assignment,misc]
    RetryPolicy = object  # type: ignore[assignment,misc]

# The container's exact sentinel text (analysis_engine.result.ALL_SEGMENTS_FAILED); the
# DAG side does not import the container package, a test keeps the two equal.
ALL_SEGMENTS_FAILED = "All segments failed analysis"
# How the container words a refusal no retry can fix (analysis_engine.result
# .permanent_failure_reason): an invalid key, an unknown model, permission denied.
PERMANENT_REFUSAL = "retrying will not fix"
SUCCESS_STATUSES = frozenset({"complete", "partial"})
EXIT_INVALID_INPUT = 2
EXIT_ALL_SEGMENTS_FAILED = 3
# Container log lines kept for the alert, whichever launcher ran the container.
LOG_TAIL_LINES = 20
# A result.json that started this long before the launch belongs to an earlier run.
STALE_RESULT_GRACE = timedelta(minutes=5)


class AnalysisFailure:
    """Mixin: what the alert shows about a failed container run."""

    reason: str
    exit_code: int | None
    last_lines: tuple[str, ...]

    def _init_failure(self, reason: str, exit_code: int | None, last_lines: Sequence[str]) -> None:
        self.reason = reason
        self.exit_code = exit_code
        self.last_lines = tuple(last_lines)


class AnalysisInvalidInput(AnalysisFailure, AirflowFailException):
    """The container refused its input (exit 2 / status invalid_input): never retried."""

    def __init__(self, reason: str, *, exit_code: int | None = None, last_lines=()) -> None:
        super().__init__(f"invalid input: {reason}")
        self._init_failure(reason, exit_code, last_lines)


class AllSegmentsFailed(AnalysisFailure, AirflowException):
    """The sentinel (exit 3): usually a Gemini quota storm, so retry much later."""

    def __init__(self, *, exit_code: int | None = None, last_lines=()) -> None:
        super().__init__(ALL_SEGMENTS_FAILED)
        self._init_failure(ALL_SEGMENTS_FAILED, exit_code, last_lines)


class AnalysisRefused(AnalysisFailure, AirflowFailException):
    """The model refused every segment for a reason retrying will not fix (status failed,
    exit 1): never retried, since the same launch would pay for a Fargate task and fail
    alike until someone fixes the key or the model name."""

    def __init__(self, reason: str, *, exit_code: int | None = None, last_lines=()) -> None:
        super().__init__(reason)
        self._init_failure(reason, exit_code, last_lines)


class AnalysisCrashed(AnalysisFailure, AirflowException):
    """No usable result (crash, exit 1, missing result.json): retry soon, then fail."""

    def __init__(self, reason: str, *, exit_code: int | None = None, last_lines=()) -> None:
        super().__init__(reason)
        self._init_failure(reason, exit_code, last_lines)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def drop_stale(result: Mapping[str, Any] | None, launched_at: datetime | None) -> dict | None:
    """Ignore a result.json left by an earlier run of the same id (its start predates ours)."""
    if result is None or launched_at is None:
        return dict(result) if result is not None else None
    started = _parse_time(result.get("started_at"))
    if started is not None and started < launched_at - STALE_RESULT_GRACE:
        return None
    return dict(result)


def classify(
    *,
    exit_code: int | None,
    result: Mapping[str, Any] | None,
    last_lines: Sequence[str] = (),
) -> dict[str, Any]:
    """Return the result when it is usable, else raise the exception that decides the retry.

    ``result.json`` wins over the exit code when they disagree about success: the file is
    the product, an exit code can come from a crash after the result was safely written.
    """
    status = (result or {}).get("status")
    error = (result or {}).get("error")
    if result is not None and status in SUCCESS_STATUSES:
        return dict(result)
    if status == "invalid_input" or exit_code == EXIT_INVALID_INPUT:
        reason = error or f"container exited {exit_code} (invalid input)"
        raise AnalysisInvalidInput(str(reason), exit_code=exit_code, last_lines=last_lines)
    sentinel = status == "failed" and error == ALL_SEGMENTS_FAILED
    if sentinel or exit_code == EXIT_ALL_SEGMENTS_FAILED:
        raise AllSegmentsFailed(exit_code=exit_code, last_lines=last_lines)
    if status == "failed" and PERMANENT_REFUSAL in str(error):
        raise AnalysisRefused(str(error), exit_code=exit_code, last_lines=last_lines)
    if result is None:
        reason = f"no result.json (container exit code {exit_code})"
    else:
        reason = f"status {status!r}: {error or 'no error given'} (exit code {exit_code})"
    raise AnalysisCrashed(reason, exit_code=exit_code, last_lines=last_lines)


class AnalysisRetryPolicy(RetryPolicy):
    """Exponential backoff per failure kind; still bounded by the task's ``retries``.

    The sentinel means the Gemini quota is exhausted right now, so it waits long (quotas
    recover in minutes to hours); a crash is retried soon. Everything else (and every
    exception when no rule matches) falls back to the task's own retry settings.
    """

    def __init__(
        self,
        *,
        sentinel_delay: timedelta = timedelta(minutes=15),
        crash_delay: timedelta = timedelta(minutes=2),
        max_delay: timedelta = timedelta(hours=2),
    ) -> None:
        self.sentinel_delay = sentinel_delay
        self.crash_delay = crash_delay
        self.max_delay = max_delay

    def _backoff(self, base: timedelta, try_number: int) -> timedelta:
        return min(base * (2 ** max(try_number - 1, 0)), self.max_delay)

    def evaluate(
        self,
        exception: BaseException,
        try_number: int,
        max_tries: int,
        context: Any = None,
    ) -> RetryDecision:
        if isinstance(exception, AllSegmentsFailed):
            delay = self._backoff(self.sentinel_delay, try_number)
            return RetryDecision.retry(delay, reason="all segments failed; waiting for quota")
        if isinstance(exception, AnalysisCrashed):
            delay = self._backoff(self.crash_delay, try_number)
            return RetryDecision.retry(delay, reason="container produced no usable result")
        return RetryDecision.default()
