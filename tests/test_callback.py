"""The result callback's parts: the outcome of a run, the payload and its id, the HMAC
signature, and delivery against a local HTTP backend (answers scripted per request). The
whole exchange in real Airflow is in test_backend_contract.py."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest
from airflow.sdk.exceptions import AirflowFailException

from analysis_pipeline.callback import delivery, payload, signing
from analysis_pipeline.callback.outcome import decide, failure_record
from analysis_pipeline.outcome import AllSegmentsFailed, classify
from analysis_pipeline.params import InvalidRequestError
from analysis_pipeline.schemas import load_schema
from analysis_pipeline.shared_state import MemoryStore

SECRET = "s3cr3t-callback-key"
OUT = "s3://results/analyses/task_analysis/S-1/"
SUMMARY = {
    "kind": "task_analysis", "analysis_id": "S-1", "status": "complete", "error": None,
    "result_uri": OUT + "result.json", "report_uri": OUT + "report.html",
    "coverage": {"segments_total": 4, "segments_analysed": 4, "segments_failed": 0},
    "usage": {"calls": 5, "input_tokens": 1000, "output_tokens": 100, "estimated_usd": 0.01},
    "finished_at": "2026-12-07T10:00:00Z",
}  # fmt: skip
DONE = {"validate": "success", "launch": "success", "check_result": "success"}


def body_for(outcome: Any, **overrides: Any) -> dict[str, Any]:
    args = dict(kind="task_analysis", analysis_id="S-1", dag_id="task_analysis",
                run_id="submission:S-1", outcome=outcome, output_uri=OUT,
                reported_at="2026-12-07T10:00:05Z")  # fmt: skip
    return payload.build(**{**args, **overrides})


# ---------------------------------------------------------------- what a run means
def test_a_checked_result_is_complete_with_its_uris() -> None:
    outcome = decide(states=DONE, failures={}, summary=SUMMARY, result=None)
    body = body_for(outcome)
    assert (body["status"], body["reason"], body["retryable"], body["failed_step"]) == (
        "complete", None, None, None,
    )  # fmt: skip
    assert body["result_uri"] == body["current_result_uri"] == OUT + "result.json"
    jsonschema.validate(body, load_schema("callback"))


def raised(**kwargs: Any) -> BaseException:
    with pytest.raises(Exception) as caught:
        classify(**kwargs)
    return caught.value


PERMANENT = "Every segment failed for a reason retrying will not fix: 400 API key not valid"


@pytest.mark.parametrize(
    "step, exc, retryable, reason",
    [
        ("launch", raised(exit_code=3, result=None), True, "All segments failed analysis"),
        ("launch", raised(exit_code=1, result={"status": "failed", "error": PERMANENT}), False,
         "API key not valid"),
        ("launch", raised(exit_code=2, result={"status": "invalid_input",
                                                 "error": "INPUT_URI: not a video"}), False,
         "INPUT_URI: not a video"),
        ("launch", raised(exit_code=137, result=None), True, "no result.json"),
        ("validate", _wrapped := AirflowFailException("submission_id must match"), True,
         "submission_id must match"),
    ],
)  # fmt: skip
def test_a_failed_step_reports_its_reason_and_whether_a_retry_may_help(
    step: str, exc: BaseException, retryable: bool, reason: str
) -> None:
    states = {"validate": "success", "launch": "failed", "check_result": "upstream_failed"}
    if step == "validate":
        states = {"validate": "failed", "launch": "upstream_failed"}
    record = failure_record(exc, step=step)
    outcome = decide(states=states, failures={step: record}, summary=None, result=None)
    body = body_for(outcome)
    assert (body["status"], body["failed_step"], body["retryable"]) == ("failed", step, retryable)
    assert reason in body["reason"]
    jsonschema.validate(body, load_schema("callback"))


def test_validate_refusals_name_the_original_error_and_are_not_retryable() -> None:
    try:
        try:
            raise InvalidRequestError("screenshare_uri must be an object or prefix under …")
        except InvalidRequestError as exc:
            raise AirflowFailException(str(exc)) from exc
    except AirflowFailException as wrapped:
        record = failure_record(wrapped, step="validate")
    assert (record["error_type"], record["retryable"]) == ("InvalidRequestError", False)


def test_without_a_record_the_result_speaks_and_without_either_the_step_does() -> None:
    states = {"validate": "success", "launch": "failed"}
    sentinel = {"status": "failed", "error": "All segments failed analysis",
                "finished_at": "2026-12-07T10:00:00Z"}  # fmt: skip
    outcome = decide(states=states, failures={}, summary=None, result=sentinel)
    assert (outcome.reason, outcome.retryable, outcome.result_status) == (
        "All segments failed analysis", True, "failed",
    )  # fmt: skip
    bare = decide(states=states, failures={}, summary=None, result=None)
    assert bare.reason == "the launch step failed (see its Airflow log)" and bare.retryable


def test_the_id_is_the_outcomes_and_the_body_is_stable() -> None:
    complete = decide(states=DONE, failures={}, summary=SUMMARY, result=None)
    one = body_for(complete)
    again = body_for(complete, reported_at="2026-12-07T11:00:00Z")  # reported later
    assert one["callback_id"] == again["callback_id"]  # one outcome, one id
    other_run = body_for(complete, run_id="submission:S-1:rerun-1")
    assert other_run["callback_id"] != one["callback_id"]
    failed = decide(states={"validate": "failed"}, failures={}, summary=None, result=None)
    assert body_for(failed)["callback_id"] != one["callback_id"]
    assert payload.encode(one) == payload.encode(json.loads(payload.encode(one)))


# ---------------------------------------------------------------- the signature
def test_the_signature_covers_timestamp_and_body_and_rotates() -> None:
    body = b'{"status":"complete"}'
    headers = signing.signed_headers(SECRET, body, callback_id="cb-1", now=1_000_000)
    signing.verify([SECRET], body, headers, now=1_000_010)
    signing.verify(["new-secret", SECRET], body, headers, now=1_000_010)  # during a rotation
    with pytest.raises(signing.SignatureError, match="does not match"):
        signing.verify([SECRET], body.replace(b"complete", b"failed"), headers, now=1_000_010)
    with pytest.raises(signing.SignatureError, match="does not match"):
        signing.verify(["other"], body, headers, now=1_000_010)
    with pytest.raises(signing.SignatureError, match="from now"):  # a replay, later
        signing.verify([SECRET], body, headers, now=1_000_000 + 3600)
    with pytest.raises(signing.SignatureError, match="never sent unsigned"):
        signing.signed_headers("", body, callback_id="cb-1")


# ---------------------------------------------------------------- delivery
class Backend:
    """A local HTTP endpoint answering a scripted status per request, recording each."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses, self.requests = list(statuses), []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                backend.requests.append({"path": self.path, "headers": dict(self.headers),
                                         "body": body})  # fmt: skip
                status = backend.statuses.pop(0) if backend.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/internal/analysis-callbacks"


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    server = Backend(getattr(request, "param", []))
    yield server
    server.server.shutdown()
    server.server.server_close()


