"""Cutting the recording into the segments the model sees (one ffmpeg pass), thumbnails."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from analysis_engine.errors import MediaError
from analysis_engine.media.probe import (
    probe,
)
from analysis_engine.media.runner import (
    DEFAULT_TIMEOUT,
    ffmpeg_base,
    run_ffmpeg,
    thread_args,
)
from analysis_engine.models import MediaInfo, SegmentPlan

log = logging.getLogger(__name__)


MIME_TYPES = {".mp4": "video/mp4", ".webm": "video/webm", ".jpg": "image/jpeg"}
WEBM_VIDEO = {"vp8", "vp9", "av1"}
WEBM_AUDIO = {"opus", "vorbis"}
MP4_VIDEO = {"h264", "hevc", "av1", "mpeg4"}
MP4_AUDIO = {"aac", "mp3", "opus", "ac3", "eac3", "alac"}
COPYABLE_AUDIO = {"aac", "mp3"}  # into a re-encoded MP4 segment without re-encoding

# Re-encode settings: Gemini samples video at 1 fps, so 2 fps keeps every sampled frame with
# margin; <= 720p, ultrafast x264 and copied sound (or 16 kHz mono AAC) keep it cheap.
REENCODE_FPS = 2
REENCODE_MAX_HEIGHT = 720
# Longer than any recording we accept (MAX_RECORDING_SECONDS is hours).
ONE_SEGMENT_SECONDS = 10**7


def segment_argv(
    path: Path, cut_times: Sequence[float], pattern: Path, *, fmt: str, threads: int | None = None
) -> list[str]:
    """One stream-copy pass splitting at the first keyframe at/after each cut time."""
    argv = [*ffmpeg_base(), "-loglevel", "error", *thread_args(threads), "-i", str(path)]
    argv += ["-map", "0:v:0", "-map", "0:a:0?", "-c", "copy", "-f", "segment"]
    argv += _segment_opts(cut_times, fmt)
    return [*argv, str(pattern)]


def reencode_segment_argv(
    path: Path,
    cut_times: Sequence[float],
    pattern: Path,
    *,
    fps: int = REENCODE_FPS,
    max_height: int = REENCODE_MAX_HEIGHT,
    audio_codec: str | None = None,
    threads: int | None = None,
) -> list[str]:
    """One decode pass: low fps, <= 720p, ultrafast H.264, keyframes forced at the cuts so the
    segment muxer can split exactly there. AAC/MP3 sound is copied (ffmpeg's AAC encoder runs at
    only ~40x realtime on one core); anything else becomes 16 kHz mono AAC (speech is enough)."""
    vf = f"fps={fps},scale=-2:'min({max_height},ih)':flags=fast_bilinear,format=yuv420p"
    argv = [*ffmpeg_base(), "-loglevel", "error", *thread_args(threads), "-i", str(path)]
    argv += ["-map", "0:v:0", "-map", "0:a:0?", "-vf", vf]
    argv += ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-crf", "30"]
    argv += ["-g", str(fps * 60), *(["-threads", str(threads)] if threads else [])]
    # The encoder rounds forced keyframe times to its frame grid (1/fps) while the segment
    # muxer compares exact times: a cut at 15.037 s got its keyframe at 15.0 s and the muxer
    # then split one keyframe late, shifting every later segment. So both get grid times,
    # the muxer's a quarter frame early.
    grid = sorted({round(t * fps) / fps for t in cut_times if round(t * fps) > 0})
    if grid:
        argv += ["-force_key_frames", ",".join(f"{t:.3f}" for t in grid)]
    if audio_codec in COPYABLE_AUDIO:
        argv += ["-c:a", "copy"]
    else:
        argv += ["-c:a", "aac", "-aac_coder", "fast", "-b:a", "32k", "-ac", "1", "-ar", "16000"]
    argv += ["-f", "segment"]
    argv += _segment_opts([t - 0.25 / fps for t in grid], "mp4")
    return [*argv, str(pattern)]


def _segment_opts(cut_times: Sequence[float], fmt: str) -> list[str]:
    # bitexact: no random track/segment UIDs or muxer version strings, so the same cut of the
    # same recording is the same bytes (recorded model answers replay by request hash).
    opts = ["-fflags", "+bitexact", "-segment_format", fmt, "-reset_timestamps", "1"]
    if cut_times:
        opts += ["-segment_times", ",".join(f"{t:.3f}" for t in cut_times)]
    else:
        # No cut: one file. Without a time the muxer would split at its default 2 s
        # segment_time, at every keyframe past it.
        opts += ["-segment_time", str(ONE_SEGMENT_SECONDS)]
    if fmt == "mp4":
        opts += ["-segment_format_options", "movflags=+faststart"]
    return opts


def thumbnail_argv(path: Path, at_s: float, dest: Path, *, width: int = 320) -> list[str]:
    argv = [*ffmpeg_base(), "-loglevel", "error", "-ss", f"{max(0.0, at_s):.3f}", "-i", str(path)]
    argv += ["-map", "0:v:0", "-frames:v", "1", "-vf", f"scale={width}:-2", "-q:v", "4"]
    return [*argv, "-f", "image2", "-c:v", "mjpeg", str(dest)]


def mime_type_for(path: Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in MIME_TYPES:
        raise ValueError(f"no known video MIME type for {Path(path).name}")
    return MIME_TYPES[suffix]


def copy_container(info: MediaInfo) -> str | None:
    """The container a stream copy can write for these codecs ("webm"/"mp4"), or None."""
    v, a = info.video_codec, info.audio_codec
    if v in WEBM_VIDEO and (a is None or a in WEBM_AUDIO):
        return "webm"
    if v in MP4_VIDEO and (a is None or a in MP4_AUDIO):
        return "mp4"
    return None


def cut_segments(
    path: Path,
    plan: SegmentPlan,
    out_dir: Path,
    *,
    info: MediaInfo | None = None,
    threads: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[int, Path]:
    """Write one file per segment to analyse; returns {segment index: path}.

    One ffmpeg pass either way: the segment muxer splits at the plan's boundaries (stream copy
    when the plan says the cuts lie on keyframes and the codecs fit MP4/WebM; otherwise a cheap
    re-encode with keyframes forced at the cuts). Skipped segments' files are deleted.
    """
    path, out_dir = Path(path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    info = info or probe(path)
    if not plan.to_analyse:
        return {}
    container = copy_container(info) if plan.mode == "copy" else None
    produced: list[Path] = []
    if container is not None:
        # Cuts sit a millisecond early so a keyframe printed (rounded) at t still qualifies.
        cuts = [max(0.0, s.start_s - 0.001) for s in plan.segments[1:]]
        argv = segment_argv(
            path, cuts, out_dir / f"seg-%05d.{container}", fmt=container, threads=threads
        )
        produced = _run_segmenter(argv, out_dir, timeout)
        if len(produced) != len(plan.segments):
            # The muxer found no keyframe for some cut (timestamps disagree with the plan's):
            # fall back to exact cuts rather than misnumbering segments.
            log.warning(
                "stream copy gave %d files for %d segments; re-encoding instead",
                len(produced),
                len(plan.segments),
            )
            container = None
    if container is None:
        exact = [s.start_s for s in plan.segments[1:]]
        argv = reencode_segment_argv(
            path, exact, out_dir / "seg-%05d.mp4", audio_codec=info.audio_codec, threads=threads
        )
        produced = _run_segmenter(argv, out_dir, timeout)
    if len(produced) != len(plan.segments):
        raise MediaError(
            f"segmenting produced {len(produced)} files for {len(plan.segments)} planned segments",
            command=argv,
        )
    out: dict[int, Path] = {}
    for seg, file in zip(plan.segments, produced, strict=True):
        if seg.skip_reason is None:
            out[seg.index] = file
        else:
            file.unlink(missing_ok=True)
    return out


def _run_segmenter(argv: list[str], out_dir: Path, timeout: float) -> list[Path]:
    """Clear earlier segment files (a rerun in the same scratch dir), run, list the output."""
    for old in out_dir.glob("seg-*"):
        old.unlink()
    run_ffmpeg(argv, timeout=timeout)
    return sorted(out_dir.glob("seg-*"))


# ------------------------------------------------------------------------- thumbnails
def thumbnail(path: Path, at_s: float, dest: Path, *, width: int = 320) -> Path:
    """A JPEG of the frame at `at_s` seconds, `width` pixels wide."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    argv = thumbnail_argv(path, at_s, dest, width=width)
    run_ffmpeg(argv, timeout=120.0)
    if not dest.exists() or dest.stat().st_size == 0:
        raise MediaError(f"no frame at {at_s:.3f}s for a thumbnail", command=argv)
    return dest
