"""`python -m task_analyzer` end to end: real ffmpeg on generated recordings, moto S3 (or
file://), and the real google-genai SDK talking HTTP to the local fake Gemini."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from conftest import AWS_TEST_ENV, REPO_ROOT, MotoS3, run_container

from analysis_engine.result import ALL_SEGMENTS_FAILED
from analysis_pipeline.schemas import load_schema
from devtools import emf
from devtools import media as samples

pytestmark = pytest.mark.slow
SECRET = "sk-test-never-print-me"


def container_env(fake: Any, analysis_id: str, input_uri: str, output_uri: str,
                  **extra: str) -> dict[str, str]:  # fmt: skip
    return {
        **AWS_TEST_ENV,
        "ANALYSIS_ID": analysis_id,
        "INPUT_URI": input_uri,
        "OUTPUT_URI": output_uri,
        "GEMINI_API_KEY": SECRET,
        "GEMINI_BASE_URL": fake.base_url,
        "SEGMENT_SECONDS": "30",
        "MAP_CONCURRENCY": "4",
        "IDLE_MIN_SECONDS": "20",
        **extra,
    }


def generate_calls(fake: Any, model_suffix: str = "") -> int:
    return sum(fake.stats["generate_by_model"].values())


def read_result(output_dir: Path) -> dict[str, Any]:
    return json.loads((output_dir / "result.json").read_text())


def emf_documents(stdout: str) -> dict[str, dict[str, Any]]:
    """The run's EMF lines (each valid EMF), by what they count: started / finished."""
    docs = emf.documents(stdout)
    for doc in docs:
        emf.validate(doc)
    by_kind = {("started" if "AnalysesStarted" in d else "finished"): d for d in docs}
    assert len(by_kind) == len(docs) == 2, stdout[-2000:]
    return by_kind


def test_complete_run_on_s3_writes_every_result_field(
    moto_s3: MotoS3, fake_gemini: Any, sample_media: Any
) -> None:
    clip = sample_media("e2e-complete.mp4", duration=100, codec="h264")
    moto_s3.put("s3://recordings/sub-1/screen.mp4", clip.read_bytes())
    context = {"task_brief": "Build a CLI todo app", "rubric": ["Correctness", "Testing"]}
    run = run_container("task_analyzer", {
        **container_env(fake_gemini, "sub-1", "s3://recordings/sub-1/screen.mp4",
                        "s3://results/task_analysis/sub-1/"),
        "AWS_ENDPOINT_URL": moto_s3.endpoint,
        "ANALYSIS_CONTEXT": json.dumps(context),
    })  # fmt: skip
    assert run.code == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = moto_s3.get_json("s3://results/task_analysis/sub-1/result.json")
    assert set(result) == {
        "schema_version", "kind", "analysis_id", "input", "status", "error", "report",
        "coverage", "usage", "timings", "models", "started_at", "finished_at", "rerun_id",
        "previous_result",
    }  # fmt: skip
    assert (result["rerun_id"], result["previous_result"]) == (None, None)
    jsonschema.validate(result, load_schema("result"))  # the contract the backend reads
    etag = moto_s3.client.head_object(Bucket="recordings", Key="sub-1/screen.mp4")["ETag"]
    assert result["input"] == {
        "uri": "s3://recordings/sub-1/screen.mp4",
        "identity": f"etag:{etag.strip(chr(34))};size:{clip.stat().st_size}",
    }
    assert (result["kind"], result["analysis_id"], result["status"]) == (
        "task_analysis", "sub-1", "complete",
    )  # fmt: skip
    assert result["error"] is None
    coverage = result["coverage"]
    assert coverage["segments_total"] == coverage["segments_analysed"] >= 3
    assert coverage["seconds_analysed"] == pytest.approx(100, abs=1)
    assert coverage["reduce"] == {"calls": 1, "levels": 1, "compacted": []}  # one call fits
    assert coverage["cut_short_by"] is None
    report = result["report"]
    assert report["source"] == "reduce"
    for key in ("summary", "timeline", "rubric_scores", "integrity_flags", "tools_used"):
        assert key in report
    usage = result["usage"]
    assert usage["calls"] == coverage["segments_analysed"] + 1  # MAP per segment + REDUCE
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["calls"] == generate_calls(fake_gemini)
    assert usage["rate_limited"] == 0 and usage["budget_wait_s"] >= 0
    metrics = emf_documents(run.stdout)["finished"]
    assert (metrics["Kind"], metrics["Status"], metrics["Analyses"]) == (
        "task_analysis", "complete", 1,
    )  # fmt: skip
    assert metrics["InputTokens"] == usage["input_tokens"]
    assert metrics["EstimatedUSD"] == usage["estimated_usd"]
    # The context reached the model as data; the rubric replaced the default.
    reduce_prompt = fake_gemini.stats["generate_requests"][-1]
    assert "Build a CLI todo app" in json.dumps(reduce_prompt)
    assert fake_gemini.stats["live_files"] == 0  # every uploaded clip was deleted
    checkpoints = moto_s3.keys("s3://results/task_analysis/sub-1/checkpoints/")
    assert len(checkpoints) == coverage["segments_analysed"]
    tags = moto_s3.client.get_object_tagging(Bucket="results", Key=checkpoints[0])["TagSet"]
    assert tags == [{"Key": "retention", "Value": "checkpoint"}]  # the lifecycle rule's match
    assert "finished complete" in run.last_line and "exit 0" in run.last_line
    assert "segment 0 done" in run.stdout
    assert SECRET not in run.stdout + run.stderr + json.dumps(result)


