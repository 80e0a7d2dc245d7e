"""REDUCE: consolidate the segments' findings into one report, whatever the recording's length.

A single REDUCE prompt is bounded (`MAX_REDUCE_PROMPT_CHARS`): cutting the findings' JSON at
that length would silently drop the end of a long recording. So the findings are packed into
groups of consecutive segments that each fit; each group is reduced to a report of its stretch,
and the group reports are reduced again (as many levels as needed) until one call covers the
whole recording. Only a single segment whose findings alone exceed the bound is ever shortened,
and then the result says which (`compacted`), so coverage and `error` can tell the reader.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

from analysis_engine.errors import ModelCallError
from analysis_engine.mapreduce import ModelClient, estimate_tokens
from analysis_engine.models import Segment
from analysis_engine.timecode import clock

log = logging.getLogger(__name__)
T = TypeVar("T", bound=BaseModel)

# ~100k text tokens: far inside every Gemini model's context, and a size the model still reads
# carefully. Group reports are much smaller than the segment answers they stand for.
MAX_REDUCE_PROMPT_CHARS = 400_000
GROUP_CONCURRENCY = 4
# Each level at least halves the number of findings: 40 levels is beyond any recording.
MAX_LEVELS = 40
# JSON punctuation around each finding in the prompt, plus its segment/start/end keys.
_ITEM_OVERHEAD = 96

Finding = tuple[Segment, dict[str, Any]]


@dataclass(frozen=True)
class ReduceStage:
    """Where one REDUCE call sits. `level` 0 means its findings are MAP answers; above that they
    are reports of groups of segments. `final` is the call over the whole recording."""

    final: bool = True
    level: int = 0
    part: int = 1
    parts: int = 1
    start_s: float = 0.0
    end_s: float = 0.0


PromptBuilder = Callable[[Sequence[Finding], ReduceStage], str]


@dataclass
class ReduceOutcome:
    reduced: BaseModel | None
    error: str | None = None
    calls: int = 0
    levels: int = 1
    # Stretches whose findings had to be shortened to fit a prompt ({start_s, end_s, level}).
    compacted: list[dict[str, Any]] = field(default_factory=list)

    def coverage_note(self) -> dict[str, Any]:
        return {"calls": self.calls, "levels": self.levels, "compacted": self.compacted}


def stage_intro(stage: ReduceStage, what: str) -> str:
    """What one REDUCE call over part of a long recording, or over part reports, is for."""
    if not stage.final:
        return (
            f"This is part {stage.part} of {stage.parts} of a long {what}, covering "
            f"{clock(stage.start_s)}-{clock(stage.end_s)}; its report is merged with the other "
            "parts' reports later, so keep every notable fact with its absolute time."
        )
    if stage.level > 0:
        return (
            "The findings below are consolidated reports of consecutive parts of the "
            f"{what} (each names its start_s-end_s), not per-segment findings: merge them."
        )
    return ""


async def run_reduce(
    *,
    client: ModelClient,
    model: str,
    prompt: str,
    schema: type[T],
) -> tuple[T | None, str | None]:
    """One text-only REDUCE call. Returns (answer, None) or (None, reason) — never raises
    for a model failure, so the caller can still publish the MAP findings."""
    try:
        reply = await client.generate(
            model=model,
            prompt=prompt,
            schema=schema,
            estimated_input_tokens=estimate_tokens(0, prompt, 0),
            finishing=True,  # queued ahead of MAP calls: it ends an analysis (budget doc)
        )
    except ModelCallError as exc:
        return None, f"REDUCE failed: {exc}"
    return reply.parsed, None


async def reduce_findings(
    *,
    client: ModelClient,
    model: str,
    schema: type[BaseModel],
    findings: Sequence[Finding],
    build_prompt: PromptBuilder,
    max_prompt_chars: int = MAX_REDUCE_PROMPT_CHARS,
) -> ReduceOutcome:
    """Reduce `findings` (in time order) to one answer, hierarchically when they do not fit one
    prompt. Never raises for a model failure: the outcome carries the reason instead."""
    items = list(findings)
    outcome = ReduceOutcome(reduced=None, levels=0)
    level = 0
    while True:
        outcome.levels = level + 1
        whole = ReduceStage(final=True, level=level, start_s=_start(items), end_s=_end(items))
        budget = max_prompt_chars - len(build_prompt([], whole))
        if budget < 2 * _ITEM_OVERHEAD:
            return _failed(outcome, "REDUCE prompt leaves no room for findings")
        if level >= MAX_LEVELS:
            return _failed(outcome, f"REDUCE did not converge in {MAX_LEVELS} levels")
        items = _fitting(items, budget, level, outcome)
        groups = _pack(items, budget)
        if len(groups) == 1:
            reduced, error = await _call(client, model, schema, build_prompt(items, whole), outcome)
            outcome.reduced, outcome.error = reduced, error
            return outcome
        if len(groups) == len(items):  # nothing pairs up: shorten so that pairs fit
            items = _fitting(items, budget // 2, level, outcome)
            groups = _pack(items, budget)
        log.info("REDUCE level %d: %d findings in %d groups", level, len(items), len(groups))
        reports = await _reduce_groups(client, model, schema, groups, level, build_prompt, outcome)
        if isinstance(reports, str):
            return _failed(outcome, reports)
        items = reports
        level += 1


async def _reduce_groups(
    client: ModelClient,
    model: str,
    schema: type[BaseModel],
    groups: list[list[Finding]],
    level: int,
    build_prompt: PromptBuilder,
    outcome: ReduceOutcome,
) -> list[Finding] | str:
    gate = asyncio.Semaphore(GROUP_CONCURRENCY)

    async def one(part: int, group: list[Finding]) -> tuple[BaseModel | None, str | None]:
        stage = ReduceStage(final=False, level=level, part=part, parts=len(groups),
                            start_s=_start(group), end_s=_end(group))  # fmt: skip
        async with gate:
            return await _call(client, model, schema, build_prompt(group, stage), outcome)

    answers = await asyncio.gather(*(one(i + 1, g) for i, g in enumerate(groups)))
    reports: list[Finding] = []
    for part, (group, (reduced, error)) in enumerate(zip(groups, answers, strict=True)):
        if reduced is None:
            return f"{error} (group {part + 1} of {len(groups)}, level {level})"
        span = Segment(part, _start(group), _end(group))
        reports.append((span, reduced.model_dump()))
    return reports


async def _call(
    client: ModelClient, model: str, schema: type[BaseModel], prompt: str, outcome: ReduceOutcome
) -> tuple[BaseModel | None, str | None]:
    outcome.calls += 1
    return await run_reduce(client=client, model=model, prompt=prompt, schema=schema)


def _failed(outcome: ReduceOutcome, error: str) -> ReduceOutcome:
    outcome.reduced, outcome.error = None, error
    return outcome


def finding_size(item: Finding) -> int:
    return len(json.dumps(item[1], default=str)) + _ITEM_OVERHEAD


def _pack(items: list[Finding], budget: int) -> list[list[Finding]]:
    """Consecutive findings, greedily, each group within `budget` characters."""
    groups: list[list[Finding]] = [[]]
    used = 0
    for item in items:
        size = finding_size(item)
        if groups[-1] and used + size > budget:
            groups.append([])
            used = 0
        groups[-1].append(item)
        used += size
    return groups


def _fitting(items: list[Finding], limit: int, level: int, outcome: ReduceOutcome) -> list[Finding]:
    out = []
    for segment, data in items:
        if finding_size((segment, data)) > limit:
            data = compact(data, limit - _ITEM_OVERHEAD)
            outcome.compacted.append(
                {"start_s": segment.start_s, "end_s": segment.end_s, "level": level}
            )
        out.append((segment, data))
    return out


def compact(data: dict[str, Any], limit: int) -> dict[str, Any]:
    """Shorten one finding to at most `limit` characters of JSON: drop the last entries of its
    longest lists first (the summary stays), then shorten its longest strings."""
    data = json.loads(json.dumps(data, default=str))
    data["compacted"] = True
    while len(json.dumps(data)) > limit:
        lists = [(len(json.dumps(v)), k) for k, v in data.items() if isinstance(v, list) and v]
        if lists:
            data[max(lists)[1]].pop()
            continue
        texts = [(len(v), k) for k, v in data.items() if isinstance(v, str) and len(v) > 16]
        if not texts:
            break
        length, key = max(texts)
        data[key] = data[key][: max(16, length // 2)] + "…"
    return data


def _start(items: Sequence[Finding]) -> float:
    return min((s.start_s for s, _ in items), default=0.0)


def _end(items: Sequence[Finding]) -> float:
    return max((s.end_s for s, _ in items), default=0.0)
