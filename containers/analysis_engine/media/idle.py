"""Idle detection: still and silent stretches a model call would be wasted on."""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from pathlib import Path

from analysis_engine import detector_log
from analysis_engine import intervals as iv
from analysis_engine.media.packets import (
    Packet,
    read_packets,
)
from analysis_engine.media.runner import (
    DEFAULT_TIMEOUT,
    ffmpeg_base,
    run_ffmpeg,
    seek_args,
    thread_args,
)
from analysis_engine.models import Interval, MediaInfo

log = logging.getLogger(__name__)


# Idle candidates: a second whose non-key video packets average at most this many bytes per
# frame (or that has no video packets at all: variable-frame-rate recorders emit nothing for a
# still screen) is "quiet". x264/VP8/VP9 encode an unchanged 720p frame in ~10-110 bytes; any
# visible change costs far more. The bound scales with the picture area.
QUIET_FRAME_BYTES_720P = 400
# Idle verification decodes keyframes only when they are at most this far apart.
KEYFRAME_VERIFY_MAX_GAP = 10.0
# With sparse keyframes, a full decode verifies a candidate only if reaching it (from the
# keyframe before it) decodes at most this many frames per frame of the candidate itself.
FULL_DECODE_BUDGET = 2.0
SILENCE_NOISE_DB = -50.0
# Picture change inside a quiet packet run. freezedetect averages the difference over the
# whole frame, so one typed character in a 720p editor (~40-150 changed pixels) is far below
# any noise threshold, and so is a blinking caret (~40 pixels). Instead each sampled frame is
# compared with the one CHANGE_LAG_S earlier (and with the previous sample), counting pixels
# that changed by more than CHANGE_PIXEL_LEVEL: slow typing (1 char/s) changes 150-300 pixels
# over 6 s, a caret that blinks in place at most its own ~40. Measured on a dark 720p editor.
CHANGE_LAG_S = 6.0
CHANGE_PIXEL_LEVEL = 24
CHANGED_PIXELS_720P = 80.0
MIN_CHANGED_PIXELS = 20.0
STILL_PIXELS = 2.0  # consecutive samples this close are the same picture
CHANGE_SETTLE_S = 1.0  # a still stretch starts this long after the sample showing a change


def silence_detect_argv(
    path: Path,
    *,
    min_seconds: float,
    noise_db: float = SILENCE_NOISE_DB,
    start: float | None = None,
    end: float | None = None,
    threads: int | None = None,
) -> list[str]:
    argv = [*ffmpeg_base(), "-loglevel", "info", *thread_args(threads)]
    argv += [*seek_args(start, end), "-i", str(path), "-map", "0:a:0"]
    argv += ["-af", f"silencedetect=n={noise_db:g}dB:d={min_seconds:g}", "-f", "null", "-"]
    return argv


def change_detect_argv(
    path: Path,
    *,
    start: float,
    end: float,
    lag_s: float = CHANGE_LAG_S,
    keyframes_only: bool,
    has_audio: bool,
    min_seconds: float,
    noise_db: float = SILENCE_NOISE_DB,
    threads: int | None = None,
) -> list[str]:
    """Changed-pixel counts of [start, end): each sampled frame (a keyframe, or one per second
    of a full decode) against the previous sample (`metadata@step`) and against the frame
    `lag_s` earlier (`metadata@lag`: the same file opened a second time, `lag_s` earlier);
    silencedetect on the sound in the same pass. Printed times are relative to `start`."""
    ref_start = max(0.0, start - lag_s)
    offset = lag_s - (start - ref_start)  # pairs frame t with frame t - lag_s
    sample = "" if keyframes_only else "fps=1,"
    binarise = (
        f"format=gray,lutyuv=y='if(gt(val,{CHANGE_PIXEL_LEVEL}),255,0)',signalstats,"
        "metadata@{name}=print:key=lavfi.signalstats.YAVG"
    )
    graph = (
        f"[0:v:0]{sample}format=gray,split[c][m];"
        f"[c]tblend=all_mode=difference,{binarise.format(name='step')},nullsink;"
        f"[1:v:0]{sample}format=gray[r];"
        f"[m][r]blend=all_mode=difference,{binarise.format(name='lag')}[v]"
    )
    maps = ["-map", "[v]"]
    if has_audio:
        graph += f";[0:a:0]silencedetect=n={noise_db:g}dB:d={min_seconds:g}[a]"
        maps += ["-map", "[a]"]
    skip = ["-skip_frame:v", "nokey"] if keyframes_only else []
    argv = [*ffmpeg_base(), "-loglevel", "info", *thread_args(threads)]
    argv += [*skip, *seek_args(start, end), "-i", str(path)]
    argv += [*skip, *seek_args(ref_start, end), "-itsoffset", f"{offset:.3f}", "-i", str(path)]
    return [*argv, "-filter_complex", graph, *maps, "-f", "null", "-"]


def changed_pixels_threshold(info: MediaInfo) -> float:
    """Changed pixels that mean real activity (a few typed characters), for this frame size."""
    pixels = (info.width or 1280) * (info.height or 720)
    return max(MIN_CHANGED_PIXELS, CHANGED_PIXELS_720P * min(1.0, pixels / (1280 * 720)))


