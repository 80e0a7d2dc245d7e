"""Interval arithmetic on time ranges (pure): the one place media, planning and the proctor
events merge, clip, intersect and subtract `Interval`s.

Every function takes intervals in any order (overlapping or not) unless it says otherwise and
returns a sorted list of non-empty intervals.
"""

from __future__ import annotations

from collections.abc import Iterable

from analysis_engine.models import Interval


def merge(intervals: Iterable[Interval], gap_s: float = 0.0) -> list[Interval]:
    """Sorted union; intervals at most `gap_s` apart are joined."""
    merged: list[Interval] = []
    for item in sorted(intervals):
        if merged and item.start_s - merged[-1].end_s <= gap_s:
            last = merged[-1]
            merged[-1] = Interval(last.start_s, max(last.end_s, item.end_s))
        else:
            merged.append(item)
    return merged


def complement(intervals: Iterable[Interval], start_s: float, end_s: float) -> list[Interval]:
    """The parts of [start_s, end_s] not covered by `intervals`."""
    out: list[Interval] = []
    cursor = start_s
    for item in merge(intervals):
        if item.start_s > cursor:
            out.append(Interval(cursor, min(item.start_s, end_s)))
        cursor = max(cursor, item.end_s)
    if cursor < end_s:
        out.append(Interval(cursor, end_s))
    return [i for i in out if i.duration_s > 0]


def intersect(a: Iterable[Interval], b: Iterable[Interval]) -> list[Interval]:
    """The time covered by both `a` and `b`."""
    left, right = merge(a), merge(b)
    out: list[Interval] = []
    i = j = 0
    while i < len(left) and j < len(right):
        lo = max(left[i].start_s, right[j].start_s)
        hi = min(left[i].end_s, right[j].end_s)
        if hi > lo:
            out.append(Interval(lo, hi))
        if left[i].end_s < right[j].end_s:
            i += 1
        else:
            j += 1
    return out


def subtract(a: Iterable[Interval], b: Iterable[Interval]) -> list[Interval]:
    """The time covered by `a` but not by `b`."""
    left = merge(a)
    if not left:
        return []
    return intersect(left, complement(b, left[0].start_s, left[-1].end_s))


def overlap_s(a: Interval, others: Iterable[Interval]) -> float:
    """Seconds of `a` covered by `others` (each counted once)."""
    return sum(i.duration_s for i in intersect([a], others))


def shift(intervals: Iterable[Interval], offset_s: float) -> list[Interval]:
    """Move every interval by `offset_s` (file-relative times → test clock)."""
    return [Interval(i.start_s + offset_s, i.end_s + offset_s) for i in intervals]


def total_s(intervals: Iterable[Interval]) -> float:
    """Seconds covered (overlaps counted once)."""
    return sum(i.duration_s for i in merge(intervals))


def pad(intervals: Iterable[Interval], seconds: float, lo: float, hi: float) -> list[Interval]:
    """Each interval widened by `seconds` on both sides, clipped to [lo, hi], then merged."""
    return merge(
        Interval(max(lo, i.start_s - seconds), min(hi, i.end_s + seconds)) for i in intervals
    )


__all__ = [
    "complement",
    "intersect",
    "merge",
    "overlap_s",
    "pad",
    "shift",
    "subtract",
    "total_s",
]
