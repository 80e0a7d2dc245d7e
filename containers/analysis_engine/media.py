"""ffmpeg/ffprobe adapter.

Style (as in ffmpy or whisper's `load_audio`): every command is built by a pure `*_argv`
function (easy to test and to print), every command runs through `run_ffmpeg` (the one place
that spawns a process, applies a timeout and turns failure into `MediaError` carrying the
argv and the tail of stderr), and parsing the tools' output is pure again.

Bad recordings are `InvalidInputError` with a one-line reason; a broken tool or a crash is
`MediaError`. Timestamps everywhere are seconds from the start of the file (ffmpeg subtracts
the container's start time, and so do we).
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import math
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis_engine import detector_log
from analysis_engine import intervals as iv
from analysis_engine.errors import InvalidInputError, MediaError
from analysis_engine.models import Interval, MediaInfo, SegmentPlan

log = logging.getLogger(__name__)

FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
FFPROBE = shutil.which("ffprobe") or "/usr/bin/ffprobe"
STDERR_TAIL_LINES = 15
DEFAULT_TIMEOUT = 3600.0

MIME_TYPES = {".mp4": "video/mp4", ".webm": "video/webm", ".jpg": "image/jpeg"}
WEBM_VIDEO = {"vp8", "vp9", "av1"}
WEBM_AUDIO = {"opus", "vorbis"}
MP4_VIDEO = {"h264", "hevc", "av1", "mpeg4"}
MP4_AUDIO = {"aac", "mp3", "opus", "ac3", "eac3", "alac"}
COPYABLE_AUDIO = {"aac", "mp3"}  # into a re-encoded MP4 segment without re-encoding
# ffprobe "succeeds" on still images and on plain text (the `tty` demuxer renders text as
# video); neither is a recording.
IMAGE_FORMATS = {"image2", "tty", "gif", "apng", "webp_pipe"}

# Re-encode settings: Gemini samples video at 1 fps, so 2 fps keeps every sampled frame with
# margin; <= 720p, ultrafast x264 and copied sound (or 16 kHz mono AAC) keep it cheap.
REENCODE_FPS = 2
REENCODE_MAX_HEIGHT = 720

# Idle candidates: a second whose non-key video packets average at most this many bytes per
# frame (or that has no video packets at all: variable-frame-rate recorders emit nothing for a
# still screen) is "quiet". x264/VP8/VP9 encode an unchanged 720p frame in ~10-110 bytes; any
# visible change costs far more. The bound scales with the picture area.
QUIET_FRAME_BYTES_720P = 400
# Idle verification decodes keyframes only when they are at most this far apart.
KEYFRAME_VERIFY_MAX_GAP = 10.0
# With sparse keyframes, a full decode verifies a candidate only if reaching it (from the
# keyframe before it) decodes at most this many frames per frame of the candidate itself.
FULL_DECODE_BUDGET = 2.0
SILENCE_NOISE_DB = -50.0
# Picture change inside a quiet packet run. freezedetect averages the difference over the
# whole frame, so one typed character in a 720p editor (~40-150 changed pixels) is far below
# any noise threshold, and so is a blinking caret (~40 pixels). Instead each sampled frame is
# compared with the one CHANGE_LAG_S earlier (and with the previous sample), counting pixels
# that changed by more than CHANGE_PIXEL_LEVEL: slow typing (1 char/s) changes 150-300 pixels
# over 6 s, a caret that blinks in place at most its own ~40. Measured on a dark 720p editor.
CHANGE_LAG_S = 6.0
CHANGE_PIXEL_LEVEL = 24
CHANGED_PIXELS_720P = 80.0
MIN_CHANGED_PIXELS = 20.0
STILL_PIXELS = 2.0  # consecutive samples this close are the same picture
CHANGE_SETTLE_S = 1.0  # a still stretch starts this long after the sample showing a change


# ----------------------------------------------------------------------------- runner
def run_ffmpeg(
    argv: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run ffmpeg/ffprobe. The only function here that spawns a process.

    Raises MediaError (with the argv and the last stderr lines) on a non-zero exit, a timeout,
    or a missing binary.
    """
    argv = [str(a) for a in argv]
    try:
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise MediaError(f"{argv[0]} is not installed", command=argv) from exc
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        raise MediaError(
            f"{Path(argv[0]).name} timed out after {timeout:g}s",
            command=argv,
            stderr_tail=_tail(stderr or ""),
        ) from exc
    if proc.returncode != 0:
        raise MediaError(
            f"{Path(argv[0]).name} exited with {proc.returncode}",
            command=argv,
            stderr_tail=_tail(proc.stderr),
        )
    return proc