def active_from_changes(
    step: Sequence[tuple[float, float]],
    lagged: Sequence[tuple[float, float]],
    *,
    lag_s: float,
    threshold: float,
) -> list[Interval]:
    """Where the picture really changed (pure), from changed-pixel counts per sample time.

    `lagged[t]` compares the frame at t with the one `lag_s` earlier: above `threshold`,
    something changed in [t - lag_s, t], except between consecutive samples seen to be
    identical (`step` ≈ 0). A blinking caret differs from sample to sample but never adds up
    over the lag, so alone it is not activity. A single step above the threshold (a paste, a
    scroll) is activity by itself. Samples less than `lag_s` after the file's start have no
    reference and count by step only.
    """
    times = sorted({t for t, _ in lagged} | {t for t, _ in step})
    previous = dict(zip(times[1:], times[:-1], strict=False))
    still = [Interval(previous[t], t) for t, px in step if px <= STILL_PIXELS and t in previous]
    active = [Interval(previous[t], t) for t, px in step if px > threshold and t in previous]
    for t, px in lagged:
        if px > threshold and t >= lag_s - 1e-3:
            active += iv.subtract([Interval(t - lag_s, t)], still)
    return iv.merge(active)


def quiet_stretches(
    packets: Sequence[Packet],
    *,
    duration_s: float,
    min_seconds: float,
    max_frame_bytes: float,
    pad_s: float = 1.0,
) -> list[Interval]:
    """Candidate idle stretches from packet sizes alone (pure, no decoding).

    A whole second is quiet when its non-key video packets average <= `max_frame_bytes` (or it
    has none). Runs of quiet seconds at least `min_seconds - 2` long, padded by `pad_s`, are
    returned; freezedetect/silencedetect then find the exact idle ranges inside them.
    """
    n = max(1, math.ceil(duration_s))
    total = [0] * n
    count = [0] * n
    for p in packets:
        if p.key:
            continue  # periodic keyframes of a still screen are large but carry no change
        sec = min(n - 1, int(p.time_s))
        total[sec] += p.size
        count[sec] += 1
    quiet = [count[s] == 0 or total[s] / count[s] <= max_frame_bytes for s in range(n)]
    out: list[Interval] = []
    run_start: int | None = None
    for s, q in enumerate([*quiet, False]):
        if q and run_start is None:
            run_start = s
        elif not q and run_start is not None:
            if s - run_start >= min_seconds - 2:
                out.append(Interval(max(0.0, run_start - pad_s), min(duration_s, s + pad_s)))
            run_start = None
    return out


