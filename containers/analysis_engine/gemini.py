"""Gemini adapter on the real google-genai SDK (async client).

What it adds on top of the SDK, and why:

- **One retry mechanism, ours.** The SDK's own retries are switched off completely:
  `retry_options=None` (the default) still leaves an implicit reconnect-and-retry after a
  1-10 s sleep inside the SDK's aiohttp transport, so we pass `HttpRetryOptions(attempts=1)`,
  which stops after one attempt *and* disables that implicit retry. Our loop then retries
  429/5xx/timeouts/network errors with full-jitter exponential backoff, and honours the
  server's `google.rpc.RetryInfo.retryDelay` (the SDK ignores it) as a floor for the wait.
- **Deadlines.** Every call runs under `asyncio.wait_for(..., GEMINI_TIMEOUT_SECONDS)` (the
  SDK's `HttpOptions.timeout` is set too, which also tells the server our deadline); a hung
  call is abandoned and counts as a failed attempt.
- **Validated answers.** `response.parsed` is silently `None` when the JSON does not fit the
  schema; empty candidates (safety block), `MAX_TOKENS` truncation and invalid JSON are each
  a failed attempt with a clear reason.
- **Budget.** Each generate attempt first waits for a lease from `Budget` (RPM/TPM of the
  call's model: this container's share, or the fleet's with a shared `GEMINI_BUDGET_URI`),
  settles it with the real input tokens, and a 429 pauses every caller of that model that
  shares the budget, not just the one that got it.
- **Files.** Media above the inline limit goes through the Files API (resumable upload,
  then poll until `ACTIVE`); smaller media is sent inline. Uploaded files are deleted after
  use and, as a safety net, on `aclose()`.

The API key is never logged: log lines carry model, attempt, reason and wait only.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import math
import os
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pydantic
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from analysis_engine.budget import Budget, open_budget
from analysis_engine.errors import ModelCallError
from analysis_engine.models import MediaHandle, ModelReply
from analysis_engine.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T", bound=pydantic.BaseModel)
R = TypeVar("R")
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]

# generateContent requests are limited to 20 MB, and inline bytes travel base64-encoded
# (4/3 larger) next to the prompt: files up to 14 MB are safe to inline, bigger ones go
# through the Files API.
INLINE_LIMIT_BYTES = 14 * 1024 * 1024
# Placeholder key when GEMINI_BASE_URL points at a proxy/fake and no key is configured:
# the SDK only builds versioned URLs when some key is present.
DUMMY_API_KEY = "unused-by-local-fake"
RETRYABLE_HTTP_CODES = frozenset({408, 429, 500, 502, 503, 504})
MAX_OUTPUT_TOKENS_CEILING = 65_536
# Uploads get the call deadline plus time for the bytes at a pessimistic 1 MB/s.
UPLOAD_BYTES_PER_SECOND = 1_000_000
MEDIA_RESOLUTIONS = {
    "default": None,
    "low": types.MediaResolution.MEDIA_RESOLUTION_LOW,
    "medium": types.MediaResolution.MEDIA_RESOLUTION_MEDIUM,
    "high": types.MediaResolution.MEDIA_RESOLUTION_HIGH,
}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*s\s*$")
# The SDK's async transport is aiohttp when installed (the image pins it: see
# containers/requirements.txt), else its httpx2 fallback (or httpx, when asked to by
# GOOGLE_GENAI_HTTP_CLIENT). Whichever one runs, its network errors are worth a retry.
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
    """The library the SDK's async calls go through: aiohttp whenever it is importable
    (and no httpx client is injected, which we never do), else the SDK's httpx default."""
    try:
        importlib.import_module("aiohttp")
    except ImportError:
        chosen = os.environ.get("GOOGLE_GENAI_HTTP_CLIENT", "").strip().lower()
        return chosen if chosen == "httpx" else "httpx2"
    return "aiohttp"


_TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TimeoutError,
    ConnectionError,
    *transport_errors(),
)


@dataclass
class ModelUsage:
    """What one model cost this client, failed attempts included."""

    calls: int = 0  # attempts that reached the model (any outcome)
    failed_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


