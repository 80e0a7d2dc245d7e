"""ffmpeg/ffprobe adapter (a package by concern: runner, probe, packets, cut, idle).

Style (as in ffmpy or whisper's `load_audio`): every command is built by a pure `*_argv`
function (easy to test and to print), every command runs through `run_ffmpeg` (or
`stream_ffmpeg` when its stdout is read as it comes: the one module that spawns a process,
applies a timeout and turns failure into `MediaError` carrying the argv and the tail of
stderr), and parsing the tools' output is pure again.

Bad recordings are `InvalidInputError` with a one-line reason; a broken tool or a crash is
`MediaError`. Timestamps everywhere are seconds from the start of the file (ffmpeg subtracts
the container's start time, and so do we).
"""

from __future__ import annotations

from analysis_engine.media.cut import (
    COPYABLE_AUDIO,
    MIME_TYPES,
    MP4_AUDIO,
    MP4_VIDEO,
    REENCODE_FPS,
    REENCODE_MAX_HEIGHT,
    WEBM_AUDIO,
    WEBM_VIDEO,
    copy_container,
    cut_segments,
    mime_type_for,
    reencode_segment_argv,
    segment_argv,
    thumbnail,
    thumbnail_argv,
)
from analysis_engine.media.idle import (
    CHANGE_LAG_S,
    CHANGE_PIXEL_LEVEL,
    CHANGE_SETTLE_S,
    CHANGED_PIXELS_720P,
    FULL_DECODE_BUDGET,
    KEYFRAME_VERIFY_MAX_GAP,
    MIN_CHANGED_PIXELS,
    QUIET_FRAME_BYTES_720P,
    SILENCE_NOISE_DB,
    STILL_PIXELS,
    active_from_changes,
    change_detect_argv,
    changed_pixels_threshold,
    detect_idle,
    keyframe_gap,
    quiet_stretches,
    silence_detect_argv,
)
from analysis_engine.media.packets import (
    Packet,
    _read_packets_cached,
    keyframe_times,
    keyframes_argv,
    packets_argv,
    parse_packets,
    read_packets,
)
from analysis_engine.media.probe import (
    IMAGE_FORMATS,
    container_truncation,
    parse_probe,
    probe,
    probe_argv,
    validate_duration,
)
from analysis_engine.media.runner import (
    DEFAULT_TIMEOUT,
    FFMPEG,
    FFPROBE,
    STDERR_TAIL_LINES,
    run_ffmpeg,
    stream_ffmpeg,
)
from analysis_engine.models import MediaInfo

__all__ = [
    "CHANGED_PIXELS_720P",
    "CHANGE_LAG_S",
    "CHANGE_PIXEL_LEVEL",
    "CHANGE_SETTLE_S",
    "COPYABLE_AUDIO",
    "DEFAULT_TIMEOUT",
    "FFMPEG",
    "FFPROBE",
    "FULL_DECODE_BUDGET",
    "IMAGE_FORMATS",
    "KEYFRAME_VERIFY_MAX_GAP",
    "MIME_TYPES",
    "MIN_CHANGED_PIXELS",
    "MP4_AUDIO",
    "MP4_VIDEO",
    "QUIET_FRAME_BYTES_720P",
    "REENCODE_FPS",
    "REENCODE_MAX_HEIGHT",
    "SILENCE_NOISE_DB",
    "STDERR_TAIL_LINES",
    "STILL_PIXELS",
    "WEBM_AUDIO",
    "WEBM_VIDEO",
    "MediaInfo",
    "Packet",
    "_read_packets_cached",
    "active_from_changes",
    "change_detect_argv",
    "changed_pixels_threshold",
    "container_truncation",
    "copy_container",
    "cut_segments",
    "detect_idle",
    "keyframe_gap",
    "keyframe_times",
    "keyframes_argv",
    "mime_type_for",
    "packets_argv",
    "parse_packets",
    "parse_probe",
    "probe",
    "probe_argv",
    "quiet_stretches",
    "read_packets",
    "reencode_segment_argv",
    "run_ffmpeg",
    "segment_argv",
    "silence_detect_argv",
    "stream_ffmpeg",
    "thumbnail",
    "thumbnail_argv",
    "validate_duration",
]
