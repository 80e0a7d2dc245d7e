"""`analysis_pipeline.links.report_link`: one link that opens a report and plays its video
(the browser side is in test_browser_report.py)."""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from analysis_pipeline.links import report_link, s3v4_client

SIGNER = s3v4_client(
    region_name="eu-west-1", aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret"
)
REPORT = "s3://results/analyses/proctor_video/A-1/report.html"


def test_the_video_is_presigned_into_the_fragment_of_the_reports_link() -> None:
    link = report_link(
        REPORT, video_uri=REPORT.replace("report.html", "video.mp4"), expires_in=600,
        s3_client=SIGNER,
    )  # fmt: skip
    page, _, fragment = link.partition("#")
    parts = urlsplit(page)
    assert parts.path.endswith("/analyses/proctor_video/A-1/report.html")
    assert parse_qs(parts.query)["X-Amz-Expires"] == ["600"]
    assert fragment.startswith("video=") and "/" not in fragment  # fully URL-encoded
    video = urlsplit(unquote(fragment.removeprefix("video=")))
    assert video.netloc == parts.netloc and video.path.endswith("/A-1/video.mp4")
    assert "X-Amz-Signature" in parse_qs(video.query)


def test_without_a_video_it_is_the_reports_presigned_url() -> None:
    assert "#" not in report_link(REPORT, s3_client=SIGNER)


@pytest.mark.parametrize(
    "video, expires, message",
    [
        ("s3://other/analyses/proctor_video/A-1/video.webm", 60, "sibling"),
        ("s3://results/analyses/proctor_video/A-2/video.webm", 60, "sibling"),
        ("https://results/video.webm", 60, "not an s3://"),
        (None, 0, "expires_in"),
        (None, 8 * 24 * 3600, "expires_in"),
    ],
)
def test_links_that_could_not_work_are_refused(video: str | None, expires: int, message: str):
    with pytest.raises(ValueError, match=message):
        report_link(REPORT, video_uri=video, expires_in=expires, s3_client=SIGNER)