class _AttemptFailed(Exception):
    """One attempt went wrong; the retry loop decides what happens next."""

    def __init__(
        self,
        reason: str,
        *,
        retryable: bool = True,
        retry_after_s: float | None = None,
        quota: bool = False,
        http_code: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.http_code = http_code
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.quota = quota


class GeminiClient:
    """Upload media, ask for validated structured answers, clean up. See the module doc."""

    def __init__(
        self,
        sdk: genai.Client,
        *,
        budget: Budget,
        timeout_s: float,
        max_attempts: int,
        inline_limit_bytes: int = INLINE_LIMIT_BYTES,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
        base_delay_s: float = 1.0,
        max_delay_s: float = 60.0,
        poll_interval_s: float = 1.0,
        processing_deadline_s: float = 600.0,
    ) -> None:
        """`sleep` and `clock` must be a matching pair, and the budget's too (see from_settings)."""
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self._sdk = sdk
        self._budget = budget
        self._timeout_s = timeout_s
        self._max_attempts = max_attempts
        self._inline_limit = inline_limit_bytes
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._base_delay_s = base_delay_s
        self._max_delay_s = max_delay_s
        self._poll_interval_s = poll_interval_s
        self._processing_deadline_s = processing_deadline_s
        self._live_files: set[str] = set()
        self._usage: dict[str, ModelUsage] = {}
        self._closed = False

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        sleep: Sleep = asyncio.sleep,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        inline_limit_bytes: int = INLINE_LIMIT_BYTES,
        base_delay_s: float = 1.0,
        max_delay_s: float = 60.0,
        kind: str | None = None,
    ) -> GeminiClient:
        """The production wiring; the keyword arguments exist for tests and demos.

        `kind` (the container kind's name) sets the budget queue's priority. An injected
        `clock` drives the budget too; by default the budget keeps wall time (shared by
        every container of the fleet) and the client monotonic time.
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
            retry_options=types.HttpRetryOptions(attempts=1),  # see the module doc
        )
        sdk = genai.Client(api_key=api_key, vertexai=False, http_options=http_options)
        log.info("Gemini transport: %s", sdk_transport())
        budget = open_budget(settings, kind=kind, clock=clock or time.time, sleep=sleep)
        return cls(
            sdk,
            budget=budget,
            timeout_s=settings.gemini_timeout_seconds,
            max_attempts=settings.gemini_max_attempts,
            inline_limit_bytes=inline_limit_bytes,
            sleep=sleep,
            clock=clock or time.monotonic,
            rng=rng,
            base_delay_s=base_delay_s,
            max_delay_s=max_delay_s,
        )

    @property
    def budget(self) -> Budget:
        return self._budget

    def usage(self) -> dict[str, ModelUsage]:
        """Per-model totals so far (a copy), including attempts that failed."""
        return {model: ModelUsage(**vars(u)) for model, u in self._usage.items()}

    # -- files -------------------------------------------------------------------------

    async def upload(self, path: Path, *, mime_type: str) -> MediaHandle:
        """Make `path` readable by the model: inline when small, else Files API until ACTIVE."""
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise ModelCallError(
                f"cannot read {path.name}: {exc}", attempts=0, retryable=False
            ) from exc
        if size <= self._inline_limit:
            data = await asyncio.to_thread(path.read_bytes)
            return MediaHandle(mime_type=mime_type, data=data)
        deadline_s = self._timeout_s + size / UPLOAD_BYTES_PER_SECOND
        config = types.UploadFileConfig(mime_type=mime_type, display_name=path.name)

        async def attempt(_: int) -> types.File:
            return await self._call(
                self._sdk.aio.files.upload(file=path, config=config), deadline_s
            )

        uploaded, attempts = await self._with_retries(f"upload {path.name}", attempt)
        if not uploaded.name:
            raise ModelCallError(f"upload {path.name}: no file name returned", attempts=attempts)
        self._live_files.add(uploaded.name)
        handle = MediaHandle(
            mime_type=uploaded.mime_type or mime_type, uri=uploaded.uri, name=uploaded.name
        )
        try:
            active = await self._wait_active(
                uploaded, label=f"upload {path.name}", attempts=attempts
            )
        except BaseException:
            await self.delete(handle)
            raise
        return MediaHandle(
            mime_type=handle.mime_type, uri=active.uri or handle.uri, name=handle.name
        )

    async def _wait_active(self, file: types.File, *, label: str, attempts: int) -> types.File:
        name = file.name or ""
        deadline = self._clock() + self._processing_deadline_s
        interval = self._poll_interval_s
        while file.state != types.FileState.ACTIVE:
            if file.state == types.FileState.FAILED:
                detail = file.error.message if file.error and file.error.message else "no detail"
                raise ModelCallError(
                    f"{label}: file processing FAILED ({detail})",
                    attempts=attempts,
                    retryable=False,
                )
            if self._clock() >= deadline:
                raise ModelCallError(
                    f"{label}: file not ACTIVE after {self._processing_deadline_s:g}s "
                    f"(state {file.state.value if file.state else 'unknown'})",
                    attempts=attempts,
                )
            await self._sleep(interval)
            interval = min(interval * 1.5, 10.0)

            async def attempt(_: int) -> types.File:
                return await self._call(self._sdk.aio.files.get(name=name), self._timeout_s)

            file, _ = await self._with_retries(f"{label} (files.get)", attempt)
        return file

    async def delete(self, handle: MediaHandle) -> None:
        """Delete an uploaded file. Best effort: never raises (aclose() retries leftovers)."""
        if not handle.name:
            return  # inline media: nothing stored remotely
        try:
            await self._call(self._sdk.aio.files.delete(name=handle.name), self._timeout_s)
        except _AttemptFailed as failure:
            if failure.http_code in (403, 404):
                self._live_files.discard(handle.name)  # already gone (or expired)
            log.warning("could not delete %s: %s", handle.name, failure.reason)
        except Exception as exc:  # best effort by contract
            log.warning("could not delete %s: %s", handle.name, _short(exc))
        else:
            self._live_files.discard(handle.name)

    async def aclose(self) -> None:
        """Delete every file this client uploaded and still holds, then close the SDK."""
        if self._closed:
            return
        self._closed = True
        leftovers = sorted(self._live_files)
        if leftovers:
            log.info("deleting %d uploaded file(s) left behind", len(leftovers))
            await asyncio.gather(
                *(self.delete(MediaHandle(mime_type="", name=name)) for name in leftovers)
            )
        try:
            await self._sdk.aio.aclose()
        except Exception as exc:  # closing must not mask the run's outcome
            log.warning("closing the Gemini client failed: %s", _short(exc))
        await self._budget.aclose()

    async def __aenter__(self) -> GeminiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- generation --------------------------------------------------------------------

    async def generate(
        self,
        *,
        model: str,
        prompt: str,
        schema: type[T],
        media: MediaHandle | None = None,
        estimated_input_tokens: int,
        media_resolution: str = "default",
        max_output_tokens: int = 8192,
    ) -> ModelReply[T]:
        """One structured answer validated against `schema`, with retries and budgeting.

        Tokens in the reply are what the whole call cost: every attempt that reached the
        model is summed (a truncated or malformed answer is billed too).
        Raises ModelCallError(reason, attempts=n, retryable=...) when no attempt succeeds.
        """
        if media_resolution not in MEDIA_RESOLUTIONS:
            raise ValueError(f"media_resolution must be one of {sorted(MEDIA_RESOLUTIONS)}")
        parts = [*_media_parts(media), types.Part(text=prompt)]  # media first, as Google advises
        contents = [types.Content(role="user", parts=parts)]
        spent = ModelUsage()
        limit = [max_output_tokens]  # raised after a MAX_TOKENS truncation

        async def attempt(_: int) -> T:
            config = types.GenerateContentConfig(
                response_mime_type="application/json",
                response_schema=schema,
                max_output_tokens=limit[0],
                media_resolution=MEDIA_RESOLUTIONS[media_resolution],
            )
            try:
                return await self._generate_once(
                    model, contents, config, schema, estimated_input_tokens, spent
                )
            except _AttemptFailed as failure:
                if "MAX_TOKENS" in failure.reason:
                    limit[0] = min(limit[0] * 2, MAX_OUTPUT_TOKENS_CEILING)
                raise

        parsed, attempts = await self._with_retries(f"generate {model}", attempt)
        return ModelReply(
            parsed=parsed,
            model=model,
            input_tokens=spent.input_tokens,
            output_tokens=spent.output_tokens,
            attempts=attempts,
        )

    async def _generate_once(
        self,
        model: str,
        contents: list[types.Content],
        config: types.GenerateContentConfig,
        schema: type[T],
        estimated_input_tokens: int,
        spent: ModelUsage,
    ) -> T:
        lease = await self._budget.acquire(estimated_input_tokens, model=model)
        usage = self._usage.setdefault(model, ModelUsage())
        usage.calls += 1
        spent.calls += 1
        try:
            response = await self._call(
                self._sdk.aio.models.generate_content(
                    model=model, contents=contents, config=config
                ),
                self._timeout_s,
            )
        except _AttemptFailed as failure:
            # The lease keeps its estimate (the budget never un-counts), so a failed attempt
            # cannot make room for an overspend.
            usage.failed_calls += 1
            if failure.quota:
                # The project quota is hot: hold every caller of this model that shares the
                # budget (the whole fleet with a shared store), for the server's retryDelay.
                await self._budget.pause(model, failure.retry_after_s or self._base_delay_s)
            raise
        input_tokens, output_tokens = _token_counts(response)
        await lease.settle(input_tokens if response.usage_metadata else estimated_input_tokens)
        for tally in (usage, spent):
            tally.input_tokens += input_tokens
            tally.output_tokens += output_tokens
        try:
            return _validated(response, schema, config.max_output_tokens or 0)
        except _AttemptFailed:
            usage.failed_calls += 1
            raise

    # -- the one retry loop ------------------------------------------------------------

    async def _with_retries(
        self, label: str, attempt: Callable[[int], Awaitable[R]]
    ) -> tuple[R, int]:
        for n in range(1, self._max_attempts + 1):
            try:
                return await attempt(n), n
            except _AttemptFailed as failure:
                if not failure.retryable:
                    raise ModelCallError(
                        f"{label}: {failure.reason}", attempts=n, retryable=False
                    ) from None
                if n == self._max_attempts:
                    raise ModelCallError(f"{label}: {failure.reason}", attempts=n) from None
                wait = self._backoff(n, failure.retry_after_s)
                log.info(
                    "%s: attempt %d/%d failed (%s); retrying in %.2fs",
                    label,
                    n,
                    self._max_attempts,
                    failure.reason,
                    wait,
                )
                await self._sleep(wait)
        raise AssertionError("unreachable")  # the loop always returns or raises

    def _backoff(self, attempt: int, retry_after_s: float | None) -> float:
        """Full jitter, floored by the server's retryDelay (plus a little spread above it,
        so callers released by the same delay do not all return in the same instant)."""
        cap = min(self._max_delay_s, self._base_delay_s * 2 ** (attempt - 1))
        wait = self._rng.uniform(0, cap)
        if retry_after_s is not None:
            wait = max(wait, retry_after_s + self._rng.uniform(0, 0.1 * retry_after_s))
        return wait

    async def _call(self, coro: Awaitable[R], deadline_s: float) -> R:
        """Await one SDK call under a deadline, turning its failures into _AttemptFailed."""
        try:
            return await asyncio.wait_for(coro, deadline_s)
        except genai_errors.APIError as exc:
            raise _api_failure(exc) from exc
        except _TRANSIENT_ERRORS as exc:
            if isinstance(exc, TimeoutError):
                raise _AttemptFailed(f"timed out after {deadline_s:g}s") from exc
            raise _AttemptFailed(f"network error: {_short(exc)}") from exc
        except (json.JSONDecodeError, genai_errors.UnknownApiResponseError) as exc:
            raise _AttemptFailed(f"unreadable response: {_short(exc)}") from exc
        except Exception as exc:
            # Not a failure mode we know; fail this call only (the run goes on), loudly.
            log.warning("unexpected error from the Gemini SDK", exc_info=True)
            raise _AttemptFailed(f"unexpected {_short(exc)}", retryable=False) from exc


# -- helpers (pure) ----------------------------------------------------------------------


def _media_parts(media: MediaHandle | None) -> list[types.Part]:
    if media is None:
        return []
    if media.uri:
        part = types.Part.from_uri(file_uri=media.uri, mime_type=media.mime_type)
    elif media.data is not None:
        part = types.Part.from_bytes(data=media.data, mime_type=media.mime_type)
    else:
        raise ValueError("MediaHandle has neither uri nor data")
    if media.clip is not None:
        part.video_metadata = types.VideoMetadata(
            start_offset=f"{media.clip.start_s:.3f}s", end_offset=f"{media.clip.end_s:.3f}s"
        )
    return [part]


def _api_failure(exc: genai_errors.APIError) -> _AttemptFailed:
    code = int(exc.code or 0)
    message = (exc.message or "").strip().splitlines()[0] if exc.message else ""
    reason = f"HTTP {code} {exc.status or ''}".rstrip() + (f": {message[:160]}" if message else "")
    retry_after = retry_delay_seconds(exc.details)
    if retry_after is None:
        retry_after = _retry_after_header(exc)
    return _AttemptFailed(
        reason,
        retryable=code in RETRYABLE_HTTP_CODES,
        retry_after_s=retry_after,
        quota=code == 429,
        http_code=code,
    )


def retry_delay_seconds(details: Any) -> float | None:
    """The largest `google.rpc.RetryInfo.retryDelay` anywhere in an error body, in seconds.

    Accepts the JSON form ("26s", "1.5s") and the proto form ({"seconds": 26, "nanos": 0}).
    """
    found: list[float] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("retryDelay", "retry_delay"):
                    seconds = _duration_seconds(value)
                    if seconds is not None:
                        found.append(seconds)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(details)
    return max(found) if found else None


def _duration_seconds(value: Any) -> float | None:
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        return float(match.group(1)) if match else None
    if isinstance(value, dict):
        try:
            return float(value.get("seconds", 0)) + float(value.get("nanos", 0)) / 1e9
        except (TypeError, ValueError):
            return None
    return None


def _retry_after_header(exc: genai_errors.APIError) -> float | None:
    """Proxies may send Retry-After (seconds) even though the Gemini API itself does not."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    raw = headers.get("Retry-After") if headers is not None else None
    try:
        return float(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


def _token_counts(response: types.GenerateContentResponse) -> tuple[int, int]:
    meta = response.usage_metadata
    if meta is None:
        return 0, 0
    # Thinking tokens are billed as output, so they count as output here.
    output = (meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0)
    return meta.prompt_token_count or 0, output


def _validated(response: types.GenerateContentResponse, schema: type[T], limit: int) -> T:
    """The parsed answer, or _AttemptFailed naming exactly what was wrong with it."""
    if not response.candidates:
        feedback = response.prompt_feedback
        if feedback and feedback.block_reason:
            why = feedback.block_reason.value
            if feedback.block_reason_message:
                why += f": {feedback.block_reason_message}"
            raise _AttemptFailed(f"prompt blocked ({why}), no candidates")
        raise _AttemptFailed("no candidates in the response")
    candidate = response.candidates[0]
    finish = candidate.finish_reason
    if finish == types.FinishReason.MAX_TOKENS:
        raise _AttemptFailed(f"output truncated at max_output_tokens={limit} (MAX_TOKENS)")
    if finish not in (None, types.FinishReason.STOP, types.FinishReason.FINISH_REASON_UNSPECIFIED):
        raise _AttemptFailed(f"answer stopped early (finish_reason {finish.value})")
    if isinstance(response.parsed, schema):
        return response.parsed
    # The SDK swallowed the reason; find it ourselves.
    parts = candidate.content.parts if candidate.content and candidate.content.parts else []
    text = "".join(p.text for p in parts if p.text and not p.thought)
    if not text.strip():
        raise _AttemptFailed("empty answer")
    try:
        return schema.model_validate_json(text)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        if first.get("type") == "json_invalid":
            raise _AttemptFailed(f"invalid JSON: {first.get('msg', '')}") from None
        where = ".".join(str(x) for x in first.get("loc", ())) or "(root)"
        raise _AttemptFailed(
            f"JSON does not match {schema.__name__}: {where}: {first.get('msg', '')}"
        ) from None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
