"""What one alert says: the ``Alert`` taken from an Airflow context, and its Discord embed."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from analysis_pipeline.alerts import runbook
from analysis_pipeline.alerts.redaction import redact

COLOR_FAILED = 0xD0342C
COLOR_WARNING = 0xE8A317
COLOR_RECOVERED = 0x2E8B57
MAX_IDS_SHOWN = 10
_LOCAL_BASE = re.compile(r"^https?://(localhost|127\.0\.0\.1)(:\d+)?/")


@dataclass(frozen=True)
class Alert:
    dag_id: str
    run_id: str
    analysis_id: str
    task_id: str
    try_number: int
    reason: str
    exit_code: int | None = None
    last_lines: tuple[str, ...] = ()
    log_url: str | None = None
    error_type: str = "Exception"
    map_index: int = -1

    @property
    def key(self) -> str:
        """Same DAG, same kind of error, same reason text (ids and numbers blurred)."""
        reason = self.reason.replace(self.analysis_id, "<id>") if self.analysis_id else self.reason
        reason = re.sub(r"\d+", "#", reason)[:160]
        return f"{self.dag_id}|{self.error_type}|{reason}"

    @property
    def runbook_section(self) -> str:
        return runbook.section_for(
            error_type=self.error_type, task_id=self.task_id, reason=self.reason
        )

    @property
    def failure_id(self) -> str:
        """One id per failed try: a callback that runs twice still counts once."""
        raw = f"{self.dag_id}|{self.run_id}|{self.task_id}|{self.map_index}|{self.try_number}"
        return hashlib.sha256(raw.encode()).hexdigest()[:12]


def _analysis_id(params: Mapping[str, Any]) -> str:
    # The analysis_callback DAG's conf carries its analysis in the callback payload.
    payload = params.get("payload") if isinstance(params.get("payload"), Mapping) else {}
    return str(
        params.get("submission_id")
        or params.get("attempt_id")
        or payload.get("analysis_id")
        or "unknown"
    )


def alert_from_context(context: Mapping[str, Any]) -> Alert:
    ti = context.get("ti")
    exc = context.get("exception")
    params = context.get("params") or {}
    run_id = getattr(context.get("dag_run"), "run_id", None) or getattr(ti, "run_id", "?")
    return Alert(
        dag_id=str(getattr(ti, "dag_id", "?")),
        run_id=str(run_id),
        analysis_id=_analysis_id(params),
        task_id=str(getattr(ti, "task_id", "?")),
        try_number=int(getattr(ti, "try_number", 0) or 0),
        reason=str(getattr(exc, "reason", None) or exc or "unknown failure")[:1000],
        exit_code=getattr(exc, "exit_code", None),
        last_lines=tuple(_log_lines(getattr(exc, "last_lines", ()) or ())),
        log_url=_log_url(ti),
        error_type=type(exc).__name__ if exc is not None else "Unknown",
        map_index=int(getattr(ti, "map_index", -1) if getattr(ti, "map_index", None) else -1),
    )


def _log_lines(lines: Any) -> list[str]:
    """The container's log lines without its metric documents (CloudWatch EMF JSON lines,
    which say nothing to a person reading the alert)."""
    return [str(line) for line in lines if not _is_metrics_line(str(line))]


def _is_metrics_line(line: str) -> bool:
    return line.lstrip().startswith("{") and '"_aws"' in line


def _log_url(ti: Any) -> str | None:
    try:
        return str(ti.log_url)
    except Exception:
        return None


def _clock(epoch: float) -> str:
    return time.strftime("%H:%M UTC", time.gmtime(epoch))


def failure_embed(
    alert: Alert, *, count: int, since: float, ids: list[str], secrets: list[str]
) -> dict[str, Any]:
    title = f"{alert.dag_id} failed: {alert.analysis_id}"
    if count > 1:
        title = f"{alert.dag_id}: {count} failures with the same reason"
    fields = [
        {"name": "DAG", "value": alert.dag_id, "inline": True},
        {"name": "Run", "value": alert.run_id[:200], "inline": True},
        {"name": "ID", "value": alert.analysis_id, "inline": True},
        {"name": "Failed step", "value": alert.task_id, "inline": True},
        {"name": "Try", "value": str(alert.try_number), "inline": True},
        {"name": "Exit code", "value": str(alert.exit_code), "inline": True},
    ]
    if count > 1:
        fields.append(
            {
                "name": f"{count} failures since {_clock(since)} (latest ids)",
                "value": ", ".join(ids[-MAX_IDS_SHOWN:])[:1000],
                "inline": False,
            }
        )
    if alert.last_lines:
        tail = "\n".join(alert.last_lines)[-950:].replace("```", "'''")
        fields.append({"name": "Last container log lines", "value": f"```\n{tail}\n```"})
    fields.append({"name": "Runbook", "value": runbook.markdown(alert.runbook_section)[:1000]})
    embed: dict[str, Any] = {
        "title": title[:256],
        "description": f"**Reason:** {alert.reason}"[:2000],
        "color": COLOR_FAILED,
        "fields": fields,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if alert.log_url:
        embed["url"] = alert.log_url
        log_link = alert.log_url[:900]
        if _LOCAL_BASE.match(alert.log_url):
            # Airflow builds the link from [api] base_url, which defaults to localhost.
            log_link += " (set AIRFLOW__API__BASE_URL for a link that opens)"
        fields.append({"name": "Airflow log", "value": log_link})
    return json.loads(redact(json.dumps(embed), secrets))


def breaker_embed(
    *, opened: bool, since: float, until: float, sentinels: int, held: int, ids: list[str]
) -> dict[str, Any]:
    if opened:
        title = "Gemini quota exhausted: launches paused"
        description = (
            f"A run ended with **All segments failed analysis**. New launches wait until "
            f"about {_clock(until)} (or the first success) instead of pushing queued runs "
            "into an exhausted quota."
        )
    else:
        title = "Gemini quota breaker closed: launches resumed"
        description = f"Open since {_clock(since)} ({(until - since) / 60:.0f} min)."
    fields = [
        {"name": "All-segments failures", "value": str(sentinels), "inline": True},
        {"name": "Launches held", "value": str(held), "inline": True},
    ]
    if ids:
        fields.append({"name": "IDs", "value": ", ".join(ids[-MAX_IDS_SHOWN:])[:1000]})
    section = "alert-launches-paused" if opened else "alert-launches-resumed"
    fields.append({"name": "Runbook", "value": runbook.markdown(section)[:1000]})
    return {
        "title": title,
        "description": description,
        "color": COLOR_WARNING if opened else COLOR_RECOVERED,
        "fields": fields,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
