"""The one place that spawns ffmpeg/ffprobe, and the argv pieces every command shares."""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from analysis_engine.errors import MediaError

log = logging.getLogger(__name__)


FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
FFPROBE = shutil.which("ffprobe") or "/usr/bin/ffprobe"
STDERR_TAIL_LINES = 15
DEFAULT_TIMEOUT = 3600.0


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


def ffmpeg_base() -> list[str]:
    return [FFMPEG, "-hide_banner", "-nostdin", "-nostats", "-y"]


def thread_args(threads: int | None) -> list[str]:
    """Decoder (input) and filter-graph thread caps; None lets ffmpeg pick per core."""
    return ["-filter_threads", str(threads), "-threads", str(threads)] if threads else []


def seek_args(start: float | None, end: float | None) -> list[str]:
    """Input options limiting decoding to [start, end) (fast keyframe seek, then exact)."""
    args: list[str] = []
    if start:
        args += ["-ss", f"{start:.3f}"]
    if end is not None:
        args += ["-t", f"{max(0.0, end - (start or 0.0)):.3f}"]
    return args
