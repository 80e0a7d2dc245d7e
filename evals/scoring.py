"""Per-case contributions and the metrics built from them (pure).

Every metric is an aggregate over cases of small per-case counts, so the same numbers feed
the table, the targets, the per-slice table and the paired bootstrap (`stats.compare`).

Counting rules:
- each event is counted once: a recording gap is scored by the stitch check (where it is
  and how long), not again as a detector event; detector precision/recall covers
  `camera_covered`, `camera_frozen` and `audio_activity` (±2 s);
- a case that errors is a failure: it is counted in `case_errors` and every labelled event
  of it is a miss; it is never scored as a clean `low`;
- integrity is compared in both directions: `integrity_over` (predicted above the truth;
  `clean_at_high` the worst of it) and `integrity_under` (below; `high_at_low` the worst).
  Signal runs are compared with the level the rules give on the labelled detector events
  (what detectors alone can know); model runs with the case's labelled `integrity`;
- an empty denominator is `None`, and a target on `None` fails (nothing measured it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evals import catalog, metrics
from evals.cases import MODEL_TYPES, duration_s
from evals.labels import LEVELS, Case

DETECTOR_TYPES = ("camera_covered", "camera_frozen", "audio_activity")
RANK = {level: n for n, level in enumerate(LEVELS)}


# ------------------------------------------------------------------------ per case
def _match(
    predicted: Sequence[Mapping[str, Any]],
    case: Case,
    types: Sequence[str],
    tolerance: float,
    error: bool,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    truth = [e for e in case.truth.events if e.type in types]
    if error:
        for kind in types:
            fn = sum(1 for e in truth if e.type == kind)
            out[kind] = {"tp": 0, "fp": 0, "fn": fn, "err": []}
        return out
    for kind, counts in metrics.match_events(
        predicted, truth, types=types, tolerance_s=tolerance
    ).items():
        out[kind] = {"tp": counts.tp, "fp": counts.fp, "fn": counts.fn, "err": counts.errors}
    return out


def _levels(truth: str | None, predicted: str | None) -> dict[str, int]:
    if truth is None or predicted not in RANK:
        return {
            "integrity_n": 0,
            "integrity_over": 0,
            "integrity_under": 0,
            "clean_at_high": 0,
            "high_at_low": 0,
        }
    t, p = RANK[truth], RANK[str(predicted)]
    return {
        "integrity_n": 1,
        "integrity_over": int(p > t),
        "integrity_under": int(p < t),
        "clean_at_high": int(truth == "low" and predicted == "high"),
        "high_at_low": int(truth == "high" and predicted == "low"),
    }


def signal_contribution(case: Case, got: Mapping[str, Any]) -> dict[str, Any]:
    """What one case adds to the signal metrics."""
    error = bool(got.get("error"))
    out: dict[str, Any] = {
        "case": case.id,
        "kind": case.kind,
        "case_errors": int(error),
        "wall_s": float(got.get("wall_s") or 0.0),
    }
    if case.kind == "proctor_video":
        events = [e for e in got.get("events", []) if e.get("source", "signal") == "signal"]
        out["types"] = _match(events, case, DETECTOR_TYPES, metrics.SIGNAL_TOLERANCE_S, error)
        gaps = [(e.start_s, e.end_s) for e in case.truth.events if e.type == "recording_gap"]
        frozen = [(e["start_s"], e["end_s"]) for e in events if e["type"] == "camera_frozen"]
        out["camera_frozen_in_gap"] = sum(1 for f in frozen if metrics.overlap_s([f], gaps) > 0.5)
        noise = [span for kind, span in _sounds(case) if kind not in ("speech", "room")]
        speech = [(s.start_s - 2, s.end_s + 2) for kind, s in _sounds(case) if kind == "speech"]
        voiced = [
            (e["start_s"], e["end_s"])
            for e in events
            if e["type"] in ("other_voice", "audio_activity")
        ]
        out["sound_from_noise"] = sum(
            1
            for v in voiced
            if metrics.overlap_s([v], noise) - metrics.overlap_s([v], speech) > 1.0
        )
        expected = None
        if not error:
            detector_truth = [
                {"type": e.type, "start_s": e.start_s, "end_s": e.end_s}
                for e in case.truth.events
                if e.type in (*DETECTOR_TYPES, "recording_gap")
            ]
            length = duration_s(case) or float(got.get("duration_s") or 1.0)
            expected = catalog.integrity(detector_truth, length)
        out.update(_levels(expected, got.get("integrity")))
        if case.truth.stitch is not None:
            problems = (
                ["errored"]
                if error
                else metrics.check_stitch(case.truth.stitch, got.get("stitch", {}))
            )
            out["stitch_n"], out["stitch_failures"] = 1, int(bool(problems))
            out["stitch_problems"] = problems
    else:
        idle = metrics.score_idle(
            [] if error else [tuple(i) for i in got.get("idle", [])],  # type: ignore[misc]
            case.truth.idle,
            case.truth.active,
        )
        out["idle"] = idle.to_dict() | {"idle_found_s": idle.idle_found_s}
    return out


def _sounds(case: Case) -> list[tuple[str, Any]]:
    """Labelled sound (v1 `truth.sound`), or the recipe's layers for generated cases (a
    test-length recording's inserts included, on the test clock)."""
    if case.truth.sound:
        return [(kind, span) for kind, span in case.truth.sound]
    from evals.labels import Span

    total = duration_s(case) or 0.0
    if "generator" not in case.source:
        return []
    placed = [(0.0, total, layer) for layer in case.source.get("sound", [])]
    for insert in case.source.get("long", {}).get("inserts", []):
        at, length = float(insert["at_s"]), float(insert["duration_s"])
        placed += [(at, at + length, layer) for layer in insert.get("sound", [])]
    out = []
    for origin, end, layer in placed:
        a = origin + float(layer.get("start_s", 0.0))
        b = origin + float(layer["end_s"]) if "end_s" in layer else end
        out.append((str(layer["kind"]), Span(a, b)))
    return out


