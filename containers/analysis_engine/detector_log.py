"""Parse what ffmpeg's detector filters print (pure): one parser for idle detection and the
proctor's signals.

- freezedetect / silencedetect print `…_start: t` and `…_end: t` lines; a detector says
  nothing at end of file, so an open start runs to the caller's end time.
- blackdetect prints one `black_start:a black_end:b` line per stretch.
- `ametadata=print` after `astats=metadata=1:reset=1` prints `pts_time:t` and then
  `lavfi.astats.Overall.RMS_level=x` per audio frame: the loudness over time.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from analysis_engine.models import Interval

FREEZE = re.compile(r"freezedetect\.freeze_(start|end): *(-?[\d.]+)")
SILENCE = re.compile(r"silence_(start|end): *(-?[\d.]+)")
BLACK = re.compile(r"black_start: *(-?[\d.]+) +black_end: *(-?[\d.]+)")
_PTS = re.compile(r"\bpts_time:(-?[\d.]+)")
_RMS = re.compile(r"lavfi\.astats\.Overall\.RMS_level=(-?[\w.]+)")


@dataclass(frozen=True)
class Level:
    """Loudness (RMS, dBFS; -inf is digital silence) of one short audio frame at `time_s`."""

    time_s: float
    db: float


def markers(regex: re.Pattern[str], text: str) -> list[tuple[str, float]]:
    """("start" | "end", time) in log order."""
    return [(m.group(1), float(m.group(2))) for m in regex.finditer(text)]


def pair(
    events: Iterable[tuple[str, float]], *, open_end: float, offset: float = 0.0
) -> list[Interval]:
    """Pair start/end markers into intervals shifted by `offset` (the seek start when ffmpeg
    printed times relative to it); an unclosed start runs to `open_end` (absolute)."""
    out: list[Interval] = []
    start: float | None = None
    for kind, t in events:
        if kind == "start":
            start = max(0.0, t)  # silencedetect may print a tiny negative first start
        elif start is not None:
            out.append(Interval(round(start + offset, 3), round(t + offset, 3)))
            start = None
    if start is not None and open_end - offset > start:
        out.append(Interval(round(start + offset, 3), round(open_end, 3)))
    return out


def freezes(text: str, *, open_end: float, offset: float = 0.0) -> list[Interval]:
    return pair(markers(FREEZE, text), open_end=open_end, offset=offset)


def silences(text: str, *, open_end: float, offset: float = 0.0) -> list[Interval]:
    return pair(markers(SILENCE, text), open_end=open_end, offset=offset)


def blacks(text: str, *, offset: float = 0.0) -> list[Interval]:
    return [
        Interval(round(float(a) + offset, 3), round(float(b) + offset, 3))
        for a, b in BLACK.findall(text)
    ]


def levels(text: str) -> list[Level]:
    """Per-frame loudness from `ametadata=print` lines (each RMS line follows its pts line)."""
    out: list[Level] = []
    pts: float | None = None
    for line in text.splitlines():
        if "pts_time:" in line and (m := _PTS.search(line)) is not None:
            pts = float(m.group(1))
        elif pts is not None and (m := _RMS.search(line)) is not None:
            try:
                value = float(m.group(1))
            except ValueError:
                value = float("-inf")
            out.append(Level(pts, value))
            pts = None
    return out


def metadata_values(text: str, instance: str, key: str) -> list[tuple[float, float]]:
    """(pts_time, value) pairs that `metadata@<instance>=print:key=<key>` logged."""
    tag = f"[metadata@{instance} @"
    out: list[tuple[float, float]] = []
    pts: float | None = None
    for line in text.splitlines():
        if not line.startswith(tag):
            continue
        if (m := _PTS.search(line)) is not None:
            pts = float(m.group(1))
        elif pts is not None and f"{key}=" in line:
            with contextlib.suppress(ValueError):  # "nan" and the like: no value
                out.append((pts, float(line.rsplit("=", 1)[1])))
            pts = None
    return out
