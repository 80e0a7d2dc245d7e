"""
### analysis_callback

Delivers one analysis outcome to the backend: one run per outcome, named by its
`callback_id` and queued by the analysis DAGs' `report_outcome` task (never triggered by
hand). Its `deliver` task POSTs the payload, HMAC-signed with the secret of the
`analysis_backend` connection, and is retried with exponential backoff
(`ANALYSIS_CALLBACK_RETRIES`, `ANALYSIS_CALLBACK_RETRY_SECONDS`) while the backend is down;
a refused callback (4xx) or the last retry alerts Discord. The contract: `docs/API.md`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag

from analysis_pipeline.alerts.notifier import alert_on_analysis_failure
from analysis_pipeline.callback.tasks import CALLBACK_DAG_ID, deliver_step, retries, retry_seconds


@dag(
    dag_id=CALLBACK_DAG_ID,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    # Deliveries are cheap HTTP calls; while the backend is down they wait in retries, and
    # never hold a slot of the analysis DAGs.
    max_active_runs=64,
    params={"payload": Param(None, type=["null", "object"], description="The callback body.")},
    default_args={
        "owner": "analysis-pipeline",
        "retries": retries(),
        "retry_delay": timedelta(seconds=retry_seconds()),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(hours=1),
        "on_failure_callback": alert_on_analysis_failure,
    },
    tags=["analysis", "callback"],
    doc_md=__doc__,
)
def analysis_callback() -> None:
    deliver_step()


analysis_callback()
