"""Triage: flagged stretches shown as set, quiet ones sampled (low resolution, fewer frames);
the plan, the request the model gets, what the fake Gemini bills for it, and what the result
says was shown how."""

from __future__ import annotations

import json
from typing import Any

import pytest

from analysis_engine import triage
from analysis_engine.gemini.request import media_parts
from analysis_engine.model_specs import video_tokens_per_second
from analysis_engine.models import Interval, MediaHandle

KEYFRAMES = [float(k) for k in range(3, 600, 3)]


def test_flagged_stretches_are_shown_and_the_quiet_rest_sampled() -> None:
    plan = triage.triage_plan(
        duration_s=600,
        keyframes=KEYFRAMES,
        target_seconds=60,
        flagged=[Interval(100, 110), Interval(116, 120), Interval(400, 430)],
        config=triage.TriageConfig(pad_s=3, min_quiet_s=10, max_sampled_s=200),
    )
    assert plan.mode == "copy" and not plan.skipped  # nothing is hidden
    spans = [(s.start_s, s.end_s, s.triage) for s in plan.segments]
    assert spans == [
        (0, 96, "sampled"),
        (96, 123, "flagged"),  # 97-123 padded, out to keyframes; a 6-s lull is no quiet stretch
        (123, 258, "sampled"), (258, 396, "sampled"),  # 273 s quiet: two calls of <= 200 s
        (396, 435, "flagged"),
        (435, 600, "sampled"),
    ]  # fmt: skip
    flagged = [s for s in plan.segments if s.triage == "flagged"]
    sampled = [s for s in plan.segments if s.triage == "sampled"]
    assert [(s.start_s, s.end_s) for s in flagged] == [(96, 123), (396, 435)]
    assert all(s.media_resolution is None and s.fps is None for s in flagged)
    assert all(s.media_resolution == "low" and s.fps == 0.5 for s in sampled)
    assert all(s.duration_s <= 200 for s in sampled)
    assert [s.index for s in plan.segments] == list(range(len(plan.segments)))
    covered = sum(s.duration_s for s in plan.segments)
    assert covered == 600
    summary = triage.summary(plan.segments, offset_s=3.0, reasons=["voice"])
    assert summary["flagged_s"] == 66 and summary["sampled_s"] == 534
    assert summary["sampled_as"] == {"media_resolution": "low", "fps": 0.5}
    assert summary["flagged_ranges"][0] == {"start_s": 99.0, "end_s": 126.0}  # test clock


def test_nothing_flagged_is_all_sampled_and_everything_flagged_is_as_today() -> None:
    quiet = triage.triage_plan(duration_s=90, keyframes=KEYFRAMES, target_seconds=30, flagged=[])
    assert {s.triage for s in quiet.segments} == {"sampled"}
    busy = triage.triage_plan(
        duration_s=90, keyframes=KEYFRAMES, target_seconds=30, flagged=[Interval(0, 90)]
    )
    assert {s.triage for s in busy.segments} == {"flagged"} and len(busy.segments) == 3


def test_a_sampled_clip_asks_for_its_frame_rate_and_costs_accordingly() -> None:
    (part,) = media_parts(MediaHandle("video/webm", uri="files/x", fps=0.5))
    assert part.video_metadata is not None and part.video_metadata.fps == 0.5
    assert part.video_metadata.start_offset is None
    (clipped,) = media_parts(MediaHandle("video/webm", uri="files/x", clip=Interval(3, 9)))
    assert clipped.video_metadata is not None and clipped.video_metadata.fps is None
    # Gemini 2.x: 268 tokens a frame-second at default (66 + ~2 at low), 32 for the sound.
    assert video_tokens_per_second("gemini-2.5-flash") == 300
    assert video_tokens_per_second("gemini-2.5-flash", "low", fps=0.5) == 34 + 32
    assert video_tokens_per_second("gemini-2.5-flash", "low", fps=0.5, has_audio=False) == 34


@pytest.fixture(scope="module")
def webcam_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The proctor container on a 45-s webcam recording whose candidate leaves at 15-25 s,
    with triage on and off, against the fake Gemini answering from the labels."""
    import os
    import subprocess
    import sys

    from devtools.fake_gemini import FakeGemini
    from evals.generate import materialise

    root = tmp_path_factory.mktemp("triage")
    chunks = materialise(
        {
            "generator": "scene",
            "duration_s": 45,
            "codec": "vp8",
            "seed": 7,
            "picture": {
                "size": "320x240",
                "fps": 10,
                "candidate": "hopper",
                "events": [{"kind": "absent", "start_s": 15, "end_s": 25}],
            },
            "sound": [{"kind": "room"}],
        },
        root / "media",
    )
    labels = {
        "events": [{"type": "face_absent", "start_s": 15, "end_s": 25},
                   {"type": "phone_or_device", "start_s": 36, "end_s": 40}],
        "integrity": None, "rubric": {}, "duration_s": 45,
    }  # fmt: skip
    runs: dict[str, Any] = {}
    for setting in ("off", "on"):
        out = root / setting
        with FakeGemini(answers="labels", labels=labels) as fake:
            env = {
                **os.environ,
                "ANALYSIS_ID": f"triage-{setting}",
                "INPUT_URI": f"file://{chunks}/",
                "OUTPUT_URI": f"file://{out}/",
                "GEMINI_BASE_URL": fake.base_url,
                "GEMINI_API_KEY": "fake-key-for-the-local-fake-gemini-0000",
                "SEGMENT_SECONDS": "20",
                "PROCTOR_TRIAGE": setting,
                "SCRATCH_DIR": str(root),
            }
            proc = subprocess.run(
                [sys.executable, "-m", "proctor_video"], env=env, capture_output=True, text=True
            )
            assert proc.returncode == 0, proc.stderr[-2000:]
            runs[setting] = {
                "result": json.loads((out / "result.json").read_text()),
                "requests": fake.stats["generate_requests"],
            }
    return runs


@pytest.mark.slow
def test_triage_shows_the_absence_in_full_and_samples_the_rest(webcam_run: dict[str, Any]):
    on, off = webcam_run["on"], webcam_run["off"]
    assert on["result"]["status"] == off["result"]["status"] == "complete"
    report = on["result"]["report"]
    shown = report["triage"]
    assert shown["enabled"] and shown["sampled_as"] == {"media_resolution": "low", "fps": 0.5}
    assert "face_absent" in shown["flagged_because"]
    flagged = [(r["start_s"], r["end_s"]) for r in shown["flagged_ranges"]]
    assert any(a <= 15 and b >= 25 for a, b in flagged), flagged
    assert shown["flagged_s"] + shown["sampled_s"] == pytest.approx(45, abs=0.5)
    assert off["result"]["report"]["triage"] == {"enabled": False}
    # The sampled MAP calls asked for low resolution; the fake billed their frames at 0.5 fps.
    low = [r for r in on["requests"] if r["media_resolution"] == "MEDIA_RESOLUTION_LOW"]
    assert low and all(r["media_seconds"] > 0 for r in low)
    spent = {k: v["result"]["usage"]["input_tokens"] for k, v in webcam_run.items()}
    assert spent["on"] < 0.7 * spent["off"], spent  # prompts and REDUCE are not sampled
    # Both labelled events are still found: the phone in a sampled stretch, too.
    for run in (on, off):
        kinds = {e["type"] for e in run["result"]["report"]["events"] if e["source"] == "model"}
        assert {"face_absent", "phone_or_device"} <= kinds
