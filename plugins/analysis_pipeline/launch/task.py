"""The launch step for either mode, with admission control and retry rules attached.

Admission: every launch sits in one pool sized in Fargate vCPUs (``config.POOL_NAME``),
taking ``pool_slots`` = its container's vCPUs; the pool counts deferred tasks
(``include_deferred``, see ``make pool``), so a container waited on by the triggerer still
holds its vCPUs. ``priority_weight`` with ``weight_rule="absolute"`` puts recruiter-facing
task analyses ahead of proctor videos when both wait for the pool.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator

from analysis_pipeline import compat, config
from analysis_pipeline.alerts.notifier import alert_on_analysis_failure
from analysis_pipeline.outcome import AnalysisRetryPolicy


def analysis_launch_task(
    kind: config.Kind,
    *,
    task_id: str = "launch",
    env: Mapping[str, str] | None = None,
) -> BaseOperator:
    spec = config.CONTAINERS[kind]
    levers = config.levers_for(kind, env=env)
    common: dict[str, Any] = {
        "task_id": task_id,
        "kind": kind,
        "execution_timeout": timedelta(minutes=levers.timeout_minutes),
        "pool": config.POOL_NAME,
        "pool_slots": levers.vcpu,
        "priority_weight": spec.priority_weight,
        "weight_rule": "absolute",
        "retries": levers.launch_retries,
        # The pool's size as this parse saw the lever: the scheduler-side listener
        # (pool.PoolCheckListener) sets the pool to it when a run starts.
        "pool_size": levers.pool_vcpus,
    }
    crash_delay = timedelta(seconds=levers.crash_retry_seconds)
    if compat.RETRY_POLICY:
        common["retry_policy"] = AnalysisRetryPolicy(
            sentinel_delay=timedelta(seconds=levers.sentinel_retry_seconds),
            crash_delay=crash_delay,
        )
    else:
        # Airflow 3.2: one backoff for every failure; after the sentinel the Gemini breaker
        # holds the next launch until its cool-down, which is the long wait the policy gives.
        common.update(
            retry_delay=crash_delay,
            retry_exponential_backoff=True,
            max_retry_delay=AnalysisRetryPolicy().max_delay,
        )
    if config.launcher_mode(env=env) == "local":
        from analysis_pipeline.launch.local import LocalAnalysisOperator

        return LocalAnalysisOperator(on_failure_callback=alert_on_analysis_failure, **common)
    from analysis_pipeline.launch.ecs import AnalysisEcsRunTaskOperator
    from analysis_pipeline.launch.stopping import stop_ecs_task_on_failure

    return AnalysisEcsRunTaskOperator(
        env=env,
        on_failure_callback=[stop_ecs_task_on_failure, alert_on_analysis_failure],
        **common,
    )
