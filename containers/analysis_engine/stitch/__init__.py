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
- A restarted recorder counts from 0 again, so the media cannot tell how long it was stopped;
  the chunks' upload times can (`wallclock`): the new run starts after that pause, which is a
  `recorder_stopped` gap. Without plausible upload times (missing, a bulk copy, out of order)
  runs are placed back to back and the report says so (`restart_timing`).
  If the first recording's header chunk was lost, a later header (a restart of the same
  browser) decodes it, or else one inferred from the blocks themselves (`infer`: VP8/VP9
  keyframes carry the picture size, Opus packets the channels); that recording is placed on
  its own cluster timecodes, so only what was really lost is a gap. An empty chunk
  (MediaRecorder's empty blob) is reported but the stream goes on without a resync.
- Safari's fragmented-MP4 chunks take another path (`mp4`): stream copy into one MP4.

Modules: `chunks` (names → order), `ebml` (primitives), `parser` (streaming WebM parser),
`timeline` (the test clock, gaps, runs), `wallclock` (upload times → pauses), `infer` (a lost
header from the blocks), `remux` (ffmpeg), `report` (plain data), `mp4`;
this module drives them and adapts storage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

from analysis_engine.errors import InvalidInputError
from analysis_engine.stitch.chunks import (
    Chunk,
    chunk_index,
    natural_key,
    order_chunks,
    recorder_groups,
    recorder_key,
)
from analysis_engine.stitch.ebml import (
    CLUSTER_MAGIC,
    EBML_MAGIC,
    MAX_HEADER_ELEMENT,
    Track,
)
from analysis_engine.stitch.infer import (
    BlockEvidence,
    header_bytes,
    header_tracks,
    read_blocks,
    reconcile,
)
from analysis_engine.stitch.mp4 import stitch_mp4_chunks
from analysis_engine.stitch.parser import (
    WebmParser,
)
from analysis_engine.stitch.remux import (
    Remuxer,
)
from analysis_engine.stitch.report import (
    ChunkProblem,
    GapReason,
    HeaderSource,
    RecordingGap,
    RestartTiming,
    RunReport,
    StitchReport,
)
from analysis_engine.stitch.timeline import (
    DEFAULT_CHUNK_SECONDS,
    GAP_THRESHOLD_S,
    READ_SIZE,
    Timeline,
)
from analysis_engine.stitch.wallclock import upload_clock

log = logging.getLogger(__name__)


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
        return stitch_mp4_chunks(ordered, duplicates, output, total=len(items))
    remuxer = Remuxer(output, ffmpeg=ffmpeg, threads=threads)

    def out(data: bytes) -> None:
        if remuxer.proc is None:  # started by the first header: its codecs pick copy/re-encode
            remuxer.start(timeline.codecs)
        remuxer.write(data)

    timeline = Timeline(out, chunk_seconds, scratch=output.parent, ffmpeg=ffmpeg)
    timeline.uploads, clock_note = upload_clock(
        [(c.name, c.uploaded_at) for _, c in ordered], chunk_seconds
    )
    parser = WebmParser(timeline)
    stats = _ChunkStats(total=len(ordered))
    problems: list[ChunkProblem] = []
    missing: list[int] = []
    try:
        _feed_all(ordered, parser, timeline, stats, problems, missing, chunk_seconds)
        missing[:0] = timeline.lead_missing
        parser.discontinuity()
        timeline.finish()
        timeline.finish_divert()
        if parser.blocks == 0 or timeline.first_ts is None:
            raise InvalidInputError("INPUT_URI", _no_media_reason(stats, parser, timeline))
        remuxer.finish()
    except BaseException:
        remuxer.abort()
        raise
    timing = _restart_timing(timeline, clock_note)
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
        restart_timing=timing,
        restart_timing_note=clock_note if timing == "back_to_back" else "",
    )
    log.info(
        "stitched %d/%d chunks (%d runs, %d duplicates, %d bad, %d gaps = %.1f s) into "
        "%.1f s of video in %.1f s",
        report.chunks_used, report.chunks_total, len(report.runs), len(duplicates),
        len(problems), len(report.gaps), report.gap_seconds, report.duration_s,
        report.seconds_elapsed,
    )  # fmt: skip
    return report


