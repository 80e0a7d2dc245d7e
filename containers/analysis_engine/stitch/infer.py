"""A stand-in header for a recording whose header chunk was lost (pure).

MediaRecorder writes the EBML header and Tracks once, in the first chunk. When that chunk
never arrives and no later header of the same browser can lend its tracks (a recorder
restart), the clusters are still decodable: VP8 and VP9 keyframes carry the picture size,
Opus packets their channel count, and MediaRecorder always uses a 1 ms timecode scale and a
48 kHz Opus clock. This module reads those from the blocks and writes the header the
recorder would have written, so the recording is stitched instead of rejected.

A later header of the same browser (a recorder restart) has the exact codec data, but not
necessarily the same track numbers: Chromium numbers the tracks in the order their first
frames arrive, so a restart can swap audio and video. `reconcile` keeps the numbers the
blocks show and takes the rest from the lent header.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from analysis_engine.stitch.ebml import (
    AUDIO,
    CHANNELS,
    CODECID,
    CODECPRIVATE,
    EBML,
    INFO,
    PIXELHEIGHT,
    PIXELWIDTH,
    SEGMENT,
    TIMECODESCALE,
    TRACKENTRY,
    TRACKNUMBER,
    TRACKS,
    TRACKTYPE,
    UNKNOWN_SIZE,
    VIDEO,
    Track,
    element,
    encode_uint,
)
from analysis_engine.stitch.parser import WebmParser

# EBML header children: version, read version, max ID/size lengths, DocType and its versions.
_EBML_FIELDS = ((0x4286, 1), (0x42F7, 1), (0x42F2, 4), (0x42F3, 8))
_DOCTYPE, _DOCTYPE_VERSION, _DOCTYPE_READ = 0x4282, 0x4287, 0x4285
_TRACKUID, _SAMPLING_FREQUENCY = 0x73C5, 0xB5
OPUS_RATE = 48_000
# Codecs whose blocks tell a track's kind (and a video keyframe its size).
SELF_DESCRIBING = frozenset({"V_VP8", "V_VP9", "A_OPUS"})
# How many blocks of a track to look at before calling it audio (a video track shows a
# keyframe at the first cluster MediaRecorder writes; Opus packets are never "video").
_AUDIO_AFTER_BLOCKS = 20


@dataclass
class _TrackSeen:
    blocks: int = 0
    inter: bool = False  # a block not flagged as a keyframe: only video has those
    video: Track | None = None
    stereo: bool = False


@dataclass
class _BlockCollector:
    """A parser sink that only looks at each track's first blocks."""

    tracks: dict[int, _TrackSeen] = field(default_factory=dict)
    ended: bool = False  # a header: the next recording, with its own numbering, begins

    def on_header(self, *_: object) -> None:
        self.ended = True

    def on_cluster(self, timecode: int) -> None:
        pass

    def on_block(self, raw: bytes, track_at: int, track: int, rel: int, key: bool) -> None:
        if self.ended:
            return
        seen = self.tracks.setdefault(track, _TrackSeen())
        seen.blocks += 1
        seen.inter = seen.inter or not key
        width = len(_vint(raw, track_at))
        flags = raw[track_at + width + 2]
        if flags & 0x06 or seen.video is not None:  # laced blocks are not MediaRecorder's
            return
        payload = raw[track_at + width + 3 :]
        seen.video = video_keyframe(track, payload)
        if seen.blocks == 1 and payload:
            seen.stereo = bool(payload[0] & 0x04)  # Opus TOC byte: the stereo flag

    def end_cluster(self) -> None:
        pass

    def on_discontinuity(self) -> None:
        pass


def _vint(raw: bytes, at: int) -> bytes:
    return raw[at : at + 9 - raw[at].bit_length()]


@dataclass(frozen=True)
class BlockEvidence:
    """What header-less blocks show: each track's kind where it is clear (1 video: a VP8/VP9
    keyframe or a block not flagged as a keyframe; 2 audio: many blocks, all flagged, none a
    picture), and the whole tracks when every track could be told."""

    kinds: dict[int, int]
    tracks: list[Track] | None


def read_blocks(data: bytes) -> BlockEvidence:
    """Evidence from the clusters in `data` (header-less MediaRecorder bytes cut anywhere;
    blocks after the next EBML header belong to another recording and are not looked at)."""
    collector = _BlockCollector()
    parser = WebmParser(collector)
    parser.have_header = True  # accept bare clusters: there is no header to wait for
    parser.feed(data)
    kinds: dict[int, int] = {}
    tracks: list[Track] = []
    for number, seen in sorted(collector.tracks.items()):
        if seen.video is not None:
            kinds[number] = 1
            tracks.append(seen.video)
        elif seen.inter:
            kinds[number] = 1  # video whose keyframe (and so its size) is not in `data`
        elif seen.blocks >= _AUDIO_AFTER_BLOCKS:
            kinds[number] = 2
            channels = 2 if seen.stereo else 1
            tracks.append(Track(number, 2, "A_OPUS", opus_head(channels), channels=channels))
    complete = bool(tracks) and len(tracks) == len(collector.tracks)
    if sorted(kinds.values()) not in ([1], [2], [1, 2]):
        kinds = {}  # MediaRecorder writes one track of each kind at most
    return BlockEvidence(kinds, tracks if complete and kinds else None)


def infer_tracks(data: bytes) -> list[Track] | None:
    """The tracks of the clusters in `data`, when the blocks tell them all (see
    `read_blocks`), else None."""
    return read_blocks(data).tracks


