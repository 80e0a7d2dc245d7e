"""The run flow both containers share; the composition root that wires adapters to the core.

settings → fetch (download one object, or stitch a chunk prefix) → probe → kind.prepare
(deterministic work that never needs the model) → plan (idle skipping) → cut → MAP
(checkpointed) → REDUCE → `result.json` (publish.py), written whatever happens after
start-up. SIGTERM and `RUN_DEADLINE_SECONDS` stop new work from starting (stopping.py). The
last log line states the outcome in one sentence.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn

from analysis_engine import budget_metrics, media, metrics
from analysis_engine.checkpoints import StorageCheckpoints
from analysis_engine.clips import segment_clips
from analysis_engine.errors import AnalysisError, InvalidInputError
from analysis_engine.gemini import GeminiClient
from analysis_engine.kinds import AnalysisKind, RunContext
from analysis_engine.mapreduce import (
    Clip,
    MapConfig,
    MapRunner,
    SegmentOutcome,
    analysed_outputs,
)
from analysis_engine.models import Segment, SegmentPlan
from analysis_engine.planning import plan_segments
from analysis_engine.publish import outcome_sentence, publish_result, scrubbed
from analysis_engine.recording import fetch_recording
from analysis_engine.reduce import ReduceStage, reduce_findings
from analysis_engine.result import (
    Status,
    build_result,
    coverage_of,
    exit_code_for,
    map_status,
    utc_now,
)
from analysis_engine.settings import Settings
from analysis_engine.startup import reject_at_startup
from analysis_engine.stopping import STOPPED, RunStop, Stopped
from analysis_engine.storage import Storage
from analysis_engine.triage import summary as triage_summary
from analysis_engine.triage import triage_plan

log = logging.getLogger("analysis")

__all__ = ["AnalysisKind", "RunContext", "main", "run_analysis"]


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
    stop: RunStop
    timings: dict[str, float] = field(default_factory=dict)
    client: GeminiClient | None = None
    input_identity: str | None = None
    metrics_namespace: str = metrics.DEFAULT_NAMESPACE
    budget_metrics_s: float = budget_metrics.DEFAULT_INTERVAL_SECONDS

    @contextmanager
    def phase(self, name: str, *, blocking: bool = True) -> Iterator[None]:
        """A timed phase; blocking ones are interrupted by SIGTERM on the spot."""
        started = time.monotonic()
        try:
            if blocking:
                with self.stop.blocking():
                    yield
            else:
                self.stop.check()
                yield
        finally:
            self.timings[f"{name}_s"] = time.monotonic() - started

    async def analyse(self, work_dir: Path) -> Outcome:
        # First, so a missing key fails before any download (it makes no call yet).
        self.client = client = GeminiClient.from_settings(self.settings, kind=self.kind.name)
        async with self._budget_reporter(client):
            return await self._analyse(work_dir, client)

    @asynccontextmanager
    async def _budget_reporter(self, client: GeminiClient) -> AsyncIterator[None]:
        """While the analysis runs, this container may be the fleet's budget reporter."""
        settings = self.settings
        reporter = budget_metrics.reporter_for(
            client.budget,
            budget_uri=settings.gemini_budget_uri,
            models=(settings.map_model, settings.reduce_model),
            namespace=self.metrics_namespace,
            interval_s=self.budget_metrics_s,
        )
        task = asyncio.create_task(reporter.run(), name="budget-metrics") if reporter else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with suppress(asyncio.CancelledError, Exception):
                    await task

    async def _analyse(self, work_dir: Path, client: GeminiClient) -> Outcome:
        settings = self.settings
        with self.phase("fetch"):
            recording = fetch_recording(settings, self.storage, work_dir)
        self.input_identity = recording.identity
        stitch_report = recording.stitch_report
        with self.phase("probe"):
            info = media.probe(recording.path, field="INPUT_URI")
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
        run = RunContext(settings, self.storage, work_dir, recording.path, info, stitch_report)
        with self.phase("prepare"):
            extras = self.kind.prepare(run)
        try:
            with self.phase("plan"):
                plan = self._plan(run)
            if any(s.triage for s in plan.segments):
                offset = stitch_report.start_s if stitch_report is not None else 0.0
                extras["triage"] = triage_summary(
                    plan.segments, offset_s=offset, reasons=extras.get("flagged_because", ())
                )
            with self.phase("cut"):
                clips = segment_clips(recording.path, info, plan, work_dir / "segments")
            outcomes = await self._map(plan, clips, client, has_audio=info.has_audio)
            return await self._reduce(outcomes, run, extras, client)
        except (AnalysisError, Stopped) as exc:
            # What was found without the model (the proctor's signals) is still the report.
            if isinstance(exc, Stopped):
                log.warning("stopped after preparation")
            else:
                log.exception("analysis failed after preparation")
            return Outcome("failed", str(exc), self.kind.fallback_report(run=run, extras=extras))

    def _plan(self, run: RunContext) -> SegmentPlan:
        settings, info = run.settings, run.info
        idle = (
            media.detect_idle(run.video, info, min_seconds=settings.idle_min_seconds)
            if self.kind.skip_idle
            else []
        )
        keyframes = media.keyframe_times(run.video)
        # A kind that flags stretches locally (`review_windows`) gets a triaged plan.
        review = getattr(self.kind, "review_windows", None)
        flagged = review(run) if review is not None and settings.triage else None
        if flagged is not None:
            plan = triage_plan(
                duration_s=info.duration_s,
                keyframes=keyframes,
                target_seconds=settings.segment_seconds,
                flagged=flagged,
            )
            log.info(
                "triage: %.0f s flagged (shown as set), %.0f s quiet (sampled)",
                sum(s.duration_s for s in plan.segments if s.triage == "flagged"),
                sum(s.duration_s for s in plan.segments if s.triage == "sampled"),
            )
            return plan
        plan = plan_segments(
            duration_s=info.duration_s,
            keyframes=keyframes,
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
        self,
        plan: SegmentPlan,
        clips: Mapping[int, Clip],
        client: GeminiClient,
        *,
        has_audio: bool = True,
    ) -> list[SegmentOutcome]:
        settings = self.settings
        # What a second of this recording costs the MAP model (no sound: ~32 tokens less).
        tokens_per_second = settings.map_tokens_per_second(has_audio=has_audio)
        config = MapConfig(
            model=settings.map_model,
            # A shared (fleet) budget admits as many calls as its window holds, and queues
            # the fleet in order; a per-container share keeps MAP_CONCURRENCY.
            concurrency=client.budget.in_flight_bound(
                settings.map_model,
                round(settings.segment_seconds * tokens_per_second),
                settings.map_concurrency,
            ),
            tokens_per_second=tokens_per_second,
            media_resolution=settings.media_resolution,
            has_audio=has_audio,
            input_identity=self.input_identity or "",
            context=settings.analysis_context,
            rerun_id=settings.rerun_id or "",
        )
        runner = MapRunner(
            client=client,
            spec=self.kind,
            config=config,
            checkpoints=StorageCheckpoints(self.storage, settings.output_uri),
            clips=clips,
            progress=log_segment_progress,
            stop=self.stop,
        )
        with self.phase("map", blocking=False):
            return await runner.run(plan)

    async def _reduce(
        self,
        outcomes: list[SegmentOutcome],
        run: RunContext,
        extras: dict[str, Any],
        client: GeminiClient,
    ) -> Outcome:
        coverage = coverage_of(outcomes, run.info.duration_s)
        if coverage["times"]["times_outside_segment"]:
            log.warning("MAP answers gave %d time(s) outside their segment (clamped to it)",
                        coverage["times"]["times_outside_segment"])  # fmt: skip
        status, error = map_status(outcomes)
        if status == "failed":
            return Outcome(
                status, error, self.kind.fallback_report(run=run, extras=extras), coverage
            )
        analysed = analysed_outputs(outcomes)
        reduced, reduce_error = None, None
        if analysed and self.stop.terminated:
            reduce_error = f"{STOPPED}: REDUCE not run"
        elif analysed:
            reduced, reduce_error = await self._reduce_call(analysed, coverage, run, extras, client)
        if reduce_error:
            # The MAP findings still make a report; say what is missing (a stop first: it is
            # the contract's reason).
            status = "partial"
            if reduce_error.startswith(STOPPED):
                error, coverage["cut_short_by"] = _joined(reduce_error, error), STOPPED
            else:
                error = _joined(error, reduce_error)
        report = self.kind.assemble_report(
            reduced=reduced, analysed=analysed, coverage=coverage, run=run, extras=extras
        )
        return Outcome(status, error, report, coverage)

    async def _reduce_call(
        self,
        analysed: Sequence[tuple[Segment, dict[str, Any]]],
        coverage: dict[str, Any],
        run: RunContext,
        extras: dict[str, Any],
        client: GeminiClient,
    ) -> tuple[Any, str | None]:
        def build(findings: Sequence[tuple[Segment, dict[str, Any]]], stage: ReduceStage) -> str:
            return self.kind.reduce_prompt(
                findings, coverage=coverage, run=run, extras=extras, stage=stage
            )

        with self.phase("reduce", blocking=False):
            finished, result = await self.stop.unless_terminated(
                reduce_findings(
                    client=client,
                    model=self.settings.reduce_model,
                    schema=self.kind.reduce_schema,
                    findings=analysed,
                    build_prompt=build,
                )
            )
        if not finished:
            return None, f"{STOPPED}: REDUCE cut off"
        coverage["reduce"] = result.coverage_note()
        error = result.error
        if result.compacted:
            spans = ", ".join(f"{c['start_s']:.0f}-{c['end_s']:.0f} s" for c in result.compacted)
            error = _joined(error, f"REDUCE input compacted to fit the prompt ({spans})")
        return result.reduced, error


