"""make preflight against moto: the settings as Airflow's SSM secrets backend serves them and
the pool in Airflow's metadata database, compared with `terraform output -json`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from conftest import terraform_settings

REPO = Path(__file__).resolve().parents[1]

from analysis_pipeline import preflight  # noqa: E402
from analysis_pipeline.pool import follow_lever  # noqa: E402

PARAMETER = "/airflow/variables/analysis_pipeline_settings"


@pytest.fixture
def deployment(moto_s3: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, airflow_db):
    """What `terraform apply` left: the SSM parameter, its output, and the pool as the
    scheduler keeps it."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL": moto_s3.endpoint,
    }.items():
        monkeypatch.setenv(name, value)
    settings = terraform_settings()
    ssm = boto3.client("ssm", region_name="eu-west-1")
    ssm.put_parameter(Name=PARAMETER, Type="String", Value=json.dumps(settings), Overwrite=True)
    output = tmp_path / "terraform-output.json"
    output.write_text(
        json.dumps(
            {
                "airflow_settings": {"value": settings, "type": "map", "sensitive": False},
                "airflow_settings_parameter": {"value": PARAMETER, "sensitive": False},
            }
        )
    )
    follow_lever(64)
    return ssm, output, settings


def run(output: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = preflight.main(["--terraform-output", str(output), "--source", "ssm", "--pool", "db"])
    return code, capsys.readouterr().out


def test_a_consistent_deployment_passes(deployment, capsys) -> None:
    _, output, _ = deployment
    code, out = run(output, capsys)
    assert code == 0, out
    assert "Airflow and Terraform agree." in out
    assert "MAX_CONCURRENT_ANALYSES" in out and "pool fargate_vcpu slots" in out


def test_a_changed_lever_or_pool_is_a_difference(deployment, capsys) -> None:
    ssm, output, settings = deployment
    drifted = {**settings, "MAX_CONCURRENT_ANALYSES": "10"}
    ssm.put_parameter(Name=PARAMETER, Type="String", Value=json.dumps(drifted), Overwrite=True)
    code, out = run(output, capsys)
    assert code == 1
    assert "1 difference(s): MAX_CONCURRENT_ANALYSES" in out

    ssm.put_parameter(Name=PARAMETER, Type="String", Value=json.dumps(settings), Overwrite=True)
    follow_lever(32)
    code, out = run(output, capsys)
    assert code == 1 and "difference(s): pool fargate_vcpu slots" in out


def test_missing_settings_are_differences(deployment, capsys) -> None:
    ssm, output, _ = deployment
    ssm.delete_parameter(Name=PARAMETER)
    code, out = run(output, capsys)
    assert code == 1
    assert "(missing)" in out and "ANALYSIS_ECS_SUBNETS" in out


def test_environment_overrides_are_reported_on_an_airflow_host(
    deployment, capsys, monkeypatch
) -> None:
    _, output, settings = deployment
    monkeypatch.setenv("AIRFLOW_VAR_ANALYSIS_PIPELINE_SETTINGS", json.dumps(settings))
    monkeypatch.setenv("AIRFLOW_VAR_MAX_CONCURRENT_ANALYSES", "12")  # same value, still hand-set
    code = preflight.main(
        ["--terraform-output", str(output), "--source", "airflow", "--pool", "skip"]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "overridden in this process' environment" in out
    assert "not checked (--pool skip)" in out
