"""The plugin's listeners through Airflow's real plugin loading and listener manager:
marking a launch FAILED in the UI/REST API (the API server's own hook call) stops its ECS
container (moto); a retry does not; the vCPU pool check is loud when the pool is wrong."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]

import boto3  # noqa: E402
from airflow.utils.state import TaskInstanceState  # noqa: E402
from moto import mock_aws  # noqa: E402

from analysis_pipeline.launch.stopping import analysis_started_by  # noqa: E402
from analysis_pipeline.pool import pool_problem  # noqa: E402

CLUSTER = "analysis-pipeline"


@pytest.fixture
def listeners(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """Airflow's listener manager with the installed distribution's plugin (entry point)
    loaded, and an empty plugins folder, as a deployment of the wheel has."""
    from airflow import plugins_manager
    from airflow.listeners import listener

    monkeypatch.setattr("airflow.settings.PLUGINS_FOLDER", str(tmp_path))
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    plugins_manager._get_plugins.cache_clear()
    listener.get_listener_manager.cache_clear()
    yield listener.get_listener_manager()
    plugins_manager._get_plugins.cache_clear()
    listener.get_listener_manager.cache_clear()


@pytest.fixture
def ecs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "ANALYSIS_LAUNCHER", "ANALYSIS_ECS_CLUSTER"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="us-east-1")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        client = boto3.client("ecs", region_name="us-east-1")
        client.create_cluster(clusterName=CLUSTER)
        client.register_task_definition(
            family="analysis-pipeline-task-analyzer",
            networkMode="awsvpc",
            requiresCompatibilities=["FARGATE"],
            cpu="1024",
            memory="2048",
            containerDefinitions=[{"name": "task-analyzer", "image": "x", "memory": 2048}],
        )
        client.subnet = subnet
        yield client


def running_analysis(ecs: Any, analysis_id: str) -> str:
    return ecs.run_task(
        cluster=CLUSTER,
        taskDefinition="analysis-pipeline-task-analyzer",
        startedBy=analysis_started_by("task_analysis", analysis_id),
        launchType="FARGATE",
        networkConfiguration={
            "awsvpcConfiguration": {"subnets": [ecs.subnet], "securityGroups": []}
        },
    )["tasks"][0]["taskArn"]


def marked(state: TaskInstanceState, analysis_id: str) -> SimpleNamespace:
    """What the API server hands the hook: the ORM row, with its run's conf."""
    return SimpleNamespace(
        dag_id="task_analysis",
        task_id="launch",
        state=state,
        dag_run=SimpleNamespace(conf={"submission_id": analysis_id}),
    )


def desired(ecs: Any, arn: str) -> str:
    return ecs.describe_tasks(cluster=CLUSTER, tasks=[arn])["tasks"][0]["desiredStatus"]


def test_the_plugin_comes_from_the_installed_distribution(listeners: Any) -> None:
    """Entry point ``airflow.plugins`` of the wheel: no file in the plugins folder needed."""
    from airflow import plugins_manager

    plugins, errors = plugins_manager._get_plugins()
    assert not errors
    ours = [p for p in plugins if p.name == "analysis_pipeline"]
    assert len(ours) == 1
    assert str(ours[0].source).startswith("analysis-pipeline-airflow==")
    assert "analysis_pipeline.analysis_pipeline_plugin:AnalysisPipelinePlugin" in str(
        ours[0].source
    )
    # The package's modules are never imported as top-level plugin modules ('config' etc.).
    assert "config" not in sys.modules and "storage" not in sys.modules


def test_marking_the_launch_failed_in_the_ui_stops_its_container(listeners: Any, ecs: Any) -> None:
    from airflow.api_fastapi.core_api.services.public.task_instances import (
        _emit_state_listener_hooks,
    )

    arn = running_analysis(ecs, "S-UI")
    other = running_analysis(ecs, "S-OTHER")
    _emit_state_listener_hooks([marked(TaskInstanceState.FAILED, "S-UI")], "failed")
    assert desired(ecs, arn) == "STOPPED"
    assert desired(ecs, other) == "RUNNING"


