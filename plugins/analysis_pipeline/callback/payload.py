"""The callback body (pure): what the backend learns about one terminal outcome.

Schema: `analysis_pipeline/schemas/callback.schema.json` (docs/API.md). The body never changes
between delivery attempts of one outcome, and `callback_id` is derived from the outcome
itself (DAG, run id, status, reason, which result): a repeated delivery of the same outcome
carries the same id, so the backend can drop duplicates by it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from analysis_pipeline.callback.outcome import RunOutcome

SCHEMA_VERSION = 1
USAGE_KEYS = (
    "calls", "attempts", "input_tokens", "output_tokens", "estimated_usd", "rate_limited",
    "budget_wait_s",
)  # fmt: skip


def callback_id(*, dag_id: str, run_id: str, outcome: RunOutcome) -> str:
    basis = {
        "dag_id": dag_id,
        "run_id": run_id,
        "status": outcome.status,
        "result_status": outcome.result_status,
        "reason": outcome.reason,
        "finished_at": outcome.result.get("finished_at"),
    }
    digest = hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()
    return f"cb-{digest[:32]}"


def build(
    *,
    kind: str,
    analysis_id: str,
    dag_id: str,
    run_id: str,
    outcome: RunOutcome,
    output_uri: str,
    rerun: bool = False,
    reported_at: str,
) -> dict[str, Any]:
    """The body for this outcome. URIs are only given for what exists: a run that failed
    before any result was written has none."""
    result = outcome.result
    has_result = bool(result)
    usage = result.get("usage") if isinstance(result.get("usage"), Mapping) else None
    current = output_uri + "result.json" if has_result else None
    own = result.get("result_uri") or current
    report = result.get("report_uri") or (output_uri + "report.html" if has_result else None)
    return {
        "schema_version": SCHEMA_VERSION,
        "callback_id": callback_id(dag_id=dag_id, run_id=run_id, outcome=outcome),
        "kind": kind,
        "analysis_id": analysis_id,
        "dag_id": dag_id,
        "dag_run_id": run_id,
        "rerun": rerun,
        "status": outcome.status,
        "result_status": outcome.result_status,
        "reason": outcome.reason,
        "retryable": outcome.retryable,
        "failed_step": outcome.failed_step,
        "result_uri": own,
        "current_result_uri": current,
        "report_uri": report,
        "video_uri": result.get("video_uri"),
        "coverage": _coverage(result.get("coverage")),
        "usage": {k: usage.get(k) for k in USAGE_KEYS} if usage else None,
        "events": result.get("events"),
        "finished_at": result.get("finished_at"),
        # When the outcome was reported (not part of the id: one outcome, one id).
        "reported_at": reported_at,
    }


def _coverage(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, Mapping):
        return None
    keys = ("segments_total", "segments_analysed", "segments_failed", "segments_skipped",
            "duration_s", "seconds_analysed", "cut_short_by")  # fmt: skip
    return {k: value.get(k) for k in keys}


def encode(payload: Mapping[str, Any]) -> bytes:
    """The exact bytes that are signed and sent (stable: sorted keys, no spaces)."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