@pytest.mark.parametrize(
    "name, options",
    [
        ("vp8-opus.webm", {"codec": "vp8"}),
        ("vp9-opus.webm", {"codec": "vp9"}),
        ("no-audio.mp4", {"codec": "h264", "audio": False}),
        ("sparse-keyframes.mp4", {"codec": "h264", "gop_seconds": None}),
    ],
)
def test_every_recording_format_is_analysed(
    tmp_path: Path, fake_gemini: Any, sample_media: Any, name: str, options: dict[str, Any]
) -> None:
    clip = sample_media(f"fmt-{name}", duration=70, **options)
    out = tmp_path / "out"
    run = run_container("task_analyzer", container_env(
        fake_gemini, "fmt-1", f"file://{clip}", f"file://{out}/"))  # fmt: skip
    assert run.code == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = read_result(out)
    assert result["status"] == "complete"
    assert result["coverage"]["segments_analysed"] >= 2
    assert result["coverage"]["seconds_analysed"] == pytest.approx(70, abs=1)
    if options.get("gop_seconds", 2.0) is None:
        # One keyframe: stream-copy cuts would be uneven and exact cuts need a re-encode, so
        # the recording goes up once and each segment is a clip of it.
        assert "(reencode)" in run.stdout and "clip offsets" in run.stdout
        # (a clip this small travels inline; a large recording would be one Files API upload)
        assert fake_gemini.stats["uploads"] <= 1 and fake_gemini.stats["live_files"] == 0
        seconds = [r["media_seconds"] for r in fake_gemini.stats["generate_requests"]]
        assert sum(seconds) == pytest.approx(70, abs=2)  # each call saw only its clip


def test_idle_stretch_is_skipped_and_reported(
    tmp_path: Path, fake_gemini: Any, sample_media: Any
) -> None:
    clip = sample_media("e2e-idle.mp4", duration=180, idle=[(60, 150)])
    out = tmp_path / "out"
    run = run_container("task_analyzer", container_env(
        fake_gemini, "idle-1", f"file://{clip}", f"file://{out}/"))  # fmt: skip
    assert run.code == 0, run.stdout[-3000:]
    result = read_result(out)
    skipped = result["coverage"]["skipped_ranges"]
    assert len(skipped) == 1
    assert skipped[0]["start_s"] == pytest.approx(60, abs=3)
    assert skipped[0]["end_s"] == pytest.approx(150, abs=3)
    assert result["report"]["idle_ranges"][0]["start_s"] == skipped[0]["start_s"]
    analysed = result["coverage"]["segments_analysed"]
    assert generate_calls(fake_gemini) == analysed + 1
    assert result["coverage"]["seconds_analysed"] == pytest.approx(90, abs=6)


