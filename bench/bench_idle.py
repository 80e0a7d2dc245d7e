"""Model calls saved by idle skipping, on a recording that is one-third idle.

Uses the same cached 60-minute 720p screenshare as bench_preprocess.py (a third of it still
and silent by construction), detects idle with `media.detect_idle`, and plans segments with
and without idle skipping at the default segment length (120 s) and idle minimum (30 s).
Calls saved = MAP calls not made; seconds saved = video the model never sees (tokens scale
with seconds: ~300 input tokens per second at default media resolution).

    make bench-idle                  # or: .venv/bin/python bench/bench_idle.py --append
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time

from bench_preprocess import CACHE, MIN_IDLE, TARGET_SECONDS, append_section

from analysis_engine import media
from analysis_engine.planning import plan_segments
from analysis_engine.settings import TOKENS_PER_SECOND
from devtools.media import make_long_screenshare


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--target-seconds", type=float, default=TARGET_SECONDS)
    parser.add_argument("--append", action="store_true", help="append results to RESULTS.md")
    args = parser.parse_args()

    path, true_idle = make_long_screenshare(CACHE, minutes=args.minutes)
    info = media.probe(path)
    kfs = media.keyframe_times(path)
    t0 = time.perf_counter()
    idle = media.detect_idle(path, info, min_seconds=MIN_IDLE)
    idle_s = time.perf_counter() - t0

    def plan(with_idle: bool):  # type: ignore[no-untyped-def]
        return plan_segments(
            duration_s=info.duration_s,
            keyframes=kfs,
            target_seconds=args.target_seconds,
            idle=idle if with_idle else [],
            min_idle_seconds=MIN_IDLE,
        )

    skipping, baseline = plan(True), plan(False)
    calls_with, calls_without = len(skipping.to_analyse), len(baseline.to_analyse)
    sent_with = sum(s.duration_s for s in skipping.to_analyse)
    sent_without = sum(s.duration_s for s in baseline.to_analyse)
    tps = TOKENS_PER_SECOND["default"]
    truth = sum(b - a for a, b in true_idle)
    report = "\n".join(
        [
            f"### {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC — `make bench-idle`",
            "",
            f"Input: the same {args.minutes}-minute 720p screenshare, {truth / info.duration_s:.0%}"
            f" idle by construction ({len(true_idle)} still+silent stretches of "
            f"{true_idle[0][1] - true_idle[0][0]:.0f} s). Segment target "
            f"{args.target_seconds:g} s, idle minimum {MIN_IDLE:g} s. Idle detection took "
            f"{idle_s:.1f} s and found {len(idle)} stretches, "
            f"{sum(i.duration_s for i in idle):.0f} s.",
            "",
            "| | MAP calls | video seconds sent | est. input tokens |",
            "|---|---:|---:|---:|",
            f"| without idle skipping | {calls_without} | {sent_without:,.0f} | "
            f"{sent_without * tps:,.0f} |",
            f"| with idle skipping | {calls_with} | {sent_with:,.0f} | {sent_with * tps:,.0f} |",
            f"| **saved** | **{calls_without - calls_with} "
            f"({(calls_without - calls_with) / calls_without:.0%})** | "
            f"**{sent_without - sent_with:,.0f} ({1 - sent_with / sent_without:.0%})** | "
            f"**{(sent_without - sent_with) * tps:,.0f}** |",
            "",
            "Calls saved are fewer than the idle share because active stretches between idle "
            "ones still round to whole segments; tokens (and Gemini time) track the seconds.",
            "",
        ]
    )
    print(report)
    if args.append:
        append_section(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
