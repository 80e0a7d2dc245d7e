"""ecs mode: the Amazon provider's ``EcsRunTaskOperator``, with the pipeline's rules added.

Added on top of the provider:
- overrides and tags are built from the validated trigger params (the container contract);
- a RunTask refusal for capacity or quota is "not admitted yet": the task is rescheduled
  with backoff (``FargateCapacityUnavailable``), which is neither a failure nor a retry, so
  no alert fires and no retry is spent;
- the deferral timeout is clamped to ``execution_timeout`` (the provider defaults to ~70
  days) and the ECS task is stopped when it fires, when the task is killed, or when the
  task fails while the container still runs;
- the stopped container is classified from its exit code and ``result.json``
  (``analysis_pipeline.outcome``) instead of "non-zero exit = generic failure".
"""

from __future__ import annotations

import importlib.util
import logging
import random
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.providers.amazon.aws.exceptions import EcsOperatorError
from airflow.providers.amazon.aws.hooks.ecs import EcsHook
from airflow.providers.amazon.aws.hooks.logs import AwsLogsHook
from airflow.providers.amazon.aws.operators.ecs import EcsRunTaskOperator
from airflow.providers.amazon.aws.utils import validate_execute_complete_event
from airflow.providers.amazon.aws.utils.identifiers import generate_uuid
from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowRescheduleException,
)
from botocore.exceptions import ClientError

from analysis_pipeline import config, storage
from analysis_pipeline.contract import container_env, request_from_context
from analysis_pipeline.outcome import LOG_TAIL_LINES, AnalysisCrashed, classify, drop_stale

CAPACITY_REASON_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"^RESOURCE:", re.IGNORECASE),
    re.compile(r"reached the limit on the number of", re.IGNORECASE),
    re.compile(r"capacity is unavailable", re.IGNORECASE),
    re.compile(r"rate exceeded", re.IGNORECASE),
)
THROTTLING_CODES = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "LimitExceededException"}
)
# ~24 h of waiting at the 15-minute backoff cap: then a human should look (quota request
# stuck, region outage), so the task fails normally and alerts.
MAX_ADMISSION_RESCHEDULES = 96
log = logging.getLogger(__name__)


class FargateNotAdmittedForTooLong(AirflowFailException):
    """Capacity refusals went on past MAX_ADMISSION_RESCHEDULES: a human should look.

    Not retried: a retry would restart the (per-try) reschedule count and wait another day.
    """


class FargateCapacityUnavailable(AirflowRescheduleException):
    """RunTask was refused for capacity/quota: try again later, nothing failed."""

    def __init__(self, reason: str, *, reschedule_date: datetime) -> None:
        super().__init__(reschedule_date)
        self.reason = reason

    def __str__(self) -> str:
        return f"Fargate did not admit the task ({self.reason}); retry at {self.reschedule_date}"


def async_aws_available() -> bool:
    """The deferrable wait runs in the triggerer on aiobotocore (the provider's extra)."""
    return importlib.util.find_spec("aiobotocore") is not None


def is_capacity_refusal(reasons: Sequence[str]) -> bool:
    return bool(reasons) and all(
        any(p.search(reason) for p in CAPACITY_REASON_PATTERNS) for reason in reasons
    )


def admission_backoff(
    reschedule_count: int,
    *,
    base: timedelta = timedelta(minutes=1),
    cap: timedelta = timedelta(minutes=15),
) -> timedelta:
    """Exponential, jittered to 50-100%: 12 refused launches must not retry in lockstep."""
    ceiling = min(base * (2 ** min(reschedule_count, 16)), cap)
    return max(timedelta(seconds=15), ceiling * random.uniform(0.5, 1.0))


