"""Writing `report.html` beside `result.json` (the one adapter of this package).

Called by the publishing step after `result.json` is written: the page is a view of that
result (plus the evidence thumbnails the proctor kind uploaded beside it, read back and
embedded), so it must never cost the result. Any rendering or storage error is logged and
swallowed; the write itself goes through the same storage as `result.json` (an atomic
rename for file://, one PUT for s3://), so a reader never sees half a page.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from analysis_engine.report_html import REPORT_NAME, render_report, thumbnail_names

log = logging.getLogger("analysis")

# Thumbnails are small JPEGs (~10-40 kB, at most 60 per report); one this large is not a
# thumbnail and stays a link, and the page stays a few MB at most.
MAX_EMBEDDED_BYTES = 256 * 1024
MAX_EMBEDDED_TOTAL_BYTES = 8 * 1024 * 1024
# A page carrying the candidate's face expires with the thumbnails (the results bucket's
# lifecycle rule for this tag, terraform/s3.tf), not later.
EMBEDDED_RETENTION = "thumbnail"


class _Storage(Protocol):
    def join(self, base: str, name: str) -> str: ...

    def read_bytes(self, uri: str) -> bytes | None: ...

    def write_bytes(
        self, uri: str, data: bytes, *, content_type: str, retention: str | None = None
    ) -> str: ...


def write_report(storage: _Storage, output_uri: str, result: Mapping[str, Any]) -> str | None:
    """Render and write `report.html` under `output_uri`, the evidence thumbnails embedded;
    its URI, or None on any failure."""
    try:
        uri = storage.join(output_uri, REPORT_NAME)
        embedded = embedded_thumbnails(storage, output_uri, result)
        page = render_report(result, embedded=embedded).encode("utf-8")
        storage.write_bytes(
            uri,
            page,
            content_type="text/html; charset=utf-8",
            retention=EMBEDDED_RETENTION if embedded else None,
        )
    except Exception as exc:  # the page is a convenience; result.json is the contract
        log.warning("report.html not written (%s: %s); result.json is unaffected",
                    type(exc).__name__, exc)  # fmt: skip
        return None
    log.info("report for people at %s", uri)
    return uri


def embedded_thumbnails(
    storage: _Storage, output_uri: str, result: Mapping[str, Any]
) -> dict[str, str]:
    """Sibling thumbnail name -> data: URI, for those that exist and fit (a missing or
    oversized one stays a relative link; reading one is never worth the page)."""
    embedded: dict[str, str] = {}
    total = 0
    for name in thumbnail_names(result):
        try:
            data = storage.read_bytes(storage.join(output_uri, name))
        except Exception as exc:
            log.warning("thumbnail %s not embedded: %s", name, exc)
            continue
        if data is None or len(data) > MAX_EMBEDDED_BYTES:
            continue
        if total + len(data) > MAX_EMBEDDED_TOTAL_BYTES:
            break
        total += len(data)
        embedded[name] = "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")
    return embedded
