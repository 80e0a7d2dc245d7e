"""Pure proctoring logic: detector intervals → events, merging, integrity scoring, reports.

No I/O here (no ffmpeg, boto3 or HTTP): everything takes and returns plain data, so the
rules that decide a candidate's integrity level are unit-tested directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from analysis_engine import intervals as iv
from analysis_engine.models import Interval

if TYPE_CHECKING:  # plain data here; the detector module brings numpy with it
    from proctor_video.faces import FaceFindings

EventType = Literal[
    "face_absent",
    "multiple_faces",
    "different_person",
    "looking_away",
    "phone_or_device",
    "other_voice",
    "audio_activity",
    "camera_covered",
    "camera_frozen",
    "recording_gap",
    "other",
]
EVENT_TYPES: tuple[str, ...] = EventType.__args__  # type: ignore[attr-defined]
Source = Literal["signal", "model"]
RiskLevel = Literal["low", "medium", "high"]
RISK_ORDER: dict[str, int] = {"low": 0, "medium": 1, "high": 2}


@dataclass(frozen=True)
class Event:
    """One proctoring event on the test clock (seconds from the start of the test)."""

    type: EventType
    start_s: float
    end_s: float
    confidence: float
    source: Source
    description: str = ""
    evidence: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def duration_s(self) -> float:
        return max(0.0, self.end_s - self.start_s)

    @property
    def midpoint_s(self) -> float:
        return (self.start_s + self.end_s) / 2

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "start_s": round(self.start_s, 2),
            "end_s": round(self.end_s, 2),
            "confidence": round(self.confidence, 2),
            "source": self.source,
            "description": self.description,
            "evidence": self.evidence,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: Source | None = None) -> Event:
        kind = data.get("type")
        start = float(data.get("start_s", 0.0))
        end = max(start, float(data.get("end_s", start)))
        return cls(
            type=kind if kind in EVENT_TYPES else "other",  # type: ignore[arg-type]
            start_s=start,
            end_s=end,
            confidence=clamp01(float(data.get("confidence", 0.5))),
            source=source or data.get("source", "model"),
            description=str(data.get("description", "")),
            evidence=dict(data.get("evidence") or {}),
        )


def clamp01(value: float) -> float:
    return min(1.0, max(0.0, value))


# --------------------------------------------------------------------------- signals → events


@dataclass(frozen=True)
class SignalConfig:
    """Thresholds for turning detector output into events (seconds)."""

    min_black_s: float = 2.0
    min_freeze_s: float = 5.0
    min_speech_s: float = 4.0
    speech_merge_gap_s: float = 2.0


# Picture detectors' output this close to a recording gap is the repeated last frame.
GAP_MARGIN_S = 0.5

# Interval arithmetic lives in one module; these names stay importable from here.
shift = iv.shift
merge_intervals = iv.merge
complement = iv.complement
overlap_s = iv.overlap_s


def signal_events(
    *,
    black: Sequence[Interval] = (),
    frozen: Sequence[Interval] = (),
    speech: Sequence[Interval] = (),
    gaps: Sequence[tuple[Interval, dict[str, Any]]] = (),
    faces: FaceFindings | None = None,
    config: SignalConfig | None = None,
) -> list[Event]:
    """Deterministic events from detector intervals (already on the test clock).

    Inside a recording gap there is no picture and no sound, but a decoder at a fixed frame
    rate repeats the last frame across the hole: the picture detectors' output is clipped to
    the recorded time (the gap itself is the event there). The face detector's stretches
    become face events outside gaps and outside a black picture (covered is covered).
    """
    config = config or SignalConfig()
    events: list[Event] = []
    holes = iv.pad([item for item, _ in gaps], GAP_MARGIN_S, float("-inf"), float("inf"))
    black = iv.subtract(merge_intervals(black, gap_s=0.5), holes)
    frozen = iv.subtract(merge_intervals(frozen, gap_s=0.5), holes)
    speech = iv.subtract(speech, holes)
    for item in black:
        if item.duration_s >= config.min_black_s:
            events.append(
                _signal(
                    "camera_covered",
                    item,
                    0.9,
                    "blackdetect",
                    "The camera image is black (covered or switched off).",
                )
            )
    for item in frozen:
        # A black picture is also a still one: report it once, as covered.
        if (
            item.duration_s >= config.min_freeze_s
            and overlap_s(item, black) < 0.8 * item.duration_s
        ):
            events.append(
                _signal(
                    "camera_frozen",
                    item,
                    0.8,
                    "freezedetect",
                    "The camera image does not change (frozen feed or a photo).",
                )
            )
    for item in merge_intervals(speech, gap_s=config.speech_merge_gap_s):
        if item.duration_s >= config.min_speech_s:
            events.append(
                _signal(
                    "audio_activity",
                    item,
                    0.5,
                    "loudness",
                    "Sustained speech-like sound; whose voice it is needs the model.",
                )
            )
    if faces is not None:
        events += _face_events(faces, iv.merge([*holes, *black]))
    for item, details in gaps:
        events.append(
            _signal(
                "recording_gap",
                item,
                1.0,
                "stitcher",
                f"No recording for {item.duration_s:.1f} s ({details.get('reason', 'lost')}).",
                details,
            )
        )
    return sorted(events, key=lambda e: (e.start_s, e.type))


# The face detector's events, and how sure they are: only what won on the held-out set
# (bench/RESULTS.md, "Proctor detectors"). Its second faces (precision 0.01 there: a
# photograph's emblem or fold is a face to the cascade) and faces far aside (recall 0) stay
# in `signals.faces` for a reviewer and are left to the model, which sees every second.
FACE_EVENTS: tuple[tuple[str, EventType, float, str], ...] = (
    ("covered", "camera_covered", 0.8, "The picture went dark and featureless (covered)."),
    ("absent", "face_absent", 0.7, "No face and the person's place looks empty."),
)


def _face_events(faces: FaceFindings, masked: Sequence[Interval]) -> list[Event]:
    events: list[Event] = []
    for field_name, kind, confidence, description in FACE_EVENTS:
        for item in iv.subtract(getattr(faces, field_name), masked):
            if item.duration_s >= 1.0:
                events.append(_signal(kind, item, confidence, "faces", description))
    return events


def _signal(
    kind: EventType,
    item: Interval,
    confidence: float,
    detector: str,
    description: str,
    details: dict[str, Any] | None = None,
) -> Event:
    evidence: dict[str, Any] = {"detector": detector, "duration_s": round(item.duration_s, 2)}
    if details:
        evidence["details"] = details
    return Event(
        kind,
        round(item.start_s, 2),
        round(item.end_s, 2),
        confidence,
        "signal",
        description,
        evidence,
    )


# --------------------------------------------------------------------------- merging


def merge_events(events: Iterable[Event], *, gap_s: float = 2.0) -> list[Event]:
    """One event per type and stretch of time: overlapping or near-adjacent events of the same
    type merge (segment boundaries split model events; signals and the model repeat each other).
    A merged event keeps the highest confidence, and is a little more certain when both a
    detector and the model saw it; its `source` is the strongest contributor's."""
    by_type: dict[str, list[Event]] = {}
    for event in events:
        by_type.setdefault(event.type, []).append(event)
    merged: list[Event] = []
    for group in by_type.values():
        group.sort(key=lambda e: (e.start_s, e.end_s))
        current = [group[0]]
        for event in group[1:]:
            if event.start_s - max(e.end_s for e in current) <= gap_s:
                current.append(event)
            else:
                merged.append(_combine(current))
                current = [event]
        merged.append(_combine(current))
    return sorted(merged, key=lambda e: (e.start_s, e.type))