class AnalysisEcsRunTaskOperator(EcsRunTaskOperator):
    """Run one analysis container on Fargate and classify what it left behind."""

    def __init__(
        self,
        *,
        kind: config.Kind,
        execution_timeout: timedelta,
        env: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        spec = config.CONTAINERS[kind]
        waiter_delay = 30
        super().__init__(
            task_definition=config.task_definition(kind, env=env),
            cluster=config.ecs_cluster(env=env),
            overrides={},  # built per run from the validated params, see execute()
            launch_type="FARGATE",
            network_configuration=config.ecs_network(env=env).as_network_configuration(),
            awslogs_group=config.log_group(kind, env=env),
            awslogs_stream_prefix=spec.log_stream_prefix,
            container_name=spec.container_name,
            propagate_tags="TASK_DEFINITION",
            reattach=True,
            deferrable=True,
            waiter_delay=waiter_delay,
            # The trigger gives up a little after the Airflow timeout would have fired.
            waiter_max_attempts=int(execution_timeout.total_seconds() // waiter_delay) + 10,
            aws_conn_id=config.aws_conn_id(env=env),
            execution_timeout=execution_timeout,
            do_xcom_push=True,
            **kwargs,
        )
        self.kind = kind
        self._launched_at: datetime | None = None
        self._reattached = False
        self._context: Mapping[str, Any] | None = None
        self._summary: dict[str, Any] = {}

    # --- launch ---------------------------------------------------------------------------
    def execute(self, context: Any) -> Any:
        if self.deferrable and not async_aws_available():
            # Fail before RunTask: a container nobody can wait for would run unobserved.
            raise AirflowFailException(
                "ecs mode needs aiobotocore for the deferrable wait: install "
                "apache-airflow-providers-amazon[aiobotocore] on workers and triggerer"
            )
        self._context = context
        request = request_from_context(self.kind, context)
        self.overrides = {
            "containerOverrides": [
                {
                    "name": self.container_name,
                    "environment": [
                        {"name": k, "value": v} for k, v in sorted(container_env(request).items())
                    ],
                }
            ]
        }
        self.tags = {
            "analysis_id": request.analysis_id,
            "analysis_kind": self.kind,
            "airflow_dag_id": context["ti"].dag_id,
            "airflow_run_id": context["ti"].run_id[:256],
        }
        self._launched_at = datetime.now(UTC)
        return super().execute(context)

    def _start_task(self) -> None:
        try:
            super()._start_task()
        except EcsOperatorError as exc:
            reasons = [str(f.get("reason", "")) for f in exc.failures]
            if is_capacity_refusal(reasons):
                raise self._not_admitted("; ".join(reasons)) from exc
            raise
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = str(error.get("Code", "")), str(error.get("Message", ""))
            if code in THROTTLING_CODES or is_capacity_refusal([message]):
                raise self._not_admitted(f"{code}: {message}") from exc
            raise

    def _not_admitted(self, reason: str) -> AirflowException:
        count = int((self._context or {}).get("task_reschedule_count", 0) or 0)
        if count >= MAX_ADMISSION_RESCHEDULES:
            return FargateNotAdmittedForTooLong(
                f"Fargate refused the task {count} times in a row; last: {reason}"
            )
        when = datetime.now(UTC) + admission_backoff(count)
        self.log.warning("Not admitted by Fargate (%s); rescheduling for %s", reason, when)
        return FargateCapacityUnavailable(reason, reschedule_date=when)

    def _try_reattach_task(self, started_by: str) -> None:
        super()._try_reattach_task(started_by)
        self._reattached = self.arn is not None

    def defer(self, *, trigger: Any, method_name: str, kwargs=None, timeout=None) -> Any:
        # Airflow 3 does not apply execution_timeout to a deferred task: clamp the
        # trigger timeout to it, and carry the launch time over to execute_complete.
        if self.execution_timeout is not None:
            timeout = min(timeout or self.execution_timeout, self.execution_timeout)
        launched_at = None if self._reattached or self._launched_at is None else self._launched_at
        kwargs = {**(kwargs or {}), "launched_at": launched_at.isoformat() if launched_at else None}
        return super().defer(
            trigger=trigger, method_name=method_name, kwargs=kwargs, timeout=timeout
        )

    # --- completion -----------------------------------------------------------------------
    def execute_complete(
        self, context: Any, event: dict[str, Any] | None = None, launched_at: str | None = None
    ) -> dict[str, Any]:
        # Not the provider's execute_complete: it re-reads one CloudWatch line afterwards,
        # which fails when the stream is absent; the summary is what downstream needs.
        validated = validate_execute_complete_event(event)
        if validated["status"] != "success":
            raise AnalysisCrashed(f"waiting for the ECS task failed: {validated}")
        self.arn = validated["task_arn"]
        self.cluster = validated["cluster"]
        self._context = context
        self._launched_at = datetime.fromisoformat(launched_at) if launched_at else None
        self._after_execution()
        return self._summary

    def _after_execution(self) -> None:
        task = self._describe_task()
        exit_code = self._exit_code(task)
        last_lines = self._log_tail()
        if task.get("stopCode") == "TaskFailedToStart":
            reason = str(task.get("stoppedReason", ""))
            if is_capacity_refusal([reason]):  # accepted, then no capacity to place it
                raise self._not_admitted(reason)
            raise AnalysisCrashed(
                f"ECS task failed to start: {task.get('stoppedReason', 'unknown')}",
                exit_code=exit_code,
                last_lines=last_lines,
            )
        request = request_from_context(self.kind, self._context or {})
        output_uri = config.output_uri_for(self.kind, request.analysis_id)
        result = drop_stale(storage.read_json(output_uri + "result.json"), self._launched_at)
        classified = classify(exit_code=exit_code, result=result, last_lines=last_lines)
        self._summary = {
            "ecs_task_arn": self.arn,
            "exit_code": exit_code,
            "status": classified.get("status"),
            "output_uri": output_uri,
        }

    def _describe_task(self) -> dict[str, Any]:
        response = self.client.describe_tasks(cluster=self.cluster, tasks=[self.arn])
        tasks = response.get("tasks") or []
        if not tasks:
            raise AnalysisCrashed(f"ECS task {self.arn} not found: {response.get('failures')}")
        return tasks[0]

    def _exit_code(self, task: Mapping[str, Any]) -> int | None:
        for container in task.get("containers", []):
            if container.get("name") == self.container_name:
                return container.get("exitCode")
        return None

    def _log_tail(self) -> list[str]:
        """Last container log lines for the alert; logs are a convenience, never fatal."""
        try:
            logs = AwsLogsHook(
                aws_conn_id=self.aws_conn_id, region_name=self.resolve_awslogs_region()
            ).conn
            response = logs.get_log_events(
                logGroupName=self.awslogs_group,
                logStreamName=self._get_logs_stream_name(),
                startFromHead=False,
                limit=LOG_TAIL_LINES,
            )
            return [str(e.get("message", "")).rstrip() for e in response.get("events", [])]
        except Exception as exc:  # missing stream, permissions: the alert just shows less
            self.log.info("No container log tail available (%s)", type(exc).__name__)
            return []

    # --- stopping -------------------------------------------------------------------------
    def resume_execution(self, next_method: str, next_kwargs: Any, context: Any) -> Any:
        if next_method == TRIGGER_FAIL_REPR:
            # Trigger timeout (= execution_timeout) or trigger error: the container would
            # otherwise keep running and billing with nobody waiting for it.
            stop_running_analysis(context, reason="Airflow task timed out while deferred")
        return super().resume_execution(next_method, next_kwargs, context)


def _started_by(ti: Any) -> str:
    return generate_uuid(*map(str, [ti.dag_id, ti.task_id, ti.run_id, ti.map_index]))


def stop_running_analysis(context: Mapping[str, Any], *, reason: str) -> list[str]:
    """Stop the ECS task(s) this task instance started; never raises. Returns stopped ARNs."""
    ti = context.get("ti")
    task = getattr(ti, "task", None)
    cluster = getattr(task, "cluster", None) or config.ecs_cluster()
    try:
        client = EcsHook(aws_conn_id=config.aws_conn_id()).conn
        arns = client.list_tasks(
            cluster=cluster, desiredStatus="RUNNING", startedBy=_started_by(ti)
        )["taskArns"]
        for arn in arns:
            client.stop_task(cluster=cluster, task=arn, reason=reason[:255])
        return list(arns)
    except Exception as exc:  # a callback must never raise
        log.warning("Could not stop the ECS task of %s (%s)", getattr(ti, "task_id", "?"), exc)
        return []


def stop_ecs_task_on_failure(context: Mapping[str, Any]) -> None:
    """on_failure_callback: e.g. the task was marked failed in the UI while deferred."""
    stop_running_analysis(context, reason="Airflow task failed; container no longer awaited")
