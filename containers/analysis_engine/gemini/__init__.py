"""Gemini adapter on the real google-genai SDK (async client), one module per concern:

- `client`: `GeminiClient` (generate with deadlines, budget and usage; the composition);
- `files`: the Files API (upload, poll until ACTIVE, delete, leftovers on close);
- `retry`: the one retry loop and its backoff policy;
- `failures`: what an SDK exception or error body means (retryable? after how long?);
- `request` / `response`: building the request, validating the answer;
- `transport`: the SDK client itself, its pinned HTTP transport and that one's errors.
"""

from analysis_engine.gemini.client import GeminiClient, ModelUsage
from analysis_engine.gemini.failures import retry_delay_seconds
from analysis_engine.gemini.files import INLINE_LIMIT_BYTES
from analysis_engine.gemini.request import MEDIA_RESOLUTIONS
from analysis_engine.gemini.transport import DUMMY_API_KEY, sdk_transport, transport_errors

__all__ = [
    "DUMMY_API_KEY",
    "INLINE_LIMIT_BYTES",
    "MEDIA_RESOLUTIONS",
    "GeminiClient",
    "ModelUsage",
    "retry_delay_seconds",
    "sdk_transport",
    "transport_errors",
]
