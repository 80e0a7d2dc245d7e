"""What a failed attempt means: turn SDK exceptions and error bodies into `AttemptFailed`
(worth a retry or not, after how long, and whether it was the quota speaking)."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from google.genai import errors as genai_errors

from analysis_engine.gemini.transport import TRANSIENT_ERRORS

log = logging.getLogger(__name__)

RETRYABLE_HTTP_CODES = frozenset({408, 429, 500, 502, 503, 504})
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*s\s*$")


class AttemptFailed(Exception):
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


def attempt_failure(exc: BaseException, *, deadline_s: float) -> AttemptFailed:
    """Any exception out of one SDK call, as the failure of that attempt."""
    if isinstance(exc, genai_errors.APIError):
        return api_failure(exc)
    if isinstance(exc, TimeoutError):
        return AttemptFailed(f"timed out after {deadline_s:g}s")
    if isinstance(exc, TRANSIENT_ERRORS):
        return AttemptFailed(f"network error: {short(exc)}")
    if isinstance(exc, json.JSONDecodeError | genai_errors.UnknownApiResponseError):
        return AttemptFailed(f"unreadable response: {short(exc)}")
    # Not a failure mode we know; fail this call only (the run goes on), loudly.
    log.warning("unexpected error from the Gemini SDK", exc_info=exc)
    return AttemptFailed(f"unexpected {short(exc)}", retryable=False)


def api_failure(exc: genai_errors.APIError) -> AttemptFailed:
    code = int(exc.code or 0)
    message = (exc.message or "").strip().splitlines()[0] if exc.message else ""
    reason = f"HTTP {code} {exc.status or ''}".rstrip() + (f": {message[:160]}" if message else "")
    retry_after = retry_delay_seconds(exc.details)
    if retry_after is None:
        retry_after = _retry_after_header(exc)
    return AttemptFailed(
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


def short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