def test_half_the_calls_rate_limited_still_completes(
    tmp_path: Path, fake_gemini: Any, sample_media: Any
) -> None:
    clip = sample_media("e2e-429.mp4", duration=120)
    fake_gemini.configure(rates={"429": 0.5}, retry_delay="0.2s", seed=7)
    out = tmp_path / "out"
    # With the default budget: 429s that come while the window holds little are not about
    # our share, so they pause the calls but never lower the ceiling (tests/test_budget.py).
    run = run_container("task_analyzer", container_env(
        fake_gemini, "rl-1", f"file://{clip}", f"file://{out}/",
        GEMINI_MAX_ATTEMPTS="10"))  # fmt: skip
    assert run.code == 0, run.stdout[-3000:]
    result = read_result(out)
    assert result["status"] == "complete"
    refused = fake_gemini.stats["outcomes"].get("429", 0)
    assert refused > 0
    usage = result["usage"]
    assert usage["attempts"] > usage["calls"]
    # The analysis' own 429s and budget wait, in result.json and in its metrics.
    assert (
        usage["rate_limited"]
        == refused
        == sum(m["rate_limited"] for m in usage["per_model"].values())
    )
    assert usage["budget_wait_s"] > 0  # a 429 pauses the budget: the next call waited
    metrics = emf_documents(run.stdout)["finished"]
    assert (metrics["Gemini429s"], metrics["BudgetWaitSeconds"]) == (
        refused, usage["budget_wait_s"],
    )  # fmt: skip


def test_every_call_rate_limited_leaves_the_sentinel_and_exits_3(
    tmp_path: Path, fake_gemini: Any, sample_media: Any
) -> None:
    clip = sample_media("e2e-429.mp4", duration=120)
    fake_gemini.configure(rates={"429": 1.0}, retry_delay="0.1s")
    out = tmp_path / "out"
    run = run_container("task_analyzer", container_env(
        fake_gemini, "rl-2", f"file://{clip}", f"file://{out}/",
        GEMINI_MAX_ATTEMPTS="2"))  # fmt: skip
    assert run.code == 3, run.stdout[-3000:]
    result = read_result(out)
    assert (result["status"], result["error"]) == ("failed", ALL_SEGMENTS_FAILED)
    assert result["report"] is None
    coverage = result["coverage"]
    assert coverage["segments_failed"] == coverage["segments_total"] >= 3
    assert all("429" in r["reason"] for r in coverage["failed_ranges"])
    assert not (out / "checkpoints").exists() or not list((out / "checkpoints").iterdir())
    assert ALL_SEGMENTS_FAILED in run.last_line
    metrics = emf_documents(run.stdout)["finished"]
    assert (metrics["Status"], metrics["SentinelFailures"]) == ("failed", 1)
    assert metrics["Gemini429s"] == result["usage"]["rate_limited"] > 0


def test_rerun_after_a_kill_spends_tokens_only_on_unfinished_segments(
    tmp_path: Path, fake_gemini: Any, sample_media: Any
) -> None:
    clip = sample_media("e2e-rerun.mp4", duration=180)
    out = tmp_path / "out"
    env = container_env(fake_gemini, "kill-1", f"file://{clip}", f"file://{out}/",
                        MAP_CONCURRENCY="1")  # fmt: skip
    fake_gemini.configure(latency_s=0.7)
    killed = _kill_after_checkpoints(env, out / "checkpoints", count=2)
    assert not (out / "result.json").exists()  # killed before the end: nothing half-written
    done = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert len(done) >= 2 and killed
    first_calls = generate_calls(fake_gemini)
    fake_gemini.reset()
    run = run_container("task_analyzer", env)
    assert run.code == 0, run.stdout[-3000:]
    result = read_result(out)
    total = result["coverage"]["segments_total"]
    assert result["coverage"]["segments_from_checkpoint"] == len(done)
    assert generate_calls(fake_gemini) == total - len(done) + 1  # the rest + REDUCE
    assert first_calls >= len(done)
    assert result["usage"]["calls"] == total - len(done) + 1


def _kill_after_checkpoints(env: dict[str, str], checkpoints: Path, *, count: int) -> bool:
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GEMINI_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "task_analyzer"],
        env={**base, **env},
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if checkpoints.exists() and len(list(checkpoints.glob("map-*.json"))) >= count:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                return True
            time.sleep(0.05)
        return False
    finally:
        if proc.poll() is None:
            proc.kill()


