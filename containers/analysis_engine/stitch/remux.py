"""ffmpeg remux of the rebuilt stream: WebM, or MP4 for codecs WebM cannot hold."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Literal

from analysis_engine.errors import MediaError

WEBM_CODECS = {"V_VP8", "V_VP9", "V_AV1", "A_OPUS", "A_VORBIS"}
# Codecs WebM cannot hold but MP4 can, so they are stream-copied into MP4 instead (Chrome's
# `video/webm;codecs=h264` recordings are Matroska with H.264): never a re-encode.
MP4_CODECS = {"V_MPEG4/ISO/AVC", "V_MPEGH/ISO/HEVC", "V_AV1", "A_AAC", "A_OPUS", "A_MPEG/L3"}


class Remuxer:
    """ffmpeg reading the rebuilt stream on stdin, writing a seekable WebM (cues, duration), or
    an MP4 (same name, `.mp4`) when the codecs only fit MP4: stream copy either way; only
    codecs neither can hold are re-encoded."""

    def __init__(self, output: Path, *, ffmpeg: str, threads: int) -> None:
        self.output = output
        self.ffmpeg = ffmpeg
        self.threads = threads
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr: Any = None
        self.command: list[str] = []
        self.mode: Literal["copy", "reencode"] = "copy"

    def start(self, codecs: set[str]) -> None:
        self.mode = "copy" if codecs <= WEBM_CODECS or codecs <= MP4_CODECS else "reencode"
        fmt = ["-f", "webm"]
        if self.mode == "copy" and not codecs <= WEBM_CODECS:
            self.output = self.output.with_suffix(".mp4")
            fmt = ["-f", "mp4", "-movflags", "+faststart"]
        codec_args = (
            ["-c", "copy"]
            if self.mode == "copy"
            else ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "1M",
                  "-c:a", "libopus", "-b:a", "64k"]
        )  # fmt: skip
        self.command = [
            self.ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
            "-fflags", "+genpts", "-f", "matroska", "-i", "pipe:0",
            "-map", "0", *codec_args, "-copyts", "-threads", str(self.threads),
            *fmt, str(self.output),
        ]  # fmt: skip
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as ffmpeg
        self.proc = subprocess.Popen(self.command, stdin=subprocess.PIPE, stderr=self.stderr)

    def write(self, data: bytes) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(data)
        except BrokenPipeError as exc:
            self.proc.wait()
            raise self._error("ffmpeg stopped reading the stitched stream") from exc

    def finish(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        if self.proc.wait() != 0:
            raise self._error(f"ffmpeg remux failed (exit {self.proc.returncode})")

    def abort(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def _error(self, message: str) -> MediaError:
        tail = ""
        if self.stderr is not None:
            self.stderr.seek(0)
            tail = self.stderr.read()[-4000:].decode("utf-8", "replace")
        return MediaError(message, command=self.command, stderr_tail=tail)
