"""Chunk stitcher: ordered WebM chunks (MediaRecorder `timeslice` style or complete files)
→ one seekable `video.webm` on the test clock, plus a `StitchReport`.

How it works, streaming (one chunk, read 64 KiB at a time, is ever in memory):

- Chunks are ordered by the numeric index in their name (`2.webm` < `10.webm`, and a random
  tag in front, `c9f2_0.webm`, does not reorder them); names that identify several recorders
  (`rec1_0 … rec1_9, rec2_0 …`) are ordered recorder by recorder. Duplicate uploads of one
  index (`9.webm`, `9-retry.webm`) count once (the largest copy wins); a chunk re-uploaded
  under a new index is recognised by its media (same timecode, same bytes) and dropped.
- A minimal EBML parser walks the byte-ordered concatenation of each recorder "run" (an EBML
  header starts a run: chunk 0, a recorder restart, or every chunk of a complete-file client).
  Header-less chunks are bare Cluster bytes that only make sense after their run's header.
- Every Cluster is re-emitted into ONE output stream (the first run's header and tracks) with
  its Timecode moved onto the test clock; blocks are copied byte for byte. ffmpeg then remuxes
  that stream with `-c copy` into a file with duration and Cues (no re-encode unless the codecs
  cannot live in WebM).
- Missing or bad chunks are discontinuities: the parser drops the torn element and resyncs on
  the next Cluster/EBML ID. Time lost shows up as a jump of the cluster timecodes and is kept
  as a hole in the timeline *and* reported as a `RecordingGap` (seconds from test start).
  Where timecodes cannot tell (a restart, a run whose header was lost), missing chunks count
  `chunk_seconds` (3 s) each. A gap ends where the picture resumes (the next video keyframe).
  If the first recording's header chunk was lost, a later header (a restart of the same
  browser) decodes it; an empty chunk (MediaRecorder's empty blob) is reported but the stream
  goes on without a resync.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal, Protocol
from urllib.parse import unquote, urlsplit

from analysis_engine.errors import InvalidInputError, MediaError
from analysis_engine.models import Interval

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
DEFAULT_CHUNK_SECONDS = 3.0
# A jump of the cluster clock beyond this is lost media, not jitter between tracks.
GAP_THRESHOLD_S = 1.0
# Output clusters are flushed at this size even if the input cluster goes on (unknown size).
MAX_OUT_CLUSTER = 8 * 1024 * 1024
MAX_BLOCK = 32 * 1024 * 1024
MAX_HEADER_ELEMENT = 1024 * 1024
WEBM_CODECS = {"V_VP8", "V_VP9", "V_AV1", "A_OPUS", "A_VORBIS"}
# Codecs WebM cannot hold but MP4 can, so they are stream-copied into MP4 instead (Chrome's
# `video/webm;codecs=h264` recordings are Matroska with H.264): never a re-encode.
MP4_CODECS = {"V_MPEG4/ISO/AVC", "V_MPEGH/ISO/HEVC", "V_AV1", "A_AAC", "A_OPUS", "A_MPEG/L3"}

# EBML / Matroska element IDs (with their length-marker bits, as they appear on disk).
EBML = 0x1A45DFA3
SEGMENT = 0x18538067
SEEKHEAD = 0x114D9B74
INFO = 0x1549A966
TRACKS = 0x1654AE6B
CLUSTER = 0x1F43B675
CUES = 0x1C53BB6B
TAGS = 0x1254C367
CHAPTERS = 0x1043A770
ATTACHMENTS = 0x1941A469
VOID = 0xEC
CRC32 = 0xBF
TIMECODE = 0xE7
SIMPLEBLOCK = 0xA3
BLOCKGROUP = 0xA0
BLOCK = 0xA1
REFERENCEBLOCK = 0xFB
CLUSTER_SKIPPABLE = {0xA7, 0xAB, 0x5854, 0xAF, VOID, CRC32}  # Position, PrevSize, ...
TIMECODESCALE = 0x2AD7B1
TRACKENTRY = 0xAE
TRACKNUMBER = 0xD7
TRACKTYPE = 0x83
CODECID = 0x86
CODECPRIVATE = 0x63A2
VIDEO = 0xE0
AUDIO = 0xE1
PIXELWIDTH = 0xB0
PIXELHEIGHT = 0xBA
CHANNELS = 0x9F
MUXINGAPP = 0x4D80
WRITINGAPP = 0x5741
TOP_LEVEL = {EBML, SEGMENT, SEEKHEAD, INFO, TRACKS, CLUSTER, CUES, TAGS, CHAPTERS, ATTACHMENTS}
TOP_SKIPPABLE = {SEEKHEAD, CUES, TAGS, CHAPTERS, ATTACHMENTS, VOID, CRC32}
EBML_MAGIC = b"\x1a\x45\xdf\xa3"
CLUSTER_MAGIC = b"\x1f\x43\xb6\x75"
UNKNOWN_SIZE = b"\x01\xff\xff\xff\xff\xff\xff\xff"


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Chunk:
    """One uploaded chunk: a name (for ordering and reports) and a way to stream its bytes."""

    name: str
    opener: Callable[[], BinaryIO] = field(repr=False)
    size: int | None = None

    @classmethod
    def from_path(cls, path: Path) -> Chunk:
        return cls(path.name, lambda: path.open("rb"), path.stat().st_size)


_RETRY_SUFFIX = re.compile(r"([-_.]?(retry|dup|copy|again|re)\d*)+$", re.IGNORECASE)
_DIGITS = re.compile(r"\d+")


def chunk_index(name: str) -> int | None:
    """`9.webm`, `9-retry.webm`, `chunk-0009.webm`, `rec2_9_retry2.webm` → 9; no digits → None."""
    stem = name.rsplit("/", 1)[-1].split(".", 1)[0]
    numbers = _DIGITS.findall(_RETRY_SUFFIX.sub("", stem))
    return int(numbers[-1]) if numbers else None


def natural_key(name: str) -> tuple[Any, ...]:
    parts = _DIGITS.split(name)
    numbers = _DIGITS.findall(name)
    key: list[Any] = []
    for i, text in enumerate(parts):
        key.append(text)
        if i < len(numbers):
            key.append(int(numbers[i]))
    return tuple(key)


def recorder_key(name: str) -> str:
    """The name without its index (and retry suffix): `rec2_0009-retry.webm` → `rec2_`."""
    stem = _RETRY_SUFFIX.sub("", name.rsplit("/", 1)[-1].split(".", 1)[0])
    numbers = list(_DIGITS.finditer(stem))
    if not numbers:
        return stem
    return stem[: numbers[-1].start()] + stem[numbers[-1].end() :]


def recorder_groups(names: Iterable[str]) -> dict[str, int] | None:
    """{recorder key: rank} when the names identify several recorders, else None.

    `rec1_0, rec1_1, rec2_0, rec2_1` are two recorders (each numbers its own chunks from 0):
    a key shared by chunks of different indices is a recorder's id. `c9f2_0, 1ab7_1` are one
    recorder whose uploader puts a random tag on every chunk: no key has two indices, so the
    tags mean nothing and only the index orders them. Recorders rank in natural name order.
    """
    indices: dict[str, set[int]] = {}
    for name in names:
        index = chunk_index(name)
        if index is not None:
            indices.setdefault(recorder_key(name), set()).add(index)
    if len(indices) < 2 or all(len(found) < 2 for found in indices.values()):
        return None
    return {key: rank for rank, key in enumerate(sorted(indices, key=natural_key))}


def order_chunks(chunks: Iterable[Chunk]) -> tuple[list[tuple[int | None, Chunk]], list[str]]:
    """Order by recorder (when names identify several, see `recorder_groups`), then by the
    numeric index (never the full name: a per-chunk tag in front must not reorder them); one
    chunk per (recorder, index): the largest copy. Returns (kept, duplicates)."""
    items = list(chunks)
    groups = recorder_groups(c.name for c in items)

    def slot(chunk: Chunk) -> tuple[int, int | None]:
        rank = groups.get(recorder_key(chunk.name), 0) if groups else 0
        return rank, chunk_index(chunk.name)

    ordered = sorted(
        items,
        key=lambda c: (
            chunk_index(c.name) is None,
            slot(c)[0],
            slot(c)[1] or 0,
            natural_key(c.name),
        ),
    )
    kept: list[tuple[int | None, Chunk]] = []
    duplicates: list[str] = []
    by_slot: dict[tuple[int, int], int] = {}
    for chunk in ordered:
        rank, index = slot(chunk)
        if index is None or (rank, index) not in by_slot:
            if index is not None:
                by_slot[(rank, index)] = len(kept)
            kept.append((index, chunk))
            continue
        at = by_slot[(rank, index)]
        current = kept[at][1]
        # A retry is a full re-upload; the original may be the truncated one.
        if (chunk.size or 0) > (current.size or 0):
            duplicates.append(current.name)
            kept[at] = (index, chunk)
        else:
            duplicates.append(chunk.name)
    return kept, duplicates


# --------------------------------------------------------------------------- report


GapReason = Literal["missing_chunks", "bad_chunks", "timecode_jump", "no_header", "restart"]


@dataclass(frozen=True)
class RecordingGap:
    """Time on the test clock with no media, and why."""

    start_s: float
    end_s: float
    reason: GapReason
    chunks: tuple[str, ...] = ()

    @property
    def interval(self) -> Interval:
        return Interval(self.start_s, self.end_s)


@dataclass(frozen=True)
class RunReport:
    """One recorder session: from an EBML header (or a lost one) to the next."""

    index: int
    first_chunk: str
    last_chunk: str
    chunks: int
    start_s: float
    end_s: float
    header: Literal["own", "borrowed"]
    reencoded: bool = False


@dataclass(frozen=True)
class ChunkProblem:
    name: str
    reason: str


@dataclass(frozen=True)
class StitchReport:
    output: Path
    chunks_total: int
    chunks_used: int
    duplicates: tuple[str, ...]
    bad_chunks: tuple[ChunkProblem, ...]
    missing_indices: tuple[int, ...]
    runs: tuple[RunReport, ...]
    gaps: tuple[RecordingGap, ...]
    start_s: float  # first timestamp in the output (0 unless the start of the test was lost)
    duration_s: float  # end of the last frame on the test clock
    mode: Literal["copy", "reencode"]
    bytes_in: int
    seconds_elapsed: float

    @property
    def gap_intervals(self) -> tuple[Interval, ...]:
        return tuple(g.interval for g in self.gaps)

    @property
    def gap_seconds(self) -> float:
        return round(sum(g.end_s - g.start_s for g in self.gaps), 3)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["output"] = self.output.name
        data["gap_seconds"] = self.gap_seconds
        return data


# --------------------------------------------------------------------------- EBML primitives


class _Corrupt(Exception):
    """The bytes at the parse position are not a plausible element."""


def read_id(buf: bytes | bytearray, pos: int) -> tuple[int, int] | None:
    """(id with marker bits, length) or None when more bytes are needed."""
    if pos >= len(buf):
        return None
    first = buf[pos]
    if first == 0 or first < 0x10:  # IDs are 1..4 bytes
        raise _Corrupt
    length = 1 if first & 0x80 else 2 if first & 0x40 else 3 if first & 0x20 else 4
    if pos + length > len(buf):
        return None
    return int.from_bytes(buf[pos : pos + length], "big"), length


def read_size(buf: bytes | bytearray, pos: int) -> tuple[int | None, int] | None:
    """(size or None for 'unknown', length) or None when more bytes are needed."""
    if pos >= len(buf):
        return None
    first = buf[pos]
    if first == 0:
        raise _Corrupt
    length = 9 - first.bit_length()
    if pos + length > len(buf):
        return None
    value = int.from_bytes(buf[pos : pos + length], "big") & ((1 << (7 * length)) - 1)
    return (None if value == (1 << (7 * length)) - 1 else value), length


def read_header(buf: bytes | bytearray, pos: int) -> tuple[int, int | None, int] | None:
    """(id, size, header length) or None when more bytes are needed."""
    got = read_id(buf, pos)
    if got is None:
        return None
    element, id_len = got
    size = read_size(buf, pos + id_len)
    if size is None:
        return None
    return element, size[0], id_len + size[1]


def encode_size(value: int, length: int | None = None) -> bytes:
    length = length or next(n for n in range(1, 9) if value < (1 << (7 * n)) - 1)
    return ((1 << (7 * length)) | value).to_bytes(length, "big")


def encode_uint(value: int) -> bytes:
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def element(element_id: int, payload: bytes) -> bytes:
    id_bytes = element_id.to_bytes((element_id.bit_length() + 7) // 8, "big")
    return id_bytes + encode_size(len(payload)) + payload


def children(data: bytes) -> Iterable[tuple[int, bytes]]:
    """Direct children of a fully buffered master element's payload."""
    pos = 0
    while pos < len(data):
        got = read_header(data, pos)
        if got is None or got[1] is None:
            raise _Corrupt
        element_id, size, hlen = got
        yield element_id, data[pos + hlen : pos + hlen + size]
        pos += hlen + size