def _bad_inputs(root: Path, sample_media: Any) -> dict[str, tuple[str, dict[str, str], str]]:
    """name -> (INPUT_URI, extra env, text the one-line error must contain)."""
    good = sample_media("e2e-small.mp4", duration=20)
    truncated = samples.write_truncated(good, root / "torn.mp4", keep=0.3)
    return {
        "missing object": (f"file://{root}/nope.mp4", {}, "INPUT_URI"),
        "empty prefix": (f"file://{root}/empty-prefix/", {}, "INPUT_URI"),
        "zero-byte file": (f"file://{samples.write_zero_byte(root / 'zero.mp4')}", {}, "empty"),
        "not a video": (f"file://{samples.write_text_file(root / 'notes.mp4')}", {}, "INPUT_URI"),
        "truncated container": (f"file://{truncated}", {}, "INPUT_URI"),
        "no video stream": (f"file://{samples.write_audio_only(root / 'a.m4a')}", {}, "video"),
        "zero duration": (f"file://{samples.write_zero_duration(root / 'z.mp4')}", {}, "INPUT_URI"),
        "too long": (f"file://{good}", {"MAX_RECORDING_SECONDS": "5"}, "INPUT_URI"),
        "context not JSON": (
            f"file://{good}",
            {"ANALYSIS_CONTEXT": "{rubric: oops"},
            "ANALYSIS_CONTEXT",
        ),
        "bad analysis id": (f"file://{good}", {"ANALYSIS_ID": "../etc/passwd"}, "ANALYSIS_ID"),
    }


BAD_INPUTS = [
    "missing object", "empty prefix", "zero-byte file", "not a video", "truncated container",
    "no video stream", "zero duration", "too long", "context not JSON", "bad analysis id",
]  # fmt: skip


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_rejected_with_exit_2_and_no_model_call(
    tmp_path: Path, fake_gemini: Any, sample_media: Any, case: str
) -> None:
    (tmp_path / "empty-prefix").mkdir()
    input_uri, extra, expected = _bad_inputs(tmp_path, sample_media)[case]
    out = tmp_path / "out"
    run = run_container("task_analyzer", {
        **container_env(fake_gemini, "bad-1", input_uri, f"file://{out}/"), **extra})  # fmt: skip
    assert run.code == 2, run.stdout[-3000:] + run.stderr[-2000:]
    result = read_result(out)
    assert result["status"] == "invalid_input"
    assert result["report"] is None
    assert expected in result["error"], result["error"]
    assert "\n" not in result["error"]
    assert generate_calls(fake_gemini) == 0 and fake_gemini.stats["uploads"] == 0
    assert "invalid_input" in run.last_line


def test_screenshare_chunk_prefix_is_stitched_then_analysed(
    moto_s3: MotoS3, fake_gemini: Any, tmp_path: Path
) -> None:
    """Screenshares arrive through TUS like webcam streams: header-less MediaRecorder chunks."""
    recording = samples.make_live_webcam(tmp_path / "live.webm", duration=45, size="320x180")
    chunks = samples.split_clusters(recording, tmp_path / "chunks")
    for chunk in chunks:
        moto_s3.put(f"s3://recordings/sub-chunks/screen/{chunk.name}", chunk.read_bytes())
    run = run_container("task_analyzer", {
        **container_env(fake_gemini, "sub-chunks", "s3://recordings/sub-chunks/screen/",
                        "s3://results/task_analysis/sub-chunks/"),
        "AWS_ENDPOINT_URL": moto_s3.endpoint,
    })  # fmt: skip
    assert run.code == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = moto_s3.get_json("s3://results/task_analysis/sub-chunks/result.json")
    assert result["status"] == "complete"
    assert result["coverage"]["duration_s"] == pytest.approx(45, abs=1)
    assert f"stitching {len(chunks)} chunks" in run.stdout


