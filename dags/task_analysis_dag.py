"""
### task_analysis

Analyses one finished hands-on task submission: its screen recording (one object or a TUS
chunk prefix) goes through the `task-analyzer` container (ffmpeg + Gemini MAP/REDUCE) and
becomes `result.json` under `RESULTS_URI/task_analysis/<submission_id>/`.

Steps: **validate** (params and recording exist, before any Fargate time) → **launch**
(Fargate in `ecs` mode, a local process in `local` mode; waits in the `fargate_vcpu` pool)
→ **check_result** → **publish** (XCom summary; POST to the `analysis_backend` HTTP
connection when configured). With a `webcam_uri` the run also triggers `proctor_video`
for the same id (run id = the submission id, so a repeat is skipped, never duplicated).

Trigger with the submission id as the run id so a repeated trigger is refused.
Runs beyond `MAX_CONCURRENT_ANALYSES` wait queued. Failures alert Discord
(`discord_alerts` connection) via `alert_on_analysis_failure`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import dag

from analysis_pipeline.alerts.notifier import alert_on_analysis_failure
from analysis_pipeline.config import levers_for
from analysis_pipeline.launch.task import analysis_launch_task
from analysis_pipeline.params import task_analysis_params
from analysis_pipeline.steps import (
    check_result_step,
    proctoring_requested,
    publish_step,
    validate_step,
)

KIND = "task_analysis"


@dag(
    dag_id=KIND,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=levers_for(KIND).max_active_runs,
    params=task_analysis_params(),
    default_args={
        "owner": "analysis-pipeline",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "on_failure_callback": alert_on_analysis_failure,
    },
    tags=["analysis", "fargate", "gemini", "task_analysis"],
    doc_md=__doc__,
)
def task_analysis() -> None:
    validated = validate_step(KIND)
    checked = check_result_step(KIND)
    validated >> analysis_launch_task(KIND) >> checked
    publish_step(checked)

    trigger = TriggerDagRunOperator(
        task_id="trigger_proctor_video",
        trigger_dag_id="proctor_video",
        trigger_run_id="{{ params.submission_id }}",
        conf={"attempt_id": "{{ params.submission_id }}", "webcam_uri": "{{ params.webcam_uri }}"},
        skip_when_already_exists=True,
        # A paused proctor_video would leave the run queued silently forever: fail (and alert).
        fail_when_dag_is_paused=True,
        retries=1,
    )
    proctoring_requested(validated) >> trigger


task_analysis_dag = task_analysis()
