"""The proctor-video kind: what the shared runner needs to analyse one webcam recording.

`prepare` runs before any model call and does everything that must survive a Gemini outage:
upload `video.webm`, run the deterministic detectors, turn them (and the stitcher's recording
gaps) into events, and upload their evidence thumbnails. MAP/REDUCE add the model's view;
`fallback_report` publishes the signal events alone when every segment failed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from analysis_engine import intervals as iv
from analysis_engine.errors import AnalysisError
from analysis_engine.models import Interval, Segment
from analysis_engine.reduce import ReduceStage
from analysis_engine.result import Kind
from analysis_engine.timecode import TIME_BASIS_KEY, shift_onto_clock
from proctor_video import prompts
from proctor_video.events import (
    Event,
    Integrity,
    SignalConfig,
    combine_levels,
    merge_events,
    score_integrity,
    signal_events,
    summary_from_events,
)
from proctor_video.schemas import ProctorSummary, SegmentObservations

if TYPE_CHECKING:  # the run context pulls in adapters; importing it here would be circular
    from analysis_engine.kinds import RunContext
    from proctor_video.signals import Signals

log = logging.getLogger(__name__)

MAX_THUMBNAILS = 60
# Events the report shows a picture for (a gap has no picture; a voice has nothing to show).
PICTURED = {
    "face_absent", "multiple_faces", "different_person", "looking_away", "phone_or_device",
    "camera_covered", "camera_frozen", "other",
}  # fmt: skip


class ProctorVideoKind:
    name: Kind = "proctor_video"
    prompt_version = prompts.PROMPT_VERSION
    map_schema = SegmentObservations
    reduce_schema = ProctorSummary
    skip_idle = False  # a still webcam is exactly what a proctor must look at

    def __init__(self, signal_config: SignalConfig | None = None) -> None:
        self.signal_config = signal_config or SignalConfig()
        self._context: dict[str, Any] = {}
        self._offset = 0.0  # test-clock time of the video file's first frame
        self._signal_events: list[Event] = []
        self._flags: list[tuple[str, Interval]] = []  # (why, when on the test clock)
        self._thumbs: dict[tuple[str, float], str] = {}

    # ------------------------------------------------------------------ before the model
    def prepare(self, run: RunContext) -> dict[str, Any]:
        from proctor_video.signals import detect_signals  # adapter: ffmpeg

        self._context = run.settings.analysis_context
        report = run.stitch_report
        self._offset = report.start_s if report is not None else 0.0
        video_uri = run.storage.upload_file(
            run.video, run.output_uri(video_name(run.video)), content_type=_mime(run.video)
        )
        log.info("uploaded %s (%.1f MB)", video_uri, run.video.stat().st_size / 1e6)
        end_s = self._offset + run.info.duration_s
        if report is not None:
            end_s = max(end_s, report.duration_s)
        signals = detect_signals(
            run.video,
            start_s=self._offset,
            end_s=end_s,
            has_audio=run.info.has_audio,
            picture=(run.info.width, run.info.height) if run.info.has_video else None,
        )
        gaps = (
            [(g.interval, {"reason": g.reason, "chunks": list(g.chunks)}) for g in report.gaps]
            if report is not None
            else []
        )
        events = signal_events(
            black=signals.black,
            frozen=signals.frozen,
            speech=signals.speech,
            gaps=gaps,
            faces=signals.faces,
            config=self.signal_config,
        )
        self._signal_events = [self._with_thumbnail(e, run) for e in events]
        self._flags = _flags(events, signals)
        log.info(
            "signals in %.1f s: %d black, %d frozen, %d speech stretches, %d recording gaps",
            signals.seconds_elapsed, len(signals.black), len(signals.frozen),
            len(signals.speech), len(gaps),
        )  # fmt: skip
        return {
            "video_uri": video_uri,
            "signals": signals.to_dict(),
            "recording": _recording(run, end_s),
            "flagged_because": sorted({why for why, _ in self._flags}),
        }

    def review_windows(self, run: RunContext) -> list[Interval]:
        """What the local detectors could not rule out, on the video file's clock: triage
        shows the model these stretches as set and samples the rest."""
        del run
        return [iv.shift([span], -self._offset)[0] for _, span in self._flags]

    def _with_thumbnail(self, event: Event, run: RunContext) -> Event:
        """Attach (and upload) a JPEG of the event's middle frame, once per moment."""
        if (
            event.type not in PICTURED
            or "thumbnail" in event.evidence
            or len(self._thumbs) >= MAX_THUMBNAILS
        ):
            return event
        from analysis_engine import media  # adapter: ffmpeg

        at = round(event.midpoint_s, 1)
        key = self._thumbs.get((event.type, at))
        if key is None:
            name = f"evidence/{len(self._thumbs):03d}-{event.type}-{at:07.1f}s.jpg"
            try:
                local = media.thumbnail(run.video, at - self._offset, run.work_dir / name)
                uri = run.storage.upload_file(
                    local, run.output_uri(name), content_type="image/jpeg", retention="thumbnail"
                )
            except AnalysisError as exc:  # evidence is best effort; the event stands
                log.warning("no thumbnail for %s at %.1f s: %s", event.type, at, exc)
                return event
            key = self._thumbs[(event.type, at)] = name
            log.debug("thumbnail %s", uri)
        return replace(event, evidence={**event.evidence, "thumbnail": key, "thumbnail_at_s": at})

    # ------------------------------------------------------------------ MAP
    def map_prompt(
        self, segment: Segment, *, total: int, duration_s: float, absolute_times: bool = False
    ) -> str:
        start, end = segment.start_s + self._offset, segment.end_s + self._offset
        # Hints use the clock the model is asked for: the test's, or the clip's.
        origin = 0.0 if absolute_times else start
        hints = [
            {
                "type": e.type,
                "start_s": round(max(e.start_s, start) - origin, 1),
                "end_s": round(min(e.end_s, end) - origin, 1),
                "detector": e.evidence.get("detector"),
            }
            for e in self._signal_events
            if e.end_s > start and e.start_s < end
        ]
        return prompts.map_prompt(
            segment, total=total, duration_s=duration_s, offset_s=self._offset,
            hints=hints, context=self._context, absolute_times=absolute_times,
        )  # fmt: skip

    def to_absolute(
        self, output: BaseModel, segment: Segment, *, absolute_times: bool = False
    ) -> dict[str, Any]:
        """Times onto the test clock, in whichever convention the model answered: seconds into
        the clip, the test's clock, or the video file's own (a stitched file's first frame
        may lie later than the test's start)."""
        data = output.model_dump()
        test = ("test", segment.start_s + self._offset)
        others = [("clip", 0.0)] if absolute_times else [test]
        if self._offset:
            others.append(("file", segment.start_s))
        asked = test if absolute_times else ("clip", 0.0)
        data[TIME_BASIS_KEY] = shift_onto_clock(
            [(obs, key) for obs in data["observations"] for key in ("start_s", "end_s")],
            clip_start_s=segment.start_s,
            clip_end_s=segment.end_s,
            candidates=[asked, *others],
            offset_s=self._offset,
        )
        for obs in data["observations"]:
            obs["end_s"] = max(obs["end_s"], obs["start_s"])
            obs["confidence"] = round(min(1.0, max(0.0, float(obs["confidence"]))), 2)
        data["candidate_visible_fraction"] = round(
            min(1.0, max(0.0, float(data["candidate_visible_fraction"]))), 2
        )
        return data

    # ------------------------------------------------------------------ REDUCE
    def reduce_prompt(
        self,
        analysed: Sequence[tuple[Segment, dict[str, Any]]],
        *,
        coverage: dict[str, Any],
        run: RunContext,
        extras: dict[str, Any],
        stage: ReduceStage | None = None,
    ) -> str:
        return prompts.reduce_prompt(
            analysed,
            signal_events=[_brief(e) for e in self._signal_events],
            coverage=coverage,
            recording=extras.get("recording", {}),
            context=self._context,
            stage=stage or ReduceStage(),
        )

    def assemble_report(
        self,
        *,
        reduced: BaseModel | None,
        analysed: Sequence[tuple[Segment, dict[str, Any]]],
        coverage: dict[str, Any],
        run: RunContext,
        extras: dict[str, Any],
    ) -> dict[str, Any]:
        if isinstance(reduced, ProctorSummary):
            # REDUCE writes test-clock times itself; keep them inside the recording.
            end_s = self._offset + run.info.duration_s
            model_events = [
                _model_event(_clamped(e.model_dump(), self._offset, end_s), None)
                for e in reduced.timeline
            ]
            source = "reduce"
        else:
            model_events = [
                _model_event(obs, segment.index)
                for segment, output in analysed
                for obs in output["observations"]
            ]
            source = "map_only"
        events = merge_events([*self._signal_events, *model_events])
        events = [self._with_thumbnail(e, run) for e in events]
        duration = extras.get("recording", {}).get("duration_s", run.info.duration_s)
        rules = score_integrity(events, duration, model_reviewed=bool(analysed))
        integrity = (
            combine_levels(rules, reduced.integrity_level, reduced.integrity_reasons)
            if isinstance(reduced, ProctorSummary)
            else rules
        )
        summary = (
            reduced.summary
            if isinstance(reduced, ProctorSummary)
            else summary_from_events(events, integrity, duration)
        )
        return _report(source, events, integrity, summary, extras, coverage, rules)

    def fallback_report(self, *, run: RunContext, extras: dict[str, Any]) -> dict[str, Any] | None:
        """No segment could be analysed: publish what the detectors found."""
        events = merge_events(self._signal_events)
        duration = extras.get("recording", {}).get("duration_s", run.info.duration_s)
        rules = score_integrity(events, duration)
        summary = summary_from_events(events, rules, duration) + (
            " The model could not analyse the video: signal events only."
        )
        return _report("signals_only", events, rules, summary, extras, None, rules)


