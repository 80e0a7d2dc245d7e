"""Capacity refusals through Airflow's real task runner (in-process `dag.test`): the launch
goes UP_FOR_RESCHEDULE (no retry spent, no alert) and, only when refusals never end, fails
once with one Discord alert."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from unittest import mock

import pytest
from conftest import SETTINGS_ENV, FakeDiscord, start_fake_discord, terraform_settings

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402

from analysis_pipeline.launch import admission, ecs  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
SCREEN = "s3://recordings/uploads/S-CAP/screen.mp4"


def forget_shared_state() -> None:
    """Alert grouping and the breaker live in Variables of the metadata DB: start clean."""
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(Variable).filter(Variable.key.like("analysis\\_%", escape="\\")).delete(
            synchronize_session=False
        )


@pytest.fixture
def discord(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeDiscord]:
    fake = start_fake_discord()
    monkeypatch.setenv(
        "AIRFLOW_CONN_DISCORD_ALERTS", json.dumps({"conn_type": "http", "host": fake.url})
    )
    forget_shared_state()
    yield fake
    fake.close()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # ecs mode: every setting comes from the document Terraform writes (here through the
    # environment secrets backend, as AIRFLOW_VAR_ANALYSIS_PIPELINE_SETTINGS).
    settings = terraform_settings(
        ALLOWED_INPUT_PREFIXES="s3://recordings/uploads/",
        RESULTS_URI="s3://results/",
        ANALYSIS_ECS_SUBNETS="subnet-1",
    )
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        SETTINGS_ENV: json.dumps(settings),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("ANALYSIS_LAUNCHER", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    # settings.DAGS_FOLDER is computed when airflow is first imported: point it at the repo.
    monkeypatch.setattr("airflow.settings.DAGS_FOLDER", str(REPO / "dags"))
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="recordings")
        s3.create_bucket(Bucket="results")
        s3.put_object(Bucket="recordings", Key="uploads/S-CAP/screen.mp4", Body=b"video")
        yield


def test_refusals_reschedule_silently_then_fail_once_with_one_alert(
    airflow_db: None, aws: None, discord: FakeDiscord
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(REPO / "dags" / "task_analysis_dag.py")).dags["task_analysis"]
    refused = {"tasks": [], "failures": [{"arn": "x", "reason": "RESOURCE:CPU"}]}
    with (
        mock.patch.object(admission, "admission_backoff", lambda count: timedelta(seconds=1)),
        mock.patch.object(admission, "MAX_ADMISSION_WAIT", timedelta(seconds=2)),
        mock.patch.object(ecs, "async_aws_available", lambda: True),
        mock.patch.object(
            ecs.AnalysisEcsRunTaskOperator, "client", new_callable=mock.PropertyMock
        ) as client,
    ):
        client.return_value.run_task.return_value = refused
        client.return_value.list_tasks.return_value = {"taskArns": []}
        run = dag.test(run_conf={"submission_id": "S-CAP", "screenshare_uri": SCREEN})
    states = {ti.task_id: (ti.state, ti.try_number) for ti in run.get_task_instances()}
    # Refusals were reschedules inside the first try until the wait (measured from the
    # first reschedule, not counted) ran out; then the try ended for good.
    assert client.return_value.run_task.call_count >= 2
    assert states["launch"] == ("failed", 1)
    assert states["check_result"][0] == "upstream_failed"
    posts = discord.posted()
    assert len(posts) == 1
    embed = posts[0]["embeds"][0]
    assert "not admitted for" in embed["description"]
    assert "RESOURCE:CPU" in embed["description"]
    assert {f["name"]: f["value"] for f in embed["fields"]}["Failed step"] == "launch"
