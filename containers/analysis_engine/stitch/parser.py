"""A streaming push parser over WebM/Matroska bytes: header, clusters, blocks, resync."""

from __future__ import annotations

from typing import Literal, Protocol

from analysis_engine.stitch.ebml import (
    BLOCK,
    BLOCKGROUP,
    CLUSTER,
    CLUSTER_MAGIC,
    CLUSTER_SKIPPABLE,
    CRC32,
    EBML,
    EBML_MAGIC,
    INFO,
    MAX_BLOCK,
    MAX_HEADER_ELEMENT,
    REFERENCEBLOCK,
    SEGMENT,
    SIMPLEBLOCK,
    TIMECODE,
    TOP_LEVEL,
    TOP_SKIPPABLE,
    TRACKS,
    VOID,
    Track,
    _Corrupt,
    element,
    parse_timecode_scale,
    parse_tracks,
    read_header,
    read_size,
)


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
