"""What a stitch produced: runs, gaps, bad chunks (plain data)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from analysis_engine.models import Interval

# `recorder_stopped`: a recorder restart after a real pause, dated by the chunks' upload times
# (the gap also holds any chunks lost around the restart).
GapReason = Literal[
    "missing_chunks", "bad_chunks", "timecode_jump", "no_header", "restart", "recorder_stopped"
]
# Where a run's tracks came from: its own EBML header, a later run's (its header chunk was
# lost; the same browser writes the same tracks), or inferred from its blocks (see `infer`).
HeaderSource = Literal["own", "borrowed", "inferred"]
# How recorder restarts were placed on the test clock: after the pause the upload times show,
# or back to back (upload times missing or implausible: any pause is squeezed out).
RestartTiming = Literal["upload_times", "back_to_back"]


@dataclass(frozen=True)
class RecordingGap:
    """Time on the test clock with no media, and why."""

    start_s: float
    end_s: float
    reason: GapReason
    chunks: tuple[str, ...] = ()

    @property
    def interval(self) -> Interval:
        return Interval(self.start_s, self.end_s)


@dataclass(frozen=True)
class RunReport:
    """One recorder session: from an EBML header (or a lost one) to the next."""

    index: int
    first_chunk: str
    last_chunk: str
    chunks: int
    start_s: float
    end_s: float
    header: HeaderSource
    reencoded: bool = False
    paused_s: float = 0.0  # the recorder was stopped this long before this run started


@dataclass(frozen=True)
class ChunkProblem:
    name: str
    reason: str


@dataclass(frozen=True)
class StitchReport:
    output: Path
    chunks_total: int
    chunks_used: int
    duplicates: tuple[str, ...]
    bad_chunks: tuple[ChunkProblem, ...]
    missing_indices: tuple[int, ...]
    runs: tuple[RunReport, ...]
    gaps: tuple[RecordingGap, ...]
    start_s: float  # first timestamp in the output (0 unless the start of the test was lost)
    duration_s: float  # end of the last frame on the test clock
    mode: Literal["copy", "reencode"]
    bytes_in: int
    seconds_elapsed: float
    # None when there was no restart; `restart_timing_note` says why upload times were not used.
    restart_timing: RestartTiming | None = None
    restart_timing_note: str = ""

    @property
    def gap_intervals(self) -> tuple[Interval, ...]:
        return tuple(g.interval for g in self.gaps)

    @property
    def gap_seconds(self) -> float:
        return round(sum(g.end_s - g.start_s for g in self.gaps), 3)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["output"] = self.output.name
        data["gap_seconds"] = self.gap_seconds
        return data
