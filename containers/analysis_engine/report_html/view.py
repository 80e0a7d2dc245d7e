"""result.json → the plain values the templates draw (pure, no I/O).

Everything in a result may come from the model or the recording (summaries, descriptions,
tool names, even numbers), so nothing here trusts a type: numbers are coerced or dropped,
CSS class names come from closed sets, links to sibling outputs must look like the names
the containers write. Text stays text; the template engine escapes it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# Sibling outputs the page may link to (written by the proctor kind next to report.html).
_VIDEO_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}\.(webm|mp4)$")
_THUMBNAIL_NAME = re.compile(r"^evidence/[A-Za-z0-9._-]{1,120}\.jpg$")
_TOKEN = re.compile(r"[^a-z0-9_]")

STATUSES = {"complete", "partial", "failed", "invalid_input"}
SEVERITIES = {"low", "medium", "high"}


def num(value: Any) -> float | None:
    """A finite float, or None (model output may carry strings, NaN or nothing)."""
    if isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def clock(seconds: Any) -> str:
    """M:SS, or H:MM:SS past an hour; '?' when the value is not a number."""
    value = num(seconds)
    if value is None:
        return "?"
    whole = max(0, round(value))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def token(value: Any, allowed: Iterable[str] | None = None, default: str = "other") -> str:
    """A CSS-safe identifier: one of `allowed` when given, else lower-case [a-z0-9_]."""
    text = str(value or "").strip().lower()
    if allowed is not None:
        return text if text in set(allowed) else default
    return _TOKEN.sub("_", text)[:40] or default


def text(value: Any, limit: int = 4000) -> str:
    out = "" if value is None else str(value)
    return out if len(out) <= limit else out[: limit - 1] + "…"


def _dicts(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _strings(value: Any) -> list[str]:
    return [text(v) for v in value if v is not None] if isinstance(value, list) else []


def _times(value: Any) -> list[float]:
    items = value if isinstance(value, list) else []
    return sorted({t for t in (num(v) for v in items) if t is not None and t >= 0})


class Scale:
    """Maps seconds on a clock onto percentages of the timeline's width."""

    def __init__(self, start_s: float, end_s: float) -> None:
        self.start_s = start_s
        self.end_s = max(end_s, start_s + 1.0)

    def pct(self, seconds: float) -> float:
        share = (seconds - self.start_s) / (self.end_s - self.start_s)
        return round(min(max(share, 0.0), 1.0) * 100, 3)

    def span(self, start_s: float, end_s: float) -> dict[str, float]:
        left = self.pct(start_s)
        return {"left": left, "width": round(max(self.pct(end_s) - left, 0.4), 3)}

    def ticks(self, count: int = 6) -> list[dict[str, Any]]:
        step = (self.end_s - self.start_s) / (count - 1)
        return [
            {"pct": self.pct(self.start_s + i * step), "label": clock(self.start_s + i * step)}
            for i in range(count)
        ]


def _range(item: Mapping[str, Any], scale: Scale, **extra: Any) -> dict[str, Any] | None:
    start, end = num(item.get("start_s")), num(item.get("end_s"))
    if start is None:
        return None
    end = start if end is None or end < start else end
    return {
        "start_s": start,
        "end_s": end,
        "label": f"{clock(start)}–{clock(end)}",
        **scale.span(start, end),
        **extra,
    }


def _ranges(items: Any, scale: Scale, *, reason: bool = False) -> list[dict[str, Any]]:
    out = []
    for item in _dicts(items):
        row = _range(item, scale, reason=text(item.get("reason")) if reason else "")
        if row is not None:
            out.append(row)
    return out


def common(result: Mapping[str, Any]) -> dict[str, Any]:
    """Header, status, coverage and cost: the parts both kinds show."""
    coverage = result.get("coverage") if isinstance(result.get("coverage"), Mapping) else {}
    return {
        "kind": token(result.get("kind"), {"task_analysis", "proctor_video"}, "unknown"),
        "analysis_id": text(result.get("analysis_id"), 200),
        "status": token(result.get("status"), STATUSES, "failed"),
        "error": text(result.get("error"), 600) if result.get("error") else "",
        "started_at": text(result.get("started_at"), 40),
        "finished_at": text(result.get("finished_at"), 40),
        "models": {text(k, 40): text(v, 80) for k, v in _mapping(result.get("models")).items()},
        "coverage": _coverage(coverage),
        "usage": usage(result.get("usage")),
    }


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _coverage(coverage: Mapping[str, Any]) -> dict[str, Any]:
    keys = (
        "segments_total",
        "segments_analysed",
        "segments_failed",
        "segments_skipped",
        "segments_from_checkpoint",
    )
    counts = {k: int(num(coverage.get(k)) or 0) for k in keys}
    seconds = {
        k: num(coverage.get(k)) or 0.0
        for k in ("duration_s", "seconds_analysed", "seconds_failed", "seconds_skipped")
    }
    not_analysed = [
        {
            "label": f"{clock(r.get('start_s'))}–{clock(r.get('end_s'))}",
            "t": num(r.get("start_s")),
            "why": why,
            "reason": "" if r.get("reason") in (None, "idle") else text(r.get("reason")),
        }
        for why, key in (
            ("the model call failed", "failed_ranges"),
            ("idle: a still, silent screen is not sent", "skipped_ranges"),
        )
        for r in _dicts(coverage.get(key))
    ]
    not_analysed.sort(key=lambda r: r["t"] or 0.0)
    return {
        "present": bool(coverage),
        **counts,
        **seconds,
        "clock": {k: clock(v) for k, v in seconds.items()},
        "not_analysed": not_analysed,
    }


