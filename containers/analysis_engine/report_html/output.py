"""Writing `report.html` beside `result.json` (the one adapter of this package).

Called by the publishing step after `result.json` is written: the page is a view of that
result, so it must never cost the result. Any rendering or storage error is logged and
swallowed; the write itself goes through the same storage as `result.json` (an atomic
rename for file://, one PUT for s3://), so a reader never sees half a page.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from analysis_engine.report_html import REPORT_NAME, render_report

log = logging.getLogger("analysis")


class _Writer(Protocol):
    def join(self, base: str, name: str) -> str: ...

    def write_bytes(self, uri: str, data: bytes, *, content_type: str) -> str: ...


def write_report(storage: _Writer, output_uri: str, result: Mapping[str, Any]) -> str | None:
    """Render and write `report.html` under `output_uri`; its URI, or None on any failure."""
    try:
        uri = storage.join(output_uri, REPORT_NAME)
        page = render_report(result).encode("utf-8")
        storage.write_bytes(uri, page, content_type="text/html; charset=utf-8")
    except Exception as exc:  # the page is a convenience; result.json is the contract
        log.warning("report.html not written (%s: %s); result.json is unaffected",
                    type(exc).__name__, exc)  # fmt: skip
        return None
    log.info("report for people at %s", uri)
    return uri
