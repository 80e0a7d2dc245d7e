"""`make capacity` (devtools/capacity.py): the planner evaluates terraform/modules/capacity, the
one capacity model, and presents it. Its arithmetic is tested by the module's own
`terraform test` suite (tests/test_terraform.py runs it); here: that the planner reports what
the module computes on the operators' tfvars and what-ifs, and fails where `plan` would.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from devtools import capacity as cap

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "terraform" / "examples"

pytestmark = pytest.mark.terraform


@pytest.fixture(scope="module")
def record() -> cap.Evaluation:
    return cap.evaluate(EXAMPLES / "decision-record.tfvars")


def _section(out: str, name: str) -> str:
    return out.split(f"\n{name}:", 1)[1].split("\n\n", 1)[0]


def test_record_arithmetic_is_about_17_hours() -> None:
    assert cap.record_hours(350, 12, 35) == pytest.approx(17.01, abs=0.01)


def test_cli_prints_the_record_figure_with_its_unit(capsys: pytest.CaptureFixture[str]) -> None:
    code = cap.main(["--submissions", "350", "--concurrency", "12", "--minutes-per-analysis", "35"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "350 submissions ÷ 12 concurrent × 35 min" in out
    assert re.search(r"≈ 17\.0 h\b", out), out
    task = _section(out, "task-analyzer")
    assert "predicted drain of 350: 17.0 h" in task
    # 12 x 4 + 8 x 2 fills the 64-vCPU quota: a higher cap needs a higher quota too.
    assert "binding constraint: Fargate vCPU" in task
    assert "raise MAX_CONCURRENT_ANALYSES from 12 to" in task
    assert "and fargate_vcpu_quota from 64 to" in task


def test_decision_record_example_is_one_segment_at_a_time(record: cap.Evaluation) -> None:
    assert record.plan is not None and not record.errors
    task = record.plan["workloads"]["task-analyzer"]
    assert task["map_concurrency"] == 1 and task["minutes_per_analysis"] == 35
    # The module's pacing model agrees with the measured 35 minutes it claims.
    assert record.plan["per_analysis"]["task-analyzer"]["modelled_minutes"] == 35
    assert record.plan["drain"]["task-analyzer"]["hours"] == pytest.approx(17.01, abs=0.01)
    # The record's ceiling: 64 vCPU ÷ 4 = 16 task analyses.
    assert record.tfvars is not None and record.tfvars["fargate_vcpu_quota"] // task["vcpu"] == 16


def test_scaled_example_plans_cleanly_and_drains_faster(record: cap.Evaluation) -> None:
    scaled = cap.evaluate(EXAMPLES / "scaled.tfvars")
    assert scaled.plan is not None and not scaled.errors, scaled.errors
    assert record.plan is not None
    for name in scaled.plan["workloads"]:
        assert scaled.plan["drain"][name]["hours"] < record.plan["drain"][name]["hours"]


def test_a_raised_quota_names_the_dag_cap(capsys: pytest.CaptureFixture[str]) -> None:
    assert cap.main(["--vcpu-quota", "128"]) == 0
    task = _section(capsys.readouterr().out, "task-analyzer")
    assert "binding constraint: DAG cap" in task
    assert "(fits the current quota)" in task or "fargate_vcpu_quota from 128" in task


def test_what_if_names_gemini_tpm_and_its_lever(capsys: pytest.CaptureFixture[str]) -> None:
    code = cap.main(["--minutes-per-analysis", "9", "--concurrency", "14", "--vcpu-quota", "72"])
    out = capsys.readouterr().out
    assert code == 0, out
    task = _section(out, "task-analyzer")
    assert "binding constraint: Gemini TPM" in task
    assert "raise the Gemini TPM quota of gemini-2.5-flash from 1,000,000" in task
    assert "what-if, differs from the tfvars: workloads[task-analyzer].max_concurrent = 14" in out


def test_what_if_that_breaks_the_quota_fails_like_plan(capsys: pytest.CaptureFixture[str]) -> None:
    code = cap.main(["--concurrency", "17"])
    out = capsys.readouterr().out
    assert code == 1
    assert "terraform plan would fail: The DAG caps need 84 vCPU" in out


def test_pending_quota_predicts_from_the_caps_written(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--concurrency", "24", "--vcpu-quota", "128", "--vcpu-quota-applied", "64"]
    assert cap.main(argv) == 0
    task = _section(capsys.readouterr().out, "task-analyzer")
    # 24 x 4 + 8 x 2 = 112 vCPU asked of the 64 applied: the caps written are 13 and 4.
    assert "running 13 at once" in task
    assert "predicted drain of 350: 15.7 h" in task  # not the 8.5 h the asked-for 24 would give
    assert "wait for the Fargate vCPU increase to 128" in task


def test_gemini_rpm_advice_when_calls_are_many() -> None:
    overrides = {"segment_seconds": 10, "map_concurrency": 64, "seconds_per_call": 10}
    evaluation = cap.evaluate(
        EXAMPLES / "decision-record.tfvars",
        {"gemini_project_rpm": 150},
        {"task-analyzer": {**overrides, "minutes_per_analysis": None}, "proctor-video": overrides},
    )
    assert evaluation.plan is not None, evaluation.errors
    assert evaluation.plan["drain"]["task-analyzer"]["binding"] == "Gemini RPM"
    advice = cap.next_lever(evaluation.plan, "task-analyzer", 64)
    assert "raise the Gemini RPM quota of gemini-2.5-flash from 150" in advice


def test_png_drain_curve(tmp_path: Path, record: cap.Evaluation) -> None:
    assert record.plan is not None
    out = tmp_path / "drain.png"
    assert cap.plot_drain(record.plan, out) == ["proctor-video", "task-analyzer"]
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert int.from_bytes(data[16:20], "big") == 800 and int.from_bytes(data[20:24], "big") == 450


def test_missing_terraform_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("TERRAFORM", raising=False)
    assert cap.main([]) == 2
    assert "terraform not found on PATH" in capsys.readouterr().err
