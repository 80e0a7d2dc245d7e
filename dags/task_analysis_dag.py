"""
### task_analysis

Analyses one finished hands-on task submission: its screen recording (one object or a TUS
chunk prefix) goes through the `task-analyzer` container (ffmpeg + Gemini MAP/REDUCE) and
becomes `result.json` under `RESULTS_URI/task_analysis/<submission_id>/`.

Steps: **validate** (params and recording exist, before any Fargate time) → **launch**
(Fargate in `ecs` mode, a local process in `local` mode; waits in the `fargate_vcpu` pool)
→ **check_result** → **publish** (XCom summary) → **report_outcome** (runs whatever
happened: the outcome, complete, partial or failed with its reason, goes to the backend as
one HMAC-signed callback through the `analysis_callback` DAG, when the `analysis_backend`
connection is configured; `docs/API.md`). With a `webcam_uri` the run also triggers `proctor_video`
for the same id (run id `submission:<submission_id>`, so a repeat is skipped, never
duplicated, and never mistaken for a test attempt's run; results under
`task_analysis/<submission_id>/webcam/`).

Trigger with the submission id as the run id so a repeated trigger is refused.
Runs beyond `MAX_CONCURRENT_ANALYSES` wait queued. Failures alert Discord
(`discord_alerts` connection) via `alert_on_analysis_failure`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag

from analysis_pipeline.alerts.notifier import alert_on_analysis_failure
from analysis_pipeline.callback.tasks import ReportOutcomeOperator
from analysis_pipeline.config import levers_for
from analysis_pipeline.launch.task import analysis_launch_task
from analysis_pipeline.params import task_analysis_params
from analysis_pipeline.proctoring import TriggerProctoring
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
    launched = analysis_launch_task(KIND)
    validated >> launched >> checked
    publish_step(checked)
    # Whatever happened above, the backend learns the outcome (one signed callback). Not
    # after publish: publish stays a leaf, so a failed analysis still fails its run.
    [validated, launched, checked] >> ReportOutcomeOperator(kind=KIND)

    trigger = TriggerProctoring()
    proctoring_requested(validated) >> trigger


task_analysis_dag = task_analysis()
