"""Sample media made at run time with ffmpeg's lavfi sources (tests, demo, benchmarks).

Nothing here is committed media: every file is generated in well under a second or two at the
small default sizes. The screenshare generator draws a mostly static dark "desktop" with a few
"windows" (boxes) and an animated pane (testsrc2) that is switched off during idle ranges, when
the frame is perfectly still and the audio is silent: exactly what idle detection should find.

    make_screenshare(tmp / "a.mp4", duration=60, idle=[(20, 50)])
    make_screenshare(tmp / "a.webm", codec="vp9", audio=False, gop_seconds=30)
    make_live_webcam(tmp / "cam.webm", duration=12)      # 3-second clusters, like MediaRecorder
    split_clusters(tmp / "cam.webm", tmp / "chunks")      # 0.webm (header+cluster), 1.webm, ...
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

Codec = Literal["h264", "vp8", "vp9"]
FFMPEG = shutil.which("ffmpeg") or "ffmpeg"

_VIDEO_ARGS: dict[str, list[str]] = {
    # Fast settings: generation speed matters more than quality for synthetic content.
    "h264": ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"],
    "vp8": ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "400k"],
    "vp9": [
        "-c:v",
        "libvpx-vp9",
        "-deadline",
        "realtime",
        "-cpu-used",
        "8",
        "-b:v",
        "400k",
        "-row-mt",
        "1",
    ],
}
_AUDIO_ARGS: dict[str, list[str]] = {
    "h264": ["-c:a", "aac", "-b:a", "64k"],
    "vp8": ["-c:a", "libopus", "-b:a", "32k"],
    "vp9": ["-c:a", "libopus", "-b:a", "32k"],
}


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"ffmpeg failed ({proc.returncode}): {' '.join(argv)}\n{tail}")


def _idle_expr(idle: Sequence[tuple[float, float]]) -> str:
    """An ffmpeg expression that is non-zero inside any idle range."""
    return "+".join(f"between(t,{a:g},{b:g})" for a, b in idle) or "0"


def screenshare_argv(
    dest: Path,
    *,
    duration: float = 20.0,
    size: str = "320x180",
    fps: int = 5,
    codec: Codec | None = None,
    audio: bool = True,
    idle: Sequence[tuple[float, float]] = (),
    gop_seconds: float | None = 2.0,
    silent_idle: bool = True,
    threads: int | None = None,
) -> list[str]:
    """The ffmpeg command `make_screenshare` runs (exposed so benchmarks can print it)."""
    codec = codec or ("h264" if dest.suffix in (".mp4", ".mov", ".mkv") else "vp8")
    w, h = (int(x) for x in size.split("x"))
    pane_w, pane_h = _even(w // 3), _even(h // 3)
    active = f"not({_idle_expr(idle)})"
    # Static "windows" (boxes) on a dark desktop; a live pane and a sliding "cursor" only
    # while active. During idle nothing moves, so consecutive frames are identical.
    graph = (
        f"[0:v]drawbox=x={w // 16}:y={h // 12}:w={w // 2}:h={h // 2}:color=0x3c3c3c:t=fill,"
        f"drawbox=x={w // 16}:y={h * 2 // 3}:w={w * 7 // 8}:h={h // 5}:color=0x2a2d3e:t=fill"
        "[desk];"
        f"[1:v]scale={pane_w}:{pane_h}[pane];"
        f"[desk][pane]overlay=x={w * 3 // 5}:y={h // 10}:enable='{active}',"
        f"drawbox=x='mod(t*{w // 8},{w * 3 // 4})':y={h * 7 // 10}:w={max(2, w // 40)}:"
        f"h={max(2, h // 30)}:color=white:t=fill:enable='{active}'[v]"
    )
    argv = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y"]
    argv += ["-f", "lavfi", "-i", f"color=c=0x1e1e1e:s={size}:r={fps}:d={duration:g}"]
    argv += ["-f", "lavfi", "-i", f"testsrc2=s={pane_w}x{pane_h}:r={fps}:d={duration:g}"]
    if audio:
        # A warbling tone (audible while active), muted inside the idle ranges.
        tone = f"sine=frequency=330:sample_rate=48000:duration={duration:g}"
        argv += ["-f", "lavfi", "-i", tone]
        mute = _idle_expr(idle) if silent_idle else "0"
        graph += f";[2:a]volume=0.5,volume=0:enable='{mute}'[a]"
    argv += ["-filter_complex", graph, "-map", "[v]"]
    if audio:
        argv += ["-map", "[a]", *_AUDIO_ARGS[codec]]
    argv += _VIDEO_ARGS[codec]
    argv += _gop_args(codec, fps, gop_seconds)
    if threads:
        argv += ["-threads", str(threads)]
    argv += ["-t", f"{duration:g}"]
    if dest.suffix == ".mp4":
        argv += ["-movflags", "+faststart"]
    return [*argv, str(dest)]


def make_screenshare(dest: Path, **options: object) -> Path:
    """Generate a screenshare-like recording (see `screenshare_argv` for the options).

    Options: duration (s), size ("WxH"), fps, codec ("h264" -> use .mp4; "vp8"/"vp9" -> .webm;
    default from the suffix), audio, idle ([(start, end), ...]: still picture + silence),
    silent_idle (False keeps the sound on during idle ranges), gop_seconds (keyframe spacing;
    None = a single keyframe), threads.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _run(screenshare_argv(dest, **options))  # type: ignore[arg-type]
    return dest


