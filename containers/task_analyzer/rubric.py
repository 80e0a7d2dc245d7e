"""The rubric (pure): its criteria and scales, what the prompt asks for, what the report keeps.

Two shapes reach the container in `ANALYSIS_CONTEXT.rubric`:

- **structured** (what the DAGs send): a list of criteria, each `{"name", "description"?,
  "scale"?: {"min", "max"}}`. Each criterion is scored on its own scale (default
  `ANALYSIS_CONTEXT.rubric_scale`, else 1-5); the report lists exactly these criteria, in this
  order, under their own names: one the model left out is there with `score: null`
  (`not_scored`), one the model made up is kept but marked `in_rubric: false`.
- **free text** (or a list of strings): the scale is stated explicitly
  (`ANALYSIS_CONTEXT.rubric_scale`: `[min, max]` or `{"min": .., "max": ..}`) or in the text's
  own words ("score each criterion from 0 to 10", "out of 10"); otherwise it is 1-5.

Scores outside their scale are clamped into it and the original is kept beside
(`score_out_of_scale`), never passed on silently.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_SCALE = (1, 5)
_RANGE = re.compile(
    r"(?i)\b(?:score[sd]?|scale|rate[sd]?|rating|grade[sd]?|points?|marks?)\b[^\d\n]{0,40}?"
    r"(\d{1,3})\s*(?:-|–|—|to)\s*(\d{1,3})\b"
)
_OUT_OF = re.compile(r"(?i)\bout of\s+(\d{1,3})\b")


def rubric_scale(context: Mapping[str, Any]) -> tuple[int, int]:
    explicit = _explicit(context.get("rubric_scale"))
    if explicit is not None:
        return explicit
    rubric = context.get("rubric")
    text = rubric if isinstance(rubric, str) else json.dumps(rubric or "")
    if match := _RANGE.search(text):
        low, high = int(match.group(1)), int(match.group(2))
        if low < high:
            return low, high
    if match := _OUT_OF.search(text):
        return 0, int(match.group(1))
    return DEFAULT_SCALE


def _explicit(value: Any) -> tuple[int, int] | None:
    if isinstance(value, Mapping):
        value = [value.get("min"), value.get("max")]
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        and value[0] < value[1]
    ):
        return int(value[0]), int(value[1])
    return None


def bounded_scores(scores: list[dict[str, Any]], scale: tuple[int, int]) -> list[dict[str, Any]]:
    low, high = scale
    for item in scores:
        score = item["score"]
        if not low <= score <= high:
            item["score_out_of_scale"] = score
            item["score"] = min(max(score, low), high)
    return scores


@dataclass(frozen=True)
class Criterion:
    name: str
    description: str
    scale: tuple[int, int]

    def scale_dict(self) -> dict[str, int]:
        return {"min": self.scale[0], "max": self.scale[1]}


def structured_criteria(context: Mapping[str, Any]) -> list[Criterion] | None:
    """The rubric's criteria when it is structured (a list of {"name", ...}), else None."""
    rubric = context.get("rubric")
    if not (isinstance(rubric, list) and rubric):
        return None
    if not all(isinstance(c, Mapping) and isinstance(c.get("name"), str) for c in rubric):
        return None
    default = _explicit(context.get("rubric_scale")) or DEFAULT_SCALE
    return [
        Criterion(
            name=" ".join(c["name"].split()),
            description=str(c.get("description") or ""),
            scale=_explicit(c.get("scale")) or default,
        )
        for c in rubric
    ]


def _key(name: Any) -> str:
    return " ".join(str(name).split()).casefold()


def score_criteria(
    scores: Sequence[dict[str, Any]], criteria: Sequence[Criterion]
) -> list[dict[str, Any]]:
    """The model's scores as the rubric asked for them: one per criterion, in its order and
    under its name, on its own scale; left out -> null, made up -> `in_rubric: false`."""
    given: dict[str, dict[str, Any]] = {}
    extra: list[dict[str, Any]] = []
    for item in scores:
        key = _key(item.get("criterion", ""))
        if key in given:  # a second score for the same criterion: kept, flagged below
            extra.append(item)
        else:
            given[key] = item
    out = []
    for criterion in criteria:
        item = given.pop(_key(criterion.name), None)
        if item is None:
            out.append({
                "criterion": criterion.name, "score": None, "not_scored": True,
                "rationale": "The model gave no score for this criterion.", "evidence_s": [],
                "scale": criterion.scale_dict(),
            })  # fmt: skip
            continue
        scored = bounded_scores([{**item, "criterion": criterion.name}], criterion.scale)[0]
        out.append({**scored, "scale": criterion.scale_dict()})
    for item in [*given.values(), *extra]:
        out.append({**item, "in_rubric": False})
    return out


def common_scale(criteria: Sequence[Criterion]) -> tuple[int, int] | None:
    """The scale every criterion shares, if they share one."""
    scales = {c.scale for c in criteria}
    return next(iter(scales)) if len(scales) == 1 else None