def usage(raw: Any) -> dict[str, Any]:
    data = _mapping(raw)
    rows = []
    for name, model in _mapping(data.get("per_model")).items():
        m = _mapping(model)
        rows.append(
            {
                "model": text(name, 80),
                "calls": int(num(m.get("calls")) or 0),
                "attempts": int(num(m.get("attempts")) or 0),
                "input_tokens": int(num(m.get("input_tokens")) or 0),
                "output_tokens": int(num(m.get("output_tokens")) or 0),
                "usd": _usd(m.get("estimated_usd")),
            }
        )
    pricing = _mapping(data.get("pricing"))
    return {
        "rows": rows,
        "calls": int(num(data.get("calls")) or 0),
        "attempts": int(num(data.get("attempts")) or 0),
        "input_tokens": int(num(data.get("input_tokens")) or 0),
        "output_tokens": int(num(data.get("output_tokens")) or 0),
        "usd": _usd(data.get("estimated_usd")),
        "prices_as_of": text(pricing.get("as_of"), 40),
        "price_source": text(pricing.get("source"), 300),
    }


def _usd(value: Any) -> str:
    amount = num(value)
    if amount is None:
        return "n/a"
    return f"${amount:.4f}" if amount < 1 else f"${amount:,.2f}"


# ---------------------------------------------------------------------- task analysis
def task(result: Mapping[str, Any]) -> dict[str, Any]:
    report = _mapping(result.get("report"))
    coverage = _mapping(result.get("coverage"))
    events = _dicts(report.get("notable_events"))
    times = [num(coverage.get("duration_s")) or 0.0]
    times += [num(e.get("at_s")) or 0.0 for e in events]
    times += [num(e.get("end_s")) or 0.0 for e in _dicts(report.get("timeline"))]
    scale = Scale(0.0, max(times))
    event_rows = []
    for i, event in enumerate(sorted(events, key=lambda e: num(e.get("at_s")) or 0.0)):
        at = num(event.get("at_s")) or 0.0
        event_rows.append(
            {
                "id": f"ev-{i}",
                "t": at,
                "clock": clock(at),
                "pct": scale.pct(at),
                "kind": token(event.get("kind")),
                "kind_label": text(event.get("kind"), 60),
                "description": text(event.get("description")),
                "evidence": text(event.get("evidence")),
            }
        )
    return {
        "present": bool(report),
        "source": text(report.get("source"), 40),
        "summary": text(report.get("summary"), 8000),
        "duration": clock(scale.end_s),
        "duration_s": scale.end_s,
        "ticks": scale.ticks(),
        "activity": [
            row
            for e in _dicts(report.get("timeline"))
            if (row := _range(e, scale, description=text(e.get("description")))) is not None
        ],
        "idle": _ranges(report.get("idle_ranges"), scale),
        "not_analysed": _ranges(report.get("not_analysed_ranges"), scale, reason=True),
        "events": event_rows,
        "rubric": [
            {
                "criterion": text(r.get("criterion"), 400),
                "score": _score(r.get("score"), _scale(r.get("scale"), report.get("rubric_scale"))),
                "in_rubric": r.get("in_rubric") is not False,
                "rationale": text(r.get("rationale")),
                "evidence": [{"t": t, "clock": clock(t)} for t in _times(r.get("evidence_s"))],
            }
            for r in _dicts(report.get("rubric_scores"))
        ],
        "flags": [
            {
                "type": text(f.get("type"), 60),
                "severity": token(f.get("severity"), SEVERITIES, "low"),
                "description": text(f.get("description")),
                "evidence": [{"t": t, "clock": clock(t)} for t in _times(f.get("evidence_s"))],
            }
            for f in _dicts(report.get("integrity_flags"))
        ],
        "tools": [
            {
                "name": text(t.get("name"), 120),
                "category": text(t.get("category"), 40),
                "evidence": text(t.get("evidence")),
                "first_seen": clock(t.get("first_seen_s")),
                "t": num(t.get("first_seen_s")),
            }
            for t in _dicts(report.get("tools_used"))
        ],
        "strengths": _strings(report.get("strengths")),
        "concerns": _strings(report.get("concerns")),
    }