def _gop_args(codec: str, fps: int, gop_seconds: float | None) -> list[str]:
    """Keyframe spacing. None = one keyframe at the start only (a sparse-keyframe recorder)."""
    gop = max(1, round(fps * gop_seconds)) if gop_seconds else 100_000
    args = ["-g", str(gop), "-keyint_min", str(gop)]
    if codec == "h264":
        args += ["-sc_threshold", "0"]  # no extra keyframes on "scene cuts"
    return args


def _even(n: int) -> int:
    return max(2, n - n % 2)


def make_live_webcam(
    dest: Path,
    *,
    duration: float = 12.0,
    size: str = "320x240",
    fps: int = 10,
    cluster_seconds: float = 3.0,
    codec: Literal["vp8", "vp9"] = "vp8",
    audio: bool = True,
    black: Sequence[tuple[float, float]] = (),
) -> Path:
    """A webcam-like live WebM (as MediaRecorder writes it): one keyframe and one cluster every
    `cluster_seconds`, `-live 1` (no cues, no seeking back to patch sizes)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    gop = max(1, round(fps * cluster_seconds))
    argv = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y"]
    # `black` ranges paint the picture black: a covered camera, for blackdetect.
    video = f"testsrc2=s={size}:r={fps}:d={duration:g}"
    if black:
        video += f",drawbox=c=black:t=fill:enable='{_idle_expr(black)}'"
    argv += ["-f", "lavfi", "-i", video]
    if audio:
        argv += ["-f", "lavfi", "-i", f"sine=frequency=220:sample_rate=48000:d={duration:g}"]
        argv += ["-map", "0:v", "-map", "1:a", *_AUDIO_ARGS[codec]]
    argv += [*_VIDEO_ARGS[codec], "-g", str(gop), "-keyint_min", str(gop)]
    argv += ["-f", "webm", "-live", "1", "-cluster_time_limit", str(int(cluster_seconds * 1000))]
    argv += ["-cluster_size_limit", str(64 * 1024 * 1024), "-t", f"{duration:g}", str(dest)]
    _run(argv)
    return dest


# EBML IDs needed to cut a live WebM into MediaRecorder-style chunks.
_SEGMENT = 0x18538067
_CLUSTER = 0x1F43B675


def split_clusters(src: Path, out_dir: Path, *, suffix: str = ".webm") -> list[Path]:
    """Cut a WebM into chunks the way MediaRecorder `timeslice` delivers them: chunk 0 is the
    EBML header + Segment header + Tracks + first Cluster; every later chunk is bare Cluster
    bytes (header-less). Files are named 0.webm, 1.webm, ... Returns them in order."""
    data = Path(src).read_bytes()
    starts = _cluster_offsets(data)
    if not starts:
        raise ValueError(f"{src}: no clusters found")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bounds = [0, *starts[1:], len(data)]
    paths = []
    for i, (a, b) in enumerate(itertools.pairwise(bounds)):
        path = out_dir / f"{i}{suffix}"
        path.write_bytes(data[a:b])
        paths.append(path)
    return paths


def _cluster_offsets(data: bytes) -> list[int]:
    """Byte offsets of every top-level Cluster, walking Segment children by their sizes."""
    pos = 0
    offsets: list[int] = []
    while pos < len(data):
        eid, id_len = _read_id(data, pos)
        size, size_len = _read_size(data, pos + id_len)
        body = pos + id_len + size_len
        if eid == _SEGMENT:
            pos = body  # descend: clusters are Segment children
            continue
        if eid == _CLUSTER:
            offsets.append(pos)
        if size is None:  # unknown size: the next cluster ID ends this one
            nxt = data.find(_CLUSTER.to_bytes(4, "big"), body)
            pos = nxt if nxt >= 0 else len(data)
        else:
            pos = body + size
    return offsets


def _read_id(data: bytes, pos: int) -> tuple[int, int]:
    first = data[pos]
    length = 1
    while length <= 4 and not first & (0x80 >> (length - 1)):
        length += 1
    return int.from_bytes(data[pos : pos + length], "big"), length


def _read_size(data: bytes, pos: int) -> tuple[int | None, int]:
    first = data[pos]
    length = 1
    while length <= 8 and not first & (0x80 >> (length - 1)):
        length += 1
    value = int.from_bytes(data[pos : pos + length], "big") & ((1 << (7 * length)) - 1)
    unknown = value == (1 << (7 * length)) - 1
    return (None if unknown else value), length


# ------------------------------------------------------------------------- bad inputs
def write_text_file(dest: Path, text: str = "this is not a video\n") -> Path:
    dest = Path(dest)
    dest.write_text(text)
    return dest


def write_zero_byte(dest: Path) -> Path:
    dest = Path(dest)
    dest.write_bytes(b"")
    return dest


def write_jpeg(dest: Path, *, size: str = "160x90") -> Path:
    """A single JPEG image (a picture, not a video)."""
    dest = Path(dest)
    _run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
          f"testsrc2=s={size}:d=1", "-frames:v", "1", "-f", "image2", str(dest)])  # fmt: skip
    return dest


def write_truncated(src: Path, dest: Path, *, keep: float = 0.3) -> Path:
    """The first `keep` share of `src`'s bytes: a torn upload."""
    data = Path(src).read_bytes()
    dest = Path(dest)
    dest.write_bytes(data[: max(1, int(len(data) * keep))])
    return dest


