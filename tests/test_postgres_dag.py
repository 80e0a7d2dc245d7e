"""One DAG end to end with Airflow's metadata in PostgreSQL, as production keeps it.

`airflow db migrate` and `airflow dags test proctor_video` (local launcher: the real container
process, moto S3, the fake Gemini) against a throwaway PostgreSQL server started by the
fixture; the run, its result.json and report.html, and the run's row in PostgreSQL are
checked. SQLite stays the embedded default everywhere else.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools import airflow_env as af
from devtools import media
from devtools.fake_gemini import FakeGemini
from devtools.postgres import airflow_database_env, temporary_postgres

pytestmark = pytest.mark.slow

RECORDINGS, RESULTS = "pg-recordings", "pg-results"


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with temporary_postgres() as url:
        yield url


def _s3(endpoint: str) -> Any:
    import boto3

    creds = af.MOTO_CREDENTIALS
    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
        region_name=creds["AWS_DEFAULT_REGION"],
    )  # fmt: skip


def test_proctor_dag_end_to_end_on_postgres(tmp_path: Path, database_url: str) -> None:
    import psycopg

    webcam = media.make_live_webcam(tmp_path / "webcam.webm", duration=9)
    chunks = media.split_clusters(webcam, tmp_path / "chunks")
    with af.moto_s3(log_path=tmp_path / "moto.log") as endpoint, FakeGemini() as fake:
        s3 = _s3(endpoint)
        for bucket in (RECORDINGS, RESULTS):
            s3.create_bucket(Bucket=bucket)
        for chunk in chunks:
            s3.upload_file(str(chunk), RECORDINGS, f"webcam/A-PG/{int(chunk.stem):06d}.webm")
        env = af.airflow_env(
            tmp_path / "home",
            s3_endpoint=endpoint,
            recordings_bucket=RECORDINGS,
            results_bucket=RESULTS,
            gemini_base_url=fake.base_url,
            extra=airflow_database_env(database_url),
        )
        af.migrate(env)
        af.ensure_pool(env)
        conf = {"attempt_id": "A-PG", "webcam_uri": f"s3://{RECORDINGS}/webcam/A-PG/"}
        outcome = af.dags_test("proctor_video", conf, env)
        assert outcome.succeeded, outcome.output[-4000:]
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket=RESULTS)["Contents"]}
        result = json.loads(
            s3.get_object(Bucket=RESULTS, Key="proctor_video/A-PG/result.json")["Body"].read()
        )
    assert result["status"] == "complete"
    assert {"proctor_video/A-PG/report.html", "proctor_video/A-PG/video.webm"} <= keys
    # The run lives in PostgreSQL, not in a SQLite file under AIRFLOW_HOME.
    assert not list((tmp_path / "home").glob("*.db"))
    with psycopg.connect(database_url.replace("postgresql+psycopg", "postgresql")) as conn:
        rows = conn.execute("select state from dag_run where dag_id = 'proctor_video'")
        assert rows.fetchall() == [("success",)]
