"""The run flow both containers share; the composition root that wires adapters to the core.

settings → fetch (download one object, or stitch a chunk prefix) → probe → kind.prepare
(deterministic work that never needs the model) → plan (idle skipping) → cut → MAP
(checkpointed) → REDUCE → `result.json`, written atomically whatever happens after
start-up. The last log line states the outcome in one sentence.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn, Protocol

from pydantic import BaseModel

from analysis_engine import media, stitch
from analysis_engine.checkpoints import StorageCheckpoints
from analysis_engine.errors import AnalysisError, InvalidInputError
from analysis_engine.gemini import GeminiClient
from analysis_engine.mapreduce import (
    Clip,
    MapConfig,
    MapRunner,
    MapSpec,
    analysed_outputs,
    run_reduce,
)
from analysis_engine.models import Interval, MediaInfo, Segment, SegmentPlan
from analysis_engine.planning import plan_segments
from analysis_engine.result import (
    Kind,
    SegmentOutcome,
    Status,
    build_result,
    coverage_of,
    exit_code_for,
    map_status,
    utc_now,
)
from analysis_engine.settings import Settings, output_uri_from_env
from analysis_engine.storage import Storage

log = logging.getLogger("analysis")


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


@dataclass
class Outcome:
    status: Status
    error: str | None = None
    report: dict[str, Any] | None = None
    coverage: dict[str, Any] | None = None


@dataclass
class _Run:
    kind: AnalysisKind
    settings: Settings
    storage: Storage
    timings: dict[str, float] = field(default_factory=dict)
    client: GeminiClient | None = None

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.timings[f"{name}_s"] = time.monotonic() - started

    async def analyse(self, work_dir: Path) -> Outcome:
        settings = self.settings
        # First, so a missing key fails before any download (it makes no call yet).
        self.client = client = GeminiClient.from_settings(settings)
        with self.phase("fetch"):
            video, stitch_report = fetch_recording(settings, self.storage, work_dir)
        with self.phase("probe"):
            info = media.probe(video, field="INPUT_URI")
            if stitch_report is not None and stitch_report.start_s > 0:
                # A stitched file keeps test-clock timestamps, so when the test's first chunks
                # were lost its container duration is the end time; planning needs the length.
                info = replace(info, duration_s=stitch_report.duration_s - stitch_report.start_s)
            media.validate_duration(info, settings.max_duration_seconds)
        log.info(
            "recording: %.1f s, %s video%s, %.1f MB",
            info.duration_s,
            info.video_codec,
            f" + {info.audio_codec} audio" if info.audio_codec else ", no audio",
            info.size_bytes / 1e6,
        )
        run = RunContext(settings, self.storage, work_dir, video, info, stitch_report)
        with self.phase("prepare"):
            extras = self.kind.prepare(run)
        try:
            with self.phase("plan"):
                plan = self._plan(run)
            with self.phase("cut"):
                clips = segment_clips(video, info, plan, work_dir / "segments")
            outcomes = await self._map(plan, clips, client)
            return await self._reduce(outcomes, run, extras, client)
        except AnalysisError as exc:
            # What was found without the model (the proctor's signals) is still the report.
            log.exception("analysis failed after preparation")
            return Outcome("failed", str(exc), self.kind.fallback_report(run=run, extras=extras))

    def _plan(self, run: RunContext) -> SegmentPlan:
        settings, info = run.settings, run.info
        idle = (
            media.detect_idle(run.video, info, min_seconds=settings.idle_min_seconds)
            if self.kind.skip_idle
            else []
        )
        plan = plan_segments(
            duration_s=info.duration_s,
            keyframes=media.keyframe_times(run.video),
            target_seconds=settings.segment_seconds,
            idle=idle,
            min_idle_seconds=settings.idle_min_seconds,
        )
        log.info(
            "plan: %d segments of ~%.0f s (%s), %d to analyse, %d idle skipped (%.0f s)",
            len(plan.segments),
            settings.segment_seconds,
            plan.mode,
            len(plan.to_analyse),
            len(plan.skipped),
            sum(s.duration_s for s in plan.skipped),
        )
        return plan

    async def _map(
        self, plan: SegmentPlan, clips: Mapping[int, Clip], client: GeminiClient
    ) -> list[SegmentOutcome]:
        settings = self.settings
        config = MapConfig(
            model=settings.map_model,
            concurrency=settings.map_concurrency,
            tokens_per_second=settings.tokens_per_second,
            media_resolution=settings.media_resolution,
        )
        runner = MapRunner(
            client=client,
            spec=self.kind,
            config=config,
            checkpoints=StorageCheckpoints(self.storage, settings.output_uri),
            clips=clips,
            progress=log_segment_progress,
        )
        with self.phase("map"):
            return await runner.run(plan)

    async def _reduce(
        self,
        outcomes: list[SegmentOutcome],
        run: RunContext,
        extras: dict[str, Any],
        client: GeminiClient,
    ) -> Outcome:
        coverage = coverage_of(outcomes, run.info.duration_s)
        status, error = map_status(outcomes)
        if status == "failed":
            return Outcome(
                status, error, self.kind.fallback_report(run=run, extras=extras), coverage
            )
        analysed = analysed_outputs(outcomes)
        reduced = None
        if analysed:
            prompt = self.kind.reduce_prompt(analysed, coverage=coverage, run=run, extras=extras)
            with self.phase("reduce"):
                reduced, reduce_error = await run_reduce(
                    client=client,
                    model=self.settings.reduce_model,
                    prompt=prompt,
                    schema=self.kind.reduce_schema,
                )
            if reduce_error:
                # The MAP findings still make a report; say what is missing.
                status, error = "partial", "; ".join(e for e in (error, reduce_error) if e)
        report = self.kind.assemble_report(
            reduced=reduced, analysed=analysed, coverage=coverage, run=run, extras=extras
        )
        return Outcome(status, error, report, coverage)


def fetch_recording(
    settings: Settings, storage: Storage, work_dir: Path
) -> tuple[Path, stitch.StitchReport | None]:
    """One object is downloaded as is; a chunk prefix is stitched into one WebM."""
    if settings.input_is_prefix:
        chunks = storage.list_chunks(settings.input_uri)
        if not chunks:
            raise InvalidInputError("INPUT_URI", f"no chunks under prefix {settings.input_uri}")
        log.info("stitching %d chunks from %s", len(chunks), settings.input_uri)
        return stitch.stitch_from_storage(storage, chunks, work_dir / "stitched.webm")
    ref = storage.stat(settings.input_uri, field="INPUT_URI")
    if ref.size_bytes == 0:
        raise InvalidInputError("INPUT_URI", f"{settings.input_uri} is empty (0 bytes)")
    suffix = Path(settings.input_uri).suffix.lower() or ".bin"
    path = storage.download(settings.input_uri, work_dir / f"input{suffix}")
    return path, None


# The Files API takes files up to 2 GB; stay clear of the edge.
FILES_API_MAX_BYTES = 1_900_000_000


def segment_clips(
    video: Path, info: MediaInfo, plan: SegmentPlan, out_dir: Path, *, threads: int | None = None
) -> dict[int, Clip]:
    """What the model reads per segment. With regular keyframes: stream-copied cuts (cheap,
    uploaded and retried one by one). With sparse keyframes exact cuts would mean re-encoding
    the whole recording (~27x realtime on one core), so the recording is uploaded once and
    each segment is a `videoMetadata` clip of it instead."""
    whole = _whole_file_mime(info)
    if plan.mode == "reencode" and whole is not None:
        log.info("sparse keyframes: one upload, segments as clip offsets (no re-encode)")
        return {s.index: Clip(video, whole, Interval(s.start_s, s.end_s)) for s in plan.to_analyse}
    files = media.cut_segments(video, plan, out_dir, info=info, threads=threads)
    return {i: Clip(path, media.mime_type_for(path)) for i, path in files.items()}


def _whole_file_mime(info: MediaInfo) -> str | None:
    """The MIME type under which Gemini takes the recording as it is, or None."""
    container = media.copy_container(info)
    if info.size_bytes > FILES_API_MAX_BYTES or container is None:
        return None
    return f"video/{container}" if container in info.format_name else None


def log_segment_progress(outcome: SegmentOutcome, done: int, total: int) -> None:
    seg = outcome.segment
    span = f"[{seg.start_s:.0f}-{seg.end_s:.0f} s]"
    if outcome.output is None:
        log.warning(
            "segment %d done %d/%d %s FAILED after %d attempts: %s",
            seg.index, done, total, span, outcome.attempts, outcome.error,
        )  # fmt: skip
    elif outcome.from_checkpoint:
        log.info("segment %d done %d/%d %s from checkpoint, 0 tokens", seg.index, done, total, span)
    else:
        log.info(
            "segment %d done %d/%d %s analysed: %d in / %d out tokens, %d attempt(s)",
            seg.index, done, total, span,
            outcome.input_tokens, outcome.output_tokens, outcome.attempts,
        )  # fmt: skip


def run_analysis(kind: AnalysisKind, env: Mapping[str, str]) -> int:
    """Run one analysis from its environment; returns the exit code (never raises)."""
    started_at = utc_now()
    storage = Storage()
    try:
        settings = Settings.from_env(env)
    except InvalidInputError as exc:
        return _reject_at_startup(kind, env, storage, exc, started_at)
    run = _Run(kind, settings, storage)
    clock = time.monotonic()
    try:
        settings.work_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=settings.work_dir, prefix=f"{kind.name}-") as work:
            outcome = _execute(run, Path(work))
    except OSError as exc:  # scratch space missing, read-only or full
        outcome = Outcome("failed", f"scratch space {settings.work_dir}: {exc}")
    run.timings["total_s"] = time.monotonic() - clock
    return _publish(run, outcome, started_at)


def _execute(run: _Run, work_dir: Path) -> Outcome:
    async def go() -> Outcome:
        try:
            return await run.analyse(work_dir)
        finally:
            if run.client is not None:
                await run.client.aclose()

    try:
        return asyncio.run(go())
    except InvalidInputError as exc:
        return Outcome("invalid_input", str(exc))
    except AnalysisError as exc:  # configuration, storage or ffmpeg trouble: says what failed
        log.exception("analysis failed")
        return Outcome("failed", str(exc))
    except Exception as exc:
        log.exception("analysis crashed")
        return Outcome("failed", f"unexpected error: {type(exc).__name__}: {exc}")


def _publish(run: _Run, outcome: Outcome, started_at: str) -> int:
    settings = run.settings
    result = build_result(
        kind=run.kind.name,
        analysis_id=settings.analysis_id,
        status=outcome.status,
        error=outcome.error,
        report=outcome.report,
        coverage=outcome.coverage,
        usage=run.client.usage() if run.client else {},
        timings=run.timings,
        models={"map": settings.map_model, "reduce": settings.reduce_model},
        started_at=started_at,
    )
    result = _scrubbed(result, settings.gemini_api_key)
    uri = run.storage.join(settings.output_uri, "result.json")
    code = exit_code_for(outcome.status, result["error"])
    try:
        run.storage.write_json(uri, result)
    except Exception as exc:
        log.error("could not write %s: %s", uri, exc)
        code = 1
    log.info("%s", outcome_sentence(result, uri, code))
    return code


def _reject_at_startup(
    kind: AnalysisKind,
    env: Mapping[str, str],
    storage: Storage,
    exc: InvalidInputError,
    started_at: str,
) -> int:
    """Bad settings: still leave an `invalid_input` result when OUTPUT_URI itself is usable."""
    output_uri = output_uri_from_env(env)
    if output_uri is None:
        log.error(
            "%s invalid input, no result written (OUTPUT_URI unusable): %s; exit 2", kind.name, exc
        )
        return 2
    result = build_result(
        kind=kind.name,
        analysis_id=(env.get("ANALYSIS_ID") or None),
        status="invalid_input",
        error=str(exc),
        report=None,
        coverage=None,
        usage={},
        timings={},
        models={},
        started_at=started_at,
    )
    uri = storage.join(output_uri, "result.json")
    try:
        storage.write_json(uri, result)
    except Exception as write_exc:
        log.error("could not write %s: %s", uri, write_exc)
    log.info("%s", outcome_sentence(result, uri, 2))
    return 2


def outcome_sentence(result: Mapping[str, Any], uri: str, code: int) -> str:
    coverage = result.get("coverage") or {}
    usage = result.get("usage") or {}
    parts = [f"{result['kind']} {result['analysis_id']} finished {result['status']}"]
    if result.get("error"):
        parts[0] += f" ({result['error']})"
    if coverage:
        parts.append(
            f"{coverage['segments_analysed']}/{coverage['segments_total']} segments analysed, "
            f"{coverage['segments_skipped']} skipped, {coverage['segments_failed']} failed"
        )
    parts.append(f"{usage.get('input_tokens', 0) + usage.get('output_tokens', 0)} tokens")
    parts.append(f"result at {uri}; exit {code}.")
    return "; ".join(parts)


def _scrubbed(result: dict[str, Any], secret: str) -> dict[str, Any]:
    """The key must never reach an output, whichever error text or report field carries it."""
    if not secret:
        return result
    text = json.dumps(result, ensure_ascii=False, default=str)
    return json.loads(text.replace(secret, "***")) if secret in text else result


def configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    # The SDK and boto are chatty at INFO; our own lines carry the progress.
    for noisy in ("google_genai", "httpx", "botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(kind: AnalysisKind) -> NoReturn:
    configure_logging()
    sys.exit(run_analysis(kind, os.environ))