def write_audio_only(dest: Path, *, duration: float = 3.0) -> Path:
    """A valid media file with sound but no video stream (.m4a/.mp4 AAC or .webm Opus)."""
    dest = Path(dest)
    codec = ["-c:a", "libopus"] if dest.suffix == ".webm" else ["-c:a", "aac"]
    _run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
          f"sine=frequency=440:d={duration:g}", *codec, str(dest)])  # fmt: skip
    return dest


def write_zero_duration(dest: Path) -> Path:
    """An MP4 whose encoder never got a frame: valid container, duration 0.000000."""
    dest = Path(dest)
    _run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
          "color=s=64x64:r=5:d=1", "-frames:v", "0", "-c:v", "mpeg4", "-f", "mp4",
          str(dest)])  # fmt: skip
    return dest


def concat_copies(src: Path, dest: Path, *, times: int) -> Path:
    """`src` repeated `times` times by stream copy (cheap long recordings for benchmarks)."""
    dest = Path(dest)
    listing = dest.with_suffix(".txt")
    listing.write_text("".join(f"file '{Path(src).resolve()}'\n" for _ in range(times)))
    try:
        _run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0",
              "-i", str(listing), "-c", "copy", "-movflags", "+faststart", str(dest)])  # fmt: skip
    finally:
        listing.unlink(missing_ok=True)
    return dest


