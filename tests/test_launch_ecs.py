"""ecs mode against moto: the exact RunTask call, deferral, completion classification from
S3, capacity refusals (rescheduled, never a failure) and stopping the container."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from conftest import SETTINGS_ENV, terraform_settings

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

import boto3  # noqa: E402
from airflow.providers.amazon.aws.exceptions import EcsOperatorError  # noqa: E402
from airflow.providers.amazon.aws.utils.identifiers import generate_uuid  # noqa: E402
from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR, TriggerFailureReason  # noqa: E402
from airflow.sdk.exceptions import (  # noqa: E402
    AirflowFailException,
    AirflowRescheduleException,
    TaskDeferralTimeout,
    TaskDeferred,
)
from botocore.exceptions import ClientError  # noqa: E402
from moto import mock_aws  # noqa: E402

from analysis_pipeline.launch.admission import (  # noqa: E402
    MAX_ADMISSION_WAIT,
    FargateCapacityUnavailable,
    FargateNotAdmittedForTooLong,
    admission_backoff,
)
from analysis_pipeline.launch.ecs import AnalysisEcsRunTaskOperator  # noqa: E402
from analysis_pipeline.launch.stopping import (  # noqa: E402
    analysis_started_by,
    stop_running_analysis,
)
from analysis_pipeline.launch.task import analysis_launch_task  # noqa: E402
from analysis_pipeline.outcome import (  # noqa: E402
    ALL_SEGMENTS_FAILED,
    AllSegmentsFailed,
    AnalysisCrashed,
    AnalysisInvalidInput,
)

REGION = "us-east-1"
CLUSTER = "analysis-pipeline"
RUN_ID = "manual__2026-11-27T10:00:00+00:00"
SCREEN = "s3://recordings/uploads/tasks/S-1/screen.mp4"
PARAMS = {"submission_id": "S-1", "screenshare_uri": SCREEN, "task_brief": "Build an API"}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "ALLOWED_INPUT_PREFIXES": "s3://recordings/uploads/",
        "RESULTS_URI": "s3://results/",
        "GEMINI_MAP_MODEL": "gemini-2.5-flash-lite",
        "GEMINI_API_KEY": "super-secret-gemini-key",
        # What terraform apply writes; the two lines above override its fields.
        SETTINGS_ENV: json.dumps(terraform_settings()),
    }.items():
        monkeypatch.setenv(name, value)
    unset = ("AWS_ENDPOINT_URL", "ANALYSIS_LAUNCHER", "GEMINI_BASE_URL", "ANALYSIS_ECS_CLUSTER")
    for name in unset:
        monkeypatch.delenv(name, raising=False)
    # The deferral itself is exercised by the real-trigger test below (needs aiobotocore).
    monkeypatch.setattr("analysis_pipeline.launch.ecs.async_aws_available", lambda: True)
    with mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        sg = ec2.create_security_group(GroupName="tasks", Description="t", VpcId=vpc)["GroupId"]
        monkeypatch.setenv("ANALYSIS_ECS_SUBNETS", subnet)
        monkeypatch.setenv("ANALYSIS_ECS_SECURITY_GROUPS", sg)
        ecs = boto3.client("ecs", region_name=REGION)
        ecs.create_cluster(clusterName=CLUSTER)
        for family, container, cpu in (
            ("analysis-pipeline-task-analyzer", "task-analyzer", "4096"),
            ("analysis-pipeline-proctor-video", "proctor-video", "2048"),
        ):
            ecs.register_task_definition(
                family=family,
                networkMode="awsvpc",
                requiresCompatibilities=["FARGATE"],
                cpu=cpu,
                memory="8192",
                containerDefinitions=[
                    {"name": container, "image": f"{container}:latest", "memory": 8192}
                ],
            )
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="recordings")
        s3.create_bucket(Bucket="results")
        s3.put_object(Bucket="recordings", Key="uploads/tasks/S-1/screen.mp4", Body=b"x" * 10)
        yield {"ecs": ecs, "s3": s3, "subnet": subnet, "sg": sg}


def make_context(params: dict[str, Any] = PARAMS, **extra: Any) -> dict[str, Any]:
    ti = SimpleNamespace(
        dag_id="task_analysis",
        task_id="launch",
        run_id=RUN_ID,
        map_index=-1,
        try_number=1,
        xcom_push=mock.Mock(),
    )
    return {"ti": ti, "params": params, "task_reschedule_count": 0, **extra}


def launch_op() -> AnalysisEcsRunTaskOperator:
    """The launch step as a worker runs it: parsed, then its templates rendered."""
    from airflow.sdk.execution_time.context import VariableAccessor

    op = analysis_launch_task("task_analysis")
    assert isinstance(op, AnalysisEcsRunTaskOperator)
    op.render_template_fields({"var": {"value": VariableAccessor(deserialize_json=False)}})
    return op


def start(op: AnalysisEcsRunTaskOperator, context: dict[str, Any]) -> TaskDeferred:
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    return deferred.value


def test_run_task_gets_exactly_the_contract(aws: dict[str, Any]) -> None:
    op = launch_op()
    with mock.patch.object(op.client, "run_task", wraps=op.client.run_task) as run_task:
        start(op, make_context())
    environment = [
        {"name": "ANALYSIS_CONTEXT", "value": json.dumps({"task_brief": "Build an API"})},
        {"name": "ANALYSIS_ID", "value": "S-1"},
        {"name": "GEMINI_MAP_MODEL", "value": "gemini-2.5-flash-lite"},
        {"name": "INPUT_URI", "value": SCREEN},
        {"name": "OUTPUT_URI", "value": "s3://results/task_analysis/S-1/"},
        # 120-minute timeout: the container stops starting model calls 12 minutes earlier.
        {"name": "RUN_DEADLINE_SECONDS", "value": "6480"},
    ]
    run_task.assert_called_once_with(
        cluster=CLUSTER,
        taskDefinition="analysis-pipeline-task-analyzer",
        overrides={"containerOverrides": [{"name": "task-analyzer", "environment": environment}]},
        # One id per analysis (not per run): a duplicate run reattaches instead of launching.
        startedBy=generate_uuid("task_analysis", "S-1"),
        launchType="FARGATE",
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": [aws["subnet"]],
                "securityGroups": [aws["sg"]],
                "assignPublicIp": "DISABLED",
            }
        },
        tags=[
            {"key": "analysis_id", "value": "S-1"},
            {"key": "analysis_kind", "value": "task_analysis"},
            {"key": "airflow_dag_id", "value": "task_analysis"},
            {"key": "airflow_run_id", "value": RUN_ID},
        ],
        propagateTags="TASK_DEFINITION",
    )
    sent = json.dumps(run_task.call_args.kwargs)
    assert "GEMINI_API_KEY" not in sent and "super-secret-gemini-key" not in sent


def test_without_aiobotocore_nothing_is_launched(aws: dict[str, Any], monkeypatch) -> None:
    monkeypatch.setattr("analysis_pipeline.launch.ecs.async_aws_available", lambda: False)
    op = launch_op()
    with (
        mock.patch.object(op.client, "run_task") as run_task,
        pytest.raises(AirflowFailException, match="aiobotocore"),
    ):
        op.execute(make_context())
    run_task.assert_not_called()


def test_moto_task_carries_overrides_tags_and_fargate(aws: dict[str, Any]) -> None:
    op = launch_op()
    start(op, make_context())
    task = aws["ecs"].describe_tasks(cluster=CLUSTER, tasks=[op.arn], include=["TAGS"])["tasks"][0]
    assert task["launchType"] == "FARGATE"
    env = {e["name"]: e["value"] for e in task["overrides"]["containerOverrides"][0]["environment"]}
    assert env["ANALYSIS_ID"] == "S-1" and env["OUTPUT_URI"] == "s3://results/task_analysis/S-1/"
    assert {t["key"]: t["value"] for t in task["tags"]}["analysis_kind"] == "task_analysis"


def test_deferral_is_bounded_by_execution_timeout(aws: dict[str, Any]) -> None:
    op = launch_op()
    deferred = start(op, make_context())
    assert deferred.timeout == timedelta(minutes=120)
    assert deferred.method_name == "execute_complete"
    assert deferred.kwargs["launched_at"] is not None
    trigger = deferred.trigger
    task_id = op.arn.rsplit("/", 1)[-1]
    assert trigger.log_group == "/ecs/analysis-pipeline/task-analyzer"
    assert trigger.log_stream == f"task-analyzer/task-analyzer/{task_id}"
    assert trigger.cluster == CLUSTER and trigger.task_arn == op.arn


def test_reattach_finds_the_running_task_instead_of_launching_again(aws: dict[str, Any]) -> None:
    first = launch_op()
    start(first, make_context())
    second = launch_op()  # e.g. the worker died and the task instance runs again
    with mock.patch.object(second.client, "run_task") as run_task:
        deferred = start(second, make_context())
    run_task.assert_not_called()
    assert second.arn == first.arn
    assert deferred.kwargs["launched_at"] is None  # its result may predate this attempt


def put_result(aws: dict[str, Any], **fields: Any) -> None:
    result = {
        "schema_version": 1,
        "kind": "task_analysis",
        "analysis_id": "S-1",
        "started_at": datetime.now(UTC).isoformat(),
        **fields,
    }
    aws["s3"].put_object(
        Bucket="results", Key="task_analysis/S-1/result.json", Body=json.dumps(result)
    )


def finish(aws: dict[str, Any]) -> tuple[AnalysisEcsRunTaskOperator, dict[str, Any]]:
    """Launch, let the container stop (moto: exit 0), and return a fresh resumed operator."""
    op = launch_op()
    deferred = start(op, make_context())
    aws["ecs"].stop_task(cluster=CLUSTER, task=op.arn, reason="done")
    resumed = launch_op()
    event = {"status": "success", "task_arn": op.arn, "cluster": CLUSTER}
    return resumed, {"event": event, **deferred.kwargs}


def test_complete_result_is_success(aws: dict[str, Any]) -> None:
    put_result(aws, status="complete", error=None)
    resumed, kwargs = finish(aws)
    summary = resumed.execute_complete(make_context(), **kwargs)
    assert summary["status"] == "complete" and summary["exit_code"] == 0
    assert summary["output_uri"] == "s3://results/task_analysis/S-1/"


def test_sentinel_is_retried_with_log_tail(aws: dict[str, Any]) -> None:
    put_result(aws, status="failed", error=ALL_SEGMENTS_FAILED)
    resumed, kwargs = finish(aws)
    logs = boto3.client("logs", region_name=REGION)
    group = "/ecs/analysis-pipeline/task-analyzer"
    logs.create_log_group(logGroupName=group)
    stream = f"task-analyzer/task-analyzer/{kwargs['event']['task_arn'].rsplit('/', 1)[-1]}"
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    now = int(datetime.now(UTC).timestamp() * 1000)
    logs.put_log_events(
        logGroupName=group,
        logStreamName=stream,
        logEvents=[
            {"timestamp": now, "message": "segment 3 failed: 429 RESOURCE_EXHAUSTED"},
            {"timestamp": now + 1, "message": "task_analysis S-1 finished failed"},
        ],
    )
    with pytest.raises(AllSegmentsFailed) as raised:
        resumed.execute_complete(make_context(), **kwargs)
    assert not isinstance(raised.value, AirflowFailException)
    assert raised.value.last_lines[-1] == "task_analysis S-1 finished failed"


def test_invalid_input_fails_at_once(aws: dict[str, Any]) -> None:
    put_result(aws, status="invalid_input", error="INPUT_URI: not a video")
    resumed, kwargs = finish(aws)
    with pytest.raises(AnalysisInvalidInput) as raised:
        resumed.execute_complete(make_context(), **kwargs)
    assert isinstance(raised.value, AirflowFailException)
    assert "not a video" in str(raised.value)


def test_missing_or_stale_result_is_a_crash(aws: dict[str, Any]) -> None:
    resumed, kwargs = finish(aws)
    with pytest.raises(AnalysisCrashed, match=r"no result\.json"):
        resumed.execute_complete(make_context(), **kwargs)
    put_result(aws, status="complete", started_at="2026-01-01T00:00:00Z")  # an earlier run's
    with pytest.raises(AnalysisCrashed, match=r"no result\.json"):
        resumed.execute_complete(make_context(), **kwargs)


def test_failed_trigger_event_is_a_crash(aws: dict[str, Any]) -> None:
    with pytest.raises(AnalysisCrashed):
        launch_op().execute_complete(make_context(), event={"status": "error", "message": "x"})


CAPACITY_REASONS = [
    "You've reached the limit on the number of vCPUs you can run concurrently",
    "Capacity is unavailable at this time. Please try again later or in a different "
    "availability zone",
    "RESOURCE:MEMORY",
    "RESOURCE:ENI",
]


@pytest.mark.parametrize("reason", CAPACITY_REASONS)
def test_capacity_refusal_reschedules_without_failing(aws: dict[str, Any], reason: str) -> None:
    op = launch_op()
    refused = {"tasks": [], "failures": [{"arn": "arn:aws:ecs:cluster", "reason": reason}]}
    before = datetime.now(UTC)
    with (
        mock.patch.object(op.client, "run_task", return_value=refused),
        mock.patch("analysis_pipeline.alerts.notifier.AnalysisFailureNotifier.notify") as alert,
        pytest.raises(FargateCapacityUnavailable) as raised,
    ):
        op.execute(make_context())
    error = raised.value
    # AirflowRescheduleException -> UP_FOR_RESCHEDULE: no retry spent, no failure callback.
    assert isinstance(error, AirflowRescheduleException)
    assert not isinstance(error, AirflowFailException)
    assert before + timedelta(seconds=15) <= error.reschedule_date
    assert error.reschedule_date <= before + timedelta(minutes=1, seconds=5)
    alert.assert_not_called()


def test_throttling_reschedules(aws: dict[str, Any]) -> None:
    op = launch_op()
    throttled = ClientError(
        {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "RunTask"
    )
    with (
        mock.patch.object(op.client, "run_task", side_effect=throttled),
        pytest.raises(FargateCapacityUnavailable),
    ):
        op.execute(make_context())


def test_other_refusals_are_real_failures(aws: dict[str, Any]) -> None:
    op = launch_op()
    refused = {"tasks": [], "failures": [{"arn": "x", "reason": "MISSING"}]}
    with (
        mock.patch.object(op.client, "run_task", return_value=refused),
        pytest.raises(EcsOperatorError),
    ):
        op.execute(make_context())
    denied = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "RunTask")
    with mock.patch.object(op.client, "run_task", side_effect=denied), pytest.raises(ClientError):
        op.execute(make_context())


def test_capacity_failure_after_acceptance_also_reschedules(aws: dict[str, Any]) -> None:
    resumed, kwargs = finish(aws)
    stopped = {
        "tasks": [
            {
                "stopCode": "TaskFailedToStart",
                "stoppedReason": "Capacity is unavailable at this time.",
                "containers": [{"name": "task-analyzer", "lastStatus": "STOPPED"}],
            }
        ]
    }
    with (
        mock.patch.object(resumed.client, "describe_tasks", return_value=stopped),
        pytest.raises(FargateCapacityUnavailable),
    ):
        resumed.execute_complete(make_context(), **kwargs)
    stopped["tasks"][0]["stoppedReason"] = "CannotPullContainerError: image not found"
    with (
        mock.patch.object(resumed.client, "describe_tasks", return_value=stopped),
        pytest.raises(AnalysisCrashed, match="CannotPullContainerError"),
    ):
        resumed.execute_complete(make_context(), **kwargs)


def test_admission_backoff_grows_and_is_capped() -> None:
    assert timedelta(seconds=15) <= admission_backoff(0) <= timedelta(minutes=1)
    assert timedelta(minutes=4) <= admission_backoff(3) <= timedelta(minutes=8)
    assert admission_backoff(50) <= timedelta(minutes=15)


def test_later_reschedules_wait_longer(aws: dict[str, Any]) -> None:
    op = launch_op()
    refused = {"tasks": [], "failures": [{"arn": "x", "reason": "RESOURCE:CPU"}]}
    before = datetime.now(UTC)
    with (
        mock.patch.object(op.client, "run_task", return_value=refused),
        pytest.raises(FargateCapacityUnavailable) as raised,
    ):
        op.execute(make_context(task_reschedule_count=4))
    assert raised.value.reschedule_date >= before + timedelta(minutes=7)


def test_refusals_give_up_after_a_day_of_waiting_not_after_a_count(
    aws: dict[str, Any],
) -> None:
    op = launch_op()
    refused = {"tasks": [], "failures": [{"arn": "x", "reason": "RESOURCE:CPU"}]}
    now = datetime.now(UTC)

    def context_first_rescheduled(ago: timedelta) -> dict[str, Any]:
        context = make_context(task_reschedule_count=3)
        context["ti"].get_first_reschedule_date = lambda _context: now - ago
        return context

    with mock.patch.object(op.client, "run_task", return_value=refused):
        # Many reschedules but less than a day: still waiting.
        with pytest.raises(FargateCapacityUnavailable):
            op.execute(context_first_rescheduled(MAX_ADMISSION_WAIT - timedelta(minutes=5)))
        with pytest.raises(FargateNotAdmittedForTooLong) as raised:
            op.execute(context_first_rescheduled(MAX_ADMISSION_WAIT + timedelta(minutes=1)))
    assert not isinstance(raised.value, AirflowRescheduleException)


def test_timeout_while_deferred_stops_the_container(aws: dict[str, Any]) -> None:
    op = launch_op()
    start(op, make_context())
    resumed = launch_op()
    context = make_context()
    context["ti"].task = resumed
    # Exactly what the scheduler's check_trigger_timeouts hands back to a worker.
    fail_kwargs = {"error": TriggerFailureReason.TRIGGER_TIMEOUT}
    with pytest.raises(TaskDeferralTimeout):
        resumed.resume_execution(TRIGGER_FAIL_REPR, fail_kwargs, context)
    task = aws["ecs"].describe_tasks(cluster=CLUSTER, tasks=[op.arn])["tasks"][0]
    assert task["desiredStatus"] == "STOPPED" or task["lastStatus"] == "STOPPED"


def test_failure_callback_stop_never_raises(aws: dict[str, Any], monkeypatch) -> None:
    context = make_context()
    assert stop_running_analysis(context, reason="x") == []  # nothing running: no-op
    monkeypatch.setenv("AWS_DEFAULT_REGION", "nowhere-1")
    assert stop_running_analysis({"ti": None}, reason="x") == []


def test_on_kill_stops_the_container(aws: dict[str, Any]) -> None:
    op = launch_op()
    start(op, make_context())
    op.on_kill()
    task = aws["ecs"].describe_tasks(cluster=CLUSTER, tasks=[op.arn])["tasks"][0]
    assert "STOPPED" in (task["desiredStatus"], task["lastStatus"])


def test_deferred_wait_through_the_real_trigger_against_a_moto_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The provider's TaskDoneTrigger (aiobotocore) polls what our operator launched."""
    import asyncio

    pytest.importorskip(
        "aiobotocore",
        reason="needs apache-airflow-providers-amazon[aiobotocore] (aiobotocore 3.10 pins "
        "botocore<1.43.118; pyproject pins boto3 1.44.8): see plugins/analysis_pipeline/README.md",
    )

    from devtools.airflow_env import moto_s3

    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "ALLOWED_INPUT_PREFIXES": "s3://recordings/uploads/",
        "RESULTS_URI": "s3://results/",
        SETTINGS_ENV: json.dumps(terraform_settings()),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with moto_s3(log_path=tmp_path / "moto.log") as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        ec2 = boto3.client("ec2", region_name=REGION)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        monkeypatch.setenv("ANALYSIS_ECS_SUBNETS", subnet)
        ecs = boto3.client("ecs", region_name=REGION)
        ecs.create_cluster(clusterName=CLUSTER)
        ecs.register_task_definition(
            family="analysis-pipeline-task-analyzer",
            networkMode="awsvpc",
            requiresCompatibilities=["FARGATE"],
            cpu="4096",
            memory="8192",
            containerDefinitions=[{"name": "task-analyzer", "image": "x", "memory": 8192}],
        )
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="results")
        op = launch_op()
        deferred = start(op, make_context())
        ecs.stop_task(cluster=CLUSTER, task=op.arn, reason="finished")
        put_result({"s3": s3}, status="complete", error=None)

        async def first_event() -> Any:
            async for event in deferred.trigger.run():
                return event.payload

        payload = asyncio.run(asyncio.wait_for(first_event(), timeout=60))
        assert payload == {"status": "success", "task_arn": op.arn, "cluster": CLUSTER}
        summary = launch_op().execute_complete(make_context(), event=payload, **deferred.kwargs)
        assert summary["status"] == "complete"


