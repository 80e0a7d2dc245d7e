"""docs/API.md replayed against a real Airflow: `airflow standalone` (scheduler, triggerer,
API server; metadata in PostgreSQL), the local launcher running the real containers, moto
S3, the fake Gemini, and a backend: a local HTTP server that checks nothing itself and
records every callback, answering 500 to the first two of one analysis.

- the documented trigger request, with a token from `POST /auth/token`: 200, and the same
  run id again: 409; without a token: 401; a bad conf: refused with the param named;
- the documented callback comes back, once, HMAC-signed, valid against the schema, with the
  documented values, although the backend answered 500 twice first;
- a failing analysis of each kind named by the issue (unreadable recording, invalid key,
  every call 429 until the retries are used up) sends exactly one signed callback with its
  status, reason and whether a retry may help.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from analysis_pipeline.callback.signing import verify
from analysis_pipeline.schemas import load_schema
from devtools import airflow_env as af
from devtools import demo, media
from devtools.fake_gemini import FakeGemini
from devtools.postgres import temporary_postgres

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[1]
API_MD = (REPO / "docs" / "API.md").read_text()
RECORDINGS, RESULTS = "analysis-pipeline-recordings", "analysis-pipeline-results"
SECRET = "shared-callback-secret-for-the-test"
USER, PASSWORD = "backend", "backend-password"


def documented(name: str) -> dict[str, Any]:
    """The JSON block after `<!-- example: name -->` in docs/API.md."""
    block = re.search(rf"<!-- example: {name} -->\s*```json\n(.*?)```", API_MD, re.S)
    assert block, f"docs/API.md has no example {name!r}"
    return json.loads(block.group(1))


@dataclass
class Backend:
    """Records every callback; answers 500 to the first `fail_first` of an analysis."""

    fail_first: dict[str, int] = field(default_factory=dict)
    received: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def serve(self) -> ThreadingHTTPServer:
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                body = json.loads(raw)
                with backend.lock:
                    left = backend.fail_first.get(body["analysis_id"], 0)
                    status = 500 if left else 200
                    backend.fail_first[body["analysis_id"]] = max(0, left - 1)
                    backend.received.append({"raw": raw, "body": body, "status": status,
                                             "headers": dict(self.headers)})  # fmt: skip
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def of(self, analysis_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.received if r["body"]["analysis_id"] == analysis_id]

    def wait_delivered(self, analysis_id: str, *, timeout: float = 420) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            taken = [r for r in self.of(analysis_id) if r["status"] == 200]
            if taken:
                return taken[0]
            time.sleep(1)
        raise AssertionError(f"no callback delivered for {analysis_id}: {self.of(analysis_id)}")


@dataclass
class Stack:
    url: str
    backend: Backend
    gemini: FakeGemini
    s3: Any
    log: Path

    def token(self) -> str:
        answer = self.request("POST", "/auth/token", {"username": USER, "password": PASSWORD})
        return answer[1]["access_token"]

    def request(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            text = exc.read()
            try:
                return exc.code, json.loads(text)
            except ValueError:
                return exc.code, text.decode(errors="replace")

    def final_state(self, dag_id: str, run_id: str, *, timeout: float = 120) -> str:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.request("GET", path, token=self.token())[1].get("state")
            if state in ("success", "failed"):
                return state
            time.sleep(1)
        raise AssertionError(f"{dag_id} {run_id} did not finish")

    def trigger(self, dag_id: str, run_id: str, conf: dict[str, Any]) -> tuple[int, Any]:
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf}
        return self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", body, self.token())


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    import boto3

    root = tmp_path_factory.mktemp("contract")
    clip = media.make_screenshare(root / "screen.mp4", duration=8)
    backend = Backend(fail_first={"S-1001": 2})
    server = backend.serve()
    passwords = root / "passwords.json"
    passwords.write_text(json.dumps({USER: PASSWORD}))
    port = af.free_port()
    with (
        af.moto_s3(log_path=root / "moto.log") as s3_endpoint,
        FakeGemini() as fake,
        temporary_postgres() as database_url,
    ):
        creds = af.MOTO_CREDENTIALS
        s3 = boto3.client(
            "s3", endpoint_url=s3_endpoint, aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
            region_name=creds["AWS_DEFAULT_REGION"],
        )  # fmt: skip
        for bucket in (RECORDINGS, RESULTS):
            s3.create_bucket(Bucket=bucket)
        for sid in ("S-1001", "S-KEY", "S-429"):
            s3.upload_file(str(clip), RECORDINGS, f"tasks/{sid}/screen.mp4")
        s3.put_object(Bucket=RECORDINGS, Key="tasks/S-BAD/screen.mp4", Body=b"not a video " * 50)
        backend_conn = {"conn_type": "http", "host": f"http://127.0.0.1:{server.server_port}"
                        "/internal/analysis-callbacks", "password": SECRET}  # fmt: skip
        env = demo.standalone_env(
            root / "home", port=port, s3_endpoint=s3_endpoint, gemini_url=fake.base_url,
            recordings_bucket=RECORDINGS, results_bucket=RESULTS, database_url=database_url,
            extra={
                "RESULTS_URI": f"s3://{RESULTS}/analyses/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                "AIRFLOW_CONN_ANALYSIS_BACKEND": json.dumps(backend_conn),
                # Fast clocks for what the test waits through; the rules stay as they are.
                "ANALYSIS_CALLBACK_RETRY_SECONDS": "1",
                "ANALYSIS_LAUNCH_RETRIES": "1",
                "ANALYSIS_SENTINEL_RETRY_SECONDS": "1",
                "ANALYSIS_BREAKER_COOLDOWN_SECONDS": "2",
                "GEMINI_MAX_ATTEMPTS": "1",
                "SEGMENT_SECONDS": "10",
            },
        )  # fmt: skip
        af.migrate(env)
        log = root / "standalone.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [af.AIRFLOW, "standalone"], env=env, cwd=af.REPO, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            try:
                af.ensure_pool(env)
                stack = Stack(f"http://localhost:{port}", backend, fake, s3, log)
                _wait_for_api(stack, process)
                yield stack
            finally:
                af.stop_group(process)
                server.shutdown()
                server.server_close()


def _wait_for_api(stack: Stack, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert process.poll() is None, stack.log.read_text()[-3000:]
        try:
            token = stack.token()
            dags = [stack.request("GET", f"/api/v2/dags/{d}", token=token)[1]
                    for d in ("task_analysis", "proctor_video", "analysis_callback")]  # fmt: skip
            if all(isinstance(d, dict) and d.get("is_paused") is False for d in dags):
                return
        except (OSError, KeyError, TypeError):
            pass
        time.sleep(1)
    raise AssertionError("standalone did not serve the DAGs:\n" + stack.log.read_text()[-3000:])


def signed(record: dict[str, Any]) -> dict[str, Any]:
    """The callback's body once its signature checks out and it fits the schema."""
    verify([SECRET], record["raw"], record["headers"], now=time.time())
    jsonschema.validate(record["body"], load_schema("callback"))
    return record["body"]


