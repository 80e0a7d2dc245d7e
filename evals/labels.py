"""The labelled-set format (version 2; version 1 files still load): recordings, or generator
recipes, with ground truth.

A set is one JSON file:

    {"format": "analysis-evals/labelled-set", "version": 2, "name": "heldout",
     "split": "heldout",                         # dev | heldout | custom (reported apart)
     "cases": [
       {"id": "webcam-covered",                  # unique, [A-Za-z0-9_.-]
        "kind": "proctor_video",                 # or "task_analysis" (a screen recording)
        "source": {"generator": "webcam", ...}   # a recipe (evals/generate.py) ...
                  | {"uri": "file:///rec/chunks/"},  # ... or a real recording / chunk prefix
                  | {"uri": "s3://bucket/rec/42/"},  # (s3:// is fetched once into the cache)
        "ci": true,                              # in the fast signal-only subset CI runs
        "slices": {"codec": "vp8", "length": "short", "lighting": "steady",
                   "sound": "speech"},           # per-slice tables (derived when absent)
        "tags": ["near-threshold:black"],        # free-form, for filtering
        "truth": {
          "events": [{"type": "camera_covered", "start_s": 10, "end_s": 20},
                     {"type": "multiple_faces", "start_s": 30, "end_s": 42}],
          "integrity": "low",                    # expected level (null: not labelled)
          "stitch": {"runs": 1, "duration_s": 30, "gaps": [[12, 15]], "duplicates": 0},
          "sound": [{"kind": "fan", "start_s": 0, "end_s": 10}],   # what is audible
          "idle": [[30, 70]], "active": [[0, 30]],                  # screen recordings
          "activities": [{"kind": "typing", "start_s": 0, "end_s": 30}],
          "rubric": {"tests": [0, 2]}            # expected score ranges (model metrics)
        }}]}

Times are seconds from the start of the test (proctor) or recording (screen). Event types
are the product's (`proctor_video.events.EventType`): the detector types (`camera_covered`,
`camera_frozen`, `recording_gap`, `audio_activity`) and the model types only a model (or a
face detector) can see (`face_absent`, `multiple_faces`, `different_person`,
`looking_away`, `phone_or_device`, `other_voice`, `other`). Label an event when it lasts at
least as long as the product's own minimum (covered 2 s, frozen 5 s, speech 4 s); anything
shorter is background and is not an event. `integrity` is the level a careful human
reviewer gives the whole test.

Users add their own real, consented recordings as `source.uri` cases with hand-made truth;
every field is checked on load and a bad one is a `LabelError` naming the case, the field
and the reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis_engine.models import Interval
from proctor_video.events import EVENT_TYPES

FORMAT = "analysis-evals/labelled-set"
VERSION = 2
READABLE_VERSIONS = (1, 2)
KINDS = ("proctor_video", "task_analysis")
LEVELS = ("low", "medium", "high")
SPLITS = ("dev", "heldout", "custom")
# The per-slice table's dimensions (a case may label any of them; absent ones are derived).
SLICE_KEYS = ("codec", "length", "lighting", "sound", "picture", "recorder")
URI_SCHEMES = ("file://", "s3://")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class LabelError(ValueError):
    """A labelled set that cannot be used: names the field and the reason."""


# A labelled time range is the product's own interval type: one definition of a range.
Span = Interval


@dataclass(frozen=True)
class TruthEvent:
    type: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Truth:
    events: tuple[TruthEvent, ...] = ()
    integrity: str | None = None
    stitch: Mapping[str, Any] | None = None
    sound: tuple[tuple[str, Span], ...] = ()
    idle: tuple[Span, ...] = ()
    active: tuple[Span, ...] = ()
    activities: tuple[tuple[str, Span], ...] = ()
    rubric: Mapping[str, tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    id: str
    kind: str
    source: Mapping[str, Any]
    truth: Truth
    ci: bool = False
    slices: Mapping[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabelledSet:
    name: str
    cases: tuple[Case, ...]
    path: Path | None = None
    split: str = "custom"


def load(path: Path) -> LabelledSet:
    """Read and validate a labelled set (raises LabelError)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise LabelError(f"{path}: cannot read the set ({exc})") from exc
    return parse(data, path=Path(path))


def parse(data: Any, *, path: Path | None = None) -> LabelledSet:
    where = str(path or "set")
    if not isinstance(data, dict):
        raise LabelError(f"{where}: must be a JSON object")
    if data.get("format") != FORMAT:
        raise LabelError(f"{where}: format must be {FORMAT!r}, got {data.get('format')!r}")
    if data.get("version") not in READABLE_VERSIONS:
        raise LabelError(
            f"{where}: version {data.get('version')!r} is not supported {READABLE_VERSIONS}"
        )
    split = data.get("split", "custom")
    if split not in SPLITS:
        raise LabelError(f"{where}.split: must be one of {SPLITS}, got {split!r}")
    raw_cases = data.get("cases")
    if not isinstance(raw_cases, list) or not raw_cases:
        raise LabelError(f"{where}: cases must be a non-empty list")
    cases = [_case(c, f"{where}: cases[{i}]") for i, c in enumerate(raw_cases)]
    seen: set[str] = set()
    for case in cases:
        if case.id in seen:
            raise LabelError(f"{where}: case id {case.id!r} is used twice")
        seen.add(case.id)
    return LabelledSet(str(data.get("name") or Path(where).stem), tuple(cases), path, split)