def test_log_group_follows_the_terraform_lever() -> None:
    from analysis_pipeline import config

    local = {"ANALYSIS_LAUNCHER": "local"}
    assert config.log_group("task_analysis", env=local) == "/ecs/analysis-pipeline/task-analyzer"
    document = terraform_settings(TASK_ANALYZER_LOG_GROUP="/ecs/other-project/task-analyzer")
    env = {SETTINGS_ENV: json.dumps(document)}
    assert config.log_group("task_analysis", env=env) == "/ecs/other-project/task-analyzer"


# --- never pay twice ----------------------------------------------------------------------
def identity_of_screen(aws: dict[str, Any]) -> str:
    head = aws["s3"].head_object(Bucket="recordings", Key="uploads/tasks/S-1/screen.mp4")
    return f"etag:{head['ETag'].strip(chr(34))};size:{head['ContentLength']}"


def test_a_complete_result_of_this_input_is_reused_without_a_container(
    aws: dict[str, Any],
) -> None:
    put_result(aws, status="complete", error=None, input={"uri": SCREEN, "identity": "other"})
    op = launch_op()
    with mock.patch.object(op.client, "run_task", wraps=op.client.run_task) as run_task:
        start(op, make_context())  # another recording's result: launched
    assert run_task.call_count == 1
    aws["ecs"].stop_task(cluster=CLUSTER, task=op.arn, reason="done")
    put_result(
        aws,
        status="complete",
        error=None,
        input={"uri": SCREEN, "identity": identity_of_screen(aws)},
    )
    again = launch_op()  # e.g. a UI Clear of the finished run
    with mock.patch.object(again.client, "run_task") as run_task:
        summary = again.execute(make_context())
    run_task.assert_not_called()
    assert summary["status"] == "complete" and summary["reused"] is True