def test_the_documented_exchange(stack: Stack) -> None:
    request = documented("trigger-request")
    conf, run_id = request["conf"], request["dag_run_id"]
    # No token: refused before anything exists.
    status, _ = stack.request("POST", "/api/v2/dags/task_analysis/dagRuns", request)
    assert status == 401
    status, run = stack.trigger("task_analysis", run_id, conf)
    assert status == 200, run
    assert (run["dag_run_id"], run["state"], run["conf"]["submission_id"]) == (
        run_id, "queued", "S-1001",
    )  # fmt: skip
    # The run id is the idempotency key: the same trigger again is refused, not repeated.
    status, answer = stack.trigger("task_analysis", run_id, conf)
    assert status == 409, answer
    # A conf that breaks the schema is refused with the param named, and no run exists.
    status, answer = stack.trigger("task_analysis", "submission:S-BROKEN",
                                   {**conf, "submission_id": "../etc"})  # fmt: skip
    assert status in (400, 422) and "submission_id" in json.dumps(answer), answer

    taken = signed(stack.backend.wait_delivered("S-1001"))
    expected = documented("callback-body")
    jsonschema.validate(expected, load_schema("callback"))
    assert set(taken) == set(expected)
    for key in ("schema_version", "kind", "analysis_id", "dag_id", "dag_run_id", "rerun",
                "status", "result_status", "reason", "retryable", "failed_step", "result_uri",
                "current_result_uri", "report_uri", "video_uri", "events"):  # fmt: skip
        assert taken[key] == expected[key], key
    # The backend answered 500 twice: the same body three times, then never again.
    attempts = stack.backend.of("S-1001")
    time.sleep(5)
    assert [r["status"] for r in stack.backend.of("S-1001")] == [500, 500, 200]
    assert len({r["raw"] for r in attempts}) == 1
    assert {r["headers"]["X-Analysis-Callback-Id"] for r in attempts} == {taken["callback_id"]}
    # The rubric came back scored criterion by criterion on its scales.
    result = json.loads(_s3_get(stack, taken["result_uri"]))
    scores = result["report"]["rubric_scores"]
    assert [(s["criterion"], s["scale"]) for s in scores[:2]] == [
        ("Correctness", {"min": 0, "max": 10}), ("Test coverage", {"min": 1, "max": 5}),
    ]  # fmt: skip
    jsonschema.validate(result, load_schema("result"))
    assert stack.final_state("task_analysis", run_id) == "success"


def _s3_get(stack: Stack, uri: str) -> bytes:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    return stack.s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def _configure(stack: Stack, values: dict[str, Any]) -> None:
    stack.gemini.configure(**values)


@pytest.mark.parametrize(
    "analysis_id, gemini, result_status, retryable, reason",
    [
        ("S-BAD", {}, "invalid_input", False, "INPUT_URI: not a video"),
        ("S-KEY", {"rates": {"api_key_invalid": 1.0}}, "failed", False, "retrying will not fix"),
        ("S-429", {"rates": {"429": 1.0}}, "failed", True, "All segments failed analysis"),
    ],
)  # fmt: skip
def test_a_failing_analysis_sends_exactly_one_signed_callback(
    stack: Stack, analysis_id: str, gemini: dict[str, Any], result_status: str,
    retryable: bool, reason: str,
) -> None:  # fmt: skip
    conf = {"submission_id": analysis_id,
            "screenshare_uri": f"s3://{RECORDINGS}/tasks/{analysis_id}/screen.mp4"}  # fmt: skip
    _configure(stack, gemini)
    try:
        status, run = stack.trigger("task_analysis", f"submission:{analysis_id}", conf)
        assert status == 200, run
        taken = signed(stack.backend.wait_delivered(analysis_id))
    finally:
        _configure(stack, {"rates": {}})
    assert (taken["status"], taken["result_status"], taken["retryable"]) == (
        "failed", result_status, retryable,
    )  # fmt: skip
    assert reason in taken["reason"] and taken["failed_step"] == "launch"
    # Reporting it never hides the failure: the analysis' run failed.
    assert stack.final_state("task_analysis", f"submission:{analysis_id}") == "failed"
    time.sleep(5)  # nothing else follows: one outcome, one callback
    assert [r["status"] for r in stack.backend.of(analysis_id)] == [200]
