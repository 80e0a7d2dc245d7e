"""Detection-quality metrics (pure): event precision/recall with a time tolerance, timestamp
error, idle recall and active seconds wrongly skipped, integrity confusion, stitch checks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, get_args

from evals.labels import LEVELS, Span, TruthEvent
from proctor_video.events import EventType

# Events only the detectors produce (±2 s) and events only the model can see (±5 s).
SIGNAL_TYPES = ("camera_covered", "camera_frozen", "recording_gap", "audio_activity")
MODEL_TYPES = tuple(t for t in get_args(EventType) if t not in SIGNAL_TYPES)
SIGNAL_TOLERANCE_S = 2.0
MODEL_TOLERANCE_S = 5.0


@dataclass
class Counts:
    """Matches of one event type, summed over cases."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    errors: list[float] = field(default_factory=list)  # |Δstart| and |Δend| of matches

    def add(self, other: Counts) -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.errors += other.errors

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def timestamp_error_s(self) -> float | None:
        return sum(self.errors) / len(self.errors) if self.errors else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": _round(self.precision),
            "recall": _round(self.recall),
            "timestamp_error_s": _round(self.timestamp_error_s),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def match_events(
    predicted: Sequence[Mapping[str, Any]],
    truth: Sequence[TruthEvent],
    *,
    types: Iterable[str],
    tolerance_s: float,
) -> dict[str, Counts]:
    """Per type: a prediction matches a true event of its type when both ends are within
    `tolerance_s`; each true event matches at most one prediction (closest first)."""
    out: dict[str, Counts] = {}
    for kind in types:
        pred = [(float(p["start_s"]), float(p["end_s"])) for p in predicted if p["type"] == kind]
        true = [(t.start_s, t.end_s) for t in truth if t.type == kind]
        pairs = sorted(
            (max(abs(p[0] - t[0]), abs(p[1] - t[1])), i, j)
            for i, p in enumerate(pred)
            for j, t in enumerate(true)
        )
        used_p: set[int] = set()
        used_t: set[int] = set()
        counts = Counts()
        for error, i, j in pairs:
            if error > tolerance_s or i in used_p or j in used_t:
                continue
            used_p.add(i)
            used_t.add(j)
            counts.tp += 1
            counts.errors += [abs(pred[i][0] - true[j][0]), abs(pred[i][1] - true[j][1])]
        counts.fp = len(pred) - len(used_p)
        counts.fn = len(true) - len(used_t)
        out[kind] = counts
    return out


def overlap_s(
    a: Iterable[Span | tuple[float, float]], b: Iterable[Span | tuple[float, float]]
) -> float:
    """Seconds covered by both lists (each list's own overlaps merged first)."""
    left, right = _merged(a), _merged(b)
    total, i, j = 0.0, 0, 0
    while i < len(left) and j < len(right):
        lo, hi = max(left[i][0], right[j][0]), min(left[i][1], right[j][1])
        total += max(0.0, hi - lo)
        if left[i][1] < right[j][1]:
            i += 1
        else:
            j += 1
    return total


def _merged(items: Iterable[Span | tuple[float, float]]) -> list[tuple[float, float]]:
    pairs = sorted((s.start_s, s.end_s) if isinstance(s, Span) else (s[0], s[1]) for s in items)
    out: list[tuple[float, float]] = []
    for a, b in pairs:
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def total_s(items: Iterable[Span | tuple[float, float]]) -> float:
    return sum(b - a for a, b in _merged(items))


@dataclass
class IdleScore:
    idle_truth_s: float = 0.0
    idle_found_s: float = 0.0  # truly idle seconds skipped
    active_truth_s: float = 0.0
    active_skipped_s: float = 0.0  # active seconds wrongly skipped

    def add(self, other: IdleScore) -> None:
        self.idle_truth_s += other.idle_truth_s
        self.idle_found_s += other.idle_found_s
        self.active_truth_s += other.active_truth_s
        self.active_skipped_s += other.active_skipped_s

    @property
    def recall(self) -> float | None:
        return self.idle_found_s / self.idle_truth_s if self.idle_truth_s else None

    @property
    def active_skipped_fraction(self) -> float | None:
        return self.active_skipped_s / self.active_truth_s if self.active_truth_s else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "idle_truth_s": round(self.idle_truth_s, 2),
            "idle_skipped_s": round(self.idle_found_s, 2),
            "idle_recall": _round(self.recall),
            "active_truth_s": round(self.active_truth_s, 2),
            "active_skipped_s": round(self.active_skipped_s, 2),
            "active_skipped_fraction": _round(self.active_skipped_fraction),
        }


def score_idle(
    predicted: Sequence[tuple[float, float]], idle: Sequence[Span], active: Sequence[Span]
) -> IdleScore:
    return IdleScore(
        idle_truth_s=total_s(idle),
        idle_found_s=overlap_s(predicted, idle),
        active_truth_s=total_s(active),
        active_skipped_s=overlap_s(predicted, active),
    )


def confusion(pairs: Iterable[tuple[str, str]]) -> dict[str, dict[str, int]]:
    """{true level: {predicted level: count}}."""
    matrix = {t: dict.fromkeys(LEVELS, 0) for t in LEVELS}
    for true, predicted in pairs:
        matrix[true][predicted] += 1
    return matrix


def check_stitch(
    expected: Mapping[str, Any], report: Mapping[str, Any], *, tolerance_s: float = 1.0
) -> list[str]:
    """What differs between a stitch report and the expected one ([] when right)."""
    if "error" in report:
        return [f"failed: {report['error']}"]
    problems = []
    if "runs" in expected and len(report.get("runs", [])) != expected["runs"]:
        problems.append(f"runs {len(report.get('runs', []))} != {expected['runs']}")
    if (
        "duration_s" in expected
        and abs(report["duration_s"] - expected["duration_s"]) > tolerance_s
    ):
        problems.append(f"duration {report['duration_s']:.1f} != {expected['duration_s']}")
    if "duplicates" in expected and len(report.get("duplicates", [])) != expected["duplicates"]:
        problems.append(
            f"duplicates {len(report.get('duplicates', []))} != {expected['duplicates']}"
        )
    for key in ("mode", "container"):
        if key in expected and report.get(key) != expected[key]:
            problems.append(f"{key} {report.get(key)!r} != {expected[key]!r}")
    if "gaps" in expected:
        got = sorted((g["start_s"], g["end_s"]) for g in report.get("gaps", []))
        want = sorted((float(a), float(b)) for a, b in expected["gaps"])
        close = len(got) == len(want) and all(
            abs(g[0] - w[0]) <= tolerance_s and abs(g[1] - w[1]) <= tolerance_s
            for g, w in zip(got, want, strict=True)
        )
        if not close:
            problems.append(f"gaps {[(round(a, 1), round(b, 1)) for a, b in got]} != {want}")
    return problems
