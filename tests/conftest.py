"""Shared pytest fixtures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Each pytest-xdist worker gets its own Airflow home (its SQLite metadata DB and logs), set
# before any test module imports Airflow (conftest is imported first).
os.environ.setdefault(
    "AIRFLOW_HOME",
    str(REPO_ROOT / ".airflow" / f"pytest-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"),
)


# The longest modules start first, so that parallel workers (`make test`: pytest-xdist) do
# not end on one of them alone; the image builds' tests last, once the background build is
# done. Everything else keeps its order.
FIRST = (
    "test_wheel.py",
    "test_browser_airflow.py",
    "test_e2e_dags.py",
    "test_backend_contract.py",
    "test_alerts_shared.py",
    "test_terraform.py",
)
LAST = ("test_images_build.py",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        if name in FIRST:
            return FIRST.index(name) - len(FIRST)
        return 1 if name in LAST else 0

    items.sort(key=rank)  # stable: the order within a rank is the collection's


def pytest_collection_finish(session: pytest.Session) -> None:
    """The real image builds (tests/test_images_build.py; minutes on a clean machine) start in
    the background as soon as a selected test needs them (after -m/-k deselection),
    overlapping the tests that run before it. Under pytest-xdist every worker collects every
    test: the first worker starts the build, and the one that runs the image tests (one
    module: `--dist loadfile`) waits for it on the builder's file lock and finds every
    layer cached."""
    if os.environ.get("PYTEST_XDIST_WORKER", "gw0") != "gw0":
        return
    if any("built_images" in getattr(item, "fixturenames", ()) for item in session.items):
        from _images import start_build

        start_build()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A worker that started the image build and ran out of tests waits for the build."""
    if "_images" in sys.modules:
        sys.modules["_images"].finish_build()