def _flags(events: Sequence[Event], signals: Signals) -> list[tuple[str, Interval]]:
    """Why and where the model must look closely: every signal event but a recording gap
    (nothing to see there), any voice (whose it is needs the model, even a short one), and
    the moments the scene changed (someone sat down, a phone came up, the light jumped), and
    any stretch before the face detector first found a face (it cannot vouch for it)."""
    flags = [(e.type, Interval(e.start_s, e.end_s)) for e in events if e.type != "recording_gap"]
    flags += [("voice", span) for span in signals.speech]
    if signals.faces is not None:
        flags += [("scene_change", span) for span in signals.faces.changed]
        flags += [("no_face_found_yet", span) for span in signals.faces.unseen]
    return flags


def _clamped(data: dict[str, Any], start_s: float, end_s: float) -> dict[str, Any]:
    for key in ("start_s", "end_s"):
        data[key] = round(min(max(float(data[key]), start_s), end_s), 2)
    data["end_s"] = max(data["end_s"], data["start_s"])
    return data


def _model_event(data: dict[str, Any], segment: int | None) -> Event:
    event = Event.from_dict(data, source="model")
    evidence: dict[str, Any] = {"model": "reduce" if segment is None else "map"}
    if segment is not None:
        evidence["segment"] = segment
    return replace(event, evidence=evidence)


