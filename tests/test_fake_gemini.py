"""The fake Gemini server: REST shapes the real SDK accepts, faults, schema answers, stats."""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Coroutine, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, TypeVar

import pytest
from google import genai
from google.genai import errors, types
from pydantic import BaseModel, Field

from devtools.fake_gemini import FakeGemini, synthesize

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[1]


class Severity(StrEnum):
    low = "low"
    high = "high"


class Score(BaseModel):
    criterion: str = Field(max_length=40)
    score: int = Field(ge=1, le=5)
    evidence_s: list[float] = Field(min_length=1, max_length=3)


class Flag(BaseModel):
    kind: Literal["external_paste", "second_person", "prompt_injection"]
    severity: Severity
    start_s: float = Field(ge=0)
    end_s: float = Field(ge=0)
    note: str | None = None


class Report(BaseModel):
    summary: str
    scores: list[Score]
    flags: list[Flag]
    confidence: float = Field(ge=0, le=1)
    reviewer: dict[str, str] | None = None


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture
def fake() -> Iterator[FakeGemini]:
    with FakeGemini() as server:
        yield server


def sdk(fake: FakeGemini) -> genai.Client:
    return genai.Client(
        api_key="ignored",
        http_options=types.HttpOptions(
            base_url=fake.base_url,
            retry_options=types.HttpRetryOptions(attempts=1),
            timeout=10_000,
        ),
    )


def post(url: str, payload: Any) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read() or b"{}")


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def generate_raw(fake: FakeGemini, text: str = "hello") -> tuple[int, dict[str, str], Any]:
    body = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
    return post(f"{fake.base_url}/v1beta/models/gemini-2.5-flash:generateContent", body)


# -- answers satisfy the schema ------------------------------------------------------------


def test_answers_satisfy_response_schema_and_json_schema(fake: FakeGemini) -> None:
    client = sdk(fake)

    async def scenario() -> None:
        for seed in range(8):
            fake.configure(seed=seed)
            for config in (
                types.GenerateContentConfig(
                    response_mime_type="application/json", response_schema=Report
                ),
                types.GenerateContentConfig(
                    response_mime_type="application/json",
                    response_json_schema=Report.model_json_schema(),
                ),
            ):
                response = await client.aio.models.generate_content(
                    model="gemini-2.5-flash", contents="grade this", config=config
                )
                report = Report.model_validate_json(response.text or "")
                assert report.scores and report.flags
                assert all(f.start_s <= f.end_s for f in report.flags)
        await client.aio.aclose()

    run(scenario())
    assert fake.stats["generate_by_model"] == {"gemini-2.5-flash": 16}


def test_synthesize_resolves_refs_and_respects_bounds() -> None:
    schema = {
        "$defs": {"Item": {"type": "object", "properties": {"n": {"$ref": "#/$defs/N"}}}},
        "type": "object",
        "required": ["items", "label", "when"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}, "minItems": 3},
            "label": {"type": ["string", "null"], "maxLength": 5},
            "when": {"type": "string", "format": "date-time"},
            "kind": {"const": "fixed"},
        },
    }
    schema["$defs"]["N"] = {"type": "integer", "minimum": 10, "maximum": 12}
    value = synthesize(schema, random.Random(1))
    assert len(value["items"]) == 3 and all(10 <= i["n"] <= 12 for i in value["items"])
    assert len(value["label"]) <= 5 and value["kind"] == "fixed"
    assert value["when"].startswith("2026-")


# -- faults ---------------------------------------------------------------------------------


def test_429_looks_like_the_real_api(fake: FakeGemini) -> None:
    fake.configure(script=["429"], retry_delay="26s")
    status, headers, body = generate_raw(fake)
    assert status == 429
    assert "Retry-After" not in headers and "retry-after" not in headers
    error = body["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED" and error["code"] == 429
    retry_info = [d for d in error["details"] if d["@type"].endswith("google.rpc.RetryInfo")]
    assert retry_info == [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "26s"}
    ]


def test_sdk_surfaces_faults_as_api_errors(fake: FakeGemini) -> None:
    fake.configure(script=["503", "400", "safety", "max_tokens", "malformed"])
    client = sdk(fake)

    async def scenario() -> list[Any]:
        seen: list[Any] = []
        config = types.GenerateContentConfig(
            response_mime_type="application/json", response_schema=Report
        )
        for _ in range(5):
            try:
                seen.append(
                    await client.aio.models.generate_content(
                        model="gemini-2.5-pro", contents="x", config=config
                    )
                )
            except errors.APIError as exc:
                seen.append(exc.code)
        await client.aio.aclose()
        return seen

    unavailable, invalid, blocked, truncated, malformed = run(scenario())
    assert (unavailable, invalid) == (503, 400)
    assert blocked.candidates is None and blocked.prompt_feedback.block_reason == "SAFETY"
    assert truncated.candidates[0].finish_reason == "MAX_TOKENS" and truncated.parsed is None
    assert malformed.parsed is None and malformed.candidates[0].finish_reason == "STOP"
    assert fake.stats["outcomes"] == {
        "503": 1,
        "400": 1,
        "safety": 1,
        "max_tokens": 1,
        "malformed": 1,
    }


def test_fail_first_then_rates_are_deterministic_per_seed() -> None:
    def outcomes() -> list[int]:
        with FakeGemini(seed=42, fail_first=2, fail_first_mode="503", rates={"429": 0.4}) as f:
            return [generate_raw(f)[0] for _ in range(20)]

    first, second = outcomes(), outcomes()
    assert first == second
    assert first[:2] == [503, 503]
    assert 429 in first[2:] and 200 in first[2:]


