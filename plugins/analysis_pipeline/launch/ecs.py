"""ecs mode: the Amazon provider's ``EcsRunTaskOperator``, with the pipeline's rules added.

Added on top of the provider:
- never pay twice: before RunTask, a complete ``result.json`` of this very input is reused
  (``launch.prior``), and a STOPPED task of the same analysis whose result is usable is
  classified instead of relaunched (a retry after a DescribeTasks throttle, an S3 read error
  or a lost worker);
- ``startedBy`` is derived from kind + analysis id, not from the run: a duplicate run of
  the same analysis reattaches to the running container instead of starting a second one;
- admission (``launch.admission``): a capacity/quota refusal or an open Gemini breaker
  reschedules the task (no failure, no retry spent, no alert);
- cluster, task definition, network and log group come from the settings the DAG file
  was parsed with (``config``): the worker parses it again for each task it runs;
- the deferral timeout is clamped to ``execution_timeout``; the ECS task is stopped when
  that timeout fires (only then: a trigger *error* such as a DescribeTasks throttle fails
  the try, and the retry reattaches to the healthy container), when the task is killed,
  and when the task finally fails (failure callback / ``launch.stopping`` listener);
- the stopped container is classified from its exit code and ``result.json``; a task whose
  ECS record is already purged is classified from ``result.json`` alone.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.providers.amazon.aws.exceptions import EcsOperatorError
from airflow.providers.amazon.aws.hooks.logs import AwsLogsHook
from airflow.providers.amazon.aws.operators.ecs import EcsRunTaskOperator
from airflow.providers.amazon.aws.utils import validate_execute_complete_event
from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR, TriggerFailureReason
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from botocore.exceptions import ClientError

from analysis_pipeline import config, storage
from analysis_pipeline.alerts import breaker
from analysis_pipeline.callback.tasks import failures_recorded
from analysis_pipeline.contract import container_env
from analysis_pipeline.identity import input_identity
from analysis_pipeline.launch import admission
from analysis_pipeline.launch.completion import (
    classify_run,
    own_result,
    run_deadline_seconds,
    run_id_of,
)
from analysis_pipeline.launch.prior import reusable_result
from analysis_pipeline.launch.stopping import analysis_started_by, stop_running_analysis
from analysis_pipeline.outcome import LOG_TAIL_LINES, AnalysisCrashed, classify, drop_stale
from analysis_pipeline.params import AnalysisRequest, request_from_context

WAITER_DELAY_SECONDS = 30


def async_aws_available() -> bool:
    """The deferrable wait runs in the triggerer on aiobotocore (the provider's extra)."""
    return importlib.util.find_spec("aiobotocore") is not None


class AnalysisEcsRunTaskOperator(EcsRunTaskOperator):
    """Run one analysis container on Fargate and classify what it left behind."""

    # pool_size: serialized with the DAG, so the scheduler sees the pool size this parse read.
    template_fields = (*EcsRunTaskOperator.template_fields, "pool_size")

    def __init__(
        self,
        *,
        kind: config.Kind,
        execution_timeout: timedelta,
        env: Mapping[str, str] | None = None,
        pool_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        spec = config.CONTAINERS[kind]
        # Every value comes from the settings read when the DAG file is parsed: the worker
        # parses it again for each task, so a lever change reaches the next launch.
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
            waiter_delay=WAITER_DELAY_SECONDS,
            # The trigger gives up a little after the Airflow timeout would have fired.
            waiter_max_attempts=int(execution_timeout.total_seconds() // WAITER_DELAY_SECONDS) + 10,
            aws_conn_id=config.aws_conn_id(env=env),
            execution_timeout=execution_timeout,
            do_xcom_push=True,
            **kwargs,
        )
        self.pool_size = pool_size
        self.kind = kind
        self._launched_at: datetime | None = None
        self._reattached = False
        self._context: Mapping[str, Any] | None = None
        self._request: AnalysisRequest | None = None
        self._summary: dict[str, Any] = {}

    # --- launch ---------------------------------------------------------------------------
    def execute(self, context: Any) -> Any:
        with failures_recorded(context, step="launch"):  # for the result callback
            return self._execute(context)

    def _execute(self, context: Any) -> Any:
        if self.deferrable and not async_aws_available():
            # Fail before RunTask: a container nobody can wait for would run unobserved.
            raise AirflowFailException(
                "ecs mode needs aiobotocore for the deferrable wait: install "
                "apache-airflow-providers-amazon[aiobotocore] on workers and triggerer"
            )
        self._context = context
        request = self._request = request_from_context(self.kind, context)
        self._run_id = run_id = run_id_of(context)
        output_uri = request.output_uri()
        env = container_env(request, run_id=run_id)
        env["RUN_DEADLINE_SECONDS"] = str(run_deadline_seconds(self.execution_timeout))
        self.overrides = {
            "containerOverrides": [
                {
                    "name": self.container_name,
                    "environment": [{"name": k, "value": v} for k, v in sorted(env.items())],
                }
            ]
        }
        self.tags = {
            "analysis_id": request.analysis_id,
            "analysis_kind": self.kind,
            "airflow_dag_id": context["ti"].dag_id,
            "airflow_run_id": context["ti"].run_id[:256],
        }
        reused = reusable_result(request, output_uri, run_id=run_id)
        if reused is not None:
            return self._summarize(
                reused,
                output_uri,
                exit_code=None,
                reused=True,
                result_uri=output_uri + "result.json",
            )
        self._started_by = analysis_started_by(self.kind, request.key)
        finished = self._outcome_of_stopped_task(request, output_uri)
        if finished is not None:
            return finished
        self._launched_at = datetime.now(UTC)
        return super().execute(context)

    def _try_reattach_task(self, started_by: str) -> None:
        # Not the provider's per-try id: one id per analysis, so a duplicate run reattaches.
        assert self._request is not None
        self._started_by = analysis_started_by(self.kind, self._request.key)
        super()._try_reattach_task(self._started_by)
        self._reattached = self.arn is not None

    def _outcome_of_stopped_task(
        self, request: AnalysisRequest, output_uri: str
    ) -> dict[str, Any] | None:
        """A usable outcome of a container of this analysis that already stopped, or None.

        A failed one is not reused: this try is then the retry that relaunches it.
        """
        try:
            arns = self.client.list_tasks(
                cluster=self.cluster, desiredStatus="STOPPED", startedBy=self._started_by
            )["taskArns"]
            if not arns:
                return None
            tasks = self.client.describe_tasks(cluster=self.cluster, tasks=arns[:100])["tasks"]
        except ClientError as exc:  # cannot look: launching is what would happen anyway
            self.log.info("Could not list stopped tasks (%s)", exc.response.get("Error"))
            return None
        tasks = [t for t in tasks if _input_uri(t, self.container_name) == request.input_uri]
        if not tasks:
            return None
        task = max(tasks, key=lambda t: str(t.get("stoppedAt") or t.get("createdAt") or ""))
        result = storage.read_json(output_uri + "result.json")
        stamped = ((result or {}).get("input") or {}).get("identity")
        if stamped and stamped != input_identity(request.input_uri):
            return None
        if request.rerun and (result or {}).get("rerun_id") != getattr(self, "_run_id", None):
            return None  # a rerun reuses only what it made itself
        created = task.get("createdAt")
        launched = created if isinstance(created, datetime) else None
        try:
            classify(exit_code=self._exit_code(task), result=drop_stale(result, launched))
        except AirflowException as exc:
            self.log.info(
                "Earlier container %s ended unusably (%s); launching", task["taskArn"], exc
            )
            return None
        self.arn = task["taskArn"]
        self.log.info("Container %s of this analysis already finished: not relaunching", self.arn)
        return self._summarize(
            result or {}, output_uri, exit_code=self._exit_code(task),
            result_uri=output_uri + "result.json",
        )  # fmt: skip

    def _start_task(self) -> None:
        hold = breaker.hold_until(self._context or {})
        if hold is not None:
            resume = datetime.fromtimestamp(hold, UTC) + admission.admission_backoff(0) / 2
            error = admission.not_admitted(
                self._context or {},
                "Gemini quota breaker open (an earlier run exhausted the quota)",
                not_before=resume,
            )
            self.log.warning("%s", error)
            raise error
        try:
            super()._start_task()
        except EcsOperatorError as exc:
            reasons = [str(f.get("reason", "")) for f in exc.failures]
            if admission.is_capacity_refusal(reasons):
                raise self._not_admitted("; ".join(reasons)) from exc
            raise
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = str(error.get("Code", "")), str(error.get("Message", ""))
            if code in admission.THROTTLING_CODES or admission.is_capacity_refusal([message]):
                raise self._not_admitted(f"{code}: {message}") from exc
            raise

    def _not_admitted(self, reason: str) -> AirflowException:
        error = admission.not_admitted(self._context or {}, f"Fargate: {reason}")
        self.log.warning("%s", error)
        return error

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
        with failures_recorded(context, step="launch"):
            return self._execute_complete(context, event, launched_at)

    def _execute_complete(
        self, context: Any, event: dict[str, Any] | None, launched_at: str | None
    ) -> dict[str, Any]:
        # Not the provider's execute_complete: it re-reads one CloudWatch line afterwards,
        # which fails when the stream is absent; the summary is what downstream needs.
        validated = validate_execute_complete_event(event)
        if validated["status"] != "success":
            raise AnalysisCrashed(f"waiting for the ECS task failed: {validated}")
        self.arn = validated["task_arn"]
        self.cluster = validated["cluster"]
        self._context = context
        self._request = request_from_context(self.kind, context)
        self._launched_at = datetime.fromisoformat(launched_at) if launched_at else None
        self._after_execution()
        return self._summary

    def _after_execution(self) -> None:
        assert self._request is not None
        task = self._describe_task()
        exit_code = self._exit_code(task)
        last_lines = self._log_tail()
        if task.get("stopCode") == "TaskFailedToStart":
            reason = str(task.get("stoppedReason", ""))
            if admission.is_capacity_refusal([reason]):  # accepted, then no capacity
                raise self._not_admitted(reason)
            raise AnalysisCrashed(
                f"ECS task failed to start: {task.get('stoppedReason', 'unknown')}",
                exit_code=exit_code,
                last_lines=last_lines,
            )
        output_uri = self._request.output_uri()
        result_uri, result = own_result(output_uri, self._launched_at)
        classified = classify_run(
            self._context or {},
            self._request.analysis_id,
            exit_code=exit_code,
            result=result,
            last_lines=last_lines,
        )
        self._summary = self._summarize(
            classified, output_uri, exit_code=exit_code, result_uri=result_uri
        )

    def _summarize(
        self,
        result: Mapping[str, Any],
        output_uri: str,
        *,
        exit_code: int | None,
        reused: bool = False,
        result_uri: str | None = None,
    ) -> dict[str, Any]:
        return {
            "ecs_task_arn": self.arn,
            "exit_code": exit_code,
            "status": result.get("status"),
            "output_uri": output_uri,
            "result_uri": result_uri,
            "reused": reused,
        }

    def _describe_task(self) -> dict[str, Any]:
        """The task's record; {} when ECS no longer has it (then result.json decides)."""
        response = self.client.describe_tasks(cluster=self.cluster, tasks=[self.arn])
        tasks = response.get("tasks") or []
        if not tasks:
            self.log.warning(
                "ECS has no record of %s any more (%s): classifying from result.json",
                self.arn,
                response.get("failures"),
            )
            return {}
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
        with failures_recorded(context, step="launch"):  # a deferral that timed out
            return self._resume_execution(next_method, next_kwargs, context)

    def _resume_execution(self, next_method: str, next_kwargs: Any, context: Any) -> Any:
        error = (next_kwargs or {}).get("error")
        if next_method == TRIGGER_FAIL_REPR and error == TriggerFailureReason.TRIGGER_TIMEOUT:
            # The container would otherwise keep running and billing with nobody waiting.
            # Any other trigger failure (e.g. a DescribeTasks throttle) fails this try only:
            # the retry reattaches to the still healthy container.
            stop_running_analysis(context, reason="Airflow task timed out while deferred")
        return super().resume_execution(next_method, next_kwargs, context)


def _input_uri(task: Mapping[str, Any], container_name: str) -> str | None:
    for override in (task.get("overrides") or {}).get("containerOverrides", []):
        if override.get("name") == container_name:
            for item in override.get("environment", []):
                if item.get("name") == "INPUT_URI":
                    return item.get("value")
    return None
