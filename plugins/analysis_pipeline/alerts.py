"""``alert_on_analysis_failure``: one Discord embed per burst of identical failures.

Rules: never raises (a broken alert must not mask the failure it reports), never logs or
posts the webhook URL or any other secret, honours Discord's 429 ``retry_after``, and
aggregates: failures with the same reason within a window edit one message whose count
goes up, instead of posting again (a Gemini 429 storm must not become 350 pings).

The aggregation store is a small JSON file guarded by ``flock``, so every callback process
on a host shares it (``ANALYSIS_ALERT_STATE_FILE``; put it on a shared volume when workers
run on several hosts, otherwise each host aggregates on its own).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests

from analysis_pipeline.config import DISCORD_CONN_ID

log = logging.getLogger(__name__)

DEFAULT_WINDOW_SECONDS = 900
MAX_RETRY_AFTER_SECONDS = 30.0
MAX_ATTEMPTS = 4
HTTP_TIMEOUT_SECONDS = 10
LOCK_TIMEOUT_SECONDS = 60.0
COLOR_FAILED = 0xD0342C
MAX_IDS_SHOWN = 10
_REDACTED = "[redacted]"


@dataclass(frozen=True)
class Alert:
    dag_id: str
    run_id: str
    analysis_id: str
    task_id: str
    try_number: int
    reason: str
    exit_code: int | None = None
    last_lines: tuple[str, ...] = ()
    log_url: str | None = None
    error_type: str = "Exception"

    @property
    def key(self) -> str:
        """Same DAG, same kind of error, same reason text (ids and numbers blurred)."""
        reason = self.reason.replace(self.analysis_id, "<id>") if self.analysis_id else self.reason
        reason = re.sub(r"\d+", "#", reason)[:160]
        return f"{self.dag_id}|{self.error_type}|{reason}"


# --- building the alert from an Airflow context ------------------------------------------
def _analysis_id(params: Mapping[str, Any]) -> str:
    return str(params.get("submission_id") or params.get("attempt_id") or "unknown")


def alert_from_context(context: Mapping[str, Any]) -> Alert:
    ti = context.get("ti")
    exc = context.get("exception")
    params = context.get("params") or {}
    run_id = getattr(context.get("dag_run"), "run_id", None) or getattr(ti, "run_id", "?")
    return Alert(
        dag_id=str(getattr(ti, "dag_id", "?")),
        run_id=str(run_id),
        analysis_id=_analysis_id(params),
        task_id=str(getattr(ti, "task_id", "?")),
        try_number=int(getattr(ti, "try_number", 0) or 0),
        reason=str(getattr(exc, "reason", None) or exc or "unknown failure")[:1000],
        exit_code=getattr(exc, "exit_code", None),
        last_lines=tuple(getattr(exc, "last_lines", ()) or ()),
        log_url=_log_url(ti),
        error_type=type(exc).__name__ if exc is not None else "Unknown",
    )


def _log_url(ti: Any) -> str | None:
    try:
        return str(ti.log_url)
    except Exception:
        return None


# --- secrets -------------------------------------------------------------------------------
def _secrets(webhook_url: str | None) -> list[str]:
    values = [webhook_url or "", os.environ.get("GEMINI_API_KEY", "")]
    if webhook_url:
        values.append(webhook_url.rstrip("/").rsplit("/", 1)[-1])  # the token alone
    return [v for v in values if len(v) >= 8]


def redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, _REDACTED)
    return text


def webhook_url(conn_id: str = DISCORD_CONN_ID) -> str | None:
    """The full webhook URL from the connection (host = full URL, or a URI-style connection)."""
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception:
        return None
    host = (conn.host or "").strip()
    if "://" in host:
        return host
    if not host:
        return None
    scheme = conn.conn_type if conn.conn_type in ("http", "https") else "https"
    port = f":{conn.port}" if conn.port else ""
    path = f"/{conn.schema.lstrip('/')}" if conn.schema else ""
    return f"{scheme}://{host}{port}{path}"


# --- the embed -----------------------------------------------------------------------------
def build_embed(
    alert: Alert, *, count: int, since: float, ids: list[str], secrets: list[str]
) -> dict[str, Any]:
    title = f"{alert.dag_id} failed: {alert.analysis_id}"
    if count > 1:
        title = f"{alert.dag_id}: {count} failures with the same reason"
    fields = [
        {"name": "DAG", "value": alert.dag_id, "inline": True},
        {"name": "Run", "value": alert.run_id[:200], "inline": True},
        {"name": "ID", "value": alert.analysis_id, "inline": True},
        {"name": "Failed step", "value": alert.task_id, "inline": True},
        {"name": "Try", "value": str(alert.try_number), "inline": True},
        {"name": "Exit code", "value": str(alert.exit_code), "inline": True},
    ]
    if count > 1:
        since_text = time.strftime("%H:%M UTC", time.gmtime(since))
        fields.append(
            {
                "name": f"{count} failures since {since_text} (latest ids)",
                "value": ", ".join(ids[-MAX_IDS_SHOWN:])[:1000],
                "inline": False,
            }
        )
    if alert.last_lines:
        tail = "\n".join(alert.last_lines)[-950:].replace("```", "'''")
        fields.append({"name": "Last container log lines", "value": f"```\n{tail}\n```"})
    embed: dict[str, Any] = {
        "title": title[:256],
        "description": f"**Reason:** {alert.reason}"[:2000],
        "color": COLOR_FAILED,
        "fields": fields,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if alert.log_url:
        embed["url"] = alert.log_url
        fields.append({"name": "Airflow log", "value": alert.log_url[:1000]})
    return json.loads(redact(json.dumps(embed), secrets))


# --- Discord HTTP ------------------------------------------------------------------------
class DiscordError(Exception):
    """Discord refused or could not be reached; the message never carries the URL."""


class _RedactingFilter(logging.Filter):
    """urllib3 logs request lines (with the webhook path) at DEBUG: scrub them."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(s in message for s in self.secrets):
            record.msg, record.args = redact(message, self.secrets), None
        return True


