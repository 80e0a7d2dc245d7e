"""One container against the fake Gemini over real HTTP, with the default budget (its own
80k-TPM share, a 60-s window): 429s that are not about our share cost what their retryDelay
says, never a window per call.

- A lone analysis whose first call meets two 429s finishes within 1.5x of its time without
  them (before the control law, the ceiling fell to 4,000 tokens/window and every later
  segment waited a whole window: 5 min instead of 20 s).
- A run where every call is refused ends with the sentinel as soon as its retries are spent:
  the time is the retry loop's own sleeps plus the calls, nothing waiting on the budget.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from analysis_engine.result import ALL_SEGMENTS_FAILED
from tests.conftest import run_container

# Wall-clock figures: `make test` runs this module after the rest, on an idle machine.
pytestmark = [pytest.mark.slow, pytest.mark.timing]

# 6 segments of ~9.3k tokens (30 s of video with sound), one at a time.
SEGMENTS = 6
LATENCY_S = 0.4


def env_for(fake: Any, clip: Path, out: Path, **extra: str) -> dict[str, str]:
    return {
        "ANALYSIS_ID": f"lone-{out.name}",
        "INPUT_URI": f"file://{clip}",
        "OUTPUT_URI": f"file://{out}/",
        "GEMINI_API_KEY": "test-key",
        "GEMINI_BASE_URL": fake.base_url,
        "SEGMENT_SECONDS": "30",
        "MAP_CONCURRENCY": "1",
        **extra,
    }


def timed(env: dict[str, str]) -> tuple[float, Any]:
    started = time.monotonic()
    run = run_container("task_analyzer", env)
    return time.monotonic() - started, run


def test_two_429s_on_the_first_call_cost_their_retry_delay_not_a_window_per_call(
    tmp_path: Path, fake_gemini: Any, sample_media: Any
) -> None:
    clip = sample_media("lone-6seg.mp4", duration=SEGMENTS * 30)
    fake_gemini.configure(latency_s=LATENCY_S, retry_delay="0.5s")
    plain_s, plain = timed(env_for(fake_gemini, clip, tmp_path / "plain"))
    assert plain.code == 0, plain.stdout[-2000:]
    fake_gemini.reset()
    fake_gemini.configure(script=["429", "429"])
    refused_s, refused = timed(env_for(fake_gemini, clip, tmp_path / "refused"))
    assert refused.code == 0, refused.stdout[-2000:]
    assert fake_gemini.stats["outcomes"].get("429") == 2
    assert "admitting up to 80000 tokens/window" in refused.stdout  # the ceiling was kept
    assert refused_s <= 1.5 * plain_s, (refused_s, plain_s)


def test_an_all_429_run_ends_with_the_sentinel_as_fast_as_its_retries_say(
    tmp_path: Path, fake_gemini: Any, sample_media: Any
) -> None:
    clip = sample_media("lone-6seg.mp4", duration=SEGMENTS * 30)
    fake_gemini.configure(rates={"429": 1.0}, retry_delay="0.3s", latency_s=0.05)
    run = run_container("task_analyzer", env_for(fake_gemini, clip, tmp_path / "all",
                                                 GEMINI_MAX_ATTEMPTS="3"))  # fmt: skip
    assert run.code == 3, run.stdout[-2000:]
    assert run.last_line.endswith(".") and ALL_SEGMENTS_FAILED in run.last_line
    assert fake_gemini.stats["calls"]["generate"] == SEGMENTS * 3
    # The retry loop's own sleeps (each at least the retryDelay), one segment after another.
    sleeps = [float(s) for s in re.findall(r"retrying in ([\d.]+)s", run.stdout)]
    assert len(sleeps) == SEGMENTS * 2 and min(sleeps) >= 0.3
    # The budget only held each segment's first call for the pause its predecessor's last
    # 429 set (the retryDelay): never a window.
    waited = float(re.findall(r"waited max [\d.]+ s, total ([\d.]+) s", run.stdout)[-1])
    assert waited <= SEGMENTS * 0.3 * 1.2, waited
    # So the MAP phase is those sleeps and pauses plus 18 short calls (generous per call: the
    # machine may be busy).
    map_s = json.loads((tmp_path / "all" / "result.json").read_text())["timings"]["map_s"]
    assert map_s <= sum(sleeps) + waited + SEGMENTS * 3 * 0.5, (map_s, sum(sleeps), waited)