def _tail(stderr: str, lines: int = STDERR_TAIL_LINES) -> str:
    return "\n".join(stderr.strip().splitlines()[-lines:])


def _ffmpeg() -> list[str]:
    return [FFMPEG, "-hide_banner", "-nostdin", "-nostats", "-y"]


def _threads(threads: int | None) -> list[str]:
    """Decoder (input) and filter-graph thread caps; None lets ffmpeg pick per core."""
    return ["-filter_threads", str(threads), "-threads", str(threads)] if threads else []


def _seek(start: float | None, end: float | None) -> list[str]:
    """Input options limiting decoding to [start, end) (fast keyframe seek, then exact)."""
    args: list[str] = []
    if start:
        args += ["-ss", f"{start:.3f}"]
    if end is not None:
        args += ["-t", f"{max(0.0, end - (start or 0.0)):.3f}"]
    return args


# ------------------------------------------------------------------------- argv builders
def probe_argv(path: Path) -> list[str]:
    return [
        FFPROBE, "-v", "error", "-of", "json",
        "-show_entries",
        "format=duration,size,format_name,start_time:"
        "stream=index,codec_type,codec_name,width,height,avg_frame_rate,r_frame_rate,duration",
        str(path),
    ]  # fmt: skip


def packets_argv(path: Path) -> list[str]:
    """Video packet times, sizes and flags, read from the container without decoding."""
    return [
        FFPROBE, "-v", "error", "-select_streams", "v:0",
        "-show_entries", "format=start_time:packet=pts_time,dts_time,size,flags",
        "-of", "csv", str(path),
    ]  # fmt: skip


def keyframes_argv(path: Path) -> list[str]:
    """Same pass as `packets_argv` (keyframes are the packets flagged K)."""
    return packets_argv(path)


def segment_argv(
    path: Path, cut_times: Sequence[float], pattern: Path, *, fmt: str, threads: int | None = None
) -> list[str]:
    """One stream-copy pass splitting at the first keyframe at/after each cut time."""
    argv = [*_ffmpeg(), "-loglevel", "error", *_threads(threads), "-i", str(path)]
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
    argv = [*_ffmpeg(), "-loglevel", "error", *_threads(threads), "-i", str(path)]
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
    opts = ["-segment_format", fmt, "-reset_timestamps", "1"]
    if cut_times:
        opts += ["-segment_times", ",".join(f"{t:.3f}" for t in cut_times)]
    if fmt == "mp4":
        opts += ["-segment_format_options", "movflags=+faststart"]
    return opts


def silence_detect_argv(
    path: Path,
    *,
    min_seconds: float,
    noise_db: float = SILENCE_NOISE_DB,
    start: float | None = None,
    end: float | None = None,
    threads: int | None = None,
) -> list[str]:
    argv = [*_ffmpeg(), "-loglevel", "info", *_threads(threads)]
    argv += [*_seek(start, end), "-i", str(path), "-map", "0:a:0"]
    argv += ["-af", f"silencedetect=n={noise_db:g}dB:d={min_seconds:g}", "-f", "null", "-"]
    return argv


