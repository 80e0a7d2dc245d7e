"""local mode and the result checks: the child process environment, log streaming, kill,
classification of result.json from moto S3 and file://, the retry policy, validate/publish."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from conftest import SETTINGS_ENV, terraform_settings

REPO = Path(__file__).resolve().parents[1]

import boto3  # noqa: E402
from airflow.sdk.definitions.retry_policy import RetryAction  # noqa: E402
from airflow.sdk.exceptions import AirflowFailException  # noqa: E402
from moto import mock_aws  # noqa: E402

from analysis_pipeline import config, steps  # noqa: E402
from analysis_pipeline.contract import container_env, local_process_env  # noqa: E402
from analysis_pipeline.launch.local import LocalAnalysisOperator  # noqa: E402
from analysis_pipeline.outcome import (  # noqa: E402
    ALL_SEGMENTS_FAILED,
    PERMANENT_REFUSAL,
    AllSegmentsFailed,
    AnalysisCrashed,
    AnalysisInvalidInput,
    AnalysisRefused,
    AnalysisRetryPolicy,
    classify,
    drop_stale,
)
from analysis_pipeline.params import validate_request  # noqa: E402


def test_sentinel_text_matches_the_container_engine() -> None:
    from analysis_engine.result import ALL_SEGMENTS_FAILED as ENGINE_SENTINEL

    assert ALL_SEGMENTS_FAILED == ENGINE_SENTINEL


def test_the_refusal_wording_matches_the_container_engine() -> None:
    from analysis_engine.mapreduce import SegmentOutcome
    from analysis_engine.models import Segment
    from analysis_engine.result import permanent_failure_reason

    refused = SegmentOutcome(segment=Segment(0, 0.0, 10.0), error="403", attempts=1)
    assert PERMANENT_REFUSAL in permanent_failure_reason([refused])


# --- classification ----------------------------------------------------------------------
@pytest.mark.parametrize("status", ["complete", "partial"])
def test_usable_results_succeed(status: str) -> None:
    assert classify(exit_code=0, result={"status": status})["status"] == status
    # The written result wins over a crash after it was written.
    assert classify(exit_code=1, result={"status": status})["status"] == status


@pytest.mark.parametrize(
    ("exit_code", "result", "expected"),
    [
        (3, {"status": "failed", "error": ALL_SEGMENTS_FAILED}, AllSegmentsFailed),
        (3, None, AllSegmentsFailed),
        (None, {"status": "failed", "error": ALL_SEGMENTS_FAILED}, AllSegmentsFailed),
        (2, {"status": "invalid_input", "error": "INPUT_URI: empty"}, AnalysisInvalidInput),
        (2, None, AnalysisInvalidInput),
        (0, {"status": "invalid_input", "error": "x"}, AnalysisInvalidInput),
        (1, {"status": "failed", "error": "unexpected error: KeyError"}, AnalysisCrashed),
        (
            1,
            {"status": "failed", "error": f"Every segment failed: {PERMANENT_REFUSAL}"},
            AnalysisRefused,
        ),
        (1, None, AnalysisCrashed),
        (-9, None, AnalysisCrashed),
        (0, None, AnalysisCrashed),
        (None, {"status": "weird"}, AnalysisCrashed),
    ],
)
def test_failures_are_classified(exit_code, result, expected) -> None:
    with pytest.raises(expected) as raised:
        classify(exit_code=exit_code, result=result, last_lines=["last line"])
    assert raised.value.exit_code == exit_code
    assert raised.value.last_lines == ("last line",)


def test_invalid_input_and_refusals_are_never_retried_and_the_rest_is() -> None:
    assert issubclass(AnalysisInvalidInput, AirflowFailException)
    assert issubclass(AnalysisRefused, AirflowFailException)
    assert not issubclass(AllSegmentsFailed, AirflowFailException)
    assert not issubclass(AnalysisCrashed, AirflowFailException)


def test_stale_results_are_ignored() -> None:
    launched = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    old = {"status": "complete", "started_at": "2026-11-26T10:00:00Z"}
    fresh = {"status": "complete", "started_at": "2026-11-27T10:00:03Z"}
    assert drop_stale(old, launched) is None
    assert drop_stale(fresh, launched) == fresh
    assert drop_stale(old, None) == old  # reattached: cannot tell, keep it


def test_retry_policy_backs_off_per_failure_kind() -> None:
    policy = AnalysisRetryPolicy()
    first = policy.evaluate(AllSegmentsFailed(), try_number=1, max_tries=4)
    second = policy.evaluate(AllSegmentsFailed(), try_number=2, max_tries=4)
    crash = policy.evaluate(AnalysisCrashed("x"), try_number=1, max_tries=4)
    other = policy.evaluate(RuntimeError("s3 outage"), try_number=1, max_tries=4)
    assert first.action == RetryAction.RETRY and first.retry_delay == timedelta(minutes=15)
    assert second.retry_delay == timedelta(minutes=30)
    assert crash.action == RetryAction.RETRY and crash.retry_delay == timedelta(minutes=2)
    assert other.action == RetryAction.DEFAULT
    capped = policy.evaluate(AllSegmentsFailed(), try_number=10, max_tries=12)
    assert capped.retry_delay == timedelta(hours=2)


# --- environment contract ----------------------------------------------------------------
def request(prefix: str = "s3://rec/in/"):
    return validate_request(
        "proctor_video",
        {"attempt_id": "A-1", "webcam_uri": f"{prefix}A-1/"},
        prefixes=(prefix,),
    )


def test_container_env_is_the_contract_without_the_key() -> None:
    environ = {
        "RESULTS_URI": "s3://out",
        "GEMINI_API_KEY": "k-secret",
        "GEMINI_BASE_URL": "http://fake",
        "SEGMENT_SECONDS": "30",
        "AWS_ENDPOINT_URL": "http://moto",
        "UNRELATED": "x",
        # Budgets are per container kind: the generic names are never passed on.
        "GEMINI_RPM_BUDGET": "999",
        "PROCTOR_VIDEO_GEMINI_RPM_BUDGET": "20",
        "AIRFLOW_VAR_PROCTOR_VIDEO_GEMINI_TPM_BUDGET": "30000",
        "TASK_ANALYZER_GEMINI_RPM_BUDGET": "60",
    }
    env = container_env(request(), environ=environ)
    assert env == {
        "ANALYSIS_ID": "A-1",
        "INPUT_URI": "s3://rec/in/A-1/",
        "OUTPUT_URI": "s3://out/proctor_video/A-1/",
        "ANALYSIS_CONTEXT": "{}",
        "GEMINI_BASE_URL": "http://fake",
        "SEGMENT_SECONDS": "30",
        # No budget: in ecs mode the task definition is their only source.
    }
    local = local_process_env(request(), environ=environ)
    assert local["GEMINI_API_KEY"] == "k-secret"  # local mode passes it by value
    assert local["GEMINI_RPM_BUDGET"] == "20"  # the kind's lever wins over the generic one
    del environ["PROCTOR_VIDEO_GEMINI_RPM_BUDGET"]
    assert local_process_env(request(), environ=environ)["GEMINI_RPM_BUDGET"] == "999"
    assert local["AWS_ENDPOINT_URL"] == "http://moto"
    assert "UNRELATED" not in local


# --- the local operator --------------------------------------------------------------------
def test_child_output_streams_into_the_task_log_and_tail_is_kept() -> None:
    op = LocalAnalysisOperator(task_id="launch", kind="proctor_video", execution_timeout=None)
    script = "import sys\nfor i in range(30): print(f'line {i}', flush=True)\nsys.exit(3)"
    with mock.patch.object(type(op), "log", new_callable=mock.PropertyMock) as log_prop:
        logger = mock.Mock()
        log_prop.return_value = logger
        code, tail = op._run([sys.executable, "-c", script], dict(os.environ))
    assert code == 3
    assert tail[0] == "line 10" and tail[-1] == "line 29" and len(tail) == 20
    streamed = [c.args[2] for c in logger.info.call_args_list if len(c.args) == 3]
    assert streamed[:2] == ["line 0", "line 1"]


def test_on_kill_stops_the_child_and_its_group() -> None:
    op = LocalAnalysisOperator(task_id="launch", kind="proctor_video", execution_timeout=None)
    script = "import subprocess, time, sys\nprint('up', flush=True)\ntime.sleep(60)"
    result: dict[str, Any] = {}

    def run() -> None:
        result["code"], _ = op._run([sys.executable, "-c", script], dict(os.environ))

    thread = threading.Thread(target=run)
    started = time.monotonic()
    thread.start()
    while op._process is None:
        time.sleep(0.05)
    time.sleep(0.5)
    op.on_kill()
    thread.join(timeout=20)
    assert not thread.is_alive()
    assert result["code"] != 0
    assert time.monotonic() - started < 15


@pytest.fixture
def moto_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "ALLOWED_INPUT_PREFIXES": "s3://rec/in/",
        "RESULTS_URI": "s3://out/",
        "ANALYSIS_LAUNCHER": "local",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="rec")
        s3.create_bucket(Bucket="out")
        yield s3


def put_result(s3: Any, kind: str, analysis_id: str, **fields: Any) -> None:
    body = json.dumps({"kind": kind, "analysis_id": analysis_id, **fields})
    s3.put_object(Bucket="out", Key=f"{kind}/{analysis_id}/result.json", Body=body)


def test_check_result_from_moto_s3(moto_s3: Any) -> None:
    params = {"attempt_id": "A-1", "webcam_uri": "s3://rec/in/A-1/"}
    with pytest.raises(AnalysisCrashed):
        steps.check_result("proctor_video", params)
    put_result(moto_s3, "proctor_video", "A-1", status="failed", error=ALL_SEGMENTS_FAILED)
    with pytest.raises(AllSegmentsFailed):
        steps.check_result("proctor_video", params)
    put_result(moto_s3, "proctor_video", "A-1", status="invalid_input", error="no chunks")
    with pytest.raises(AnalysisInvalidInput):
        steps.check_result("proctor_video", params)
    put_result(
        moto_s3,
        "proctor_video",
        "A-1",
        status="partial",
        coverage={"segments_total": 4, "segments_failed": 1},
        usage={
            "calls": 5,
            "input_tokens": 100,
            "output_tokens": 10,
            "per_model": {},
            "estimated_usd": 0.0123,
        },
        report={"events": [{"type": "face_absent"}], "recording": {"video": "video.mp4"}},
    )
    summary = steps.check_result("proctor_video", params)
    assert summary["status"] == "partial"
    assert summary["events"] == 1
    # The file the container wrote: H.264 / Safari chunks are stream-copied into MP4.
    assert summary["video_uri"] == "s3://out/proctor_video/A-1/video.mp4"
    assert summary["result_uri"] == "s3://out/proctor_video/A-1/result.json"
    assert summary["usage"] == {
        "calls": 5, "input_tokens": 100, "output_tokens": 10, "estimated_usd": 0.0123,
    }  # fmt: skip
    assert summary["report_uri"] == "s3://out/proctor_video/A-1/report.html"


def test_validate_refuses_missing_or_empty_recordings(moto_s3: Any) -> None:
    params = {"submission_id": "S-1", "screenshare_uri": "s3://rec/in/S-1/screen.mp4"}
    with pytest.raises(AirflowFailException, match="does not exist or is empty"):
        steps.validate_recordings("task_analysis", params)
    moto_s3.put_object(Bucket="rec", Key="in/S-1/screen.mp4", Body=b"")
    with pytest.raises(AirflowFailException):
        steps.validate_recordings("task_analysis", params)
    moto_s3.put_object(Bucket="rec", Key="in/S-1/screen.mp4", Body=b"video")
    assert steps.validate_recordings("task_analysis", params)["input_bytes"] == 5
    # A missing webcam stream does not fail the recruiter-facing analysis: it is recorded,
    # and proctor_video (still triggered) fails and alerts for it on its own.
    without_webcam = steps.validate_recordings(
        "task_analysis", {**params, "webcam_uri": "s3://rec/in/S-1/webcam/"}
    )
    assert "does not exist or is empty" in without_webcam["webcam_problem"]
    assert without_webcam["webcam_uri"] == "s3://rec/in/S-1/webcam/"
    moto_s3.put_object(Bucket="rec", Key="in/S-1/webcam/000000.webm", Body=b"chunk")
    validated = steps.validate_recordings(
        "task_analysis", {**params, "webcam_uri": "s3://rec/in/S-1/webcam/"}
    )
    assert validated["webcam_bytes"] == 5
    assert validated["output_uri"] == "s3://out/task_analysis/S-1/"


def test_validate_refuses_ecs_mode_without_subnets(
    moto_s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    moto_s3.put_object(Bucket="rec", Key="in/S-1/screen.mp4", Body=b"video")
    params = {"submission_id": "S-1", "screenshare_uri": "s3://rec/in/S-1/screen.mp4"}
    monkeypatch.setenv("ANALYSIS_LAUNCHER", "ecs")
    monkeypatch.delenv("ANALYSIS_ECS_SUBNETS", raising=False)
    monkeypatch.delenv("AIRFLOW_VAR_ANALYSIS_ECS_SUBNETS", raising=False)
    document = terraform_settings(ANALYSIS_ECS_SUBNETS="")
    monkeypatch.setenv(SETTINGS_ENV, json.dumps(document))
    with pytest.raises(AirflowFailException, match="ANALYSIS_ECS_SUBNETS: empty"):
        steps.validate_recordings("task_analysis", params)
    document["ANALYSIS_ECS_SUBNETS"] = "subnet-1"
    monkeypatch.setenv(SETTINGS_ENV, json.dumps(document))
    assert steps.validate_recordings("task_analysis", params)["input_bytes"] == 5


def test_validate_refuses_bad_params_at_once(moto_s3: Any) -> None:
    with pytest.raises(AirflowFailException, match="submission_id"):
        steps.validate_recordings("task_analysis", {"screenshare_uri": "s3://rec/in/x.mp4"})


def test_validate_and_check_with_file_uris(tmp_path: Path, monkeypatch) -> None:
    rec = tmp_path / "rec"
    (rec / "A-2").mkdir(parents=True)
    monkeypatch.setenv("ALLOWED_INPUT_PREFIXES", f"file://{rec}/")
    monkeypatch.setenv("RESULTS_URI", f"file://{tmp_path}/out/")
    monkeypatch.setenv("ANALYSIS_LAUNCHER", "local")
    params = {"attempt_id": "A-2", "webcam_uri": f"file://{rec}/A-2/"}
    with pytest.raises(AirflowFailException):
        steps.validate_recordings("proctor_video", params)  # empty folder
    (rec / "A-2" / "000000.webm").write_bytes(b"chunk")
    assert steps.validate_recordings("proctor_video", params)["input_bytes"] == 5
    out = tmp_path / "out" / "proctor_video" / "A-2"
    out.mkdir(parents=True)
    (out / "result.json").write_text(json.dumps({"status": "complete", "analysis_id": "A-2"}))
    assert steps.check_result("proctor_video", params)["status"] == "complete"


def test_publish_returns_the_summary_and_posts_nothing(monkeypatch) -> None:
    """The backend hears from the signed callback (report_outcome), never from publish."""
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{config.PUBLISH_CONN_ID.upper()}",
        json.dumps({"conn_type": "http", "host": "backend.internal", "schema": "http"}),
    )
    summary = {"kind": "task_analysis", "analysis_id": "S-1", "status": "complete"}
    with mock.patch("requests.Session.request") as request:
        assert steps.publish(summary) == summary
    request.assert_not_called()


def test_local_operator_classifies_what_the_child_left(tmp_path: Path, monkeypatch) -> None:
    """A stand-in entrypoint writes result.json like a container; the operator classifies it."""
    fake_pkg = tmp_path / "pkgs" / "fake_container"
    fake_pkg.mkdir(parents=True)
    (fake_pkg / "__init__.py").write_text("")
    (fake_pkg / "__main__.py").write_text(
        "import json, os, pathlib, sys, datetime\n"
        "out = pathlib.Path(os.environ['OUTPUT_URI'].removeprefix('file://'))\n"
        "out.mkdir(parents=True, exist_ok=True)\n"
        "status = os.environ['FAKE_STATUS']\n"
        "now = datetime.datetime.now(datetime.UTC).isoformat()\n"
        "err = 'All segments failed analysis' if status == 'failed' else None\n"
        "(out / 'result.json').write_text(json.dumps({'status': status, 'error': err,"
        " 'started_at': now, 'analysis_id': os.environ['ANALYSIS_ID']}))\n"
        "print('finished', status, flush=True)\n"
        "sys.exit({'complete': 0, 'failed': 3, 'invalid_input': 2}[status])\n"
    )
    rec = tmp_path / "rec"
    (rec / "A-3").mkdir(parents=True)
    (rec / "A-3" / "0.webm").write_bytes(b"x")
    monkeypatch.setenv("ALLOWED_INPUT_PREFIXES", f"file://{rec}/")
    monkeypatch.setenv("RESULTS_URI", f"file://{tmp_path}/out/")
    spec = dataclasses.replace(config.CONTAINERS["proctor_video"], module="fake_container")
    monkeypatch.setitem(config.CONTAINERS, "proctor_video", spec)

    def env_with_fake_package(req: Any, **kwargs: Any) -> dict[str, str]:
        env = local_process_env(req, **kwargs)
        return {
            **env,
            "PYTHONPATH": str(tmp_path / "pkgs"),
            "FAKE_STATUS": os.environ["FAKE_STATUS"],
        }

    monkeypatch.setattr("analysis_pipeline.launch.local.local_process_env", env_with_fake_package)
    op = LocalAnalysisOperator(task_id="launch", kind="proctor_video", execution_timeout=None)
    context = {
        "params": {"attempt_id": "A-3", "webcam_uri": f"file://{rec}/A-3/"},
        "ti": SimpleNamespace(),
    }
    monkeypatch.setenv("FAKE_STATUS", "complete")
    assert op.execute(context)["status"] == "complete"
    monkeypatch.setenv("FAKE_STATUS", "failed")
    with pytest.raises(AllSegmentsFailed) as raised:
        op.execute(context)
    assert raised.value.exit_code == 3 and raised.value.last_lines == ("finished failed",)
    monkeypatch.setenv("FAKE_STATUS", "invalid_input")
    with pytest.raises(AnalysisInvalidInput):
        op.execute(context)
