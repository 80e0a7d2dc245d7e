"""Which section of docs/RUNBOOK.md an alert belongs to, and the link to it.

Every message the pipeline sends carries the link to its section: what the alert means, how
to confirm it, what to do, how to know it is over. Where the runbook is published is a
deployment setting, `ANALYSIS_RUNBOOK_URL` (the https URL of RUNBOOK.md, no fragment);
unset, messages name the file in the repository. The sections' anchors are fixed here and
tests/test_runbook.py checks that docs/RUNBOOK.md has a heading for each.
"""

from __future__ import annotations

from collections.abc import Mapping

from analysis_pipeline import config

RUNBOOK_URL_SETTING = "ANALYSIS_RUNBOOK_URL"
IN_REPOSITORY = "docs/RUNBOOK.md"

# Anchor -> the heading in docs/RUNBOOK.md that GitHub turns into it.
SECTIONS: Mapping[str, str] = {
    "alert-all-segments-failed": "Alert: all segments failed",
    "alert-gemini-refused": "Alert: Gemini refused",
    "alert-analysis-crashed": "Alert: analysis crashed",
    "alert-invalid-input": "Alert: invalid input",
    "alert-validate-refused": "Alert: validate refused",
    "alert-fargate-not-admitted": "Alert: Fargate not admitted",
    "alert-timeout": "Alert: timeout",
    "alert-proctoring-not-triggered": "Alert: proctoring not triggered",
    "alert-result-not-delivered": "Alert: result not delivered",
    "alert-pool-misconfigured": "Alert: pool misconfigured",
    "alert-launches-paused": "Alert: launches paused",
    "alert-launches-resumed": "Alert: launches resumed",
    "alert-other-failure": "Alert: other failure",
    "alarm-failure-rate": "Alarm: failure rate",
    "alarm-sentinel": "Alarm: sentinel",
    "alarm-ceiling-below-the-limit": "Alarm: ceiling below the limit",
    "alarm-cost-per-hour": "Alarm: cost per hour",
}

# The permanent model refusal's wording (analysis_engine.result.permanent_failure_reason).
_PERMANENT_REFUSAL = "retrying will not fix"


def section_for(*, error_type: str, task_id: str, reason: str) -> str:
    """The runbook section of a failure alert."""
    if error_type == "PoolMisconfigured":
        return "alert-pool-misconfigured"
    if task_id == "validate":
        return "alert-validate-refused"
    if task_id == "trigger_proctor_video":
        return "alert-proctoring-not-triggered"
    if task_id in ("deliver", "report_outcome"):
        return "alert-result-not-delivered"
    by_type = {
        "AnalysisInvalidInput": "alert-invalid-input",
        "AnalysisRefused": "alert-gemini-refused",
        "AllSegmentsFailed": "alert-all-segments-failed",
        "NotAdmittedForTooLong": "alert-fargate-not-admitted",
        "AirflowTaskTimeout": "alert-timeout",
        "TaskDeferralTimeout": "alert-timeout",
    }
    if error_type == "AnalysisCrashed":
        return "alert-gemini-refused" if _PERMANENT_REFUSAL in reason else "alert-analysis-crashed"
    return by_type.get(error_type, "alert-other-failure")


def link(section: str, *, env: Mapping[str, str] | None = None) -> str:
    """The section's address: a URL when the runbook is published, else the file's path."""
    if section not in SECTIONS:
        raise KeyError(f"no runbook section {section!r}")
    base = (config.setting(RUNBOOK_URL_SETTING, env=env, variables=False) or "").strip()
    return f"{base.split('#', 1)[0] or IN_REPOSITORY}#{section}"


def markdown(section: str, *, env: Mapping[str, str] | None = None) -> str:
    """The link as Discord shows it: clickable when it is a URL."""
    target = link(section, env=env)
    title = SECTIONS[section]
    return f"[{title}]({target})" if target.startswith("https://") else f"{title}: {target}"