def connection(url: str, password: str = SECRET) -> Any:
    return SimpleNamespace(conn_id="analysis_backend", host=url, schema=None, port=None,
                           password=password, extra_dejson={})  # fmt: skip


@pytest.mark.parametrize("backend", [[500, 503]], indirect=True)
def test_a_backend_that_answers_500_twice_gets_it_once(backend: Backend) -> None:
    body = body_for(decide(states=DONE, failures={}, summary=SUMMARY, result=None))
    store, conn = MemoryStore(), connection(backend.url)
    for _ in range(2):  # Airflow retries these
        with pytest.raises(delivery.CallbackNotDelivered, match="HTTP 50"):
            delivery.deliver(body, connection=conn, store=store)
    assert delivery.deliver(body, connection=conn, store=store) == "delivered"
    assert delivery.deliver(body, connection=conn, store=store) == "already delivered"
    assert len(backend.requests) == 3  # two refused, one taken, none after
    taken = backend.requests[-1]
    assert taken["path"] == "/internal/analysis-callbacks"
    signing.verify([SECRET], taken["body"], taken["headers"], now=time.time())
    assert json.loads(taken["body"]) == body
    assert taken["headers"]["X-Analysis-Callback-Id"] == body["callback_id"]


@pytest.mark.parametrize("backend", [[400], [409]], indirect=True)
def test_a_refusal_is_final_and_a_duplicate_answer_counts_as_delivered(backend: Backend) -> None:
    body = body_for(decide(states=DONE, failures={}, summary=SUMMARY, result=None))
    status = backend.statuses[0]
    if status == 400:
        with pytest.raises(delivery.CallbackRefused, match="HTTP 400"):
            delivery.deliver(body, connection=connection(backend.url), store=MemoryStore())
    else:
        assert delivery.deliver(body, connection=connection(backend.url),
                                store=MemoryStore()) == "delivered"  # fmt: skip