def detect_idle(
    path: Path,
    info: MediaInfo,
    *,
    min_seconds: float,
    threads: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> list[Interval]:
    """Stretches of at least `min_seconds` where the screen does not change and nothing is
    heard (no audio stream counts as silent).

    Why this design (measured on this machine with `-threads 1`, 60-minute 720p30 H.264
    screenshare, see bench/RESULTS.md): a full decode runs at only ~40x realtime even for a
    still screen (the decoder still reconstructs every 1280x720 frame: ~2.5 s of CPU per 100 s
    of idle), so freezedetect over the whole file misses the >= 100x target by far. Instead:

    1. Container pass (ffprobe packet sizes, no decoding, ~500-1000x): a still screen is a run
       of seconds whose P-frames are tiny. These runs are the only candidates.
    2. Verification per candidate, one ffmpeg process counting changed pixels (see
       `change_detect_argv`, `active_from_changes`) + silencedetect: a whole-frame freeze
       threshold cannot see one typed character, a changed-pixel count can, and comparing
       with the frame CHANGE_LAG_S earlier tells typing (adds up) from a blinking caret.
       - keyframes dense (gap <= KEYFRAME_VERIFY_MAX_GAP): decode keyframes only
         (`-skip_frame:v nokey`, ~20x cheaper than a full decode; the file is opened twice,
         for the lagged reference, so ~2x that). Boundaries come from the packet run (1 s
         resolution) where the change was over before it.
       - keyframes sparse (one a minute, or only one): a decode must start at the keyframe
         before the candidate. When that costs at most FULL_DECODE_BUDGET x the candidate's
         own frames, full decode sampled at 1 fps. Otherwise (measured: 60-minute CFR file
         with a keyframe per 10 minutes, ~110 s of CPU for 12 candidates = 33x realtime) the
         picture check rests on the packet run alone (every P-frame tiny for >= min_seconds;
         this path cannot see slow typing) and only silencedetect runs (audio decodes
         without seeking cost).
    """
    packets = read_packets(path, timeout=timeout)
    pixels = (info.width or 1280) * (info.height or 720)
    max_frame_bytes = QUIET_FRAME_BYTES_720P * max(1.0, pixels / (1280 * 720))
    runs = quiet_stretches(
        packets,
        duration_s=info.duration_s,
        min_seconds=min_seconds,
        max_frame_bytes=max_frame_bytes,
        pad_s=0.0,
    )
    idle: list[Interval] = []
    for run in runs:
        found = _verify_candidate(path, info, run, packets, min_seconds, threads, timeout)
        idle.extend(i for i in found if i.duration_s >= min_seconds - 1e-6)
    log.debug("idle: %d candidates, %d idle stretches", len(runs), len(idle))
    return idle


def _verify_candidate(
    path: Path,
    info: MediaInfo,
    run: Interval,
    packets: Sequence[Packet],
    min_seconds: float,
    threads: int | None,
    timeout: float,
) -> list[Interval]:
    """Exact still+silent stretches inside one quiet packet run (see `detect_idle`)."""
    lo, hi = max(0.0, run.start_s - 1.0), min(info.duration_s, run.end_s + 1.0)
    keyframes = [p.time_s for p in packets if p.key]
    inside = [k for k in keyframes if lo <= k <= hi]
    gap = keyframe_gap(inside, lo, hi)
    sparse = gap > KEYFRAME_VERIFY_MAX_GAP
    if sparse and _seek_cost(packets, keyframes, max(0.0, lo - CHANGE_LAG_S), hi) > (
        FULL_DECODE_BUDGET
    ):
        return _silent_part(path, info, run, min_seconds, threads, timeout)
    argv = change_detect_argv(
        path,
        start=lo,
        end=hi,
        keyframes_only=not sparse,
        has_audio=info.has_audio,
        min_seconds=min_seconds,
        threads=threads,
    )
    stderr = run_ffmpeg(argv, timeout=timeout).stderr
    px = (info.width or 1280) * (info.height or 720) / 255.0  # YAVG of a 0/255 mask → pixels

    def counts(name: str) -> list[tuple[float, float]]:
        values = detector_log.metadata_values(stderr, name, "lavfi.signalstats.YAVG")
        return [(round(lo + t, 3), v * px) for t, v in values if lo + t <= hi + 1e-3]

    active = active_from_changes(
        counts("step"),
        counts("lag"),
        lag_s=CHANGE_LAG_S,
        threshold=changed_pixels_threshold(info),
    )
    still = iv.complement(active, lo, hi)
    if not sparse:
        # Keyframe samples are seconds apart; the packet run is accurate to one second.
        still = [_settle(_refine_to_run(f, run, inside), f, lo) for f in still]
    else:
        still = [_settle(f, f, lo) for f in still]
    still = [f for f in still if f.end_s > f.start_s]
    if info.has_audio:
        silent = detector_log.silences(stderr, open_end=hi, offset=lo)
        still = iv.intersect(still, silent)
    return still


def _settle(still: Interval, measured: Interval, lo: float) -> Interval:
    """A still stretch that begins at a sample showing a change (a paste) starts a little
    later, so that first frame of the new picture stays in the analysed part; unless the
    packet run moved its start earlier (the change was over before the run began)."""
    if measured.start_s <= lo or still.start_s < measured.start_s:
        return still
    return Interval(round(still.start_s + CHANGE_SETTLE_S, 3), still.end_s)


def _seek_cost(
    packets: Sequence[Packet], keyframes: Sequence[float], lo: float, hi: float
) -> float:
    """Frames decoded to check [lo, hi] (from the keyframe before lo) per frame inside it."""
    start = max((k for k in keyframes if k <= lo + 1e-3), default=0.0)
    decoded = sum(1 for p in packets if start - 1e-3 <= p.time_s < hi)
    own = sum(1 for p in packets if lo <= p.time_s < hi)
    return decoded / max(1, own)


def _silent_part(
    path: Path,
    info: MediaInfo,
    run: Interval,
    min_seconds: float,
    threads: int | None,
    timeout: float,
) -> list[Interval]:
    """The packet run is the still stretch; keep the parts of it that are also silent."""
    if not info.has_audio:
        return [run]
    argv = silence_detect_argv(
        path, min_seconds=min_seconds, start=run.start_s, end=run.end_s, threads=threads
    )
    stderr = run_ffmpeg(argv, timeout=timeout).stderr
    silent = detector_log.silences(stderr, offset=run.start_s, open_end=run.end_s)
    return iv.intersect([run], silent)


def keyframe_gap(keyframes: Sequence[float], lo: float, hi: float) -> float:
    """Largest distance between consecutive keyframes in [lo, hi], counting the edges."""
    points = [lo, *keyframes, hi]
    return max(b - a for a, b in itertools.pairwise(points))


def _refine_to_run(frozen: Interval, run: Interval, keyframes: Sequence[float]) -> Interval:
    """A keyframe-only freeze starts at a keyframe and ends at the first keyframe that differs.
    The packet run is the 1-second-accurate still stretch: when the freeze starts at the run's
    first keyframe the stillness began with the run, and it cannot outlast the run."""
    first_kf = next((k for k in keyframes if k >= run.start_s - 1e-3), None)
    starts_with_run = frozen.start_s <= run.start_s or (
        first_kf is not None and abs(frozen.start_s - first_kf) < 1e-3
    )
    start = run.start_s if starts_with_run else frozen.start_s
    return Interval(round(start, 3), round(min(frozen.end_s, run.end_s), 3))
