"""DAG integrity: every file imports, declarations are complete, caps come from the levers
(the settings Variable Terraform writes; defaults in local mode only; a missing or malformed
one is an import error naming it), admission settings are on the launch step, and parsing
stays cheap."""

from __future__ import annotations

import json
import os
import statistics
import time
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import SETTINGS_ENV, terraform_settings

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from airflow.dag_processing.dagbag import DagBag  # noqa: E402

from analysis_pipeline import compat, config  # noqa: E402
from analysis_pipeline.alerts.notifier import alert_on_analysis_failure  # noqa: E402
from analysis_pipeline.launch.ecs import AnalysisEcsRunTaskOperator  # noqa: E402
from analysis_pipeline.launch.local import LocalAnalysisOperator  # noqa: E402
from analysis_pipeline.outcome import AnalysisRetryPolicy  # noqa: E402

DAGS = REPO / "dags"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """ecs mode (the default) with exactly the settings Terraform writes, nothing else."""
    for name in (*config.FIELDS, "ANALYSIS_LAUNCHER"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"AIRFLOW_VAR_{name}", raising=False)
    monkeypatch.setenv(SETTINGS_ENV, json.dumps(terraform_settings()))
    return monkeypatch


def parse(path: Path = DAGS) -> DagBag:
    return DagBag(dag_folder=str(path))


def test_every_dag_file_imports_without_errors(clean_env: pytest.MonkeyPatch) -> None:
    files = sorted(p.name for p in DAGS.glob("*_dag.py"))
    assert files == ["analysis_callback_dag.py", "proctor_video_dag.py", "task_analysis_dag.py"]
    for name in files:
        bag = parse(DAGS / name)
        assert bag.import_errors == {}, bag.import_errors
        assert len(bag.dags) == 1
    assert set(parse().dags) == {"task_analysis", "proctor_video", "analysis_callback"}


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
    # Whatever happens to the steps, one callback reports the outcome.
    report = dag.get_task("report_outcome")
    assert report.trigger_rule == "all_done" and report.trigger_dag_id == "analysis_callback"
    assert report.upstream_task_ids == {"validate", "launch", "check_result"}
    # publish stays a leaf: a failed analysis fails its run, although report_outcome succeeds.
    assert dag.get_task("publish").downstream_task_ids == set()
    assert report.skip_when_already_exists is True  # one outcome, one callback run


def test_the_callback_dag_retries_delivery_with_backoff(clean_env: pytest.MonkeyPatch) -> None:
    dag = parse().dags["analysis_callback"]
    deliver = dag.get_task("deliver")
    assert deliver.retries == 12 and deliver.retry_exponential_backoff == 2.0
    assert deliver.retry_delay.total_seconds() == 30
    assert deliver.max_retry_delay.total_seconds() == 3600
    assert dag.default_args["on_failure_callback"] is alert_on_analysis_failure


def test_task_analysis_triggers_proctor_video_for_the_same_id(
    clean_env: pytest.MonkeyPatch,
) -> None:
    dag = parse().dags["task_analysis"]
    trigger = dag.get_task("trigger_proctor_video")
    assert trigger.trigger_dag_id == "proctor_video"
    assert trigger.skip_when_already_exists is True  # a repeat is skipped, never duplicated
    assert trigger.upstream_task_ids == {"proctoring_requested"}
    # Its run id and conf are made when it runs (test_reruns.py: run ids across kinds).