def _combine(events: list[Event]) -> Event:
    if len(events) == 1:
        return events[0]
    best = max(events, key=lambda e: (e.confidence, e.source == "signal"))
    sources = sorted({e.source for e in events})
    confidence = best.confidence
    if len(sources) == 2:  # independent corroboration
        confidence = clamp01(1 - (1 - best.confidence) * 0.5)
    descriptions = list(dict.fromkeys(e.description for e in events if e.description))
    evidence = dict(best.evidence)
    evidence["sources"] = sources
    evidence["merged_from"] = len(events)
    thumbs = [e.evidence.get("thumbnail") for e in events if e.evidence.get("thumbnail")]
    if thumbs and "thumbnail" not in evidence:
        evidence["thumbnail"] = thumbs[0]
    return replace(
        best,
        start_s=min(e.start_s for e in events),
        end_s=max(e.end_s for e in events),
        confidence=round(confidence, 3),
        description=" ".join(descriptions[:3]),
        evidence=evidence,
    )


# --------------------------------------------------------------------------- integrity


@dataclass(frozen=True)
class Integrity:
    level: RiskLevel
    reasons: tuple[str, ...]
    # Facts a reviewer should know that do not count as misconduct (lost recording time).
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "reasons": list(self.reasons), "notes": list(self.notes)}