def test_missing_api_key_fails_before_any_download_with_a_clear_reason(
    tmp_path: Path, sample_media: Any
) -> None:
    clip = sample_media("e2e-small.mp4", duration=20)
    out = tmp_path / "out"
    env = {**AWS_TEST_ENV, "ANALYSIS_ID": "nokey-1", "INPUT_URI": f"file://{clip}",
           "OUTPUT_URI": f"file://{out}/"}  # fmt: skip
    run = run_container("task_analyzer", env)
    assert run.code == 1, run.stdout[-2000:]
    result = read_result(out)
    assert result["status"] == "failed"
    assert result["error"].startswith("GEMINI_API_KEY is not set")
    assert "fetch_s" not in result["timings"]


def _popen(env: dict[str, str]) -> subprocess.Popen[bytes]:
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GEMINI_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "task_analyzer"],
        env={**base, **env},
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_sigterm_stops_new_work_publishes_what_is_done_and_exits_within_20_s(
    tmp_path: Path, fake_gemini: Any, sample_media: Any
) -> None:
    clip = sample_media("e2e-stop.mp4", duration=60)
    out = tmp_path / "out"
    fake_gemini.configure(latency_s=3)  # slow model: calls are in flight when the stop comes
    proc = _popen(container_env(fake_gemini, "stop-1", f"file://{clip}", f"file://{out}/",
                                SEGMENT_SECONDS="10", MAP_CONCURRENCY="2"))  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            if list((out / "checkpoints").glob("map-*.json")):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "finished before it could be stopped"
        proc.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        code = proc.wait(timeout=20)
        elapsed = time.monotonic() - stopped_at
    finally:
        if proc.poll() is None:
            proc.kill()
    output = proc.stdout.read().decode() if proc.stdout else ""
    assert elapsed < 20, output[-3000:]
    result = read_result(out)
    assert result["status"] == "partial" and code == 0, output[-3000:]
    assert result["error"].startswith("stopped"), result["error"]
    coverage = result["coverage"]
    assert coverage["cut_short_by"] == "stopped"
    assert coverage["segments_analysed"] >= 1
    assert {r["reason"] for r in coverage["skipped_ranges"]} == {"stopped"}
    not_analysed = result["report"]["not_analysed_ranges"]
    assert len(not_analysed) == coverage["segments_skipped"] and not result["report"]["idle_ranges"]
    assert fake_gemini.stats["live_files"] == 0
    assert "SIGTERM" in output and "finished partial (stopped" in output.strip().splitlines()[-1]


def test_past_run_deadline_seconds_no_call_starts_and_reduce_runs_over_what_finished(
    tmp_path: Path, fake_gemini: Any, sample_media: Any
) -> None:
    clip = sample_media("e2e-deadline.mp4", duration=100)
    out = tmp_path / "out"
    fake_gemini.configure(latency_s=2)
    started = time.monotonic()
    run = run_container("task_analyzer", container_env(
        fake_gemini, "late-1", f"file://{clip}", f"file://{out}/",
        SEGMENT_SECONDS="10", MAP_CONCURRENCY="1", RUN_DEADLINE_SECONDS="12"))  # fmt: skip
    elapsed = time.monotonic() - started
    assert run.code == 0, run.stdout[-3000:]
    result = read_result(out)
    assert result["status"] == "partial", (result["error"], result["timings"])
    assert result["error"].startswith("deadline:")
    coverage = result["coverage"]
    assert coverage["cut_short_by"] == "deadline"
    assert coverage["segments_analysed"] >= 1 and coverage["segments_skipped"] >= 1
    assert {r["reason"] for r in coverage["skipped_ranges"]} == {"deadline"}
    assert result["report"]["source"] == "reduce"  # REDUCE still ran, over what finished
    assert result["usage"]["calls"] == coverage["segments_analysed"] + 1
    # The deadline, the one call it cut off, one REDUCE call, publishing (a loaded machine).
    assert elapsed < 12 + 2 + 2 + 15, result["timings"]


