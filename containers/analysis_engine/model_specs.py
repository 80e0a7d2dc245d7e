"""Published facts about Gemini models that decide what a call costs before it is made:
input tokens per second of video, input limits, and thinking budgets. Pure lookups.

Video is sampled at 1 frame per second. The published per-second rates include the audio
track (~32 tokens/s): a recording without audio costs that much less. Gemini 2.x spends 258
tokens on a frame (66 at low media resolution): ~300 and ~100 tokens per second with sound.
Gemini 3 spends 70 per frame at its default (low/medium) video resolution, 280 at high.
Unknown model names get the Gemini 2.x figures, the dearer ones, so estimates err high.
"""

from __future__ import annotations

AUDIO_TOKENS_PER_SECOND = 32
# (model name prefix, {media resolution: tokens per second of video *with* audio}); the
# first matching prefix wins, so more specific prefixes come first.
_VIDEO_RATES: tuple[tuple[str, dict[str, int]], ...] = (
    ("gemini-3", {"default": 100, "low": 100, "medium": 100, "high": 310}),
    ("", {"default": 300, "low": 100, "medium": 300, "high": 300}),
)
# Input limits (tokens); 1,048,576 for every current Gemini model.
_INPUT_LIMITS: tuple[tuple[str, int], ...] = (
    ("gemini-1.5-pro", 2_097_152),
    ("", 1_048_576),
)
# (prefix, lowest budget, highest budget, can thinking be turned off with 0). Models not
# listed (Gemini 2.0, 1.5, unknown names) get no thinking config: they reject one.
_THINKING: tuple[tuple[str, int, int, bool], ...] = (
    ("gemini-2.5-flash-lite", 512, 24_576, True),
    ("gemini-2.5-flash", 1, 24_576, True),
    ("gemini-2.5-pro", 128, 32_768, False),
    ("gemini-3", 128, 32_768, False),
)


def video_tokens_per_second(
    model: str,
    media_resolution: str = "default",
    *,
    has_audio: bool = True,
    fps: float | None = None,
) -> int:
    """Input tokens one second of the recording costs `model` (frames, plus sound if any).
    `fps`: frames sampled per second when not the default 1 (the sound is not sampled)."""
    rates = next(r for prefix, r in _VIDEO_RATES if model.startswith(prefix))
    frames = rates.get(media_resolution, rates["default"]) - AUDIO_TOKENS_PER_SECOND
    if fps is not None:
        frames = round(frames * fps)
    return frames + (AUDIO_TOKENS_PER_SECOND if has_audio else 0)


def input_token_limit(model: str) -> int:
    return next(limit for prefix, limit in _INPUT_LIMITS if model.startswith(prefix))


def thinking_budget(model: str, wanted: int) -> int | None:
    """The thinking budget to send `model` for a wish of `wanted` tokens, within what the
    model accepts; None for a model that takes no thinking config."""
    for prefix, lowest, highest, can_disable in _THINKING:
        if model.startswith(prefix):
            if wanted == 0 and can_disable:
                return 0
            return max(lowest, min(highest, wanted))
    return None
