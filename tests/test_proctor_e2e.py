"""`python -m proctor_video` end to end: chunks in (moto) S3 → stitched video, signals, fake
Gemini MAP/REDUCE → result.json, video.webm and evidence thumbnails in S3."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from _proctor_fixtures import (
    make_recording,
    mediarecorder_chunks,
    probe_cues,
    probe_duration,
)
from conftest import AWS_TEST_ENV, MotoS3, run_container

from analysis_pipeline.schemas import load_schema
from devtools.fake_gemini import FakeGemini

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def s3(moto_s3: MotoS3) -> tuple[str, Any]:
    """The session's moto S3 server (conftest): buckets `recordings` and `results`."""
    return moto_s3.endpoint, moto_s3.client


@pytest.fixture(scope="module")
def chunks(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    # 45 s: camera covered 12-18 s; 15 chunks of 3 s.
    root = tmp_path_factory.mktemp("proctor-e2e")
    return mediarecorder_chunks(make_recording(root / "webcam.webm", 45, black=(12, 18)))


def upload(client: Any, prefix: str, items: dict[str, bytes]) -> None:
    for name, data in items.items():
        client.put_object(Bucket="recordings", Key=f"{prefix}/{name}", Body=data)


def run_proctor(endpoint: str, fake: FakeGemini, attempt: str, **extra: str) -> int:
    run = run_container("proctor_video", {
        **AWS_TEST_ENV,
        "AWS_ENDPOINT_URL": endpoint,
        "ANALYSIS_ID": attempt,
        "INPUT_URI": f"s3://recordings/{attempt}/",
        "OUTPUT_URI": f"s3://results/{attempt}/",
        "GEMINI_API_KEY": "fake-key",
        "GEMINI_BASE_URL": fake.base_url,
        "SEGMENT_SECONDS": "20",
        "GEMINI_MAX_ATTEMPTS": "2",
        **extra,
    }, timeout=240)  # fmt: skip
    print(run.stdout[-3000:], run.stderr[-3000:])
    assert run.stdout.strip(), run.stderr
    return run.code


def result(client: Any, attempt: str) -> dict[str, Any]:
    body = client.get_object(Bucket="results", Key=f"{attempt}/result.json")["Body"].read()
    return json.loads(body)


def keys(client: Any, attempt: str) -> set[str]:
    listing = client.list_objects_v2(Bucket="results", Prefix=f"{attempt}/")
    return {o["Key"].removeprefix(f"{attempt}/") for o in listing.get("Contents", [])}


def near(value: float, expected: float, tolerance: float) -> bool:
    return abs(value - expected) <= tolerance


def test_chunks_to_report_video_and_evidence(s3: tuple[str, Any], chunks: list[bytes], tmp_path):
    endpoint, client = s3
    # Chunk 7 (21-24 s) was lost; chunk 3 was uploaded twice.
    items = {f"{i}.webm": c for i, c in enumerate(chunks) if i != 7}
    items["3-retry.webm"] = chunks[3]
    upload(client, "att-ok", items)
    with FakeGemini() as fake:
        code = run_proctor(endpoint, fake, "att-ok")
    assert code == 0
    res = result(client, "att-ok")
    assert res["kind"] == "proctor_video" and res["status"] == "complete" and res["error"] is None
    jsonschema.validate(res, load_schema("result"))  # the contract the backend reads
    report = res["report"]
    assert report["source"] == "reduce" and report["integrity"]["level"] in {
        "low",
        "medium",
        "high",
    }
    assert report["recording"]["duplicates"] == 1 and report["recording"]["missing_chunks"] == [7]

    events = report["events"]
    assert {e["source"] for e in events} <= {"signal", "model"}
    covered = [e for e in events if e["type"] == "camera_covered" and e["source"] == "signal"]
    assert covered and near(covered[0]["start_s"], 12, 3) and near(covered[0]["end_s"], 18, 3)
    gap = next(e for e in events if e["type"] == "recording_gap")
    assert near(gap["start_s"], 21, 1) and near(gap["end_s"], 24, 1)

    stored = keys(client, "att-ok")
    assert {"result.json", "video.webm"} <= stored
    thumbs = {e["evidence"]["thumbnail"] for e in events if e["evidence"].get("thumbnail")}
    assert thumbs and thumbs <= stored
    assert all(t.endswith(".jpg") for t in thumbs)
    tags = client.get_object_tagging(Bucket="results", Key=f"att-ok/{min(thumbs)}")["TagSet"]
    assert tags == [{"Key": "retention", "Value": "thumbnail"}]  # the lifecycle rule's match

    video = tmp_path / "video.webm"
    client.download_file("results", "att-ok/video.webm", str(video))
    assert near(probe_duration(video), 45, 1) and probe_cues(video)


def test_all_model_calls_rate_limited_still_publish_signals(
    s3: tuple[str, Any], chunks: list[bytes]
):
    endpoint, client = s3
    upload(client, "att-429", {f"{i}.webm": c for i, c in enumerate(chunks) if i != 7})
    with FakeGemini(rates={"429": 1.0}, retry_delay="0.1s") as fake:
        code = run_proctor(endpoint, fake, "att-429")
    assert code == 3
    res = result(client, "att-429")
    assert res["status"] == "failed" and res["error"] == "All segments failed analysis"
    report = res["report"]
    assert report["source"] == "signals_only"
    types = {e["type"] for e in report["events"]}
    assert {"camera_covered", "recording_gap"} <= types
    assert all(e["source"] == "signal" for e in report["events"])
    assert "video.webm" in keys(client, "att-429")


@pytest.mark.parametrize(
    ("attempt", "items", "message"),
    [
        ("att-empty", {}, "no chunks"),
        ("att-text", {"0.webm": b"not a video\n" * 50, "1.webm": b"hello\n"}, "not WebM"),
        ("att-zero", {"0.webm": b"", "1.webm": b""}, "empty"),
    ],
)
def test_bad_input_is_exit_2_invalid_input(
    s3: tuple[str, Any], attempt: str, items: dict[str, bytes], message: str
):
    endpoint, client = s3
    upload(client, attempt, items)
    with FakeGemini() as fake:
        code = run_proctor(endpoint, fake, attempt)
    assert code == 2
    res = result(client, attempt)
    assert res["status"] == "invalid_input" and res["report"] is None
    assert res["error"].startswith("INPUT_URI") and message in res["error"]
    assert "\n" not in res["error"]


def test_lost_first_chunks_keep_the_test_clock(s3: tuple[str, Any], tmp_path):
    """The first recording's header chunk never arrived; the recorder restarted at 12 s. The
    restart's header decodes the first recording from 3 s on, so the video starts at 3 s on
    the test clock, and every time must stay on that clock."""
    endpoint, client = s3
    first = mediarecorder_chunks(make_recording(tmp_path / "a.webm", 12))
    second = mediarecorder_chunks(make_recording(tmp_path / "b.webm", 15, black=(6, 12)))
    items = {f"{i}.webm": c for i, c in enumerate([*first, *second]) if i != 0}
    upload(client, "att-late", items)
    with FakeGemini() as fake:
        code = run_proctor(endpoint, fake, "att-late", SEGMENT_SECONDS="10")
    assert code == 0
    res = result(client, "att-late")
    assert res["status"] == "complete"
    assert near(res["coverage"]["duration_s"], 24, 1)  # the file's length, not its end time
    events = res["report"]["events"]
    covered = [e for e in events if e["type"] == "camera_covered" and e["source"] == "signal"]
    assert covered and near(covered[0]["start_s"], 18, 3)
    assert all(e["end_s"] <= 27.5 for e in events), events