@pytest.fixture(scope="session")
def sample_media(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """`sample_media("name.mp4", duration=20, idle=[(5, 15)], ...)` -> a generated screenshare
    (devtools.media.make_screenshare options), made once per session per name."""
    from devtools.media import make_screenshare

    root = tmp_path_factory.mktemp("sample-media")
    made: dict[str, Path] = {}

    def make(name: str, **options: object) -> Path:
        if name not in made:
            made[name] = make_screenshare(root / name, **options)
        return made[name]

    return make


AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """A moto S3 server on 127.0.0.1 (the containers run as subprocesses and reach it through
    AWS_ENDPOINT_URL, exactly as they would reach S3); buckets `recordings` and `results`.

    It runs in its own process: an in-process `mock_aws()` elsewhere in the session resets
    moto's backends when it exits, which would wipe a server thread's buckets too."""
    import boto3

    from devtools.airflow_env import moto_s3 as moto_server

    with moto_server() as endpoint:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        for bucket in ("recordings", "results"):
            client.create_bucket(Bucket=bucket)
        yield MotoS3(endpoint=endpoint, client=client)


@dataclass
class MotoS3:
    endpoint: str
    client: Any

    def put(self, uri: str, data: bytes) -> None:
        bucket, key = uri.removeprefix("s3://").split("/", 1)
        self.client.put_object(Bucket=bucket, Key=key, Body=data)

    def get_json(self, uri: str) -> Any:
        bucket, key = uri.removeprefix("s3://").split("/", 1)
        return json.loads(self.client.get_object(Bucket=bucket, Key=key)["Body"].read())

    def keys(self, uri_prefix: str) -> list[str]:
        bucket, prefix = uri_prefix.removeprefix("s3://").split("/", 1)
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


@pytest.fixture
def fake_gemini() -> Iterator[Any]:
    """A fresh local fake Gemini server per test (the real SDK talks to it over HTTP)."""
    from devtools.fake_gemini import FakeGemini

    with FakeGemini() as fake:
        yield fake


@dataclass
class ContainerRun:
    code: int
    stdout: str
    stderr: str

    @property
    def last_line(self) -> str:
        lines = self.stdout.strip().splitlines()
        return lines[-1] if lines else ""


def run_container(module: str, env: dict[str, str], *, timeout: float = 300) -> ContainerRun:
    """`python -m <module>` with only the given environment on top of a clean base (no
    inherited AWS_/GEMINI_ settings), as ECS would start it."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GEMINI_"))}
    proc = subprocess.run(
        [sys.executable, "-m", module],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
    )
    return ContainerRun(proc.returncode, proc.stdout, proc.stderr)


Responder = Callable[[str, str, bytes], tuple[int, Any]]


@dataclass
class FakeDiscord:
    """A local Discord webhook endpoint: records every request; `respond` may script answers
    (e.g. a 429 with `retry_after`). Default: 200 with a message id, for POST and PATCH."""

    url: str
    requests: list[dict[str, Any]]
    server: Any

    def posted(self) -> list[dict[str, Any]]:
        return [r["json"] for r in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_fake_discord(respond: Responder | None = None, *, token: str = "tok") -> FakeDiscord:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import urlparse

    requests: list[dict[str, Any]] = []

    def default(method: str, path: str, body: bytes) -> tuple[int, Any]:
        return 200, {"id": str(len(requests))}

    class Handler(BaseHTTPRequestHandler):
        def _do(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = urlparse(self.path).path
            requests.append({"method": self.command, "path": path, "json": json.loads(body)})
            status, payload = (respond or default)(self.command, path, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_POST = do_PATCH = _do

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/api/webhooks/9/{token}"
    return FakeDiscord(url=url, requests=requests, server=server)


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """A migrated metadata DB in this process' AIRFLOW_HOME (the test modules that import
    Airflow set it first), with the repo's dags/ (the plugin comes from the installed
    distribution's entry point): `dag.test` and anything that reads tables need one,
    whatever order the suite runs in."""
    env = {**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags")}
    airflow = str(Path(sys.executable).parent / "airflow")
    done = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


def terraform_settings(**fields: object) -> dict[str, str]:
    """The settings document `terraform apply` writes to SSM
    (/airflow/variables/analysis_pipeline_settings), every value a string as Terraform's
    jsonencode of a map(string) writes it; `fields` replace or (None) drop entries."""
    document = {
        "MAX_CONCURRENT_ANALYSES": "12",
        "MAX_CONCURRENT_PROCTOR_VIDEOS": "8",
        "TASK_ANALYZER_VCPU": "4",
        "PROCTOR_VIDEO_VCPU": "2",
        "FARGATE_VCPU_POOL_SLOTS": "64",
        "ANALYSIS_TIMEOUT_MINUTES": "120",
        "ANALYSIS_LAUNCH_RETRIES": "3",
        "ANALYSIS_SENTINEL_RETRY_SECONDS": "900",
        "ANALYSIS_CRASH_RETRY_SECONDS": "120",
        "ANALYSIS_ECS_CLUSTER": "analysis-pipeline",
        "ANALYSIS_ECS_SUBNETS": "subnet-0a,subnet-0b",
        "ANALYSIS_ECS_SECURITY_GROUPS": "sg-0tasks",
        "ANALYSIS_ECS_ASSIGN_PUBLIC_IP": "false",
        "TASK_ANALYZER_TASK_DEFINITION": "analysis-pipeline-task-analyzer",
        "PROCTOR_VIDEO_TASK_DEFINITION": "analysis-pipeline-proctor-video",
        "TASK_ANALYZER_LOG_GROUP": "/ecs/analysis-pipeline/task-analyzer",
        "PROCTOR_VIDEO_LOG_GROUP": "/ecs/analysis-pipeline/proctor-video",
        "RESULTS_URI": "s3://analysis-pipeline-results/",
        "ALLOWED_INPUT_PREFIXES": "s3://analysis-pipeline-recordings/",
    }
    for name, value in fields.items():
        if value is None:
            document.pop(name, None)
        else:
            document[name] = str(value)
    return document


SETTINGS_ENV = "AIRFLOW_VAR_ANALYSIS_PIPELINE_SETTINGS"