def _total(
    events: Iterable[Event], kind: str, *, min_conf: float = 0.0, source: str | None = None
) -> float:
    return sum(
        e.duration_s
        for e in events
        if e.type == kind and e.confidence >= min_conf and (source is None or e.source == source)
    )


def _count(events: Iterable[Event], kind: str, *, min_conf: float = 0.0) -> int:
    return sum(1 for e in events if e.type == kind and e.confidence >= min_conf)


# Rates that scale with the test's length: a count rule fires at the larger of a floor and
# one occurrence per this many seconds of test, so a 3-hour test is not judged like a 30-minute
# one.
LOOK_AWAY_EVERY_S = 360.0
PHONE_SURE = 0.85  # one sighting this certain is enough for high; a less certain one is medium


def score_integrity(
    events: Sequence[Event], duration_s: float, *, model_reviewed: bool = False
) -> Integrity:
    """Deterministic risk level from the merged events (the floor under the model's opinion).

    High: another person or a different person, a phone (seen twice, for 10 s, or once with
    near certainty), a confirmed other voice, or the camera missing for a large share of the
    test. Medium: shorter absences, frequent looking away (relative to the test's length), a
    frozen feed, one uncertain phone sighting. Low otherwise. Every rule that fires becomes a
    reason. Recording gaps (lost uploads) and sound of unknown origin (`audio_activity`) never
    raise the level: they are notes for the reviewer. `model_reviewed` is kept for callers;
    no rule depends on it any more.
    """
    del model_reviewed
    duration_s = max(duration_s, 1.0)
    high: list[str] = []
    medium: list[str] = []
    notes: list[str] = []

    def share(seconds: float) -> str:
        return f"{seconds:.0f} s ({100 * seconds / duration_s:.0f}% of the test)"

    faces = _count(events, "multiple_faces", min_conf=0.6)
    if faces:
        seconds = _total(events, "multiple_faces", min_conf=0.6)
        high.append(f"another person visible {faces} time(s), {share(seconds)}")
    impostor = _count(events, "different_person", min_conf=0.6)
    if impostor:
        seconds = _total(events, "different_person", min_conf=0.6)
        high.append(f"a different person in the candidate's place {impostor} time(s), "
                    f"{share(seconds)}")  # fmt: skip
    elif _count(events, "different_person", min_conf=0.3):
        medium.append("possibly a different person in the candidate's place (uncertain)")
    phones = _count(events, "phone_or_device", min_conf=0.6)
    phone_s = _total(events, "phone_or_device", min_conf=0.6)
    if phones >= 2 or phone_s >= 10 or _count(events, "phone_or_device", min_conf=PHONE_SURE):
        high.append(f"phone or other device seen {phones} time(s), {share(phone_s)}")
    elif phones:
        medium.append(f"phone or other device possibly seen once ({phone_s:.0f} s)")
    voice_model = _total(events, "other_voice", min_conf=0.6, source="model")
    if voice_model >= 10:
        high.append(f"another voice heard for {share(voice_model)}")
    elif voice_model > 0:
        medium.append(f"another voice heard briefly ({voice_model:.0f} s)")
    _share_rule(
        events,
        "camera_covered",
        duration_s,
        (0.10, 60),
        (0.02, 15),
        "camera covered or black",
        high,
        medium,
        share,
    )
    _share_rule(
        events,
        "face_absent",
        duration_s,
        (0.15, 120),
        (0.03, 30),
        "candidate's face absent",
        high,
        medium,
        share,
        min_conf=0.5,
    )
    frozen = _total(events, "camera_frozen")
    if frozen >= max(30.0, 0.02 * duration_s):
        medium.append(f"camera frozen for {share(frozen)}")
    away = _total(events, "looking_away", min_conf=0.5)
    away_n = _count(events, "looking_away", min_conf=0.5)
    if away >= max(60.0, 0.05 * duration_s) or away_n >= max(5, duration_s / LOOK_AWAY_EVERY_S):
        medium.append(f"looking away {away_n} time(s), {share(away)}")
    other = _count(events, "other", min_conf=0.7)
    if other:
        medium.append(f"{other} other suspicious event(s)")
    gaps = _total(events, "recording_gap")
    if gaps >= max(30.0, 0.05 * duration_s):
        notes.append(f"recording missing for {share(gaps)} (lost uploads; not counted)")
    sound = _total(events, "audio_activity")
    if sound >= 60:
        notes.append(f"speech-like sound for {share(sound)} (speaker unknown; not counted)")
    if high:
        return Integrity("high", tuple(high + medium), tuple(notes))
    if medium:
        return Integrity("medium", tuple(medium), tuple(notes))
    return Integrity("low", ("no integrity concerns detected",), tuple(notes))


