"""Deterministic detectors over the stitched video (ffmpeg adapter; no model involved).

One ffmpeg pass decodes the video once and runs blackdetect + freezedetect on the picture and
silencedetect on the sound: decoding dominates the cost, so three separate passes would
triple it. ffmpeg runs with `-copyts`, so every time it prints is already on the test clock
(the stitched file's timestamps are the test clock).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from analysis_engine import media
from analysis_engine.models import Interval
from proctor_video.events import complement

# Thresholds: a hand over the lens is dark, not perfectly black; a frozen feed repeats frames
# exactly (a still person still breathes and blinks), so freeze needs a long duration.
BLACK_FILTER = "blackdetect=d=2:pic_th=0.90:pix_th=0.12"
FREEZE_FILTER = "freezedetect=n=0.003:d=8"
SILENCE_FILTER = "silencedetect=noise=-35dB:d=1.5"
# Decoding is the cost (~25× realtime per core for 640x480 VP8); the detectors work as well
# on a small, 5 fps picture, and without the loop filter (~15% less decode CPU).
VIDEO_PREP = "fps=5,scale=160:-2"
FAST_DECODE = ("-skip_loop_filter", "all", "-flags2", "+fast")

_BLACK = re.compile(r"black_start:\s*([\d.]+)\s+black_end:\s*([\d.]+)")
_FREEZE_START = re.compile(r"freeze_start:\s*([\d.]+)")
_FREEZE_END = re.compile(r"freeze_end:\s*([\d.]+)")
_SILENCE_START = re.compile(r"silence_start:\s*(-?[\d.]+)")
_SILENCE_END = re.compile(r"silence_end:\s*([\d.]+)")


@dataclass(frozen=True)
class Signals:
    black: tuple[Interval, ...]
    frozen: tuple[Interval, ...]
    silence: tuple[Interval, ...]
    speech: tuple[Interval, ...]  # sound above the silence threshold
    has_audio: bool
    seconds_elapsed: float

    def to_dict(self) -> dict[str, object]:
        def spans(items: tuple[Interval, ...]) -> list[list[float]]:
            return [[round(i.start_s, 2), round(i.end_s, 2)] for i in items]

        return {
            "black": spans(self.black),
            "frozen": spans(self.frozen),
            "speech": spans(self.speech),
            "has_audio": self.has_audio,
            "detectors": {"video": f"{VIDEO_PREP},{BLACK_FILTER},{FREEZE_FILTER}",
                          "audio": SILENCE_FILTER},
        }  # fmt: skip


def parse_detector_log(
    text: str, *, start_s: float, end_s: float
) -> tuple[list[Interval], list[Interval], list[Interval]]:
    """(black, frozen, silence) from ffmpeg's log; open intervals close at `end_s`."""
    black = [Interval(float(a), float(b)) for a, b in _BLACK.findall(text)]
    frozen = _pairs(text, _FREEZE_START, _FREEZE_END, end_s)
    silence = _pairs(text, _SILENCE_START, _SILENCE_END, end_s)
    silence = [Interval(max(i.start_s, start_s), i.end_s) for i in silence]
    return black, frozen, silence


def _pairs(
    text: str, starts: re.Pattern[str], ends: re.Pattern[str], end_s: float
) -> list[Interval]:
    """Pair start/end markers in log order (a detector may leave the last one open)."""
    out: list[Interval] = []
    open_at: float | None = None
    for line in text.splitlines():
        if (m := starts.search(line)) is not None:
            open_at = float(m.group(1))
        elif (m := ends.search(line)) is not None and open_at is not None:
            out.append(Interval(open_at, float(m.group(1))))
            open_at = None
    if open_at is not None and open_at < end_s:
        out.append(Interval(open_at, end_s))
    return out


def signals_argv(video: Path, *, threads: int = 1, ffmpeg: str = media.FFMPEG) -> list[str]:
    """One decode, every detector: black + freeze on a small 5 fps picture, silence on sound."""
    return [
        ffmpeg, "-hide_banner", "-nostats", "-nostdin", "-loglevel", "info",
        "-threads", str(threads), *FAST_DECODE, "-copyts", "-i", str(video),
        "-map", "0:v:0?", "-vf", f"{VIDEO_PREP},{BLACK_FILTER},{FREEZE_FILTER}",
        "-map", "0:a:0?", "-af", SILENCE_FILTER,
        "-f", "null", "-",
    ]  # fmt: skip


def detect_signals(
    video: Path,
    *,
    start_s: float,
    end_s: float,
    has_audio: bool,
    threads: int = 1,
) -> Signals:
    """Run the detectors over `video` (times on the test clock)."""
    started = time.monotonic()
    # A long test decodes for minutes; allow ~1 s of wall time per 4 s of video on top.
    proc = media.run_ffmpeg(signals_argv(video, threads=threads), timeout=600 + end_s / 4)
    black, frozen, silence = parse_detector_log(proc.stderr, start_s=start_s, end_s=end_s)
    speech = complement(silence, start_s, end_s) if has_audio else []
    return Signals(
        black=tuple(black),
        frozen=tuple(frozen),
        silence=tuple(silence),
        speech=tuple(speech),
        has_audio=has_audio,
        seconds_elapsed=round(time.monotonic() - started, 3),
    )