@dataclass(frozen=True)
class Track:
    number: int
    type: int  # 1 video, 2 audio
    codec: str
    codec_private: bytes = b""
    width: int | None = None
    height: int | None = None
    channels: int | None = None


def parse_tracks(payload: bytes) -> list[Track]:
    tracks = []
    for element_id, entry in children(payload):
        if element_id != TRACKENTRY:
            continue
        fields: dict[int, bytes] = {}
        for child_id, value in children(entry):
            if child_id in (VIDEO, AUDIO):
                fields.update(dict(children(value)))
            fields.setdefault(child_id, value)
        tracks.append(
            Track(
                number=_uint(fields, TRACKNUMBER) or 0,
                type=_uint(fields, TRACKTYPE) or 0,
                codec=fields.get(CODECID, b"").decode("ascii", "replace"),
                codec_private=fields.get(CODECPRIVATE, b""),
                width=_uint(fields, PIXELWIDTH),
                height=_uint(fields, PIXELHEIGHT),
                channels=_uint(fields, CHANNELS),
            )
        )
    return tracks


def _uint(fields: dict[int, bytes], key: int) -> int | None:
    return int.from_bytes(fields[key], "big") if key in fields else None


def parse_timecode_scale(payload: bytes) -> int:
    for element_id, value in children(payload):
        if element_id == TIMECODESCALE:
            return int.from_bytes(value, "big") or 1_000_000
    return 1_000_000


