"""The test clock: clusters re-timed onto it, gaps, runs, replays, one output stream."""

from __future__ import annotations

import hashlib
import logging
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

from analysis_engine.stitch.ebml import (
    CLUSTER_MAGIC,
    INFO,
    MAX_OUT_CLUSTER,
    MUXINGAPP,
    SEGMENT,
    TIMECODE,
    TIMECODESCALE,
    UNKNOWN_SIZE,
    WRITINGAPP,
    Track,
    element,
    encode_size,
    encode_uint,
)
from analysis_engine.stitch.infer import SELF_DESCRIBING, video_keyframe
from analysis_engine.stitch.parser import (
    WebmParser,
)
from analysis_engine.stitch.report import (
    GapReason,
    HeaderSource,
    RecordingGap,
    RunReport,
)
from analysis_engine.stitch.wallclock import pause_seconds

log = logging.getLogger(__name__)


READ_SIZE = 64 * 1024
DEFAULT_CHUNK_SECONDS = 3.0
# A jump of the cluster clock beyond this is lost media, not jitter between tracks.
GAP_THRESHOLD_S = 1.0
# Output clusters are flushed at this size even if the input cluster goes on (unknown size).


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
    header: HeaderSource
    reason: GapReason
    reencoded: bool = False
    paused_s: float = 0.0  # the recorder was stopped this long before this run (upload times)
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
        self.classifying = False  # a header-less restart: track numbers learnt from the blocks
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
        # Set while the driver feeds a header the first run did not bring (its chunk was lost).
        self.lent: HeaderSource | None = None
        # The first chunk we have (index, name prefix): names the chunks lost before it.
        self.first_index: int | None = None
        self.first_prefix = ""
        self.lead_missing: list[int] = []  # indices lost before the first chunk we have
        # Chunk name → upload time, when those times can date a restart's pause (see
        # `wallclock`); None: restarts are placed back to back.
        self.uploads: dict[str, float] | None = None
        self.last_media_chunk: str | None = None  # the last chunk that wrote a block
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
            self._start_run(self.lent or "own", self.current_position, "no_header")
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
        self._start_restart("own")
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

    def _pause_s(self) -> float:
        """How long the recorder was stopped before the run the current chunk starts: the
        upload times of the last chunk with media and of this one, minus the media recorded
        in between (this chunk's slice and each lost chunk's). 0 without usable times."""
        if self.uploads is None or self.last_media_chunk is None:
            return 0.0
        return pause_seconds(
            self.uploads.get(self.last_media_chunk),
            self.uploads.get(self.current_chunk),
            (1 + len(self.lost_chunks)) * self.chunk_seconds,
        )

    def _start_restart(self, header: HeaderSource) -> GapReason:
        """A new recorder session starts at the current chunk: after the time expected from
        the media, plus any pause the upload times show. Returns the gap's reason."""
        pause = self._pause_s()
        reason: GapReason = "recorder_stopped" if pause > 0 else "restart"
        self._start_run(header, self._expected_start() + pause, reason)
        self.runs[-1].paused_s = pause
        return reason

    def _start_run(self, header: HeaderSource, anchor_s: float, reason: GapReason) -> None:
        self.end_cluster()
        self.offset = None
        self.classifying = False
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
            anchor = self._run_anchor(timecode)
            self.offset = anchor - timecode
            self._gap_to(anchor, self.runs[-1].reason)
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

    def _run_anchor(self, timecode: int) -> int:
        """Where the current run's first cluster lands on the test clock (units).

        A first recording whose header chunk was lost is placed on its own cluster timecodes:
        its clock started with the test, so what comes before its first cluster is exactly
        what was lost. Counting chunk names instead would place it a chunk late when the
        uploader numbers from 1, and a Chromium chunk starts mid-cluster anyway. A timecode
        beyond any chunk count (not a MediaRecorder clock) falls back to the count."""
        nominal = self.units(self.anchor_s)
        if len(self.runs) > 1 or self.runs[-1].header == "own" or self.first_ts is not None:
            return nominal
        latest = nominal + self.units(3 * self.chunk_seconds)
        if not 0 <= timecode <= latest:
            log.warning(
                "the first recording's clusters start at %.1f s, far from chunk %s's place "
                "(%.1f s): placed by chunk count", self.seconds(timecode), self.current_chunk,
                self.anchor_s,
            )  # fmt: skip
            return nominal
        self._name_lead_loss(round(self.seconds(timecode) / self.chunk_seconds))
        return timecode

    def _name_lead_loss(self, count: int) -> None:
        """The chunks lost before the first one we have: as many as their time fills, the
        indices just before it (whether the uploader counts from 0 or from 1)."""
        if self.first_index is None or count <= 0:
            return
        self.lead_missing = list(range(max(0, self.first_index - count), self.first_index))
        names = [f"{self.first_prefix}{i}" for i in self.lead_missing]
        self.lost_chunks = [*names, *self.lost_chunks]

    def _restart_without_header(self, timecode: int) -> None:
        """The clock went back: a new recorder session whose header chunk was lost. Same
        browser, same settings: its clusters decode with the tracks we have, but Chromium
        numbers tracks in the order their first frames arrive, so a restart may swap audio
        and video: with codecs whose blocks tell their kind, the numbers are re-learnt."""
        reason = self._start_restart("borrowed")
        self.offset = self.units(self.anchor_s) - timecode
        self._gap_to(self.units(self.anchor_s), reason)
        self.cluster_tc = self.out_cluster_tc = timecode + self.offset
        if self.base_tracks and all(t.codec in SELF_DESCRIBING for t in self.base_tracks):
            self.track_map, self.classifying = {}, True

    def _classify(self, raw: bytes, track_at: int, track: int, key: bool) -> None:
        """Map a header-less run's track onto the first run's track of the same kind: video
        when its block is a VP8/VP9 keyframe or not a keyframe at all (MediaRecorder flags
        every audio block as one), else audio."""
        assert self.base_tracks is not None and self.track_map is not None
        width = len(encode_size(track))
        video = not key or video_keyframe(track, raw[track_at + width + 3 :]) is not None
        kind = 1 if video else 2
        base = next((t for t in self.base_tracks if t.type == kind), None)
        taken = set(self.track_map.values())
        if base is not None and base.number not in taken and width == len(encode_size(base.number)):
            self.track_map[track] = base.number

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
        if self.classifying and track not in self.track_map:
            self._classify(raw, track_at, track, key)
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
        run.last_chunk = self.last_media_chunk = self.current_chunk
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
                paused_s=run.paused_s,
            )
            for i, run in enumerate(used)
        )
