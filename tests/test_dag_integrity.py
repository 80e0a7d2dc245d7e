"""DAG integrity: every file imports, declarations are complete, caps come from the levers,
admission settings are on the launch step, and parsing stays cheap."""

from __future__ import annotations

import os
import statistics
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("AIRFLOW_HOME", str(REPO / ".airflow" / "pytest"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from airflow.dag_processing.dagbag import DagBag  # noqa: E402

from analysis_pipeline import config  # noqa: E402
from analysis_pipeline.alerts.notifier import alert_on_analysis_failure  # noqa: E402
from analysis_pipeline.launch.ecs import AnalysisEcsRunTaskOperator  # noqa: E402
from analysis_pipeline.launch.local import LocalAnalysisOperator  # noqa: E402
from analysis_pipeline.outcome import AnalysisRetryPolicy  # noqa: E402

DAGS = REPO / "dags"
LEVER_ENV = (
    "ANALYSIS_LAUNCHER",
    "MAX_CONCURRENT_ANALYSES",
    "MAX_CONCURRENT_PROCTOR_VIDEOS",
    "TASK_ANALYZER_VCPU",
    "PROCTOR_VIDEO_VCPU",
    "ANALYSIS_LEVERS_FROM_VARIABLES",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in LEVER_ENV:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"AIRFLOW_VAR_{name}", raising=False)
    return monkeypatch


def parse(path: Path = DAGS) -> DagBag:
    return DagBag(dag_folder=str(path))


def test_every_dag_file_imports_without_errors(clean_env: pytest.MonkeyPatch) -> None:
    files = sorted(p.name for p in DAGS.glob("*.py"))
    assert files == ["proctor_video_dag.py", "task_analysis_dag.py"]
    for name in files:
        bag = parse(DAGS / name)
        assert bag.import_errors == {}, bag.import_errors
        assert len(bag.dags) == 1
    assert set(parse().dags) == {"task_analysis", "proctor_video"}


@pytest.mark.parametrize("dag_id", ["task_analysis", "proctor_video"])
def test_dag_declarations(clean_env: pytest.MonkeyPatch, dag_id: str) -> None:
    dag = parse().dags[dag_id]
    assert type(dag.timetable).__name__ == "NullTimetable"  # schedule=None: triggered only
    assert dag.catchup is False
    assert {"analysis", "fargate", dag_id} <= set(dag.tags)
    assert dag.doc_md and dag.doc_md.strip().startswith(f"### {dag_id}")
    assert dag.default_args["retries"] >= 1
    assert dag.default_args["on_failure_callback"] is alert_on_analysis_failure
    for task in dag.tasks:
        assert task.retries >= 1, task.task_id
    ids = {t.task_id for t in dag.tasks}
    assert {"validate", "launch", "check_result", "publish"} <= ids
    assert dag.get_task("launch").upstream_task_ids == {"validate"}
    assert dag.get_task("check_result").upstream_task_ids == {"launch"}
    assert dag.get_task("publish").upstream_task_ids == {"check_result"}


def test_task_analysis_triggers_proctor_video_for_the_same_id(
    clean_env: pytest.MonkeyPatch,
) -> None:
    dag = parse().dags["task_analysis"]
    trigger = dag.get_task("trigger_proctor_video")
    assert trigger.trigger_dag_id == "proctor_video"
    assert trigger.trigger_run_id == "{{ params.submission_id }}"
    assert trigger.skip_when_already_exists is True  # a repeat is skipped, never duplicated
    assert trigger.conf == {
        "attempt_id": "{{ params.submission_id }}",
        "webcam_uri": "{{ params.webcam_uri }}",
    }
    assert trigger.upstream_task_ids == {"proctoring_requested"}


def test_caps_default_to_the_decision_record(clean_env: pytest.MonkeyPatch) -> None:
    dags = parse().dags
    assert dags["task_analysis"].max_active_runs == 12
    assert dags["proctor_video"].max_active_runs == 8


def test_caps_come_from_the_levers(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AIRFLOW_VAR_MAX_CONCURRENT_ANALYSES", "5")
    clean_env.setenv("AIRFLOW_VAR_MAX_CONCURRENT_PROCTOR_VIDEOS", "3")
    clean_env.setenv("AIRFLOW_VAR_TASK_ANALYZER_VCPU", "8")
    dags = parse().dags
    assert dags["task_analysis"].max_active_runs == 5
    assert dags["proctor_video"].max_active_runs == 3
    assert dags["task_analysis"].get_task("launch").pool_slots == 8


def test_bad_lever_values_fall_back_to_defaults(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AIRFLOW_VAR_MAX_CONCURRENT_ANALYSES", "lots")
    clean_env.setenv("AIRFLOW_VAR_MAX_CONCURRENT_PROCTOR_VIDEOS", "0")
    dags = parse().dags
    assert dags["task_analysis"].max_active_runs == 12
    assert dags["proctor_video"].max_active_runs == 8


def test_parsing_makes_no_variable_lookup_unless_enabled(clean_env: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def fake_variable(name: str) -> str | None:
        calls.append(name)
        return "7" if name == "MAX_CONCURRENT_ANALYSES" else None

    clean_env.setattr(config, "_variable_or_none", fake_variable)
    parse()
    assert calls == []  # the default path never reaches a secrets backend
    clean_env.setenv("ANALYSIS_LEVERS_FROM_VARIABLES", "true")
    assert parse().dags["task_analysis"].max_active_runs == 7
    assert "MAX_CONCURRENT_ANALYSES" in calls


def test_launch_step_admission_and_retry_settings(clean_env: pytest.MonkeyPatch) -> None:
    dags = parse().dags
    task_launch = dags["task_analysis"].get_task("launch")
    proctor_launch = dags["proctor_video"].get_task("launch")
    for launch, vcpu in ((task_launch, 4), (proctor_launch, 2)):
        assert isinstance(launch, AnalysisEcsRunTaskOperator)  # ecs is the default mode
        assert launch.pool == config.POOL_NAME == "fargate_vcpu"
        assert launch.pool_slots == vcpu
        assert launch.weight_rule == "absolute"
        assert launch.execution_timeout == timedelta(minutes=120)
        assert isinstance(launch.retry_policy, AnalysisRetryPolicy)
        assert launch.retries >= 2
    assert task_launch.priority_weight > proctor_launch.priority_weight


def test_ecs_launch_matches_the_terraform_names(clean_env: pytest.MonkeyPatch) -> None:
    dags = parse().dags
    expected = {
        "task_analysis": "task-analyzer",
        "proctor_video": "proctor-video",
    }
    for dag_id, container in expected.items():
        launch = dags[dag_id].get_task("launch")
        assert rendered(launch, "cluster") == "analysis-pipeline"
        assert rendered(launch, "task_definition") == f"analysis-pipeline-{container}"
        assert launch.container_name == container
        assert rendered(launch, "awslogs_group") == f"/ecs/analysis-pipeline/{container}"
        assert launch.awslogs_stream_prefix == container
        assert launch.launch_type == "FARGATE"
        assert launch.deferrable is True
        assert launch.reattach is True
        # The trigger must outlive neither more nor much less than execution_timeout.
        waited = launch.waiter_delay * launch.waiter_max_attempts
        assert 7200 <= waited <= 7200 + 600


def rendered(task: Any, field: str) -> Any:
    """A templated field as the worker renders it (``{{ var.value.* }}`` included)."""
    from airflow.sdk.execution_time.context import VariableAccessor

    value = getattr(task, field)
    return task.render_template(value, {"var": {"value": VariableAccessor(deserialize_json=False)}})


def test_run_time_levers_are_read_when_the_task_runs(clean_env: pytest.MonkeyPatch) -> None:
    """Cluster, task definition, network and log group come from the Variable (SSM) when
    the task runs, not from the environment the dag-processor parsed with."""
    clean_env.setenv("ANALYSIS_ECS_SUBNETS", "subnet-parse")
    launch = parse().dags["task_analysis"].get_task("launch")
    assert rendered(launch, "subnets") == "subnet-parse"
    clean_env.setenv("AIRFLOW_VAR_ANALYSIS_ECS_SUBNETS", "subnet-a,subnet-b")
    clean_env.setenv("AIRFLOW_VAR_ANALYSIS_ECS_CLUSTER", "other-cluster")
    clean_env.setenv("AIRFLOW_VAR_TASK_ANALYZER_TASK_DEFINITION", "other-family")
    clean_env.setenv("AIRFLOW_VAR_TASK_ANALYZER_LOG_GROUP", "/ecs/other/task-analyzer")
    assert rendered(launch, "subnets") == "subnet-a,subnet-b"
    assert rendered(launch, "cluster") == "other-cluster"
    assert rendered(launch, "task_definition") == "other-family"
    assert rendered(launch, "awslogs_group") == "/ecs/other/task-analyzer"


def test_local_mode_swaps_only_the_launcher(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ANALYSIS_LAUNCHER", "local")
    launch = parse().dags["task_analysis"].get_task("launch")
    assert isinstance(launch, LocalAnalysisOperator)
    assert launch.pool == "fargate_vcpu" and launch.pool_slots == 4


def test_parse_time_is_cheap(clean_env: pytest.MonkeyPatch, capsys) -> None:
    """Per-parse cost once imports are warm (what the dag-processor pays every interval)."""
    parse()  # warm the imports
    timings = {}
    for path in sorted(DAGS.glob("*.py")):
        samples = []
        for _ in range(5):
            start = time.perf_counter()
            bag = parse(path)
            samples.append(time.perf_counter() - start)
            assert not bag.import_errors
        timings[path.name] = statistics.median(samples)
    with capsys.disabled():
        print(" ".join(f"{name}: {seconds * 1000:.0f} ms" for name, seconds in timings.items()))
    # Generous bound for a loaded 2-core CI box; measured ~30-60 ms per file.
    assert max(timings.values()) < 1.0
