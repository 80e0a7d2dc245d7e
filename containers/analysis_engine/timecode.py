"""Times as the model reports them and as people read them (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


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


# Key under which a MAP output records which time convention its answer followed.
TIME_BASIS_KEY = "time_basis"


def pick_time_basis(
    values: Sequence[float], *, length_s: float, candidates: Sequence[tuple[str, float]]
) -> tuple[str, float, int]:
    """Which convention a MAP answer's times follow, whatever the prompt asked.

    `candidates` are (name, origin) pairs, the convention the prompt asked for first: "clip"
    (origin 0, seconds into the clip) or the recording's own clock (origin = where the clip
    starts on it). Each candidate counts the times that fall inside the clip when read that
    way; the most wins, ties go to the one asked for. Returns (name, origin, times that fit
    no convention) so an answer cannot pin every event to a clip edge unnoticed."""
    slack = max(1.0, 0.05 * length_s)

    def fits(origin: float) -> int:
        return sum(1 for v in values if -slack <= v - origin <= length_s + slack)

    best_name, best_origin = candidates[0]
    best = fits(best_origin)
    for name, origin in candidates[1:]:
        count = fits(origin)
        if count > best:
            best_name, best_origin, best = name, origin, count
    return best_name, best_origin, len(values) - best


def shift_onto_clock(
    refs: Sequence[tuple[dict[str, Any], str]],
    *,
    clip_start_s: float,
    clip_end_s: float,
    candidates: Sequence[tuple[str, float]],
    offset_s: float = 0.0,
) -> dict[str, Any]:
    """Rewrite each `data[key]` time of one MAP answer onto the recording's clock (plus
    `offset_s`), reading them in the convention `pick_time_basis` finds. Returns the note
    stored under TIME_BASIS_KEY: what was asked, what was answered, how many times fit none."""
    values = [float(data[key]) for data, key in refs]
    name, origin, outside = pick_time_basis(
        values, length_s=clip_end_s - clip_start_s, candidates=candidates
    )
    for data, key in refs:
        data[key] = clip_to_clock(float(data[key]) - origin, clip_start_s, clip_end_s, offset_s)
    return {"asked": candidates[0][0], "answered": name, "outside_clip": outside}


def time_rule(start_s: float, end_s: float, whole: str, *, absolute: bool) -> str:
    """How the model must report times. With clip offsets of one upload the model's own clock
    may be the whole file's, so it is asked for that clock, with the clip's place on it."""
    if absolute:
        return (
            f"Report every time as seconds from the start of the WHOLE {whole.upper()} (not of "
            f"this clip): this clip starts at {start_s:.1f} s and ends at {end_s:.1f} s, so "
            f"every time you report lies between {start_s:.1f} and {end_s:.1f}."
        )
    return (
        "Report every time as seconds from the start of THIS CLIP (0 = first frame of the "
        f"clip), not of the whole {whole}."
    )