def test_local_mode_defaults_to_the_decision_record(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.delenv(SETTINGS_ENV)
    clean_env.setenv("ANALYSIS_LAUNCHER", "local")
    dags = parse().dags
    assert dags["task_analysis"].max_active_runs == 12
    assert dags["proctor_video"].max_active_runs == 8


def test_caps_come_from_the_settings_terraform_writes(clean_env: pytest.MonkeyPatch) -> None:
    document = terraform_settings(
        MAX_CONCURRENT_ANALYSES=5, MAX_CONCURRENT_PROCTOR_VIDEOS=3, TASK_ANALYZER_VCPU=8
    )
    clean_env.setenv(SETTINGS_ENV, json.dumps(document))
    dags = parse().dags
    assert dags["task_analysis"].max_active_runs == 5
    assert dags["proctor_video"].max_active_runs == 3
    assert dags["task_analysis"].get_task("launch").pool_slots == 8


def import_errors() -> str:
    return "\n".join(parse().import_errors.values())


def test_ecs_mode_without_the_settings_is_an_import_error_naming_them(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.delenv(SETTINGS_ENV)
    clean_env.setattr(config, "_variable_or_none", lambda name: None)  # no backend has it
    bag = parse()
    # The callback DAG reads no lever: it still delivers what earlier runs reported.
    assert set(bag.dags) == {"analysis_callback"}
    assert len(bag.import_errors) == 2
    assert "analysis_pipeline_settings' is missing" in import_errors()
    assert "/airflow/variables/analysis_pipeline_settings" in import_errors()


@pytest.mark.parametrize("lever", sorted(config.FIELDS))
def test_each_missing_lever_is_named_at_parse_time(
    clean_env: pytest.MonkeyPatch, lever: str
) -> None:
    clean_env.setenv(SETTINGS_ENV, json.dumps(terraform_settings(**{lever: None})))
    errors = import_errors()
    assert f"SettingsError: {lever}: missing from the settings Variable" in errors


@pytest.mark.parametrize(
    ("lever", "value", "reason"),
    [
        ("MAX_CONCURRENT_ANALYSES", "lots", "'lots' is not an integer"),
        ("MAX_CONCURRENT_PROCTOR_VIDEOS", "0", "0 must be positive"),
        ("ANALYSIS_ECS_SUBNETS", " , ", "empty"),
        ("RESULTS_URI", "results-bucket", "is not an s3:// or file:// URI"),
        ("ANALYSIS_ECS_ASSIGN_PUBLIC_IP", "yes", "is not true or false"),
    ],
)
def test_a_malformed_lever_is_named_never_defaulted(
    clean_env: pytest.MonkeyPatch, lever: str, value: str, reason: str
) -> None:
    clean_env.setenv(SETTINGS_ENV, json.dumps(terraform_settings(**{lever: value})))
    assert f"{lever}: " in import_errors() and reason in import_errors()
    clean_env.setenv("ANALYSIS_LAUNCHER", "local")  # local mode does not default it either
    if lever not in config.ECS_ONLY:
        assert f"{lever}: " in import_errors()


def test_a_parse_reads_the_settings_variable_once(clean_env: pytest.MonkeyPatch) -> None:
    """Through Airflow's Variable.get (secrets backends + secrets cache), one lookup per
    parse however many tasks read it."""
    calls: list[str] = []

    def fake_variable(name: str) -> str | None:
        calls.append(name)
        return json.dumps(terraform_settings(MAX_CONCURRENT_ANALYSES=7))

    clean_env.delenv(SETTINGS_ENV)
    clean_env.setattr(config, "_variable_or_none", fake_variable)
    clean_env.setattr(config, "_fetched", None)
    assert parse(DAGS / "task_analysis_dag.py").dags["task_analysis"].max_active_runs == 7
    assert calls == ["analysis_pipeline_settings"]


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
        assert launch.pool_size == 64  # what the scheduler sizes the pool to
        if compat.RETRY_POLICY:
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
        assert launch.cluster == "analysis-pipeline"
        assert launch.task_definition == f"analysis-pipeline-{container}"
        assert launch.container_name == container
        assert launch.awslogs_group == f"/ecs/analysis-pipeline/{container}"
        assert launch.network_configuration == {
            "awsvpcConfiguration": {
                "subnets": ["subnet-0a", "subnet-0b"],
                "securityGroups": ["sg-0tasks"],
                "assignPublicIp": "DISABLED",
            }
        }
        assert launch.awslogs_stream_prefix == container
        assert launch.launch_type == "FARGATE"
        assert launch.deferrable is True
        assert launch.reattach is True
        # The trigger must outlive neither more nor much less than execution_timeout.
        waited = launch.waiter_delay * launch.waiter_max_attempts
        assert 7200 <= waited <= 7200 + 600


def test_a_changed_setting_reaches_the_next_parse(clean_env: pytest.MonkeyPatch) -> None:
    """Workers parse the DAG again for every task, so what they launch is what the settings
    say now: no restart."""
    launch = parse().dags["task_analysis"].get_task("launch")
    assert launch.cluster == "analysis-pipeline"
    document = terraform_settings(
        ANALYSIS_ECS_SUBNETS="subnet-a,subnet-b",
        ANALYSIS_ECS_CLUSTER="other-cluster",
        TASK_ANALYZER_TASK_DEFINITION="other-family",
        TASK_ANALYZER_LOG_GROUP="/ecs/other/task-analyzer",
        FARGATE_VCPU_POOL_SLOTS=32,
    )
    clean_env.setenv(SETTINGS_ENV, json.dumps(document))
    launch = parse().dags["task_analysis"].get_task("launch")
    subnets = launch.network_configuration["awsvpcConfiguration"]["subnets"]
    assert subnets == ["subnet-a", "subnet-b"]
    assert launch.cluster == "other-cluster"
    assert launch.task_definition == "other-family"
    assert launch.awslogs_group == "/ecs/other/task-analyzer"
    assert launch.pool_size == 32


def test_local_mode_swaps_only_the_launcher(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ANALYSIS_LAUNCHER", "local")
    launch = parse().dags["task_analysis"].get_task("launch")
    assert isinstance(launch, LocalAnalysisOperator)
    assert launch.pool == "fargate_vcpu" and launch.pool_slots == 4


def test_parse_time_is_cheap(clean_env: pytest.MonkeyPatch, capsys) -> None:
    """Per-parse cost once imports are warm (what the dag-processor pays every interval)."""
    parse()  # warm the imports
    timings = {}
    for path in sorted(DAGS.glob("*_dag.py")):
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
