"""EBML / Matroska primitives (pure): element IDs, variable-size integers, elements, and the
Tracks and Info payloads the stitcher needs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MAX_OUT_CLUSTER = 8 * 1024 * 1024
MAX_BLOCK = 32 * 1024 * 1024
MAX_HEADER_ELEMENT = 1024 * 1024

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
