"""The room's sound (numpy, 48 kHz mono), built from layers that are mixed, not concatenated.

    "sound": [{"kind": "room", "level_db": -58},
              {"kind": "speech", "start_s": 6, "end_s": 20, "engine": "flite", "voice": "slt",
               "level_db": -22, "who": "candidate"},
              {"kind": "keyboard", "start_s": 0, "end_s": 30, "rate": 6, "level_db": -34},
              {"kind": "music", "start_s": 0, "end_s": 30, "tempo": 96, "key": 3},
              {"kind": "fan"}, {"kind": "hum", "freq": 60}, {"kind": "tone", "freq": 440}]

`start_s`/`end_s` default to the whole recording; `level_db` is the layer's RMS level while
it plays (dBFS). Speech is real TTS: `engine` espeak-ng (`voice` e.g. `en-gb+m3`,
`en-us+f2`, with `rate` words per minute and `pitch` 0-99) or flite (`voice` kal, awb, rms,
slt); utterances repeat with short pauses (< 1 s) until the window is full, so a labelled
speech window is speech from its start to its end. `who` (candidate / other) is for the
labels; the sound does not depend on it.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.signal import lfilter

RATE = 48_000
ESPEAK = shutil.which("espeak-ng") or "espeak-ng"
FLITE = shutil.which("flite") or "flite"
FFMPEG = shutil.which("ffmpeg") or "ffmpeg"
KINDS = ("room", "speech", "keyboard", "music", "fan", "hum", "tone", "silence")
ENGINES = ("espeak-ng", "flite")
DEFAULT_LEVELS = {"room": -60.0, "speech": -22.0, "keyboard": -36.0, "music": -28.0,
                  "fan": -32.0, "hum": -34.0, "tone": -18.0}  # fmt: skip
TEXT = (
    "Can you tell me the answer to question four. I think it is the second option. "
    "The loop stops early when the list is empty. Then the function returns none. "
    "Wait, read the next one out loud. Number seven is the one about the cache."
)


def _run(argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(list(argv), capture_output=True, check=False, **kwargs)
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"{Path(argv[0]).name} failed ({proc.returncode}): {tail}")
    return proc


def decode(path: Path) -> np.ndarray:
    """Any audio file → float32 mono at RATE (ffmpeg resamples)."""
    proc = _run([FFMPEG, "-hide_banner", "-loglevel", "error", "-i", str(path),
                 "-f", "f32le", "-ac", "1", "-ar", str(RATE), "-"])  # fmt: skip
    return np.frombuffer(proc.stdout, np.float32).copy()


def tts(layer: Mapping[str, Any], sentence: str, cache: Path) -> np.ndarray:
    """One sentence spoken by the layer's engine and voice (cached by content)."""
    engine = str(layer.get("engine", "espeak-ng"))
    voice = str(layer.get("voice", "en" if engine == "espeak-ng" else "kal"))
    rate, pitch = int(layer.get("rate", 160)), int(layer.get("pitch", 50))
    key = hashlib.sha256(f"{engine}|{voice}|{rate}|{pitch}|{sentence}".encode()).hexdigest()
    wav = cache / f"tts-{key[:20]}.wav"
    if not wav.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = wav.with_suffix(".tmp.wav")
        if engine == "espeak-ng":
            _run([ESPEAK, "-v", voice, "-s", str(rate), "-p", str(pitch), "-w", str(tmp),
                  sentence])  # fmt: skip
        elif engine == "flite":
            _run([FLITE, "-voice", voice, "--setf", f"duration_stretch={160 / rate:.3f}",
                  "-t", sentence, "-o", str(tmp)])  # fmt: skip
        else:
            raise ValueError(f"sound: unknown speech engine {engine!r} {ENGINES}")
        tmp.replace(wav)
    return decode(wav)


def _window(layer: Mapping[str, Any], duration_s: float) -> tuple[int, int]:
    a = float(layer.get("start_s", 0.0))
    b = float(layer.get("end_s", duration_s))
    return round(max(0.0, a) * RATE), round(min(b, duration_s) * RATE)


