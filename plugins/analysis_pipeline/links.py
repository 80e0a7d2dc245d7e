"""One link a person can open: a presigned `report.html` that also plays its video.

`report.html` carries its evidence thumbnails inside (data: URIs), but a stitched video is
far too large for that, and a presigned URL signs one object only: the page's relative
`video.webm` would be refused. So the link is the report's presigned URL with the video's
presigned URL in its fragment, `…/report.html?X-Amz-…#video=<url-encoded presigned video
URL>`. Browsers never send a fragment to the server (the report's signature stays valid)
and the page plays that URL only when it names the sibling video on the same origin.

The backend makes these links when a person asks for a report (with the read role Terraform
outputs as `results_reader_role_arn`), never ahead of time: presigned URLs expire, at the
latest when the credentials that signed them do. Any language can do the same: presign
both objects with the same client and expiry, then append `#video=` + the URL-encoded video
URL (docs/API.md, "Opening a report").
"""

from __future__ import annotations

import posixpath
from typing import Any
from urllib.parse import quote

DEFAULT_EXPIRES_SECONDS = 3600
MAX_EXPIRES_SECONDS = 7 * 24 * 3600  # SigV4's limit


def _bucket_key(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"{uri!r} is not an s3://bucket/key URI")
    bucket, key = uri[5:].split("/", 1)
    if not bucket or not key or key.endswith("/"):
        raise ValueError(f"{uri!r} does not name one object")
    return bucket, key


def s3v4_client(**kwargs: Any) -> Any:
    """An S3 client that presigns with Signature Version 4, which objects encrypted with
    SSE-KMS (the results bucket's default) require."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(signature_version="s3v4"), **kwargs)


def report_link(
    report_uri: str,
    *,
    video_uri: str | None = None,
    expires_in: int = DEFAULT_EXPIRES_SECONDS,
    s3_client: Any | None = None,
) -> str:
    """The presigned URL of `report_uri`, with `video_uri` (its sibling video, e.g. the
    callback's `video_uri`) presigned into the fragment when given. `s3_client` must sign
    with SigV4 (default: `s3v4_client()`)."""
    s3_client = s3_client or s3v4_client()
    if not 1 <= expires_in <= MAX_EXPIRES_SECONDS:
        raise ValueError(f"expires_in must be between 1 and {MAX_EXPIRES_SECONDS} seconds")
    bucket, key = _bucket_key(report_uri)
    link = _presign(s3_client, bucket, key, expires_in)
    if video_uri is None:
        return link
    video_bucket, video_key = _bucket_key(video_uri)
    if video_bucket != bucket or posixpath.dirname(video_key) != posixpath.dirname(key):
        raise ValueError("video_uri must be the report's sibling (same bucket and folder)")
    video = _presign(s3_client, video_bucket, video_key, expires_in)
    return f"{link}#video={quote(video, safe='')}"


def _presign(s3_client: Any, bucket: str, key: str, expires_in: int) -> str:
    return s3_client.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_in
    )
