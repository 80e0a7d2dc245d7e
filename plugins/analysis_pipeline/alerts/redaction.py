"""Keep secrets out of everything an alert quotes or logs.

Known values (the webhook URL and token, a Gemini key in this process' environment) are
replaced verbatim; Gemini keys are also caught by *pattern*, because in ecs mode the key
lives only in the container's task definition and never in the worker's environment, yet
it can still appear in the container log tail the alert quotes.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

REDACTED = "[redacted]"
# Google API keys: "AIza" + 35 URL-safe characters; and any `key=` query value.
SECRET_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"AIza[0-9A-Za-z_\-]{35}"),
    re.compile(r"(?<=[?&]key=)[^&\s'\"]+"),
    re.compile(r"(?<=\bkey=)[^&\s'\"]+"),
)
MIN_SECRET_LENGTH = 8


def known_secrets(webhook_url: str | None) -> list[str]:
    values = [webhook_url or "", os.environ.get("GEMINI_API_KEY", "")]
    if webhook_url:
        values.append(webhook_url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1])  # token
    return [v for v in values if len(v) >= MIN_SECRET_LENGTH]


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):  # the URL before its token
        text = text.replace(secret, REDACTED)
    for pattern in SECRET_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


class RedactingFilter(logging.Filter):
    """urllib3 logs request lines (with the webhook path) at DEBUG: scrub them."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = redact(message, self.secrets)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


@contextmanager
def scrubbed_http_logs(secrets: list[str]) -> Iterator[None]:
    loggers = [logging.getLogger(n) for n in ("urllib3.connectionpool", "urllib3", "requests")]
    scrubber = RedactingFilter(secrets)
    for logger in loggers:
        logger.addFilter(scrubber)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(scrubber)