def video_name(video: Path) -> str:
    """`video.webm`, or `video.mp4` when the stitcher stream-copied codecs WebM cannot hold
    (H.264) into MP4 or the recording arrived as an MP4."""
    return "video.mp4" if video.suffix.lower() == ".mp4" else "video.webm"


def _mime(video: Path) -> str:
    return "video/mp4" if video.suffix.lower() == ".mp4" else "video/webm"


def _brief(event: Event) -> dict[str, Any]:
    return {k: v for k, v in event.to_dict().items() if k != "evidence"}


def _recording(run: RunContext, end_s: float) -> dict[str, Any]:
    report = run.stitch_report
    data: dict[str, Any] = {
        "video": video_name(run.video),
        "duration_s": round(end_s, 2),
        "video_start_s": round(report.start_s if report else 0.0, 2),
    }
    if report is not None:
        data.update(
            chunks_total=report.chunks_total,
            chunks_used=report.chunks_used,
            duplicates=len(report.duplicates),
            bad_chunks=[{"name": p.name, "reason": p.reason} for p in report.bad_chunks],
            missing_chunks=list(report.missing_indices),
            runs=len(report.runs),
            runs_reencoded=sum(1 for r in report.runs if r.reencoded),
            gap_seconds=report.gap_seconds,
            stitch_mode=report.mode,
        )
    return data


def _report(
    source: str,
    events: Sequence[Event],
    integrity: Integrity,
    summary: str,
    extras: dict[str, Any],
    coverage: dict[str, Any] | None,
    rules: Integrity,
) -> dict[str, Any]:
    # Failed segments, and those a stop or the run deadline kept from starting.
    ranges = [
        *(coverage or {}).get("failed_ranges", []),
        *(coverage or {}).get("skipped_ranges", []),
    ]
    not_analysed = [
        {"start_s": r["start_s"], "end_s": r["end_s"], "reason": r["reason"]}
        for r in sorted(ranges, key=lambda r: r["start_s"])
    ]
    return {
        "source": source,
        "summary": summary,
        "integrity": {**integrity.to_dict(), "rules_level": rules.level},
        "events": [e.to_dict() for e in events],
        "event_counts": _counts(events),
        "recording": extras.get("recording", {}),
        "signals": extras.get("signals", {}),
        "not_analysed_ranges": not_analysed,
        # What the model was shown at full price and what sampled (see analysis_engine.triage).
        "triage": extras.get("triage") or {"enabled": False},
    }


def _counts(events: Sequence[Event]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in events:
        counts[event.type] = counts.get(event.type, 0) + 1
    return counts
