"""What a failed attempt means: turn SDK exceptions and error bodies into `AttemptFailed`
(worth a retry or not, after how long, whether it was the quota speaking, and whether every
other call would be refused the same way).

Permanent refusals are never retried: an invalid API key, a permission error, an unknown
model, a request larger than the model's context window, a per-day quota that is spent (and,
in `response`, a blocked prompt). A bad key or a permission error holds for every call with
this key, an unknown model or a spent daily quota for every call to that model (`scope`), so
the client stops sending those calls at all (see `retry.Refusals`).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Literal

from google.genai import errors as genai_errors

from analysis_engine.gemini.transport import TRANSIENT_ERRORS

log = logging.getLogger(__name__)

RETRYABLE_HTTP_CODES = frozenset({408, 429, 500, 502, 503, 504})
# What a permanent refusal says about other calls: nothing ("request"), every call to the
# same model ("model"), or every call with this key and project ("key").
Scope = Literal["request", "model", "key"]
# "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."
_TOO_LARGE_RE = re.compile(r"input token count.*exceeds the maximum", re.IGNORECASE)
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
        scope: Scope = "request",
        daily: bool = False,
    ) -> None:
        super().__init__(reason)
        # A per-day quota is spent: nothing to do with the per-minute budget (see budget).
        self.daily = daily
        self.reason = reason
        self.http_code = http_code
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.quota = quota
        self.scope: Scope = scope if not retryable else "request"


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
    if code in RETRYABLE_HTTP_CODES:
        daily = [q for q in quota_ids(exc.details) if _is_per_day(q)]
        if code == 429 and daily:
            # Waiting minutes will not refill a quota that resets once a day.
            return AttemptFailed(
                f"daily quota exhausted ({', '.join(daily)}): {reason}",
                retryable=False,
                quota=True,
                retry_after_s=retry_after,
                http_code=code,
                scope="model",
                daily=True,
            )
        return AttemptFailed(reason, retry_after_s=retry_after, quota=code == 429, http_code=code)
    label, scope = _permanent(code, message, exc.details)
    return AttemptFailed(
        f"{label}: {reason}" if label else reason, retryable=False, http_code=code, scope=scope
    )


def _permanent(code: int, message: str, details: Any) -> tuple[str, Scope]:
    """(what it means for people, which other calls share the fate) for a 4xx answer."""
    if code == 401 or "API_KEY_INVALID" in _reasons(details) or "API key not valid" in message:
        return "invalid API key", "key"
    if code == 403:
        if "File" in message or "files/" in message:
            return "", "request"  # one uploaded file is gone or not ours
        return "permission denied", "key"
    if code == 404:
        return "unknown model or resource", "model"
    if code in (400, 413) and _TOO_LARGE_RE.search(message):
        return "request too large for the model's context window", "request"
    return "", "request"


def quota_ids(details: Any) -> list[str]:
    """The `quotaId`s (else `quotaMetric`s) of every `google.rpc.QuotaFailure` violation."""
    return [
        str(v.get("quotaId") or v.get("quotaMetric") or "")
        for d in _detail_entries(details)
        if str(d.get("@type", "")).endswith("google.rpc.QuotaFailure")
        for v in d.get("violations") or []
        if isinstance(v, dict)
    ]


def _is_per_day(quota: str) -> bool:
    return "perday" in quota.lower().replace("_", "").replace("-", "")


def _reasons(details: Any) -> set[str]:
    """`google.rpc.ErrorInfo.reason`s in an error body (e.g. API_KEY_INVALID)."""
    return {str(d.get("reason")) for d in _detail_entries(details) if d.get("reason")}


def _detail_entries(details: Any) -> list[dict[str, Any]]:
    """`error.details` entries, from the whole body (`{"error": {...}}`) or the error itself."""
    if isinstance(details, list) and details:
        return _detail_entries(details[0])
    if isinstance(details, dict):
        inner = details.get("error", details)
        entries = inner.get("details") if isinstance(inner, dict) else None
        return [e for e in entries or [] if isinstance(e, dict)]
    return []


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
