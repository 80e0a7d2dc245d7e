"""Delivering one callback: the signed POST, what counts as delivered, what is retried.

- 2xx, or 409 (the backend already has this `callback_id`): delivered. A marker in the
  metadata database (`analysis_callbacks.<day>.<callback_id>`) then stops any later attempt
  of the same outcome (a retry after a crash, a cleared task) from sending it again.
- 408, 425, 429, 5xx, a timeout or no connection: `CallbackNotDelivered`, retried by Airflow
  with exponential backoff (the `analysis_callback` DAG's task).
- Any other 4xx: `CallbackRefused` (the backend rejects this body or signature: retrying
  the same bytes cannot help), not retried, alerted.

The endpoint and the secret come from the Airflow connection `analysis_backend` (the
secrets backend): its host is the callback URL, its password the HMAC secret, its login
(optional) the secret's key id, sent as `X-Analysis-Key-Id`. Nothing is ever sent unsigned.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from analysis_pipeline.callback.payload import encode
from analysis_pipeline.callback.signing import signed_headers
from analysis_pipeline.shared_state import SharedStore

log = logging.getLogger(__name__)

MARKER_PREFIX = "analysis_callbacks."
MARKER_DAYS = 30  # markers older than this are pruned (a delivery's retries end in hours)
TIMEOUT = (5.0, 30.0)  # connect, read
RETRIED_STATUSES = frozenset({408, 425, 429})


class CallbackNotDelivered(AirflowException):
    """The backend did not take it now (down, overloaded): retry later."""


class CallbackRefused(AirflowFailException):
    """The backend refused it for good (4xx), or it cannot be sent (no URL, no secret)."""


def endpoint_of(connection: Any) -> str:
    """The callback URL: the connection's host when it is a whole URL (recommended), else
    schema://host:port, plus an optional `endpoint` path in its extra."""
    host = (connection.host or "").strip()
    if not host:
        raise CallbackRefused(f"connection {connection.conn_id!r} has no host (the callback URL)")
    if "://" not in host:
        scheme = connection.schema or "https"
        host = f"{scheme}://{host}" + (f":{connection.port}" if connection.port else "")
    path = str((connection.extra_dejson or {}).get("endpoint") or "").strip("/")
    return host.rstrip("/") + (f"/{path}" if path else "")


def _day(payload: Mapping[str, Any]) -> str:
    text = str(payload.get("reported_at") or "")[:10].replace("-", "")
    return text if len(text) == 8 and text.isdigit() else "00000000"


def marker_key(payload: Mapping[str, Any]) -> str:
    return f"{MARKER_PREFIX}{_day(payload)}.{payload['callback_id']}"


def deliver(
    payload: Mapping[str, Any],
    *,
    connection: Any,
    store: SharedStore,
    session: Any = requests,
    now: datetime | None = None,
) -> str:
    """POST the payload once; 'delivered' or 'already delivered', else raises (see above)."""
    marker = marker_key(payload)
    if store.get(marker):
        log.info("callback %s was already delivered: not sent again", payload["callback_id"])
        return "already delivered"
    secret = connection.password or ""
    if not secret:
        raise CallbackRefused(
            f"connection {connection.conn_id!r} has no password (the HMAC secret): "
            "a callback is never sent unsigned"
        )
    url = endpoint_of(connection)
    body = encode(payload)
    headers = signed_headers(
        secret, body, callback_id=str(payload["callback_id"]),
        key_id=(getattr(connection, "login", None) or None),
    )  # fmt: skip
    try:
        response = session.post(url, data=body, headers=headers, timeout=TIMEOUT,
                                allow_redirects=False)  # fmt: skip
    except requests.RequestException as exc:
        raise CallbackNotDelivered(f"backend unreachable: {type(exc).__name__}") from None
    status = response.status_code
    if 200 <= status < 300 or status == 409:
        moment = now or datetime.now(UTC)
        store.put(marker, json.dumps({"delivered_at": moment.isoformat(), "http_status": status}))
        _prune(store, moment)
        log.info("callback %s (%s) delivered: HTTP %d", payload["callback_id"],
                 payload.get("status"), status)  # fmt: skip
        return "delivered"
    detail = " ".join(str(getattr(response, "text", ""))[:200].split())
    if status in RETRIED_STATUSES or status >= 500:
        raise CallbackNotDelivered(f"backend answered HTTP {status}: {detail}")
    raise CallbackRefused(f"backend refused the callback: HTTP {status}: {detail}")


def _prune(store: SharedStore, now: datetime) -> None:
    """Forget markers of the week past MARKER_DAYS (a few prefix listings per delivery; a
    day missed while nothing was delivered only leaves small rows behind)."""
    try:
        for back in range(MARKER_DAYS + 1, MARKER_DAYS + 8):
            day = (now - timedelta(days=back)).strftime("%Y%m%d")
            for key in store.keys(f"{MARKER_PREFIX}{day}."):
                store.delete(key)
    except Exception as exc:  # housekeeping never fails a delivery
        log.debug("marker pruning skipped: %s", exc)
