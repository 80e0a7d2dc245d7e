"""Recordings for the labelled set, generated at run time with ffmpeg lavfi and espeak-ng
(nothing is committed). Every recipe is a pure description (JSON in the set file) that
`materialise` turns into files: a webcam chunk prefix or a screen recording.

Webcam (`webcam`): a moving test pattern at 160x120/5 fps with VP8 + Opus in ~3 s
MediaRecorder-style chunks (the first carries the header, the rest are bare clusters), with
optional black (`covered`), frozen, silent stretches and a sound track made of pieces
(`fan` = brown noise, `tone` = 440 Hz, `speech` = espeak-ng, `silence`), and chunk-level
damage: lost chunks (gaps), a recorder restart with or without its header chunk, a recorder
stopped for a while before it restarts (the chunk files' mtimes are then the upload times a
client uploading while recording gives them), a re-upload under a new index, per-recorder
names, random tags before the index, a zero-byte chunk.

Screen (`screen`): a dark 720p editor (DejaVu Sans Mono on #1e1e1e, a blinking caret) driven
by a list of activities: `typing` (chars per second), `idle`, `scroll`, `paste`, `ai_tab`
(a browser tab titled like an AI assistant), `terminal_error`.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"
ESPEAK = shutil.which("espeak-ng") or "espeak-ng"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
CLUSTER_ID = b"\x1f\x43\xb6\x75"
UPLOAD_EPOCH = 1.8e9  # any fixed wall-clock start for stamped uploads
LINE_CHARS = 110  # typed characters per editor line (1280 px at 10 px a character)
SPEECH = (
    "Can you tell me the answer to question four? I think it is the second option, because "
    "the loop stops early when the list is empty, and the function returns none."
)
CODE = [
    "def solve(items):",
    "    seen = set()",
    "    for item in items:",
    "        if item in seen:",
    "            return item",
    "        seen.add(item)",
    "    return None",
    "",
    "class Cache:",
    "    def __init__(self, size):",
    "        self.size = size",
    "        self.data = {}",
]


def _run(argv: Sequence[str]) -> None:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"{Path(argv[0]).name} failed ({proc.returncode}): {tail}")


GENERATORS = ("webcam", "scene", "chromium", "screen")


def materialise(recipe: Mapping[str, Any], workdir: Path, *, cache: Path | None = None) -> Path:
    """Generate the recording a recipe describes under `workdir`; returns the recording (a
    file) or the chunk prefix (a directory). `cache` keeps what is shared between recipes
    (TTS utterances); it defaults to `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    cache = cache or workdir
    kind = recipe.get("generator")
    if kind in ("webcam", "scene"):
        return webcam_chunks(recipe, workdir, cache=cache)
    if kind == "chromium":
        from evals.synth import chromium

        return chromium.record_chunks(recipe, workdir, cache=cache)
    if kind == "screen":
        return screen_recording(recipe, workdir / "screen.mp4", cache=cache)
    raise ValueError(f"generator: unknown generator {kind!r} {GENERATORS}")


# ------------------------------------------------------------------------------- webcam
def _sound_graph(pieces: Sequence[Mapping[str, Any]], speech_input: int | None) -> str:
    """An ffmpeg graph concatenating the sound pieces into [a] (48 kHz mono)."""
    parts, labels = [], []
    for i, piece in enumerate(pieces):
        seconds = float(piece["end_s"]) - float(piece["start_s"])
        kind = piece["kind"]
        if kind == "fan":
            src = f"anoisesrc=color=brown:amplitude=0.3:sample_rate=48000:duration={seconds:g}"
        elif kind == "tone":
            src = f"sine=frequency=440:sample_rate=48000:duration={seconds:g},volume=0.5"
        elif kind == "silence":
            src = f"anullsrc=r=48000:cl=mono,atrim=duration={seconds:g}"
        elif kind == "speech":
            assert speech_input is not None
            src = (
                f"[{speech_input}:a]aresample=48000,aformat=channel_layouts=mono,"
                f"apad,atrim=duration={seconds:g}"
            )
        else:
            raise ValueError(f"sound: unknown piece {kind!r}")
        if not src.startswith("["):
            src += ",aformat=channel_layouts=mono"
        parts.append(f"{src}[s{i}]")
        labels.append(f"[s{i}]")
    return ";".join(parts) + f";{''.join(labels)}concat=n={len(labels)}:v=0:a=1[a]"


def webcam_recording(recipe: Mapping[str, Any], dest: Path) -> Path:
    seconds = float(recipe["duration_s"])
    fps = 5
    # A camera's sensor noise: no two sessions (or seconds) are ever byte-identical.
    seed = int(recipe.get("seed", 1))
    video = [f"testsrc2=size=160x120:rate={fps}", f"noise=alls=10:allf=t:all_seed={seed}"]
    video.append("format=yuv420p")
    for a, b in recipe.get("frozen", []):
        video.append(
            f"split[x][y];[x][y]freezeframes=first={int(a * fps)}:last={int(b * fps)}"
            f":replace={int(a * fps)}"
        )
    for a, b in recipe.get("covered", []):
        video.append(f"drawbox=color=black:t=fill:enable='between(t,{a},{b})'")
    pieces = recipe.get("sound") or [{"kind": "silence", "start_s": 0, "end_s": seconds}]
    argv = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
            ",".join(video)]  # fmt: skip
    speech_input = None
    if any(p["kind"] == "speech" for p in pieces):
        wav = dest.with_suffix(".speech.wav")
        _run([ESPEAK, "-w", str(wav), str(recipe.get("speech_text", SPEECH))])
        argv += ["-i", str(wav)]
        speech_input = 1
    graph = _sound_graph(pieces, speech_input)
    argv += ["-filter_complex", graph, "-map", "0:v", "-map", "[a]", "-t", f"{seconds:g}"]
    container = recipe.get("container", "webm")
    if container == "webm":
        argv += ["-c:v", "libvpx", "-b:v", "150k", "-deadline", "realtime", "-cpu-used", "16",
                 "-c:a", "libopus", "-b:a", "32k"]  # fmt: skip
    else:  # Chrome's video/webm;codecs=h264 (Matroska) or Safari's fragmented MP4
        argv += ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-b:a", "48k"]
    argv += ["-g", str(3 * fps), "-threads", "1"]
    if container == "safari_mp4":
        argv += ["-f", "mp4", "-movflags", "frag_keyframe+empty_moov+default_base_moof",
                 "-frag_duration", "3000000", str(dest)]  # fmt: skip
    else:
        fmt = "webm" if container == "webm" else "matroska"
        argv += ["-f", fmt, "-live", "1", "-cluster_time_limit", "3000",
                 "-cluster_size_limit", "100M", str(dest)]  # fmt: skip
    _run(argv)
    return dest


def _split_clusters(data: bytes) -> tuple[bytes, list[bytes]]:
    """(everything before the first Cluster, [each Cluster's bytes]) of a live WebM whose
    clusters have known sizes (ffmpeg's `-live 1` output)."""
    first = data.index(CLUSTER_ID)
    header, clusters, pos = data[:first], [], first
    while pos < len(data):
        length = 9 - data[pos + 4].bit_length()
        size = int.from_bytes(data[pos + 4 : pos + 4 + length], "big") & ((1 << (7 * length)) - 1)
        end = pos + 4 + length + size
        clusters.append(data[pos:end])
        pos = end
    return header, clusters


def safari_chunks(recording: Path) -> list[bytes]:
    """Fragmented MP4 → the init segment with the first fragment, then one fragment each."""
    data, pos, chunks, current = recording.read_bytes(), 0, [], b""
    while pos < len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        if data[pos + 4 : pos + 8] == b"moof" and b"moof" in current:
            chunks.append(current)
            current = b""
        current += data[pos : pos + size]
        pos += size
    return [*chunks, current]


def _vint(data: bytes, pos: int) -> tuple[int, int]:
    """(value, length) of the EBML variable-size integer at `pos`."""
    length = 9 - data[pos].bit_length()
    value = int.from_bytes(data[pos : pos + length], "big") & ((1 << (7 * length)) - 1)
    return value, length


def cluster_time_s(cluster: bytes) -> float:
    """A Cluster's Timecode (child ID 0xE7; milliseconds at ffmpeg's scale). Matroska (not
    WebM) puts a CRC-32 element first: children before the Timecode are skipped."""
    _, size_len = _vint(cluster, 4)
    pos = 4 + size_len
    while pos < len(cluster):
        id_len = 9 - cluster[pos].bit_length()  # an element ID is a vint with its marker
        element = cluster[pos : pos + id_len]
        value_len, len_len = _vint(cluster, pos + id_len)
        start = pos + id_len + len_len
        if element == b"\xe7":
            return int.from_bytes(cluster[start : start + value_len], "big") / 1000.0
        pos = start + value_len
    raise ValueError("cluster has no Timecode")


def mediarecorder_chunks(recording: Path, *, slice_s: float = 3.0) -> list[bytes]:
    """A recording as MediaRecorder.start(3000) delivers it: chunk i holds the clusters that
    start in [3i, 3i + 3) s (an encoder's extra keyframe starts an extra cluster; it stays
    in its time slice), the first chunk with the header. A cluster cut at a slice boundary
    starts up to ~0.2 s early when audio leads (codec delay, AAC frames drifting against the
    3 s grid): one within 0.5 s of a boundary belongs to the slice that boundary opens."""
    if recording.suffix == ".mp4":
        return safari_chunks(recording)
    header, clusters = _split_clusters(recording.read_bytes())
    if len(clusters) > 1 and len(clusters[-1]) < 2048:  # ffmpeg's tiny tail cluster
        clusters[-2:] = [clusters[-2] + clusters[-1]]
    slices: dict[int, bytes] = {}
    for cluster in clusters:
        at = cluster_time_s(cluster) / slice_s
        key = round(at) if abs(at - round(at)) * slice_s < 0.5 else int(at)
        slices[key] = slices.get(key, b"") + cluster
    chunks = [slices[k] for k in sorted(slices)]
    return [header + chunks[0], *chunks[1:]]


def _session_recording(
    recipe: Mapping[str, Any], session: Mapping[str, Any], n: int, workdir: Path, cache: Path
) -> Path:
    """One recorder session's recording: the legacy test pattern (`webcam`) or a rendered
    scene (`scene`, which inherits the recipe's keys)."""
    if recipe.get("generator") != "scene":
        container = recipe.get("container", "webm")
        suffix = ".mp4" if container == "safari_mp4" else ".webm"
        merged = {"seed": n + 1, "container": container, **session}
        return webcam_recording(merged, workdir / f"session{n}{suffix}")
    from evals.synth import webcam

    common = {k: v for k, v in recipe.items() if k not in _DAMAGE}
    merged = {**common, "seed": int(recipe.get("seed", 1)) * 10 + n, **session}
    dest = workdir / f"session{n}{webcam.suffix(str(merged.get('codec', 'vp8')))}"
    if "long" in merged:
        return webcam.long_recording(merged, dest, cache=cache)
    return webcam.encode(merged, dest, cache=cache)


# Recipe keys about the chunks (not inherited by a session's recording).
_DAMAGE = ("sessions", "lost", "reupload", "empty_after", "names", "stopped_s")


def webcam_chunks(recipe: Mapping[str, Any], workdir: Path, *, cache: Path | None = None) -> Path:
    """The chunk prefix (a directory of chunk files) a webcam recipe describes.

    `sessions`: one recording per recorder session (a restart starts a new one), each a
    webcam recipe; chunk damage is applied to the concatenated chunk list (global indices):
    `lost` (indices never uploaded), `reupload` ({"index": i, "as": j}: chunk i uploaded again
    as index j, later chunks shifted by one), `empty_after` (a zero-byte chunk inserted after
    index i), `names` ("index" | "tagged" | "per_recorder"). A session's `stopped_s`: the
    recorder was stopped that long before it; the files are then stamped with upload times
    (each chunk at the end of its ~3 s slice, lost chunks included), as the stitcher needs.
    """
    sessions = recipe.get("sessions") or [{}]
    chunks: list[bytes] = []
    recorder: list[tuple[int, int]] = []  # (session, index within session) per chunk
    recordings = []
    for n, session in enumerate(sessions):
        own = session if recipe.get("sessions") else recipe
        path = _session_recording(recipe, own, n, workdir, cache or workdir)
        recordings.append(path)
        got = mediarecorder_chunks(path)
        recorder += [(n, i) for i in range(len(got))]
        chunks += got
    suffix = recordings[0].suffix
    entries = list(zip(chunks, recorder, strict=True))
    lost = set(recipe.get("lost", []))
    for item in sorted(recipe.get("reupload", []), key=lambda r: -int(r["as"])):
        entries.insert(int(item["as"]), entries[int(item["index"])])
    for after in sorted(recipe.get("empty_after", []), reverse=True):
        entries.insert(after + 1, (b"", (-1, -1)))
    uploads = _upload_times(sessions, entries)
    out = workdir / "chunks"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    rng = random.Random(int(recipe.get("seed", 7)))
    names = recipe.get("names", "index")
    per_session: dict[int, int] = {}
    for index, (data, (session, _)) in enumerate(entries):
        if index in lost:
            if names == "per_recorder":
                per_session[session] = per_session.get(session, -1) + 1
            continue
        if names == "tagged":
            name = f"{rng.getrandbits(16):04x}_{index}{suffix}"
        elif names == "per_recorder":
            s = max(session, 0)
            per_session[s] = per_session.get(s, -1) + 1
            name = f"rec{s + 1}_{per_session[s]}{suffix}"
        else:
            name = f"{index}{suffix}"
        (out / name).write_bytes(data)
        if uploads is not None:
            os.utime(out / name, (uploads[index], uploads[index]))
    return out


def _upload_times(
    sessions: Sequence[Mapping[str, Any]], entries: Sequence[tuple[bytes, tuple[int, int]]]
) -> list[float] | None:
    """Per entry, when a client uploading while recording would have sent it: the end of its
    ~3 s slice, plus each stop before a session. None when no session was stopped (the files
    keep their write times, which look like a bulk copy)."""
    if not any(s.get("stopped_s") for s in sessions):
        return None
    clock, times, current = UPLOAD_EPOCH, [], 0
    for _, (session, _) in entries:
        if session > current:
            clock += sum(float(s.get("stopped_s", 0)) for s in sessions[current + 1 : session + 1])
            current = session
        clock += 3.0
        times.append(clock)
    return times


# ------------------------------------------------------------------------------- screen
def _esc(text: str) -> str:
    """Text for drawtext's `text=` inside a filter graph (escape the graph's specials)."""
    for ch in ("\\", "'", ":", ",", ";", "[", "]", "%", "#", "=", "(", ")"):
        text = text.replace(ch, "\\" + ch)
    return text


# Editor themes: background, text, title bar, title text, caret, error text.
THEMES = {
    "dark": ("0x1e1e1e", "0xd4d4d4", "0x2d2d2d", "0x9d9d9d", "0xaeafad", "0xf14c4c"),
    "light": ("0xffffff", "0x1f1f1f", "0xdddddd", "0x555555", "0x000000", "0xc72e2e"),
}
FONTS = {"mono": FONT, "mono-bold": FONT.replace("Mono.ttf", "Mono-Bold.ttf")}


def _draw_text(x: int | str, y: int | str, text: str, *, color: str = "0xd4d4d4",
               size: int = 16, enable: str | None = None, font: str = FONT) -> str:  # fmt: skip
    f = f"drawtext=fontfile={font}:fontsize={size}:fontcolor={color}:x={x}:y={y}"
    return f + f":text='{_esc(text)}'" + (f":enable='{enable}'" if enable else "")


def screen_recording(recipe: Mapping[str, Any], dest: Path, *, cache: Path | None = None) -> Path:
    """An editor screen recording driven by `activities` (see the module docstring).

    `theme` (dark / light) and `font` (mono / mono-bold) change the look; `gop_s` null gives
    one keyframe at the start only (sparse keyframes); `sound` (layers, as the scene
    generator's: keyboard clicks, speech, music, ...) adds an AAC track.

    Text is drawn with drawtext (static, switched on with `enable`); typing is revealed one
    character at a time by a background-coloured cover moved with `overlay` (whose x is
    evaluated per frame, unlike drawbox's); the caret is another overlay that blinks.
    """
    fps = int(recipe.get("fps", 10))
    size = str(recipe.get("size", "1280x720"))
    seconds = float(recipe["duration_s"])
    bg, fg, bar, title_fg, caret_fg, error_fg = THEMES[str(recipe.get("theme", "dark"))]
    font = FONTS[str(recipe.get("font", "mono"))]
    cw, lh, x0, y0 = 10, 22, 60, 80  # character width (DejaVu Sans Mono 16), line height

    def _text(*args: Any, color: str = fg, **kwargs: Any) -> str:
        return _draw_text(*args, color=color, font=font, **kwargs)

    text = [
        f"drawbox=x=0:y=0:w=iw:h=32:color={bar}:t=fill",  # browser/editor title bar
        _text(12, 8, "main.py - editor", color=title_fg),
    ]
    covers: list[tuple[str, str, str, str]] = []  # (size, x, y, enable)
    line = 0
    caret: list[tuple[float, str, str]] = []  # (from, x expr, y expr)
    for act in recipe.get("activities", []):
        kind, a, b = act["kind"], float(act["start_s"]), float(act["end_s"])
        y = y0 + line * lh
        if kind == "typing":
            rate = float(act.get("chars_per_s", 1.0))
            # Spaces are invisible: typed text here has none, so every typed second shows.
            source = str(act.get("text") or ";".join(CODE)).replace(" ", ".")
            total = int((b - a) * rate)
            typed = (source * (total // max(1, len(source)) + 1))[:total]
            for first in range(0, total, LINE_CHARS):  # a new line every LINE_CHARS
                chars = typed[first : first + LINE_CHARS]
                n, la = len(chars), a + first / rate
                y = y0 + line * lh
                text.append(_text(x0, y, chars, enable=f"gte(t,{la:g})"))
                reveal = rf"{x0}+max(0\,floor((t-{la:g})*{rate}))*{cw}"
                covers.append(
                    (f"{n * cw + 20}x{lh}", reveal, str(y - 3), f"lt(t,{la + n / rate:g})")
                )
                caret.append(
                    (la, rf"{x0}+min({n}\,max(0\,floor((t-{la:g})*{rate})))*{cw}", str(y - 2))
                )
                line += 1
        elif kind == "paste":
            for k, code in enumerate(CODE):
                text.append(_text(x0, y0 + (line + k) * lh, code, enable=f"gte(t,{a})"))
            line += len(CODE)
        elif kind == "scroll":
            speed = float(act.get("px_per_s", 40))
            for k in range(30):
                ty = rf"{y0 + 60 + k * lh}-{speed}*(min(t\,{b})-{a})*gte(t\,{a})"
                text.append(_text(x0 + 640, ty, f"{k:3d}  {CODE[k % len(CODE)]}"))
        elif kind == "ai_tab":
            title = "ChatGPT - AI assistant"
            text.append(_text(400, 8, title, color=fg, enable=f"between(t,{a},{b})"))
        elif kind == "terminal_error":
            error = "Traceback (most recent call last): ValueError: bad input"
            text.append(_text(x0, 600, error, color=error_fg, enable=f"gte(t,{a})"))
        elif kind != "idle":
            raise ValueError(f"activities: unknown kind {kind!r}")
    graph = [f"[0:v]{','.join(text)}[l0]"]
    layer = 0
    for k, (box, x, y, enable) in enumerate(covers):
        graph.append(f"color=c={bg}:s={box}:r={fps}[c{k}]")
        graph.append(f"[l{layer}][c{k}]overlay=x='{x}':y={y}:enable='{enable}'[l{layer + 1}]")
        layer += 1
    if recipe.get("caret", True):  # blinks (~1 Hz) where typing is, or where it stopped
        x_expr, y_expr = str(x0), str(y0 - 2)
        for a, x, y in caret:
            x_expr = rf"if(gte(t\,{a})\,{x}\,{x_expr})"
            y_expr = rf"if(gte(t\,{a})\,{y}\,{y_expr})"
        graph.append(f"color=c={caret_fg}:s=2x20:r={fps}[caret]")
        graph.append(
            f"[l{layer}][caret]overlay=x='{x_expr}':y='{y_expr}'"
            f":enable='lt(mod(t,1.06),0.53)'[l{layer + 1}]"
        )
        layer += 1
    gop_s = recipe.get("gop_s", 2)
    gop = 100_000 if gop_s is None else int(float(gop_s) * fps)
    argv = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
            f"color=c={bg}:s={size}:r={fps}:d={seconds:g}"]  # fmt: skip
    audio: list[str] = []
    if recipe.get("sound"):
        from evals.synth import sound

        mixed = sound.render(recipe["sound"], seconds, seed=int(recipe.get("seed", 1)),
                             cache=cache or dest.parent)  # fmt: skip
        wav = sound.write_wav(mixed, dest.with_suffix(".sound.wav"))
        argv += ["-i", str(wav)]
        audio = ["-map", "1:a", "-c:a", "aac", "-b:a", "48k"]
    argv += ["-filter_complex", ";".join(graph), "-map", f"[l{layer}]", *audio,
             "-t", f"{seconds:g}", "-c:v", "libx264", "-preset", "ultrafast",
             "-pix_fmt", "yuv420p", "-g", str(gop), "-keyint_min", str(gop),
             "-sc_threshold", "0", "-threads", "1", str(dest)]  # fmt: skip
    _run(argv)
    return dest
