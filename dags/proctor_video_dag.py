"""
### proctor_video

Turns one test attempt's webcam stream (3-second WebM chunks under a prefix) into a
seekable `video.webm`, evidence thumbnails and a proctoring report of timed events, via the
`proctor-video` container, under `RESULTS_URI/proctor_video/<attempt_id>/`.

Steps: **validate** (params and non-empty chunk prefix) → **launch** (Fargate in `ecs`
mode, a local process in `local` mode; waits in the `fargate_vcpu` pool behind task
analyses) → **check_result** → **publish** (XCom summary) → **report_outcome** (the outcome,
whatever it is, as one signed callback to the backend; `docs/API.md`).

Trigger with the attempt id as the run id so a repeated trigger is refused (task_analysis
does this for proctored tasks). Runs beyond `MAX_CONCURRENT_PROCTOR_VIDEOS` wait queued.
Failures alert Discord (`discord_alerts` connection) via `alert_on_analysis_failure`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag

from analysis_pipeline.alerts.notifier import alert_on_analysis_failure
from analysis_pipeline.callback.tasks import ReportOutcomeOperator
from analysis_pipeline.config import levers_for
from analysis_pipeline.launch.task import analysis_launch_task
from analysis_pipeline.params import proctor_video_params
from analysis_pipeline.steps import check_result_step, publish_step, validate_step

KIND = "proctor_video"


@dag(
    dag_id=KIND,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=levers_for(KIND).max_active_runs,
    params=proctor_video_params(),
    default_args={
        "owner": "analysis-pipeline",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "on_failure_callback": alert_on_analysis_failure,
    },
    tags=["analysis", "fargate", "gemini", "proctor_video"],
    doc_md=__doc__,
)
def proctor_video() -> None:
    validated = validate_step(KIND)
    checked = check_result_step(KIND)
    launched = analysis_launch_task(KIND)
    validated >> launched >> checked
    publish_step(checked)
    # Whatever happened above, the backend learns the outcome (one signed callback). Not
    # after publish: publish stays a leaf, so a failed analysis still fails its run.
    [validated, launched, checked] >> ReportOutcomeOperator(kind=KIND)


proctor_video_dag = proctor_video()
