"""Building a generateContent request: media parts (inline, uploaded, or a clip of an
upload) and the generation config."""

from __future__ import annotations

from google.genai import types
from pydantic import BaseModel

from analysis_engine.models import MediaHandle

MEDIA_RESOLUTIONS = {
    "default": None,
    "low": types.MediaResolution.MEDIA_RESOLUTION_LOW,
    "medium": types.MediaResolution.MEDIA_RESOLUTION_MEDIUM,
    "high": types.MediaResolution.MEDIA_RESOLUTION_HIGH,
}


def contents(prompt: str, media: MediaHandle | None) -> list[types.Content]:
    parts = [*media_parts(media), types.Part(text=prompt)]  # media first, as Google advises
    return [types.Content(role="user", parts=parts)]


def media_parts(media: MediaHandle | None) -> list[types.Part]:
    if media is None:
        return []
    if media.uri:
        part = types.Part.from_uri(file_uri=media.uri, mime_type=media.mime_type)
    elif media.data is not None:
        part = types.Part.from_bytes(data=media.data, mime_type=media.mime_type)
    else:
        raise ValueError("MediaHandle has neither uri nor data")
    if media.clip is not None or media.fps is not None:
        part.video_metadata = types.VideoMetadata(
            start_offset=None if media.clip is None else f"{media.clip.start_s:.3f}s",
            end_offset=None if media.clip is None else f"{media.clip.end_s:.3f}s",
            fps=media.fps,
        )
    return [part]


def generation_config(
    schema: type[BaseModel],
    *,
    answer_tokens: int,
    media_resolution: str,
    thinking_budget: int | None = None,
) -> types.GenerateContentConfig:
    """`answer_tokens` is room for the answer itself. Thinking tokens count against
    `max_output_tokens` too, so a model thinking as long as it likes can spend the whole
    limit and stop at MAX_TOKENS with no answer: its thinking gets a fixed budget, and the
    limit is that budget plus the answer's room."""
    thinking = None
    if thinking_budget is not None:
        thinking = types.ThinkingConfig(thinking_budget=thinking_budget)
    return types.GenerateContentConfig(
        response_mime_type="application/json",
        response_schema=schema,
        max_output_tokens=answer_tokens + (thinking_budget or 0),
        media_resolution=MEDIA_RESOLUTIONS[media_resolution],
        thinking_config=thinking,
    )