def _speech(layer: Mapping[str, Any], n: int, rng: np.random.Generator, cache: Path) -> np.ndarray:
    sentences = [s.strip() + "." for s in str(layer.get("text", TEXT)).split(".") if s.strip()]
    start = int(rng.integers(len(sentences)))
    out, pos, k = np.zeros(n, np.float32), 0, 0
    while pos < n:
        said = tts(layer, sentences[(start + k) % len(sentences)], cache)
        said = _trim(said)
        take = min(len(said), n - pos)
        out[pos : pos + take] = said[:take]
        pos += take + int(rng.uniform(0.25, 0.8) * RATE)
        k += 1
    fade = min(n, RATE // 30)
    out[n - fade :] *= np.linspace(1, 0, fade, dtype=np.float32)
    return out


def _trim(x: np.ndarray) -> np.ndarray:
    """Drop the engine's leading and trailing silence (the pauses are ours to choose)."""
    loud = np.flatnonzero(np.abs(x) > 0.02 * (np.abs(x).max() or 1))
    return x[loud[0] : loud[-1] + 1] if len(loud) else x


def _keyboard(n: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n + RATE // 10, np.float32)
    t = np.arange(RATE // 25, dtype=np.float32) / RATE
    pos = 0.0
    while True:
        pos += rng.exponential(1.0 / rate)
        i = int(pos * RATE)
        if i >= n:
            break
        click = rng.normal(0, 1, len(t)).astype(np.float32) * np.exp(-t / 0.004)
        click = np.diff(click, prepend=0)  # bright: a key's plastic tick
        thump = np.sin(2 * np.pi * rng.uniform(120, 220) * t) * np.exp(-t / 0.012)
        out[i : i + len(t)] += (click + 0.6 * thump) * rng.uniform(0.6, 1.3)
    return out[:n]


def _music(n: int, tempo: float, key: int, rng: np.random.Generator) -> np.ndarray:
    """Instrumental pop: bass, a chord pad, an arpeggio, kick and hi-hat (no voice)."""
    beat = 60.0 / tempo
    t = np.arange(n, dtype=np.float32) / RATE
    root = 110.0 * 2 ** (key / 12)
    progression = (0, 7, 9, 5)  # I V vi IV
    bar = (t // (4 * beat)).astype(int) % 4
    degree = np.asarray(progression)[bar]
    f_bass = root * 2 ** (degree / 12)
    phase = np.cumsum(f_bass) / RATE
    bass = sum(np.sin(2 * np.pi * k * phase) / k**2 for k in (1, 3, 5))
    pad = sum(np.sin(2 * np.pi * np.cumsum(f_bass * 2 * 2 ** (iv / 12)) / RATE) for iv in (0, 4, 7))
    eighth = (t // (beat / 2)).astype(int)
    steps = np.asarray((0, 4, 7, 12, 7, 4, 0, 12))[eighth % 8]
    f_arp = root * 4 * 2 ** ((degree + steps) / 12)
    env = np.exp(-(t % (beat / 2)) / 0.12)
    arp = np.sin(2 * np.pi * np.cumsum(f_arp) / RATE) * env
    in_beat = t % beat
    sweep = 50 + 70 * np.exp(-in_beat / 0.03)
    kick = np.sin(2 * np.pi * sweep * in_beat) * np.exp(-in_beat / 0.08)
    kick *= (t // beat).astype(int) % 2 == 0
    hat = rng.normal(0, 1, n).astype(np.float32) * np.exp(-(t % (beat / 2)) / 0.015)
    hat = np.diff(hat, prepend=0)
    return (0.5 * bass + 0.15 * pad + 0.35 * arp + 0.8 * kick + 0.08 * hat).astype(np.float32)


def _fan(n: int, rng: np.random.Generator) -> np.ndarray:
    """Brown noise from a leaky integrator (it does not drift away) and the blades' tone."""
    brown = lfilter([1.0], [1.0, -0.995], rng.normal(0, 1, n))
    t = np.arange(n) / RATE
    blade = 0.15 * np.sin(2 * np.pi * 118 * t) * (1 + 0.1 * np.sin(2 * np.pi * 0.3 * t))
    return (brown / (np.std(brown) or 1) + blade).astype(np.float32)


def _hum(n: int, freq: float) -> np.ndarray:
    t = np.arange(n, dtype=np.float32) / RATE
    return sum(np.sin(2 * np.pi * freq * k * t) / k for k in (1, 2, 3, 4, 5)).astype(np.float32)


def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.normal(0, 1, n))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    return np.fft.irfft(spectrum, n).astype(np.float32)


def render(layers: Sequence[Mapping[str, Any]], duration_s: float, *, seed: int,
           cache: Path) -> np.ndarray:  # fmt: skip
    """The mixed sound of `duration_s` seconds (float32, clipped to [-1, 1])."""
    total = round(duration_s * RATE)
    mix = np.zeros(total, np.float32)
    for i, layer in enumerate(layers):
        kind = layer.get("kind")
        if kind not in KINDS:
            raise ValueError(f"sound[{i}].kind: unknown {kind!r} {KINDS}")
        if kind == "silence":
            continue
        a, b = _window(layer, duration_s)
        n = b - a
        if n <= 0:
            continue
        rng = np.random.default_rng(seed * 1000 + i)
        if kind == "speech":
            x = _speech(layer, n, rng, cache)
        elif kind == "keyboard":
            x = _keyboard(n, float(layer.get("rate", 6.0)), rng)
        elif kind == "music":
            x = _music(n, float(layer.get("tempo", 100)), int(layer.get("key", 0)), rng)
        elif kind == "fan":
            x = _fan(n, rng)
        elif kind == "hum":
            x = _hum(n, float(layer.get("freq", 50)))
        elif kind == "tone":
            x = np.sin(2 * np.pi * float(layer.get("freq", 440)) * np.arange(n) / RATE)
        else:
            x = _pink(n, rng)
        x = np.asarray(x, np.float32)
        rms = math.sqrt(float(np.mean(x.astype(np.float64) ** 2))) or 1.0
        level = float(layer.get("level_db", DEFAULT_LEVELS[str(kind)]))
        mix[a:b] += x * (10 ** (level / 20) / rms)
    return mix.clip(-1, 1)


def write_wav(samples: np.ndarray, dest: Path) -> Path:
    """16-bit PCM WAV at RATE (what ffmpeg and Chromium's fake microphone read)."""
    import wave

    pcm = (samples * 32767).astype("<i2")
    with wave.open(str(dest), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(pcm.tobytes())
    return dest