def _joined(*parts: str | None) -> str | None:
    return "; ".join(p for p in parts if p) or None


def log_segment_progress(outcome: SegmentOutcome, done: int, total: int) -> None:
    seg = outcome.segment
    span = f"[{seg.start_s:.0f}-{seg.end_s:.0f} s]"
    if outcome.skip_reason is not None:
        log.info("segment %d done %d/%d %s not started (%s)",
                 seg.index, done, total, span, outcome.skip_reason)  # fmt: skip
    elif outcome.output is None:
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
    namespace = metrics.namespace_from_env(env)
    try:
        settings = Settings.from_env(env)
    except InvalidInputError as exc:
        return reject_at_startup(kind.name, env, storage, exc, started_at)
    metrics.emit_started(kind=kind.name, namespace=namespace)
    stop = RunStop(settings.run_deadline_seconds)
    run = _Run(
        kind, settings, storage, stop, metrics_namespace=namespace,
        budget_metrics_s=budget_metrics.interval_from_env(
            env, window_s=settings.gemini_budget_window_seconds
        ),
    )  # fmt: skip
    clock = time.monotonic()
    with stop.installed():
        try:
            settings.work_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=settings.work_dir, prefix=f"{kind.name}-") as work:
                outcome = _execute(run, Path(work))
        except OSError as exc:  # scratch space missing, read-only or full
            outcome = Outcome("failed", f"scratch space {settings.work_dir}: {exc}")
        except Stopped:  # SIGTERM while the scratch space was being cleaned up
            outcome = Outcome("failed", STOPPED)
        run.timings["total_s"] = time.monotonic() - clock
        return _publish(run, outcome, started_at)


def _execute(run: _Run, work_dir: Path) -> Outcome:
    async def go() -> Outcome:
        try:
            return await run.analyse(work_dir)
        finally:
            if run.client is not None:
                await run.client.aclose()  # deletes every uploaded file still held

    try:
        return asyncio.run(go())
    except Stopped:
        log.warning("stopped before preparation finished")
        return Outcome("failed", STOPPED)
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
        input_uri=settings.input_uri,
        input_identity=run.input_identity,
        prices=settings.gemini_prices,
        rerun_id=settings.rerun_id,
    )
    published = publish_result(
        run.storage, settings.output_uri, result, secret=settings.gemini_api_key
    )
    code = exit_code_for(outcome.status, result["error"]) if published.written else 1
    # Before the outcome sentence, which stays the last line.
    metrics.emit_analysis(
        scrubbed(result, settings.gemini_api_key), namespace=run.metrics_namespace
    )
    log.info("%s", outcome_sentence(result, published, code))
    return code


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
