"""How the SDK reaches Gemini: the one `genai.Client` we build, and its HTTP transport.

google-genai 3.3 sends every async call through aiohttp when it is importable (and no httpx
client is injected, which we never do), and otherwise through its own httpx2 dependency (or
httpx, when `GOOGLE_GENAI_HTTP_CLIENT=httpx` asks for it). The images pin aiohttp explicitly
(containers/requirements.txt); whichever transport runs, its network errors are retryable.
"""

from __future__ import annotations

import importlib
import logging
import math
import os

from google import genai
from google.genai import types

from analysis_engine.errors import ModelCallError
from analysis_engine.settings import Settings

log = logging.getLogger(__name__)

# Placeholder key when GEMINI_BASE_URL points at a proxy/fake and no key is configured:
# the SDK only builds versioned URLs when some key is present.
DUMMY_API_KEY = "unused-by-local-fake"
# Each transport the SDK may use, and the base class of its network errors.
_TRANSPORT_ERRORS = {
    "aiohttp": "ClientError",
    "httpx2": "TransportError",
    "httpx": "TransportError",
}


def transport_errors() -> tuple[type[BaseException], ...]:
    """The network-error base classes of every SDK transport installed here."""
    found: list[type[BaseException]] = []
    for module_name, class_name in _TRANSPORT_ERRORS.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue  # not installed: the SDK cannot use it either
        found.append(getattr(module, class_name))
    return tuple(found)


def sdk_transport() -> str:
    """The library the SDK's async calls go through (logged at start-up)."""
    try:
        importlib.import_module("aiohttp")
    except ImportError:
        chosen = os.environ.get("GOOGLE_GENAI_HTTP_CLIENT", "").strip().lower()
        return chosen if chosen == "httpx" else "httpx2"
    return "aiohttp"


# Failures of the connection itself (never an answer from the service): worth a retry.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TimeoutError,
    ConnectionError,
    *transport_errors(),
)


def sdk_client(settings: Settings) -> genai.Client:
    """The SDK client, with the SDK's own retries off: ours are the only ones.

    `retry_options=None` (the SDK default) still leaves an implicit reconnect-and-retry
    after a 1-10 s sleep inside the aiohttp transport; `HttpRetryOptions(attempts=1)` stops
    after one attempt *and* disables that implicit retry. `timeout` also tells the server
    our deadline.
    """
    api_key = settings.gemini_api_key or (DUMMY_API_KEY if settings.gemini_base_url else "")
    if not api_key:
        raise ModelCallError(
            "GEMINI_API_KEY is not set (required unless GEMINI_BASE_URL points at a proxy)",
            attempts=0,
            retryable=False,
        )
    http_options = types.HttpOptions(
        base_url=settings.gemini_base_url,
        timeout=math.ceil(settings.gemini_timeout_seconds * 1000),  # milliseconds
        retry_options=types.HttpRetryOptions(attempts=1),
    )
    sdk = genai.Client(api_key=api_key, vertexai=False, http_options=http_options)
    log.info("Gemini transport: %s", sdk_transport())
    return sdk
