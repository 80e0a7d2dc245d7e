"""Segment planning: pure, so many cases and seeded property-style checks."""

from __future__ import annotations

import itertools
import random

import pytest

from analysis_engine.models import Interval, SegmentPlan
from analysis_engine.planning import normalise_idle, plan_segments, split_evenly


def every(step: float, duration: float) -> list[float]:
    return [i * step for i in range(int(duration / step) + 1)]


def check_invariants(plan: SegmentPlan, duration: float) -> None:
    segs = plan.segments
    assert segs, "a plan always has at least one segment"
    assert [s.index for s in segs] == list(range(len(segs)))
    assert segs[0].start_s == 0.0
    assert segs[-1].end_s == pytest.approx(duration)
    for a, b in itertools.pairwise(segs):
        assert a.end_s == b.start_s, "segments must be contiguous"
    assert all(s.end_s > s.start_s for s in segs), "no empty segments"
    assert sum(s.duration_s for s in segs) == pytest.approx(duration)
    assert plan.duration_s == duration
    # Two skipped stretches never touch: they would have been merged.
    for a, b in itertools.pairwise(segs):
        assert not (a.skip_reason and b.skip_reason)


def test_even_split_copy_mode_on_dense_keyframes() -> None:
    plan = plan_segments(
        duration_s=600, keyframes=every(2, 600), target_seconds=120, idle=[], min_idle_seconds=30
    )
    assert plan.mode == "copy"
    assert [(s.start_s, s.end_s) for s in plan.segments] == [
        (0, 120),
        (120, 240),
        (240, 360),
        (360, 480),
        (480, 600),
    ]
    assert plan.skipped == ()


def test_cuts_snap_to_keyframes_in_copy_mode() -> None:
    kfs = every(7, 600)
    plan = plan_segments(
        duration_s=600, keyframes=kfs, target_seconds=120, idle=[], min_idle_seconds=30
    )
    assert plan.mode == "copy"
    for seg in plan.segments[1:]:
        assert seg.start_s in kfs
    assert all(abs(s.duration_s - 120) <= 7 for s in plan.segments)


def test_sparse_keyframes_force_reencode_with_exact_cuts() -> None:
    plan = plan_segments(
        duration_s=600, keyframes=[0.0], target_seconds=120, idle=[], min_idle_seconds=30
    )
    assert plan.mode == "reencode"
    assert [s.start_s for s in plan.segments] == [0, 120, 240, 360, 480]


def test_keyframes_every_100s_are_too_uneven_for_target_120() -> None:
    # Snapping 120-second cuts to a 100-second grid makes 200-second segments (> 1.5x).
    plan = plan_segments(
        duration_s=600,
        keyframes=every(100, 600),
        target_seconds=120,
        idle=[],
        min_idle_seconds=30,
    )
    assert plan.mode == "reencode"


def test_no_keyframes_at_all_is_reencode() -> None:
    plan = plan_segments(
        duration_s=300, keyframes=[], target_seconds=60, idle=[], min_idle_seconds=30
    )
    assert plan.mode == "reencode"
    assert len(plan.segments) == 5


def test_short_recording_is_one_segment() -> None:
    plan = plan_segments(
        duration_s=45, keyframes=[0.0], target_seconds=120, idle=[], min_idle_seconds=30
    )
    assert plan.mode == "copy"  # one segment needs no cut at all
    assert len(plan.segments) == 1
    assert plan.segments[0].duration_s == 45


def test_tiny_tail_merges_into_previous_segment() -> None:
    plan = plan_segments(
        duration_s=243, keyframes=every(1, 243), target_seconds=120, idle=[], min_idle_seconds=30
    )
    assert len(plan.segments) == 2
    assert min(s.duration_s for s in plan.segments) > 100


def test_idle_stretch_becomes_skipped_segment_with_exact_range_in_reencode() -> None:
    plan = plan_segments(
        duration_s=600,
        keyframes=[0.0],
        target_seconds=120,
        idle=[Interval(181.5, 299.25)],
        min_idle_seconds=30,
    )
    assert plan.mode == "reencode"
    (skipped,) = plan.skipped
    assert (skipped.start_s, skipped.end_s) == (181.5, 299.25)
    assert skipped.skip_reason == "idle"
    check_invariants(plan, 600)


def test_idle_shrinks_inward_to_keyframes_in_copy_mode() -> None:
    plan = plan_segments(
        duration_s=600,
        keyframes=every(2, 600),
        target_seconds=120,
        idle=[Interval(181, 299.5)],
        min_idle_seconds=30,
    )
    assert plan.mode == "copy"
    (skipped,) = plan.skipped
    # Inward to keyframes, or outward by at most half a second (299.5 -> 300).
    assert (skipped.start_s, skipped.end_s) == (182, 300)


def test_short_idle_is_not_skipped() -> None:
    plan = plan_segments(
        duration_s=600,
        keyframes=every(2, 600),
        target_seconds=120,
        idle=[Interval(100, 120)],
        min_idle_seconds=30,
    )
    assert plan.skipped == ()


def test_overlapping_and_touching_idle_merge() -> None:
    merged = normalise_idle(
        [Interval(50, 70), Interval(10, 30), Interval(30, 45), Interval(60, 90)],
        duration_s=100,
        min_seconds=30,
    )
    assert merged == [Interval(10, 45), Interval(50, 90)]


