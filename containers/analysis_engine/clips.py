"""Clip policy: what the model reads for each segment (its own cut, or a stretch of one upload)."""

from __future__ import annotations

import logging
from pathlib import Path

from analysis_engine import media
from analysis_engine.mapreduce import Clip
from analysis_engine.models import Interval, MediaInfo, SegmentPlan

log = logging.getLogger("analysis")

# The Files API takes files up to 2 GB; stay clear of the edge.
FILES_API_MAX_BYTES = 1_900_000_000


def segment_clips(
    video: Path, info: MediaInfo, plan: SegmentPlan, out_dir: Path, *, threads: int | None = None
) -> dict[int, Clip]:
    """What the model reads per segment. With regular keyframes: stream-copied cuts (cheap,
    uploaded and retried one by one). With sparse keyframes exact cuts would mean re-encoding
    the whole recording (~27x realtime on one core), so the recording is uploaded once and
    each segment is a `videoMetadata` clip of it instead."""
    whole = _whole_file_mime(info)
    if plan.mode == "reencode" and whole is not None:
        log.info("sparse keyframes: one upload, segments as clip offsets (no re-encode)")
        return {s.index: Clip(video, whole, Interval(s.start_s, s.end_s)) for s in plan.to_analyse}
    files = media.cut_segments(video, plan, out_dir, info=info, threads=threads)
    return {i: Clip(path, media.mime_type_for(path)) for i, path in files.items()}


def _whole_file_mime(info: MediaInfo) -> str | None:
    """The MIME type under which Gemini takes the recording as it is, or None."""
    container = media.copy_container(info)
    if info.size_bytes > FILES_API_MAX_BYTES or container is None:
        return None
    return f"video/{container}" if container in info.format_name else None
