"""A scene recipe (picture + sound) encoded the way a browser's MediaRecorder writes it.

    {"generator": "scene", "duration_s": 30, "codec": "vp8", "keyframe_s": 3,
     "picture": {...}, "sound": [...], "seed": 4,
     # test-length recordings: a clean base looped by stream copy, with inserts
     "long": {"base_s": 60, "total_s": 3600,
              "inserts": [{"at_s": 600, "duration_s": 30, "picture": {...}, "sound": [...]}]},
     # chunk damage, sessions (restarts), names: as the `webcam` generator (evals.generate)
     "sessions": [{"duration_s": 12}, {"duration_s": 15, "stopped_s": 20}], "lost": [4]}

`codec`: `vp8` / `vp9` (WebM, Opus), `h264_mkv` (Chrome's video/webm;codecs=h264, AAC),
`safari_mp4` (fragmented MP4). `keyframe_s`: keyframe spacing; null gives one keyframe at the
start only (a sparse-keyframe recorder: later chunks start mid-GOP). Clusters are ~3 s.
A session inherits every key of the recipe it belongs to, and may override any.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evals.synth import scene, sound

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"
CODECS = ("vp8", "vp9", "h264_mkv", "safari_mp4")
_VIDEO = {
    "vp8": ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8"],
    "vp9": ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-row-mt", "0"],
    "h264_mkv": [
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-sc_threshold",
        "0",
    ],
    "safari_mp4": [
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-sc_threshold",
        "0",
    ],
}
_AUDIO = {
    "vp8": ["-c:a", "libopus", "-b:a", "32k"],
    "vp9": ["-c:a", "libopus", "-b:a", "32k"],
    "h264_mkv": ["-c:a", "aac", "-b:a", "48k"],
    "safari_mp4": ["-c:a", "aac", "-b:a", "48k"],
}


def suffix(codec: str) -> str:
    return ".mp4" if codec == "safari_mp4" else ".webm"


def _gop(recipe: Mapping[str, Any], fps: int) -> int:
    spacing = recipe.get("keyframe_s", 3)
    return 100_000 if spacing is None else max(1, round(float(spacing) * fps))


def _container(codec: str, dest: Path, *, live: bool) -> list[str]:
    if codec == "safari_mp4":
        return ["-f", "mp4", "-movflags", "frag_keyframe+empty_moov+default_base_moof",
                "-frag_duration", "3000000", str(dest)]  # fmt: skip
    fmt = "matroska" if codec == "h264_mkv" else "webm"
    if not live:
        return ["-f", fmt, str(dest)]
    return ["-f", fmt, "-live", "1", "-cluster_time_limit", "3000",
            "-cluster_size_limit", "100M", str(dest)]  # fmt: skip


def encode(recipe: Mapping[str, Any], dest: Path, *, cache: Path, live: bool = True) -> Path:
    """Render the recipe's picture and sound for `duration_s` and encode them into `dest`."""
    codec = str(recipe.get("codec", "vp8"))
    if codec not in CODECS:
        raise ValueError(f"codec: unknown {codec!r} {CODECS}")
    seconds = float(recipe["duration_s"])
    seed = int(recipe.get("seed", 1))
    picture = scene.Picture.from_recipe({"seed": seed, **recipe.get("picture", {})})
    layers = recipe.get("sound") or [{"kind": "room"}]
    with tempfile.TemporaryDirectory(prefix="scene-", dir=dest.parent) as tmp:
        wav = sound.write_wav(
            sound.render(layers, seconds, seed=seed, cache=cache), Path(tmp) / "sound.wav"
        )
        argv = [
            FFMPEG, "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{picture.width}x{picture.height}",
            "-r", str(picture.fps), "-i", "pipe:0", "-i", str(wav),
            "-map", "0:v", "-map", "1:a", "-t", f"{seconds:g}", "-threads", "1",
            *_VIDEO[codec], "-b:v", str(recipe.get("bitrate", "300k")),
            "-g", str(_gop(recipe, picture.fps)), "-keyint_min", str(_gop(recipe, picture.fps)),
            *_AUDIO[codec], *_container(codec, dest, live=live),
        ]  # fmt: skip
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdin is not None
        try:
            for frame in scene.frames(picture, seconds):
                proc.stdin.write(frame)
        except BrokenPipeError:
            pass  # ffmpeg stopped early: its exit status and stderr say why
        finally:
            proc.stdin.close()
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.wait() != 0:
            raise RuntimeError(f"ffmpeg failed ({proc.returncode}): {stderr.strip()[-400:]}")
    return dest


def long_recording(recipe: Mapping[str, Any], dest: Path, *, cache: Path) -> Path:
    """A test-length recording: a clean base segment repeated by stream copy, with insert
    segments (the events) at their places. Only the base and the inserts are encoded."""
    spec = recipe["long"]
    base_s, total_s = float(spec.get("base_s", 60)), float(spec["total_s"])
    codec = str(recipe.get("codec", "vp8"))
    if codec not in ("vp8", "vp9"):
        raise ValueError("long: test-length recordings are VP8/VP9 WebM")
    parts = dest.parent / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    common = {k: v for k, v in recipe.items() if k not in ("long", "sessions")}
    base = encode({**common, "duration_s": base_s}, parts / "base.webm", cache=cache, live=False)
    listing: list[Path] = []
    clock = 0.0
    for n, insert in enumerate(sorted(spec.get("inserts", []), key=lambda i: i["at_s"])):
        at = float(insert["at_s"])
        while clock + base_s <= at:
            listing.append(base)
            clock += base_s
        if clock < at:  # a part of the base fills the rest up to the insert
            listing.append(_head(base, at - clock, parts / f"head{n}.webm"))
            clock = at
        picture = {**common.get("picture", {}), **insert.get("picture", {})}
        part = {**common, "duration_s": float(insert["duration_s"]), "picture": picture,
                "sound": insert.get("sound", common.get("sound")), "seed": 100 + n}  # fmt: skip
        listing.append(encode(part, parts / f"insert{n}.webm", cache=cache, live=False))
        clock += float(insert["duration_s"])
    while clock + base_s <= total_s + 1e-6:
        listing.append(base)
        clock += base_s
    if clock < total_s:
        listing.append(_head(base, total_s - clock, parts / "tail.webm"))
    concat = parts / "list.txt"
    concat.write_text("".join(f"file '{p.resolve()}'\n" for p in listing))
    _ffmpeg(["-f", "concat", "-safe", "0", "-i", str(concat), "-c", "copy",
             *_container(codec, dest, live=True)])  # fmt: skip
    return dest


def _head(src: Path, seconds: float, dest: Path) -> Path:
    """The first `seconds` of `src` by stream copy (cut at a keyframe: keep multiples of 3)."""
    _ffmpeg(["-i", str(src), "-t", f"{seconds:g}", "-c", "copy", "-f", "webm", str(dest)])
    return dest


def _ffmpeg(args: list[str]) -> None:
    proc = subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", *args],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
