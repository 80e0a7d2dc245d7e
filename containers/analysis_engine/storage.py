"""Object storage adapter: `s3://bucket/key` through boto3 and `file:///abs/path` on disk.

One small surface for both schemes so the runner never branches on where data lives. boto3
reads `AWS_ENDPOINT_URL` itself (moto in tests, LocalStack in demos), so no endpoint is
configured here. Writes are atomic: S3 PUT/multipart uploads only appear when complete;
file:// writes go to a temp file in the target directory and are `os.replace`d into place.

Missing inputs are bad input only when the caller says which field they came from
(`field="INPUT_URI"` -> `InvalidInputError`); everything else is a `StorageError` that names
the URI and the failure, never credentials.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlparse

from analysis_engine.errors import InvalidInputError, StorageError
from analysis_engine.models import ObjectRef

_MISSING_CODES = {"404", "NoSuchKey", "NoSuchBucket", "NotFound"}
_TEMP_PREFIX = ".tmp-"


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key: digit runs compare as numbers (`2` < `10`), and a name sorts by its stem first
    so `9-retry.webm` lands right after `9.webm` (not before it, as `-` < `.` would say)."""
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    return (_runs(stem), _runs(name), name)


def _runs(text: str) -> tuple[tuple[int, int | str], ...]:
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part.lower())
        for part in re.split(r"(\d+)", text)
        if part
    )