def video_keyframe(track: int, payload: bytes) -> Track | None:
    """A video Track when `payload` is a VP8 or VP9 keyframe (the sizes are in its header)."""
    if (
        len(payload) >= 10
        and not payload[0] & 0x01  # VP8 frame tag: 0 = keyframe
        and payload[3:6] == b"\x9d\x01\x2a"
    ):
        width, height = struct.unpack("<HH", payload[6:10])
        return Track(track, 1, "V_VP8", width=width & 0x3FFF, height=height & 0x3FFF)
    size = vp9_keyframe_size(payload)
    if size is not None:
        return Track(track, 1, "V_VP9", width=size[0], height=size[1])
    return None


def vp9_keyframe_size(payload: bytes) -> tuple[int, int] | None:
    """(width, height) from a VP9 keyframe's uncompressed header (VP9 spec 6.2), else None."""
    bits = _Bits(payload)
    try:
        if bits.read(2) != 2:  # frame_marker
            return None
        profile = bits.read(1) | bits.read(1) << 1
        if profile == 3:
            bits.read(1)  # reserved_zero
        if bits.read(1):  # show_existing_frame
            return None
        if bits.read(1) != 0:  # frame_type: 0 = KEY_FRAME
            return None
        bits.read(2)  # show_frame, error_resilient_mode
        if bits.read(24) != 0x498342:  # frame_sync_code
            return None
        if profile >= 2:
            bits.read(1)  # ten_or_twelve_bit
        if bits.read(3) != 7:  # color_space other than CS_RGB
            bits.read(1)  # color_range
            if profile in (1, 3):
                bits.read(3)  # subsampling_x, subsampling_y, reserved_zero
        elif profile in (1, 3):
            bits.read(1)  # reserved_zero
        return bits.read(16) + 1, bits.read(16) + 1
    except IndexError:
        return None


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self, n: int) -> int:
        value = 0
        for _ in range(n):
            byte = self.data[self.pos >> 3]  # IndexError past the end: not a keyframe header
            value = value << 1 | (byte >> (7 - (self.pos & 7))) & 1
            self.pos += 1
        return value


def opus_head(channels: int) -> bytes:
    """RFC 7845 identification header: version 1, no pre-skip, 48 kHz, mapping family 0."""
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, 0, OPUS_RATE, 0, 0)


@dataclass
class _HeaderSink:
    tracks: list[Track] | None = None
    timescale: int = 1_000_000

    def on_header(
        self, ebml: bytes, timescale: int, tracks: list[Track], tracks_raw: bytes
    ) -> None:
        if self.tracks is None:
            self.tracks, self.timescale = tracks, timescale

    def on_cluster(self, timecode: int) -> None:
        pass

    def on_block(self, *_: object) -> None:
        pass

    def end_cluster(self) -> None:
        pass

    def on_discontinuity(self) -> None:
        pass


def header_tracks(header: bytes) -> tuple[list[Track], int] | None:
    """(tracks, timecode scale) of the first EBML header … Tracks in `header`, or None."""
    sink = _HeaderSink()
    WebmParser(sink).feed(header)
    return None if sink.tracks is None else (sink.tracks, sink.timescale)


def reconcile(
    evidence: BlockEvidence, lent: Sequence[Track] | None
) -> tuple[list[Track], bool] | None:
    """The tracks to decode header-less blocks with, and whether a lent header's were used.

    The blocks decide the track numbers (and the picture size); a lent track of the same kind
    brings its exact codec data. Where the blocks cannot tell a track's kind (e.g. H.264,
    whose frames do not carry their size), the lent header's numbers stand."""
    if not lent:
        return (evidence.tracks, False) if evidence.tracks else None
    by_kind = {kind: number for number, kind in evidence.kinds.items()}
    seen = {t.number: t for t in evidence.tracks or ()}
    tracks = []
    for track in lent:
        number = by_kind.get(track.type, track.number)
        own = seen.get(number)
        size = {"width": own.width, "height": own.height} if own and own.type == 1 else {}
        tracks.append(replace(track, number=number, **size))
    if len({t.number for t in tracks}) < len(tracks):
        return list(lent), True  # the blocks and the header disagree: keep the header whole
    return tracks, True


def header_bytes(tracks: Sequence[Track], *, timescale: int = 1_000_000) -> bytes:
    """EBML header + Segment (unknown size) + Info + Tracks, as MediaRecorder writes them."""
    ebml = b"".join(element(i, encode_uint(v)) for i, v in _EBML_FIELDS)
    ebml += element(_DOCTYPE, b"webm")
    ebml += element(_DOCTYPE_VERSION, encode_uint(4)) + element(_DOCTYPE_READ, encode_uint(2))
    info = element(INFO, element(TIMECODESCALE, encode_uint(timescale)))
    entries = b"".join(element(TRACKENTRY, _track_entry(t)) for t in tracks)
    segment = SEGMENT.to_bytes(4, "big") + UNKNOWN_SIZE
    return element(EBML, ebml) + segment + info + element(TRACKS, entries)


def _track_entry(track: Track) -> bytes:
    body = element(TRACKNUMBER, encode_uint(track.number))
    body += element(_TRACKUID, encode_uint(track.number))
    body += element(TRACKTYPE, encode_uint(track.type))
    body += element(CODECID, track.codec.encode("ascii"))
    if track.codec_private:
        body += element(CODECPRIVATE, track.codec_private)
    if track.type == 1:
        size = element(PIXELWIDTH, encode_uint(track.width or 0))
        size += element(PIXELHEIGHT, encode_uint(track.height or 0))
        body += element(VIDEO, size)
    else:
        rate = element(_SAMPLING_FREQUENCY, struct.pack(">d", OPUS_RATE))
        body += element(AUDIO, rate + element(CHANNELS, encode_uint(track.channels or 1)))
    return body