def change_detect_argv(
    path: Path,
    *,
    start: float,
    end: float,
    lag_s: float = CHANGE_LAG_S,
    keyframes_only: bool,
    has_audio: bool,
    min_seconds: float,
    noise_db: float = SILENCE_NOISE_DB,
    threads: int | None = None,
) -> list[str]:
    """Changed-pixel counts of [start, end): each sampled frame (a keyframe, or one per second
    of a full decode) against the previous sample (`metadata@step`) and against the frame
    `lag_s` earlier (`metadata@lag`: the same file opened a second time, `lag_s` earlier);
    silencedetect on the sound in the same pass. Printed times are relative to `start`."""
    ref_start = max(0.0, start - lag_s)
    offset = lag_s - (start - ref_start)  # pairs frame t with frame t - lag_s
    sample = "" if keyframes_only else "fps=1,"
    binarise = (
        f"format=gray,lutyuv=y='if(gt(val,{CHANGE_PIXEL_LEVEL}),255,0)',signalstats,"
        "metadata@{name}=print:key=lavfi.signalstats.YAVG"
    )
    graph = (
        f"[0:v:0]{sample}format=gray,split[c][m];"
        f"[c]tblend=all_mode=difference,{binarise.format(name='step')},nullsink;"
        f"[1:v:0]{sample}format=gray[r];"
        f"[m][r]blend=all_mode=difference,{binarise.format(name='lag')}[v]"
    )
    maps = ["-map", "[v]"]
    if has_audio:
        graph += f";[0:a:0]silencedetect=n={noise_db:g}dB:d={min_seconds:g}[a]"
        maps += ["-map", "[a]"]
    skip = ["-skip_frame:v", "nokey"] if keyframes_only else []
    argv = [*_ffmpeg(), "-loglevel", "info", *_threads(threads)]
    argv += [*skip, *_seek(start, end), "-i", str(path)]
    argv += [*skip, *_seek(ref_start, end), "-itsoffset", f"{offset:.3f}", "-i", str(path)]
    return [*argv, "-filter_complex", graph, *maps, "-f", "null", "-"]


def thumbnail_argv(path: Path, at_s: float, dest: Path, *, width: int = 320) -> list[str]:
    argv = [*_ffmpeg(), "-loglevel", "error", "-ss", f"{max(0.0, at_s):.3f}", "-i", str(path)]
    argv += ["-map", "0:v:0", "-frames:v", "1", "-vf", f"scale={width}:-2", "-q:v", "4"]
    return [*argv, "-f", "image2", "-c:v", "mjpeg", str(dest)]


