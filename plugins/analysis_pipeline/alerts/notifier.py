"""``alert_on_analysis_failure``: the failure callback of every task of both DAGs.

An Airflow ``BaseNotifier``: it runs wherever Airflow runs the callback (the worker that
ran the task, or the dag-processor), and groups bursts through the metadata database
(``grouping``), so one storm is one message whichever process reports each failure.
Never raises: a broken alert must not mask the failure it reports.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import BaseNotifier

from analysis_pipeline.alerts import discord, grouping
from analysis_pipeline.alerts.message import alert_from_context
from analysis_pipeline.config import DISCORD_CONN_ID
from analysis_pipeline.shared_state import SharedStore, default_store

log = logging.getLogger(__name__)


class AnalysisFailureNotifier(BaseNotifier):
    """Post (or fold into the current burst message) one Discord alert per failure."""

    def __init__(self, *, conn_id: str = DISCORD_CONN_ID, store: SharedStore | None = None):
        super().__init__()
        self.conn_id = conn_id
        self.store = store

    def notify(self, context: Any) -> None:
        try:
            alert = alert_from_context(context)
            try:
                url = discord.webhook_url(self.conn_id)
            except discord.AlertChannelUnavailable as exc:
                log.error(
                    "Discord alert for %s/%s not sent: %s", alert.dag_id, alert.analysis_id, exc
                )
                return
            if not url:
                log.warning(
                    "Connection %r is not configured; failure of %s/%s not sent to Discord",
                    self.conn_id,
                    alert.dag_id,
                    alert.analysis_id,
                )
                return
            outcome = grouping.notify(alert, url, self.store or default_store())
            log.info("Discord alert %s for %s/%s", outcome, alert.dag_id, alert.analysis_id)
        except Exception as exc:
            log.warning("Discord alert not sent (%s)", type(exc).__name__)

    def __call__(self, *args: Any) -> None:
        # BaseNotifier re-raises what notify raises; notify never does, and rendering
        # templates (none here) must not either.
        try:
            super().__call__(*args)
        except Exception as exc:
            log.warning("Discord alert not sent (%s)", type(exc).__name__)


alert_on_analysis_failure = AnalysisFailureNotifier()