def test_a_retry_after_the_container_finished_classifies_it_instead_of_relaunching(
    aws: dict[str, Any],
) -> None:
    """The try failed after the container stopped (e.g. DescribeTasks throttled): the
    retry finds the STOPPED task of this analysis and its result instead of paying again."""
    op = launch_op()
    start(op, make_context())
    aws["ecs"].stop_task(cluster=CLUSTER, task=op.arn, reason="finished")
    put_result(aws, status="partial", error=None)  # usable, but not "complete": not reused
    retry = launch_op()
    with mock.patch.object(retry.client, "run_task") as run_task:
        summary = retry.execute(make_context())
    run_task.assert_not_called()
    assert summary["status"] == "partial" and summary["ecs_task_arn"] == op.arn


def test_a_retry_after_a_failed_container_launches_again(aws: dict[str, Any]) -> None:
    op = launch_op()
    start(op, make_context())
    aws["ecs"].stop_task(cluster=CLUSTER, task=op.arn, reason="finished")
    put_result(aws, status="failed", error=ALL_SEGMENTS_FAILED)
    retry = launch_op()
    with mock.patch.object(retry.client, "run_task", wraps=retry.client.run_task) as run_task:
        start(retry, make_context())
    assert run_task.call_count == 1 and retry.arn != op.arn