def test_latency_and_in_flight_counting(fake: FakeGemini) -> None:
    fake.configure(latency_s=0.4)
    threads = [threading.Thread(target=generate_raw, args=(fake,)) for _ in range(4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 0.4 <= time.monotonic() - started < 1.5  # one after another: 1.6 s
    assert fake.stats["max_in_flight"] >= 3
    # The server thread lowers the count just after writing the answer the client has read.
    deadline = time.monotonic() + 2
    while fake.stats["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.stats["in_flight"] == 0


def test_hang_is_released_when_the_fake_stops() -> None:
    fake = FakeGemini(script=["hang"]).start()
    results: list[Any] = []
    waiter = threading.Thread(target=lambda: results.append(_swallow(generate_raw, fake)))
    waiter.start()
    time.sleep(0.2)
    assert results == []  # still hanging
    started = time.monotonic()
    fake.stop()
    waiter.join(timeout=5)
    assert not waiter.is_alive() and time.monotonic() - started < 2


def _swallow(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as exc:
        return exc


# -- files ----------------------------------------------------------------------------------


def test_file_lifecycle_and_token_estimate(fake: FakeGemini, tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    subprocess.run(
        [
            "ffmpeg", "-loglevel", "error", "-f", "lavfi",
            "-i", "testsrc=duration=4:size=320x240:rate=10",
            "-c:v", "libx264", "-pix_fmt", "yuv420p", str(video),
        ],
        check=True,
    )  # fmt: skip
    fake.configure(processing_polls=1)
    client = sdk(fake)

    async def scenario() -> dict[str, Any]:
        aio = client.aio
        uploaded = await aio.files.upload(file=video, config={"mime_type": "video/mp4"})
        states = [uploaded.state]
        part = types.Part.from_uri(file_uri=uploaded.uri or "", mime_type="video/mp4")
        with pytest.raises(errors.ClientError) as early:
            await aio.models.generate_content(model="m", contents=[part, "too early"])
        states += [(await aio.files.get(name=uploaded.name or "")).state for _ in range(2)]
        listed = [f.name async for f in await aio.files.list()]
        answer = await aio.models.generate_content(model="m", contents=[part, "describe"])
        await aio.files.delete(name=uploaded.name or "")
        with pytest.raises(errors.ClientError) as gone:
            await aio.files.delete(name=uploaded.name or "")
        await aio.aclose()
        return {
            "states": [s.value if s else None for s in states],
            "early": early.value.code,
            "listed": listed,
            "name": uploaded.name,
            "size": uploaded.size_bytes,
            "tokens": answer.usage_metadata.prompt_token_count if answer.usage_metadata else 0,
            "gone": gone.value.code,
        }

    seen = run(scenario())
    assert seen["states"] == ["PROCESSING", "PROCESSING", "ACTIVE"]
    assert seen["early"] == 400 and seen["gone"] == 403
    assert seen["listed"] == [seen["name"]] and seen["size"] == video.stat().st_size
    assert 1200 <= seen["tokens"] < 1210  # 4 s x 300 tokens/s + "describe"
    stats = fake.stats
    assert stats["uploads"] == 1 and stats["deletes"] == 1 and stats["live_files"] == 0
    assert stats["calls"]["upload_start"] == 1 and stats["calls"]["upload_chunk"] == 1


def test_unreadable_media_falls_back_to_size(fake: FakeGemini) -> None:
    client = sdk(fake)
    blob = os.urandom(125_000)  # ~1 s at the fallback 1 Mbit/s

    async def scenario() -> int:
        part = types.Part.from_bytes(data=blob, mime_type="video/mp4")
        answer = await client.aio.models.generate_content(model="m", contents=[part, "x"])
        await client.aio.aclose()
        return answer.usage_metadata.prompt_token_count if answer.usage_metadata else 0

    assert 300 <= run(scenario()) <= 301


# -- control endpoints and CLI ----------------------------------------------------------------


def test_control_endpoints(fake: FakeGemini) -> None:
    status, _, config = post(f"{fake.base_url}/_fake/config", {"script": ["500"], "latency_s": 0})
    assert status == 200 and config["script"] == ["500"]
    assert post(f"{fake.base_url}/_fake/config", {"nonsense": 1})[0] == 400
    assert post(f"{fake.base_url}/_fake/config", {"script": ["explode"]})[0] == 400
    assert generate_raw(fake)[0] == 500
    stats = get(f"{fake.base_url}/_fake/stats")
    assert stats["calls"]["generate"] == 1 and stats["outcomes"] == {"500": 1}
    assert post(f"{fake.base_url}/_fake/reset", {})[0] == 200
    assert get(f"{fake.base_url}/_fake/stats")["calls"] == {}
    assert generate_raw(fake)[0] == 500  # reset rewinds the script, keeps the config


def test_cli_runs_a_configurable_server() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "devtools.fake_gemini", "--port", str(port), "--rate", "503=1"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                get(f"{base}/_fake/stats")
                break
            except OSError:
                time.sleep(0.05)
        body = {"contents": [{"parts": [{"text": "x"}]}]}
        assert post(f"{base}/v1beta/models/m:generateContent", body)[0] == 503
        post(f"{base}/_fake/config", {"rates": {}})
        assert post(f"{base}/v1/models/m:generateContent", body)[0] == 200
        assert get(f"{base}/_fake/stats")["calls"]["generate"] == 2
    finally:
        proc.terminate()
        proc.wait(timeout=5)