def _share_rule(
    events: Sequence[Event],
    kind: str,
    duration_s: float,
    high_at: tuple[float, float],
    medium_at: tuple[float, float],
    label: str,
    high: list[str],
    medium: list[str],
    share: Any,
    *,
    min_conf: float = 0.0,
) -> None:
    """A high/medium rule on total seconds: fires at a share of the test OR an absolute floor."""
    seconds = _total(events, kind, min_conf=min_conf)
    if seconds <= 0:
        return
    if seconds >= high_at[1] or seconds / duration_s >= high_at[0]:
        high.append(f"{label} for {share(seconds)}")
    elif seconds >= medium_at[1] or seconds / duration_s >= medium_at[0]:
        medium.append(f"{label} for {share(seconds)}")


def combine_levels(
    rules: Integrity, model_level: str | None, model_reasons: Sequence[str]
) -> Integrity:
    """The model may raise the level (it sees what detectors cannot) but never lowers it
    below what the deterministic evidence says."""
    level: RiskLevel = rules.level
    if model_level in RISK_ORDER and RISK_ORDER[model_level] > RISK_ORDER[level]:
        level = model_level  # type: ignore[assignment]
    reasons = [*(rules.reasons if rules.level != "low" else ()), *model_reasons]
    unique = tuple(dict.fromkeys(r.strip() for r in reasons if r and r.strip()))
    return Integrity(level, unique or ("no integrity concerns detected",), rules.notes)


# --------------------------------------------------------------------------- clip ↔ test clock


def summary_from_events(events: Sequence[Event], integrity: Integrity, duration_s: float) -> str:
    """A short plain summary when the model could not write one."""
    if not events:
        return f"{duration_s / 60:.0f}-minute recording; no proctoring events detected."
    counts: dict[str, int] = {}
    for event in events:
        counts[event.type] = counts.get(event.type, 0) + 1
    listed = ", ".join(f"{n} × {kind.replace('_', ' ')}" for kind, n in sorted(counts.items()))
    return (
        f"{duration_s / 60:.0f}-minute recording; {len(events)} event(s): {listed}. "
        f"Integrity risk {integrity.level}."
    )
