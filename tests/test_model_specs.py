"""What a call costs before it is made (analysis_engine.model_specs), and the start-up check
that a segment fits the MAP model's input at all."""

from __future__ import annotations

import pytest

from analysis_engine.errors import InvalidInputError
from analysis_engine.model_specs import (
    input_token_limit,
    thinking_budget,
    video_tokens_per_second,
)
from analysis_engine.settings import Settings

BASE_ENV = {
    "ANALYSIS_ID": "a1",
    "INPUT_URI": "s3://recordings/a1/screen.mp4",
    "OUTPUT_URI": "s3://results/a1/",
}


@pytest.mark.parametrize(
    ("model", "resolution", "has_audio", "expected"),
    [
        # The published rates (~300 / ~100 per second) already include the sound track.
        ("gemini-2.5-flash", "default", True, 300),
        ("gemini-2.5-flash", "low", True, 100),
        ("gemini-2.5-flash", "default", False, 268),
        ("gemini-2.5-pro", "low", False, 68),
        # Gemini 3 spends 70 tokens per frame at its default video resolution.
        ("gemini-3-pro-preview", "default", True, 100),
        ("gemini-3-flash-preview", "default", False, 68),
        ("some-future-model", "default", True, 300),  # unknown: the dearer estimate
    ],
)
def test_video_tokens_per_second_by_model_and_audio(
    model: str, resolution: str, has_audio: bool, expected: int
) -> None:
    assert video_tokens_per_second(model, resolution, has_audio=has_audio) == expected


def test_settings_estimate_uses_the_map_model() -> None:
    settings = Settings.from_env({**BASE_ENV, "GEMINI_MAP_MODEL": "gemini-3-flash-preview"})
    assert settings.tokens_per_second == 100
    assert settings.map_tokens_per_second(has_audio=False) == 68
    assert Settings.from_env(BASE_ENV).map_tokens_per_second(has_audio=False) == 268


@pytest.mark.parametrize(
    ("model", "wanted", "expected"),
    [
        ("gemini-2.5-flash", 1024, 1024),
        ("gemini-2.5-flash", 0, 0),  # thinking off
        ("gemini-2.5-flash", 99_999, 24_576),
        ("gemini-2.5-pro", 0, 128),  # cannot be turned off
        ("gemini-2.5-flash-lite", 100, 512),
        ("gemini-3-pro-preview", 1024, 1024),
        ("gemini-2.0-flash", 1024, None),  # takes no thinking config at all
    ],
)
def test_thinking_budget_within_what_the_model_accepts(
    model: str, wanted: int, expected: int | None
) -> None:
    assert thinking_budget(model, wanted) == expected


def test_a_segment_too_long_for_the_model_is_refused_at_start_up() -> None:
    assert input_token_limit("gemini-2.5-flash") == 1_048_576
    with pytest.raises(InvalidInputError) as info:
        Settings.from_env({**BASE_ENV, "SEGMENT_SECONDS": "3600"})
    message = str(info.value)
    assert message.startswith("SEGMENT_SECONDS: 3600 s of video at ~300 tokens/s")
    assert "1,048,576-token input limit: at most 3440 s" in message
    # The same length fits at low media resolution (~100 tokens/s).
    low = Settings.from_env(
        {**BASE_ENV, "SEGMENT_SECONDS": "3600", "GEMINI_MEDIA_RESOLUTION": "low"}
    )
    assert low.segment_seconds == 3600


def test_retry_and_thinking_settings() -> None:
    settings = Settings.from_env(BASE_ENV)
    assert (settings.gemini_max_retry_delay_seconds, settings.gemini_thinking_budget) == (90, 1024)
    custom = Settings.from_env(
        {**BASE_ENV, "GEMINI_MAX_RETRY_DELAY_SECONDS": "30", "GEMINI_THINKING_BUDGET": "0"}
    )
    assert (custom.gemini_max_retry_delay_seconds, custom.gemini_thinking_budget) == (30, 0)
    with pytest.raises(InvalidInputError, match="GEMINI_THINKING_BUDGET: 99999 must be"):
        Settings.from_env({**BASE_ENV, "GEMINI_THINKING_BUDGET": "99999"})
