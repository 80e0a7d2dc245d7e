"""Local stand-ins and a throwaway Airflow for the demo and the end-to-end tests.

- ``moto_s3()``: a moto server on a free port (S3 for recordings and results);
- ``fake_gemini()``: ``python -m devtools.fake_gemini`` on a free port;
- ``airflow_env()``: the environment for ``airflow`` commands in local launcher mode,
  with its own ``AIRFLOW_HOME`` (SQLite) so nothing touches a real deployment;
- ``migrate()``, ``ensure_pool()``, ``dags_test()``: the commands themselves.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# This interpreter's Airflow (the development virtualenv), else the one on PATH: `make pool`
# runs from the ops virtualenv on an Airflow host.
AIRFLOW = str(BIN / "airflow")
if not Path(AIRFLOW).exists():
    AIRFLOW = shutil.which("airflow") or "airflow"
MOTO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, *, timeout: float = 30.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s")


@contextmanager
def _background(argv: list[str], ready_url: str, log_path: Path | None) -> Iterator[None]:
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        _wait_http(ready_url, process=process)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log_path:
            log.close()  # type: ignore[union-attr]


@contextmanager
def moto_s3(*, log_path: Path | None = None) -> Iterator[str]:
    """Yield the endpoint URL of a fresh moto server."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with _background(argv, f"{url}/moto-api/data.json", log_path):
        yield url


@contextmanager
def fake_gemini(*, log_path: Path | None = None) -> Iterator[str]:
    """Yield the base URL of a fresh fake Gemini server."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "devtools.fake_gemini", "--port", str(port)]
    with _background(argv, f"{url}/_fake/stats", log_path):
        yield url


def airflow_env(
    home: Path,
    *,
    s3_endpoint: str,
    recordings_bucket: str,
    results_bucket: str,
    gemini_base_url: str | None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__"))}
    env.update(MOTO_CREDENTIALS)
    env.update(
        {
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            # The plugin comes from the installed distribution's entry point (as with the
            # wheel); the repository's plugins/ as plugins folder would register it twice.
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO)]),
            "ANALYSIS_LAUNCHER": "local",
            "AWS_ENDPOINT_URL": s3_endpoint,
            "ALLOWED_INPUT_PREFIXES": f"s3://{recordings_bucket}/",
            "RESULTS_URI": f"s3://{results_bucket}/",
            # task_analysis triggers proctor_video and fails when that DAG is paused.
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            # The scheduler's and triggerer's log servers: free ports, so that two local
            # Airflows (parallel test workers, a demo beside the UI) do not collide.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        }
    )
    if gemini_base_url:
        env["GEMINI_BASE_URL"] = gemini_base_url
        env.setdefault("GEMINI_API_KEY", "fake-key-for-local-fake")
    env.update(extra or {})
    return env


def stop_group(process: subprocess.Popen) -> None:
    """Stop a process started with `start_new_session=True` (e.g. `airflow standalone`) and
    everything it started: its own process group."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
    # Children that outlived the parent (scheduler, task runners, containers).
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def run_airflow(args: list[str], env: Mapping[str, str], *, timeout: float = 600.0):
    return subprocess.run(
        [AIRFLOW, *args],
        env=dict(env),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def migrate(env: Mapping[str, str]) -> None:
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    done = run_airflow(["db", "migrate"], env)
    if done.returncode != 0:
        raise RuntimeError(
            f"airflow db migrate failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )


POOL_DESCRIPTION = "Fargate vCPUs shared by all analyses; each launch takes its vCPUs"


def ensure_pool(env: Mapping[str, str], slots: int | None = None) -> str:
    """Create or resize the vCPU pool (``airflow pools set`` is idempotent), then check what
    the database now holds (raises when it does not match)."""
    if str(REPO / "plugins") not in sys.path:
        sys.path.insert(0, str(REPO / "plugins"))
    from analysis_pipeline.config import POOL_NAME, pool_vcpus

    slots = slots or pool_vcpus(env=env)
    args = ["pools", "set", POOL_NAME, str(slots), POOL_DESCRIPTION, "--include-deferred"]
    done = run_airflow(args, env)
    if done.returncode != 0:
        raise RuntimeError(f"airflow pools set failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    problem = check_pool(env, slots=slots)
    if problem:
        raise RuntimeError(problem)
    return f"pool {POOL_NAME}: {slots} slots (vCPUs), deferred tasks counted"


def check_pool(env: Mapping[str, str], *, slots: int | None = None) -> str | None:
    """What is wrong with the pool in the deployment's database (None when it matches)."""
    if str(REPO / "plugins") not in sys.path:
        sys.path.insert(0, str(REPO / "plugins"))
    from analysis_pipeline.config import POOL_NAME, pool_vcpus
    from analysis_pipeline.pool import pool_problem

    done = run_airflow(["pools", "get", POOL_NAME, "-o", "json"], env)
    found = None
    if done.returncode == 0:
        rows = json.loads(done.stdout[done.stdout.index("[") :]) if "[" in done.stdout else []
        if rows:
            row = rows[0]
            deferred = str(row.get("include_deferred", "")).lower() == "true"
            found = SimpleNamespace(slots=int(row.get("slots", -1)), include_deferred=deferred)
    return pool_problem(found, slots=slots or pool_vcpus(env=env))


def main(argv: list[str] | None = None) -> None:
    """``python -m devtools.airflow_env pool [--check]``: the deploy step behind ``make pool``
    (``--check`` only verifies, exit status 1 when the pool is missing or differs).

    Uses the caller's Airflow environment (AIRFLOW_HOME / AIRFLOW__DATABASE__*), i.e. the
    deployment's metadata database, not a throwaway one.
    """
    args = sys.argv[1:] if argv is None else argv
    if args not in (["pool"], ["pool", "--check"]):
        raise SystemExit("usage: python -m devtools.airflow_env pool [--check]")
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    if args == ["pool", "--check"]:
        problem = check_pool(env)
        if problem:
            raise SystemExit(problem)
        print("pool matches the lever")
        return
    print(ensure_pool(env))


@dataclass(frozen=True)
class DagTestOutcome:
    dag_id: str
    state: str
    returncode: int
    output: str

    @property
    def succeeded(self) -> bool:
        return self.returncode == 0 and self.state == "success"


_STATE = re.compile(r"dag_id=(\S+?),.*?state=(\w+)|state[=:]\s*['\"]?(success|failed)")


def dags_test(
    dag_id: str, conf: Mapping[str, object], env: Mapping[str, str], *, timeout: float = 900.0
) -> DagTestOutcome:
    done = run_airflow(["dags", "test", dag_id, "-c", json.dumps(conf)], env, timeout=timeout)
    output = done.stdout + done.stderr
    return DagTestOutcome(dag_id, _final_state(output), done.returncode, output)


def _final_state(output: str) -> str:
    """The DagRun state `airflow dags test` reports last ("unknown" when absent)."""
    matches = re.findall(r"DagRun Finished:.*?state=(\w+)", output)
    if matches:
        return matches[-1]
    matches = re.findall(r"Marking run <DagRun [^>]*> (successful|failed)", output)
    if matches:
        return "success" if matches[-1] == "successful" else "failed"
    return "unknown"


if __name__ == "__main__":
    main()
