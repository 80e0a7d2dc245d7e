"""The fake Gemini's project quota: per-model moving window of requests and input tokens,
429 RESOURCE_EXHAUSTED with RetryInfo.retryDelay when a call would not fit (the call costs
nothing), and latency that grows with the call's tokens."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from analysis_engine.gemini import retry_delay_seconds
from devtools.fake_gemini import FakeGemini


def generate(fake: FakeGemini, text: str, model: str = "gemini-2.5-flash") -> tuple[int, Any]:
    body = json.dumps({"contents": [{"role": "user", "parts": [{"text": text}]}]}).encode()
    request = urllib.request.Request(
        f"{fake.base_url}/v1beta/models/{model}:generateContent",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_requests_per_window_then_429_with_the_time_until_it_fits() -> None:
    with FakeGemini(quota_rpm=2, quota_window_s=1.0) as fake:
        started = time.monotonic()
        assert generate(fake, "a")[0] == 200
        assert generate(fake, "b")[0] == 200
        assert generate(fake, "x", model="gemini-2.5-pro")[0] == 200  # its own quota
        code, body = generate(fake, "c")
        assert code == 429 and body["error"]["status"] == "RESOURCE_EXHAUSTED"
        delay = retry_delay_seconds(body["error"]["details"])
        assert delay is not None and 0.5 < delay <= 1.0 - (time.monotonic() - started) + 0.05
        time.sleep(delay + 0.02)
        assert generate(fake, "c")[0] == 200
        stats = fake.stats
        assert stats["quota_rejections"] == 1
        assert stats["quota_rejections_by_model"] == {"gemini-2.5-flash": 1}


def test_tokens_per_window_count_only_admitted_calls() -> None:
    with FakeGemini(quota_tpm=100, quota_window_s=1.0) as fake:
        assert generate(fake, "x" * 300)[0] == 200  # 75 tokens
        code, body = generate(fake, "x" * 200)  # 50 more would make 125
        assert code == 429
        assert generate(fake, "x" * 80)[0] == 200  # 20 tokens still fit: the 429 cost nothing
        assert 0.8 < (retry_delay_seconds(body["error"]["details"]) or 0) <= 1.0
        assert fake.stats["prompt_tokens"] == 95


def test_latency_grows_with_the_calls_tokens() -> None:
    with FakeGemini(latency_per_1k_tokens_s=0.5) as fake:
        started = time.monotonic()
        assert generate(fake, "x" * 40)[0] == 200  # 10 tokens: ~5 ms
        small = time.monotonic() - started
        started = time.monotonic()
        assert generate(fake, "x" * 4000)[0] == 200  # 1000 tokens: 0.5 s
        large = time.monotonic() - started
        assert small < 0.2 and 0.5 <= large < 1.0


@pytest.mark.parametrize("values", [{"quota_rpm": 0}, {"quota_tpm": 1.5}, {"quota_window_s": 0}])
def test_bad_quota_settings_are_refused(values: dict[str, Any]) -> None:
    with FakeGemini() as fake, pytest.raises(ValueError):
        fake.configure(**values)


# -- behaving like the service beyond the quota ------------------------------------------


def test_the_services_token_count_differs_from_the_estimate_both_ways() -> None:
    with FakeGemini(token_spread=0.2, seed=3) as fake:
        counts = [generate(fake, "x" * 4000)[1]["usageMetadata"]["promptTokenCount"]
                  for _ in range(40)]  # fmt: skip
    assert min(counts) < 960 and max(counts) > 1040  # the estimate is 1000: off both ways
    assert all(800 <= c <= 1200 for c in counts)
    with FakeGemini(token_bias=0.2, quota_tpm=2000, quota_window_s=5.0) as fake:
        assert generate(fake, "x" * 4000)[1]["usageMetadata"]["promptTokenCount"] == 1200
        assert generate(fake, "x" * 2400)[0] == 200  # 720: the quota counts what it says
        assert generate(fake, "x" * 400)[0] == 429  # 120 more would make 2040


def test_the_quotas_retry_delay_is_coarse() -> None:
    with FakeGemini(quota_rpm=1, quota_window_s=1.0, retry_delay_step_s=1.0) as fake:
        assert generate(fake, "a")[0] == 200
        code, body = generate(fake, "b")
    assert code == 429
    assert body["error"]["details"][-1]["retryDelay"] == "1s"  # 0.99 s, rounded up


def test_a_spike_of_429s_at_a_given_time_that_is_not_about_the_quota() -> None:
    with FakeGemini(spikes=[{"at_s": 0.3, "count": 2}], retry_delay="5s") as fake:
        assert generate(fake, "a")[0] == 200  # the first call starts the clock
        assert generate(fake, "b")[0] == 200  # before the spike
        time.sleep(0.35)
        refused = [generate(fake, "c") for _ in range(2)]
        assert generate(fake, "d")[0] == 200  # the spike is over
        stats = fake.stats
    assert [code for code, _ in refused] == [429, 429]
    body = refused[0][1]["error"]
    assert body["status"] == "RESOURCE_EXHAUSTED"  # it looks like a quota 429
    assert retry_delay_seconds(body["details"]) == 5.0
    assert stats["spike_429s"] == 2 and stats["quota_rejections"] == 0


@pytest.mark.parametrize(
    "values",
    [{"spikes": [{"at_s": 1}]}, {"token_spread": 1.0}, {"retry_delay_step_s": 0}],
)
def test_bad_service_behaviour_settings_are_refused(values: dict[str, Any]) -> None:
    with FakeGemini() as fake, pytest.raises(ValueError):
        fake.configure(**values)
