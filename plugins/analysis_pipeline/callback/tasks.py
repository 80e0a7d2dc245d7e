"""The callback in Airflow: `report_outcome` (the analysis DAGs' last task) and `deliver`
(the `analysis_callback` DAG's one task).

`report_outcome` runs whatever happened upstream (trigger rule `all_done`, so after the
launch's last retry too), decides the run's outcome and hands its payload to
`analysis_callback` as a DAG run named by the payload's `callback_id`: the same outcome is
never queued twice (a repeated trigger with that run id is skipped), and the analysis run
ends at once, whatever the backend does. `deliver` posts it, retried with exponential
backoff by Airflow (`ANALYSIS_CALLBACK_RETRIES`, `ANALYSIS_CALLBACK_RETRY_SECONDS`), and
alerts when it gives up.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import task
from airflow.sdk.exceptions import (
    AirflowNotFoundException,
    AirflowRescheduleException,
    AirflowSkipException,
    AirflowTaskTimeout,
)

from analysis_pipeline import config, storage
from analysis_pipeline.callback import delivery, payload
from analysis_pipeline.callback.outcome import (
    FAILURE_XCOM_KEY,
    STEPS,
    decide,
    failure_record,
)
from analysis_pipeline.outcome import drop_stale
from analysis_pipeline.params import ID_PATTERN, SOURCES, AnalysisRequest

log = logging.getLogger(__name__)

CALLBACK_DAG_ID = "analysis_callback"
CONN_ID = config.PUBLISH_CONN_ID
RETRIES_LEVER = "ANALYSIS_CALLBACK_RETRIES"
DEFAULT_RETRIES = 12
RETRY_SECONDS_LEVER = "ANALYSIS_CALLBACK_RETRY_SECONDS"
DEFAULT_RETRY_SECONDS = 30
ID_PARAMS = {"task_analysis": "submission_id", "proctor_video": "attempt_id"}


# --- what every step does when it fails ------------------------------------------------------
@contextmanager
def failures_recorded(context: Mapping[str, Any], *, step: str) -> Iterator[None]:
    """Record why the step failed (a timeout included), then let the error go on. A
    reschedule or a deferral is not a failure."""
    try:
        yield
    except AirflowRescheduleException:
        raise
    except (Exception, AirflowTaskTimeout) as exc:
        record_failure(context, exc, step=step)
        raise


def record_failure(context: Mapping[str, Any], exc: BaseException, *, step: str) -> None:
    """Push the failure's reason before the task's state changes (report_outcome reads it).
    Never raises: the original error is what matters."""
    try:
        context["ti"].xcom_push(key=FAILURE_XCOM_KEY, value=failure_record(exc, step=step))
    except Exception as error:
        log.warning("failure reason not recorded (%s)", type(error).__name__)


# --- report_outcome ------------------------------------------------------------------------
def backend_configured(conn_id: str = CONN_ID) -> bool:
    """The connection exists and names a URL (Terraform's placeholder has no host: "not
    set yet"). A secrets-backend outage is not "absent": it raises, and the task retries."""
    from airflow.sdk import BaseHook

    try:
        connection = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return False
    return bool((connection.host or "").strip())


def run_payload(kind: config.Kind, context: Mapping[str, Any]) -> dict[str, Any]:
    """The callback body for the run this task belongs to."""
    ti, dag_run = context["ti"], context["dag_run"]
    dag_id, run_id = str(ti.dag_id), str(dag_run.run_id)
    states = (ti.get_task_states(dag_id=dag_id, run_ids=[run_id]) or {}).get(run_id, {})
    failures = {
        step: ti.xcom_pull(task_ids=step, key=FAILURE_XCOM_KEY)
        for step in STEPS
        if states.get(step) == "failed"
    }
    checked = states.get("check_result") == "success"
    summary = ti.xcom_pull(task_ids="check_result") if checked else None
    params = context.get("params") or {}
    analysis_id = str(params.get(ID_PARAMS[kind]) or "")
    valid_id = bool(re.fullmatch(ID_PATTERN, analysis_id))
    output_uri = _output_uri(kind, analysis_id, params) if valid_id else ""
    result = None
    if not summary and valid_id:
        started = getattr(dag_run, "start_date", None)
        result = drop_stale(_read_result(output_uri), started)
    outcome = decide(states=states, failures=failures, summary=summary, result=result)
    return payload.build(
        kind=kind,
        analysis_id=analysis_id,
        dag_id=dag_id,
        run_id=run_id,
        outcome=outcome,
        output_uri=output_uri,
        rerun=bool(params.get("rerun")),
        reported_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    )


def _output_uri(kind: config.Kind, analysis_id: str, params: Mapping[str, Any]) -> str:
    source = params.get("source") if params.get("source") in SOURCES else "attempt"
    request = AnalysisRequest(kind, analysis_id, "", {}, source=str(source))
    return request.output_uri()


def _read_result(output_uri: str) -> dict[str, Any] | None:
    try:
        return storage.read_json(output_uri + "result.json")
    except Exception as exc:  # unreadable: the outcome then says what the steps recorded
        log.warning("result.json not read for the callback: %s", exc)
        return None


class ReportOutcomeOperator(TriggerDagRunOperator):
    """Queue this run's callback as an `analysis_callback` run named by its id."""

    def __init__(self, *, kind: config.Kind, **kwargs: Any) -> None:
        super().__init__(
            task_id="report_outcome",
            trigger_dag_id=CALLBACK_DAG_ID,
            trigger_rule="all_done",
            skip_when_already_exists=True,
            wait_for_completion=False,
            retries=3,
            **kwargs,
        )
        self.kind = kind

    def execute(self, context: Any) -> Any:
        if not backend_configured():
            raise AirflowSkipException(f"connection {CONN_ID!r} is not configured: no callback")
        body = run_payload(self.kind, context)
        self.trigger_run_id = body["callback_id"]
        self.conf = {"payload": body}
        self.log.info(
            "reporting %s %s: %s%s (callback %s)", self.kind, body["analysis_id"], body["status"],
            f" ({body['reason']})" if body["reason"] else "", body["callback_id"],
        )  # fmt: skip
        return super().execute(context)


# --- the analysis_callback DAG's task ------------------------------------------------------
def _process_setting(name: str, default: int, *, minimum: int) -> int:
    """A process setting of the Airflow deployment (environment; no Terraform field):
    an unreadable value falls back to the default, with a warning."""
    raw = config.setting(name)
    try:
        value = int(str(raw).strip()) if raw not in (None, "") else default
    except ValueError:
        log.warning("%s=%r is not a whole number; using %d", name, raw, default)
        return default
    return value if value >= minimum else default


def retries() -> int:
    return _process_setting(RETRIES_LEVER, DEFAULT_RETRIES, minimum=0)


def retry_seconds() -> int:
    return _process_setting(RETRY_SECONDS_LEVER, DEFAULT_RETRY_SECONDS, minimum=1)


@task(task_id="deliver")
def deliver_step(params: dict | None = None) -> str:
    from airflow.sdk import BaseHook

    from analysis_pipeline.shared_state import default_store

    body = (params or {}).get("payload")
    if not isinstance(body, Mapping) or not body.get("callback_id"):
        raise delivery.CallbackRefused("the run's conf has no callback payload")
    try:
        connection = BaseHook.get_connection(CONN_ID)
    except AirflowNotFoundException as exc:
        raise delivery.CallbackRefused(f"connection {CONN_ID!r} is not configured") from exc
    return delivery.deliver(body, connection=connection, store=default_store())