# --------------------------------------------------------------------------- parser


class Sink(Protocol):
    def on_header(
        self, ebml: bytes, timescale: int, tracks: list[Track], tracks_raw: bytes
    ) -> None: ...
    def on_cluster(self, timecode: int) -> None: ...
    def on_block(self, raw: bytes, track_at: int, track: int, rel: int, key: bool) -> None: ...
    def end_cluster(self) -> None: ...
    def on_discontinuity(self) -> None: ...


class WebmParser:
    """Push parser over one byte stream; `discontinuity()` when the next bytes do not follow."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.buf = bytearray()
        self.pos = 0
        self.offset = 0  # stream offset of buf[0]
        self.state: Literal["resync", "top", "cluster", "skip"] = "resync"
        self.skip_left = 0
        self.skip_return: Literal["top", "cluster"] = "top"
        self.cluster_end: int | None = None
        self.cluster_has_tc = False
        self.verify_cluster = False
        self.have_header = False
        self.pending_ebml: bytes | None = None
        self.timescale = 1_000_000
        self.discarded = 0  # bytes thrown away while resyncing (for chunk diagnostics)
        self.blocks = 0
        self.truncated = 0  # chunks found to end inside an element

    @property
    def mid_element(self) -> bool:
        """True when the bytes so far end inside an element (the chunk may be truncated)."""
        return self.state == "skip" or (self.state != "resync" and self.pos < len(self.buf))

    def feed(self, data: bytes) -> None:
        self.buf += data
        while True:
            try:
                if not self._step():
                    break
            except _Corrupt:
                self._corrupt()
        if self.pos:
            del self.buf[: self.pos]
            self.offset += self.pos
            self.pos = 0

    def discontinuity(self) -> None:
        """The next bytes do not continue these: drop the torn element, resync."""
        self.discarded += len(self.buf) - self.pos
        self.offset += len(self.buf)
        self.buf.clear()
        self.pos = 0
        self.sink.end_cluster()
        self.sink.on_discontinuity()
        self.state = "resync"

    def _corrupt(self) -> None:
        self.sink.end_cluster()
        self.sink.on_discontinuity()
        self.state = "resync"
        self.pos += 1
        self.discarded += 1

    def _step(self) -> bool:
        if self.state == "skip":
            return self._skip()
        if self.state == "resync":
            return self._resync()
        if self.state == "cluster":
            return self._cluster_child()
        return self._top()

    def _skip(self) -> bool:
        n = min(self.skip_left, len(self.buf) - self.pos)
        self.pos += n
        self.skip_left -= n
        if self.skip_left:
            return False
        self.state = self.skip_return
        return True

    def _resync(self) -> bool:
        starts = [self.buf.find(EBML_MAGIC, self.pos)]
        if self.have_header:
            starts.append(self.buf.find(CLUSTER_MAGIC, self.pos))
        found = [s for s in starts if s >= 0]
        if not found:
            keep = max(self.pos, len(self.buf) - 3)  # a magic may straddle the next feed
            self.discarded += keep - self.pos
            self.pos = keep
            return False
        start = min(found)
        self.discarded += start - self.pos
        self.pos = start
        self.state = "top"
        self.verify_cluster = True
        return True

    def _whole(self, hlen: int, size: int | None, limit: int) -> bytes | None:
        if size is None or size > limit:
            raise _Corrupt
        end = self.pos + hlen + size
        if end > len(self.buf):
            return None
        payload = bytes(self.buf[self.pos + hlen : end])
        self.pos = end
        return payload

    def _top(self) -> bool:
        got = read_header(self.buf, self.pos)
        if got is None:
            return False
        element_id, size, hlen = got
        if element_id == EBML:
            payload = self._whole(hlen, size, 4096)
            if payload is None:
                return False
            self.pending_ebml = element(EBML, payload)
            self.sink.end_cluster()
            return True
        if element_id == SEGMENT:
            self.pos += hlen  # transparent: its children follow
            return True
        if element_id in (INFO, TRACKS):
            return self._header_element(element_id, hlen, size)
        if element_id == CLUSTER and self.have_header:
            self.sink.end_cluster()
            self.pos += hlen
            self.state = "cluster"
            self.cluster_end = None if size is None else self.offset + self.pos + size
            self.cluster_has_tc = False
            return True
        if element_id in TOP_SKIPPABLE and size is not None:
            self.pos += hlen
            self.skip_left, self.skip_return, self.state = size, "top", "skip"
            return True
        raise _Corrupt

    def _header_element(self, element_id: int, hlen: int, size: int | None) -> bool:
        payload = self._whole(hlen, size, MAX_HEADER_ELEMENT)
        if payload is None:
            return False
        if element_id == INFO:
            self.timescale = parse_timecode_scale(payload)
            return True
        if self.pending_ebml is None:
            raise _Corrupt  # Tracks without an EBML header before it
        tracks = parse_tracks(payload)
        self.sink.on_header(self.pending_ebml, self.timescale, tracks, element(TRACKS, payload))
        self.pending_ebml = None
        self.timescale = 1_000_000
        self.have_header = True
        return True

    def _cluster_child(self) -> bool:
        if self.cluster_end is not None and self.offset + self.pos >= self.cluster_end:
            self.sink.end_cluster()
            self.state = "top"
            return True
        got = read_header(self.buf, self.pos)
        if got is None:
            return False
        element_id, size, hlen = got
        if self.verify_cluster and element_id not in (TIMECODE, CRC32, VOID):
            raise _Corrupt  # a resync hit on the magic bytes inside some payload
        if element_id == TIMECODE:
            payload = self._whole(hlen, size, 8)
            if payload is None:
                return False
            self.verify_cluster = False
            self.cluster_has_tc = True
            self.sink.on_cluster(int.from_bytes(payload, "big"))
            return True
        if element_id in (SIMPLEBLOCK, BLOCKGROUP):
            return self._block(element_id, hlen, size)
        if element_id in CLUSTER_SKIPPABLE and size is not None:
            self.pos += hlen
            self.skip_left, self.skip_return, self.state = size, "cluster", "skip"
            return True
        if element_id in TOP_LEVEL:  # end of an unknown-size cluster
            self.sink.end_cluster()
            self.state = "top"
            return True
        raise _Corrupt

    def _block(self, element_id: int, hlen: int, size: int | None) -> bool:
        if not self.cluster_has_tc:
            raise _Corrupt
        if size is None or size > MAX_BLOCK:
            raise _Corrupt
        end = self.pos + hlen + size
        if end > len(self.buf):
            return False
        raw = bytes(self.buf[self.pos : end])
        self.pos = end
        block_at = hlen
        key = True
        if element_id == BLOCKGROUP:
            block_at, key = _find_block(raw, hlen)
        got = read_size(raw, block_at)  # the track number is a size-style vint
        if got is None or got[0] is None or block_at + got[1] + 3 > len(raw):
            raise _Corrupt
        track, track_len = got
        rel = int.from_bytes(
            raw[block_at + track_len : block_at + track_len + 2], "big", signed=True
        )
        if element_id == SIMPLEBLOCK:
            key = bool(raw[block_at + track_len + 2] & 0x80)
        self.blocks += 1
        self.sink.on_block(raw, block_at, track, rel, key)
        return True


def _find_block(raw: bytes, hlen: int) -> tuple[int, bool]:
    """Offset of the Block payload inside a BlockGroup, and whether it is a keyframe."""
    pos, at, key = hlen, -1, True
    while pos < len(raw):
        got = read_header(raw, pos)
        if got is None or got[1] is None:
            raise _Corrupt
        child, size, child_hlen = got
        if child == BLOCK:
            at = pos + child_hlen
        elif child == REFERENCEBLOCK:
            key = False
        pos += child_hlen + size
    if at < 0:
        raise _Corrupt
    return at, key


# --------------------------------------------------------------------------- timeline + writer


def _compatible(base: Track, other: Track) -> bool:
    if base.type != other.type or base.codec != other.codec:
        return False
    # Opus headers differ in pre-skip between encoders; decoders cope. Resolution changes are
    # legal inside VP8/VP9 (MediaRecorder itself emits them when the camera changes).
    return base.codec == "A_OPUS" or base.codec_private == other.codec_private


def retrack(raw: bytes, track_at: int, track: int, out_track: int) -> bytes:
    """A block with its track number rewritten (both numbers have the same vint length)."""
    width = len(encode_size(track))
    return raw[:track_at] + encode_size(out_track, width) + raw[track_at + width :]


VIDEO_ENCODERS = {
    "V_VP8": ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "1500k"],
    "V_VP9": ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "1500k"],
}
AUDIO_ENCODERS = {
    "A_OPUS": ["-c:a", "libopus", "-b:a", "96k", "-ar", "48000"],
    "A_VORBIS": ["-c:a", "libvorbis", "-ar", "48000"],
}


def transcode_args(base: Sequence[Track]) -> list[str] | None:
    """ffmpeg output options that make a run decodable with the first run's tracks."""
    video = next((t for t in base if t.type == 1), None)
    audio = next((t for t in base if t.type == 2), None)
    args: list[str] = []
    if video is None:
        args.append("-vn")
    elif video.codec in VIDEO_ENCODERS:
        args += ["-map", "0:v:0", *VIDEO_ENCODERS[video.codec]]
        if video.width and video.height:
            args += ["-vf", f"scale={video.width}:{video.height}"]
    else:
        return None
    if audio is None:
        args.append("-an")
    elif audio.codec in AUDIO_ENCODERS:
        args += ["-map", "0:a:0?", *AUDIO_ENCODERS[audio.codec], "-ac", str(audio.channels or 1)]
    else:
        return None
    return args


