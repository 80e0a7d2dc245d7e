"""The Discord webhook: where it is (the ``discord_alerts`` connection) and how to talk to it.

Plain ``requests`` rather than the ``discord-webhook`` package: that package's rate-limit
loop waits for any ``retry_after`` without a bound and retries forever, raises unless the
429 carries a ``Via`` header, and fails on empty (204) replies; an alert callback must
answer within seconds and never raise.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests

from analysis_pipeline.alerts.redaction import known_secrets, scrubbed_http_logs
from analysis_pipeline.config import DISCORD_CONN_ID

log = logging.getLogger(__name__)

MAX_RETRY_AFTER_SECONDS = 30.0
MAX_ATTEMPTS = 4
HTTP_TIMEOUT_SECONDS = 10


class DiscordError(Exception):
    """Discord refused or could not be reached; the message never carries the URL."""


class AlertChannelUnavailable(Exception):
    """The connection could not be read (secrets backend outage): not the same as absent."""


def webhook_url(conn_id: str = DISCORD_CONN_ID) -> str | None:
    """The full webhook URL, or None when the connection is not configured.

    Accepted forms: the token in the connection's *password* (masked by Airflow; host = the
    URL without the token, or host + schema), or the whole URL in host (masked here with
    ``mask_secret`` so it never shows in logs or the UI). A secrets-backend outage raises
    ``AlertChannelUnavailable`` instead of looking like "not configured".
    """
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None
    except Exception as exc:
        raise AlertChannelUnavailable(
            f"connection {conn_id!r} could not be read ({type(exc).__name__})"
        ) from None
    host = (conn.host or "").strip()
    if not host:
        return None
    if "://" in host:
        base = host
    else:
        scheme = conn.conn_type if conn.conn_type in ("http", "https") else "https"
        port = f":{conn.port}" if conn.port else ""
        path = f"/{conn.schema.strip('/')}" if conn.schema else ""
        base = f"{scheme}://{host}{port}{path}"
    token = (conn.password or "").strip()
    url = _with_path(base, "/" + token.strip("/")) if token else base
    _mask(url)
    return url


def _mask(url: str) -> None:
    try:
        from airflow.sdk.log import mask_secret

        for secret in known_secrets(url):
            mask_secret(secret)
    except Exception:  # masking is defence in depth; redaction below still applies
        pass


def _with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + path))


def webhook(url: str, *, path: str = "", query: Mapping[str, str] | None = None) -> str:
    """The webhook URL with a sub-path and query added (it may carry a query of its own)."""
    parts = urlsplit(url)
    params = [*parse_qsl(parts.query), *(query or {}).items()]
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + path, query=urlencode(params)))


def _send(method: str, url: str, payload: dict[str, Any]) -> requests.Response:
    with scrubbed_http_logs(known_secrets(url)):
        for _attempt in range(MAX_ATTEMPTS):
            try:
                response = requests.request(method, url, json=payload, timeout=HTTP_TIMEOUT_SECONDS)
            except requests.RequestException as exc:
                # str(exc) contains the URL: report the type only.
                raise DiscordError(f"request failed ({type(exc).__name__})") from None
            if response.status_code != 429:
                if response.status_code >= 400:
                    raise DiscordError(f"Discord answered HTTP {response.status_code}")
                return response
            wait = _retry_after(response)
            log.info("Discord rate limit: waiting %.1fs before retrying", wait)
            time.sleep(wait)  # no lock is held here: other callbacks carry on
    raise DiscordError("still rate limited after retries")


def _retry_after(response: requests.Response) -> float:
    try:
        value = float(response.json().get("retry_after"))
    except (ValueError, TypeError, AttributeError):
        try:
            value = float(response.headers.get("Retry-After", "1"))
        except ValueError:
            value = 1.0
    return max(0.0, min(value, MAX_RETRY_AFTER_SECONDS))


def post_message(url: str, embed: dict[str, Any]) -> str | None:
    """Post; the message id (for later edits) when Discord returned one."""
    response = _send("POST", webhook(url, query={"wait": "true"}), {"embeds": [embed]})
    try:
        data = response.json()
    except ValueError:
        return None
    message_id = data.get("id") if isinstance(data, dict) else None
    return str(message_id) if message_id else None


def edit_message(url: str, message_id: str, embed: dict[str, Any]) -> None:
    _send("PATCH", webhook(url, path=f"/messages/{message_id}"), {"embeds": [embed]})
