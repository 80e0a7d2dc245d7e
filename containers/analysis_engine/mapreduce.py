"""MAP orchestration: the pure core (no boto3, HTTP or subprocess imports).

MAP runs one model call per segment with bounded concurrency; the kind turns each answer's
times onto the whole recording's clock. Finished segments are checkpointed so a rerun spends
no tokens twice, and a checkpoint is reused only when everything that produced it is the same
(see `fingerprint`). One segment going wrong in any way fails that segment, never the run.
A `StopSignal` (SIGTERM, the run deadline) stops new calls from starting and cancels those in
flight; their segments are reported as skipped with the reason. Adapters (Gemini client,
checkpoint store, clip files) come in through the protocols below. REDUCE is in `reduce.py`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel

from analysis_engine.errors import AnalysisError, ModelCallError
from analysis_engine.model_specs import video_tokens_per_second
from analysis_engine.models import Interval, MediaHandle, ModelReply, Segment, SegmentPlan

log = logging.getLogger(__name__)
T = TypeVar("T", bound=BaseModel)

# Bumped whenever the checkpoint payload's shape changes: older ones are simply not reused.
CHECKPOINT_FORMAT = 2


@dataclass(frozen=True)
class SegmentOutcome:
    """What happened to one segment: analysed (fresh or from a checkpoint), failed or skipped
    (idle in the plan, or not started because the run was stopped or hit its deadline)."""

    segment: Segment
    output: dict[str, Any] | None = None
    error: str | None = None
    attempts: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    from_checkpoint: bool = False
    skip_reason: str | None = None  # "deadline" or "stopped"; idle lives on the segment
    # False when the model refused for good (bad key, unknown model, blocked prompt, ...):
    # running the analysis again later would fail the same way.
    retryable: bool = True

    @property
    def state(self) -> Literal["analysed", "failed", "skipped"]:
        if self.output is not None:
            return "analysed"
        if self.segment.skip_reason is not None or self.skip_reason is not None:
            return "skipped"
        return "failed"

    @property
    def reason(self) -> str | None:
        """Why the segment was not analysed (None when it was)."""
        if self.state == "analysed":
            return None
        return self.skip_reason or self.segment.skip_reason or self.error


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
        finishing: bool = False,
    ) -> ModelReply[T]: ...


class CheckpointStore(Protocol):
    def load(self, key: str) -> dict[str, Any] | None: ...

    def save(self, key: str, payload: dict[str, Any]) -> None: ...


class StopSignal(Protocol):
    """Why work must stop starting (None while it may go on), and a way to wait for it."""

    @property
    def reason(self) -> str | None: ...

    async def wait(self) -> str: ...


class MapSpec(Protocol):
    """What a container kind supplies for MAP.

    `absolute_times` is True when the model sees a stretch of the whole recording (clip
    offsets of one upload): the prompt then gives the segment's place on the recording's clock
    and asks for times on it; otherwise it asks for seconds from the start of the clip file.
    `to_absolute` must accept an answer in either convention (models do not always follow)."""

    prompt_version: str
    map_schema: type[BaseModel]

    def map_prompt(
        self, segment: Segment, *, total: int, duration_s: float, absolute_times: bool
    ) -> str: ...

    def to_absolute(
        self, output: BaseModel, segment: Segment, *, absolute_times: bool
    ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class MapConfig:
    model: str
    concurrency: int
    tokens_per_second: int
    media_resolution: str = "default"
    has_audio: bool = True
    # What else produced an answer: the recording's identity and the analysis context.
    input_identity: str = ""
    context: Mapping[str, Any] = field(default_factory=dict)
    # A purposeful rerun (RERUN_ID): answers made under another one are not reused.
    rerun_id: str = ""


@dataclass(frozen=True)
class Clip:
    """The file the model reads for a segment: its own cut, or (`span` set) a stretch of a
    whole recording that is uploaded once and shared by every segment."""

    path: Path
    mime_type: str
    span: Interval | None = None


def checkpoint_key(segment: Segment) -> str:
    return f"map-{segment.index:04d}.json"


def fingerprint_basis(
    segment: Segment, spec: MapSpec, config: MapConfig, prompt: str
) -> dict[str, Any]:
    """Everything that produced a MAP answer. The prompt text covers the cut, the wording and
    whatever the kind shows the model; the context is hashed whole because a prompt may show
    only part of it."""
    schema = json.dumps(spec.map_schema.model_json_schema(), sort_keys=True)
    context = json.dumps(dict(config.context), sort_keys=True, default=str)
    return {
        "format": CHECKPOINT_FORMAT,
        "input": config.input_identity,
        "context": _sha(context),
        "model": config.model,
        "prompt_version": spec.prompt_version,
        "prompt": _sha(prompt),
        "schema": _sha(schema),
        "media_resolution": segment.media_resolution or config.media_resolution,
        "segment": [segment.start_s, segment.end_s],
        # Only when set, so the checkpoints of every ordinary run stay valid.
        **({"rerun": config.rerun_id} if config.rerun_id else {}),
        # Only when triage chose a frame rate, so earlier checkpoints stay valid.
        **({"fps": segment.fps} if segment.fps is not None else {}),
    }


def fingerprint(basis: Mapping[str, Any]) -> str:
    return _sha(json.dumps(dict(basis), sort_keys=True))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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
        stop: StopSignal | None = None,
    ) -> None:
        self._client = client
        self._spec = spec
        self._config = config
        self._checkpoints = checkpoints
        self._clips = clips
        self._progress = progress or (lambda outcome, done, total: None)
        self._stop = stop
        self._shared: dict[Path, MediaHandle | AnalysisError] = {}
        self._shared_lock = asyncio.Lock()

    async def run(self, plan: SegmentPlan) -> list[SegmentOutcome]:
        todo = plan.to_analyse
        gate = asyncio.Semaphore(self._config.concurrency)
        done = 0

        async def one(segment: Segment) -> SegmentOutcome:
            nonlocal done
            async with gate:
                reason = self._stop.reason if self._stop is not None else None
                if reason is not None:  # no new model call once stopped or past the deadline
                    outcome = SegmentOutcome(segment=segment, skip_reason=reason)
                else:
                    outcome = await self._guarded(segment, total=len(plan.segments), plan=plan)
            done += 1
            self._progress(outcome, done, len(todo))
            return outcome

        tasks = [asyncio.create_task(one(segment)) for segment in todo]
        try:
            reason = await self._until_done_or_stopped(tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for handle in self._shared.values():
                if isinstance(handle, MediaHandle):
                    await self._client.delete(handle)
        by_index: dict[int, SegmentOutcome] = {}
        for segment, task in zip(todo, tasks, strict=True):
            if task.cancelled() or task.exception() is not None:
                # Cut off in flight by a stop (an exception cannot reach here: see _guarded).
                by_index[segment.index] = SegmentOutcome(
                    segment=segment, skip_reason=reason or "stopped"
                )
            else:
                by_index[segment.index] = task.result()
        skipped = {s.index: SegmentOutcome(segment=s) for s in plan.skipped}
        return [by_index.get(s.index) or skipped[s.index] for s in plan.segments]

    async def _until_done_or_stopped(self, tasks: list[asyncio.Task[SegmentOutcome]]) -> str | None:
        """Wait for every segment, or for the stop signal: then calls in flight are cancelled
        (a retry chain can run for minutes; a stop must be honoured in seconds)."""
        if not tasks:
            return None
        if self._stop is None:
            await asyncio.wait(tasks)
            return None
        waiter = asyncio.create_task(self._stop.wait())
        try:
            done, _ = await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
            while waiter not in done and not all(t.done() for t in tasks):
                done, _ = await asyncio.wait(
                    [*(t for t in tasks if not t.done()), waiter],
                    return_when=asyncio.FIRST_COMPLETED,
                )
            if waiter in done:
                reason = waiter.result()
                log.warning("MAP %s: cancelling calls in flight", reason)
                return reason
            return None
        finally:
            waiter.cancel()

    async def _guarded(self, segment: Segment, *, total: int, plan: SegmentPlan) -> SegmentOutcome:
        """One segment; anything unexpected fails this segment only (and says what it was)."""
        try:
            return await self._map_segment(segment, total=total, plan=plan)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("segment %d: unexpected error", segment.index)
            return SegmentOutcome(
                segment=segment, error=f"unexpected error: {type(exc).__name__}: {exc}", attempts=1
            )

    async def _map_segment(
        self, segment: Segment, *, total: int, plan: SegmentPlan
    ) -> SegmentOutcome:
        clip = self._clips[segment.index]
        absolute = clip.span is not None
        prompt = self._spec.map_prompt(
            segment, total=total, duration_s=plan.duration_s, absolute_times=absolute
        )
        basis = fingerprint_basis(segment, self._spec, self._config, prompt)
        expected = fingerprint(basis)
        # Checkpoint I/O is blocking (S3): keep it off the event loop and its deadlines.
        cached = await asyncio.to_thread(self._checkpoints.load, checkpoint_key(segment))
        reused = _reusable(cached, expected)
        if reused is not None:
            return SegmentOutcome(segment=segment, output=reused, from_checkpoint=True)
        if cached is not None:
            log.info("segment %d: checkpoint made from something else; analysing again",
                     segment.index)  # fmt: skip
        try:
            reply = await self._call_model(segment, clip, prompt)
        except ModelCallError as exc:
            return SegmentOutcome(
                segment=segment, error=str(exc), attempts=exc.attempts, retryable=exc.retryable
            )
        except AnalysisError as exc:  # e.g. a clip that could not be cut or uploaded
            return SegmentOutcome(segment=segment, error=str(exc), attempts=1)
        output = self._spec.to_absolute(reply.parsed, segment, absolute_times=absolute)
        payload = {
            "fingerprint": expected,
            "basis": basis,
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

    async def _call_model(self, segment: Segment, clip: Clip, prompt: str) -> ModelReply[Any]:
        if clip.span is not None:
            shared = await self._shared_upload(clip)
            return await self._generate(segment, prompt, replace(shared, clip=clip.span))
        handle = await self._client.upload(clip.path, mime_type=clip.mime_type)
        try:
            return await self._generate(segment, prompt, handle)
        finally:
            await self._client.delete(handle)

    async def _generate(self, segment: Segment, prompt: str, media: MediaHandle) -> ModelReply[Any]:
        resolution = segment.media_resolution or self._config.media_resolution
        rate = self._config.tokens_per_second
        if segment.media_resolution is not None or segment.fps is not None:
            rate = video_tokens_per_second(
                self._config.model, resolution, has_audio=self._config.has_audio, fps=segment.fps
            )
        if segment.fps is not None:
            media = replace(media, fps=segment.fps)
        return await self._client.generate(
            model=self._config.model,
            prompt=prompt,
            schema=self._spec.map_schema,
            media=media,
            estimated_input_tokens=estimate_tokens(segment.duration_s, prompt, rate),
            media_resolution=resolution,
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


def _reusable(cached: Any, expected: str) -> dict[str, Any] | None:
    """The checkpointed answer when it was made from the same everything and is well formed."""
    if not isinstance(cached, dict) or cached.get("fingerprint") != expected:
        return None
    output = cached.get("output")
    return output if isinstance(output, dict) else None


def analysed_outputs(outcomes: Sequence[SegmentOutcome]) -> list[tuple[Segment, dict[str, Any]]]:
    return [(o.segment, o.output) for o in outcomes if o.output is not None]
