"""Both DAGs end to end through `airflow dags test` in local launcher mode: real containers
(`python -m task_analyzer` / `python -m proctor_video`), real ffmpeg, moto S3 server, the
fake Gemini, a throwaway SQLite Airflow, and a fake Discord for the failure alert."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import start_fake_discord

from devtools import airflow_env as af
from devtools.demo import RECORDINGS_BUCKET, RESULTS_BUCKET, _s3, upload_recordings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
ANALYSIS_ID = "S-E2E-1"

# A cluster policy (Airflow's own hook, loaded from AIRFLOW_HOME/config) for this throwaway
# Airflow only: the DAGs' plain one-minute retry delay becomes one second, so `dags test`
# does not sit idle for a minute before the retry the paused-proctor test waits through.
# Retry counts, the launch's own retry policy (sentinel/crash delays, set through levers)
# and every assertion stay as they are; only the idle wait shrinks.
FAST_RETRY_POLICY = """\
from datetime import timedelta

RETRY_DELAY = timedelta(seconds=1)


def task_policy(task):
    if task.retry_delay > RETRY_DELAY:
        task.retry_delay = RETRY_DELAY
"""


@dataclass
class Stack:
    env: dict[str, str]
    s3_endpoint: str
    uris: dict[str, str]
    discord_posts: list[dict[str, Any]]
    gemini_url: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("e2e")
    discord = start_fake_discord(token="e2e-token")
    webhook = discord.url
    with (
        af.moto_s3(log_path=root / "moto.log") as s3_endpoint,
        af.fake_gemini(log_path=root / "gemini.log") as gemini_url,
    ):
        uris = upload_recordings(s3_endpoint, root / "media", ANALYSIS_ID)
        env = af.airflow_env(
            root / "airflow",
            s3_endpoint=s3_endpoint,
            recordings_bucket=RECORDINGS_BUCKET,
            results_bucket=RESULTS_BUCKET,
            gemini_base_url=gemini_url,
            extra={
                "SEGMENT_SECONDS": "15",
                "GEMINI_API_KEY": "e2e-fake-key",
                "AIRFLOW_CONN_DISCORD_ALERTS": json.dumps({"conn_type": "http", "host": webhook}),
            },
        )
        (root / "airflow" / "config").mkdir(parents=True)
        (root / "airflow" / "config" / "airflow_local_settings.py").write_text(FAST_RETRY_POLICY)
        af.migrate(env)
        af.ensure_pool(env)
        yield Stack(env, s3_endpoint, uris, discord.requests, gemini_url)
    discord.close()


def read_result(stack: Stack, kind: str, analysis_id: str = ANALYSIS_ID) -> dict[str, Any]:
    body = _s3(stack.s3_endpoint).get_object(
        Bucket=RESULTS_BUCKET, Key=f"{kind}/{analysis_id}/result.json"
    )["Body"]
    return json.loads(body.read())


def keys_under(stack: Stack, prefix: str) -> list[str]:
    listed = _s3(stack.s3_endpoint).list_objects_v2(Bucket=RESULTS_BUCKET, Prefix=prefix)
    return [o["Key"] for o in listed.get("Contents", [])]


def test_task_analysis_end_to_end(stack: Stack) -> None:
    conf = {
        "submission_id": ANALYSIS_ID,
        **stack.uris,
        "task_brief": "Build a REST API",
        "rubric": [
            {"name": "Correctness", "description": "Right answers", "scale": {"min": 0, "max": 10}},
            {"name": "Tests"},
        ],
    }
    outcome = af.dags_test("task_analysis", conf, stack.env)
    assert outcome.succeeded, outcome.output[-4000:]
    assert "[task-analyzer]" in outcome.output  # the container's log streamed into the task log
    result = read_result(stack, "task_analysis")
    assert result["status"] == "complete"
    assert result["analysis_id"] == ANALYSIS_ID
    assert result["coverage"]["segments_total"] >= 2
    # The structured rubric came back criterion by criterion, each on its scale.
    scores = result["report"]["rubric_scores"]
    assert [(s["criterion"], s["scale"]) for s in scores[:2]] == [
        ("Correctness", {"min": 0, "max": 10}), ("Tests", {"min": 1, "max": 5}),
    ]  # fmt: skip
    # The webcam stream also got its proctoring run, named by the submission in a namespace no
    # test attempt's run can take (a repeat is refused).
    runs = af.run_airflow(["dags", "list-runs", "proctor_video", "-o", "json"], stack.env)
    listed = [json.loads(line) for line in runs.stdout.splitlines() if line.startswith("[")]
    assert listed, runs.stdout[-2000:] + runs.stderr[-2000:]
    assert f"submission:{ANALYSIS_ID}" in {r["run_id"] for r in listed[-1]}
    assert stack.discord_posts == []


def test_proctor_video_end_to_end(stack: Stack) -> None:
    conf = {"attempt_id": ANALYSIS_ID, "webcam_uri": stack.uris["webcam_uri"]}
    outcome = af.dags_test("proctor_video", conf, stack.env)
    assert outcome.succeeded, outcome.output[-4000:]
    result = read_result(stack, "proctor_video")
    assert result["status"] in ("complete", "partial")
    assert isinstance(result["report"]["events"], list)
    assert f"proctor_video/{ANALYSIS_ID}/video.webm" in keys_under(stack, "proctor_video/")


def test_running_a_finished_analysis_again_spends_nothing_and_a_paused_proctor_dag_is_loud(
    stack: Stack,
) -> None:
    """A second trigger of the finished submission (a new run id) reuses its complete
    result.json of the same recording: no container, no model call. With proctor_video
    paused, the proctoring trigger fails (and alerts) instead of queueing silently."""
    conf = {"submission_id": ANALYSIS_ID, **stack.uris}
    before_result = read_result(stack, "task_analysis")
    before_posts = len(stack.discord_posts)
    paused = af.run_airflow(["dags", "pause", "proctor_video"], stack.env)
    assert paused.returncode == 0, paused.stderr[-2000:]
    try:
        outcome = af.dags_test("task_analysis", conf, stack.env)
    finally:
        af.run_airflow(["dags", "unpause", "proctor_video"], stack.env)
    assert "[task-analyzer]" not in outcome.output  # no container ran
    assert "already has a complete result for this input" in outcome.output
    assert read_result(stack, "task_analysis") == before_result  # nothing overwritten
    assert outcome.state == "failed", outcome.output[-4000:]  # only the proctoring trigger
    assert "is paused" in outcome.output or "DagIsPaused" in outcome.output
    new = stack.discord_posts[before_posts:]
    assert len(new) == 1
    fields = {f["name"]: f["value"] for f in new[0]["json"]["embeds"][0]["fields"]}
    assert fields["Failed step"] == "trigger_proctor_video"


def test_missing_recording_fails_at_validate_and_alerts(stack: Stack) -> None:
    conf = {
        "submission_id": "S-E2E-MISSING",
        "screenshare_uri": f"s3://{RECORDINGS_BUCKET}/tasks/S-E2E-MISSING/screen.mp4",
    }
    before = len(stack.discord_posts)
    outcome = af.dags_test("task_analysis", conf, stack.env)
    assert outcome.state == "failed", outcome.output[-4000:]
    assert "[task-analyzer]" not in outcome.output  # no container time spent
    assert keys_under(stack, "task_analysis/S-E2E-MISSING/") == []
    new = stack.discord_posts[before:]
    assert len(new) == 1
    fields = {f["name"]: f["value"] for f in new[0]["json"]["embeds"][0]["fields"]}
    assert fields["Failed step"] == "validate" and fields["ID"] == "S-E2E-MISSING"
    assert "e2e-token" not in json.dumps(new[0]["json"])


def _configure_gemini(stack: Stack, values: dict[str, Any]) -> None:
    request = urllib.request.Request(
        f"{stack.gemini_url}/_fake/config",
        data=json.dumps(values).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request, timeout=10).read()


def test_quota_storm_sentinel_is_retried_then_alerts(stack: Stack) -> None:
    """Every Gemini call 429s: the container writes the sentinel (exit 3), which opens the
    quota breaker (one message); the retry waits, rescheduled, until the breaker cools down
    (one "resumed" message), runs into the storm again, then fails and alerts once."""
    env = {
        **stack.env,
        "ANALYSIS_LAUNCH_RETRIES": "1",
        "ANALYSIS_SENTINEL_RETRY_SECONDS": "1",
        "ANALYSIS_BREAKER_COOLDOWN_SECONDS": "3",
        "GEMINI_MAX_ATTEMPTS": "1",
    }
    conf = {"submission_id": "S-E2E-STORM", "screenshare_uri": stack.uris["screenshare_uri"]}
    before = len(stack.discord_posts)
    _configure_gemini(stack, {"rates": {"429": 1.0}})
    try:
        outcome = af.dags_test("task_analysis", conf, env)
    finally:
        _configure_gemini(stack, {"rates": {}})
    assert outcome.state == "failed", outcome.output[-4000:]
    assert outcome.output.count("task_analyzer exited with code 3") == 2  # first try + 1 retry
    assert "all segments failed; waiting for quota" in outcome.output
    assert "Gemini quota breaker open" in outcome.output  # the retry was held, not failed
    result = read_result(stack, "task_analysis", "S-E2E-STORM")
    assert result["status"] == "failed" and result["error"] == "All segments failed analysis"
    new = [p["json"]["embeds"][0] for p in stack.discord_posts[before:]]
    titles = [e["title"] for e in new]
    assert titles[:2] == [
        "Gemini quota exhausted: launches paused",
        "Gemini quota breaker closed: launches resumed",
    ], titles
    failures = [e for e in new if e["title"].startswith("task_analysis")]
    assert len(failures) == 1, titles
    embed = failures[0]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert "All segments failed analysis" in embed["description"]
    assert fields["Failed step"] == "launch" and fields["Exit code"] == "3"
    assert fields["Try"] == "2" and fields["ID"] == "S-E2E-STORM"
    assert "Last container log lines" in fields


def test_bad_params_are_refused_before_a_run_starts(stack: Stack) -> None:
    conf = {"submission_id": "../etc", "screenshare_uri": "s3://elsewhere/x.mp4"}
    outcome = af.dags_test("task_analysis", conf, stack.env, timeout=300)
    assert not outcome.succeeded
    assert "ParamValidationError" in outcome.output or "Invalid input for param" in outcome.output
    assert "[DAG TEST] starting task_id=validate" not in outcome.output


def test_outputs_land_under_results_uri(stack: Stack) -> None:
    keys = keys_under(stack, "")
    assert f"task_analysis/{ANALYSIS_ID}/result.json" in keys
    assert all(k.split("/", 1)[0] in ("task_analysis", "proctor_video") for k in keys)
    assert Path(stack.env["AIRFLOW_HOME"]).is_dir()
