"""A lever changed in SSM reaches a running Airflow without a restart: a real dag-processor
(ecs mode, Airflow's SSM secrets backend against moto, its secrets cache on) re-parses the
DAGs, and the new cap, vCPU size, timeout and pool size are in what the scheduler holds;
the scheduler-side listener then sizes the pool to it. The time it took is printed (the
bound docs/DEPLOY.md states is the cache TTL plus one parse interval)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from conftest import terraform_settings

from devtools import airflow_env as af

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[1]
PARAMETER = "/airflow/variables/analysis_pipeline_settings"
PARSE_INTERVAL, CACHE_TTL = 3, 3


def _max_active_runs(db: Path, dag_id: str) -> int | None:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT max_active_runs FROM dag WHERE dag_id = ?", (dag_id,)).fetchone()
    return None if row is None else int(row[0])


def _wait(predicate, *, timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.5)
    raise AssertionError(f"{what} not seen within {timeout:.0f} s")


def test_a_lever_changed_in_ssm_reaches_the_dags_without_a_restart(tmp_path: Path) -> None:
    with af.moto_s3(log_path=tmp_path / "moto.log") as endpoint:
        ssm = boto3.client("ssm", endpoint_url=endpoint, region_name="us-east-1", **_creds())
        ssm.put_parameter(Name=PARAMETER, Type="String", Value=json.dumps(terraform_settings()))
        home = tmp_path / "airflow"
        env = af.airflow_env(
            home,
            s3_endpoint=endpoint,
            recordings_bucket="analysis-pipeline-recordings",
            results_bucket="analysis-pipeline-results",
            gemini_base_url=None,
        )
        env.update(
            {
                "ANALYSIS_LAUNCHER": "ecs",  # the settings must come from SSM, not defaults
                "AIRFLOW__SECRETS__BACKEND": "airflow.providers.amazon.aws.secrets."
                "systems_manager.SystemsManagerParameterStoreBackend",
                "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps(
                    {"variables_prefix": "/airflow/variables", "connections_prefix": None}
                ),
                "AIRFLOW__SECRETS__USE_CACHE": "True",
                "AIRFLOW__SECRETS__CACHE_TTL_SECONDS": str(CACHE_TTL),
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(PARSE_INTERVAL),
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            }
        )
        for name in ("ALLOWED_INPUT_PREFIXES", "RESULTS_URI"):
            env.pop(name, None)  # no hand-copied value anywhere
        af.migrate(env)
        processor = subprocess.Popen(
            [af.AIRFLOW, "dag-processor"],
            env=env,
            cwd=REPO,
            stdout=open(tmp_path / "dag-processor.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        db = home / "airflow.db"
        try:
            _wait(lambda: _max_active_runs(db, "task_analysis") == 12, timeout=240, what="parse")
            changed = terraform_settings(
                MAX_CONCURRENT_ANALYSES=5,
                TASK_ANALYZER_VCPU=8,
                ANALYSIS_TIMEOUT_MINUTES=60,
                FARGATE_VCPU_POOL_SLOTS=32,
            )
            ssm.put_parameter(
                Name=PARAMETER, Type="String", Value=json.dumps(changed), Overwrite=True
            )
            took = _wait(
                lambda: _max_active_runs(db, "task_analysis") == 5, timeout=180, what="new cap"
            )
            print(
                f"\nlever change reached max_active_runs after {took:.1f} s "
                f"(cache TTL {CACHE_TTL} s, parse interval {PARSE_INTERVAL} s; under load)"
            )
            assert processor.poll() is None  # the same process: no restart
            wanted = {"pool_slots": 8, "pool_size": 32, "timeout_s": 3600.0}
            seen: list[dict[str, float]] = []
            _wait(
                lambda: seen.append(_scheduler_view(env, "task_analysis")) or seen[-1] == wanted,
                timeout=120,
                what=f"the new launch settings and pool (last seen {seen[-1:]})",
            )
        finally:
            processor.terminate()
            processor.wait(timeout=30)


def _scheduler_view(env: dict[str, str], dag_id: str) -> dict[str, float]:
    """The launch task as the scheduler loads it from the serialized DAG, and the pool the
    scheduler-side listener then keeps (run in a process on the same database)."""
    script = f"""
import json, threading
from types import SimpleNamespace
from airflow.models.serialized_dag import SerializedDagModel
from airflow.utils.session import create_session
from analysis_pipeline.pool import PoolCheckListener
from airflow.models.pool import Pool
with create_session() as session:
    dag = SerializedDagModel.get_dag({dag_id!r}, session=session)
task = dag.get_task("launch")
run = SimpleNamespace(dag_id={dag_id!r}, run_id="live", dag=dag)
before = set(threading.enumerate())
PoolCheckListener().on_dag_run_running(dag_run=run, msg="started")
for t in set(threading.enumerate()) - before:
    t.join(30)
with create_session() as session:
    pool = session.query(Pool).filter(Pool.pool == "fargate_vcpu").one()
    print(json.dumps({{"pool_slots": task.pool_slots, "pool_size": pool.slots,
                      "timeout_s": task.execution_timeout.total_seconds()}}))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _creds() -> dict[str, str]:
    return {
        "aws_access_key_id": af.MOTO_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": af.MOTO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    }


os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
