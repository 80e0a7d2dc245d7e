"""Storage on s3:// (moto) and file:// behaves the same: natural order, atomic writes, errors."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from analysis_engine.errors import InvalidInputError, StorageError
from analysis_engine.storage import Storage, natural_key

BUCKET = "recordings-test"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Storage]:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield Storage()


@pytest.fixture(params=["s3", "file"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Storage, str]]:
    """(storage, base URI ending in '/') for both schemes."""
    if request.param == "s3":
        yield request.getfixturevalue("s3"), f"s3://{BUCKET}/rec/"
    else:
        yield Storage(), f"file://{tmp_path}/rec/"


def put(storage: Storage, uri: str, data: bytes = b"x") -> None:
    storage.write_bytes(uri, data, content_type="application/octet-stream")


def test_natural_key_orders_numbers_and_retries() -> None:
    names = ["10.webm", "9-retry.webm", "2.webm", "1.webm", "9.webm", "100.webm", "20.webm"]
    assert sorted(names, key=natural_key) == [
        "1.webm",
        "2.webm",
        "9.webm",
        "9-retry.webm",
        "10.webm",
        "20.webm",
        "100.webm",
    ]


def test_list_chunks_natural_order(root: tuple[Storage, str]) -> None:
    storage, base = root
    for name in ["10.webm", "2.webm", "9-retry.webm", "9.webm", "1.webm"]:
        put(storage, base + name, name.encode())
    refs = storage.list_chunks(base)
    assert [r.name for r in refs] == ["1.webm", "2.webm", "9.webm", "9-retry.webm", "10.webm"]
    assert refs[2].size_bytes == len(b"9.webm")
    assert all(r.uri.startswith(base) for r in refs)


def test_listing_and_stat_carry_the_upload_time(root: tuple[Storage, str]) -> None:
    storage, base = root
    put(storage, base + "0.webm")
    put(storage, base + "1.webm")
    if base.startswith("s3://"):
        # moto stamps LastModified itself (it cannot be set): the listing must carry exactly
        # what S3 says, as POSIX seconds.
        listed = storage.client.list_objects_v2(Bucket=BUCKET, Prefix="rec/")["Contents"]
        expected = {o["Key"].rsplit("/", 1)[-1]: o["LastModified"].timestamp() for o in listed}
    else:
        directory = Path(base.removeprefix("file://"))
        expected = {"0.webm": 1_700_000_000.0, "1.webm": 1_700_000_023.5}
        for name, when in expected.items():
            os.utime(directory / name, (when, when))
    refs = storage.list_chunks(base)
    assert {r.name: r.uploaded_at for r in refs} == pytest.approx(expected)
    assert all(r.uploaded_at is not None for r in refs)
    assert storage.stat(base + "1.webm").uploaded_at == pytest.approx(expected["1.webm"])


def test_list_chunks_accepts_prefix_without_slash(root: tuple[Storage, str]) -> None:
    storage, base = root
    put(storage, base + "0.webm")
    assert [r.name for r in storage.list_chunks(base.rstrip("/"))] == ["0.webm"]


def test_list_chunks_ignores_directories_and_nested_keys(root: tuple[Storage, str]) -> None:
    storage, base = root
    put(storage, base + "1.webm")
    put(storage, base + "sub/2.webm")
    if base.startswith("s3://"):
        # A console-created "folder" is a zero-byte key ending in '/'.
        storage.client.put_object(Bucket=BUCKET, Key="rec/", Body=b"")
        storage.client.put_object(Bucket=BUCKET, Key="rec/folder/", Body=b"")
    assert [r.name for r in storage.list_chunks(base)] == ["1.webm"]


def test_list_chunks_paginates(s3: Storage) -> None:
    client = s3.client
    for i in range(1005):  # more than one page of 1000
        client.put_object(Bucket=BUCKET, Key=f"many/{i}.webm", Body=b"")
    refs = s3.list_chunks(f"s3://{BUCKET}/many/")
    assert len(refs) == 1005
    assert refs[0].name == "0.webm"
    assert refs[-1].name == "1004.webm"


def test_empty_prefix(root: tuple[Storage, str]) -> None:
    storage, base = root
    assert storage.list_chunks(base + "nothing/") == []
    with pytest.raises(InvalidInputError) as err:
        storage.list_chunks(base + "nothing/", field="INPUT_URI")
    assert err.value.field == "INPUT_URI"
    assert "no objects under prefix" in str(err.value)


def test_stat_and_missing_object(root: tuple[Storage, str]) -> None:
    storage, base = root
    put(storage, base + "a.mp4", b"12345")
    assert storage.stat(base + "a.mp4").size_bytes == 5
    assert storage.exists(base + "a.mp4")
    assert not storage.exists(base + "missing.mp4")
    with pytest.raises(InvalidInputError, match=r"INPUT_URI: .*missing\.mp4 does not exist"):
        storage.stat(base + "missing.mp4", field="INPUT_URI")
    with pytest.raises(StorageError, match=r"missing\.mp4"):
        storage.stat(base + "missing.mp4")


def test_missing_bucket_is_bad_input_when_asked(s3: Storage) -> None:
    with pytest.raises(InvalidInputError):
        s3.stat("s3://no-such-bucket-here/x.mp4", field="INPUT_URI")


def test_download_streams_to_file(root: tuple[Storage, str], tmp_path: Path) -> None:
    storage, base = root
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(9 * 1024 * 1024))  # above the multipart threshold
    storage.upload_file(src, base + "big.bin", content_type="video/webm")
    dest = storage.download(base + "big.bin", tmp_path / "dl" / "big.bin")
    assert dest.read_bytes() == src.read_bytes()
    with pytest.raises(InvalidInputError):
        storage.download(base + "nope.bin", tmp_path / "x", field="INPUT_URI")


def test_upload_sets_content_type(s3: Storage, tmp_path: Path) -> None:
    src = tmp_path / "v.webm"
    src.write_bytes(b"webm")
    s3.upload_file(src, f"s3://{BUCKET}/out/video.webm", content_type="video/webm")
    head = s3.client.head_object(Bucket=BUCKET, Key="out/video.webm")
    assert head["ContentType"] == "video/webm"


def test_json_roundtrip_and_missing(root: tuple[Storage, str]) -> None:
    storage, base = root
    uri = storage.join(base, "out", "segments", "3.json")
    assert storage.read_json(uri) is None
    assert storage.read_bytes(uri) is None
    storage.write_json(uri, {"index": 3, "text": "é ✓"})
    assert storage.read_json(uri) == {"index": 3, "text": "é ✓"}
    storage.write_json(uri, {"index": 3, "v": 2})  # overwrite
    assert storage.read_json(uri) == {"index": 3, "v": 2}


def test_join() -> None:
    assert Storage.join("s3://b/out/", "segments", "3.json") == "s3://b/out/segments/3.json"
    assert Storage.join("s3://b/out", "/a/", "b") == "s3://b/out/a/b"
    assert Storage.join("file:///tmp/x/", "result.json") == "file:///tmp/x/result.json"
    with pytest.raises(StorageError):
        Storage.join("s3://b/out/", "../escape")


def test_file_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = Storage()
    target = tmp_path / "result.json"
    uri = f"file://{target}"
    storage.write_json(uri, {"status": "old"})
    real_replace = os.replace
    seen: list[str] = []

    def spy(src: str, dst: str) -> None:
        # At the moment of the swap the old content is intact and the temp file is complete.
        seen.append(target.read_text())
        assert Path(src).parent == target.parent
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    storage.write_json(uri, {"status": "new"})
    assert '"old"' in seen[0]
    assert storage.read_json(uri) == {"status": "new"}


def test_failed_file_write_leaves_old_content_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = Storage()
    target = tmp_path / "result.json"
    storage.write_json(f"file://{target}", {"status": "old"})

    def boom(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(StorageError, match="No space left"):
        storage.write_json(f"file://{target}", {"status": "new"})
    assert storage.read_json(f"file://{target}") == {"status": "old"}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_concurrent_readers_never_see_half_a_file(tmp_path: Path) -> None:
    storage = Storage()
    uri = f"file://{tmp_path}/r.json"
    storage.write_json(uri, {"n": 0, "pad": "x" * 200_000})
    stop = threading.Event()
    errors: list[Exception] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                storage.read_json(uri)
            except Exception as exc:
                errors.append(exc)

    t = threading.Thread(target=reader)
    t.start()
    for n in range(30):
        storage.write_json(uri, {"n": n, "pad": "x" * 200_000})
    stop.set()
    t.join()
    assert errors == []


def test_one_client_is_reused(s3: Storage) -> None:
    assert s3.client is s3.client


def test_bad_scheme_and_relative_file_uri() -> None:
    storage = Storage()
    with pytest.raises(StorageError, match="scheme"):
        storage.read_bytes("http://example.com/x")
    with pytest.raises(StorageError, match="absolute"):
        storage.read_bytes("file://relative/path")


def test_errors_do_not_leak_credentials(s3: Storage) -> None:
    with pytest.raises(StorageError) as err:
        s3.write_bytes("s3://no-such-bucket-here/k", b"x", content_type="text/plain")
    assert "testing" not in str(err.value)
    assert "s3://no-such-bucket-here/k" in str(err.value)


def test_honours_aws_endpoint_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """No endpoint is configured in code: boto3 picks AWS_ENDPOINT_URL up (moto server here)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        storage = Storage()
        storage.client.create_bucket(Bucket="via-endpoint")
        storage.write_json("s3://via-endpoint/out/result.json", {"ok": True})
        assert storage.read_json("s3://via-endpoint/out/result.json") == {"ok": True}
        assert storage.client.meta.endpoint_url == f"http://{host}:{port}"
    finally:
        server.stop()
