"""Every message the pipeline sends names its section of docs/RUNBOOK.md, and that section
exists: the Discord alerts (failures by kind, the quota breaker, the pool check) and the
CloudWatch alarms Terraform creates."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from analysis_pipeline.alerts import runbook
from analysis_pipeline.alerts.message import Alert, breaker_embed, failure_embed
from analysis_pipeline.launch.admission import NotAdmittedForTooLong
from analysis_pipeline.outcome import (
    AllSegmentsFailed,
    AnalysisCrashed,
    AnalysisInvalidInput,
    classify,
)

REPO = Path(__file__).resolve().parents[1]
RUNBOOK = (REPO / "docs" / "RUNBOOK.md").read_text()
URL = "https://runbooks.example.com/analysis/RUNBOOK.md"


def github_anchor(heading: str) -> str:
    """How GitHub turns a heading into its #anchor."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def headings() -> dict[str, str]:
    return {github_anchor(h): h for h in re.findall(r"^#{2,4} (.+)$", RUNBOOK, re.M)}


def test_every_section_the_code_links_is_a_heading_of_the_runbook() -> None:
    found = headings()
    for anchor, title in runbook.SECTIONS.items():
        assert found.get(anchor) == title, anchor
    # ...and every alert or alarm the runbook describes is one the code can link.
    described = {a for a, h in found.items() if h.startswith(("Alert:", "Alarm:"))}
    assert described == set(runbook.SECTIONS)


def test_every_alarm_terraform_creates_names_a_section_that_exists() -> None:
    alarms = (REPO / "terraform" / "alarms.tf").read_text()
    block = alarms.split("runbook_sections = {", 1)[1].split("}", 1)[0]
    sections = dict(re.findall(r'(\w+)\s*=\s*"([a-z0-9-]+)"', block))
    assert set(sections) == {"failure_rate", "sentinel", "budget_cap", "cost_per_hour"}
    assert set(sections.values()) <= set(runbook.SECTIONS)
    for name in sections:  # each alarm's description uses its own link
        assert f"local.runbook_link.{name}" in alarms


def alert_for(exc: BaseException, *, task_id: str = "launch") -> Alert:
    return Alert(
        dag_id="task_analysis", run_id="S-1", analysis_id="S-1", task_id=task_id,
        try_number=3, reason=str(getattr(exc, "reason", None) or exc),
        error_type=type(exc).__name__,
        log_url="http://localhost:8080/dags/task_analysis/runs/S-1/tasks/launch?try_number=3",
    )  # fmt: skip


def raised(**kwargs: Any) -> BaseException:
    with pytest.raises(Exception) as caught:
        classify(**kwargs)
    return caught.value


PERMANENT = "Every segment failed for a reason retrying will not fix: 400 API key not valid"


@pytest.mark.parametrize(
    "exc, task_id, section",
    [
        (raised(exit_code=3, result={"status": "failed", "error": "All segments failed analysis"}),
         "launch", "alert-all-segments-failed"),
        (raised(exit_code=1, result={"status": "failed", "error": PERMANENT}),
         "launch", "alert-gemini-refused"),
        (raised(exit_code=137, result=None), "launch", "alert-analysis-crashed"),
        (raised(exit_code=2, result={"status": "invalid_input", "error": "INPUT_URI: empty"}),
         "launch", "alert-invalid-input"),
        (NotAdmittedForTooLong("not admitted for 24 h"), "launch", "alert-fargate-not-admitted"),
        (RuntimeError("recording missing"), "validate", "alert-validate-refused"),
        (RuntimeError("DagIsPaused"), "trigger_proctor_video", "alert-proctoring-not-triggered"),
        (RuntimeError("boom"), "check_result", "alert-other-failure"),
    ],
)  # fmt: skip
def test_each_failure_alert_links_its_section(
    exc: BaseException, task_id: str, section: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(exc, AllSegmentsFailed | AnalysisCrashed | AnalysisInvalidInput | Exception)
    monkeypatch.setenv("ANALYSIS_RUNBOOK_URL", URL)
    embed = failure_embed(alert_for(exc, task_id=task_id), count=1, since=0, ids=[], secrets=[])
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Runbook"] == f"[{runbook.SECTIONS[section]}]({URL}#{section})"
    # The log link Airflow builds from an unset [api] base_url says how to fix it.
    assert "set AIRFLOW__API__BASE_URL" in fields["Airflow log"]


def test_the_pool_alert_and_the_breaker_messages_link_their_sections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ANALYSIS_RUNBOOK_URL", raising=False)
    pool = Alert(dag_id="task_analysis", run_id="r", analysis_id="all-runs", task_id="launch",
                 try_number=0, reason="pool fargate_vcpu missing",
                 error_type="PoolMisconfigured")  # fmt: skip
    fields = {f["name"]: f["value"] for f in failure_embed(pool, count=1, since=0, ids=[],
                                                             secrets=[])["fields"]}  # fmt: skip
    # Unpublished runbook: the file and section are named, not linked.
    assert (
        fields["Runbook"] == "Alert: pool misconfigured: docs/RUNBOOK.md#alert-pool-misconfigured"
    )
    for opened, section in ((True, "alert-launches-paused"), (False, "alert-launches-resumed")):
        embed = breaker_embed(opened=opened, since=0, until=600, sentinels=2, held=3, ids=["a"])
        runbook_field = [f["value"] for f in embed["fields"] if f["name"] == "Runbook"]
        assert runbook_field == [f"{runbook.SECTIONS[section]}: docs/RUNBOOK.md#{section}"]


def test_a_public_log_link_gets_no_hint() -> None:
    url = "https://airflow.example.com/dags/d/runs/r/tasks/launch"
    alert = Alert(dag_id="d", run_id="r", analysis_id="a", task_id="launch", try_number=1,
                  reason="x", log_url=url)  # fmt: skip
    embed = failure_embed(alert, count=1, since=0, ids=[], secrets=[])
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Airflow log"] == url
