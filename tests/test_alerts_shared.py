"""One alert per storm across hosts: two AIRFLOW_HOMEs (two "hosts") share one metadata
database (PostgreSQL, as production hosts share it; one Fernet key, as a deployment's hosts
do), failures run through real `airflow dags test` processes in both at once, against a
Discord webhook that rate-limits. The burst is one message, edited up to the full count."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import MotoS3, start_fake_discord

from devtools import airflow_env as af
from devtools.postgres import airflow_database_env, temporary_postgres

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture
def database_url() -> Iterator[str]:
    with temporary_postgres() as url:
        yield url


def test_failures_on_two_hosts_sharing_one_database_are_one_message(
    moto_s3: MotoS3, tmp_path: Path, database_url: str
) -> None:
    lock = threading.Lock()
    limited = {"left": 2}
    answered: list[tuple[str, int, dict[str, Any]]] = []

    def rate_limit_first_requests(method: str, path: str, body: bytes) -> tuple[int, Any]:
        with lock:
            status = 200
            if limited["left"] > 0:
                limited["left"] -= 1
                status = 429
            answered.append((method, status, json.loads(body)))
        if status == 429:
            return 429, {"message": "You are being rate limited.", "retry_after": 1.5}
        return 200, {"id": "m1"}

    from cryptography.fernet import Fernet

    discord = start_fake_discord(rate_limit_first_requests, token="shared-token")
    # Hosts of one deployment share the Fernet key: without it each AIRFLOW_HOME writes its
    # own airflow.cfg with a fresh key and cannot read the other's Variables (the grouping
    # state), so both hosts would claim the burst.
    fernet_key = Fernet.generate_key().decode()
    envs = []
    for host in ("host-a", "host-b"):
        envs.append(
            af.airflow_env(
                tmp_path / host,
                s3_endpoint=moto_s3.endpoint,
                recordings_bucket="recordings",
                results_bucket="results",
                gemini_base_url=None,
                extra={
                    **airflow_database_env(database_url),
                    "AIRFLOW__CORE__FERNET_KEY": fernet_key,
                    "AIRFLOW_CONN_DISCORD_ALERTS": json.dumps(
                        {"conn_type": "http", "host": discord.url}
                    ),
                },
            )
        )
    try:
        af.migrate(envs[0])
        # No pool: every run fails at validate, before the launch step that would take it.
        # Register the DAGs once: concurrent first-time syncs race on inserting the rows.
        done = af.run_airflow(["dags", "reserialize"], envs[0])
        assert done.returncode == 0, done.stderr[-2000:]
        runs = []
        for i, env in enumerate([envs[0], envs[1], envs[0], envs[1]]):
            conf = {
                "submission_id": f"S-STORM-{i}",
                "screenshare_uri": f"s3://recordings/storm/S-STORM-{i}/screen.mp4",  # missing
            }
            argv = [af.AIRFLOW, "dags", "test", "task_analysis", "-c", json.dumps(conf)]
            runs.append(
                subprocess.Popen(
                    argv, env=env, cwd=af.REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
                )
            )
        outputs = [run.communicate(timeout=600)[0].decode(errors="replace") for run in runs]
    finally:
        discord.close()
    for output in outputs:
        assert "does not exist or is empty" in output, output[-3000:]
    delivered = [(method, body) for method, status, body in answered if status == 200]
    assert [method for method, _ in delivered].count("POST") == 1, answered
    # Later failures edit that message (or, when they arrived before it was posted, the
    # poster counted them already).
    assert all(
        r["path"].endswith("/messages/m1") for r in discord.requests if r["method"] == "PATCH"
    )
    titles = [body["embeds"][0]["title"] for _, body in delivered]
    assert titles[-1] == "task_analysis: 4 failures with the same reason", titles
    assert "shared-token" not in json.dumps(answered)
