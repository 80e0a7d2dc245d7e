"""Segment planning: pure arithmetic over the recording's duration, keyframes and idle stretches.

No I/O and no subprocess here; `media.py` measures, this module decides. The plan says where
each segment starts and ends, which ones are skipped as idle, and whether the cuts can be made
by stream copy ("copy": every cut lies on a keyframe) or need a re-encode ("reencode": exact
cuts, used when the keyframes are too sparse for even segments).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from analysis_engine import intervals as iv
from analysis_engine.models import Interval, Segment, SegmentPlan

# A copy-mode segment may stretch to this multiple of the target before we re-encode instead.
MAX_STRETCH = 1.5
# Active stretches are split into segments no shorter than this share of the target (except a
# stretch that is short as a whole): a 3-second tail is not worth a model call of its own.
MIN_SHARE = 0.5
# In copy mode idle stretches shrink inward to keyframes; if that costs more than this share of
# an idle stretch (or drops it under the minimum), exact cuts are worth the re-encode.
MAX_IDLE_LOSS = 0.25
# An idle edge may move outward by this much to reach a keyframe (detectors and keyframes
# disagree by a few ms, e.g. AAC priming offsets; skipping half a second of stillness' edge is
# harmless, losing a whole keyframe interval of idle per stretch is not).
SNAP_S = 0.5
# Idle stretches closer than this to each other or to the recording's ends are glued.
GLUE_S = 1.0
# Times closer than this are the same instant (ffprobe prints microseconds; frames are >= 1 ms).
EPS = 1e-3


def plan_segments(
    *,
    duration_s: float,
    keyframes: Sequence[float],
    target_seconds: float,
    idle: Sequence[Interval],
    min_idle_seconds: float,
) -> SegmentPlan:
    """Cut [0, duration_s] into contiguous segments of about `target_seconds`.

    Idle stretches of at least `min_idle_seconds` become skipped segments. Copy mode is chosen
    when snapping every cut to a keyframe keeps segments even (none longer than 1.5x target)
    and keeps the idle stretches; otherwise the plan re-encodes with exact cuts.
    """
    if duration_s <= 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}")
    if target_seconds <= 0:
        raise ValueError(f"target_seconds must be positive, got {target_seconds}")
    exact_idle = normalise_idle(idle, duration_s=duration_s, min_seconds=min_idle_seconds)
    kfs = _clean_keyframes(keyframes, duration_s)
    copy = _copy_plan(duration_s, kfs, target_seconds, exact_idle, min_idle_seconds)
    if copy is not None:
        return copy
    bounds = _exact_bounds(duration_s, exact_idle, target_seconds)
    return _build(bounds, exact_idle, "reencode", duration_s)


def normalise_idle(
    idle: Sequence[Interval], *, duration_s: float, min_seconds: float
) -> list[Interval]:
    """Clip to the recording, sort, merge stretches that overlap or nearly touch, stretch them
    to the recording's ends when nearly there, drop short ones.

    "Nearly" is `GLUE_S`: detectors report a still screen from the first frame (0.007 s in a
    WebM, say), and a 10 ms "active" sliver is not worth a segment or a model call.
    """
    clipped = sorted(
        Interval(
            0.0 if i.start_s < GLUE_S else i.start_s,
            duration_s if i.end_s > duration_s - GLUE_S else i.end_s,
        )
        for i in idle
        if min(duration_s, i.end_s) - max(0.0, i.start_s) > EPS
    )
    merged = iv.merge(clipped, gap_s=GLUE_S)
    return [i for i in merged if i.duration_s >= min_seconds - EPS]


def split_evenly(start: float, end: float, target: float) -> list[float]:
    """Ideal inner cut times splitting [start, end] into round(len/target) equal parts.

    Rounding (not ceiling) is what merges a tiny tail into its neighbour: every part is
    between 0.5x and 1.5x the target, except a stretch shorter than half a target.
    """
    n = max(1, round((end - start) / target))
    step = (end - start) / n
    return [start + step * k for k in range(1, n)]


def _clean_keyframes(keyframes: Sequence[float], duration_s: float) -> list[float]:
    """Sorted, de-duplicated keyframes strictly inside the recording."""
    inside = sorted(k for k in keyframes if EPS < k < duration_s - EPS)
    out: list[float] = []
    for k in inside:
        if not out or k - out[-1] > EPS:
            out.append(k)
    return out


def _exact_bounds(duration_s: float, idle: list[Interval], target: float) -> list[float]:
    """Boundaries for exact (re-encoded) cuts: idle edges plus even splits of active stretches."""
    bounds = [0.0]
    for start, end in _active_stretches(duration_s, idle):
        if bounds[-1] < start - EPS:  # an idle stretch precedes this active one
            bounds.append(start)
        bounds.extend(split_evenly(start, end, target))
        bounds.append(end)
    if bounds[-1] < duration_s - EPS:  # recording ends idle
        bounds.append(duration_s)
    return _dedupe(bounds)


def _active_stretches(duration_s: float, idle: list[Interval]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    cursor = 0.0
    for i in idle:
        if i.start_s - cursor > EPS:
            out.append((cursor, i.start_s))
        cursor = i.end_s
    if duration_s - cursor > EPS:
        out.append((cursor, duration_s))
    return out


def _copy_plan(
    duration_s: float,
    kfs: list[float],
    target: float,
    exact_idle: list[Interval],
    min_idle: float,
) -> SegmentPlan | None:
    """A stream-copy plan with every cut on a keyframe, or None when it would be too uneven."""
    snapped_idle = _snap_idle(exact_idle, kfs, min_idle, duration_s)
    if snapped_idle is None:
        return None
    bounds = [0.0]
    for start, end in _active_stretches(duration_s, snapped_idle):
        if bounds[-1] < start - EPS:
            bounds.append(start)
        inner = [k for k in kfs if start + EPS < k < end - EPS]
        cuts = _snap_cuts(split_evenly(start, end, target), inner)
        bounds.extend(cuts)
        bounds.append(end)
    if bounds[-1] < duration_s - EPS:
        bounds.append(duration_s)
    bounds = _dedupe(bounds)
    plan = _build(bounds, snapped_idle, "copy", duration_s)
    if not _even_enough(plan, target):
        return None
    return plan


def _snap_idle(
    idle: list[Interval], kfs: list[float], min_idle: float, duration_s: float
) -> list[Interval] | None:
    """Move each idle edge to a keyframe (stream copy can only cut there): inward, or outward
    by at most SNAP_S.

    A stretch touching the start or end of the recording needs no keyframe on that side.
    Returns None when snapping loses too much idle time: the caller then re-encodes.
    """
    out: list[Interval] = []
    for i in idle:
        start = i.start_s if i.start_s <= EPS else _first_at_or_after(kfs, i.start_s - SNAP_S)
        end = i.end_s if i.end_s >= duration_s - EPS else _last_at_or_before(kfs, i.end_s + SNAP_S)
        if start is None or end is None or end - start < min_idle - EPS:
            return None
        if i.duration_s - (end - start) > MAX_IDLE_LOSS * i.duration_s + EPS:
            return None
        out.append(Interval(start, end))
    return out


def _first_at_or_after(kfs: list[float], t: float) -> float | None:
    return next((k for k in kfs if k >= t - EPS), None)


def _last_at_or_before(kfs: list[float], t: float) -> float | None:
    return next((k for k in reversed(kfs) if k <= t + EPS), None)


def _snap_cuts(ideal: list[float], inner_kfs: list[float]) -> list[float]:
    """Move each ideal cut to the nearest keyframe, keeping cuts strictly increasing."""
    cuts: list[float] = []
    for t in ideal:
        candidates = [k for k in inner_kfs if not cuts or k > cuts[-1] + EPS]
        if not candidates:
            break
        cuts.append(min(candidates, key=lambda k: abs(k - t)))
    return cuts


def _even_enough(plan: SegmentPlan, target: float) -> bool:
    """No analysed segment longer than 1.5x target, none shorter than half (unless the whole
    active stretch it belongs to is short)."""
    for seg in plan.to_analyse:
        if seg.duration_s > MAX_STRETCH * target + EPS:
            return False
    return all(
        seg.duration_s >= MIN_SHARE * target - EPS or _whole_stretch(plan, seg)
        for seg in plan.to_analyse
    )


def _whole_stretch(plan: SegmentPlan, seg: Segment) -> bool:
    """True when `seg` is an entire active stretch (bounded by idle or the recording's ends)."""
    segs = plan.segments
    before_ok = seg.index == 0 or segs[seg.index - 1].skip_reason is not None
    after_ok = seg.index == len(segs) - 1 or segs[seg.index + 1].skip_reason is not None
    return before_ok and after_ok


def _dedupe(bounds: list[float]) -> list[float]:
    out: list[float] = []
    for b in bounds:
        if not out or b - out[-1] > EPS:
            out.append(b)
    return out


def _build(bounds: list[float], idle: list[Interval], mode: str, duration_s: float) -> SegmentPlan:
    bounds = list(bounds)
    bounds[0], bounds[-1] = 0.0, float(duration_s)
    segments = []
    for index, (start, end) in enumerate(itertools.pairwise(bounds)):
        is_idle = any(i.start_s - EPS <= start and end <= i.end_s + EPS for i in idle)
        segments.append(Segment(index, float(start), float(end), "idle" if is_idle else None))
    return SegmentPlan(segments=tuple(segments), mode=mode, duration_s=duration_s)  # type: ignore[arg-type]
