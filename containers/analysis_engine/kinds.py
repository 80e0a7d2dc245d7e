"""What a container kind plugs into the shared run: its hooks and the context they receive."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from analysis_engine import stitch
from analysis_engine.mapreduce import MapSpec
from analysis_engine.models import MediaInfo, Segment
from analysis_engine.result import Kind
from analysis_engine.settings import Settings
from analysis_engine.storage import Storage


@dataclass
class RunContext:
    """What a kind's hooks may use: settings, storage, scratch space and the recording."""

    settings: Settings
    storage: Storage
    work_dir: Path
    video: Path
    info: MediaInfo
    stitch_report: stitch.StitchReport | None = None

    def output_uri(self, name: str) -> str:
        return self.storage.join(self.settings.output_uri, name)


class AnalysisKind(MapSpec, Protocol):
    """What a container supplies on top of MAP: REDUCE and report assembly."""

    name: Kind
    reduce_schema: type[BaseModel]
    skip_idle: bool

    def prepare(self, run: RunContext) -> dict[str, Any]: ...

    def reduce_prompt(
        self,
        analysed: Sequence[tuple[Segment, dict[str, Any]]],
        *,
        coverage: dict[str, Any],
        run: RunContext,
        extras: dict[str, Any],
    ) -> str: ...

    def assemble_report(
        self,
        *,
        reduced: BaseModel | None,
        analysed: Sequence[tuple[Segment, dict[str, Any]]],
        coverage: dict[str, Any],
        run: RunContext,
        extras: dict[str, Any],
    ) -> dict[str, Any]: ...

    def fallback_report(self, *, run: RunContext, extras: dict[str, Any]) -> dict[str, Any] | None:
        """The report when no segment could be analysed (what was found without the model)."""
        ...