def _restart_timing(timeline: Timeline, clock_note: str) -> RestartTiming | None:
    """How restarts were placed; a fallback is logged (a stopped recorder's pause is lost)."""
    if len(timeline.runs) < 2:
        return None
    if timeline.uploads is not None:
        for run in timeline.runs[1:]:
            if run.paused_s:
                log.info("the recorder was stopped for %.1f s before chunk %s (upload times)",
                         run.paused_s, run.first_chunk)  # fmt: skip
        return "upload_times"
    log.warning(
        "%d recorder restarts placed back to back (any time the recorder was stopped is "
        "squeezed out): %s", len(timeline.runs) - 1, clock_note,
    )  # fmt: skip
    return "back_to_back"


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
    header_checked = False
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
        # header-less chunks came first, at least the chunk before them was lost: a first
        # guess (0-based names), which the clusters' own timecodes then correct.
        timeline.current_position = (
            0.0 if position == 0 else (index if index is not None else position) * chunk_seconds
        )
        truncated_before = parser.truncated

        def lend(first: bytes, position: int = position, prefix: str = recorder) -> None:
            # The first bytes of the recording are not its EBML header: the header chunk was
            # lost (a Chromium chunk may start anywhere, even inside a block).
            nonlocal header_checked
            header_checked = True
            if not first.startswith(EBML_MAGIC):
                timeline.first_prefix = prefix if groups else ""
                _lend_header(ordered, position, parser, timeline, chunk_seconds)

        problem = _feed_chunk(chunk, parser, stats, None if header_checked else lend)
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


# Inferring tracks reads this much of the first header-less chunks (a keyframe of each track).
INFER_READ_BYTES = 4 * 1024 * 1024
INFER_READ_CHUNKS = 4


def _lend_header(
    ordered: Sequence[tuple[int | None, Chunk]],
    position: int,
    parser: WebmParser,
    timeline: Timeline,
    chunk_seconds: float,
) -> None:
    """The first chunk with data is header-less (the header chunk was lost): prime the parser
    with a header so the first recording decodes instead of being dropped. Its tracks are
    read from its own blocks and, where a later chunk starts a recording (the same browser
    restarted), completed with that header's codec data (see `infer.reconcile`)."""
    index = ordered[position][0]
    timeline.first_index = index
    timeline.current_chunk = ordered[position][1].name
    timeline.current_position = (index if index is not None else 1) * chunk_seconds
    lent = _later_header(ordered[position + 1 :])
    got = reconcile(_block_evidence(ordered[position:]), lent[0] if lent else None)
    if got is None:
        return
    tracks, borrowed = got
    timeline.lent = "borrowed" if borrowed else "inferred"
    parser.feed(header_bytes(tracks, timescale=lent[1] if lent and borrowed else 1_000_000))
    parser.discontinuity()
    timeline.lent = None
    log.warning(
        "the first recording's header chunk is missing; decoding from %s with %s: %s",
        timeline.current_chunk,
        "a later header's tracks" if borrowed else "tracks inferred from its blocks",
        ", ".join(
            f"{t.number}: {t.codec} {t.width}x{t.height}"
            if t.type == 1
            else f"{t.number}: {t.codec} {t.channels} ch"
            for t in tracks
        ),
    )


def _later_header(later: Sequence[tuple[int | None, Chunk]]) -> tuple[list[Track], int] | None:
    """The tracks and timecode scale of the first later chunk that starts a recording."""
    for _, chunk in later:
        with chunk.opener() as stream:
            head = stream.read(MAX_HEADER_ELEMENT)
        cluster = head.find(CLUSTER_MAGIC)
        if head.startswith(EBML_MAGIC) and cluster >= 0:
            return header_tracks(head[:cluster])
    return None


def _block_evidence(chunks: Sequence[tuple[int | None, Chunk]]) -> BlockEvidence:
    data = bytearray()
    for _, chunk in chunks[:INFER_READ_CHUNKS]:
        with chunk.opener() as stream:
            data += stream.read(INFER_READ_BYTES - len(data))
        if len(data) >= INFER_READ_BYTES:
            break
    return read_blocks(bytes(data))


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
            "MediaRecorder clusters (the first chunk was lost) whose tracks cannot be "
            "inferred from their blocks (VP8/VP9 video with a keyframe, Opus audio)"
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
            Chunk(
                ref.name,
                self._opener(i),
                getattr(ref, "size_bytes", None),
                getattr(ref, "uploaded_at", None),
            )
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


__all__ = [
    "DEFAULT_CHUNK_SECONDS",
    "GAP_THRESHOLD_S",
    "Chunk",
    "ChunkProblem",
    "GapReason",
    "HeaderSource",
    "RecordingGap",
    "RestartTiming",
    "RunReport",
    "StitchReport",
    "chunk_index",
    "natural_key",
    "order_chunks",
    "recorder_groups",
    "recorder_key",
    "stitch_chunks",
    "stitch_from_storage",
]
