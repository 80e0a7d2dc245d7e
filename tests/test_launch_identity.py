"""The input identity the DAG side compares with result.json's ``input.identity`` (the
container stamps the same string): exact formats for S3 objects, prefixes and files."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from analysis_pipeline.identity import input_identity


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="rec")
        yield client


def test_one_s3_object_is_its_etag_and_size(s3: Any) -> None:
    s3.put_object(Bucket="rec", Key="S-1/screen.mp4", Body=b"video")
    etag = hashlib.md5(b"video").hexdigest()
    assert input_identity("s3://rec/S-1/screen.mp4") == f"etag:{etag};size:5"
    assert input_identity("s3://rec/S-1/missing.mp4") is None


def test_an_s3_prefix_hashes_its_sorted_listing(s3: Any) -> None:
    s3.put_object(Bucket="rec", Key="A-1/10.webm", Body=b"b")
    s3.put_object(Bucket="rec", Key="A-1/2.webm", Body=b"a")
    lines = sorted(
        f"A-1/{name} {hashlib.md5(body).hexdigest()} 1"
        for name, body in (("10.webm", b"b"), ("2.webm", b"a"))
    )
    expected = "sha256:" + hashlib.sha256("\n".join(lines).encode()).hexdigest()
    first = input_identity("s3://rec/A-1/")
    assert first == expected
    s3.put_object(Bucket="rec", Key="A-1/11.webm", Body=b"late chunk")
    assert input_identity("s3://rec/A-1/") != first  # a new chunk is a new input
    assert input_identity("s3://rec/empty/") is None


def test_file_uris_hash_their_bytes(tmp_path: Path) -> None:
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "0.webm").write_bytes(b"chunk")
    digest = hashlib.sha256(b"chunk").hexdigest()
    assert input_identity(f"file://{tmp_path}/rec/0.webm") == f"sha256:{digest}"
    listing = f"0.webm {digest} 5"
    expected = "sha256:" + hashlib.sha256(listing.encode()).hexdigest()
    assert input_identity(f"file://{tmp_path}/rec/") == expected
    assert input_identity(f"file://{tmp_path}/nothing/") is None