def model_contribution(case: Case, got: Mapping[str, Any]) -> dict[str, Any]:
    """What one case adds to the model metrics (a container run's summary)."""
    error = bool(got.get("error")) or got.get("status") not in ("complete", "partial")
    out: dict[str, Any] = {"case": case.id, "kind": case.kind, "model_errors": int(error)}
    events = [e for e in got.get("events", []) if e.get("source") == "model"]
    types = [t for t in MODEL_TYPES if t != "other"]
    out["types"] = _match(events, case, types, metrics.MODEL_TOLERANCE_S, error)
    levels = _levels(
        case.truth.integrity if case.kind == "proctor_video" else None,
        None if error else got.get("integrity"),
    )
    out.update({f"model_{k}": v for k, v in levels.items()})
    scores = {str(r.get("criterion")): r.get("score") for r in (got.get("rubric") or [])}
    inside = [
        1 if name in scores and scores[name] is not None and lo <= float(scores[name]) <= hi else 0
        for name, (lo, hi) in case.truth.rubric.items()
    ]
    out["rubric_n"], out["rubric_in_range"] = len(inside), sum(inside)
    out["input_tokens"] = int(got.get("input_tokens") or 0)
    minutes = (duration_s(case) or 0.0) / 60 if case.kind == "proctor_video" else 0.0
    out["webcam_minutes"] = minutes
    out["webcam_tokens"] = out["input_tokens"] if case.kind == "proctor_video" else 0
    out["estimated_usd"] = float(got.get("estimated_usd") or 0.0)
    return out


# ------------------------------------------------------------------------ aggregates
Contribs = Sequence[Mapping[str, Any]]


def _sum(rows: Contribs, key: str) -> float:
    return float(sum(r.get(key, 0) for r in rows))


def _counts(rows: Contribs, types: Sequence[str]) -> tuple[int, int, int, list[float]]:
    tp = fp = fn = 0
    errors: list[float] = []
    for r in rows:
        for kind in types:
            c = r.get("types", {}).get(kind)
            if c:
                tp, fp, fn = tp + c["tp"], fp + c["fp"], fn + c["fn"]
                errors += c["err"]
    return tp, fp, fn, errors


def precision(types: Sequence[str]) -> Callable[[Contribs], float | None]:
    def agg(rows: Contribs) -> float | None:
        tp, fp, _, _ = _counts(rows, types)
        return tp / (tp + fp) if tp + fp else None

    return agg


def recall(types: Sequence[str]) -> Callable[[Contribs], float | None]:
    def agg(rows: Contribs) -> float | None:
        tp, _, fn, _ = _counts(rows, types)
        return tp / (tp + fn) if tp + fn else None

    return agg


def timestamp_error(types: Sequence[str]) -> Callable[[Contribs], float | None]:
    def agg(rows: Contribs) -> float | None:
        errors = _counts(rows, types)[3]
        return sum(errors) / len(errors) if errors else None

    return agg


def total(key: str, *, needs: str | None = None) -> Callable[[Contribs], float | None]:
    """A count summed over cases; None when no case has `needs` (nothing measured it)."""

    def agg(rows: Contribs) -> float | None:
        if needs is not None and not _sum(rows, needs):
            return None
        return _sum(rows, key)

    return agg


def ratio(num: str, den: str) -> Callable[[Contribs], float | None]:
    def agg(rows: Contribs) -> float | None:
        d = _sum(rows, den)
        return _sum(rows, num) / d if d else None

    return agg


def idle_ratio(num: str, den: str) -> Callable[[Contribs], float | None]:
    def agg(rows: Contribs) -> float | None:
        d = sum(r["idle"][den] for r in rows if "idle" in r)
        return sum(r["idle"][num] for r in rows if "idle" in r) / d if d else None

    return agg


