"""Video packets (time, size, keyframe?) read from the container without decoding."""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis_engine.media.runner import (
    DEFAULT_TIMEOUT,
    FFPROBE,
    run_ffmpeg,
)

log = logging.getLogger(__name__)


def packets_argv(path: Path) -> list[str]:
    """Video packet times, sizes and flags, read from the container without decoding."""
    return [
        FFPROBE, "-v", "error", "-select_streams", "v:0",
        "-show_entries", "format=start_time:packet=pts_time,dts_time,size,flags",
        "-of", "csv", str(path),
    ]  # fmt: skip


def keyframes_argv(path: Path) -> list[str]:
    """Same pass as `packets_argv` (keyframes are the packets flagged K)."""
    return packets_argv(path)


def finite_float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


@dataclass(frozen=True)
class Packet:
    time_s: float
    size: int
    key: bool


def read_packets(path: Path, *, timeout: float = DEFAULT_TIMEOUT) -> tuple[Packet, ...]:
    """Video packets (time from file start, size, keyframe?) via ffprobe, no decoding.

    Cached per (path, size, mtime): `keyframe_times` and `detect_idle` share one pass.
    """
    st = Path(path).stat()
    return _read_packets_cached(str(path), st.st_size, st.st_mtime_ns, timeout)


@functools.lru_cache(maxsize=4)
def _read_packets_cached(path: str, size: int, mtime_ns: int, timeout: float) -> tuple[Packet, ...]:
    del size, mtime_ns  # cache key only
    proc = run_ffmpeg(packets_argv(Path(path)), timeout=timeout)
    return parse_packets(proc.stdout)


def parse_packets(csv_text: str) -> tuple[Packet, ...]:
    """Parse `ffprobe -of csv` packet lines (`packet,pts,dts,size,flags`) and the format's
    start time; times come back relative to the start time, sorted by presentation."""
    start = 0.0
    rows: list[tuple[float, int, bool]] = []
    for line in csv_text.splitlines():
        parts = line.split(",")
        if parts[0] == "format" and len(parts) >= 2:
            start = finite_float(parts[1]) or 0.0
        elif parts[0] == "packet" and len(parts) >= 5:
            t = finite_float(parts[1])
            t = t if t is not None else finite_float(parts[2])
            size = int(parts[3]) if parts[3].isdigit() else 0
            if t is not None:
                rows.append((t, size, "K" in parts[4]))
    rows.sort()
    return tuple(Packet(max(0.0, t - start), size, key) for t, size, key in rows)


def keyframe_times(path: Path, *, timeout: float = DEFAULT_TIMEOUT) -> list[float]:
    """Keyframe times in seconds from the start, from packet flags (no decoding)."""
    return [p.time_s for p in read_packets(path, timeout=timeout) if p.key]
