"""Describe a recording (ffprobe) or reject it with a one-line reason."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from analysis_engine.errors import InvalidInputError, MediaError
from analysis_engine.media.packets import (
    finite_float,
    read_packets,
)
from analysis_engine.media.runner import (
    FFPROBE,
    run_ffmpeg,
)
from analysis_engine.models import MediaInfo

log = logging.getLogger(__name__)


# ffprobe "succeeds" on still images and on plain text (the `tty` demuxer renders text as
# video); neither is a recording.
IMAGE_FORMATS = {"image2", "tty", "gif", "apng", "webp_pipe"}


def probe_argv(path: Path) -> list[str]:
    return [
        FFPROBE, "-v", "error", "-of", "json",
        "-show_entries",
        "format=duration,size,format_name,start_time:"
        "stream=index,codec_type,codec_name,width,height,avg_frame_rate,r_frame_rate,duration",
        str(path),
    ]  # fmt: skip


def probe(path: Path, *, field: str = "INPUT_URI", timeout: float = 120.0) -> MediaInfo:
    """Describe a recording, or raise InvalidInputError(field, one-line reason)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        raise InvalidInputError(field, f"file {path.name} does not exist") from exc
    if size == 0:
        raise InvalidInputError(field, "file is empty (0 bytes)")
    try:
        proc = run_ffmpeg(probe_argv(path), timeout=timeout)
    except MediaError as exc:
        raise InvalidInputError(field, _unreadable_reason(path, exc.stderr_tail)) from exc
    return parse_probe(path, json.loads(proc.stdout or "{}"), size=size, field=field)


def parse_probe(path: Path, data: dict[str, Any], *, size: int, field: str) -> MediaInfo:
    """Turn ffprobe JSON into MediaInfo, rejecting what is not an analysable video (pure)."""
    fmt = data.get("format") or {}
    streams = data.get("streams") or []
    format_name = str(fmt.get("format_name") or "")
    if format_name in IMAGE_FORMATS or format_name.endswith("_pipe"):
        kind = "text" if format_name == "tty" else "a still image"
        raise InvalidInputError(field, f"not a video: file is {kind} ({format_name})")
    truncated = container_truncation(path, size)
    if truncated:
        raise InvalidInputError(field, f"truncated or corrupt container: {truncated}")
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    duration = finite_float(fmt.get("duration")) or max(
        (finite_float(s.get("duration")) or 0.0 for s in streams), default=0.0
    )
    if not duration and video is not None:
        # Live WebM (MediaRecorder, `-live 1`) carries no duration: measure it from packets.
        duration = _duration_from_packets(path, video)
    if not duration or duration <= 0 or not math.isfinite(duration):
        raise InvalidInputError(field, "recording has zero or unknown duration")
    if video is None:
        what = f"only {audio.get('codec_name')} audio" if audio else "no streams"
        raise InvalidInputError(field, f"no video stream in the file ({what})")
    return MediaInfo(
        path=path,
        duration_s=duration,
        size_bytes=size,
        format_name=format_name,
        video_codec=video.get("codec_name"),
        audio_codec=audio.get("codec_name") if audio else None,
        width=video.get("width"),
        height=video.get("height"),
        fps=_rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate")),
    )


def _duration_from_packets(path: Path, video: dict[str, Any]) -> float:
    try:
        packets = read_packets(path, timeout=600.0)
    except MediaError:
        return 0.0
    if not packets:
        return 0.0
    frame = 1.0 / (_rate(video.get("avg_frame_rate")) or 25.0)
    return packets[-1].time_s + frame


def validate_duration(info: MediaInfo, max_s: float, *, field: str = "INPUT_URI") -> None:
    if info.duration_s > max_s:
        raise InvalidInputError(
            field,
            f"recording is {_hms(info.duration_s)} long, over the maximum of {_hms(max_s)}",
        )


def _unreadable_reason(path: Path, stderr_tail: str) -> str:
    last = stderr_tail.strip().splitlines()[-1] if stderr_tail.strip() else "unreadable"
    last = last.replace(str(path), path.name)
    if _container_kind(path) is not None:
        return f"truncated or corrupt container ({last})"
    return f"not a video: unrecognised file format ({last})"


def _container_kind(path: Path) -> str | None:
    """Identify a media container by its magic bytes (to tell corrupt from not-a-video)."""
    with path.open("rb") as fh:
        head = fh.read(12)
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "mp4"
    if head.startswith(b"RIFF") or head.startswith(b"OggS") or head[:1] == b"\x47":
        return "other"
    return None


def container_truncation(path: Path, size: int) -> str | None:
    """Structural check without decoding: does a top-level box/element claim bytes past EOF?

    ffprobe reads only headers, so a torn upload of a faststart MP4 or a WebM with a Segment
    size still probes "fine" with its full duration. Pure-Python walk of the top level.
    """
    kind = _container_kind(path)
    with path.open("rb") as fh:
        if kind == "mp4":
            return _mp4_truncation(fh, size)
        if kind == "matroska":
            return _ebml_truncation(fh, size)
    return None


def _mp4_truncation(fh: Any, size: int) -> str | None:
    pos = 0
    while pos + 8 <= size:
        fh.seek(pos)
        header = fh.read(16)
        box_size = int.from_bytes(header[:4], "big")
        box_type = header[4:8].decode("latin-1")
        if box_size == 1:
            box_size = int.from_bytes(header[8:16], "big")
        elif box_size == 0:
            return None  # box runs to end of file
        if box_size < 8:
            return f"invalid MP4 box '{box_type}' at byte {pos}"
        if pos + box_size > size:
            return f"MP4 box '{box_type}' needs {pos + box_size} bytes, file has {size}"
        pos += box_size
    return None


def _ebml_truncation(fh: Any, size: int) -> str | None:
    data = fh.read(64)
    pos = 0
    for _ in range(2):  # EBML header, then Segment
        if pos >= len(data):
            return None
        eid, id_len = _ebml_id(data, pos)
        esize, size_len = _ebml_size(data, pos + id_len)
        body = pos + id_len + size_len
        if esize is None:
            return None  # unknown size (live WebM): cannot tell from the header
        if eid == 0x18538067 and body + esize > size:
            return f"WebM segment needs {body + esize} bytes, file has {size}"
        pos = body + esize
    return None


def _ebml_id(data: bytes, pos: int) -> tuple[int, int]:
    length = next((n for n in range(1, 5) if data[pos] & (0x80 >> (n - 1))), 4)
    return int.from_bytes(data[pos : pos + length], "big"), length


def _ebml_size(data: bytes, pos: int) -> tuple[int | None, int]:
    length = next((n for n in range(1, 9) if data[pos] & (0x80 >> (n - 1))), 8)
    value = int.from_bytes(data[pos : pos + length], "big") & ((1 << (7 * length)) - 1)
    return (None if value == (1 << (7 * length)) - 1 else value), length


def _rate(value: Any) -> float | None:
    if not value or "/" not in str(value):
        return finite_float(value)
    num, den = str(value).split("/", 1)
    n, d = finite_float(num), finite_float(den)
    return n / d if n and d else None


def _hms(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
