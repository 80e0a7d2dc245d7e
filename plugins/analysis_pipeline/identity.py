"""The identity of a run's input recording: what "the same input" means for "never pay twice".

The container stamps the same string into ``result.json`` (top-level
``input: {"uri", "identity"}``), so a finished result is reused only when the recording it
was made from is byte-for-byte what the new run would analyse. Exact format (both sides
must produce the same string):

- one S3 object: ``etag:<ETag without quotes>;size:<bytes>`` (from HeadObject);
- an S3 prefix (``…/``): ``sha256:<hex>`` over the lines ``"<key> <ETag without quotes>
  <size>"`` of every object ListObjectsV2 returns under the prefix (full keys, recursive),
  sorted, joined with ``"\\n"`` (no trailing newline), UTF-8;
- one ``file://`` file: ``sha256:<hex of the file's bytes>``;
- a ``file://`` directory (``…/``): ``sha256:<hex>`` over the lines ``"<path relative to
  the directory, '/'-separated> <sha256 hex of its bytes> <size>"`` of every file under it,
  sorted and joined the same way.

An absent or empty input has no identity (``None``): nothing can match it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from analysis_pipeline import storage


def lines_digest(lines: list[str]) -> str:
    return "sha256:" + hashlib.sha256("\n".join(sorted(lines)).encode("utf-8")).hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def input_identity(uri: str, *, client: Any | None = None) -> str | None:
    """The identity string of the recording at ``uri`` (format above); None when absent."""
    if uri.startswith("file://"):
        return _file_identity(storage.file_path(uri), prefix=uri.endswith("/"))
    bucket, key = storage.split_s3(uri)
    client = client or storage.s3_client()
    if not uri.endswith("/"):
        head = storage.head_or_none(client, bucket, key)
        if head is None:
            return None
        return f"etag:{str(head['ETag']).strip(chr(34))};size:{int(head['ContentLength'])}"
    lines = [
        f"{obj['Key']} {str(obj.get('ETag', '')).strip(chr(34))} {int(obj.get('Size', 0))}"
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key)
        for obj in page.get("Contents", [])
    ]
    return lines_digest(lines) if lines else None


def _file_identity(path: Path, *, prefix: bool) -> str | None:
    if not prefix:
        return f"sha256:{_file_sha256(path)}" if path.is_file() else None
    if not path.is_dir():
        return None
    lines = [
        f"{p.relative_to(path).as_posix()} {_file_sha256(p)} {p.stat().st_size}"
        for p in path.rglob("*")
        if p.is_file()
    ]
    return lines_digest(lines) if lines else None
