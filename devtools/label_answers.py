"""The fake Gemini's answers from a labelled case (`FakeGemini(answers="labels", labels=...)`).

The fake cannot see; with a case's labels it answers as a model that sees exactly what was
labelled, but only in the time ranges it was shown: a MAP call reports the labelled
model-type events that overlap the clip its prompt names (clipped to it, in the time
convention the prompt asks for), and REDUCE reports the labelled events that overlap any
clip shown so far. So a change that stops showing the model part of a recording (triage,
segmentation, a deadline) loses exactly the events in that part, and the eval's model
recall measures the plumbing (parsing, time conversion, merging, scoring) end to end.
It is not a measurement of a model: the eval says so wherever its numbers appear.

`labels` is `evals.cases.fake_labels(case)`: {"events": [{type, start_s, end_s}],
"integrity": level | null, "rubric": {criterion: [low, high]}, "duration_s": ...}.
Standard library only, like the fake.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from devtools.story import answer_kind, clip_window

LABEL_NOTE = "[Answer from the case's labels via the local fake Gemini, not a real model]"
CONFIDENCE = 0.9
_ABSOLUTE = re.compile(r"this clip starts at ([\d.]+) s and ends at ([\d.]+) s")


def window(prompt: str) -> tuple[float, float, bool] | None:
    """(start, end, absolute) of the clip a MAP prompt describes, on the test clock;
    `absolute` when the prompt asks for times on the whole recording's clock."""
    exact = _ABSOLUTE.search(prompt)
    if exact:
        return float(exact.group(1)), float(exact.group(2)), True
    rough = clip_window(prompt)
    return None if rough is None else (float(rough[0]), float(rough[1]), False)


def _overlapping(
    events: Sequence[Mapping[str, Any]], start: float, end: float
) -> list[Mapping[str, Any]]:
    return [e for e in events if float(e["start_s"]) < end and float(e["end_s"]) > start]


def answer(
    labels: Mapping[str, Any],
    schema: Mapping[str, Any] | None,
    prompt: str,
    shown: list[tuple[float, float]],
) -> dict[str, Any] | None:
    """The answer to one structured call, or None (the fake then synthesises one). MAP
    calls append the clip they were shown to `shown` (the caller keeps it per run)."""
    kind = answer_kind(dict(schema or {}))
    events = list(labels.get("events") or [])
    if kind == "proctor_map":
        clip = window(prompt)
        if clip is None:
            return None
        start, end, absolute = clip
        shown.append((start, end))
        return _proctor_map(events, start, end, absolute)
    if kind == "proctor_reduce":
        return _proctor_reduce(labels, events, shown)
    if kind == "task_reduce":
        return _task_reduce(labels)
    return None


def _proctor_map(
    events: Sequence[Mapping[str, Any]], start: float, end: float, absolute: bool
) -> dict[str, Any]:
    origin = 0.0 if absolute else start
    seen = _overlapping(events, start, end)
    observations = [
        {
            "type": e["type"],
            "start_s": round(max(float(e["start_s"]), start) - origin, 2),
            "end_s": round(min(float(e["end_s"]), end) - origin, 2),
            "confidence": CONFIDENCE,
            "description": f"{LABEL_NOTE} labelled {e['type']}",
        }
        for e in seen
    ]
    absent = sum(
        min(float(e["end_s"]), end) - max(float(e["start_s"]), start)
        for e in seen
        if e["type"] == "face_absent"
    )
    people = 2 if any(e["type"] == "multiple_faces" for e in seen) else 1
    return {
        "summary": f"{LABEL_NOTE} {len(observations)} labelled event(s) in this clip.",
        "candidate_visible_fraction": round(max(0.0, 1 - absent / max(end - start, 1.0)), 2),
        "max_people_visible": people,
        "observations": observations,
    }


def _proctor_reduce(
    labels: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]],
    shown: Sequence[tuple[float, float]],
) -> dict[str, Any]:
    timeline = []
    for e in events:
        parts = [(max(float(e["start_s"]), a), min(float(e["end_s"]), b)) for a, b in shown]
        parts = [(a, b) for a, b in parts if b > a]
        if parts:
            timeline.append(
                {
                    "type": e["type"],
                    "start_s": round(min(a for a, _ in parts), 2),
                    "end_s": round(max(b for _, b in parts), 2),
                    "confidence": CONFIDENCE,
                    "description": f"{LABEL_NOTE} labelled {e['type']}",
                }
            )
    # The labelled level only when every labelled event was shown; otherwise the fake
    # knows no more than the rules do, and says low (the rules' floor still applies).
    level = labels.get("integrity") or "low"
    if len(timeline) < len(events):
        level = "low"
    return {
        "summary": f"{LABEL_NOTE} {len(timeline)} labelled event(s) in the clips shown.",
        "timeline": sorted(timeline, key=lambda t: t["start_s"]),
        "integrity_level": level,
        "integrity_reasons": [f"{LABEL_NOTE} labelled level {level}"],
    }


def _task_reduce(labels: Mapping[str, Any]) -> dict[str, Any]:
    rubric = labels.get("rubric") or {}
    return {
        "summary": f"{LABEL_NOTE} rubric scores at the middle of the labelled ranges.",
        "timeline": [],
        "rubric_scores": [
            {
                "criterion": name,
                "score": round((float(low) + float(high)) / 2),
                "rationale": f"{LABEL_NOTE} labelled range {low}-{high}",
                "evidence_s": [],
            }
            for name, (low, high) in rubric.items()
        ],
        "integrity_flags": [],
        "strengths": [],
        "concerns": [],
    }