@contextmanager
def _scrubbed_http_logs(secrets: list[str]) -> Iterator[None]:
    loggers = [logging.getLogger(n) for n in ("urllib3.connectionpool", "urllib3", "requests")]
    scrubber = _RedactingFilter(secrets)
    for logger in loggers:
        logger.addFilter(scrubber)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(scrubber)


def _send(method: str, url: str, payload: dict[str, Any]) -> requests.Response:
    with _scrubbed_http_logs(_secrets(url)):
        return _send_with_retries(method, url, payload)


def _send_with_retries(method: str, url: str, payload: dict[str, Any]) -> requests.Response:
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
        time.sleep(wait)
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
    response = _send("POST", _webhook(url, query={"wait": "true"}), {"embeds": [embed]})
    try:
        data = response.json()
    except ValueError:
        return None
    message_id = data.get("id") if isinstance(data, dict) else None
    return str(message_id) if message_id else None


def edit_message(url: str, message_id: str, embed: dict[str, Any]) -> None:
    _send("PATCH", _webhook(url, path=f"/messages/{message_id}"), {"embeds": [embed]})


def _webhook(url: str, *, path: str = "", query: Mapping[str, str] | None = None) -> str:
    """The webhook URL with a sub-path and query added (it may carry a query of its own)."""
    parts = urlsplit(url)
    params = [*parse_qsl(parts.query), *(query or {}).items()]
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + path, query=urlencode(params)))


# --- aggregation store -------------------------------------------------------------------
def _state_path() -> Path:
    configured = os.environ.get("ANALYSIS_ALERT_STATE_FILE")
    if configured:
        return Path(configured)
    home = os.environ.get("AIRFLOW_HOME") or tempfile.gettempdir()
    return Path(home) / "analysis_alert_state.json"


@contextmanager
def _locked_state(path: Path) -> Iterator[dict[str, dict[str, Any]] | None]:
    """Yield the state dict under an exclusive lock; None when the lock is unavailable."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path.with_suffix(".lock"), "a+")  # noqa: SIM115 - closed by `with` below
    except OSError as exc:  # better an ungrouped message than a lost alert
        log.warning("alert grouping unavailable (%s); posting without it", exc)
        yield None
        return
    with lock:
        deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    yield None  # better a duplicate message than a lost alert
                    return
                time.sleep(0.1)
        try:
            state = _load(path)
            yield state
            try:
                _save(path, state)
            except OSError as exc:  # the message went out; only the grouping is lost
                log.warning("alert grouping state not saved: %s", exc)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _load(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save(path: Path, state: dict[str, dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state), encoding="utf-8")
    tmp.replace(path)


def _window_seconds() -> float:
    try:
        return float(os.environ.get("ANALYSIS_ALERT_WINDOW_SECONDS", DEFAULT_WINDOW_SECONDS))
    except ValueError:
        return float(DEFAULT_WINDOW_SECONDS)


# --- the callback ----------------------------------------------------------------------------
def notify(alert: Alert, url: str, *, now: float | None = None) -> str:
    """Post or update the burst message for ``alert``. Returns 'posted' or 'updated'."""
    now = time.time() if now is None else now
    window = _window_seconds()
    secrets = _secrets(url)
    with _locked_state(_state_path()) as state:
        if state is None:
            post_message(url, build_embed(alert, count=1, since=now, ids=[], secrets=secrets))
            return "posted"
        for key in [k for k, v in state.items() if now - v.get("since", 0) >= window]:
            del state[key]
        entry = state.get(alert.key)
        if entry and entry.get("message_id"):
            entry["count"] += 1
            entry["ids"] = [*entry.get("ids", []), alert.analysis_id][-MAX_IDS_SHOWN:]
            embed = build_embed(
                alert, count=entry["count"], since=entry["since"], ids=entry["ids"], secrets=secrets
            )
            try:
                edit_message(url, entry["message_id"], embed)
                return "updated"
            except DiscordError as exc:  # message deleted or edit refused: start a new burst
                log.info("Could not update the burst message (%s); posting a new one", exc)
        embed = build_embed(alert, count=1, since=now, ids=[alert.analysis_id], secrets=secrets)
        message_id = post_message(url, embed)
        state[alert.key] = {
            "since": now,
            "count": 1,
            "ids": [alert.analysis_id],
            "message_id": message_id,
        }
        return "posted"


def alert_on_analysis_failure(context: Mapping[str, Any]) -> None:
    """on_failure_callback for every task of both DAGs. Never raises."""
    try:
        alert = alert_from_context(context)
        url = webhook_url()
        if not url:
            log.warning(
                "Connection %r is not configured; failure of %s/%s not sent to Discord",
                DISCORD_CONN_ID,
                alert.dag_id,
                alert.analysis_id,
            )
            return
        outcome = notify(alert, url)
        log.info("Discord alert %s for %s/%s", outcome, alert.dag_id, alert.analysis_id)
    except Exception as exc:
        log.warning("Discord alert not sent (%s)", type(exc).__name__)