def test_idle_is_clipped_to_the_recording() -> None:
    merged = normalise_idle([Interval(-5, 40), Interval(80, 500)], duration_s=100, min_seconds=10)
    assert merged == [Interval(0, 40), Interval(80, 100)]


def test_idle_at_start_and_end() -> None:
    plan = plan_segments(
        duration_s=600,
        keyframes=every(2, 600),
        target_seconds=120,
        idle=[Interval(0, 61), Interval(500, 600)],
        min_idle_seconds=30,
    )
    assert plan.segments[0].skip_reason == "idle"
    assert plan.segments[0].start_s == 0
    assert plan.segments[-1].skip_reason == "idle"
    assert plan.segments[-1].end_s == 600
    check_invariants(plan, 600)


def test_all_idle_recording_has_nothing_to_analyse() -> None:
    plan = plan_segments(
        duration_s=300, keyframes=[0.0], target_seconds=60, idle=[Interval(0, 300)],
        min_idle_seconds=30,
    )  # fmt: skip
    assert plan.to_analyse == ()
    assert len(plan.segments) == 1


def test_idle_lost_by_sparse_keyframes_switches_to_reencode() -> None:
    # Keyframes every 50 s cannot hold a 60-second idle stretch at 20..80.
    plan = plan_segments(
        duration_s=300,
        keyframes=every(50, 300),
        target_seconds=50,
        idle=[Interval(20, 80)],
        min_idle_seconds=30,
    )
    assert plan.mode == "reencode"
    assert [(s.start_s, s.end_s) for s in plan.skipped] == [(20, 80)]


def test_one_third_idle_saves_a_third_of_calls() -> None:
    idle = [Interval(600 * k + 200, 600 * k + 400) for k in range(6)]
    with_idle = plan_segments(
        duration_s=3600, keyframes=every(2, 3600), target_seconds=100, idle=idle,
        min_idle_seconds=30,
    )  # fmt: skip
    without = plan_segments(
        duration_s=3600, keyframes=every(2, 3600), target_seconds=100, idle=[],
        min_idle_seconds=30,
    )  # fmt: skip
    assert len(without.to_analyse) == 36
    assert len(with_idle.to_analyse) == 24
    assert sum(s.duration_s for s in with_idle.skipped) == 1200


@pytest.mark.parametrize(("start", "end", "target", "n"), [(0, 100, 30, 3), (0, 10, 30, 1)])
def test_split_evenly(start: float, end: float, target: float, n: int) -> None:
    cuts = split_evenly(start, end, target)
    assert len(cuts) == n - 1


@pytest.mark.parametrize("bad", [{"duration_s": 0}, {"target_seconds": 0}])
def test_rejects_nonsense(bad: dict[str, float]) -> None:
    args = {"duration_s": 10.0, "keyframes": [], "target_seconds": 5.0, "idle": []}
    args.update(bad)
    with pytest.raises(ValueError):
        plan_segments(**args, min_idle_seconds=30)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(300))
def test_random_plans_hold_invariants(seed: int) -> None:
    rng = random.Random(seed)
    duration = rng.uniform(1, 7200)
    target = rng.choice([10, 30, 60, 120, 300])
    kind = rng.choice(["dense", "sparse", "none", "random"])
    if kind == "dense":
        kfs = every(rng.choice([1, 2, 5]), duration)
    elif kind == "sparse":
        kfs = every(rng.uniform(30, 600), duration)
    elif kind == "none":
        kfs = []
    else:
        kfs = sorted(rng.uniform(0, duration) for _ in range(rng.randint(0, 400)))
    idle = []
    for _ in range(rng.randint(0, 8)):
        a = rng.uniform(-10, duration)
        idle.append(Interval(a, a + rng.uniform(0, 600)))
    min_idle = rng.choice([5, 30, 60])
    plan = plan_segments(
        duration_s=duration, keyframes=kfs, target_seconds=target, idle=idle,
        min_idle_seconds=min_idle,
    )  # fmt: skip
    check_invariants(plan, duration)
    exact_idle = normalise_idle(idle, duration_s=duration, min_seconds=min_idle)
    for seg in plan.skipped:
        # Skipped time is always inside a detected idle stretch, and long enough.
        assert any(i.start_s - 0.501 <= seg.start_s and seg.end_s <= i.end_s + 0.501
                   for i in exact_idle)  # fmt: skip
        assert seg.duration_s >= min_idle - 1e-3
    for seg in plan.to_analyse:
        assert seg.duration_s <= 1.5 * target + 1e-3
    if plan.mode == "copy":
        for seg in plan.segments[1:]:
            assert any(abs(seg.start_s - k) < 1e-6 for k in kfs), "copy cuts lie on keyframes"
    else:
        # Re-encode keeps idle stretches exactly.
        assert [(s.start_s, s.end_s) for s in plan.skipped] == [
            (i.start_s, i.end_s) for i in exact_idle
        ]


def test_idle_near_the_ends_and_near_each_other_is_glued() -> None:
    merged = normalise_idle(
        [Interval(0.007, 40), Interval(40.5, 70), Interval(100, 199.6)],
        duration_s=200,
        min_seconds=30,
    )
    assert merged == [Interval(0, 70), Interval(100, 200)]
    plan = plan_segments(
        duration_s=200, keyframes=every(2, 200), target_seconds=30,
        idle=[Interval(0.007, 40)], min_idle_seconds=30,
    )  # fmt: skip
    assert plan.segments[0] == plan.skipped[0]
    assert plan.segments[0].start_s == 0