def test_a_retry_keeps_the_container(listeners: Any, ecs: Any) -> None:
    arn = running_analysis(ecs, "S-RETRY")
    listeners.hook.on_task_instance_failed(
        previous_state=TaskInstanceState.RUNNING,
        task_instance=marked(TaskInstanceState.UP_FOR_RETRY, "S-RETRY"),
        error="DescribeTasks throttled",
    )
    assert desired(ecs, arn) == "RUNNING"


def test_pool_problems_are_named() -> None:
    good = SimpleNamespace(slots=64, include_deferred=True)
    assert pool_problem(good, slots=64) is None
    assert "does not exist" in str(pool_problem(None, slots=64))
    wrong = pool_problem(SimpleNamespace(slots=8, include_deferred=False), slots=64)
    assert "8 slots, the lever says 64" in str(wrong) and "include_deferred" in str(wrong)


def test_the_pool_check_leaves_the_schedulers_session_alone(monkeypatch, airflow_db) -> None:
    """The scheduler calls on_dag_run_running mid-loop with its scoped session holding
    rows; the check must not close that session (DetachedInstanceError afterwards)."""
    import threading

    from airflow import settings
    from airflow.models.pool import Pool
    from sqlalchemy import select

    from analysis_pipeline.pool import PoolCheckListener

    dag = _serialized_dag(monkeypatch, 64)
    session = settings.Session()
    try:
        held = session.scalar(select(Pool).where(Pool.pool == "default_pool"))
        assert held is not None
        monkeypatch.setattr("analysis_pipeline.pool._alert", lambda run, problem: None)
        run = SimpleNamespace(dag_id="task_analysis", run_id="session-1", dag=dag)
        before = set(threading.enumerate())
        PoolCheckListener().on_dag_run_running(dag_run=run, msg="")
        for thread in set(threading.enumerate()) - before:
            thread.join(timeout=30)  # the pool kept in its own session meanwhile
        assert held in session  # still attached: the scheduler can go on using it
    finally:
        settings.Session.remove()


def _serialized_dag(monkeypatch: pytest.MonkeyPatch, pool_vcpus: int) -> Any:
    """task_analysis as the scheduler holds it: parsed with the lever, serialized, loaded."""
    import json

    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization
    from conftest import SETTINGS_ENV, terraform_settings

    document = terraform_settings(FARGATE_VCPU_POOL_SLOTS=pool_vcpus)
    monkeypatch.setenv(SETTINGS_ENV, json.dumps(document))
    dag = DagBag(dag_folder=str(REPO / "dags" / "task_analysis_dag.py")).dags["task_analysis"]
    return DagSerialization.from_dict(json.loads(json.dumps(DagSerialization.to_dict(dag))))


def _pool_slots() -> tuple[int, bool] | None:
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session(scoped=False) as session:
        pool = session.scalar(select(Pool).where(Pool.pool == "fargate_vcpu"))
        return None if pool is None else (pool.slots, bool(pool.include_deferred))


def test_the_pool_follows_the_lever_the_dag_was_parsed_with(monkeypatch, airflow_db) -> None:
    """No `make pool`: a run start creates the pool, and a later parse's lever resizes it."""
    import threading
    import time

    from analysis_pipeline.pool import PoolCheckListener, follow_lever

    monkeypatch.delenv("ANALYSIS_LAUNCHER", raising=False)
    alerts: list[str] = []
    # Only this test's runs: a thread an earlier test started may still report its own.
    monkeypatch.setattr(
        "analysis_pipeline.pool._alert",
        lambda run, problem: alerts.append(problem) if run["run_id"].startswith("r-") else None,
    )
    follow_lever(1)  # whatever was there before
    for slots in (48, 96):
        dag = _serialized_dag(monkeypatch, slots)
        assert dag.get_task("launch").pool_size == slots
        run = SimpleNamespace(dag_id="task_analysis", run_id=f"r-{slots}", dag=dag)
        before = set(threading.enumerate())
        PoolCheckListener().on_dag_run_running(dag_run=run, msg="started")
        for thread in set(threading.enumerate()) - before:
            thread.join(timeout=30)
        deadline = time.monotonic() + 10
        while _pool_slots() != (slots, True) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _pool_slots() == (slots, True)
    assert alerts == []