class Storage:
    """Read and write s3:// and file:// URIs. One boto3 client, created on first S3 use."""

    def __init__(self, client: Any | None = None) -> None:
        self._client = client
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- public API
    @staticmethod
    def join(base_uri: str, *parts: str) -> str:
        """`join("s3://b/out/", "segments", "3.json")` -> `s3://b/out/segments/3.json`."""
        pieces = [p.strip("/") for p in parts if p.strip("/")]
        for piece in pieces:
            if ".." in piece.split("/"):
                raise StorageError(f"refusing '..' in path part {piece!r}")
        return "/".join([base_uri.rstrip("/"), *pieces]) if pieces else base_uri

    def list_chunks(self, prefix_uri: str, *, field: str | None = None) -> list[ObjectRef]:
        """Objects directly under `prefix_uri`, in natural order; "directories", nested keys and
        hidden/temporary files are ignored. Empty -> [] (or InvalidInputError(field))."""
        prefix_uri = prefix_uri if prefix_uri.endswith("/") else prefix_uri + "/"
        refs = list(self._s3_list(prefix_uri) if _is_s3(prefix_uri) else _file_list(prefix_uri))
        refs.sort(key=lambda r: natural_key(r.name))
        if not refs and field is not None:
            raise InvalidInputError(field, f"no objects under prefix {prefix_uri}")
        return refs

    def stat(self, uri: str, *, field: str | None = None) -> ObjectRef:
        """Size of one object. Missing -> InvalidInputError(field) if given, else StorageError."""
        if _is_s3(uri):
            bucket, key = _split_s3(uri)
            try:
                head = self.client.head_object(Bucket=bucket, Key=key)
            except Exception as exc:
                raise self._error("stat", uri, exc, field) from exc
            return ObjectRef(
                uri,
                int(head["ContentLength"]),
                _etag(head.get("ETag")),
                _timestamp(head.get("LastModified")),
            )
        path = _file_path(uri)
        try:
            st = path.stat()
        except OSError as exc:
            raise self._error("stat", uri, exc, field) from exc
        if not path.is_file():
            raise self._error("stat", uri, FileNotFoundError(uri), field)
        return ObjectRef(uri, st.st_size, uploaded_at=st.st_mtime)

    def exists(self, uri: str) -> bool:
        try:
            self.stat(uri)
        except StorageError as exc:
            if getattr(exc, "missing", False):
                return False
            raise
        return True

    def download(self, uri: str, dest: Path, *, field: str | None = None) -> Path:
        """Stream one object to `dest` (parents created). Never holds the file in memory."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if _is_s3(uri):
            bucket, key = _split_s3(uri)
            try:
                # s3transfer streams in parts to a temp name and renames when complete.
                self.client.download_file(bucket, key, str(dest))
            except Exception as exc:
                raise self._error("download", uri, exc, field) from exc
            return dest
        src = _file_path(uri)
        try:
            with src.open("rb") as fin, _atomic_file(dest) as fout:
                shutil.copyfileobj(fin, fout, 1024 * 1024)
        except OSError as exc:
            raise self._error("download", uri, exc, field) from exc
        return dest

    def upload_file(
        self, src: Path, uri: str, *, content_type: str, retention: str | None = None
    ) -> str:
        """Copy a local file to `uri` (multipart for large files on S3). Returns `uri`.

        `retention` becomes the S3 object tag the results bucket's lifecycle rules match
        (e.g. "checkpoint", "thumbnail"); file:// ignores it."""
        if _is_s3(uri):
            bucket, key = _split_s3(uri)
            extra = {"ContentType": content_type, **_tagging(retention)}
            try:
                self.client.upload_file(str(src), bucket, key, ExtraArgs=extra)
            except Exception as exc:
                raise self._error("upload", uri, exc, None) from exc
            return uri
        dest = _file_path(uri)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            with Path(src).open("rb") as fin, _atomic_file(dest) as fout:
                shutil.copyfileobj(fin, fout, 1024 * 1024)
        except OSError as exc:
            raise self._error("upload", uri, exc, None) from exc
        return uri

    def write_bytes(
        self, uri: str, data: bytes, *, content_type: str, retention: str | None = None
    ) -> str:
        if _is_s3(uri):
            bucket, key = _split_s3(uri)
            extra = {"ContentType": content_type, **_tagging(retention)}
            try:
                self.client.put_object(Bucket=bucket, Key=key, Body=data, **extra)
            except Exception as exc:
                raise self._error("write", uri, exc, None) from exc
            return uri
        dest = _file_path(uri)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            with _atomic_file(dest) as fout:
                fout.write(data)
        except OSError as exc:
            raise self._error("write", uri, exc, None) from exc
        return uri

    def read_bytes(self, uri: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""
        if _is_s3(uri):
            bucket, key = _split_s3(uri)
            try:
                return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
            except Exception as exc:
                err = self._error("read", uri, exc, None)
                if getattr(err, "missing", False):
                    return None
                raise err from exc
        try:
            return _file_path(uri).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._error("read", uri, exc, None) from exc

    def write_json(self, uri: str, obj: Any, *, retention: str | None = None) -> str:
        data = json.dumps(obj, indent=2, ensure_ascii=False, default=str).encode()
        return self.write_bytes(uri, data, content_type="application/json", retention=retention)

    def read_json(self, uri: str) -> Any | None:
        """Parsed JSON, or None when the object does not exist."""
        data = self.read_bytes(uri)
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError as exc:
            raise StorageError(f"read {uri}: not valid JSON ({exc})") from exc

    # ---------------------------------------------------------------- S3 internals
    @property
    def client(self) -> Any:
        """The boto3 S3 client, created once (clients are thread-safe; sessions are not)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import boto3  # deferred: file:// users never pay for the import

                    self._client = boto3.session.Session().client("s3")
        return self._client

    def _s3_list(self, prefix_uri: str) -> Iterator[ObjectRef]:
        bucket, prefix = _split_s3(prefix_uri)
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            # Delimiter keeps nested "sub-directories" out: chunks live directly under the prefix.
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
                for obj in page.get("Contents", []):
                    key = obj["Key"]
                    name = key[len(prefix) :]
                    if not name or name.endswith("/") or name.startswith(_TEMP_PREFIX):
                        continue
                    etag = _etag(obj.get("ETag"))
                    uploaded = _timestamp(obj.get("LastModified"))
                    yield ObjectRef(f"s3://{bucket}/{key}", int(obj["Size"]), etag, uploaded)
        except Exception as exc:
            raise self._error("list", prefix_uri, exc, None) from exc

    @staticmethod
    def _error(op: str, uri: str, exc: BaseException, field: str | None) -> Exception:
        missing, reason = _describe(exc)
        if missing and field is not None:
            return InvalidInputError(field, f"{uri} does not exist")
        err = StorageError(f"{op} {uri}: {reason}")
        err.missing = missing  # type: ignore[attr-defined]
        return err


# -------------------------------------------------------------------- helpers
def _is_s3(uri: str) -> bool:
    if uri.startswith("s3://"):
        return True
    if uri.startswith("file://"):
        return False
    raise StorageError(f"unsupported URI scheme (want s3:// or file://): {uri[:80]!r}")


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise StorageError(f"no bucket in {uri!r}")
    return bucket, key


def _file_path(uri: str) -> Path:
    parsed = urlparse(uri)
    if parsed.netloc not in ("", "localhost"):
        raise StorageError(f"file:// URI must be absolute (file:///path): {uri!r}")
    path = unquote(parsed.path)
    if not path.startswith("/"):
        raise StorageError(f"file:// URI must be absolute (file:///path): {uri!r}")
    # A trailing slash names a directory (prefix); keep it meaningful for listing.
    return Path(path)


def _file_list(prefix_uri: str) -> Iterator[ObjectRef]:
    root = _file_path(prefix_uri)
    if not root.is_dir():
        return
    base = prefix_uri.rstrip("/")
    try:
        entries = list(os.scandir(root))
    except OSError as exc:
        raise StorageError(f"list {prefix_uri}: {exc.strerror or exc}") from exc
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_file():
            continue
        st = entry.stat()
        yield ObjectRef(f"{base}/{entry.name}", st.st_size, uploaded_at=st.st_mtime)


def _describe(exc: BaseException) -> tuple[bool, str]:
    """(is it "not found"?, a short reason without secrets)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        code = str(error.get("Code", ""))
        message = str(error.get("Message", "")) or type(exc).__name__
        return code in _MISSING_CODES, f"{code} {message}".strip()
    if isinstance(exc, FileNotFoundError):
        return True, "no such file"
    if isinstance(exc, OSError):
        return False, exc.strerror or str(exc)
    return False, f"{type(exc).__name__}: {exc}"[:300]


@contextlib.contextmanager
def _atomic_file(dest: Path) -> Iterator[BinaryIO]:
    """Write to a temp file beside `dest`, fsync, then os.replace: readers never see half."""
    fd, tmp_name = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


__all__ = ["ObjectRef", "Storage", "natural_key"]


def _etag(raw: object) -> str | None:
    return str(raw).strip('"') or None if raw else None


def _timestamp(value: object) -> float | None:
    """boto3's `LastModified` (an aware datetime) as POSIX seconds; None when absent."""
    return value.timestamp() if isinstance(value, datetime) else None


def _tagging(retention: str | None) -> dict[str, str]:
    """S3 `Tagging` for the lifecycle rules (terraform/main.tf, tag `retention`)."""
    return {"Tagging": f"retention={retention}"} if retention else {}
