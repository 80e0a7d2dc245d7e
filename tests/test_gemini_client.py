"""GeminiClient on the real google-genai SDK against the local fake Gemini server.

Waits go through an injected clock/sleep pair (the sleep advances the clock), so tests of
long retryDelays run instantly; HTTP itself is real (127.0.0.1).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import socket
import subprocess
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

import pytest
from pydantic import BaseModel, Field

from analysis_engine.errors import ModelCallError
from analysis_engine.gemini import GeminiClient, retry_delay_seconds, sdk_transport
from analysis_engine.models import MediaHandle
from analysis_engine.settings import Settings
from devtools.fake_gemini import FakeGemini

T = TypeVar("T")
MODEL = "gemini-2.5-flash"


class Event(BaseModel):
    start_s: float = Field(ge=0)
    end_s: float = Field(ge=0)
    kind: Literal["paste", "error", "test_run", "search"]
    confidence: float = Field(ge=0, le=1)
    evidence: str


class SegmentReport(BaseModel):
    summary: str
    tools: list[str]
    events: list[Event]
    idle: bool | None = None


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("media") / "clip.mp4"
    subprocess.run(
        [
            "ffmpeg", "-loglevel", "error", "-f", "lavfi",
            "-i", "testsrc=duration=4:size=320x240:rate=10",
            "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path),
        ],
        check=True,
    )  # fmt: skip
    return path


@pytest.fixture
def fake() -> Iterator[FakeGemini]:
    with FakeGemini() as server:
        yield server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def settings_for(fake: FakeGemini, **overrides: Any) -> Settings:
    base = Settings(
        analysis_id="t1",
        input_uri="file:///in.mp4",
        output_uri="file:///out/",
        gemini_base_url=fake.base_url,
        gemini_max_attempts=4,
        gemini_timeout_seconds=5.0,
    )
    return dataclasses.replace(base, **overrides)


def client_for(
    fake: FakeGemini, clock: FakeClock, *, inline_limit_bytes: int = 1 << 30, **overrides: Any
) -> GeminiClient:
    return GeminiClient.from_settings(
        settings_for(fake, **overrides),
        sleep=clock.sleep,
        clock=clock,
        rng=random.Random(7),
        inline_limit_bytes=inline_limit_bytes,
    )


async def ask(client: GeminiClient, media: MediaHandle | None = None, **kwargs: Any) -> Any:
    return await client.generate(
        model=MODEL,
        prompt="Describe what the candidate does in this segment.",
        schema=SegmentReport,
        media=media,
        estimated_input_tokens=1500,
        **kwargs,
    )


# -- success paths ------------------------------------------------------------------------


def test_inline_media_structured_answer_and_token_accounting(
    fake: FakeGemini, clock: FakeClock, video: Path
) -> None:
    async def scenario() -> Any:
        async with client_for(fake, clock) as client:
            handle = await client.upload(video, mime_type="video/mp4")
            assert handle.data is not None and handle.uri is None
            reply = await ask(client, handle, media_resolution="low")
            return reply, await client.budget.in_window(MODEL), client.usage()

    reply, (requests, tokens), usage = run(scenario())
    assert isinstance(reply.parsed, SegmentReport)
    assert reply.parsed.events and all(e.start_s <= e.end_s for e in reply.parsed.events)
    assert reply.model == MODEL and reply.attempts == 1
    stats = fake.stats
    assert stats["uploads"] == 0 and stats["calls"]["generate"] == 1
    served = stats["generate_requests"][0]
    assert served["media_resolution"] == "MEDIA_RESOLUTION_LOW"
    assert served["prompt"] == "Describe what the candidate does in this segment."
    assert served["media_seconds"] == pytest.approx(4.0, abs=0.2)
    # 4 s of video at 100 tokens/s (low resolution) plus the prompt.
    assert reply.input_tokens == stats["prompt_tokens"] == served["prompt_tokens"]
    assert 400 <= reply.input_tokens < 450
    assert reply.output_tokens == stats["output_tokens"] > 0
    # The call used fewer tokens than its 1500 estimate: the budget charges what the
    # service counted, so the rest of the estimate is free again at once.
    assert requests == 1 and tokens == reply.input_tokens
    assert usage[MODEL].calls == 1 and usage[MODEL].input_tokens == reply.input_tokens


def test_files_api_upload_polls_until_active_then_deletes(
    fake: FakeGemini, clock: FakeClock, video: Path
) -> None:
    fake.configure(processing_polls=2)

    async def scenario() -> Any:
        async with client_for(fake, clock, inline_limit_bytes=1024) as client:
            handle = await client.upload(video, mime_type="video/mp4")
            live_after_upload = fake.stats["live_files"]
            reply = await ask(client, handle)
            await client.delete(handle)
            return handle, live_after_upload, reply

    handle, live_after_upload, reply = run(scenario())
    assert handle.uri and handle.name and handle.name.startswith("files/") and not handle.data
    assert live_after_upload == 1
    stats = fake.stats
    assert stats["uploads"] == 1 and stats["upload_bytes"] == video.stat().st_size
    assert stats["calls"]["files_get"] == 3  # PROCESSING twice, then ACTIVE
    assert stats["deletes"] == 1 and stats["live_files"] == 0
    assert stats["generate_requests"][0]["media_seconds"] == pytest.approx(4.0, abs=0.2)
    assert 1200 <= reply.input_tokens < 1300  # 4 s at 300 tokens/s plus the prompt
    assert len(clock.sleeps) == 3  # poll waits only: no retries happened


def test_file_processing_failed_is_permanent_and_cleans_up(
    fake: FakeGemini, clock: FakeClock, video: Path
) -> None:
    fake.configure(file_final_state="FAILED", processing_polls=1)

    async def scenario() -> None:
        async with client_for(fake, clock, inline_limit_bytes=0) as client:
            await client.upload(video, mime_type="video/mp4")

    with pytest.raises(ModelCallError, match="processing FAILED") as info:
        run(scenario())
    assert info.value.retryable is False
    assert fake.stats["live_files"] == 0


def test_aclose_deletes_files_left_behind(fake: FakeGemini, clock: FakeClock, video: Path) -> None:
    fake.configure(processing_polls=0)

    async def scenario() -> int:
        client = client_for(fake, clock, inline_limit_bytes=0)
        await client.upload(video, mime_type="video/mp4")
        await client.upload(video, mime_type="video/mp4")
        live = fake.stats["live_files"]
        await client.aclose()
        await client.aclose()  # idempotent
        return live

    assert run(scenario()) == 2
    assert fake.stats["live_files"] == 0 and fake.stats["deletes"] == 2


def test_delete_never_raises(fake: FakeGemini, clock: FakeClock) -> None:
    async def scenario() -> None:
        async with client_for(fake, clock) as client:
            await client.delete(MediaHandle(mime_type="video/mp4", name="files/nope"))
            await client.delete(MediaHandle(mime_type="video/mp4", data=b"inline"))

    run(scenario())
    assert fake.stats["calls"]["files_delete"] == 1


def test_upload_retries_transient_errors(fake: FakeGemini, clock: FakeClock, video: Path) -> None:
    fake.configure(upload_script=["503", "429"], processing_polls=0)

    async def scenario() -> MediaHandle:
        async with client_for(fake, clock, inline_limit_bytes=0) as client:
            return await client.upload(video, mime_type="video/mp4")

    assert run(scenario()).uri
    assert fake.stats["calls"]["upload_start"] == 3
    assert clock.sleeps[-1] >= 1.0  # the 429 carried retryDelay 1s


# -- retries --------------------------------------------------------------------------------


def test_429_honours_retry_delay_and_pauses_the_budget(
    fake: FakeGemini, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    fake.configure(script=["429", "ok"], retry_delay="26s")
    caplog.set_level(logging.DEBUG)

    async def scenario() -> Any:
        async with client_for(fake, clock, gemini_api_key="sekrit-key-123") as client:
            started = clock.now
            reply = await ask(client)
            return reply, await client.budget.paused_until(MODEL) - started

    reply, pause = run(scenario())
    assert reply.attempts == 2
    assert fake.stats["calls"]["generate"] == 2
    assert fake.stats["outcomes"] == {"429": 1, "ok": 1}
    assert clock.sleeps and 26.0 <= clock.sleeps[0] <= 26.0 * 1.1
    assert pause >= 26.0  # every other caller is held for the same cool-down
    assert "attempt 1/4 failed (HTTP 429 RESOURCE_EXHAUSTED" in caplog.text
    assert "retrying in 2" in caplog.text
    assert "sekrit-key-123" not in caplog.text


def test_server_errors_then_success(fake: FakeGemini, clock: FakeClock) -> None:
    fake.configure(script=["500", "503", "ok"])

    async def scenario() -> Any:
        async with client_for(fake, clock) as client:
            return await ask(client)

    reply = run(scenario())
    assert reply.attempts == 3
    assert fake.stats["calls"]["generate"] == 3
    # Full jitter: each wait lies in [0, 1 * 2**(n-1)] seconds.
    assert len(clock.sleeps) == 2
    assert 0 <= clock.sleeps[0] <= 1.0 and 0 <= clock.sleeps[1] <= 2.0


def test_hung_call_times_out_and_counts_as_an_attempt(fake: FakeGemini, clock: FakeClock) -> None:
    fake.configure(script=["hang", "ok"], hang_s=30)

    async def scenario() -> Any:
        async with client_for(fake, clock, gemini_timeout_seconds=0.3) as client:
            return await ask(client)

    started = time.monotonic()
    reply = run(scenario())
    assert time.monotonic() - started < 5
    assert reply.attempts == 2
    assert fake.stats["calls"]["generate"] == 2


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("malformed", "invalid JSON"),
        ("max_tokens", "MAX_TOKENS"),
        ("schema_mismatch", "JSON does not match SegmentReport"),
    ],
)
def test_bad_answers_are_failed_attempts(
    fake: FakeGemini, clock: FakeClock, mode: str, reason: str
) -> None:
    fake.configure(script=[mode, "ok", mode, mode])

    async def scenario() -> tuple[Any, ModelCallError]:
        async with client_for(fake, clock, gemini_max_attempts=2) as client:
            reply = await ask(client)  # bad answer, then a good one
            with pytest.raises(ModelCallError) as info:
                await ask(client)  # bad twice: out of attempts
            return reply, info.value

    reply, error = run(scenario())
    assert reply.attempts == 2
    # Both attempts reached the model and were billed.
    assert reply.input_tokens == fake.stats["generate_requests"][0]["prompt_tokens"] * 2
    assert reason in error.reason
    assert error.attempts == 2 and error.retryable


def test_max_tokens_raises_the_output_limit_for_the_next_attempt(
    fake: FakeGemini, clock: FakeClock
) -> None:
    fake.configure(script=["max_tokens", "ok"])

    async def scenario() -> Any:
        async with client_for(fake, clock) as client:
            return await ask(client, max_output_tokens=1000)

    run(scenario())
    limits = [r["max_output_tokens"] for r in fake.stats["generate_requests"]]
    assert limits == [1000 + 1024, 2000 + 1024]  # the answer's room doubles; thinking's not


def test_raised_output_limit_stays_within_the_models_output_limit(
    fake: FakeGemini, clock: FakeClock
) -> None:
    """Answer room plus thinking budget never asks for more than 65,536 output tokens (the
    service would refuse the request outright)."""
    fake.configure(script=["max_tokens", "ok"])

    async def scenario() -> Any:
        async with client_for(fake, clock) as client:
            return await ask(client, max_output_tokens=40_000)

    run(scenario())
    limits = [r["max_output_tokens"] for r in fake.stats["generate_requests"]]
    assert limits == [40_000 + 1024, 65_536]


def test_all_attempts_fail(fake: FakeGemini, clock: FakeClock) -> None:
    fake.configure(rates={"503": 1.0})

    async def scenario() -> Any:
        async with client_for(fake, clock, gemini_max_attempts=3) as client:
            return await ask(client)

    with pytest.raises(ModelCallError) as info:
        run(scenario())
    assert info.value.attempts == 3 and info.value.retryable
    assert "HTTP 503" in info.value.reason
    assert fake.stats["calls"]["generate"] == 3  # the SDK itself never retried


def test_client_errors_are_not_retried(fake: FakeGemini, clock: FakeClock) -> None:
    fake.configure(script=["400"])

    async def scenario() -> Any:
        async with client_for(fake, clock) as client:
            return await ask(client)

    with pytest.raises(ModelCallError, match="HTTP 400 INVALID_ARGUMENT") as info:
        run(scenario())
    assert info.value.attempts == 1 and info.value.retryable is False
    assert fake.stats["calls"]["generate"] == 1 and clock.sleeps == []


def test_concurrent_calls_run_in_parallel(fake: FakeGemini, clock: FakeClock) -> None:
    fake.configure(latency_s=0.5)

    async def scenario() -> tuple[list[Any], float]:
        async with client_for(fake, clock) as client:
            started = time.monotonic()
            replies = await asyncio.gather(*(ask(client) for _ in range(4)))
            return replies, time.monotonic() - started

    replies, elapsed = run(scenario())
    assert len(replies) == 4
    assert fake.stats["max_in_flight"] >= 3
    assert elapsed < 1.9  # one after another would take 2 s


def test_sdk_retries_are_fully_off(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    """retry_options=None would still let the SDK's aiohttp transport sleep 1-10 s and retry
    a refused connection by itself; attempts=1 turns that off, so our loop is the only one."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings = Settings(
        analysis_id="t",
        input_uri="file:///i",
        output_uri="file:///o/",
        gemini_base_url=f"http://127.0.0.1:{closed_port}",
        gemini_max_attempts=2,
    )

    caplog.set_level(logging.INFO)
    elapsed: list[float] = []

    async def scenario() -> None:
        async with GeminiClient.from_settings(settings, sleep=clock.sleep, clock=clock) as client:
            started = time.monotonic()
            try:
                await ask(client)
            finally:
                elapsed.append(time.monotonic() - started)

    with pytest.raises(ModelCallError, match="network error") as info:
        run(scenario())
    assert "Retrying due to aiohttp error" not in caplog.text  # the SDK's hidden retry
    assert elapsed[0] < 1.9  # that retry sleeps >= 1 s per attempt
    assert info.value.attempts == 2 and info.value.retryable
    assert len(clock.sleeps) == 1  # our backoff, once