def _scale(*candidates: Any) -> tuple[float, float]:
    """The first usable {"min", "max"} (a criterion's own, then the rubric's), else 1-5."""
    for candidate in candidates:
        scale = _mapping(candidate)
        low, high = num(scale.get("min")), num(scale.get("max"))
        if low is not None and high is not None and low < high:
            return low, high
    return 1.0, 5.0


def _score(value: Any, scale: tuple[float, float] = (1.0, 5.0)) -> dict[str, Any]:
    low, high = scale
    out_of = f"{high:g}" if low in (0, 1) else f"{high:g} (from {low:g})"
    score = num(value)
    if score is None:
        return {"value": "?", "level": "unknown", "pct": 0, "out_of": out_of}
    clamped = min(max(score, low), high)
    share = (clamped - low) / (high - low)
    level = "good" if share >= 0.75 else "fair" if share >= 0.5 else "poor"
    return {"value": f"{clamped:g}", "level": level, "pct": round(share * 100), "out_of": out_of}


# ---------------------------------------------------------------------- proctoring
def thumbnail_names(result: Mapping[str, Any]) -> list[str]:
    """The evidence thumbnails the proctoring report shows (sibling names only)."""
    names = []
    for event in _dicts(_mapping(result.get("report")).get("events")):
        name = text(_mapping(event.get("evidence")).get("thumbnail"), 200)
        if _THUMBNAIL_NAME.match(name) and name not in names:
            names.append(name)
    return names


def proctor(result: Mapping[str, Any], embedded: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`embedded`: sibling name -> data: URI for the thumbnails carried inside the page (so
    it works opened through one presigned link); others stay relative links."""
    embedded = embedded or {}
    report = _mapping(result.get("report"))
    recording = _mapping(report.get("recording"))
    events = sorted(_dicts(report.get("events")), key=lambda e: num(e.get("start_s")) or 0.0)
    video_start = num(recording.get("video_start_s")) or 0.0
    ends = [num(recording.get("duration_s")) or 0.0]
    ends += [num(e.get("end_s")) or 0.0 for e in events]
    scale = Scale(0.0, max(ends))
    rows, gaps = [], []
    for i, event in enumerate(events):
        row = _range(event, scale)
        if row is None:
            continue
        evidence = _mapping(event.get("evidence"))
        thumb = text(evidence.get("thumbnail"), 200)
        kind = token(event.get("type"))
        row.update(
            id=f"ev-{i}",
            t=row["start_s"],
            type=kind,
            type_label=text(event.get("type"), 60),
            source=token(event.get("source"), {"signal", "model"}, "model"),
            confidence=_confidence(event.get("confidence")),
            description=text(event.get("description")),
            thumbnail=(embedded.get(thumb) or thumb) if _THUMBNAIL_NAME.match(thumb) else "",
            thumbnail_t=num(evidence.get("thumbnail_at_s")) or row["start_s"],
        )
        (gaps if kind == "recording_gap" else rows).append(row)
    lanes: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        lanes.setdefault(row["type"], []).append(row)
    integrity = _mapping(report.get("integrity"))
    video = text(recording.get("video"), 80)
    return {
        "present": bool(report),
        "source": text(report.get("source"), 40),
        "summary": text(report.get("summary"), 8000),
        "level": token(integrity.get("level"), SEVERITIES, "unknown"),
        "rules_level": token(integrity.get("rules_level"), SEVERITIES, ""),
        "reasons": _strings(integrity.get("reasons")),
        "duration": clock(scale.end_s),
        "duration_s": scale.end_s,
        "ticks": scale.ticks(),
        "video": video if _VIDEO_NAME.match(video) else "",
        "video_start_s": video_start,
        "recorded": _recorded(video_start, scale, gaps),
        "gaps": gaps,
        "lanes": [{"type": kind, "events": lane} for kind, lane in sorted(lanes.items())],
        "events": sorted([*rows, *gaps], key=lambda r: (r["start_s"], r["id"])),
        "not_analysed": _ranges(report.get("not_analysed_ranges"), scale, reason=True),
        "recording": {
            "chunks_total": int(num(recording.get("chunks_total")) or 0),
            "chunks_used": int(num(recording.get("chunks_used")) or 0),
            "missing": len(recording.get("missing_chunks") or []),
            "gap_seconds": num(recording.get("gap_seconds")) or 0.0,
        },
    }


def _confidence(value: Any) -> str:
    conf = num(value)
    return "?" if conf is None else f"{min(max(conf, 0.0), 1.0):.2f}"


def _recorded(
    video_start: float, scale: Scale, gaps: Sequence[Mapping[str, Any]]
) -> list[dict[str, float]]:
    """Stretches of the test clock with video: the recording minus its gaps."""
    pieces, cursor = [], max(video_start, scale.start_s)
    for gap in sorted(gaps, key=lambda g: g["start_s"]):
        if gap["start_s"] > cursor:
            pieces.append(scale.span(cursor, gap["start_s"]))
        cursor = max(cursor, gap["end_s"])
    if scale.end_s > cursor:
        pieces.append(scale.span(cursor, scale.end_s))
    return pieces
