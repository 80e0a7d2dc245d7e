"""`report.html`: the analysis for people, one self-contained page (pure rendering).

    html = render_report(result)   # result.json as a dict -> one HTML string

The page carries its own CSS and script (no external assets; a Content-Security-Policy
forbids any) and, embedded as data: URIs, the evidence thumbnails, so it works opened
through ONE presigned link to `report.html`. The stitched video is too large to embed: the
page plays the sibling `video.webm`/`video.mp4`, or, when its own URL ends in
`#video=<presigned URL of that sibling>` (what `analysis_pipeline.links.report_link` makes;
the fragment never reaches S3, so the page's own signature stays valid), that URL. Nothing
else is accepted there: another origin or another file is ignored.

Every string in a result may come from the model or the recording, so Jinja2 autoescapes
everything and `view` trusts no value.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from functools import cache
from typing import Any

import jinja2

from analysis_engine.report_html import view

REPORT_NAME = "report.html"


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("analysis_engine.report_html", "templates"),
        autoescape=True,  # every template, whatever its extension
        undefined=jinja2.StrictUndefined,  # a template typo fails the test, not the page
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_report(
    result: Mapping[str, Any],
    *,
    nonce: str | None = None,
    embedded: Mapping[str, str] | None = None,
) -> str:
    """The report page for one result.json (any status, either kind); `embedded` maps
    sibling outputs (evidence thumbnails) to the data: URIs the page carries instead."""
    page = view.common(result)
    if page["kind"] == "proctor_video":
        body = view.proctor(result, embedded)
    elif page["kind"] == "task_analysis":
        body = view.task(result)
    else:
        body = {"present": False}
    template = _environment().get_template(f"{page['kind']}.html.j2")
    return template.render(
        page=page, r=body, nonce=nonce or secrets.token_urlsafe(16), clock=view.clock
    )


__all__ = ["REPORT_NAME", "render_report", "thumbnail_names"]

thumbnail_names = view.thumbnail_names
