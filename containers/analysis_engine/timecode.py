"""Times as the model reports them and as people read them (pure)."""

from __future__ import annotations


def clock(seconds: float) -> str:
    """HH:MM:SS, for prompts and summaries."""
    whole = round(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def clip_to_clock(
    value: float, clip_start_s: float, clip_end_s: float, offset_s: float = 0.0
) -> float:
    """Seconds from the start of the clip the model saw → the whole recording's clock (plus
    `offset_s`, e.g. the test-clock time of the file's first frame), clamped to the clip:
    models overshoot."""
    return round(offset_s + min(max(clip_start_s + value, clip_start_s), clip_end_s), 2)
