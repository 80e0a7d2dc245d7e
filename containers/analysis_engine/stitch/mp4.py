"""Safari-style MP4 chunks (fragmented MP4: an init segment `ftyp`+`moov`, then `moof`+`mdat`
fragments) → one seekable MP4 by stream copy, plus the same `StitchReport` as WebM chunks.

Fragments carry their own decode times (`tfdt`), so the byte concatenation of a recorder's
chunks is a valid fragmented MP4 in which a lost chunk is a hole in the timestamps; ffmpeg
remuxes it with `-c copy` (never a re-encode) and the holes are read back from the packet
times as recording gaps. A recorder restart (a later chunk with its own init segment) is a
new run; runs are joined with ffmpeg's concat demuxer, which continues each run where the
previous one ended (like the WebM path when timecodes cannot tell). A first run whose init
segment was lost borrows the next run's (same browser, same settings).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from analysis_engine.errors import InvalidInputError
from analysis_engine.media import FFMPEG, Packet, read_packets, run_ffmpeg
from analysis_engine.stitch.chunks import Chunk
from analysis_engine.stitch.report import (
    ChunkProblem,
    RecordingGap,
    RunReport,
    StitchReport,
)
from analysis_engine.stitch.timeline import GAP_THRESHOLD_S

log = logging.getLogger(__name__)

INIT_BOXES = {b"ftyp", b"moov"}
MP4_BOXES = {b"ftyp", b"styp", b"moov", b"moof", b"mdat", b"sidx", b"mfra", b"free", b"skip"}


def is_mp4_chunk(head: bytes) -> bool:
    """Does a chunk start like an MP4 box (`size` + a known box type)?"""
    return len(head) >= 8 and head[4:8] in MP4_BOXES


def _boxes(data: bytes) -> list[tuple[bytes, int, int]]:
    """Top-level (type, offset, size) of a chunk; stops at a box that runs past the end."""
    out, pos = [], 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if size == 1 and pos + 16 <= len(data):
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
        if size < 8 or pos + size > len(data):
            break
        out.append((kind, pos, size))
        pos += size
    return out


def _init_segment(data: bytes) -> bytes:
    return b"".join(data[p : p + s] for kind, p, s in _boxes(data) if kind in INIT_BOXES)


def stitch_mp4_chunks(
    ordered: Sequence[tuple[int | None, Chunk]],
    duplicates: Sequence[str],
    output: Path,
    *,
    total: int,
) -> StitchReport:
    started = time.monotonic()
    output = output.with_suffix(".mp4")
    problems: list[ChunkProblem] = []
    runs: list[list[tuple[str, bytes]]] = []
    bytes_in = 0
    for _, chunk in ordered:
        with chunk.opener() as stream:
            data = stream.read()
        bytes_in += len(data)
        if not data:
            problems.append(ChunkProblem(chunk.name, "empty (0 bytes)"))
        elif not is_mp4_chunk(data[:8]) or not _boxes(data):
            problems.append(ChunkProblem(chunk.name, "unreadable (no MP4 boxes)"))
        elif _boxes(data)[0][0] == b"ftyp" or not runs:
            runs.append([(chunk.name, data)])
        else:
            runs[-1].append((chunk.name, data))
    if not runs:
        raise InvalidInputError("INPUT_URI", f"no readable MP4 data in {total} chunks")
    inits = [_init_segment(run[0][1]) for run in runs]
    if not inits[0]:
        borrowed = next((i for i in inits if i), b"")
        if not borrowed:
            raise InvalidInputError(
                "INPUT_URI", "no MP4 init segment (ftyp+moov) in any chunk: cannot decode"
            )
        log.warning("the first recording's init segment is missing; using a later one")
        runs[0].insert(0, ("(borrowed init)", borrowed))
    parts: list[Path] = []
    try:
        for n, run in enumerate(runs):
            raw = output.with_name(f".{output.stem}.run{n}.m4s")
            raw.write_bytes(b"".join(data for _, data in run))
            part = output.with_name(f".{output.stem}.run{n}.mp4")
            run_ffmpeg([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-i", str(raw),
                        "-map", "0", "-c", "copy", str(part)])  # fmt: skip
            raw.unlink()
            parts.append(part)
        _join(parts, output)
    finally:
        for part in parts:
            part.unlink(missing_ok=True)
    packets = read_packets(output)
    if not packets:
        raise InvalidInputError("INPUT_URI", f"no readable audio/video frames in {total} chunks")
    gaps = packet_gaps([p.time_s for p in packets])
    duration = packets[-1].time_s + _frame(packets)
    report = StitchReport(
        output=output,
        chunks_total=total,
        chunks_used=sum(len(run) for run in runs),
        duplicates=tuple(duplicates),
        bad_chunks=tuple(problems),
        missing_indices=(),
        runs=tuple(
            RunReport(i, run[0][0], run[-1][0], len(run), 0.0, round(duration, 3), "own")
            for i, run in enumerate(runs)
        ),
        gaps=tuple(gaps),
        start_s=round(packets[0].time_s, 3),
        duration_s=round(duration, 3),
        mode="copy",
        bytes_in=bytes_in,
        seconds_elapsed=round(time.monotonic() - started, 3),
    )
    log.info(
        "stitched %d MP4 chunks (%d runs, %d gaps) by stream copy", total, len(runs), len(gaps)
    )
    return report


def _join(parts: Sequence[Path], output: Path) -> None:
    """One seekable MP4 (moov first) from the runs, by stream copy."""
    if len(parts) == 1:
        argv = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-i", str(parts[0])]
    else:
        listing = output.with_name(f".{output.stem}.ffconcat")
        listing.write_text("ffconcat version 1.0\n" + "".join(f"file '{p.name}'\n" for p in parts))
        argv = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "concat",
                "-safe", "0", "-i", str(listing)]  # fmt: skip
    run_ffmpeg([*argv, "-map", "0", "-c", "copy", "-movflags", "+faststart", str(output)])


def _frame(packets: Sequence[Packet]) -> float:
    times = [p.time_s for p in packets]
    deltas = sorted(b - a for a, b in itertools.pairwise(times) if b > a)
    return deltas[len(deltas) // 2] if deltas else 0.0


def packet_gaps(times: Sequence[float]) -> list[RecordingGap]:
    """Holes in the video packet times longer than GAP_THRESHOLD_S (pure)."""
    ordered = sorted(times)
    deltas = sorted(b - a for a, b in itertools.pairwise(ordered) if b > a)
    frame = deltas[len(deltas) // 2] if deltas else 0.0
    return [
        RecordingGap(round(a + frame, 3), round(b, 3), "timecode_jump")
        for a, b in itertools.pairwise(ordered)
        if b - a > GAP_THRESHOLD_S + frame
    ]
