"""Permanent model errors end a run as `failed` with their reason and exit 1, never as the
"retry later" sentinel with exit 3 (which the DAG retries for hours and alerts as a quota
storm); and they are not retried at full video cost on the way there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import run_container

from analysis_engine.mapreduce import SegmentOutcome
from analysis_engine.models import Segment
from analysis_engine.result import ALL_SEGMENTS_FAILED, exit_code_for, map_status


def failed(index: int, *, retryable: bool, attempts: int = 1) -> SegmentOutcome:
    return SegmentOutcome(
        segment=Segment(index, index * 10.0, index * 10.0 + 10),
        error=f"generate m: reason {index} (after {attempts} attempts)",
        attempts=attempts,
        retryable=retryable,
    )


def test_every_segment_refused_for_good_is_failed_with_the_reason_and_exit_1() -> None:
    outcomes = [failed(0, retryable=False, attempts=0), failed(1, retryable=False)]
    status, error = map_status(outcomes)
    assert status == "failed" and error != ALL_SEGMENTS_FAILED
    # The refusal that was actually answered, not one skipped because of it.
    assert error == (
        "Every segment failed for a reason retrying will not fix: "
        "generate m: reason 1 (after 1 attempts)"
    )
    assert exit_code_for(status, error) == 1


def test_one_retryable_failure_keeps_the_sentinel() -> None:
    status, error = map_status([failed(0, retryable=False), failed(1, retryable=True)])
    assert (status, error) == ("failed", ALL_SEGMENTS_FAILED)
    assert exit_code_for(status, error) == 3


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "reason", "calls"),
    [
        # MAP_CONCURRENCY=1: the first refusal stops the calls it dooms before they are sent.
        # (unknown model, permission, daily quota: the same path; see test_gemini_client)
        ("api_key_invalid", "invalid API key: HTTP 400 INVALID_ARGUMENT", 1),
        # A blocked prompt says nothing of the other segments: each is tried once, not six
        # times at full video cost.
        ("safety", "prompt blocked (SAFETY)", 3),
    ],
)
def test_container_exits_1_with_the_reason(
    tmp_path: Path, fake_gemini: Any, sample_media: Any, mode: str, reason: str, calls: int
) -> None:
    clip = sample_media("permanent.mp4", duration=30, codec="h264")
    fake_gemini.configure(rates={mode: 1.0}, retry_delay="20s")
    out = tmp_path / "out"
    run = run_container("task_analyzer", {
        "ANALYSIS_ID": "perm-1",
        "INPUT_URI": f"file://{clip}",
        "OUTPUT_URI": f"file://{out}/",
        "GEMINI_API_KEY": "a-bad-key",
        "GEMINI_BASE_URL": fake_gemini.base_url,
        "SEGMENT_SECONDS": "10",
        "MAP_CONCURRENCY": "1",
        "IDLE_MIN_SECONDS": "30",
    }, timeout=120)  # fmt: skip
    result = json.loads((out / "result.json").read_text())
    assert run.code == 1, run.stdout[-3000:] + run.stderr[-3000:]
    assert result["status"] == "failed" and result["error"] != ALL_SEGMENTS_FAILED
    assert reason in result["error"]
    assert result["coverage"]["segments_failed"] == result["coverage"]["segments_total"] == 3
    assert fake_gemini.stats["calls"]["generate"] == calls  # no retries, no doomed calls
    assert "exit 1" in run.last_line
