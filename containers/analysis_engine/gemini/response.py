"""Reading a generateContent response: what it cost, and the validated answer or exactly
what was wrong with it (`response.parsed` is silently None when the JSON misses the schema;
a safety block, a MAX_TOKENS truncation and invalid JSON each get a clear reason)."""

from __future__ import annotations

from typing import TypeVar

import pydantic
from google.genai import types

from analysis_engine.gemini.failures import AttemptFailed

T = TypeVar("T", bound=pydantic.BaseModel)
# The answer was withheld for what the input contains: asking again sends (and pays for)
# the same video for the same verdict, so these are not retried.
_BLOCKED_FINISHES = frozenset(
    {
        types.FinishReason.SAFETY,
        types.FinishReason.PROHIBITED_CONTENT,
        types.FinishReason.BLOCKLIST,
        types.FinishReason.SPII,
        types.FinishReason.IMAGE_SAFETY,
    }
)


def token_counts(response: types.GenerateContentResponse) -> tuple[int, int]:
    meta = response.usage_metadata
    if meta is None:
        return 0, 0
    # Thinking tokens are billed as output, so they count as output here.
    output = (meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0)
    return meta.prompt_token_count or 0, output


def validated(response: types.GenerateContentResponse, schema: type[T], limit: int) -> T:
    """The parsed answer, or AttemptFailed naming exactly what was wrong with it."""
    if not response.candidates:
        feedback = response.prompt_feedback
        if feedback and feedback.block_reason:
            why = feedback.block_reason.value
            if feedback.block_reason_message:
                why += f": {feedback.block_reason_message}"
            # The same prompt (and video) would be blocked again, at full cost.
            raise AttemptFailed(f"prompt blocked ({why}), no candidates", retryable=False)
        raise AttemptFailed("no candidates in the response")
    candidate = response.candidates[0]
    finish = candidate.finish_reason
    if finish == types.FinishReason.MAX_TOKENS:
        raise AttemptFailed(f"output truncated at max_output_tokens={limit} (MAX_TOKENS)")
    if finish in _BLOCKED_FINISHES:
        raise AttemptFailed(f"answer blocked (finish_reason {finish.value})", retryable=False)
    if finish not in (None, types.FinishReason.STOP, types.FinishReason.FINISH_REASON_UNSPECIFIED):
        raise AttemptFailed(f"answer stopped early (finish_reason {finish.value})")
    if isinstance(response.parsed, schema):
        return response.parsed
    # The SDK swallowed the reason; find it ourselves.
    parts = candidate.content.parts if candidate.content and candidate.content.parts else []
    text = "".join(p.text for p in parts if p.text and not p.thought)
    if not text.strip():
        raise AttemptFailed("empty answer")
    try:
        return schema.model_validate_json(text)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        if first.get("type") == "json_invalid":
            raise AttemptFailed(f"invalid JSON: {first.get('msg', '')}") from None
        where = ".".join(str(x) for x in first.get("loc", ())) or "(root)"
        raise AttemptFailed(
            f"JSON does not match {schema.__name__}: {where}: {first.get('msg', '')}"
        ) from None
