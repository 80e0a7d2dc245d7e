"""Thin adapter over recordings and results: ``s3://`` through boto3, ``file://`` on disk.

boto3 honours ``AWS_ENDPOINT_URL`` itself, which is how tests and the demo reach moto.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import boto3
from botocore.exceptions import ClientError


class RecordingMissingError(ValueError):
    """The recording a run names is absent or empty; analysing it would only burn Fargate time."""


def split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def file_path(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path))


def s3_client() -> Any:
    return boto3.client("s3")


def _missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


def head_or_none(client: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """HeadObject, or None when the object does not exist (other errors propagate)."""
    try:
        return client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if _missing(exc):
            return None
        raise


def recording_size(uri: str) -> int:
    """Total bytes under ``uri`` (one object, or every object of a prefix ending in '/')."""
    if uri.startswith("file://"):
        return _file_size(file_path(uri), prefix=uri.endswith("/"))
    bucket, key = split_s3(uri)
    client = s3_client()
    if not uri.endswith("/"):
        head = head_or_none(client, bucket, key)
        return int(head["ContentLength"]) if head else 0
    total = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
        total += sum(int(obj.get("Size", 0)) for obj in page.get("Contents", []))
    return total


def _file_size(path: Path, *, prefix: bool) -> int:
    if prefix:
        if not path.is_dir():
            return 0
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.is_file() else 0


def require_recording(uri: str) -> int:
    size = recording_size(uri)
    if size <= 0:
        raise RecordingMissingError(f"recording {uri} does not exist or is empty")
    return size


def read_json(uri: str) -> dict[str, Any] | None:
    """The parsed JSON document at ``uri``; None when it does not exist."""
    if uri.startswith("file://"):
        path = file_path(uri)
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    bucket, key = split_s3(uri)
    try:
        body = s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if _missing(exc):
            return None
        raise
    return json.loads(body)


def list_names(folder_uri: str, *, prefix: str = "") -> list[str]:
    """Names of the objects directly in `folder_uri` (ending in '/') starting with `prefix`."""
    if folder_uri.startswith("file://"):
        folder = file_path(folder_uri)
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_file() and p.name.startswith(prefix))
    bucket, key = split_s3(folder_uri)
    names = []
    pages = (
        s3_client()
        .get_paginator("list_objects_v2")
        .paginate(Bucket=bucket, Prefix=key + prefix, Delimiter="/")
    )
    for page in pages:
        names += [obj["Key"][len(key) :] for obj in page.get("Contents", [])]
    return sorted(names)
