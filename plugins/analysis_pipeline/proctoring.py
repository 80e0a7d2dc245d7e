"""A proctored task's webcam: task_analysis hands it to proctor_video as its own run.

The run is named `submission:<submission_id>` (`…:rerun:<task run id>` for a rerun): ':' is
in no submission or attempt id, so it can never take (or be skipped for) the run of a
proctored test whose attempt id happens to be the same string. Its results go to
`task_analysis/<submission_id>/webcam/` (`source: submission`), apart from any attempt's.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator


def proctoring_run_id(submission_id: str, *, rerun: bool = False, run_id: str = "") -> str:
    base = f"submission:{submission_id}"
    return f"{base}:rerun:{run_id}" if rerun else base


class TriggerProctoring(TriggerDagRunOperator):
    """Trigger proctor_video for this submission's webcam (once: a repeat is skipped)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            task_id="trigger_proctor_video",
            trigger_dag_id="proctor_video",
            skip_when_already_exists=True,
            # A paused proctor_video would leave the run queued silently forever: fail (and alert).
            fail_when_dag_is_paused=True,
            retries=1,
            **kwargs,
        )

    def execute(self, context: Any) -> Any:
        params = context["params"]
        rerun = bool(params.get("rerun"))
        submission_id = str(params["submission_id"])
        self.trigger_run_id = proctoring_run_id(
            submission_id, rerun=rerun, run_id=str(context["run_id"])
        )
        self.conf = {
            "attempt_id": submission_id,
            "webcam_uri": params["webcam_uri"],
            "source": "submission",
            "rerun": rerun,
        }
        return super().execute(context)