def test_nothing_is_sent_unsigned_or_to_nowhere(backend: Backend) -> None:
    body = body_for(decide(states=DONE, failures={}, summary=SUMMARY, result=None))
    with pytest.raises(delivery.CallbackRefused, match="HMAC secret"):
        delivery.deliver(body, connection=connection(backend.url, ""), store=MemoryStore())
    with pytest.raises(delivery.CallbackRefused, match="no host"):
        delivery.deliver(body, connection=connection(""), store=MemoryStore())
    assert backend.requests == []


def test_an_unreachable_backend_is_retried() -> None:
    body = body_for(decide(states=DONE, failures={}, summary=SUMMARY, result=None))
    with pytest.raises(delivery.CallbackNotDelivered, match="unreachable"):
        delivery.deliver(body, connection=connection("http://127.0.0.1:9/x"), store=MemoryStore())


@pytest.mark.parametrize(
    "host, schema, port, extra, url",
    [("https://b.example.com/cb", None, None, {}, "https://b.example.com/cb"),
     ("b.example.com", "https", 8443, {"endpoint": "/cb/"}, "https://b.example.com:8443/cb"),
     ("b.example.com", None, None, {}, "https://b.example.com")],
)  # fmt: skip
def test_the_endpoint_comes_from_the_connection(host, schema, port, extra, url) -> None:
    conn = SimpleNamespace(conn_id="c", host=host, schema=schema, port=port, extra_dejson=extra)
    assert delivery.endpoint_of(conn) == url


def test_old_delivery_markers_are_pruned() -> None:
    from datetime import UTC, datetime

    store = MemoryStore()
    store.put("analysis_callbacks.20260101.cb-old", "{}")
    store.put("analysis_callbacks.20261206.cb-new", "{}")
    delivery._prune(store, datetime(2026, 2, 5, tzinfo=UTC))
    assert store.keys("analysis_callbacks.") == ["analysis_callbacks.20261206.cb-new"]


def test_sentinel_after_retries_is_one_failed_retryable_outcome() -> None:
    exc = AllSegmentsFailed(exit_code=3)
    states = {"validate": "success", "launch": "failed", "check_result": "upstream_failed"}
    outcome = decide(states=states, failures={"launch": failure_record(exc, step="launch")},
                     summary=None, result=None)  # fmt: skip
    assert (outcome.status, outcome.reason, outcome.retryable) == (
        "failed", "All segments failed analysis", True,
    )  # fmt: skip


def test_the_key_id_names_the_secret_that_signed(backend: Backend) -> None:
    body = body_for(decide(states=DONE, failures={}, summary=SUMMARY, result=None))
    conn = connection(backend.url)
    conn.login = "key-2026-12"
    delivery.deliver(body, connection=conn, store=MemoryStore())
    assert backend.requests[0]["headers"]["X-Analysis-Key-Id"] == "key-2026-12"


@pytest.mark.parametrize(
    "value, configured",
    [(None, False),
     ({"conn_type": "http", "description": "not set yet: docs/DEPLOY.md, Secrets"}, False),
     ({"conn_type": "http", "host": "https://b.example.com/cb", "password": SECRET}, True)],
)  # fmt: skip
def test_terraforms_placeholder_connection_means_no_callback(
    value: dict | None, configured: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from analysis_pipeline.callback.tasks import backend_configured

    if value is None:
        monkeypatch.delenv("AIRFLOW_CONN_ANALYSIS_BACKEND", raising=False)
    else:
        monkeypatch.setenv("AIRFLOW_CONN_ANALYSIS_BACKEND", json.dumps(value))
    assert backend_configured() is configured
