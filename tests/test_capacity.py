"""The capacity planner (devtools/capacity.py) against the decision record and the shared cases.

`terraform/modules/capacity/tests/cases.json` is the one place the lever arithmetic is pinned:
these tests hold the Python planner to it, the module's `terraform test` suite holds the
Terraform module to it (and runs here too when the terraform binary is present).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from devtools import capacity as cap

REPO = Path(__file__).resolve().parent.parent
MODULE = REPO / "terraform" / "modules" / "capacity"
EXAMPLES = REPO / "terraform" / "examples"
CASES = cap.load_cases()
TOLERANCE = 1e-3


def _levers(inputs: dict[str, Any]) -> cap.Levers:
    merged = {**CASES["baseline"], **inputs}
    workloads = {k: cap.Workload.from_mapping(v) for k, v in merged.pop("workloads").items()}
    return cap.Levers(workloads=workloads, **merged)


def _close(actual: float | None, expected: float | None) -> bool:
    if actual is None or expected is None:
        return actual is expected
    return abs(actual - expected) <= TOLERANCE * max(1.0, abs(expected))


# --- the decision record -----------------------------------------------------------------------


def test_record_arithmetic_is_about_17_hours() -> None:
    assert cap.record_hours(350, 12, 35) == pytest.approx(17.01, abs=0.01)


def test_cli_prints_the_record_figure_with_its_unit(capsys: pytest.CaptureFixture[str]) -> None:
    code = cap.main(["--submissions", "350", "--concurrency", "12", "--minutes-per-analysis", "35"])
    out = capsys.readouterr().out
    assert code == 0
    assert "350 submissions ÷ 12 concurrent × 35 min" in out
    assert re.search(r"≈ 17\.0 h\b", out), out
    assert "binding constraint: Fargate vCPU" in out
    assert "lever to move next: raise MAX_CONCURRENT_ANALYSES" in out


def test_decision_record_tfvars_reproduce_the_record() -> None:
    levers = cap.levers_from_tfvars(EXAMPLES / "decision-record.tfvars")
    plan = cap.plan(levers)
    assert not cap.validate(levers) and not plan.errors
    task = levers.workloads["task-analyzer"]
    assert (task.max_concurrent, task.vcpu, levers.fargate_vcpu_quota) == (12, 4, 64)
    assert plan.drain["task-analyzer"].hours == pytest.approx(17.01, abs=0.01)
    # The record's ceiling: 64 vCPU ÷ 4 = 16 task analyses.
    assert levers.fargate_vcpu_quota // task.vcpu == 16


def test_scaled_example_plans_cleanly_and_drains_faster() -> None:
    record = cap.plan(cap.levers_from_tfvars(EXAMPLES / "decision-record.tfvars"))
    levers = cap.levers_from_tfvars(EXAMPLES / "scaled.tfvars")
    plan = cap.plan(levers)
    assert not cap.validate(levers) and not plan.errors
    assert plan.required_vcpu <= levers.fargate_vcpu_quota
    for name in levers.workloads:
        assert plan.drain[name].hours < record.drain[name].hours


# --- the shared cases: same numbers as the Terraform module ------------------------------------


@pytest.mark.parametrize("name", sorted(CASES["cases"]))
def test_planner_matches_shared_case(name: str) -> None:
    case = CASES["cases"][name]
    levers = _levers(case["inputs"])
    assert not cap.validate(levers)
    plan = cap.plan(levers)
    assert not plan.errors
    want = case["expected"]
    got = {
        "required_vcpu": plan.required_vcpu,
        "quota_to_request": plan.quota_to_request,
        "pool_vcpu": plan.pool_vcpu,
    }
    for key, value in got.items():
        assert _close(value, want[key]), (key, value, want[key])
    assert plan.quota_increase_needed == want["quota_increase_needed"]
    assert plan.caps_limited_by_quota == want["caps_limited_by_quota"]
    for wname, expected in want["workloads"].items():
        actual = {
            "effective_cap": plan.effective_caps[wname],
            "rpm_budget": plan.gemini_rpm_budget[wname],
            "tpm_budget": plan.gemini_tpm_budget[wname],
            "minutes": plan.per_analysis[wname]["minutes"],
            "requests": plan.per_analysis[wname]["requests"],
            "tokens": plan.per_analysis[wname]["tokens"],
            "analyses_per_hour": plan.drain[wname].analyses_per_hour,
            "drain_hours": plan.drain[wname].hours,
        }
        for key, value in actual.items():
            assert _close(value, expected[key]), (wname, key, value, expected[key])
        assert plan.drain[wname].binding == expected["binding"]


@pytest.mark.parametrize("name", sorted(CASES["rejections"]))
def test_planner_rejects_what_terraform_rejects(name: str) -> None:
    case = CASES["rejections"][name]
    levers = _levers(case["inputs"])
    errors = cap.validate(levers) or cap.plan(levers).errors
    assert set(errors) == set(case["expect_failures"])


def test_every_rejection_has_a_terraform_test_run_expecting_the_same_failure() -> None:
    text = (MODULE / "tests" / "capacity.tftest.hcl").read_text()
    for name, case in CASES["rejections"].items():
        match = re.search(
            rf'run "{name}" {{(.*?)\n}}', text, flags=re.DOTALL
        )  # each run block ends with a closing brace at column 0
        assert match, f"no run {name!r} in capacity.tftest.hcl"
        body = match.group(1)
        expected = re.search(r"expect_failures = \[(.*?)\]", body)
        assert expected, name
        assert {e.strip() for e in expected.group(1).split(",")} == set(case["expect_failures"])
        for variable in case["inputs"]:
            assert f".rejections.{name}.inputs.{variable}" in body, (name, variable)


# --- one set of defaults ------------------------------------------------------------------------


def _optional_defaults(variables_tf: Path) -> dict[str, Any]:
    """`name = optional(type, default)` pairs of the workloads object type."""
    text = variables_tf.read_text()
    found = re.findall(r"(\w+)\s*=\s*optional\((\w+)(?:,\s*([^)]+))?\)", text)
    return {name: (None if not default else _literal(default)) for name, _, default in found}


def _literal(raw: str) -> Any:
    raw = raw.strip()
    return raw.strip('"') if raw.startswith('"') else float(raw)


def test_planner_defaults_equal_the_module_defaults() -> None:
    module_defaults = _optional_defaults(MODULE / "variables.tf")
    fields = {f.name: f.default for f in dataclasses.fields(cap.Workload)}
    assert set(module_defaults) <= set(fields)
    for name, default in module_defaults.items():
        assert fields[name] == default, name


def test_root_workload_defaults_equal_the_module_defaults() -> None:
    module_defaults = _optional_defaults(MODULE / "variables.tf")
    root_defaults = _optional_defaults(REPO / "terraform" / "variables.tf")
    for name, default in module_defaults.items():
        assert root_defaults.get(name, default) == default, name
    assert set(module_defaults) <= set(root_defaults) | {"max_concurrent", "vcpu", "memory_mib"}


def test_planner_reads_root_variable_defaults() -> None:
    defaults = cap.root_defaults()
    levers = cap.levers_from_tfvars(EXAMPLES / "decision-record.tfvars")
    assert levers.analysis_timeout_minutes == defaults["analysis_timeout_minutes"]
    assert levers.gemini_reserved_fraction == defaults["gemini_reserved_fraction"]


# --- what-ifs, advice, the PNG ---------------------------------------------------------------


def test_what_if_names_gemini_tpm_and_its_lever(capsys: pytest.CaptureFixture[str]) -> None:
    code = cap.main(["--minutes-per-analysis", "9", "--concurrency", "14", "--vcpu-quota", "72"])
    out = capsys.readouterr().out
    assert code == 0
    task = out.split("task-analyzer:")[1].split("proctor-video:")[0]
    assert "binding constraint: Gemini TPM" in task
    assert "raise the Gemini project TPM from 1,000,000" in task
    assert "what-if, differs from the tfvars" in out


def test_what_if_that_breaks_the_quota_fails_like_plan(capsys: pytest.CaptureFixture[str]) -> None:
    code = cap.main(["--concurrency", "17"])
    out = capsys.readouterr().out
    assert code == 1
    assert "terraform plan would fail: output.required_vcpu" in out


def test_gemini_rpm_advice_when_calls_are_many() -> None:
    levers = _levers(CASES["cases"]["gemini_rpm_binds"]["inputs"])
    assert "raise the Gemini project RPM" in cap.next_lever(levers, "task-analyzer")


def test_png_drain_curve_is_a_valid_png(tmp_path: Path) -> None:
    out = tmp_path / "drain.png"
    assert cap.main(["--png", str(out)]) == 0
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (640, 360)


# --- the module's own terraform test suite ---------------------------------------------------


@pytest.mark.terraform
def test_terraform_module_suite_passes(tmp_path: Path) -> None:
    binary = shutil.which("terraform")
    if binary is None:
        pytest.skip("terraform binary not on PATH: the module's .tftest.hcl suite was not run")
    work = tmp_path / "capacity"
    shutil.copytree(MODULE, work, ignore=shutil.ignore_patterns(".terraform*"))
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}
    if not Path(env.get("TF_CLI_CONFIG_FILE", "/nonexistent")).exists():
        env["TF_CLI_CONFIG_FILE"] = ""  # silence the missing-config warning
    for args in (["init", "-backend=false", "-input=false"], ["test", "-no-color"]):
        result = subprocess.run(
            [binary, *args, "-no-color"] if args[0] == "init" else [binary, *args],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"Success! (\d+) passed, 0 failed", result.stdout), result.stdout
