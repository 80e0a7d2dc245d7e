"""Plain data types shared by the pure core and the adapters (no I/O here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel

T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True, order=True)
class Interval:
    """A time range in seconds from the start of the recording (or test)."""

    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return max(0.0, self.end_s - self.start_s)


@dataclass(frozen=True)
class MediaInfo:
    """What ffprobe says about one media file."""

    path: Path
    duration_s: float
    size_bytes: int
    format_name: str
    video_codec: str | None
    audio_codec: str | None
    width: int | None = None
    height: int | None = None
    fps: float | None = None

    @property
    def has_video(self) -> bool:
        return self.video_codec is not None

    @property
    def has_audio(self) -> bool:
        return self.audio_codec is not None


SkipReason = Literal["idle"]


@dataclass(frozen=True)
class Segment:
    """One MAP unit: a time range of the recording, possibly skipped before any model call."""

    index: int
    start_s: float
    end_s: float
    skip_reason: SkipReason | None = None
    # What the model is shown of it, when triage chose (None: the run's settings): a media
    # resolution, a frame rate (Gemini samples 1 fps by default), and why ("flagged": the
    # local detectors saw something there; "sampled": they ruled it quiet).
    media_resolution: str | None = None
    fps: float | None = None
    triage: Literal["flagged", "sampled"] | None = None

    @property
    def duration_s(self) -> float:
        return max(0.0, self.end_s - self.start_s)


@dataclass(frozen=True)
class SegmentPlan:
    """How a recording is cut. `mode` says whether stream copy suffices or cuts need a re-encode."""

    segments: tuple[Segment, ...]
    mode: Literal["copy", "reencode"]
    duration_s: float

    @property
    def to_analyse(self) -> tuple[Segment, ...]:
        return tuple(s for s in self.segments if s.skip_reason is None)

    @property
    def skipped(self) -> tuple[Segment, ...]:
        return tuple(s for s in self.segments if s.skip_reason is not None)


@dataclass(frozen=True)
class MediaHandle:
    """A file the model can read: uploaded (`uri`) or small enough to inline (`data`)."""

    mime_type: str
    uri: str | None = None
    name: str | None = None
    data: bytes | None = field(default=None, repr=False)
    # Only this stretch of the file is shown to the model (Gemini `videoMetadata` offsets):
    # one upload of a whole recording can serve every segment without cutting it.
    clip: Interval | None = None
    # Frames per second the model samples (`videoMetadata.fps`); None: its default, 1.
    fps: float | None = None


@dataclass(frozen=True)
class ModelReply(Generic[T]):
    """A validated structured answer plus what it cost."""

    parsed: T
    model: str
    input_tokens: int
    output_tokens: int
    attempts: int


@dataclass(frozen=True)
class ObjectRef:
    """One stored object (s3:// or file://) and its size, as listed or stat'ed."""

    uri: str
    size_bytes: int
    # S3's ETag (quotes removed): with the size, what identifies this version of the object.
    etag: str | None = None
    # When the object was written, POSIX seconds (S3 `LastModified`, a file's mtime). Chunks
    # are uploaded as they are recorded, so this dates a recorder restart's pause. Metadata,
    # not identity: two listings of the same object compare equal.
    uploaded_at: float | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        """The last path component (`3.webm` for `s3://b/rec/3.webm`)."""
        return self.uri.rstrip("/").rsplit("/", 1)[-1]