def test_checkpoints_are_reused_only_for_the_same_recording_and_context_and_a_worse_rerun_is_kept_beside(  # noqa: E501
    tmp_path: Path, fake_gemini: Any, sample_media: Any
) -> None:
    first = sample_media("e2e-ident-a.mp4", duration=40, size="320x180")
    corrected = sample_media("e2e-ident-b.mp4", duration=40, size="480x270")
    recording = tmp_path / "in" / "screen.mp4"
    recording.parent.mkdir()
    recording.write_bytes(first.read_bytes())
    out = tmp_path / "out"

    def trigger(rubric: str, **extra: str) -> tuple[int, dict[str, Any], int]:
        fake_gemini.reset()
        env = container_env(fake_gemini, "ident-1", f"file://{recording}", f"file://{out}/",
                            SEGMENT_SECONDS="10", ANALYSIS_CONTEXT=json.dumps({"rubric": rubric}),
                            **extra)  # fmt: skip
        run = run_container("task_analyzer", env)
        return run.code, read_result(out), generate_calls(fake_gemini)

    code, result, calls = trigger("Correctness")
    segments = result["coverage"]["segments_analysed"]
    assert code == 0 and segments >= 2 and calls == segments + 1, result["error"]
    identity = result["input"]["identity"]
    assert identity.startswith("sha256:")
    code, result, calls = trigger("Correctness")  # unchanged: MAP answers reused
    assert calls == 1 and result["coverage"]["segments_from_checkpoint"] == segments
    code, result, calls = trigger("Correctness and testing")  # edited rubric: analysed again
    assert calls == segments + 1 and result["coverage"]["segments_from_checkpoint"] == 0
    recording.write_bytes(corrected.read_bytes())  # a corrected recording under the same key
    code, result, calls = trigger("Correctness and testing")
    assert calls == segments + 1 and result["coverage"]["segments_from_checkpoint"] == 0
    assert result["input"]["identity"] != identity and result["status"] == "complete"
    # A rerun that fails (every call rate-limited) keeps the complete result in place.
    fake_gemini.configure(rates={"429": 1.0}, retry_delay="0.1s")
    code, result, _ = trigger("Edited again", GEMINI_MAX_ATTEMPTS="1")
    assert code == 3 and result["status"] == "complete"
    beside = list(out.glob("result.failed-*.json"))
    assert len(beside) == 1 and json.loads(beside[0].read_text())["error"] == ALL_SEGMENTS_FAILED


def test_sigterm_before_any_answer_fails_with_reason_stopped_and_exits_1_promptly(
    tmp_path: Path, fake_gemini: Any, sample_media: Any
) -> None:
    """The stop lands while ffmpeg works (idle detection, cutting) or while the first calls
    hang: either way nothing was analysed, so the result is `failed`, reason "stopped"."""
    clip = sample_media("e2e-stop.mp4", duration=60)
    out = tmp_path / "out"
    fake_gemini.configure(latency_s=60)
    proc = _popen(container_env(fake_gemini, "stop-2", f"file://{clip}", f"file://{out}/",
                                SEGMENT_SECONDS="10"))  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in iter(proc.stdout.readline, b""):
            if b"recording:" in line:  # probed; idle detection and cutting come next
                break
        proc.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        code = proc.wait(timeout=20)
        elapsed = time.monotonic() - stopped_at
    finally:
        if proc.poll() is None:
            proc.kill()
    result = read_result(out)
    assert (result["status"], result["error"], code) == ("failed", "stopped", 1)
    assert elapsed < 20 and fake_gemini.stats["live_files"] == 0
    assert result["input"]["identity"].startswith("sha256:")


def test_sigterm_during_reduce_publishes_the_map_findings_with_reason_stopped(
    tmp_path: Path, fake_gemini: Any, sample_media: Any
) -> None:
    clip = sample_media("e2e-small.mp4", duration=20)
    out = tmp_path / "out"
    fake_gemini.configure(latency_s=3)
    proc = _popen(container_env(fake_gemini, "stop-3", f"file://{clip}", f"file://{out}/"))
    try:
        assert proc.stdout is not None
        for line in iter(proc.stdout.readline, b""):
            if b"segment 0 done 1/1" in line:  # MAP is over; REDUCE is in flight
                break
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        code = proc.wait(timeout=20)
        elapsed = time.monotonic() - stopped_at
    finally:
        if proc.poll() is None:
            proc.kill()
    result = read_result(out)
    assert (result["status"], code) == ("partial", 0) and elapsed < 20
    assert result["error"] == "stopped: REDUCE cut off"
    assert result["coverage"]["cut_short_by"] == "stopped"
    assert result["report"]["source"] == "map_only"