@dataclass
class _Divert:
    path: Path
    handle: BinaryIO
    args: list[str]


class _PassThrough:
    """Sink that copies clusters (timecodes as they are) onto the first run's track numbers."""

    def __init__(self, write: Callable[[bytes], None], base: Sequence[Track]) -> None:
        self.write = write
        self.base = base
        self.track_map: dict[int, int] = {}
        self.tc = 0
        self.buf = bytearray()

    def on_header(
        self, ebml: bytes, timescale: int, tracks: list[Track], tracks_raw: bytes
    ) -> None:
        for track in tracks:
            match = next((b for b in self.base if _compatible(b, track)), None)
            if match and len(encode_size(match.number)) == len(encode_size(track.number)):
                self.track_map[track.number] = match.number

    def on_cluster(self, timecode: int) -> None:
        self.end_cluster()
        self.tc = timecode

    def on_block(self, raw: bytes, track_at: int, track: int, rel: int, key: bool) -> None:
        out = self.track_map.get(track)
        if out is not None:
            self.buf += raw if out == track else retrack(raw, track_at, track, out)

    def end_cluster(self) -> None:
        if self.buf:
            payload = element(TIMECODE, encode_uint(self.tc))
            self.write(CLUSTER_MAGIC + encode_size(len(payload) + len(self.buf), 8) + payload)
            self.write(bytes(self.buf))
            self.buf = bytearray()

    def on_discontinuity(self) -> None:
        pass


@dataclass
class _Run:
    first_chunk: str
    header: Literal["own", "borrowed"]
    reason: GapReason
    reencoded: bool = False
    last_chunk: str = ""
    chunks: set[str] = field(default_factory=set)
    start: int | None = None
    end: int | None = None


