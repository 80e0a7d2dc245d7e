"""Plain ffmpeg detectors used only as test oracles (the product's detectors are
`media.detect_idle` and `proctor_video.signals`): what a file's frames and sound really are."""

from __future__ import annotations

from pathlib import Path

from analysis_engine import detector_log, media
from analysis_engine import intervals as iv
from analysis_engine.models import Interval


def _stderr(path: Path, *args: str) -> str:
    argv = [media.FFMPEG, "-hide_banner", "-nostats", "-loglevel", "info", "-i", str(path)]
    return media.run_ffmpeg([*argv, *args, "-f", "null", "-"]).stderr


def detect_freeze(path: Path, *, min_seconds: float, noise: float = 0.001) -> list[Interval]:
    text = _stderr(path, "-map", "0:v:0", "-vf", f"freezedetect=n={noise:g}:d={min_seconds:g}")
    return detector_log.freezes(text, open_end=media.probe(path).duration_s)


def detect_silence(path: Path, *, min_seconds: float, noise_db: float = -50.0) -> list[Interval]:
    af = f"silencedetect=n={noise_db:g}dB:d={min_seconds:g}"
    text = _stderr(path, "-map", "0:a:0", "-af", af)
    return detector_log.silences(text, open_end=media.probe(path).duration_s)


def detect_speech(path: Path, *, min_seconds: float = 0.5) -> list[Interval]:
    """Sound: the complement of silences of at least 1 s."""
    duration = media.probe(path).duration_s
    silent = detect_silence(path, min_seconds=1.0)
    return [i for i in iv.complement(silent, 0, duration) if i.duration_s >= min_seconds]


def detect_black(path: Path, *, min_seconds: float = 2.0) -> list[Interval]:
    vf = f"blackdetect=d={min_seconds:g}:pix_th=0.10:pic_th=0.98"
    return detector_log.blacks(_stderr(path, "-map", "0:v:0", "-vf", vf))
