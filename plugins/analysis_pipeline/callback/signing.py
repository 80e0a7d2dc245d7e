"""HMAC-SHA256 signatures of callback bodies (the backend verifies them the same way).

    X-Analysis-Timestamp: <unix seconds>
    X-Analysis-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>

The timestamp is signed too, so a captured request cannot be replayed later with a fresh
one; the backend rejects a timestamp more than `MAX_SKEW_SECONDS` away from its clock and
compares signatures in constant time. Several secrets may be accepted at once while one is
rotated; `X-Analysis-Key-Id` (the connection's login, when set) says which one signed.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping

SIGNATURE_HEADER = "X-Analysis-Signature"
TIMESTAMP_HEADER = "X-Analysis-Timestamp"
ID_HEADER = "X-Analysis-Callback-Id"
KEY_ID_HEADER = "X-Analysis-Key-Id"  # which secret signed it (rotation), when named
SCHEME = "sha256="
MAX_SKEW_SECONDS = 300


class SignatureError(ValueError):
    """A callback whose signature or timestamp does not check out."""


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return SCHEME + mac.hexdigest()


def signed_headers(
    secret: str,
    body: bytes,
    *,
    callback_id: str,
    key_id: str | None = None,
    now: float | None = None,
) -> dict[str, str]:
    if not secret:
        raise SignatureError("no signing secret: the callback is never sent unsigned")
    timestamp = int(time.time() if now is None else now)
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
        ID_HEADER: callback_id,
    }
    if key_id:
        headers[KEY_ID_HEADER] = key_id
    return headers


def verify(
    secrets: Iterable[str],
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: float | None = None,
    max_skew: int = MAX_SKEW_SECONDS,
) -> None:
    """What the backend does with a callback (reference implementation, used by the tests):
    raises SignatureError unless one of `secrets` signed `body` at a recent timestamp."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        timestamp = int(lowered[TIMESTAMP_HEADER.lower()])
        given = lowered[SIGNATURE_HEADER.lower()]
    except (KeyError, ValueError) as exc:
        raise SignatureError("missing or malformed signature headers") from exc
    if abs((time.time() if now is None else now) - timestamp) > max_skew:
        raise SignatureError(f"timestamp {timestamp} is more than {max_skew} s from now")
    if not any(hmac.compare_digest(given, signature(s, timestamp, body)) for s in secrets if s):
        raise SignatureError("signature does not match")
