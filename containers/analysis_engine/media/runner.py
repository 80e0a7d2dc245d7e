"""The one place that spawns ffmpeg/ffprobe, and the argv pieces every command shares."""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
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
    """Run ffmpeg/ffprobe. With `stream_ffmpeg` (stdout read as it comes), the only functions
    that spawn a process.

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


def stream_ffmpeg(
    argv: Sequence[str],
    *,
    record_bytes: int,
    on_record: Callable[[bytes], None],
    timeout: float = DEFAULT_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run ffmpeg with its stdout read as fixed-size records (raw video frames), each handed
    to `on_record` as it arrives, so a long recording never sits in memory. Same contract as
    `run_ffmpeg` otherwise: stderr comes back whole, failure is MediaError."""
    argv = [str(a) for a in argv]
    deadline = time.monotonic() + timeout
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except FileNotFoundError as exc:
        raise MediaError(f"{argv[0]} is not installed", command=argv) from exc
    assert proc.stdout is not None and proc.stderr is not None
    err: list[bytes] = []
    drain = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
    drain.start()
    watchdog = threading.Timer(timeout, proc.kill)  # a hung ffmpeg cannot block the read
    watchdog.start()
    try:
        while record := proc.stdout.read(record_bytes):
            if len(record) == record_bytes:
                on_record(record)
        returncode = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        watchdog.cancel()
        drain.join()
        proc.stdout.close()
        proc.stderr.close()
    stderr = b"".join(err).decode(errors="replace")
    if time.monotonic() >= deadline:
        raise MediaError(
            f"{Path(argv[0]).name} timed out after {timeout:g}s",
            command=argv,
            stderr_tail=_tail(stderr),
        )
    if returncode != 0:
        raise MediaError(
            f"{Path(argv[0]).name} exited with {returncode}",
            command=argv,
            stderr_tail=_tail(stderr),
        )
    return subprocess.CompletedProcess(argv, returncode, "", stderr)


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