class Timeline:
    """Receives parsed elements, keeps the test clock, writes one continuous WebM stream."""

    def __init__(
        self,
        out: Callable[[bytes], None],
        chunk_seconds: float,
        *,
        scratch: Path | None = None,
        ffmpeg: str = "ffmpeg",
    ) -> None:
        self.main_write = self.write = out
        self.chunk_seconds = chunk_seconds
        self.scratch = scratch or Path(tempfile.gettempdir())
        self.ffmpeg = ffmpeg
        self.divert: _Divert | None = None
        self.run_video: set[int] = set()  # the current run's video tracks (output numbers)
        self.base_tracks: list[Track] | None = None
        self.timescale = 1_000_000
        self.track_map: dict[int, int] | None = None  # input track → output track (None: drop run)
        self.video_tracks: set[int] = set()
        self.need_key: set[int] = set()
        self.offset: int | None = None  # input clock → test clock, in timescale units
        self.anchor_s = 0.0  # where the current run's first cluster lands on the test clock
        self.cluster_tc: int | None = None
        self.out_cluster = bytearray()
        self.out_cluster_tc = 0
        self.frontier = 0  # end of the media written so far, test clock, timescale units
        self.first_ts: int | None = None
        self.last: dict[int, int] = {}
        self.delta: dict[int, int] = {}
        self.lost_chunks: list[str] = []  # chunks lost since the last written block
        self.lost_reason: Literal["missing_chunks", "bad_chunks"] = "missing_chunks"
        self.gaps: list[RecordingGap] = []
        self.runs: list[_Run] = []
        self.current_chunk = ""
        self.current_position = 0.0  # nominal test time of the current chunk (index × 3 s)
        self.skipped_runs: list[str] = []
        self.codecs: set[str] = set()
        self.borrowing: str | None = None  # a later chunk lending its header to the first run
        # Re-uploads: a cluster whose (input) timecode this run already had, and whose first
        # block is byte-identical, is the same media again: dropped, not a restart.
        self.seen: dict[int, bytes] = {}
        self.cluster_input_tc: int | None = None
        self.first_block = False
        self.maybe_replay: int | None = None
        self.opening = hashlib.blake2b(digest_size=16)
        self.held: list[tuple[Any, ...]] = []
        self.replaying = False
        self.replayed: list[str] = []
        # A gap ends where the picture resumes (the next video keyframe), not at the first
        # sound: (start units, reason, chunks) until then.
        self.open_gap: tuple[int, GapReason, tuple[str, ...]] | None = None

    # -- units
    def seconds(self, units: int) -> float:
        return units * self.timescale / 1e9

    def units(self, seconds: float) -> int:
        return round(seconds * 1e9 / self.timescale)

    # -- bookkeeping from the driver
    def note_lost(
        self, names: Sequence[str], reason: Literal["missing_chunks", "bad_chunks"]
    ) -> None:
        if names:
            self.lost_chunks.extend(names)
            self.lost_reason = reason

    # -- Sink
    def on_header(
        self, ebml: bytes, timescale: int, tracks: list[Track], tracks_raw: bytes
    ) -> None:
        if self.base_tracks is None:
            self._open_stream(ebml, timescale, tracks, tracks_raw)
            self.anchor_s = self.current_position
            header: Literal["own", "borrowed"] = "borrowed" if self.borrowing else "own"
            self._start_run(header, self.current_position, "no_header")
            return
        self.end_cluster()
        self.finish_divert()
        self.track_map = self._map_tracks(tracks, timescale)
        self.run_video = set(self.video_tracks)
        if self.track_map is None and timescale == self.timescale == 1_000_000:
            # Another codec (e.g. the browser switched encoder): this run alone is re-encoded
            # to the first run's codecs, on its own, then spliced in.
            self.track_map = self._start_divert(ebml, tracks, tracks_raw)
            self.run_video = {t.number for t in tracks if t.type == 1}
        if self.track_map is None:
            self.skipped_runs.append(self.current_chunk)
            log.warning(
                "chunk %s starts a recording with incompatible tracks; dropped", self.current_chunk
            )
        self._start_run("own", self._expected_start(), "restart")
        if self.divert is not None:
            self.runs[-1].reencoded = True

    def _start_divert(
        self, ebml: bytes, tracks: list[Track], tracks_raw: bytes
    ) -> dict[int, int] | None:
        assert self.base_tracks is not None
        args = transcode_args(self.base_tracks)
        if args is None:
            return None
        path = self.scratch / f".reencode-{len(self.runs)}.mkv"
        handle = path.open("wb")
        self.divert = _Divert(path, handle, args)
        self.write = handle.write
        info = element(INFO, element(TIMECODESCALE, encode_uint(self.timescale)))
        self.write(ebml + SEGMENT.to_bytes(4, "big") + UNKNOWN_SIZE + info + tracks_raw)
        log.warning(
            "chunk %s starts a recording in other codecs; re-encoding it", self.current_chunk
        )
        return {t.number: t.number for t in tracks}

    def finish_divert(self) -> None:
        """Re-encode the diverted run (its clusters already carry test-clock timecodes) and
        splice the result into the main stream."""
        if self.divert is None:
            return
        self.end_cluster()
        divert, self.divert = self.divert, None
        divert.handle.close()
        self.write = self.main_write
        out = divert.path.with_suffix(".webm")
        cmd = [
            self.ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-copyts", "-i", str(divert.path), *divert.args,
            "-f", "webm", "-live", "1", "-cluster_time_limit", "3000", str(out),
        ]  # fmt: skip
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                tail = proc.stderr.strip().splitlines()[-1:] or [""]
                log.warning("re-encoding a run failed, its time is lost: %s", tail[0])
                return
            splice = WebmParser(_PassThrough(self.main_write, self.base_tracks or []))
            with out.open("rb") as stream:
                while data := stream.read(READ_SIZE):
                    splice.feed(data)
            splice.discontinuity()
        finally:
            divert.path.unlink(missing_ok=True)
            out.unlink(missing_ok=True)

    def _open_stream(
        self, ebml: bytes, timescale: int, tracks: list[Track], tracks_raw: bytes
    ) -> None:
        self.base_tracks = tracks
        self.timescale = timescale
        self.track_map = {t.number: t.number for t in tracks}
        self.video_tracks = {t.number for t in tracks if t.type == 1}
        self.run_video = set(self.video_tracks)
        self.codecs = {t.codec for t in tracks}
        app = b"analysis_engine.stitch"
        info = element(
            INFO,
            element(TIMECODESCALE, encode_uint(timescale))
            + element(MUXINGAPP, app)
            + element(WRITINGAPP, app),
        )
        # Segment of unknown size: ffmpeg reads it as a live stream and writes the real one.
        self.write(ebml + SEGMENT.to_bytes(4, "big") + UNKNOWN_SIZE)
        self.write(info + tracks_raw)

    def _map_tracks(self, tracks: list[Track], timescale: int) -> dict[int, int] | None:
        assert self.base_tracks is not None
        if timescale != self.timescale:
            return None
        mapping: dict[int, int] = {}
        for track in tracks:
            match = next((b for b in self.base_tracks if _compatible(b, track)), None)
            if match is None:
                if track.type in {b.type for b in self.base_tracks}:
                    return None  # same kind of track in another codec: cannot copy
                continue  # a track the first recording did not have: dropped
            if len(encode_size(track.number)) != len(encode_size(match.number)):
                return None
            mapping[track.number] = match.number
        return mapping or None

    def _expected_start(self) -> float:
        return self.seconds(self.frontier) + len(self.lost_chunks) * self.chunk_seconds

    def _start_run(
        self, header: Literal["own", "borrowed"], anchor_s: float, reason: GapReason
    ) -> None:
        self.end_cluster()
        self.offset = None
        self.anchor_s = anchor_s
        self.need_key = set(self.run_video)
        self.seen = {}
        self.runs.append(_Run(self.current_chunk, header, reason))

    def on_cluster(self, timecode: int) -> None:
        self.end_cluster()
        self.replaying = False
        self.maybe_replay = None
        self.cluster_input_tc, self.first_block = timecode, True
        self.opening = hashlib.blake2b(digest_size=16)
        self.held = []
        if self.track_map is None:  # a dropped run: its time becomes part of the next gap
            self.cluster_tc = None
            return
        if self.offset is None:
            self.offset = self.units(self.anchor_s) - timecode
            self._gap_to(self.units(self.anchor_s), self.runs[-1].reason)
        else:
            ts = timecode + self.offset
            tolerance = self.units(GAP_THRESHOLD_S)
            if ts < self.frontier - tolerance:
                if timecode in self.seen:
                    self.maybe_replay = timecode  # decided by the cluster's first block
                else:
                    self._restart_without_header(timecode)
            elif ts > self.frontier + tolerance:
                self._gap_to(ts, self.lost_reason if self.lost_chunks else "timecode_jump")
        self.cluster_tc = timecode + self.offset
        self.out_cluster_tc = self.cluster_tc

    def _restart_without_header(self, timecode: int) -> None:
        """The clock went back: a new recorder session whose header chunk was lost. Same
        browser, same settings: its clusters decode with the tracks we have."""
        self._start_run("borrowed", self._expected_start(), "restart")
        self.offset = self.units(self.anchor_s) - timecode
        self._gap_to(self.units(self.anchor_s), "restart")
        self.cluster_tc = self.out_cluster_tc = timecode + self.offset

    def _gap_to(self, ts: int, reason: GapReason) -> None:
        """Open a gap from the end of the media so far; it closes at `ts` or, when the run has
        video, at the first video keyframe written after it (see `_close_gap`)."""
        start = self.frontier if self.first_ts is not None else 0
        chunks = tuple(self.lost_chunks)
        if self.open_gap is not None:  # still no picture since the last gap: one gap
            start, reason, chunks = self.open_gap[0], self.open_gap[1], self.open_gap[2] + chunks
        self.lost_chunks = []
        if ts <= start:
            return
        self.open_gap = (start, reason, chunks)
        if not self.run_video:
            self._close_gap(ts)

    def _close_gap(self, ts: int) -> None:
        if self.open_gap is None:
            return
        start, reason, chunks = self.open_gap
        self.open_gap = None
        if ts - start >= self.units(0.5) or (chunks and ts > start):
            start_s, end_s = round(self.seconds(start), 3), round(self.seconds(ts), 3)
            self.gaps.append(RecordingGap(start_s, end_s, reason, chunks))

    def finish(self) -> None:
        """End of input: a gap still waiting for a video keyframe ends with the media."""
        self._close_gap(self.frontier)

    def _is_replay(self, raw: bytes, track: int, block: tuple[Any, ...]) -> bool:
        """Called for every block. Remembers each cluster's opening (its blocks up to and
        including the first video block: sound alone may be identical digital silence), and
        for a cluster that went back in time holds its blocks until that opening is known:
        identical to the one this run had at that timecode → a re-upload, dropped; otherwise
        a recorder restart whose header was lost. Returns True when the block is consumed."""
        if not self.first_block:
            return self.replaying
        self.opening.update(raw)
        is_video = self.track_map is not None and self.track_map.get(track) in self.run_video
        opening_done = is_video or not self.run_video
        if self.maybe_replay is not None:
            self.held.append(block)
            if not opening_done:
                return True
        if not opening_done:
            return False
        self.first_block = False
        digest = self.opening.digest()
        if self.maybe_replay is None:
            if self.cluster_input_tc is not None:
                self.seen.setdefault(self.cluster_input_tc, digest)
            return False
        timecode, self.maybe_replay = self.maybe_replay, None
        held, self.held = self.held, []
        if self.seen.get(timecode) == digest:
            self.replaying = True
            if self.current_chunk not in self.replayed:
                self.replayed.append(self.current_chunk)
                log.warning("chunk %s repeats media already stitched; dropped",
                            self.current_chunk)  # fmt: skip
            return True
        self._restart_without_header(timecode)
        for args in held:
            self.on_block(*args)
        return True

    def on_block(self, raw: bytes, track_at: int, track: int, rel: int, key: bool) -> None:
        if self.track_map is None:
            if self.current_chunk not in self.lost_chunks:
                self.note_lost([self.current_chunk], "bad_chunks")
            return
        if self.cluster_tc is None or track not in self.track_map:
            return
        if self._is_replay(raw, track, (raw, track_at, track, rel, key)):
            return
        out_track = self.track_map[track]
        if out_track in self.need_key:
            if not key:
                return  # inter frames after a loss reference frames we do not have
            self.need_key.discard(out_track)
        if self.open_gap is not None and out_track in self.run_video:
            self._close_gap(self.cluster_tc + rel)
        if out_track != track:  # same vint length (checked when the run was mapped)
            raw = retrack(raw, track_at, track, out_track)
        ts = self.cluster_tc + rel
        previous = self.last.get(out_track)
        if previous is not None and 0 < ts - previous < self.units(GAP_THRESHOLD_S):
            self.delta[out_track] = ts - previous
        self.last[out_track] = ts
        if self.first_ts is None:
            self.first_ts = ts
        self.frontier = max(self.frontier, ts + self.delta.get(out_track, 0))
        self.lost_chunks = []
        run = self.runs[-1]
        run.start = ts if run.start is None else min(run.start, ts)
        run.end = self.frontier
        run.last_chunk = self.current_chunk
        run.chunks.add(self.current_chunk)
        self.out_cluster += raw
        if len(self.out_cluster) >= MAX_OUT_CLUSTER:
            self.end_cluster()

    def end_cluster(self) -> None:
        if not self.out_cluster:
            return
        payload = element(TIMECODE, encode_uint(max(0, self.out_cluster_tc)))
        self.write(CLUSTER_MAGIC + encode_size(len(payload) + len(self.out_cluster), 8) + payload)
        self.write(bytes(self.out_cluster))
        self.out_cluster = bytearray()

    def on_discontinuity(self) -> None:
        self.cluster_tc = None
        self.need_key = set(self.run_video)

    def run_reports(self) -> tuple[RunReport, ...]:
        used = [run for run in self.runs if run.start is not None and run.end is not None]
        return tuple(
            RunReport(
                index=i,
                first_chunk=run.first_chunk,
                last_chunk=run.last_chunk,
                chunks=len(run.chunks),
                start_s=round(self.seconds(run.start or 0), 3),
                end_s=round(self.seconds(run.end or 0), 3),
                header=run.header,
                reencoded=run.reencoded,
            )
            for i, run in enumerate(used)
        )