def _case(raw: Any, where: str) -> Case:
    if not isinstance(raw, dict):
        raise LabelError(f"{where}: must be an object")
    case_id = raw.get("id")
    if not isinstance(case_id, str) or not _ID.match(case_id):
        raise LabelError(f"{where}.id: must match {_ID.pattern}, got {case_id!r}")
    where = f"{where} ({case_id})"
    kind = raw.get("kind")
    if kind not in KINDS:
        raise LabelError(f"{where}.kind: must be one of {KINDS}, got {kind!r}")
    source = raw.get("source")
    if not isinstance(source, dict) or not ("generator" in source or "uri" in source):
        raise LabelError(f"{where}.source: must be a generator recipe or {{'uri': ...}}")
    uri = source.get("uri")
    if uri is not None and not (isinstance(uri, str) and uri.startswith(URI_SCHEMES)):
        raise LabelError(f"{where}.source.uri: must start with one of {URI_SCHEMES}, got {uri!r}")
    truth = raw.get("truth") or {}
    if not isinstance(truth, dict):
        raise LabelError(f"{where}.truth: must be an object")
    slices = raw.get("slices") or {}
    if not isinstance(slices, dict) or not all(
        k in SLICE_KEYS and isinstance(v, str) for k, v in slices.items()
    ):
        raise LabelError(f"{where}.slices: must map some of {SLICE_KEYS} to strings")
    tags = raw.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise LabelError(f"{where}.tags: must be a list of strings")
    return Case(
        case_id,
        kind,
        source,
        _truth(truth, f"{where}.truth"),
        bool(raw.get("ci")),
        dict(slices),
        tuple(tags),
    )


def _truth(raw: Mapping[str, Any], where: str) -> Truth:
    events = tuple(
        _event(e, f"{where}.events[{i}]") for i, e in enumerate(_list(raw, "events", where))
    )
    level = raw.get("integrity")
    if level is not None and level not in LEVELS:
        raise LabelError(f"{where}.integrity: must be one of {LEVELS} or null, got {level!r}")
    stitch = raw.get("stitch")
    if stitch is not None and not isinstance(stitch, dict):
        raise LabelError(f"{where}.stitch: must be an object")
    rubric: dict[str, tuple[float, float]] = {}
    for name, bounds in (raw.get("rubric") or {}).items():
        if not (isinstance(bounds, list) and len(bounds) == 2):
            raise LabelError(f"{where}.rubric.{name}: must be [low, high]")
        rubric[str(name)] = (float(bounds[0]), float(bounds[1]))
    return Truth(
        events=events,
        integrity=level,
        stitch=stitch,
        sound=_kinded(raw, "sound", where),
        idle=_spans(raw, "idle", where),
        active=_spans(raw, "active", where),
        activities=_kinded(raw, "activities", where),
        rubric=rubric,
    )


def _event(raw: Any, where: str) -> TruthEvent:
    kind = str(_field(raw, "type", str, where))
    if kind not in EVENT_TYPES:
        raise LabelError(f"{where}.type: must be one of {EVENT_TYPES}, got {kind!r}")
    return TruthEvent(kind, *_span(raw, where))


def _list(raw: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = raw.get(key) or []
    if not isinstance(value, list):
        raise LabelError(f"{where}.{key}: must be a list")
    return value


def _field(raw: Any, key: str, kind: type, where: str) -> Any:
    if not isinstance(raw, dict) or not isinstance(raw.get(key), kind):
        raise LabelError(f"{where}.{key}: missing or not a {kind.__name__}")
    return raw[key]


def _span(raw: Any, where: str) -> tuple[float, float]:
    if isinstance(raw, list | tuple) and len(raw) == 2:
        start, end = raw
    elif isinstance(raw, dict):
        start, end = raw.get("start_s"), raw.get("end_s")
    else:
        raise LabelError(f"{where}: must be [start_s, end_s] or have start_s/end_s")
    if not all(isinstance(v, int | float) for v in (start, end)) or end < start or start < 0:
        raise LabelError(f"{where}: needs 0 <= start_s <= end_s (numbers), got {start!r}..{end!r}")
    return float(start), float(end)


def _spans(raw: Mapping[str, Any], key: str, where: str) -> tuple[Span, ...]:
    return tuple(
        Span(*_span(s, f"{where}.{key}[{i}]")) for i, s in enumerate(_list(raw, key, where))
    )


def _kinded(raw: Mapping[str, Any], key: str, where: str) -> tuple[tuple[str, Span], ...]:
    out = []
    for i, item in enumerate(_list(raw, key, where)):
        here = f"{where}.{key}[{i}]"
        out.append((str(_field(item, "kind", str, here)), Span(*_span(item, here))))
    return tuple(out)


def spans(items: Sequence[Span]) -> list[list[float]]:
    return [[s.start_s, s.end_s] for s in items]