# ------------------------------------------------------------------------------ probe
def probe(path: Path, *, field: str = "INPUT_URI", timeout: float = 120.0) -> MediaInfo:
    """Describe a recording, or raise InvalidInputError(field, one-line reason)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        raise InvalidInputError(field, f"file {path.name} does not exist") from exc
    if size == 0:
        raise InvalidInputError(field, "file is empty (0 bytes)")
    try:
        proc = run_ffmpeg(probe_argv(path), timeout=timeout)
    except MediaError as exc:
        raise InvalidInputError(field, _unreadable_reason(path, exc.stderr_tail)) from exc
    return parse_probe(path, json.loads(proc.stdout or "{}"), size=size, field=field)


def parse_probe(path: Path, data: dict[str, Any], *, size: int, field: str) -> MediaInfo:
    """Turn ffprobe JSON into MediaInfo, rejecting what is not an analysable video (pure)."""
    fmt = data.get("format") or {}
    streams = data.get("streams") or []
    format_name = str(fmt.get("format_name") or "")
    if format_name in IMAGE_FORMATS or format_name.endswith("_pipe"):
        kind = "text" if format_name == "tty" else "a still image"
        raise InvalidInputError(field, f"not a video: file is {kind} ({format_name})")
    truncated = container_truncation(path, size)
    if truncated:
        raise InvalidInputError(field, f"truncated or corrupt container: {truncated}")
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    duration = _float(fmt.get("duration")) or max(
        (_float(s.get("duration")) or 0.0 for s in streams), default=0.0
    )
    if not duration and video is not None:
        # Live WebM (MediaRecorder, `-live 1`) carries no duration: measure it from packets.
        duration = _duration_from_packets(path, video)
    if not duration or duration <= 0 or not math.isfinite(duration):
        raise InvalidInputError(field, "recording has zero or unknown duration")
    if video is None:
        what = f"only {audio.get('codec_name')} audio" if audio else "no streams"
        raise InvalidInputError(field, f"no video stream in the file ({what})")
    return MediaInfo(
        path=path,
        duration_s=duration,
        size_bytes=size,
        format_name=format_name,
        video_codec=video.get("codec_name"),
        audio_codec=audio.get("codec_name") if audio else None,
        width=video.get("width"),
        height=video.get("height"),
        fps=_rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate")),
    )


def _duration_from_packets(path: Path, video: dict[str, Any]) -> float:
    try:
        packets = read_packets(path, timeout=600.0)
    except MediaError:
        return 0.0
    if not packets:
        return 0.0
    frame = 1.0 / (_rate(video.get("avg_frame_rate")) or 25.0)
    return packets[-1].time_s + frame


def validate_duration(info: MediaInfo, max_s: float, *, field: str = "INPUT_URI") -> None:
    if info.duration_s > max_s:
        raise InvalidInputError(
            field,
            f"recording is {_hms(info.duration_s)} long, over the maximum of {_hms(max_s)}",
        )


def _unreadable_reason(path: Path, stderr_tail: str) -> str:
    last = stderr_tail.strip().splitlines()[-1] if stderr_tail.strip() else "unreadable"
    last = last.replace(str(path), path.name)
    if _container_kind(path) is not None:
        return f"truncated or corrupt container ({last})"
    return f"not a video: unrecognised file format ({last})"


def _container_kind(path: Path) -> str | None:
    """Identify a media container by its magic bytes (to tell corrupt from not-a-video)."""
    with path.open("rb") as fh:
        head = fh.read(12)
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "mp4"
    if head.startswith(b"RIFF") or head.startswith(b"OggS") or head[:1] == b"\x47":
        return "other"
    return None


def container_truncation(path: Path, size: int) -> str | None:
    """Structural check without decoding: does a top-level box/element claim bytes past EOF?

    ffprobe reads only headers, so a torn upload of a faststart MP4 or a WebM with a Segment
    size still probes "fine" with its full duration. Pure-Python walk of the top level.
    """
    kind = _container_kind(path)
    with path.open("rb") as fh:
        if kind == "mp4":
            return _mp4_truncation(fh, size)
        if kind == "matroska":
            return _ebml_truncation(fh, size)
    return None


def _mp4_truncation(fh: Any, size: int) -> str | None:
    pos = 0
    while pos + 8 <= size:
        fh.seek(pos)
        header = fh.read(16)
        box_size = int.from_bytes(header[:4], "big")
        box_type = header[4:8].decode("latin-1")
        if box_size == 1:
            box_size = int.from_bytes(header[8:16], "big")
        elif box_size == 0:
            return None  # box runs to end of file
        if box_size < 8:
            return f"invalid MP4 box '{box_type}' at byte {pos}"
        if pos + box_size > size:
            return f"MP4 box '{box_type}' needs {pos + box_size} bytes, file has {size}"
        pos += box_size
    return None


def _ebml_truncation(fh: Any, size: int) -> str | None:
    data = fh.read(64)
    pos = 0
    for _ in range(2):  # EBML header, then Segment
        if pos >= len(data):
            return None
        eid, id_len = _ebml_id(data, pos)
        esize, size_len = _ebml_size(data, pos + id_len)
        body = pos + id_len + size_len
        if esize is None:
            return None  # unknown size (live WebM): cannot tell from the header
        if eid == 0x18538067 and body + esize > size:
            return f"WebM segment needs {body + esize} bytes, file has {size}"
        pos = body + esize
    return None


def _ebml_id(data: bytes, pos: int) -> tuple[int, int]:
    length = next((n for n in range(1, 5) if data[pos] & (0x80 >> (n - 1))), 4)
    return int.from_bytes(data[pos : pos + length], "big"), length


def _ebml_size(data: bytes, pos: int) -> tuple[int | None, int]:
    length = next((n for n in range(1, 9) if data[pos] & (0x80 >> (n - 1))), 8)
    value = int.from_bytes(data[pos : pos + length], "big") & ((1 << (7 * length)) - 1)
    return (None if value == (1 << (7 * length)) - 1 else value), length


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _rate(value: Any) -> float | None:
    if not value or "/" not in str(value):
        return _float(value)
    num, den = str(value).split("/", 1)
    n, d = _float(num), _float(den)
    return n / d if n and d else None


def _hms(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


# ---------------------------------------------------------------------- packets / keyframes
@dataclass(frozen=True)
class Packet:
    time_s: float
    size: int
    key: bool


def read_packets(path: Path, *, timeout: float = DEFAULT_TIMEOUT) -> tuple[Packet, ...]:
    """Video packets (time from file start, size, keyframe?) via ffprobe, no decoding.

    Cached per (path, size, mtime): `keyframe_times` and `detect_idle` share one pass.
    """
    st = Path(path).stat()
    return _read_packets_cached(str(path), st.st_size, st.st_mtime_ns, timeout)


@functools.lru_cache(maxsize=4)
def _read_packets_cached(path: str, size: int, mtime_ns: int, timeout: float) -> tuple[Packet, ...]:
    del size, mtime_ns  # cache key only
    proc = run_ffmpeg(packets_argv(Path(path)), timeout=timeout)
    return parse_packets(proc.stdout)


def parse_packets(csv_text: str) -> tuple[Packet, ...]:
    """Parse `ffprobe -of csv` packet lines (`packet,pts,dts,size,flags`) and the format's
    start time; times come back relative to the start time, sorted by presentation."""
    start = 0.0
    rows: list[tuple[float, int, bool]] = []
    for line in csv_text.splitlines():
        parts = line.split(",")
        if parts[0] == "format" and len(parts) >= 2:
            start = _float(parts[1]) or 0.0
        elif parts[0] == "packet" and len(parts) >= 5:
            t = _float(parts[1])
            t = t if t is not None else _float(parts[2])
            size = int(parts[3]) if parts[3].isdigit() else 0
            if t is not None:
                rows.append((t, size, "K" in parts[4]))
    rows.sort()
    return tuple(Packet(max(0.0, t - start), size, key) for t, size, key in rows)


def keyframe_times(path: Path, *, timeout: float = DEFAULT_TIMEOUT) -> list[float]:
    """Keyframe times in seconds from the start, from packet flags (no decoding)."""
    return [p.time_s for p in read_packets(path, timeout=timeout) if p.key]


# ---------------------------------------------------------------------------- cutting
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


# ------------------------------------------------------------------------ idle detection
def changed_pixels_threshold(info: MediaInfo) -> float:
    """Changed pixels that mean real activity (a few typed characters), for this frame size."""
    pixels = (info.width or 1280) * (info.height or 720)
    return max(MIN_CHANGED_PIXELS, CHANGED_PIXELS_720P * min(1.0, pixels / (1280 * 720)))


def active_from_changes(
    step: Sequence[tuple[float, float]],
    lagged: Sequence[tuple[float, float]],
    *,
    lag_s: float,
    threshold: float,
) -> list[Interval]:
    """Where the picture really changed (pure), from changed-pixel counts per sample time.

    `lagged[t]` compares the frame at t with the one `lag_s` earlier: above `threshold`,
    something changed in [t - lag_s, t], except between consecutive samples seen to be
    identical (`step` ≈ 0). A blinking caret differs from sample to sample but never adds up
    over the lag, so alone it is not activity. A single step above the threshold (a paste, a
    scroll) is activity by itself. Samples less than `lag_s` after the file's start have no
    reference and count by step only.
    """
    times = sorted({t for t, _ in lagged} | {t for t, _ in step})
    previous = dict(zip(times[1:], times[:-1], strict=False))
    still = [Interval(previous[t], t) for t, px in step if px <= STILL_PIXELS and t in previous]
    active = [Interval(previous[t], t) for t, px in step if px > threshold and t in previous]
    for t, px in lagged:
        if px > threshold and t >= lag_s - 1e-3:
            active += iv.subtract([Interval(t - lag_s, t)], still)
    return iv.merge(active)


def quiet_stretches(
    packets: Sequence[Packet],
    *,
    duration_s: float,
    min_seconds: float,
    max_frame_bytes: float,
    pad_s: float = 1.0,
) -> list[Interval]:
    """Candidate idle stretches from packet sizes alone (pure, no decoding).

    A whole second is quiet when its non-key video packets average <= `max_frame_bytes` (or it
    has none). Runs of quiet seconds at least `min_seconds - 2` long, padded by `pad_s`, are
    returned; freezedetect/silencedetect then find the exact idle ranges inside them.
    """
    n = max(1, math.ceil(duration_s))
    total = [0] * n
    count = [0] * n
    for p in packets:
        if p.key:
            continue  # periodic keyframes of a still screen are large but carry no change
        sec = min(n - 1, int(p.time_s))
        total[sec] += p.size
        count[sec] += 1
    quiet = [count[s] == 0 or total[s] / count[s] <= max_frame_bytes for s in range(n)]
    out: list[Interval] = []
    run_start: int | None = None
    for s, q in enumerate([*quiet, False]):
        if q and run_start is None:
            run_start = s
        elif not q and run_start is not None:
            if s - run_start >= min_seconds - 2:
                out.append(Interval(max(0.0, run_start - pad_s), min(duration_s, s + pad_s)))
            run_start = None
    return out


def detect_idle(
    path: Path,
    info: MediaInfo,
    *,
    min_seconds: float,
    threads: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> list[Interval]:
    """Stretches of at least `min_seconds` where the screen does not change and nothing is
    heard (no audio stream counts as silent).

    Why this design (measured on this machine with `-threads 1`, 60-minute 720p30 H.264
    screenshare, see bench/RESULTS.md): a full decode runs at only ~40x realtime even for a
    still screen (the decoder still reconstructs every 1280x720 frame: ~2.5 s of CPU per 100 s
    of idle), so freezedetect over the whole file misses the >= 100x target by far. Instead:

    1. Container pass (ffprobe packet sizes, no decoding, ~500-1000x): a still screen is a run
       of seconds whose P-frames are tiny. These runs are the only candidates.
    2. Verification per candidate, one ffmpeg process counting changed pixels (see
       `change_detect_argv`, `active_from_changes`) + silencedetect: a whole-frame freeze
       threshold cannot see one typed character, a changed-pixel count can, and comparing
       with the frame CHANGE_LAG_S earlier tells typing (adds up) from a blinking caret.
       - keyframes dense (gap <= KEYFRAME_VERIFY_MAX_GAP): decode keyframes only
         (`-skip_frame:v nokey`, ~20x cheaper than a full decode; the file is opened twice,
         for the lagged reference, so ~2x that). Boundaries come from the packet run (1 s
         resolution) where the change was over before it.
       - keyframes sparse (one a minute, or only one): a decode must start at the keyframe
         before the candidate. When that costs at most FULL_DECODE_BUDGET x the candidate's
         own frames, full decode sampled at 1 fps. Otherwise (measured: 60-minute CFR file
         with a keyframe per 10 minutes, ~110 s of CPU for 12 candidates = 33x realtime) the
         picture check rests on the packet run alone (every P-frame tiny for >= min_seconds;
         this path cannot see slow typing) and only silencedetect runs (audio decodes
         without seeking cost).
    """
    packets = read_packets(path, timeout=timeout)
    pixels = (info.width or 1280) * (info.height or 720)
    max_frame_bytes = QUIET_FRAME_BYTES_720P * max(1.0, pixels / (1280 * 720))
    runs = quiet_stretches(
        packets,
        duration_s=info.duration_s,
        min_seconds=min_seconds,
        max_frame_bytes=max_frame_bytes,
        pad_s=0.0,
    )
    idle: list[Interval] = []
    for run in runs:
        found = _verify_candidate(path, info, run, packets, min_seconds, threads, timeout)
        idle.extend(i for i in found if i.duration_s >= min_seconds - 1e-6)
    log.debug("idle: %d candidates, %d idle stretches", len(runs), len(idle))
    return idle


def _verify_candidate(
    path: Path,
    info: MediaInfo,
    run: Interval,
    packets: Sequence[Packet],
    min_seconds: float,
    threads: int | None,
    timeout: float,
) -> list[Interval]:
    """Exact still+silent stretches inside one quiet packet run (see `detect_idle`)."""
    lo, hi = max(0.0, run.start_s - 1.0), min(info.duration_s, run.end_s + 1.0)
    keyframes = [p.time_s for p in packets if p.key]
    inside = [k for k in keyframes if lo <= k <= hi]
    gap = keyframe_gap(inside, lo, hi)
    sparse = gap > KEYFRAME_VERIFY_MAX_GAP
    if sparse and _seek_cost(packets, keyframes, max(0.0, lo - CHANGE_LAG_S), hi) > (
        FULL_DECODE_BUDGET
    ):
        return _silent_part(path, info, run, min_seconds, threads, timeout)
    argv = change_detect_argv(
        path,
        start=lo,
        end=hi,
        keyframes_only=not sparse,
        has_audio=info.has_audio,
        min_seconds=min_seconds,
        threads=threads,
    )
    stderr = run_ffmpeg(argv, timeout=timeout).stderr
    px = (info.width or 1280) * (info.height or 720) / 255.0  # YAVG of a 0/255 mask → pixels

    def counts(name: str) -> list[tuple[float, float]]:
        values = detector_log.metadata_values(stderr, name, "lavfi.signalstats.YAVG")
        return [(round(lo + t, 3), v * px) for t, v in values if lo + t <= hi + 1e-3]

    active = active_from_changes(
        counts("step"),
        counts("lag"),
        lag_s=CHANGE_LAG_S,
        threshold=changed_pixels_threshold(info),
    )
    still = iv.complement(active, lo, hi)
    if not sparse:
        # Keyframe samples are seconds apart; the packet run is accurate to one second.
        still = [_settle(_refine_to_run(f, run, inside), f, lo) for f in still]
    else:
        still = [_settle(f, f, lo) for f in still]
    still = [f for f in still if f.end_s > f.start_s]
    if info.has_audio:
        silent = detector_log.silences(stderr, open_end=hi, offset=lo)
        still = iv.intersect(still, silent)
    return still


def _settle(still: Interval, measured: Interval, lo: float) -> Interval:
    """A still stretch that begins at a sample showing a change (a paste) starts a little
    later, so that first frame of the new picture stays in the analysed part; unless the
    packet run moved its start earlier (the change was over before the run began)."""
    if measured.start_s <= lo or still.start_s < measured.start_s:
        return still
    return Interval(round(still.start_s + CHANGE_SETTLE_S, 3), still.end_s)


def _seek_cost(
    packets: Sequence[Packet], keyframes: Sequence[float], lo: float, hi: float
) -> float:
    """Frames decoded to check [lo, hi] (from the keyframe before lo) per frame inside it."""
    start = max((k for k in keyframes if k <= lo + 1e-3), default=0.0)
    decoded = sum(1 for p in packets if start - 1e-3 <= p.time_s < hi)
    own = sum(1 for p in packets if lo <= p.time_s < hi)
    return decoded / max(1, own)


def _silent_part(
    path: Path,
    info: MediaInfo,
    run: Interval,
    min_seconds: float,
    threads: int | None,
    timeout: float,
) -> list[Interval]:
    """The packet run is the still stretch; keep the parts of it that are also silent."""
    if not info.has_audio:
        return [run]
    argv = silence_detect_argv(
        path, min_seconds=min_seconds, start=run.start_s, end=run.end_s, threads=threads
    )
    stderr = run_ffmpeg(argv, timeout=timeout).stderr
    silent = detector_log.silences(stderr, offset=run.start_s, open_end=run.end_s)
    return iv.intersect([run], silent)


def keyframe_gap(keyframes: Sequence[float], lo: float, hi: float) -> float:
    """Largest distance between consecutive keyframes in [lo, hi], counting the edges."""
    points = [lo, *keyframes, hi]
    return max(b - a for a, b in itertools.pairwise(points))


def _refine_to_run(frozen: Interval, run: Interval, keyframes: Sequence[float]) -> Interval:
    """A keyframe-only freeze starts at a keyframe and ends at the first keyframe that differs.
    The packet run is the 1-second-accurate still stretch: when the freeze starts at the run's
    first keyframe the stillness began with the run, and it cannot outlast the run."""
    first_kf = next((k for k in keyframes if k >= run.start_s - 1e-3), None)
    starts_with_run = frozen.start_s <= run.start_s or (
        first_kf is not None and abs(frozen.start_s - first_kf) < 1e-3
    )
    start = run.start_s if starts_with_run else frozen.start_s
    return Interval(round(start, 3), round(min(frozen.end_s, run.end_s), 3))


__all__ = [
    "MediaInfo",
    "cut_segments",
    "detect_idle",
    "keyframe_times",
    "mime_type_for",
    "probe",
    "run_ffmpeg",
    "thumbnail",
    "validate_duration",
]
