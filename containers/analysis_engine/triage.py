"""Triage: pay the model only for what the local detectors cannot rule out (pure).

Proctoring products flag locally and have a reviewer look at what was flagged. Here the
reviewer is the model, and a recording is still shown whole, but not at one price: the
stretches a kind flags (for the proctor: a face problem, a voice, a covered or frozen
camera, a scene change; padded with context) are shown as today, and the quiet rest at low
media resolution and one frame every `sampled_fps`⁻¹ seconds (the sound as it is). The
sampling period is no longer than the shortest event the model is asked for (2 s), so a
sampled stretch still shows at least one frame of anything that happens there.

`triage_plan` cuts the recording so that every segment is wholly flagged or wholly quiet
(the planner's own rules: cuts on keyframes when stream copy can make them), and marks each.
`summary` says in the result what was shown how, and why.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from analysis_engine import intervals as iv
from analysis_engine.models import Interval, Segment, SegmentPlan
from analysis_engine.planning import EPS, plan_segments


@dataclass(frozen=True)
class TriageConfig:
    pad_s: float = 3.0  # context shown around a flag
    min_quiet_s: float = 10.0  # a shorter quiet stretch is shown as flagged: not worth a call
    sampled_resolution: str = "low"
    sampled_fps: float = 0.5
    max_sampled_s: float = 600.0  # a long quiet stretch is split into calls this long at most


def triage_plan(
    *,
    duration_s: float,
    keyframes: Sequence[float],
    target_seconds: float,
    flagged: Sequence[Interval],
    config: TriageConfig | None = None,
) -> SegmentPlan:
    """Segments on the recording's clock: flagged ones about `target_seconds` long and shown
    as the run says, quiet ones sampled (resolution, fps) and up to `max_sampled_s` long."""
    config = config or TriageConfig()
    shown = iv.merge(iv.pad(flagged, config.pad_s, 0.0, duration_s))
    quiet = iv.complement(shown, 0.0, duration_s)
    # The planner's idle stretches are exactly "cut around these, on keyframes if possible".
    plan = plan_segments(
        duration_s=duration_s,
        keyframes=keyframes,
        target_seconds=target_seconds,
        idle=quiet,
        min_idle_seconds=config.min_quiet_s,
    )
    inner = sorted(k for k in keyframes if EPS < k < duration_s - EPS)
    segments: list[Segment] = []
    for segment in plan.segments:
        if segment.skip_reason is None:
            segments.append(replace(segment, triage="flagged"))
            continue
        for start, end in _split(segment, config.max_sampled_s, inner, plan.mode == "copy"):
            segments.append(
                Segment(
                    segment.index,
                    start,
                    end,
                    media_resolution=config.sampled_resolution,
                    fps=config.sampled_fps,
                    triage="sampled",
                )
            )
    numbered = tuple(replace(s, index=i) for i, s in enumerate(segments))
    return SegmentPlan(segments=numbered, mode=plan.mode, duration_s=plan.duration_s)


def _split(
    segment: Segment, longest: float, keyframes: Sequence[float], on_keyframes: bool
) -> list[tuple[float, float]]:
    """[start, end] in about equal parts of at most `longest` (on keyframes in copy mode)."""
    parts = max(1, math.ceil(segment.duration_s / longest - EPS))
    step = segment.duration_s / parts
    cuts = [segment.start_s + step * k for k in range(1, parts)]
    if on_keyframes:
        inside = [k for k in keyframes if segment.start_s + EPS < k < segment.end_s - EPS]
        snapped: list[float] = []
        for cut in cuts:
            options = [k for k in inside if not snapped or k > snapped[-1] + EPS]
            if options:
                snapped.append(min(options, key=lambda k: abs(k - cut)))
        cuts = snapped
    bounds = [segment.start_s, *cuts, segment.end_s]
    return list(itertools.pairwise(bounds))


def summary(
    segments: Sequence[Segment], *, offset_s: float = 0.0, reasons: Sequence[str] = ()
) -> dict[str, Any]:
    """What the model was shown how (times on the test clock: `offset_s` added), for
    result.json: nothing is hidden, the quiet stretches were shown sampled."""

    def ranges(kind: str) -> list[dict[str, float]]:
        return [
            {"start_s": round(s.start_s + offset_s, 2), "end_s": round(s.end_s + offset_s, 2)}
            for s in segments
            if s.triage == kind
        ]

    sampled = [s for s in segments if s.triage == "sampled"]
    return {
        "enabled": True,
        "flagged_s": round(sum(s.duration_s for s in segments if s.triage == "flagged"), 2),
        "sampled_s": round(sum(s.duration_s for s in sampled), 2),
        "sampled_as": (
            {"media_resolution": sampled[0].media_resolution, "fps": sampled[0].fps}
            if sampled
            else None
        ),
        "flagged_because": list(reasons),
        "flagged_ranges": ranges("flagged"),
        "sampled_ranges": ranges("sampled"),
    }
