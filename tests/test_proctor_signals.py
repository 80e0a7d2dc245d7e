"""The proctor's ffmpeg detectors on generated recordings: steady sound (a fan, a tone) is not
speech; real speech (espeak-ng) is; a hole in the recording is neither frozen nor sound."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from analysis_engine import intervals as iv
from analysis_engine.models import Interval
from proctor_video.events import signal_events
from proctor_video.signals import detect_signals

SPEECH_TEXT = (
    "I am reading the question aloud. The answer to number three is probably the second "
    "option, because the function returns early when the list is empty."
)


def _speech_wav(path: Path) -> Path:
    subprocess.run(["espeak-ng", "-w", str(path), SPEECH_TEXT], check=True)
    return path


def _webcam(path: Path, speech: Path) -> Path:
    """0-8 s brown noise (a fan), 8-16 s a 440 Hz tone, 16-~24 s speech, then 6 s silence."""
    graph = (
        "anoisesrc=color=brown:amplitude=0.3:sample_rate=48000:duration=8[fan];"
        "sine=frequency=440:sample_rate=48000:duration=8,volume=0.5[tone];"
        "[1:a]aresample=48000,aformat=channel_layouts=mono[talk];"
        "anullsrc=r=48000:cl=mono,atrim=duration=6[quiet];"
        "[fan][tone][talk][quiet]concat=n=4:v=0:a=1[a]"
    )
    cmd = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=5", "-i", str(speech),
        "-filter_complex", graph, "-map", "0:v", "-map", "[a]", "-t", "30", "-shortest",
        "-c:v", "libvpx", "-b:v", "100k", "-deadline", "realtime", "-cpu-used", "16",
        "-c:a", "libopus", "-b:a", "32k", "-threads", "1", str(path),
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    return path


@pytest.fixture(scope="module")
def webcam(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("signals")
    return _webcam(root / "webcam.webm", _speech_wav(root / "speech.wav"))


def test_fan_and_tone_are_sound_but_only_speech_is_speech_like(webcam: Path) -> None:
    signals = detect_signals(webcam, start_s=0, end_s=30, has_audio=True)
    # The fan and the tone are loud ...
    assert iv.total_s(iv.intersect(signals.sound, [Interval(1, 15)])) >= 12
    # ... but not speech-like; the speech is.
    assert iv.total_s(iv.intersect(signals.speech, [Interval(0, 15)])) <= 1
    assert iv.total_s(iv.intersect(signals.speech, [Interval(17, 23)])) >= 5
    events = signal_events(speech=signals.speech)
    assert [e.type for e in events] == ["audio_activity"]
    assert 14 <= events[0].start_s <= 17.5 and 22 <= events[0].end_s <= 26
    assert not [e for e in events if e.type == "other_voice"]