def make_long_screenshare(
    cache_dir: Path,
    *,
    minutes: int = 60,
    size: str = "1280x720",
    fps: int = 30,
    cycle_seconds: int = 600,
    idle_in_cycle: Sequence[tuple[float, float]] = ((150, 250), (450, 550)),
    gop_seconds: float | None = 5.0,
) -> tuple[Path, list[tuple[float, float]]]:
    """A long screenshare for benchmarks, cached in `cache_dir` (outside git).

    One `cycle_seconds` cycle (active work with still, silent stretches; by default a third of
    it idle) is encoded once and repeated by stream copy, so a 60-minute 720p file takes about
    a minute to make the first time and nothing afterwards. Returns the path and the idle
    ranges over the whole file.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    times = max(1, round(minutes * 60 / cycle_seconds))
    gop_tag = f"gop{gop_seconds:g}" if gop_seconds else "gopnone"
    tag = f"{size}-{fps}fps-{gop_tag}-c{cycle_seconds}"
    dest = cache_dir / f"screenshare-{minutes}min-{tag}.mp4"
    idle = [(k * cycle_seconds + a, k * cycle_seconds + b)
            for k in range(times) for a, b in idle_in_cycle]  # fmt: skip
    if dest.exists():
        return dest, idle
    # The first run takes a minute or more: say so (benchmarks call this before any output).
    print(f"generating a {minutes}-minute {size} screenshare once, cached as {dest} ...",
          file=sys.stderr, flush=True)  # fmt: skip
    cycle = cache_dir / f"cycle-{tag}.mp4"
    if not cycle.exists():
        tmp = cycle.with_name("tmp-" + cycle.name)
        make_screenshare(tmp, duration=cycle_seconds, size=size, fps=fps, codec="h264",
                         idle=list(idle_in_cycle), gop_seconds=gop_seconds)  # fmt: skip
        tmp.replace(cycle)
    tmp = dest.with_name("tmp-" + dest.name)
    concat_copies(cycle, tmp, times=times)
    tmp.replace(dest)
    return dest, idle


# ------------------------------------------------------------------ the demo's story
def _lines(x: int, y0: int, step: int, widths: Sequence[int], times: Sequence[float],
           color: str) -> list[str]:  # fmt: skip
    """One drawbox per "line of code", each shown from its time on."""
    return [
        f"drawbox=x={x}:y={y0 + i * step}:w={w}:h={max(2, step // 2)}:color={color}:t=fill:"
        f"enable='gte(t,{t:g})'"
        for i, (w, t) in enumerate(zip(widths, times, strict=True))
    ]


def make_scripted_screenshare(dest: Path, *, size: str = "480x270", fps: int = 5) -> Path:
    """The demo's screen recording, drawn from `devtools.story` (boxes, no fonts needed):
    an editor whose lines appear as they are typed, a terminal that turns red on the error and
    green when the tests pass, an AI-assistant browser window, a large block pasted in one
    frame, and idle minutes when nothing moves and the sound stops."""
    from devtools import story

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    w, h = (int(x) for x in size.split("x"))
    screen = story.TASK_SCREEN
    typed = [t for a, b in screen["typing"] for t in _steps(a, b, 3.0)]
    step = max(4, h // 40)
    editor_x, editor_y = w // 20, h // 12
    widths = [(w // 6) + (i * 37) % (w // 3) for i in range(len(typed))]
    paste_at = float(screen["large_paste_at"])
    paste = [paste_at] * 10
    err_a, _ = screen["terminal_error"]
    ok_a, _ = screen["tests_pass"]
    chat_a, chat_b = screen["assistant_page"]
    idle = list(story.TASK_IDLE)
    active = f"not({_idle_expr(idle)})"
    term_y = h * 7 // 10
    filters = [
        f"drawbox=x={editor_x}:y={editor_y}:w={w * 3 // 5}:h={h // 2 + h // 10}:"
        "color=0x2b2b2b:t=fill",
        f"drawbox=x={editor_x}:y={term_y}:w={w * 9 // 10}:h={h // 4}:color=0x101828:t=fill",
        *_lines(editor_x + 6, editor_y + 6, step, widths[:12], typed[:12], "0x9cdcfe"),
        *_lines(editor_x + 6, editor_y + 6 + 12 * step, step, [w // 3] * 10, paste, "0xce9178"),
        *_lines(editor_x + w // 3, editor_y + 6, step, widths[12:22], typed[12:22], "0x9cdcfe"),
        # The terminal: a red traceback from the failing run until the next one, then green.
        f"drawbox=x={editor_x + 6}:y={term_y + 6}:w={w // 2}:h={h // 10}:color=0xd04040:t=fill:"
        f"enable='between(t,{err_a:g},{ok_a:g})'",
        f"drawbox=x={editor_x + 6}:y={term_y + 6}:w={w // 4}:h={h // 20}:color=0x40c060:t=fill:"
        f"enable='gte(t,{ok_a:g})'",
        # The AI-assistant page: a light browser window with chat bubbles.
        f"drawbox=x={w // 2}:y={h // 20}:w={w * 9 // 20}:h={h * 3 // 5}:color=0xf4f4f4:t=fill:"
        f"enable='between(t,{chat_a:g},{chat_b:g})'",
        f"drawbox=x={w // 2 + 10}:y={h // 10}:w={w // 4}:h={h // 12}:color=0xd0d7e2:t=fill:"
        f"enable='between(t,{chat_a:g},{chat_b:g})'",
        f"drawbox=x={w // 2 + w // 8}:y={h // 4}:w={w // 4}:h={h // 5}:color=0x10a37f:t=fill:"
        f"enable='between(t,{chat_a + 2:g},{chat_b:g})'",
        # A text cursor that moves while the candidate is there: never still outside idle.
        f"drawbox=x='{editor_x}+mod(t*{w // 10},{w // 2})':y={h - step * 2}:w=3:h={step}:"
        f"color=white:t=fill:enable='{active}'",
    ]
    duration = story.TASK_DURATION_S
    argv = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y"]
    argv += ["-f", "lavfi", "-i", f"color=c=0x1e1e1e:s={size}:r={fps}:d={duration:g}"]
    argv += ["-f", "lavfi", "-i", f"sine=frequency=330:sample_rate=48000:duration={duration:g}"]
    graph = f"[0:v]{','.join(filters)}[v];[1:a]volume=0.3,volume=0:enable='{_idle_expr(idle)}'[a]"
    argv += ["-filter_complex", graph, "-map", "[v]", "-map", "[a]", *_AUDIO_ARGS["h264"]]
    argv += [*_VIDEO_ARGS["h264"], *_gop_args("h264", fps, 2.0), "-t", f"{duration:g}"]
    argv += ["-movflags", "+faststart", str(dest)]
    _run(argv)
    return dest


def _steps(start: float, end: float, every: float) -> list[float]:
    count = max(1, int((end - start) // every))
    return [round(start + i * every, 2) for i in range(count)]


def make_scripted_webcam(dest: Path, *, size: str = "320x240", fps: int = 10) -> Path:
    """The demo's webcam session from `devtools.story`: a live WebM with 3-second clusters;
    the camera is covered (black) for a while, and a second voice (espeak-ng) speaks in an
    otherwise quiet room. The lost chunk is the uploader's business (`story.WEBCAM_LOST_CHUNKS`)."""
    from devtools import story

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    voice = dest.with_name(dest.stem + "-voice.wav")
    espeak = shutil.which("espeak-ng") or "espeak-ng"
    proc = subprocess.run([espeak, "-s", "125", "-w", str(voice), story.SECOND_VOICE_TEXT],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"espeak-ng failed ({proc.returncode}): {proc.stderr.strip()}")
    duration = story.WEBCAM_DURATION_S
    cover_a, cover_b = story.WEBCAM_COVERED
    delay_ms = int(story.WEBCAM_SECOND_VOICE[0] * 1000)
    gop = max(1, round(fps * story.WEBCAM_CHUNK_S))
    argv = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y"]
    argv += ["-f", "lavfi", "-i", f"testsrc2=s={size}:r={fps}:d={duration:g},"
             f"drawbox=c=black:t=fill:enable='between(t,{cover_a:g},{cover_b:g})'"]  # fmt: skip
    # A quiet room (faint noise) with the other person's voice mixed in at its time.
    argv += ["-f", "lavfi", "-i", f"anoisesrc=a=0.003:c=pink:r=48000:d={duration:g}"]
    argv += ["-i", str(voice)]
    graph = (
        f"[2:a]aresample=48000,adelay={delay_ms}:all=1[voice];"
        "[1:a][voice]amix=inputs=2:duration=first:normalize=0[a]"
    )
    argv += ["-filter_complex", graph, "-map", "0:v", "-map", "[a]", *_AUDIO_ARGS["vp8"]]
    argv += [*_VIDEO_ARGS["vp8"], "-g", str(gop), "-keyint_min", str(gop)]
    argv += [
        "-f",
        "webm",
        "-live",
        "1",
        "-cluster_time_limit",
        str(int(story.WEBCAM_CHUNK_S * 1000)),
    ]
    argv += ["-cluster_size_limit", str(64 * 1024 * 1024), "-t", f"{duration:g}", str(dest)]
    try:
        _run(argv)
    finally:
        voice.unlink(missing_ok=True)
    return dest
