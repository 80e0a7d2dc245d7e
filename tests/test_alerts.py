"""The failure notifier against a local fake Discord webhook: content, 429 handling, burst
grouping through the shared store (no lock held across HTTP), the webhook connection forms,
redaction, never raising; and the Gemini quota circuit breaker."""

from __future__ import annotations

import json
import logging
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

from analysis_pipeline import shared_state  # noqa: E402
from analysis_pipeline.alerts import breaker, grouping  # noqa: E402
from analysis_pipeline.alerts import discord as discord_http  # noqa: E402
from analysis_pipeline.alerts.message import alert_from_context  # noqa: E402
from analysis_pipeline.alerts.notifier import AnalysisFailureNotifier  # noqa: E402
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
    emf_line = '{"Kind": "task_analysis", "_aws": {"Timestamp": 1, "CloudWatchMetrics": []}}'
    exc = exc or AllSegmentsFailed(
        exit_code=3,
        last_lines=["segment 2 failed: 429 RESOURCE_EXHAUSTED", emf_line, "finished failed"],
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


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> shared_state.MemoryStore:
    """One store shared by every 'process' of a test (the metadata DB in production)."""
    monkeypatch.setattr(shared_state, "CLAIM_SETTLE_SECONDS", 0.05)
    return shared_state.MemoryStore()


def alert(context_: dict[str, Any], store: shared_state.SharedStore) -> None:
    AnalysisFailureNotifier(store=store)(context_)


def test_embed_content(discord: tuple[FakeDiscord, str], store, caplog) -> None:
    fake, url = discord
    caplog.set_level(logging.DEBUG)
    alert(context(), store)
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
    assert "_aws" not in fields["Last container log lines"]  # metric lines are left out
    assert fields["Airflow log"].startswith("http://airflow.local/dags/task_analysis/")
    assert embed["url"] == fields["Airflow log"]
    body = json.dumps(post["json"])
    assert TOKEN not in body and "/api/webhooks/" not in body
    assert TOKEN not in caplog.text and url not in caplog.text


def test_secrets_in_log_lines_are_redacted(discord: tuple[FakeDiscord, str], store) -> None:
    fake, url = discord
    gemini_key = "AIza" + "Sy" + "x" * 33  # ecs mode: the key is not in this environment
    leaky = AnalysisCrashed(
        "boom",
        exit_code=1,
        last_lines=[
            f"posting to {url}",
            "key=gemini-secret-value-xyz",
            f"GET https://generativelanguage.googleapis.com/v1/models?key={gemini_key}&alt=sse",
            f"client configured with {gemini_key}",
        ],
    )
    alert(context(exc=leaky), store)
    body = json.dumps(fake.sent("POST")[0]["json"])
    assert TOKEN not in body and "gemini-secret-value-xyz" not in body
    assert gemini_key not in body and "[redacted]" in body
    assert "alt=sse" in body  # only the secret is cut out


def test_rate_limit_retry_after_is_honoured(discord: tuple[FakeDiscord, str], store) -> None:
    fake, _url = discord
    fake.rate_limit_next = 1
    started = time.monotonic()
    alert(context(), store)
    assert time.monotonic() - started >= fake.retry_after
    assert [r.get("status", 200) for r in fake.requests] == [429, 200]
    assert len(fake.sent("POST")) == 1


def test_persistent_rate_limit_gives_up_without_raising(
    discord: tuple[FakeDiscord, str], store
) -> None:
    fake, _url = discord
    fake.rate_limit_next = 100
    fake.retry_after = 0.01
    alert(context(), store)  # must not raise
    assert len(fake.requests) == discord_http.MAX_ATTEMPTS


def test_burst_with_the_same_reason_becomes_one_message(
    discord: tuple[FakeDiscord, str], store
) -> None:
    fake, _url = discord
    for i in range(5):
        alert(context(f"S-{i}"), store)
    posts, edits = fake.sent("POST"), fake.sent("PATCH")
    assert len(posts) == 1 and len(edits) == 4
    assert all(e["path"].endswith("/messages/m1") for e in edits)
    last = embed_of(edits[-1])
    assert last["title"] == "task_analysis: 5 failures with the same reason"
    counted = [v for k, v in fields_of(last).items() if k.startswith("5 failures since")]
    assert counted and "S-0" in counted[0] and "S-4" in counted[0]


def test_a_storm_against_a_rate_limiting_webhook_is_one_message_with_edits(
    discord: tuple[FakeDiscord, str], store
) -> None:
    """Reproduction of the reported flood: six sentinel failures at once while Discord
    rate-limits. Nobody waits on a lock while another sleeps out a retry_after, so every
    failure is counted into the one message."""
    fake, _url = discord
    fake.rate_limit_next = 3
    fake.retry_after = 0.4
    threads = [threading.Thread(target=alert, args=(context(f"S-{i}"), store)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(fake.sent("POST")) == 1
    final = embed_of(fake.sent()[-1])
    assert final["title"] == "task_analysis: 6 failures with the same reason"


def test_a_failure_counted_twice_is_one_failure(discord: tuple[FakeDiscord, str], store) -> None:
    fake, _url = discord
    alert(context("S-1"), store)
    alert(context("S-1"), store)  # the same try reported by the worker and the dag-processor
    alert(context("S-2"), store)
    assert embed_of(fake.sent()[-1])["title"] == "task_analysis: 2 failures with the same reason"


def test_different_reasons_or_dags_are_separate_messages(
    discord: tuple[FakeDiscord, str], store
) -> None:
    fake, _url = discord
    alert(context("S-1"), store)
    alert(context("S-2", AnalysisCrashed("no result.json", exit_code=1)), store)
    alert(context("A-1", dag_id="proctor_video"), store)
    assert len(fake.sent("POST")) == 3
    assert fake.sent("PATCH") == []


def test_a_new_window_starts_a_new_message(discord: tuple[FakeDiscord, str], store) -> None:
    fake, url = discord
    first = alert_from_context(context("S-1"))
    assert grouping.notify(first, url, store, now=1200.0) == "posted"
    assert grouping.notify(alert_from_context(context("S-2")), url, store, now=1500.0) == "updated"
    assert grouping.notify(alert_from_context(context("S-3")), url, store, now=1800.0) == "posted"
    assert len(fake.sent("POST")) == 2
    assert [k for k in store.keys(grouping.PREFIX) if ".2.f." in k]  # the previous window stays
    grouping.notify(alert_from_context(context("S-4")), url, store, now=2400.0)
    assert not [k for k in store.keys(grouping.PREFIX) if ".2.f." in k]  # two back: forgotten


def test_unreachable_webhook_never_raises_or_logs_the_url(
    monkeypatch: pytest.MonkeyPatch, store, caplog
) -> None:
    url = f"http://127.0.0.1:9/api/webhooks/1/{TOKEN}"  # port 9: nothing listens
    monkeypatch.setenv(
        "AIRFLOW_CONN_DISCORD_ALERTS", json.dumps({"conn_type": "http", "host": url})
    )
    caplog.set_level(logging.DEBUG)
    alert(context(), store)
    assert TOKEN not in caplog.text
    assert "not sent" in caplog.text


def test_missing_connection_is_a_warning_not_an_error(
    monkeypatch: pytest.MonkeyPatch, store, caplog
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_DISCORD_ALERTS", raising=False)
    alert(context(), store)
    assert "not configured" in caplog.text


def test_a_secrets_backend_outage_is_not_not_configured(
    monkeypatch: pytest.MonkeyPatch, store, caplog
) -> None:
    def outage(conn_id: str) -> Any:
        raise ConnectionError("SSM unreachable")

    monkeypatch.setattr("airflow.sdk.BaseHook.get_connection", outage)
    with pytest.raises(discord_http.AlertChannelUnavailable, match="could not be read"):
        discord_http.webhook_url()
    alert(context(), store)
    assert "could not be read" in caplog.text and "not configured" not in caplog.text


def test_broken_context_never_raises(store) -> None:
    alert({}, store)
    alert({"ti": object(), "exception": None, "params": None}, store)


def test_uri_style_connection_is_understood(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_DISCORD_ALERTS", f"https://discord.com/api/webhooks/1/{TOKEN}")
    assert discord_http.webhook_url() == f"https://discord.com/api/webhooks/1/{TOKEN}"


def test_the_token_may_sit_in_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_DISCORD_ALERTS",
        json.dumps(
            {
                "conn_type": "https",
                "host": "https://discord.com/api/webhooks/1",
                "password": TOKEN,
            }
        ),
    )
    assert discord_http.webhook_url() == f"https://discord.com/api/webhooks/1/{TOKEN}"


def test_a_whole_url_in_host_is_masked_in_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk._shared.secrets_masker import redact

    url = f"https://discord.com/api/webhooks/1/{TOKEN}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_DISCORD_ALERTS", json.dumps({"conn_type": "http", "host": url})
    )
    assert discord_http.webhook_url() == url
    assert TOKEN not in str(redact(f"posting to {url}"))


def test_webhook_urls_keep_their_own_query() -> None:
    url = "https://discord.example/api/webhooks/1/tok?thread_id=42"
    assert discord_http.webhook(url, query={"wait": "true"}) == (
        "https://discord.example/api/webhooks/1/tok?thread_id=42&wait=true"
    )
    assert discord_http.webhook(url, path="/messages/7") == (
        "https://discord.example/api/webhooks/1/tok/messages/7?thread_id=42"
    )


# --- the Gemini quota circuit breaker -----------------------------------------------------
def run_context(run_id: str) -> dict[str, Any]:
    return {"ti": SimpleNamespace(dag_id="task_analysis", run_id=run_id)}


def test_breaker_opens_on_the_sentinel_holds_launches_and_closes_by_itself(
    discord: tuple[FakeDiscord, str], store
) -> None:
    fake, _url = discord
    t0 = 1_000_000
    assert breaker.hold_until(run_context("r0"), store=store, now=t0) is None  # closed
    breaker.trip(run_context("r1"), "S-1", cooldown=600, store=store, now=t0)
    breaker.trip(run_context("r2"), "S-2", cooldown=600, store=store, now=t0 + 5)
    assert [embed_of(p)["title"] for p in fake.sent("POST")] == [
        "Gemini quota exhausted: launches paused"
    ]
    for i in range(3):  # queued runs wait (rescheduled) instead of launching
        assert breaker.hold_until(run_context(f"q{i}"), store=store, now=t0 + 60) == t0 + 605
    assert breaker.hold_until(run_context("q0"), store=store, now=t0 + 120) == t0 + 605
    assert breaker.hold_until(run_context("q9"), store=store, now=t0 + 606) is None  # cooled
    assert breaker.hold_until(run_context("q9"), store=store, now=t0 + 607) is None
    posts = fake.sent("POST")
    assert len(posts) == 2
    closed = fields_of(embed_of(posts[1]))
    assert embed_of(posts[1])["title"] == "Gemini quota breaker closed: launches resumed"
    assert closed["All-segments failures"] == "2" and closed["Launches held"] == "3"


def test_breaker_closes_at_the_first_success_and_reopens_on_a_new_storm(
    discord: tuple[FakeDiscord, str], store
) -> None:
    fake, _url = discord
    t0 = 2_000_000
    breaker.trip(run_context("r1"), "S-1", cooldown=600, store=store, now=t0)
    breaker.succeeded(store=store, now=t0 + 30)
    breaker.succeeded(store=store, now=t0 + 31)  # only one "closed" message
    assert breaker.hold_until(run_context("q"), store=store, now=t0 + 40) is None
    breaker.trip(run_context("r2"), "S-2", cooldown=600, store=store, now=t0 + 50)
    assert breaker.hold_until(run_context("q"), store=store, now=t0 + 60) == t0 + 650
    titles = [embed_of(p)["title"] for p in fake.sent("POST")]
    assert titles == [
        "Gemini quota exhausted: launches paused",
        "Gemini quota breaker closed: launches resumed",
        "Gemini quota exhausted: launches paused",
    ]


def test_breaker_cooldown_follows_the_reported_retry_delay(monkeypatch) -> None:
    monkeypatch.setenv("ANALYSIS_BREAKER_COOLDOWN_SECONDS", "300")
    assert breaker.cooldown_seconds(None, ["finished failed"]) == 300
    lines = ["429 RESOURCE_EXHAUSTED {'retryDelay': '1500s'}", "Please retry in 40.2s."]
    assert breaker.cooldown_seconds(None, lines) == 1500
    assert breaker.cooldown_seconds({"retry_after_seconds": 99999}, []) == 3600  # capped


def test_the_breaker_is_off_outside_airflow() -> None:
    """No supervisor channel (a plain process): nothing to share a breaker with."""
    assert breaker.hold_until(run_context("r")) is None
    assert breaker.trip(run_context("r"), "S-1", cooldown=60) is None
