"""MAP/REDUCE orchestration: the pure core (no boto3, HTTP or subprocess imports).

MAP runs one model call per segment with bounded concurrency; timestamps in a MAP answer
are relative to its clip and are shifted onto the whole recording's clock by the kind.
Finished segments are checkpointed so a rerun spends no tokens twice. REDUCE consolidates
the segments that succeeded. Adapters (Gemini client, checkpoint store, clip files) come
in through the protocols below.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from analysis_engine.errors import AnalysisError, ModelCallError
from analysis_engine.models import Interval, MediaHandle, ModelReply, Segment, SegmentPlan
from analysis_engine.result import SegmentOutcome

log = logging.getLogger(__name__)
T = TypeVar("T", bound=BaseModel)


class ModelClient(Protocol):
    async def upload(self, path: Path, *, mime_type: str) -> MediaHandle: ...

    async def delete(self, handle: MediaHandle) -> None: ...

    async def generate(
        self,
        *,
        model: str,
        prompt: str,
        schema: type[T],
        media: MediaHandle | None = None,
        estimated_input_tokens: int,
        media_resolution: str = "default",
    ) -> ModelReply[T]: ...


class CheckpointStore(Protocol):
    def load(self, key: str) -> dict[str, Any] | None: ...

    def save(self, key: str, payload: dict[str, Any]) -> None: ...


class MapSpec(Protocol):
    """What a container kind supplies for MAP."""

    prompt_version: str
    map_schema: type[BaseModel]

    def map_prompt(self, segment: Segment, *, total: int, duration_s: float) -> str: ...

    def to_absolute(self, output: BaseModel, segment: Segment) -> dict[str, Any]: ...


@dataclass(frozen=True)
class MapConfig:
    model: str
    concurrency: int
    tokens_per_second: int
    media_resolution: str = "default"


@dataclass(frozen=True)
class Clip:
    """The file the model reads for a segment: its own cut, or (`span` set) a stretch of a
    whole recording that is uploaded once and shared by every segment."""

    path: Path
    mime_type: str
    span: Interval | None = None


def checkpoint_key(segment: Segment) -> str:
    return f"map-{segment.index:04d}.json"


def fingerprint(segment: Segment, spec: MapSpec, config: MapConfig) -> str:
    """A checkpoint is reused only for the same cut, model and prompt version."""
    basis = json.dumps(
        [segment.start_s, segment.end_s, config.model, spec.prompt_version], sort_keys=True
    )
    return hashlib.sha256(basis.encode()).hexdigest()[:16]


def estimate_tokens(seconds: float, prompt: str, tokens_per_second: int) -> int:
    # ~4 characters per text token is the usual rule of thumb.
    return int(seconds * tokens_per_second) + len(prompt) // 4 + 1


class MapRunner:
    """Runs MAP over a plan; one instance per analysis run."""

    def __init__(
        self,
        *,
        client: ModelClient,
        spec: MapSpec,
        config: MapConfig,
        checkpoints: CheckpointStore,
        clips: Mapping[int, Clip],
        progress: Callable[[SegmentOutcome, int, int], None] | None = None,
    ) -> None:
        self._client = client
        self._spec = spec
        self._config = config
        self._checkpoints = checkpoints
        self._clips = clips
        self._progress = progress or (lambda outcome, done, total: None)
        self._shared: dict[Path, MediaHandle | AnalysisError] = {}
        self._shared_lock = asyncio.Lock()

    async def run(self, plan: SegmentPlan) -> list[SegmentOutcome]:
        todo = plan.to_analyse
        gate = asyncio.Semaphore(self._config.concurrency)
        done = 0

        async def one(segment: Segment) -> SegmentOutcome:
            nonlocal done
            async with gate:
                outcome = await self._map_segment(segment, total=len(plan.segments), plan=plan)
            done += 1
            self._progress(outcome, done, len(todo))
            return outcome

        try:
            analysed = await asyncio.gather(*(one(segment) for segment in todo))
        finally:
            for handle in self._shared.values():
                if isinstance(handle, MediaHandle):
                    await self._client.delete(handle)
        by_index = {o.segment.index: o for o in analysed}
        skipped = {s.index: SegmentOutcome(segment=s) for s in plan.skipped}
        return [by_index.get(s.index) or skipped[s.index] for s in plan.segments]

    async def _map_segment(
        self, segment: Segment, *, total: int, plan: SegmentPlan
    ) -> SegmentOutcome:
        expected = fingerprint(segment, self._spec, self._config)
        # Checkpoint I/O is blocking (S3): keep it off the event loop and its deadlines.
        cached = await asyncio.to_thread(self._checkpoints.load, checkpoint_key(segment))
        if cached and cached.get("fingerprint") == expected:
            return SegmentOutcome(segment=segment, output=cached["output"], from_checkpoint=True)
        try:
            reply = await self._call_model(segment, total=total, duration_s=plan.duration_s)
        except ModelCallError as exc:
            return SegmentOutcome(segment=segment, error=str(exc), attempts=exc.attempts)
        except AnalysisError as exc:  # e.g. a clip that could not be cut or uploaded
            return SegmentOutcome(segment=segment, error=str(exc), attempts=1)
        output = self._spec.to_absolute(reply.parsed, segment)
        payload = {
            "fingerprint": expected,
            "segment": {"index": segment.index, "start_s": segment.start_s, "end_s": segment.end_s},
            "output": output,
            "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
        }
        try:
            await asyncio.to_thread(self._checkpoints.save, checkpoint_key(segment), payload)
        except AnalysisError as exc:  # the answer is paid for and still used; only a rerun loses
            log.warning("segment %d: checkpoint not saved: %s", segment.index, exc)
        return SegmentOutcome(
            segment=segment,
            output=output,
            attempts=reply.attempts,
            input_tokens=reply.input_tokens,
            output_tokens=reply.output_tokens,
        )

    async def _call_model(
        self, segment: Segment, *, total: int, duration_s: float
    ) -> ModelReply[Any]:
        clip = self._clips[segment.index]
        prompt = self._spec.map_prompt(segment, total=total, duration_s=duration_s)
        if clip.span is not None:
            shared = await self._shared_upload(clip)
            return await self._generate(segment, prompt, replace(shared, clip=clip.span))
        handle = await self._client.upload(clip.path, mime_type=clip.mime_type)
        try:
            return await self._generate(segment, prompt, handle)
        finally:
            await self._client.delete(handle)

    async def _generate(self, segment: Segment, prompt: str, media: MediaHandle) -> ModelReply[Any]:
        return await self._client.generate(
            model=self._config.model,
            prompt=prompt,
            schema=self._spec.map_schema,
            media=media,
            estimated_input_tokens=estimate_tokens(
                segment.duration_s, prompt, self._config.tokens_per_second
            ),
            media_resolution=self._config.media_resolution,
        )

    async def _shared_upload(self, clip: Clip) -> MediaHandle:
        """Upload a whole recording once; a failed upload fails every segment that needs it
        without being retried per segment (the client already retried it)."""
        async with self._shared_lock:
            if clip.path not in self._shared:
                try:
                    self._shared[clip.path] = await self._client.upload(
                        clip.path, mime_type=clip.mime_type
                    )
                except AnalysisError as exc:
                    self._shared[clip.path] = exc
            handle = self._shared[clip.path]
        if isinstance(handle, AnalysisError):
            raise handle
        return handle


async def run_reduce(
    *,
    client: ModelClient,
    model: str,
    prompt: str,
    schema: type[T],
) -> tuple[T | None, str | None]:
    """One text-only REDUCE call. Returns (answer, None) or (None, reason) — never raises
    for a model failure, so the caller can still publish the MAP findings."""
    try:
        reply = await client.generate(
            model=model,
            prompt=prompt,
            schema=schema,
            estimated_input_tokens=estimate_tokens(0, prompt, 0),
        )
    except ModelCallError as exc:
        return None, f"REDUCE failed: {exc}"
    return reply.parsed, None


def analysed_outputs(outcomes: Sequence[SegmentOutcome]) -> list[tuple[Segment, dict[str, Any]]]:
    return [(o.segment, o.output) for o in outcomes if o.output is not None]