def idle_total(key: str) -> Callable[[Contribs], float | None]:
    def agg(rows: Contribs) -> float | None:
        idle = [r["idle"] for r in rows if "idle" in r]
        return float(sum(i[key] for i in idle)) if idle else None

    return agg


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    aggregate: Callable[[Contribs], float | None]
    higher_is_better: bool
    tolerance: float  # how much worse than the baseline the gate accepts
    target: float | None = None  # the absolute bar (>= if higher is better, else <=)
    kind: str | None = None  # the case kind the target needs in the set (None: any)
    gated: bool = True


SIGNAL_METRICS: tuple[Metric, ...] = (
    Metric("case_errors", "cases that errored", total("case_errors"), False, 0, 0),
    Metric(
        "signal_precision",
        "detector precision",
        precision(DETECTOR_TYPES),
        True,
        0.02,
        0.95,
        "proctor_video",
    ),
    Metric(
        "signal_recall",
        "detector recall",
        recall(DETECTOR_TYPES),
        True,
        0.02,
        0.95,
        "proctor_video",
    ),
    *(Metric(f"recall_{t}", f"{t} recall", recall([t]), True, 0.02) for t in DETECTOR_TYPES),
    *(
        Metric(f"precision_{t}", f"{t} precision", precision([t]), True, 0.02)
        for t in DETECTOR_TYPES
    ),
    Metric(
        "signal_timestamp_error_s",
        "timestamp error (s)",
        timestamp_error(DETECTOR_TYPES),
        False,
        0.5,
    ),
    Metric(
        "camera_frozen_in_gap",
        "camera_frozen inside a gap",
        total("camera_frozen_in_gap"),
        False,
        0,
        0,
        "proctor_video",
    ),
    Metric(
        "sound_from_noise",
        "sound events from noise/music",
        total("sound_from_noise"),
        False,
        0,
        0,
        "proctor_video",
    ),
    Metric(
        "clean_at_high",
        "integrity low → high",
        total("clean_at_high", needs="integrity_n"),
        False,
        0,
        0,
        "proctor_video",
    ),
    Metric(
        "high_at_low",
        "integrity high → low",
        total("high_at_low", needs="integrity_n"),
        False,
        0,
        0,
        "proctor_video",
    ),
    Metric(
        "integrity_over",
        "integrity above truth",
        total("integrity_over", needs="integrity_n"),
        False,
        0,
    ),
    Metric(
        "integrity_under",
        "integrity below truth",
        total("integrity_under", needs="integrity_n"),
        False,
        0,
    ),
    Metric(
        "stitch_failures",
        "stitch cases wrong",
        total("stitch_failures", needs="stitch_n"),
        False,
        0,
        0,
        "proctor_video",
    ),
    Metric(
        "idle_recall",
        "idle recall",
        idle_ratio("idle_found_s", "idle_truth_s"),
        True,
        0.02,
        0.90,
        "task_analysis",
    ),
    Metric(
        "active_skipped_s",
        "active seconds skipped",
        idle_total("active_skipped_s"),
        False,
        0,
        0,
        "task_analysis",
    ),
    Metric("wall_s", "detector wall time (s)", total("wall_s"), False, 0, gated=False),
)

_MODEL_TYPES = tuple(t for t in MODEL_TYPES if t != "other")
MODEL_METRICS: tuple[Metric, ...] = (
    Metric("model_errors", "model runs failed", total("model_errors"), False, 0, 0),
    Metric("model_precision", "model event precision", precision(_MODEL_TYPES), True, 0.02),
    Metric("model_recall", "model event recall", recall(_MODEL_TYPES), True, 0.02),
    *(Metric(f"model_recall_{t}", f"{t} recall", recall([t]), True, 0.02) for t in _MODEL_TYPES),
    Metric(
        "model_clean_at_high",
        "integrity low → high (model)",
        total("model_clean_at_high", needs="model_integrity_n"),
        False,
        0,
    ),
    Metric(
        "model_high_at_low",
        "integrity high → low (model)",
        total("model_high_at_low", needs="model_integrity_n"),
        False,
        0,
    ),
    Metric(
        "model_integrity_over",
        "integrity above truth (model)",
        total("model_integrity_over", needs="model_integrity_n"),
        False,
        0,
    ),
    Metric(
        "model_integrity_under",
        "integrity below truth (model)",
        total("model_integrity_under", needs="model_integrity_n"),
        False,
        0,
    ),
    Metric(
        "rubric_in_range",
        "rubric scores in the labelled range",
        ratio("rubric_in_range", "rubric_n"),
        True,
        0.05,
    ),
    Metric(
        "tokens_per_webcam_minute",
        "input tokens per webcam minute",
        ratio("webcam_tokens", "webcam_minutes"),
        False,
        0.10,
    ),  # tolerance: a share
    Metric("estimated_usd", "estimated $", total("estimated_usd"), False, 0, gated=False),
)
RELATIVE_TOLERANCE = {"tokens_per_webcam_minute"}