# --------------------------------------------------------------------------- ffmpeg remux


class _Remuxer:
    """ffmpeg reading the rebuilt stream on stdin, writing a seekable WebM (cues, duration), or
    an MP4 (same name, `.mp4`) when the codecs only fit MP4: stream copy either way; only
    codecs neither can hold are re-encoded."""

    def __init__(self, output: Path, *, ffmpeg: str, threads: int) -> None:
        self.output = output
        self.ffmpeg = ffmpeg
        self.threads = threads
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr: Any = None
        self.command: list[str] = []
        self.mode: Literal["copy", "reencode"] = "copy"

    def start(self, codecs: set[str]) -> None:
        self.mode = "copy" if codecs <= WEBM_CODECS or codecs <= MP4_CODECS else "reencode"
        fmt = ["-f", "webm"]
        if self.mode == "copy" and not codecs <= WEBM_CODECS:
            self.output = self.output.with_suffix(".mp4")
            fmt = ["-f", "mp4", "-movflags", "+faststart"]
        codec_args = (
            ["-c", "copy"]
            if self.mode == "copy"
            else ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "1M",
                  "-c:a", "libopus", "-b:a", "64k"]
        )  # fmt: skip
        self.command = [
            self.ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
            "-fflags", "+genpts", "-f", "matroska", "-i", "pipe:0",
            "-map", "0", *codec_args, "-copyts", "-threads", str(self.threads),
            *fmt, str(self.output),
        ]  # fmt: skip
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as ffmpeg
        self.proc = subprocess.Popen(self.command, stdin=subprocess.PIPE, stderr=self.stderr)

    def write(self, data: bytes) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(data)
        except BrokenPipeError as exc:
            self.proc.wait()
            raise self._error("ffmpeg stopped reading the stitched stream") from exc

    def finish(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        if self.proc.wait() != 0:
            raise self._error(f"ffmpeg remux failed (exit {self.proc.returncode})")

    def abort(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def _error(self, message: str) -> MediaError:
        tail = ""
        if self.stderr is not None:
            self.stderr.seek(0)
            tail = self.stderr.read()[-4000:].decode("utf-8", "replace")
        return MediaError(message, command=self.command, stderr_tail=tail)


# --------------------------------------------------------------------------- driver


@dataclass
class _ChunkStats:
    total: int = 0
    empty: int = 0
    bytes_in: int = 0
    magic_seen: bool = False
    first_bytes: dict[str, bytes] = field(default_factory=dict)


def stitch_chunks(
    chunks: Iterable[Chunk | Path],
    output: Path,
    *,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    ffmpeg: str = "ffmpeg",
    threads: int = 1,
) -> StitchReport:
    """Stitch ordered chunks into `output` (WebM). Raises InvalidInputError("INPUT_URI", …)."""
    started = time.monotonic()
    items = [Chunk.from_path(c) if isinstance(c, Path) else c for c in chunks]
    if not items:
        raise InvalidInputError("INPUT_URI", "the chunk prefix is empty (no chunks to stitch)")
    ordered, duplicates = order_chunks(items)
    output.parent.mkdir(parents=True, exist_ok=True)
    if _mp4_chunks(ordered):
        from analysis_engine.stitch_mp4 import stitch_mp4_chunks  # imports this module

        return stitch_mp4_chunks(ordered, duplicates, output, total=len(items))
    remuxer = _Remuxer(output, ffmpeg=ffmpeg, threads=threads)

    def out(data: bytes) -> None:
        if remuxer.proc is None:  # started by the first header: its codecs pick copy/re-encode
            remuxer.start(timeline.codecs)
        remuxer.write(data)

    timeline = Timeline(out, chunk_seconds, scratch=output.parent, ffmpeg=ffmpeg)
    parser = WebmParser(timeline)
    stats = _ChunkStats(total=len(ordered))
    problems: list[ChunkProblem] = []
    missing: list[int] = []
    try:
        _feed_all(ordered, parser, timeline, stats, problems, missing, chunk_seconds)
        parser.discontinuity()
        timeline.finish()
        timeline.finish_divert()
        if parser.blocks == 0 or timeline.first_ts is None:
            raise InvalidInputError("INPUT_URI", _no_media_reason(stats, parser, timeline))
        remuxer.finish()
    except BaseException:
        remuxer.abort()
        raise
    report = StitchReport(
        output=remuxer.output,
        chunks_total=len(items),
        chunks_used=len(set().union(*(r.chunks for r in timeline.runs))),
        duplicates=(*duplicates, *timeline.replayed),
        bad_chunks=tuple(problems),
        missing_indices=tuple(missing),
        runs=timeline.run_reports(),
        gaps=tuple(timeline.gaps),
        start_s=round(timeline.seconds(timeline.first_ts), 3),
        duration_s=round(timeline.seconds(timeline.frontier), 3),
        mode=remuxer.mode,
        bytes_in=stats.bytes_in,
        seconds_elapsed=round(time.monotonic() - started, 3),
    )
    log.info(
        "stitched %d/%d chunks (%d runs, %d duplicates, %d bad, %d gaps = %.1f s) into "
        "%.1f s of video in %.1f s",
        report.chunks_used, report.chunks_total, len(report.runs), len(duplicates),
        len(problems), len(report.gaps), report.gap_seconds, report.duration_s,
        report.seconds_elapsed,
    )  # fmt: skip
    return report


MP4_SUFFIXES = {".mp4", ".m4s", ".m4v", ".mov"}


def _mp4_chunks(ordered: Sequence[tuple[int | None, Chunk]]) -> bool:
    """Safari's MediaRecorder uploads fragmented MP4, not WebM: by name, else by the first
    non-empty chunk's first box."""
    if not ordered:
        return False
    if Path(ordered[0][1].name).suffix.lower() in MP4_SUFFIXES:
        return True
    if Path(ordered[0][1].name).suffix.lower() in {".webm", ".mkv"}:
        return False
    with ordered[0][1].opener() as stream:
        head = stream.read(8)
    return len(head) == 8 and head[4:8] in {b"ftyp", b"styp", b"moof", b"moov"}


def _feed_all(
    ordered: Sequence[tuple[int | None, Chunk]],
    parser: WebmParser,
    timeline: Timeline,
    stats: _ChunkStats,
    problems: list[ChunkProblem],
    missing: list[int],
    chunk_seconds: float,
) -> None:
    previous: int | None = None
    groups = recorder_groups(c.name for _, c in ordered)
    recorder = recorder_key(ordered[0][1].name) if ordered else ""
    for position, (index, chunk) in enumerate(ordered):
        if groups and recorder_key(chunk.name) != recorder:
            # The next recorder numbers its chunks from 0 again.
            recorder, previous = recorder_key(chunk.name), -1
        if index is not None and previous is not None and index > previous + 1:
            lost = list(range(previous + 1, index))
            missing.extend(lost)
            prefix = recorder if groups else ""
            timeline.note_lost([f"{prefix}{i}" for i in lost], "missing_chunks")
            parser.discontinuity()
        previous = index if index is not None else previous
        timeline.current_chunk = chunk.name
        # Only the first header's chunk uses this. At position 0 it is the test's start; if
        # header-less chunks came first, at least the chunk before them was lost, so count
        # from index 0 (names are 0-based in the uploader; 1-based would overstate by 3 s).
        timeline.current_position = (
            0.0 if position == 0 else (index if index is not None else position) * chunk_seconds
        )
        truncated_before = parser.truncated

        def borrow(first: bytes) -> None:
            if first.startswith(CLUSTER_MAGIC):
                _borrow_header(ordered, parser, timeline, chunk_seconds)

        problem = _feed_chunk(chunk, parser, stats, borrow if position == 0 else None)
        if parser.truncated > truncated_before and position > 0:
            name = ordered[position - 1][1].name
            problems.append(ChunkProblem(name, "truncated (ends inside an element)"))
            timeline.note_lost([name], "bad_chunks")
        if problem == EMPTY_CHUNK:
            # MediaRecorder hands out empty blobs (nothing was recorded in that slice); the
            # stream goes on in the next chunk, so no resync. If media was really lost, the
            # next cluster's timecode jumps and that is the gap.
            problems.append(ChunkProblem(chunk.name, problem))
        elif problem:
            problems.append(ChunkProblem(chunk.name, problem))
            timeline.note_lost([chunk.name], "bad_chunks")
            parser.discontinuity()


EMPTY_CHUNK = "empty (0 bytes)"


def _borrow_header(
    ordered: Sequence[tuple[int | None, Chunk]],
    parser: WebmParser,
    timeline: Timeline,
    chunk_seconds: float,
) -> bool:
    """When the first chunk we have is header-less (the header chunk was lost), prime the
    parser with the first later chunk's header (EBML … Tracks): the same browser restarted
    with the same settings writes the same tracks, so the first recording's clusters decode
    with it instead of being dropped. Returns True when a header was borrowed."""
    for _, chunk in ordered[1:]:
        with chunk.opener() as stream:
            head = stream.read(MAX_HEADER_ELEMENT)
        cluster = head.find(CLUSTER_MAGIC)
        if not head.startswith(EBML_MAGIC) or cluster < 0:
            continue
        index = ordered[0][0]
        timeline.borrowing = chunk.name
        timeline.current_chunk = ordered[0][1].name
        timeline.current_position = (index if index is not None else 1) * chunk_seconds
        parser.feed(head[:cluster])
        parser.discontinuity()
        timeline.borrowing = None
        if timeline.base_tracks is not None:
            log.warning(
                "the first recording's header chunk is missing; decoding with %s's header",
                chunk.name,
            )
            return True
    return False


def _feed_chunk(
    chunk: Chunk,
    parser: WebmParser,
    stats: _ChunkStats,
    before: Callable[[bytes], None] | None = None,
) -> str | None:
    """Stream one chunk into the parser; returns why the chunk is bad, or None."""
    blocks_before, discarded_before = parser.blocks, parser.discarded
    after_loss = parser.state == "resync" and parser.have_header
    size = 0
    with chunk.opener() as stream:
        first = stream.read(READ_SIZE)
        if not first:
            stats.empty += 1
            return EMPTY_CHUNK
        stats.first_bytes.setdefault(chunk.name, first[:8])
        if before is not None:
            before(first)
        if first.startswith((EBML_MAGIC, CLUSTER_MAGIC)):
            stats.magic_seen = True
            if parser.mid_element:
                # The previous chunk ended inside an element but this one starts cleanly:
                # the previous upload was truncated. Drop the torn element.
                parser.discontinuity()
                parser.truncated += 1
        elif EBML_MAGIC in first or CLUSTER_MAGIC in first:
            stats.magic_seen = True
        data = first
        while data:
            size += len(data)
            parser.feed(data)
            data = stream.read(READ_SIZE)
    stats.bytes_in += size
    if parser.blocks == blocks_before and parser.discarded - discarded_before >= size // 2:
        if not parser.have_header and CLUSTER_MAGIC in first:
            return "header-less clusters before any WebM header (the first chunk is missing)"
        if after_loss:
            return "continues a lost chunk's cluster (no cluster start to resync on)"
        return "unreadable (no WebM data found)"
    return None


def _no_media_reason(stats: _ChunkStats, parser: WebmParser, timeline: Timeline) -> str:
    n = stats.total
    if stats.empty == n:
        return f"all {n} chunks are empty (0 bytes)"
    if not stats.magic_seen:
        name, head = next(iter(stats.first_bytes.items()))
        return (
            f"the chunks are not WebM: no EBML header or Cluster in any of {n} chunks "
            f"(first bytes of {name}: {head.hex(' ')})"
        )
    if timeline.base_tracks is None:
        return (
            f"no WebM header (EBML + Tracks) in any of {n} chunks: only header-less "
            "MediaRecorder clusters, which cannot be decoded (was the first chunk lost?)"
        )
    return f"no readable audio/video frames in {n} chunks"


# --------------------------------------------------------------------------- storage adapter


def stitch_from_storage(
    storage: Any,
    refs: Sequence[Any],
    output: Path,
    *,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    prefetch: int = 8,
) -> tuple[Path, StitchReport]:
    """Stitch the chunk objects `Storage.list_chunks` returned (`ObjectRef`s).

    Chunks are downloaded to scratch a few ahead of the parser (S3 latency, not bandwidth,
    dominates 600 small GETs) and each file is deleted as soon as it has been opened, so disk
    use stays at ~`prefetch` chunks and memory at one read buffer.
    """
    refs = list(refs)
    if all(ref.uri.startswith("file://") for ref in refs):  # local runs: read in place
        paths = [Path(unquote(urlsplit(ref.uri).path)) for ref in refs]
        report = stitch_chunks(paths, output, chunk_seconds=chunk_seconds)
        return report.output, report
    scratch = output.parent / ".chunks"
    scratch.mkdir(parents=True, exist_ok=True)
    with _Prefetcher(storage, refs, scratch, prefetch) as fetcher:
        report = stitch_chunks(fetcher.chunks(), output, chunk_seconds=chunk_seconds)
    return report.output, report


class _Prefetcher:
    """Downloads chunk i+1..i+N in threads while chunk i is parsed."""

    def __init__(self, storage: Any, refs: list[Any], scratch: Path, depth: int) -> None:
        self.storage, self.refs, self.scratch, self.depth = storage, refs, scratch, depth
        self.pool = ThreadPoolExecutor(max_workers=max(1, depth), thread_name_prefix="chunk")
        self.futures: dict[int, Future[Path]] = {}
        self.order: dict[str, int] = {}
        self.rank_to_ref: dict[int, int] = {}
        self.submitted: set[int] = set()
        self.reopened = 0

    def __enter__(self) -> _Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        for future in self.futures.values():
            future.cancel()
        self.pool.shutdown(wait=True)
        for leftover in self.scratch.glob("*"):
            leftover.unlink(missing_ok=True)

    def chunks(self) -> list[Chunk]:
        # Download in the stitcher's order (natural, duplicates ranked), not the listing's.
        items = [
            Chunk(ref.name, self._opener(i), getattr(ref, "size_bytes", None))
            for i, ref in enumerate(self.refs)
        ]
        kept, _ = order_chunks(items)  # duplicates that lose are never downloaded
        self.order = {c.name: rank for rank, (_, c) in enumerate(kept)}
        by_name = {ref.name: i for i, ref in enumerate(self.refs)}
        self.rank_to_ref = {rank: by_name[name] for name, rank in self.order.items()}
        return items

    def _opener(self, i: int) -> Callable[[], BinaryIO]:
        def open_chunk() -> BinaryIO:
            rank = self.order[self.refs[i].name]
            for ahead in range(rank, rank + self.depth + 1):
                self._submit(ahead)
            future = self.futures.pop(rank, None)
            if future is None:  # opened before (a header borrowed ahead of its turn)
                self.reopened += 1
                target = self.scratch / f"{rank:06d}.again{self.reopened}"
                future = self.pool.submit(self.storage.download, self.refs[i].uri, target)
            path = future.result()
            handle = path.open("rb")
            path.unlink()  # the open handle keeps the data readable
            return handle

        return open_chunk

    def _submit(self, rank: int) -> None:
        index = self.rank_to_ref.get(rank)
        if index is None or rank in self.submitted:
            return
        self.submitted.add(rank)
        target = self.scratch / f"{rank:06d}.part"
        self.futures[rank] = self.pool.submit(self.storage.download, self.refs[index].uri, target)
