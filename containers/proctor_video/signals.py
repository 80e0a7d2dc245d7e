"""Deterministic detectors over the stitched video (ffmpeg adapter; no model involved).

One ffmpeg pass decodes the video once and runs blackdetect + freezedetect on the picture and
a loudness meter on the sound: decoding dominates the cost, so separate passes would multiply
it. ffmpeg runs with `-copyts`, so every time it prints is already on the test clock (the
stitched file's timestamps are the test clock).

Sound: a level above a threshold is not a voice. A fan, a hum or a steady tone is loud and
*flat*; speech comes in syllables and words, so its loudness swings by 10-30 dB several times
a second. The meter reports the RMS level of every 100 ms of sound (`astats` reset per frame,
printed by `ametadata`), and a second counts as speech-like only when it is loud enough and
its loudness fluctuates like speech (measured: espeak-ng speech p90-p10 ≈ 12-50 dB over 3 s;
brown/pink noise ≈ 2 dB; a sine 0 dB). Stretches where no audio frames exist (a recording
gap) are never sound.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from analysis_engine import detector_log, media
from analysis_engine import intervals as iv
from analysis_engine.detector_log import Level
from analysis_engine.models import Interval

# Thresholds: a hand over the lens is dark, not perfectly black; a frozen feed repeats frames
# exactly (a still person still breathes and blinks), so freeze needs a long duration.
BLACK_FILTER = "blackdetect=d=2:pic_th=0.90:pix_th=0.12"
FREEZE_FILTER = "freezedetect=n=0.003:d=8"
# 100 ms frames of 16 kHz mono: cheap, and short enough to see syllables.
LEVEL_FRAME_SAMPLES = 1600
LEVEL_FILTER = (
    f"aresample=16000,aformat=channel_layouts=mono,asetnsamples=n={LEVEL_FRAME_SAMPLES}:p=0,"
    "astats=metadata=1:reset=1:measure_perchannel=none:measure_overall=RMS_level,"
    "ametadata=mode=print:key=lavfi.astats.Overall.RMS_level"
)
SOUND_DB = -35.0  # the loud frames of a window must reach this (a voice near the microphone)
FLOOR_DB = -70.0  # digital silence (-inf) counts as this
FLUCTUATION_DB = 6.0  # p90 - p10 of the 100 ms levels over the window: speech ≫ 6, noise ≈ 2
WINDOW_S = 3.0  # each second is judged with the seconds before and after it
# Decoding is the cost (~25× realtime per core for 640x480 VP8); the detectors work as well
# on a small, 5 fps picture, and without the loop filter (~15% less decode CPU).
VIDEO_PREP = "fps=5,scale=160:-2"
FAST_DECODE = ("-skip_loop_filter", "all", "-flags2", "+fast")


@dataclass(frozen=True)
class Signals:
    black: tuple[Interval, ...]
    frozen: tuple[Interval, ...]
    sound: tuple[Interval, ...]  # any sound above SOUND_DB (steady noise included)
    speech: tuple[Interval, ...]  # speech-like sound: loud and fluctuating
    has_audio: bool
    seconds_elapsed: float

    def to_dict(self) -> dict[str, object]:
        def spans(items: tuple[Interval, ...]) -> list[list[float]]:
            return [[round(i.start_s, 2), round(i.end_s, 2)] for i in items]

        return {
            "black": spans(self.black),
            "frozen": spans(self.frozen),
            "sound": spans(self.sound),
            "speech": spans(self.speech),
            "has_audio": self.has_audio,
            "detectors": {"video": f"{VIDEO_PREP},{BLACK_FILTER},{FREEZE_FILTER}",
                          "audio": f"{LEVEL_FILTER}; speech: >= {SOUND_DB:g} dB and "
                                   f"p90-p10 >= {FLUCTUATION_DB:g} dB over {WINDOW_S:g} s"},
        }  # fmt: skip


def parse_detector_log(
    text: str, *, start_s: float, end_s: float
) -> tuple[list[Interval], list[Interval], list[Level]]:
    """(black, frozen, per-frame sound levels) from ffmpeg's log; open freezes close at
    `end_s`."""
    del start_s  # times are already on the test clock (-copyts)
    return (
        detector_log.blacks(text),
        detector_log.freezes(text, open_end=end_s),
        detector_log.levels(text),
    )


def sound_seconds(
    levels: Sequence[Level], *, start_s: float, end_s: float
) -> tuple[list[Interval], list[Interval]]:
    """(loud, speech-like) one-second stretches from per-frame levels (pure).

    A second is loud when its loud frames (p90) reach SOUND_DB, and speech-like when it is
    loud and the levels around it swing by at least FLUCTUATION_DB (p90 - p10). A second with
    (almost) no audio frames is neither: a hole in the recording is not sound.
    """
    first, last = math.floor(start_s), math.ceil(end_s)
    by_second: dict[int, list[float]] = {}
    for level in levels:
        db = level.db if math.isfinite(level.db) else FLOOR_DB
        by_second.setdefault(math.floor(level.time_s), []).append(max(FLOOR_DB, db))
    loud: list[Interval] = []
    speech: list[Interval] = []
    for second in range(first, last):
        own = by_second.get(second, [])
        if len(own) < 3:
            continue
        window = [*by_second.get(second - 1, []), *own, *by_second.get(second + 1, [])]
        p10, p90 = _percentile(window, 0.1), _percentile(window, 0.9)
        if _percentile(own, 0.9) < SOUND_DB:
            continue
        span = Interval(max(start_s, second), min(end_s, second + 1))
        loud.append(span)
        if p90 - max(p10, FLOOR_DB) >= FLUCTUATION_DB:
            speech.append(span)
    return iv.merge(loud), iv.merge(speech)


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[round(q * (len(ordered) - 1))]


def signals_argv(video: Path, *, threads: int = 1, ffmpeg: str = media.FFMPEG) -> list[str]:
    """One decode, every detector: black + freeze on a small 5 fps picture, levels on sound."""
    return [
        ffmpeg, "-hide_banner", "-nostats", "-nostdin", "-loglevel", "info",
        "-threads", str(threads), *FAST_DECODE, "-copyts", "-i", str(video),
        "-map", "0:v:0?", "-vf", f"{VIDEO_PREP},{BLACK_FILTER},{FREEZE_FILTER}",
        "-map", "0:a:0?", "-af", LEVEL_FILTER,
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
    black, frozen, levels = parse_detector_log(proc.stderr, start_s=start_s, end_s=end_s)
    sound, speech = sound_seconds(levels, start_s=start_s, end_s=end_s) if has_audio else ([], [])
    return Signals(
        black=tuple(black),
        frozen=tuple(frozen),
        sound=tuple(sound),
        speech=tuple(speech),
        has_audio=has_audio,
        seconds_elapsed=round(time.monotonic() - started, 3),
    )