def test_a_duplicate_run_of_the_same_analysis_reattaches(aws: dict[str, Any]) -> None:
    first = launch_op()
    start(first, make_context())
    duplicate = launch_op()
    context = make_context()
    context["ti"].run_id = "manual__generated-by-a-second-trigger"
    with mock.patch.object(duplicate.client, "run_task") as run_task:
        start(duplicate, context)
    run_task.assert_not_called()
    assert duplicate.arn == first.arn
    listed = aws["ecs"].list_tasks(
        cluster=CLUSTER, startedBy=analysis_started_by("task_analysis", "S-1")
    )["taskArns"]
    assert listed == [first.arn]


def test_a_purged_ecs_record_is_classified_from_result_json(aws: dict[str, Any]) -> None:
    put_result(aws, status="complete", error=None)
    resumed, kwargs = finish(aws)
    purged = {"tasks": [], "failures": [{"arn": kwargs["event"]["task_arn"], "reason": "MISSING"}]}
    with mock.patch.object(resumed.client, "describe_tasks", return_value=purged):
        summary = resumed.execute_complete(make_context(), **kwargs)
    assert summary["status"] == "complete" and summary["exit_code"] is None


def test_a_trigger_error_fails_the_try_but_keeps_the_container(aws: dict[str, Any]) -> None:
    from airflow.sdk.exceptions import TaskDeferralError

    op = launch_op()
    start(op, make_context())
    resumed = launch_op()
    context = make_context()
    context["ti"].task = resumed
    fail_kwargs = {"error": TriggerFailureReason.TRIGGER_FAILURE}  # e.g. DescribeTasks throttled
    with pytest.raises(TaskDeferralError):
        resumed.resume_execution(TRIGGER_FAIL_REPR, fail_kwargs, context)
    task = aws["ecs"].describe_tasks(cluster=CLUSTER, tasks=[op.arn])["tasks"][0]
    assert task["desiredStatus"] == "RUNNING"
    retry = launch_op()  # ... and the retry resumes waiting on the same container
    with mock.patch.object(retry.client, "run_task") as run_task:
        start(retry, make_context())
    run_task.assert_not_called()
    assert retry.arn == op.arn


def test_the_container_gets_a_run_deadline_shorter_than_the_timeout() -> None:
    from analysis_pipeline.launch.completion import run_deadline_seconds

    assert run_deadline_seconds(timedelta(minutes=120)) == 120 * 60 - 12 * 60
    assert run_deadline_seconds(timedelta(minutes=30)) == 25 * 60  # at least 5 min margin
    assert run_deadline_seconds(timedelta(hours=6)) == 6 * 3600 - 15 * 60  # at most 15
    assert 0 < run_deadline_seconds(timedelta(minutes=2)) < 120


def test_the_runs_submission_time_is_its_place_in_the_gemini_line(aws: dict[str, Any]) -> None:
    """run_after: the same on every retry and Clear of the run (the budget's queue order)."""
    submitted = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    op = launch_op()
    with mock.patch.object(op.client, "run_task", wraps=op.client.run_task) as run_task:
        start(op, make_context(dag_run=SimpleNamespace(run_after=submitted)))
    overrides = run_task.call_args.kwargs["overrides"]["containerOverrides"][0]["environment"]
    assert {"name": "ANALYSIS_SUBMITTED_AT", "value": "2026-12-01T09:00:00+00:00"} in overrides
