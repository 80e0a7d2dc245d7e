"""alert_on_analysis_failure against a local fake Discord webhook: content, 429 handling,
burst aggregation (also across processes), never raising, never leaking the URL."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlparse

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("AIRFLOW_HOME", str(REPO / ".airflow" / "pytest"))

from analysis_pipeline import alerts  # noqa: E402
from analysis_pipeline.outcome import (  # noqa: E402
    ALL_SEGMENTS_FAILED,
    AllSegmentsFailed,
    AnalysisCrashed,
)

TOKEN = "tok-SECRET-abcdef123456"


@dataclass
class FakeDiscord:
    requests: list[dict[str, Any]] = field(default_factory=list)
    rate_limit_next: int = 0
    retry_after: float = 0.3
    next_id: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        with self.lock:
            if self.rate_limit_next > 0:
                self.rate_limit_next -= 1
                self.requests.append({"method": method, "path": path, "status": 429})
                return 429, {"message": "rate limited", "retry_after": self.retry_after}
            payload = json.loads(body or b"{}")
            self.requests.append(
                {"method": method, "path": path, "json": payload, "at": time.time()}
            )
            if method == "POST":
                self.next_id += 1
                return 200, {"id": f"m{self.next_id}"}
            return 200, {"id": path.rsplit("/", 1)[-1]}

    def sent(self, method: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.requests if "json" in r and method in (None, r["method"])]


@pytest.fixture
def discord(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[FakeDiscord, str]]:
    fake = FakeDiscord()

    class Handler(BaseHTTPRequestHandler):
        def _do(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, payload = fake.handle(self.command, urlparse(self.path).path, body)
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
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/api/webhooks/123/{TOKEN}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_DISCORD_ALERTS", json.dumps({"conn_type": "http", "host": url})
    )
    monkeypatch.setenv("ANALYSIS_ALERT_STATE_FILE", str(tmp_path / "alert_state.json"))
    monkeypatch.setenv("ANALYSIS_ALERT_WINDOW_SECONDS", "600")
    monkeypatch.setenv("GEMINI_API_KEY", "gemini-secret-value-xyz")
    try:
        yield fake, url
    finally:
        server.shutdown()
        server.server_close()


def context(
    analysis_id: str = "S-1",
    exc: BaseException | None = None,
    *,
    dag_id: str = "task_analysis",
    task_id: str = "launch",
) -> dict[str, Any]:
    exc = exc or AllSegmentsFailed(
        exit_code=3, last_lines=["segment 2 failed: 429 RESOURCE_EXHAUSTED", "finished failed"]
    )
    ti = SimpleNamespace(
        dag_id=dag_id,
        task_id=task_id,
        run_id=f"{analysis_id}",
        try_number=4,
        log_url=f"http://airflow.local/dags/{dag_id}/runs/{analysis_id}/tasks/{task_id}?try=4",
    )
    key = "submission_id" if dag_id == "task_analysis" else "attempt_id"
    return {"ti": ti, "exception": exc, "params": {key: analysis_id}}


def embed_of(request: dict[str, Any]) -> dict[str, Any]:
    return request["json"]["embeds"][0]


def fields_of(embed: dict[str, Any]) -> dict[str, str]:
    return {f["name"]: f["value"] for f in embed["fields"]}


def test_embed_content(discord: tuple[FakeDiscord, str], caplog) -> None:
    fake, url = discord
    caplog.set_level(logging.DEBUG)
    alerts.alert_on_analysis_failure(context())
    [post] = fake.sent("POST")
    embed = embed_of(post)
    fields = fields_of(embed)
    assert embed["title"] == "task_analysis failed: S-1"
    assert ALL_SEGMENTS_FAILED in embed["description"]
    assert fields["DAG"] == "task_analysis"
    assert fields["Run"] == "S-1"
    assert fields["ID"] == "S-1"
    assert fields["Failed step"] == "launch"
    assert fields["Try"] == "4"
    assert fields["Exit code"] == "3"
    assert "429 RESOURCE_EXHAUSTED" in fields["Last container log lines"]
    assert fields["Airflow log"].startswith("http://airflow.local/dags/task_analysis/")
    assert embed["url"] == fields["Airflow log"]
    body = json.dumps(post["json"])
    assert TOKEN not in body and "/api/webhooks/" not in body
    assert TOKEN not in caplog.text and url not in caplog.text


def test_secrets_in_log_lines_are_redacted(discord: tuple[FakeDiscord, str]) -> None:
    fake, url = discord
    leaky = AnalysisCrashed(
        "boom", exit_code=1, last_lines=[f"posting to {url}", "key=gemini-secret-value-xyz"]
    )
    alerts.alert_on_analysis_failure(context(exc=leaky))
    body = json.dumps(fake.sent("POST")[0]["json"])
    assert TOKEN not in body and "gemini-secret-value-xyz" not in body
    assert "[redacted]" in body


def test_rate_limit_retry_after_is_honoured(discord: tuple[FakeDiscord, str]) -> None:
    fake, _url = discord
    fake.rate_limit_next = 1
    started = time.monotonic()
    alerts.alert_on_analysis_failure(context())
    assert time.monotonic() - started >= fake.retry_after
    assert [r.get("status", 200) for r in fake.requests] == [429, 200]
    assert len(fake.sent("POST")) == 1


def test_persistent_rate_limit_gives_up_without_raising(discord: tuple[FakeDiscord, str]) -> None:
    fake, _url = discord
    fake.rate_limit_next = 100
    fake.retry_after = 0.01
    alerts.alert_on_analysis_failure(context())  # must not raise
    assert len(fake.requests) == alerts.MAX_ATTEMPTS


def test_burst_with_the_same_reason_becomes_one_message(discord: tuple[FakeDiscord, str]) -> None:
    fake, _url = discord
    for i in range(5):
        alerts.alert_on_analysis_failure(context(f"S-{i}"))
    posts, edits = fake.sent("POST"), fake.sent("PATCH")
    assert len(posts) == 1 and len(edits) == 4
    assert all(e["path"].endswith("/messages/m1") for e in edits)
    last = embed_of(edits[-1])
    assert last["title"] == "task_analysis: 5 failures with the same reason"
    counted = [v for k, v in fields_of(last).items() if k.startswith("5 failures since")]
    assert counted and "S-0" in counted[0] and "S-4" in counted[0]


def test_different_reasons_or_dags_are_separate_messages(discord: tuple[FakeDiscord, str]) -> None:
    fake, _url = discord
    alerts.alert_on_analysis_failure(context("S-1"))
    alerts.alert_on_analysis_failure(context("S-2", AnalysisCrashed("no result.json", exit_code=1)))
    alerts.alert_on_analysis_failure(context("A-1", dag_id="proctor_video"))
    assert len(fake.sent("POST")) == 3
    assert fake.sent("PATCH") == []


def test_a_new_window_starts_a_new_message(
    discord: tuple[FakeDiscord, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = discord
    alert = alerts.alert_from_context(context("S-1"))
    assert alerts.notify(alert, url, now=1000.0) == "posted"
    assert alerts.notify(alert, url, now=1500.0) == "updated"
    assert alerts.notify(alert, url, now=1000.0 + 601) == "posted"
    assert len(fake.sent("POST")) == 2


def _fire(args: tuple[str, str, str]) -> None:
    state_file, conn, analysis_id = args
    os.environ["ANALYSIS_ALERT_STATE_FILE"] = state_file
    os.environ["AIRFLOW_CONN_DISCORD_ALERTS"] = conn
    alerts.alert_on_analysis_failure(context(analysis_id))


def test_aggregation_holds_across_processes(discord: tuple[FakeDiscord, str]) -> None:
    fake, _url = discord
    state = os.environ["ANALYSIS_ALERT_STATE_FILE"]
    conn = os.environ["AIRFLOW_CONN_DISCORD_ALERTS"]
    with multiprocessing.get_context("fork").Pool(4) as pool:
        pool.map(_fire, [(state, conn, f"S-{i}") for i in range(8)])
    assert len(fake.sent("POST")) == 1
    assert len(fake.sent("PATCH")) == 7


def test_unreachable_webhook_never_raises_or_logs_the_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog
) -> None:
    url = f"http://127.0.0.1:9/api/webhooks/1/{TOKEN}"  # port 9: nothing listens
    monkeypatch.setenv(
        "AIRFLOW_CONN_DISCORD_ALERTS", json.dumps({"conn_type": "http", "host": url})
    )
    monkeypatch.setenv("ANALYSIS_ALERT_STATE_FILE", str(tmp_path / "state.json"))
    caplog.set_level(logging.DEBUG)
    alerts.alert_on_analysis_failure(context())
    assert TOKEN not in caplog.text
    assert "not sent" in caplog.text


def test_missing_connection_is_a_warning_not_an_error(
    monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_DISCORD_ALERTS", raising=False)
    alerts.alert_on_analysis_failure(context())
    assert "not configured" in caplog.text


def test_broken_context_never_raises() -> None:
    alerts.alert_on_analysis_failure({})
    alerts.alert_on_analysis_failure({"ti": object(), "exception": None, "params": None})


def test_uri_style_connection_is_understood(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_DISCORD_ALERTS", f"https://discord.com/api/webhooks/1/{TOKEN}")
    assert alerts.webhook_url() == f"https://discord.com/api/webhooks/1/{TOKEN}"


def test_unwritable_grouping_state_still_posts_the_alert(
    discord: tuple[FakeDiscord, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, _url = discord
    monkeypatch.setenv("ANALYSIS_ALERT_STATE_FILE", "/proc/no-such-dir/state.json")
    alerts.alert_on_analysis_failure(context("S-1"))
    assert len(fake.sent("POST")) == 1


def test_webhook_urls_keep_their_own_query() -> None:
    url = "https://discord.example/api/webhooks/1/tok?thread_id=42"
    assert alerts._webhook(url, query={"wait": "true"}) == (
        "https://discord.example/api/webhooks/1/tok?thread_id=42&wait=true"
    )
    assert alerts._webhook(url, path="/messages/7") == (
        "https://discord.example/api/webhooks/1/tok/messages/7?thread_id=42"
    )
