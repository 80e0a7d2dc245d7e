"""The rubric's scoring scale (pure): what the prompt asks for and what the report accepts.

A rubric may state its scale explicitly (`ANALYSIS_CONTEXT.rubric_scale`: `[min, max]` or
`{"min": .., "max": ..}`) or in its own words ("score each criterion from 0 to 10", "out of
10"); otherwise it is the default 1-5. Scores the model returns outside the scale are clamped
into it and the original is kept beside (`score_out_of_scale`), never passed on silently.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
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
