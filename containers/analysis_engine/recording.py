"""Getting the recording: one object downloaded as is, or a chunk prefix stitched into one
WebM; and the input's identity, which says whether a checkpoint or an earlier result was made
from this very recording.

The identity string is stamped into `result.json` (`input.identity`) and compared by the DAG
before it launches a container (`analysis_pipeline.identity`), so both sides must produce the
same string:
- one S3 object: `etag:<ETag without quotes>;size:<bytes>` (from HeadObject);
- an S3 prefix: `sha256:<hex>` over the lines `"<key> <ETag> <size>"` of every object under
  the prefix (full keys, recursive), sorted, joined with "\n", UTF-8;
- one file:// file: `sha256:<hex of its bytes>`;
- a file:// directory: `sha256:<hex>` over the lines `"<relative path> <sha256 hex> <size>"` of
  every file under it, sorted and joined the same way.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from analysis_engine import stitch
from analysis_engine.errors import InvalidInputError, StorageError
from analysis_engine.settings import Settings
from analysis_engine.storage import Storage

log = logging.getLogger("analysis")

_HASH_BLOCK = 1024 * 1024


@dataclass(frozen=True)
class Recording:
    path: Path
    identity: str
    stitch_report: stitch.StitchReport | None = None


def fetch_recording(settings: Settings, storage: Storage, work_dir: Path) -> Recording:
    """One object is downloaded as is; a chunk prefix is stitched into one WebM."""
    if settings.input_is_prefix:
        chunks = storage.list_chunks(settings.input_uri)
        if not chunks:
            raise InvalidInputError("INPUT_URI", f"no chunks under prefix {settings.input_uri}")
        # Before stitching: chunks that arrive later make another input, not this one.
        identity = prefix_identity(storage, settings.input_uri)
        log.info("stitching %d chunks from %s", len(chunks), settings.input_uri)
        path, report = stitch.stitch_from_storage(storage, chunks, work_dir / "stitched.webm")
        return Recording(path, identity, report)
    ref = storage.stat(settings.input_uri, field="INPUT_URI")
    if ref.size_bytes == 0:
        raise InvalidInputError("INPUT_URI", f"{settings.input_uri} is empty (0 bytes)")
    suffix = Path(settings.input_uri).suffix.lower() or ".bin"
    path = storage.download(settings.input_uri, work_dir / f"input{suffix}")
    if ref.etag:
        identity = f"etag:{ref.etag};size:{ref.size_bytes}"
    else:
        identity = f"sha256:{file_sha256(path)}"
    return Recording(path, identity)


def prefix_identity(storage: Storage, prefix_uri: str) -> str:
    if prefix_uri.startswith("s3://"):
        bucket, _, prefix = prefix_uri.removeprefix("s3://").partition("/")
        pages = storage.client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix
        )
        try:
            lines = [
                f"{obj['Key']} {str(obj.get('ETag', '')).strip(chr(34))} {int(obj.get('Size', 0))}"
                for page in pages
                for obj in page.get("Contents", [])
            ]
        except Exception as exc:  # botocore's own errors: name the URI, never credentials
            raise StorageError(f"list {prefix_uri}: {type(exc).__name__}: {exc}"[:300]) from exc
    else:
        root = Path(unquote(urlparse(prefix_uri).path))
        lines = [
            f"{p.relative_to(root).as_posix()} {file_sha256(p)} {p.stat().st_size}"
            for p in root.rglob("*")
            if p.is_file()
        ]
    return "sha256:" + hashlib.sha256("\n".join(sorted(lines)).encode("utf-8")).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()
