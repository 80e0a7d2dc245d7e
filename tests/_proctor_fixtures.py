"""Test-time webcam recordings and MediaRecorder-style chunks (nothing is committed).

ffmpeg writes a live WebM with ~3 s clusters; a tiny EBML splitter (independent of the
stitcher's parser on purpose) cuts it into chunk bytes: the first chunk carries the header,
the others are bare Clusters, exactly like `MediaRecorder.start(3000)` uploads.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

CLUSTER_ID = b"\x1f\x43\xb6\x75"
REPO = Path(__file__).resolve().parents[1]


def make_recording(
    path: Path,
    seconds: float,
    *,
    black: tuple[float, float] | None = None,
    frozen: tuple[float, float] | None = None,
    silent: tuple[float, float] | None = None,
    fps: int = 10,
    size: str = "320x240",
    codec: str = "libvpx",
    gop_s: float = 3,
) -> Path:
    """A moving test pattern with a tone; optional black, frozen and silent stretches."""
    video = [f"testsrc2=size={size}:rate={fps}", "format=yuv420p"]
    if frozen:
        first, last = int(frozen[0] * fps), int(frozen[1] * fps)
        video.append(f"split[a][b];[a][b]freezeframes=first={first}:last={last}:replace={first}")
    if black:
        video.append(f"drawbox=color=black:t=fill:enable='between(t,{black[0]},{black[1]})'")
    audio = ["sine=frequency=440:sample_rate=48000", "volume=0.5"]
    if silent:
        audio.append(f"volume=0:enable='between(t,{silent[0]},{silent[1]})'")
    cmd = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", ",".join(video),
        "-f", "lavfi", "-i", ",".join(audio),
        "-t", str(seconds), "-threads", "1",
        "-c:v", codec, "-b:v", "200k", "-g", str(round(gop_s * fps)), "-deadline", "realtime",
        "-cpu-used", "16" if codec == "libvpx" else "8",
        "-c:a", "libopus", "-b:a", "32k",
        "-f", "webm", "-live", "1", "-cluster_time_limit", "3000",
        "-cluster_size_limit", "100M", str(path),
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    return path


def _vint_size(data: bytes, pos: int) -> tuple[int | None, int]:
    first = data[pos]
    length = 9 - first.bit_length()
    value = int.from_bytes(data[pos : pos + length], "big") & ((1 << (7 * length)) - 1)
    return (None if value == (1 << (7 * length)) - 1 else value), length


def split_clusters(data: bytes) -> tuple[bytes, list[bytes]]:
    """(everything before the first Cluster, [each Cluster element's bytes])."""
    first = data.index(CLUSTER_ID)
    header, clusters, pos = data[:first], [], first
    while pos < len(data):
        assert data[pos : pos + 4] == CLUSTER_ID, f"expected a Cluster at {pos}"
        size, length = _vint_size(data, pos + 4)
        if size is None:  # unknown size: runs to the next Cluster ID
            nxt = data.find(CLUSTER_ID, pos + 4)
            end = len(data) if nxt < 0 else nxt
        else:
            end = pos + 4 + length + size
        clusters.append(data[pos:end])
        pos = end
    return header, clusters


def mediarecorder_chunks(recording: Path) -> list[bytes]:
    """One chunk per ~3 s cluster; only the first carries the EBML header."""
    header, clusters = split_clusters(recording.read_bytes())
    if len(clusters) > 1 and len(clusters[-1]) < 2048:  # ffmpeg's tiny tail cluster
        clusters[-2:] = [clusters[-2] + clusters[-1]]
    return [header + clusters[0], *clusters[1:]]


def complete_file_chunks(recording: Path, out_dir: Path) -> list[Path]:
    """Each chunk a complete WebM (timestamps reset), as some clients upload."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(recording),
        "-map", "0", "-c", "copy", "-f", "segment", "-segment_time", "3",
        "-segment_format", "webm", "-reset_timestamps", "1",
        str(out_dir / "%d.webm"),
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    return sorted(out_dir.glob("*.webm"), key=lambda p: int(p.stem))


def write_chunks(
    chunks: Sequence[bytes], directory: Path, names: Sequence[str] | None = None
) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    names = names or [f"{i}.webm" for i in range(len(chunks))]
    paths = []
    for name, data in zip(names, chunks, strict=True):
        path = directory / name
        path.write_bytes(data)
        paths.append(path)
    return paths


def probe_duration(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if out and out != "N/A":
        return float(out)
    return last_packet_end(path)  # a live WebM has no Duration element


def last_packet_end(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "packet=pts_time,duration_time",
         "-of", "csv=p=0", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    ends = []
    for line in out.splitlines():
        pts, _, dur = line.strip(",").partition(",")
        if pts and pts != "N/A":
            ends.append(float(pts) + (float(dur.strip(",")) if dur and dur != "N/A" else 0.0))
    return max(ends)


def probe_cues(path: Path) -> bool:
    """True when the file has a Cues element (seekable without scanning)."""
    return b"\x1c\x53\xbb\x6b" in path.read_bytes()


def black_intervals(path: Path) -> list[tuple[float, float]]:
    """blackdetect straight from ffmpeg (test oracle, independent of media.py)."""
    proc = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostats", "-copyts", "-i", str(path), "-an", "-vf",
         "blackdetect=d=1:pix_th=0.1", "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    found = []
    for line in proc.stderr.splitlines():
        if "black_start:" in line:
            parts = dict(p.split(":") for p in line.split("]")[-1].split() if ":" in p)
            found.append((float(parts["black_start"]), float(parts["black_end"])))
    return found
