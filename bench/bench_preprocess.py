"""Preprocessing speed and memory on one core: probe + keyframes + idle detection + cutting.

Generates (once, cached outside git in $BENCH_CACHE, default /tmp/analysis-bench-cache) a
60-minute 1280x720 30 fps H.264/AAC screenshare: a mostly static desktop with an animated pane
and a moving cursor while "working", and still, silent stretches a third of the time. Then,
pinned to ONE core (sched_setaffinity, inherited by the ffmpeg children) and with
`-threads 1`, it times the steps the runner performs before any model call and reports
x realtime and peak memory (max RSS of this process and of the largest ffmpeg child).

    make bench-preprocess            # or: .venv/bin/python bench/bench_preprocess.py --append
Targets: >= 100x realtime, < 1 GiB.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from analysis_engine import media
from analysis_engine.clips import segment_clips
from analysis_engine.planning import plan_segments
from devtools.media import make_long_screenshare

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
CACHE = Path(os.environ.get("BENCH_CACHE") or Path(tempfile.gettempdir()) / "analysis-bench-cache")
TARGET_SECONDS = 120.0  # Settings.segment_seconds default
MIN_IDLE = 30.0  # Settings.idle_min_seconds default


def pin_one_core() -> int:
    cpus = sorted(os.sched_getaffinity(0))
    cpu = cpus[-1]
    os.sched_setaffinity(0, {cpu})
    return cpu


def cpu_seconds() -> float:
    """User+system CPU of this process and its finished children (ffmpeg/ffprobe)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(label: str, steps: list[tuple[str, float, float]], fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    """Run one step, recording (label, wall seconds, CPU seconds)."""
    print(f"  {label} ...", flush=True)  # progress: some steps take a minute on one core
    t0, c0 = time.perf_counter(), cpu_seconds()
    out = fn(*args, **kwargs)
    steps.append((label, time.perf_counter() - t0, cpu_seconds() - c0))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument(
        "--gop", type=float, default=5.0, help="keyframe interval in seconds (0: one keyframe)"
    )
    parser.add_argument("--append", action="store_true", help="append results to RESULTS.md")
    args = parser.parse_args()

    t0 = time.perf_counter()
    path, true_idle = make_long_screenshare(
        CACHE, minutes=args.minutes, gop_seconds=args.gop or None
    )
    gen_s = time.perf_counter() - t0
    print(f"recording: {path} ({path.stat().st_size / 1e6:.0f} MB; ready in {gen_s:.1f}s)")

    core = pin_one_core()
    media._read_packets_cached.cache_clear()
    steps: list[tuple[str, float, float]] = []
    info = timed("probe", steps, media.probe, path)
    kfs = timed("keyframe_times (ffprobe packet pass)", steps, media.keyframe_times, path)
    idle = timed(
        "detect_idle (reuses packet pass; freeze+silence on candidates)",
        steps,
        media.detect_idle,
        path,
        info,
        min_seconds=MIN_IDLE,
        threads=1,
    )
    plan = timed(
        "plan_segments",
        steps,
        plan_segments,
        duration_s=info.duration_s,
        keyframes=kfs,
        target_seconds=TARGET_SECONDS,
        idle=idle,
        min_idle_seconds=MIN_IDLE,
    )
    out_dir = Path(tempfile.mkdtemp(prefix="bench-segs-"))
    try:
        # What the runner does: stream-copy cuts, or with sparse keyframes no cut at all
        # (the whole file is uploaded once and segments become clip offsets).
        clips = timed(
            f"segment_clips ({plan.mode})",
            steps,
            segment_clips,
            path,
            info,
            plan,
            out_dir,
            threads=1,
        )
        n_files = len({clip.path for clip in clips.values()})
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    # Cold idle detection on its own (no cached packet pass), for the record.
    media._read_packets_cached.cache_clear()
    cold: list[tuple[str, float, float]] = []
    label = "detect_idle alone, cold (own packet pass)"
    timed(label, cold, media.detect_idle, path, info, min_seconds=MIN_IDLE, threads=1)

    wall = sum(w for _, w, _ in steps)
    cpu = sum(c for _, _, c in steps)
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    found = sum(i.duration_s for i in idle)
    truth = sum(b - a for a, b in true_idle)
    load = os.getloadavg()
    keyframes_desc = (
        f"keyframe every {args.gop:g} s" if args.gop else "sparse keyframes (one per 10 minutes)"
    )
    lines = [
        f"### {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC — `make bench-preprocess`",
        "",
        f"Input: {args.minutes}-minute {info.width}x{info.height} {info.fps:g} fps "
        f"{info.video_codec}/{info.audio_codec} screenshare, {path.stat().st_size / 1e6:.0f} MB, "
        f"{keyframes_desc}, {truth / info.duration_s:.0%} idle by construction. One core "
        f"(cpu {core}, `sched_setaffinity`), ffmpeg `-threads 1`. Load average at the end: "
        f"{load[0]:.2f} / {load[1]:.2f} (shared 2-core machine; other jobs were running).",
        "",
        "| step | wall s | x realtime (wall) | CPU s | x realtime (CPU) |",
        "|---|---:|---:|---:|---:|",
        *(row(label, w, c, info.duration_s) for label, w, c in steps),
        row("**total**", wall, cpu, info.duration_s),
        *(row(label, w, c, info.duration_s) for label, w, c in cold),
        "",
        "Wall time suffers from the shared machine (other processes on the same core); CPU "
        "time (user+sys of Python and every ffmpeg/ffprobe child) is what the work costs on "
        "one dedicated core.",
        "",
        f"Peak memory: Python process {self_kb / 1024:.0f} MiB, largest ffmpeg/ffprobe child "
        f"{child_kb / 1024:.0f} MiB (sum {(self_kb + child_kb) / 1024:.0f} MiB; target < 1024).",
        f"Idle found: {len(idle)} stretches, {found:.0f} s (constructed: {len(true_idle)}, "
        f"{truth:.0f} s). Plan: {len(plan.segments)} segments, mode {plan.mode}, "
        f"{len(plan.to_analyse)} to analyse, {n_files} file(s) to upload.",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    if args.append:
        append_section(report)
    ok = info.duration_s / cpu >= 100 and (self_kb + child_kb) < 1024 * 1024
    print("targets met" if ok else "TARGETS MISSED")
    return 0


def row(label: str, wall: float, cpu: float, duration: float) -> str:
    return (
        f"| {label} | {wall:.2f} | {duration / max(wall, 1e-9):,.0f} | {cpu:.2f} | "
        f"{duration / max(cpu, 1e-9):,.0f} |"
    )


def append_section(report: str) -> None:
    """Append under a '## Preprocessing' heading (created if missing)."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if "## Preprocessing" not in text:
        text = text.rstrip("\n") + "\n\n## Preprocessing\n\n"
        RESULTS.write_text(text + report)
        return
    head, _, rest = text.partition("## Preprocessing")
    # Insert at the end of the Preprocessing section (before the next '## ' heading).
    body, sep, tail = rest.partition("\n## ")
    RESULTS.write_text(head + "## Preprocessing" + body.rstrip("\n") + "\n\n" + report
                       + (("\n## " + tail) if sep else ""))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
