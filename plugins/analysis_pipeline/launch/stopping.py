"""Stop the ECS task of an analysis nobody waits for any more.

Three ways a launch can stop being wanted, three hooks:
- the deferral timeout fires: ``AnalysisEcsRunTaskOperator.resume_execution``;
- the task finally fails in a worker (or the dag-processor): ``stop_ecs_task_on_failure``,
  an on-failure callback;
- someone marks the task (or its run) failed in the UI or the REST API: Airflow 3.3 runs
  no task callback then, only listeners, in the API server. ``StopAnalysisListener``
  (registered by the ``analysis_pipeline_plugin`` plugin) stops the container there. The
  API server therefore needs ``ecs:ListTasks`` and ``ecs:StopTask`` on the cluster.

Tasks are found by ``startedBy``, which is derived from kind + the analysis' key (one
container per analysis, whichever run started it; a task's webcam is keyed
``submission:<id>``, apart from any test attempt).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from airflow.listeners import hookimpl
from airflow.providers.amazon.aws.utils.identifiers import generate_uuid

from analysis_pipeline import config

log = logging.getLogger(__name__)

LAUNCH_TASK_ID = "launch"
ID_PARAMS: Mapping[str, str] = {"task_analysis": "submission_id", "proctor_video": "attempt_id"}


def analysis_started_by(kind: str, analysis_id: str) -> str:
    """ECS ``startedBy`` (max 128 characters) of the one container of this analysis."""
    return generate_uuid(kind, analysis_id)


def stop_analysis(
    kind: str, analysis_id: str, *, reason: str, cluster: str | None = None
) -> list[str]:
    """Stop every RUNNING ECS task of this analysis; never raises. Returns stopped ARNs."""
    from airflow.providers.amazon.aws.hooks.ecs import EcsHook

    try:
        cluster = cluster or config.ecs_cluster()
        client = EcsHook(aws_conn_id=config.aws_conn_id()).conn
        arns = client.list_tasks(
            cluster=cluster,
            desiredStatus="RUNNING",
            startedBy=analysis_started_by(kind, analysis_id),
        )["taskArns"]
        for arn in arns:
            client.stop_task(cluster=cluster, task=arn, reason=reason[:255])
            log.warning("Stopped ECS task %s of %s %s: %s", arn, kind, analysis_id, reason)
        return list(arns)
    except Exception as exc:  # a callback or listener must never raise
        log.warning("Could not stop the ECS task of %s %s (%s)", kind, analysis_id, exc)
        return []


def analysis_key(kind: str, params: Mapping[str, Any]) -> str | None:
    """The identity `startedBy` is derived from (params.AnalysisRequest.key), from a run's
    params: a task's webcam is `submission:<id>`, never mistaken for a test attempt."""
    analysis_id = params.get(ID_PARAMS.get(kind, ""))
    if kind not in ID_PARAMS or not analysis_id:
        return None
    if kind == "proctor_video" and params.get("source") == "submission":
        return f"submission:{analysis_id}"
    return str(analysis_id)


def stop_running_analysis(context: Mapping[str, Any], *, reason: str) -> list[str]:
    """Stop the container of the analysis this task instance is about; never raises."""
    ti = context.get("ti")
    kind = str(getattr(ti, "dag_id", ""))
    key = analysis_key(kind, context.get("params") or {})
    return stop_analysis(kind, key, reason=reason) if key else []


def stop_ecs_task_on_failure(context: Mapping[str, Any]) -> None:
    """on_failure_callback of the ecs launch step (final failure only, never a retry)."""
    stop_running_analysis(context, reason="Airflow task failed; container no longer awaited")


def _conf_of(task_instance: Any) -> Mapping[str, Any]:
    try:
        conf = task_instance.dag_run.conf  # API server / scheduler: the ORM row
        if isinstance(conf, Mapping):
            return conf
    except Exception:
        pass
    try:
        return task_instance.get_template_context().get("params") or {}  # a worker
    except Exception:
        return {}


class StopAnalysisListener:
    """Airflow listener: a launch marked FAILED (UI, REST API, scheduler) stops its container."""

    @hookimpl
    def on_task_instance_failed(self, previous_state: Any, task_instance: Any, error: Any) -> None:
        try:
            if getattr(task_instance, "task_id", None) != LAUNCH_TASK_ID:
                return
            kind = str(getattr(task_instance, "dag_id", ""))
            # UP_FOR_RETRY also reaches this hook: the retry reattaches, keep the container.
            state = getattr(task_instance, "state", None)
            if kind not in ID_PARAMS or str(getattr(state, "value", state)) != "failed":
                return
            if config.launcher_mode() != "ecs":
                return  # local mode: the worker's supervisor kills its child process itself
            key = analysis_key(kind, _conf_of(task_instance))
            if key:
                stop_analysis(
                    kind,
                    key,
                    reason=f"Airflow: launch marked failed ({error})",
                    # The environment only: a Variable lookup here would go through the
                    # metastore backend, whose scoped session is the API server's own.
                    cluster=config.ecs_cluster(variables=False),
                )
        except Exception as exc:  # a listener must never break the API call that fired it
            log.warning("stop-on-failed listener skipped (%s)", type(exc).__name__)