def test_the_sdk_sends_through_the_pinned_transport(fake: FakeGemini, clock: FakeClock) -> None:
    """containers/requirements.txt pins aiohttp because the SDK picks it whenever installed."""
    client = client_for(fake, clock)
    assert sdk_transport() == "aiohttp"
    assert client._sdk._api_client._use_aiohttp()  # the SDK's own decision agrees
    run(client.aclose())


def test_network_errors_of_the_fallback_transport_are_retried(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without aiohttp the SDK falls back to httpx2, whose errors are not httpx's: a refused
    connection there is a network error worth a retry, not an unexpected final failure."""
    from google.genai import _api_client

    monkeypatch.setattr(_api_client, "has_aiohttp", False)  # as if it were not installed
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings = Settings(
        analysis_id="t",
        input_uri="file:///i",
        output_uri="file:///o/",
        gemini_base_url=f"http://127.0.0.1:{closed_port}",
        gemini_max_attempts=2,
    )

    async def scenario() -> None:
        async with GeminiClient.from_settings(settings, sleep=clock.sleep, clock=clock) as client:
            assert not client._sdk._api_client._use_aiohttp()
            await ask(client)

    with pytest.raises(ModelCallError, match="network error: ConnectError") as info:
        run(scenario())
    assert info.value.attempts == 2 and info.value.retryable


# -- permanent refusals ---------------------------------------------------------------------


def test_blocked_prompt_is_not_retried(fake: FakeGemini, clock: FakeClock) -> None:
    """The same video would be blocked again, each time at its full token cost."""
    fake.configure(script=["safety", "ok"])

    async def scenario() -> Any:
        async with client_for(fake, clock) as client:
            return await ask(client)

    with pytest.raises(ModelCallError, match=r"prompt blocked \(SAFETY\)") as info:
        run(scenario())
    assert info.value.attempts == 1 and info.value.retryable is False
    assert fake.stats["calls"]["generate"] == 1 and clock.sleeps == []


@pytest.mark.parametrize(
    ("mode", "reason", "other_models_too"),
    [
        ("api_key_invalid", "invalid API key: HTTP 400 INVALID_ARGUMENT: API key not valid", True),
        ("403", "permission denied: HTTP 403 PERMISSION_DENIED", True),
        ("model_not_found", "unknown model or resource: HTTP 404 NOT_FOUND: models/", False),
        ("429_daily", "daily quota exhausted (GenerateRequestsPerDayPerProjectPerModel)", False),
    ],
)
def test_permanent_refusals_are_not_retried_and_stop_the_calls_they_doom(
    fake: FakeGemini, clock: FakeClock, mode: str, reason: str, other_models_too: bool
) -> None:
    """A bad key or a permission error fails every call, an unknown model or a spent daily
    quota every call to that model: once answered, such calls are not sent again."""
    fake.configure(script=[mode], retry_delay="30s")

    async def scenario() -> tuple[ModelCallError, ModelCallError, Any]:
        async with client_for(fake, clock) as client:
            with pytest.raises(ModelCallError) as first:
                await ask(client)
            with pytest.raises(ModelCallError) as second:
                await ask(client)  # same model: not sent
            try:
                other = await client.generate(
                    model="gemini-2.5-pro",
                    prompt="p",
                    schema=SegmentReport,
                    estimated_input_tokens=10,
                )
            except ModelCallError as exc:
                other = exc
            return first.value, second.value, other

    first, second, other = run(scenario())
    assert reason in first.reason
    assert (first.attempts, first.retryable) == (1, False)
    assert reason in second.reason and (second.attempts, second.retryable) == (0, False)
    assert clock.sleeps == []  # nothing waited for
    if other_models_too:
        assert isinstance(other, ModelCallError) and other.attempts == 0
        assert fake.stats["calls"]["generate"] == 1
    else:
        assert not isinstance(other, ModelCallError)  # another model still answers
        assert fake.stats["generate_by_model"] == {MODEL: 1, "gemini-2.5-pro": 1}


def test_request_too_large_for_the_context_window_is_permanent_for_that_request(
    fake: FakeGemini, clock: FakeClock, video: Path
) -> None:
    fake.configure(input_token_limit=1000)  # 4 s of video is ~1200 tokens

    async def scenario() -> tuple[ModelCallError, Any]:
        async with client_for(fake, clock) as client:
            handle = await client.upload(video, mime_type="video/mp4")
            with pytest.raises(ModelCallError) as too_large:
                await ask(client, handle)
            return too_large.value, await ask(client)  # text only: fits, and is sent

    error, reply = run(scenario())
    assert "request too large for the model's context window: HTTP 400" in error.reason
    assert "exceeds the maximum number of tokens allowed (1000)" in error.reason
    assert (error.attempts, error.retryable) == (1, False)
    assert reply.attempts == 1 and fake.stats["calls"]["generate"] == 2


def test_retry_delay_is_honoured_up_to_the_cap(fake: FakeGemini, clock: FakeClock) -> None:
    """A 429 asking for an hour does not hold the run (or the fleet's budget) for an hour."""
    fake.configure(script=["429", "ok"], retry_delay="3600s")

    async def scenario() -> tuple[Any, float]:
        async with client_for(fake, clock, gemini_max_retry_delay_seconds=90.0) as client:
            started = clock.now
            reply = await ask(client)
            return reply, await client.budget.paused_until(MODEL) - started

    reply, pause = run(scenario())
    assert reply.attempts == 2
    assert 90.0 <= clock.sleeps[0] <= 99.0
    assert pause <= 100.0


def test_thinking_has_a_budget_so_it_cannot_eat_the_answer(
    fake: FakeGemini, clock: FakeClock
) -> None:
    """Thinking tokens count against max_output_tokens: a model left to think 20k tokens
    would stop at MAX_TOKENS with no answer, attempt after attempt."""
    fake.configure(thinking_tokens=20_000)

    async def scenario() -> tuple[Any, Any]:
        async with client_for(fake, clock, gemini_thinking_budget=2048) as client:
            thinking = await ask(client)
            fake.configure(thinking_tokens=0)  # Gemini 2.0 does not think
            plain = await client.generate(
                model="gemini-2.0-flash", prompt="p", schema=SegmentReport, estimated_input_tokens=1
            )
            return thinking, plain

    reply, _ = run(scenario())
    assert reply.attempts == 1
    first, second = fake.stats["generate_requests"]
    assert first["thinking_budget"] == 2048
    assert first["max_output_tokens"] == 8192 + 2048  # the answer keeps its own room
    assert reply.output_tokens >= 2048  # thoughts are billed as output
    assert second["thinking_budget"] is None  # Gemini 2.0 takes no thinking config


# -- configuration ------------------------------------------------------------------------


def test_missing_api_key_without_base_url_is_refused() -> None:
    settings = Settings(analysis_id="t", input_uri="file:///i", output_uri="file:///o/")
    with pytest.raises(ModelCallError, match="GEMINI_API_KEY") as info:
        GeminiClient.from_settings(settings)
    assert info.value.retryable is False


def test_key_is_not_in_the_client_repr(fake: FakeGemini, clock: FakeClock) -> None:
    client = client_for(fake, clock, gemini_api_key="sekrit-key-123")
    assert "sekrit" not in repr(client) and "sekrit" not in repr(vars(client))
    run(client.aclose())


@pytest.mark.parametrize(
    ("details", "expected"),
    [
        (
            {
                "error": {
                    "code": 429,
                    "status": "RESOURCE_EXHAUSTED",
                    "details": [
                        {"@type": "type.googleapis.com/google.rpc.QuotaFailure"},
                        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "26s"},
                    ],
                }
            },
            26.0,
        ),
        ({"error": {"details": [{"retryDelay": "1.5s"}]}}, 1.5),
        ({"details": [{"retryDelay": {"seconds": 3, "nanos": 500_000_000}}]}, 3.5),
        ([{"error": {"details": [{"retryDelay": "0.25s"}]}}], 0.25),
        ({"error": {"code": 429, "details": []}}, None),
        ({"retryDelay": "soon"}, None),
        (None, None),
    ],
)
def test_retry_delay_parsing(details: Any, expected: float | None) -> None:
    assert retry_delay_seconds(details) == expected
