"""A local fake of the Gemini Developer API that the real google-genai SDK talks to.

Point the SDK at it with ``HttpOptions(base_url=fake.base_url)`` (and any API key: the
fake ignores it). It speaks the same REST the SDK 3.x sends:

- ``POST /v1beta/models/{model}:generateContent`` (``/v1`` and ``/v1alpha`` too)
- ``POST /upload/v1beta/files`` resumable start (``X-Goog-Upload-Command: start``), then
  ``upload`` / ``upload, finalize`` chunks on the returned ``X-Goog-Upload-URL``
- ``GET /v1beta/files/{id}`` (``PROCESSING`` for a configurable number of gets, then
  ``ACTIVE`` or ``FAILED``), ``DELETE /v1beta/files/{id}``, ``GET /v1beta/files``
- ``GET /_fake/stats``, ``GET|POST /_fake/config``, ``POST /_fake/reset`` for tests and demos

Answers satisfy the JSON schema the SDK sends (``responseSchema`` or ``responseJsonSchema``).
Faults are chosen per call: first from a script, then "fail the first N", then 429 spikes
at given times, then by probability, all drawn from a seeded RNG. Like the real service, a
429 that is not about the quota (a fault, a spike) looks exactly like a quota 429; the
project quota's retryDelay is coarse (`retry_delay_step_s`), and the tokens it counts differ
from the seconds x rate estimate the containers make (`token_bias`, `token_spread`).
Errors look like the real service's: a 429 is
``RESOURCE_EXHAUSTED`` with a ``google.rpc.RetryInfo`` ``retryDelay`` in ``error.details``
and no ``Retry-After`` header.

Only the standard library is used so the fake runs anywhere (``python -m devtools.fake_gemini``).
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import json
import logging
import math
import random
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("fake_gemini")

# Every fault the fake can inject; "ok" is a normal answer.
MODES = (
    "ok",
    "429",
    "500",
    "502",
    "503",
    "504",
    "400",
    "403",
    "404",
    "hang",
    "malformed",
    "safety",
    "max_tokens",
    "schema_mismatch",
    # Refusals the real service gives for good, worded as it words them.
    "api_key_invalid",
    "model_not_found",
    "429_daily",
)
# Faults that make sense for uploads (the SDK raises APIError on them).
UPLOAD_MODES = ("ok", "429", "500", "502", "503", "504", "400", "403", "hang")

_STATUS = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
# The `_error` arguments of the refusal modes, as the real service words them.
_REFUSALS: dict[str, dict[str, Any]] = {
    "api_key_invalid": {
        "code": 400,
        "message": "API key not valid. Please pass a valid API key.",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
        ],
    },
    "model_not_found": {
        "code": 404,
        "message": "models/unknown is not found for API version v1beta, or is not supported "
        "for generateContent. Call ListModels to see the list of available models.",
    },
    "429_daily": {
        "code": 429,
        "violation": {
            "quotaMetric": "generativelanguage.googleapis.com/generate_requests_per_model_per_day",
            "quotaId": "GenerateRequestsPerDayPerProjectPerModel",
        },
    },
}
_MESSAGES = {
    400: "Request contains an invalid argument.",
    403: "The caller does not have permission",
    404: "Requested entity was not found.",
    429: "You exceeded your current quota, please check your plan and billing details.",
    500: "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    502: "Bad gateway.",
    503: "The model is overloaded. Please try again later.",
    504: "Deadline expired before operation could complete.",
}

# Published rates: ~300 tokens per second of video at default media resolution, ~100 at low.
TOKENS_PER_VIDEO_SECOND = 300
TOKENS_PER_VIDEO_SECOND_LOW = 100
# Of which the sound's share: a `videoMetadata.fps` other than 1 scales only the frames.
TOKENS_PER_AUDIO_SECOND = 32
# When ffprobe cannot read the media, assume ~1 Mbit/s to turn bytes into seconds.
FALLBACK_BYTES_PER_SECOND = 125_000

_GENERATE_RE = re.compile(r"^/(v1beta|v1|v1alpha)/(?:tunedModels|models)/([^/:]+):generateContent$")
_UPLOAD_RE = re.compile(r"^/upload/(v1beta|v1|v1alpha)/files$")
_FILE_RE = re.compile(r"^/(v1beta|v1|v1alpha)/files/([^/:]+)$")
_FILES_RE = re.compile(r"^/(v1beta|v1|v1alpha)/files$")


@dataclass
class FakeConfig:
    """Runtime-adjustable behaviour. Every field can be set via `configure()` or /_fake/config."""

    latency_s: float = 0.0  # added before every generateContent answer
    upload_latency_s: float = 0.0  # added before every upload request
    seed: int = 0
    # Per-call fault choice for generateContent, in this order of precedence:
    script: list[str] = field(default_factory=list)  # consumed one entry per call
    fail_first: int = 0  # then the first N calls (counted after the script) fail ...
    fail_first_mode: str = "429"  # ... with this mode
    rates: dict[str, float] = field(default_factory=dict)  # then e.g. {"429": 0.5}
    # Before the rates: 429 spikes that are not about the quota (the service's overload),
    # each {"at_s": seconds after the first generateContent since the last reset,
    # "count": how many calls from then on get a 429}, answered with `retry_delay`.
    spikes: list[dict[str, float]] = field(default_factory=list)
    # The same three knobs for resumable-upload starts.
    upload_script: list[str] = field(default_factory=list)
    upload_fail_first: int = 0
    upload_fail_first_mode: str = "503"
    upload_rates: dict[str, float] = field(default_factory=dict)
    retry_delay: str | None = "1s"  # RetryInfo.retryDelay on 429s (None: omit RetryInfo)
    hang_s: float = 3600.0  # how long a "hang" holds the request before closing it
    processing_polls: int = 1  # files.get answers PROCESSING this many times, then ...
    file_final_state: str = "ACTIVE"  # ... this state (ACTIVE or FAILED)
    output_tokens: int | None = None  # override candidatesTokenCount (else len(text)/4)
    # A project quota like the real service's, per model over a moving window: requests and
    # input tokens (video seconds x 300 at default resolution) per `quota_window_s`. Beyond it
    # a call gets 429 RESOURCE_EXHAUSTED with RetryInfo.retryDelay = when it would fit; a
    # rejected call consumes nothing. None: no quota. Benchmarks shorten the window to scale
    # time down (and the budgets with it).
    quota_rpm: int | None = None
    quota_tpm: int | None = None
    quota_window_s: float = 60.0
    # The quota 429's retryDelay is rounded up to a multiple of this, as the real service's
    # is (whole seconds; time-scaled benchmarks scale it).
    retry_delay_step_s: float = 0.001
    # The service counts a request's tokens its own way: the count (in promptTokenCount and
    # against the quota) is the seconds x rate estimate times (1 + token_bias + u), u drawn
    # uniformly from [-token_spread, +token_spread] per call.
    token_bias: float = 0.0
    token_spread: float = 0.0
    # Latency grows with the request: this many seconds per 1000 input tokens, on top of
    # latency_s (a 2-minute video segment of ~36k tokens takes tens of seconds for real).
    latency_per_1k_tokens_s: float = 0.0
    # Scripted answers: "demo" answers structured calls from devtools.story (the events
    # drawn into the demo's recordings) instead of synthesising random values; "labels"
    # answers from a labelled eval case (`labels`, evals.cases.fake_labels) for the clips
    # it is shown (devtools.label_answers).
    answers: str | None = None
    labels: dict[str, Any] | None = None
    # answers "replay": the recorded answers in this directory (devtools.gemini_replay),
    # keyed by request hash; an unrecorded request gets 400 "not recorded".
    replay_dir: str | None = None
    # The model's input limit: a larger request gets the real 400 INVALID_ARGUMENT.
    input_token_limit: int = 1_048_576
    # A thinking model reasons this many tokens before answering, unless the request's
    # thinkingConfig.thinkingBudget caps it; like the real service, thoughts count against
    # maxOutputTokens (thoughts + answer beyond it: finishReason MAX_TOKENS).
    thinking_tokens: int = 0

    def update(self, values: dict[str, Any]) -> None:
        known = {f.name for f in fields(self)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown fake config keys: {sorted(unknown)}")
        for key, value in values.items():
            setattr(self, key, value)
        self.validate()

    def validate(self) -> None:
        for mode in [*self.script, self.fail_first_mode, *self.rates]:
            if mode not in MODES:
                raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
        for mode in [*self.upload_script, self.upload_fail_first_mode, *self.upload_rates]:
            if mode not in UPLOAD_MODES:
                raise ValueError(f"unknown upload mode {mode!r}; expected one of {UPLOAD_MODES}")
        for rates in (self.rates, self.upload_rates):
            if sum(rates.values()) > 1.0 + 1e-9:
                raise ValueError(f"rates add up to more than 1: {rates}")
        if self.file_final_state not in ("ACTIVE", "FAILED"):
            raise ValueError("file_final_state must be ACTIVE or FAILED")
        if self.answers not in (None, "demo", "labels", "replay"):
            raise ValueError(
                f"unknown answers {self.answers!r}; expected demo, labels, replay or null"
            )
        if self.answers == "replay" and not self.replay_dir:
            raise ValueError("answers 'replay' needs replay_dir (a devtools.gemini_replay store)")
        if self.answers == "labels" and not isinstance(self.labels, dict):
            raise ValueError("answers 'labels' needs labels (evals.cases.fake_labels(case))")
        for spike in self.spikes:
            if set(spike) != {"at_s", "count"} or spike["at_s"] < 0 or spike["count"] < 1:
                raise ValueError(f"a spike is {{'at_s': >= 0, 'count': >= 1}}, got {spike!r}")
        if self.retry_delay_step_s <= 0 or self.token_spread < 0:
            raise ValueError("retry_delay_step_s must be > 0 and token_spread >= 0")
        if abs(self.token_bias) + self.token_spread >= 1:
            raise ValueError("token_bias and token_spread together must stay within (-1, 1)")
        for name in ("quota_rpm", "quota_tpm"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or null, got {value!r}")
        if self.quota_window_s <= 0 or self.latency_per_1k_tokens_s < 0:
            raise ValueError("quota_window_s must be > 0 and latency_per_1k_tokens_s >= 0")


@dataclass
class _StoredFile:
    name: str  # "files/abc"
    mime_type: str
    display_name: str
    path: Path
    size_bytes: int
    sha256: str
    created: datetime
    duration_s: float | None
    gets: int = 0


@dataclass
class _Upload:
    mime_type: str
    display_name: str
    declared_size: int
    path: Path
    received: int = 0


def _new_stats() -> dict[str, Any]:
    return {
        "calls": {},  # endpoint -> count (every request, faulty or not)
        "generate_by_model": {},  # model -> count
        "outcomes": {},  # mode -> count (generateContent answers)
        "upload_outcomes": {},  # mode -> count (upload starts)
        "uploads": 0,  # finalized uploads
        "upload_bytes": 0,
        "deletes": 0,
        "live_files": 0,
        "max_live_files": 0,
        "prompt_tokens": 0,  # tokens served on 200 answers
        "output_tokens": 0,
        "in_flight": 0,
        "max_in_flight": 0,  # peak concurrent generateContent calls
        "generate_requests": [],  # one summary per generateContent call, in arrival order
        "quota_rejections": 0,  # 429s from the project quota (not scripted faults)
        "spike_429s": 0,  # 429s from `spikes` (not about the quota)
        "quota_rejections_by_model": {},
    }


class FakeState:
    """Everything the fake knows, shared by all handler threads (guarded by one lock)."""

    def __init__(self, config: FakeConfig | None = None) -> None:
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.config = config or FakeConfig()
        self.config.validate()
        self.storage = Path(tempfile.mkdtemp(prefix="fake-gemini-"))
        self._ffprobe = shutil.which("ffprobe")
        self._duration_cache: dict[str, float | None] = {}
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.stats = _new_stats()
            self.files: dict[str, _StoredFile] = {}
            self.uploads: dict[str, _Upload] = {}
            self.rng = random.Random(self.config.seed)
            self._script_pos = 0
            self._upload_script_pos = 0
            self._unscripted_calls = 0
            self._unscripted_uploads = 0
            self._quota_windows: dict[str, deque[tuple[float, int]]] = {}
            self._first_call: float | None = None
            self._spiked: list[int] = []  # calls answered so far by each spike
            self.shown: list[tuple[float, float]] = []  # clips MAP calls named (labels mode)
        for child in self.storage.iterdir():
            child.unlink(missing_ok=True)

    def close(self) -> None:
        self.stopping.set()
        shutil.rmtree(self.storage, ignore_errors=True)

    def configure(self, values: dict[str, Any]) -> None:
        with self.lock:
            merged = copy.deepcopy(self.config)
            merged.update(values)
            self.config = merged
            if "seed" in values:
                self.rng = random.Random(self.config.seed)
            if "script" in values:
                self._script_pos = 0
            if "upload_script" in values:
                self._upload_script_pos = 0
            if "fail_first" in values:
                self._unscripted_calls = 0
            if "upload_fail_first" in values:
                self._unscripted_uploads = 0

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self.stats)

    def count(self, endpoint: str) -> None:
        with self.lock:
            calls = self.stats["calls"]
            calls[endpoint] = calls.get(endpoint, 0) + 1

    # -- the project quota ------------------------------------------------------------

    def admit_quota(self, model: str, tokens: int, arrived: float) -> float | None:
        """Count a call (arrived at `arrived`, time.monotonic()) against the model's quota:
        None when admitted, else the seconds until it would fit (what the real service puts
        in RetryInfo.retryDelay)."""
        with self.lock:
            cfg = self.config
            if cfg.quota_rpm is None and cfg.quota_tpm is None:
                return None
            # Counted from its arrival, as the service does: the fake's own work on the
            # request (parsing, probing media) must not make it look later than it was.
            now = arrived
            # Calls are counted from their arrival, which need not be the order they got
            # here in: keep the window sorted.
            kept = sorted(
                e for e in self._quota_windows.get(model, ()) if e[0] > now - cfg.quota_window_s
            )
            window = self._quota_windows[model] = deque(kept)
            rpm = cfg.quota_rpm if cfg.quota_rpm is not None else math.inf
            tpm = cfg.quota_tpm if cfg.quota_tpm is not None else math.inf
            used = sum(t for _, t in window)
            if len(window) < rpm and (used + tokens <= tpm or (not window and tokens > tpm)):
                window.append((now, tokens))
                self._quota_windows[model] = deque(sorted(window))
                return None
            # Oldest first: when enough has left the window for this call to fit.
            wait, remaining, count = cfg.quota_window_s, used, len(window)
            for at, spent in window:
                remaining -= spent
                count -= 1
                if count < rpm and (remaining + tokens <= tpm or count == 0):
                    wait = at + cfg.quota_window_s - now
                    break
            self.stats["quota_rejections"] += 1
            by_model = self.stats["quota_rejections_by_model"]
            by_model[model] = by_model.get(model, 0) + 1
            return max(wait - (time.monotonic() - arrived), 0.001)

    # -- fault choice -----------------------------------------------------------------

    def choose_mode(self) -> str:
        with self.lock:
            cfg = self.config
            if self._script_pos < len(cfg.script):
                mode = cfg.script[self._script_pos]
                self._script_pos += 1
            else:
                self._unscripted_calls += 1
                if self._unscripted_calls <= cfg.fail_first:
                    mode = cfg.fail_first_mode
                elif self._spike_now():
                    mode = "429"
                else:
                    mode = _draw(self.rng, cfg.rates)
            outcomes = self.stats["outcomes"]
            outcomes[mode] = outcomes.get(mode, 0) + 1
            return mode

    def _spike_now(self) -> bool:
        """Whether a spike takes this call (under the lock)."""
        now = time.monotonic()
        if self._first_call is None:
            self._first_call = now
        spikes = self.config.spikes
        self._spiked += [0] * (len(spikes) - len(self._spiked))
        for index, spike in enumerate(spikes):
            started = now >= self._first_call + spike["at_s"]
            if started and self._spiked[index] < spike["count"]:
                self._spiked[index] += 1
                self.stats["spike_429s"] += 1
                return True
        return False

    def counted_tokens(self, estimate: int) -> int:
        """The service's own count of a request the seconds x rate estimate puts at
        `estimate` (see token_bias, token_spread)."""
        with self.lock:
            cfg = self.config
            if not cfg.token_bias and not cfg.token_spread:
                return estimate
            factor = 1 + cfg.token_bias + self.rng.uniform(-cfg.token_spread, cfg.token_spread)
        return max(1, round(estimate * factor))

    def choose_upload_mode(self) -> str:
        with self.lock:
            cfg = self.config
            if self._upload_script_pos < len(cfg.upload_script):
                mode = cfg.upload_script[self._upload_script_pos]
                self._upload_script_pos += 1
            else:
                self._unscripted_uploads += 1
                if self._unscripted_uploads <= cfg.upload_fail_first:
                    mode = cfg.upload_fail_first_mode
                else:
                    mode = _draw(self.rng, cfg.upload_rates)
            outcomes = self.stats["upload_outcomes"]
            outcomes[mode] = outcomes.get(mode, 0) + 1
            return mode

    # -- media duration ---------------------------------------------------------------

    def cached_duration(self, digest: str) -> tuple[bool, float | None]:
        """(known, seconds): known is False until the media has been probed once."""
        if digest in self._duration_cache:
            return True, self._duration_cache[digest]
        return False, None

    def media_duration(self, path: Path, digest: str) -> float | None:
        if digest in self._duration_cache:
            return self._duration_cache[digest]
        duration = _ffprobe_duration(self._ffprobe, path)
        self._duration_cache[digest] = duration
        return duration


def _draw(rng: random.Random, rates: dict[str, float]) -> str:
    roll = rng.random()
    for mode, rate in rates.items():
        if roll < rate:
            return mode
        roll -= rate
    return "ok"


def _clipped(seconds: float, video_metadata: dict[str, Any] | None) -> float:
    """Seconds the model sees: the clip between startOffset and endOffset, like the real API."""
    if not video_metadata:
        return seconds
    start = _offset_seconds(_field(video_metadata, "startOffset"), 0.0)
    end = _offset_seconds(_field(video_metadata, "endOffset"), seconds)
    return max(0.0, min(end, seconds) - max(start, 0.0))


def _fps(video_metadata: dict[str, Any] | None) -> float:
    try:
        fps = float(_field(video_metadata or {}, "fps") or 1.0)
    except (TypeError, ValueError):
        return 1.0
    return fps if fps > 0 else 1.0


def _offset_seconds(value: Any, default: float) -> float:
    if value is None:
        return default
    try:
        return float(str(value).rstrip("s"))
    except ValueError:
        return default


def _ffprobe_duration(ffprobe: str | None, path: Path) -> float | None:
    if not ffprobe:
        return None
    try:
        out = subprocess.run(
            [ffprobe, "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout.strip()
        return float(out) if out and out != "N/A" else None
    except (subprocess.SubprocessError, ValueError, OSError):
        return None


# -- schema-driven answers ------------------------------------------------------------


def synthesize(schema: dict[str, Any] | None, rng: random.Random) -> Any:
    """A plausible instance of `schema` (Gemini `Schema` or JSON Schema, $refs resolved)."""
    if not schema:
        return {"text": "Fake answer."}
    return _Synth(schema, rng).value(schema, "root", 0)


class _Synth:
    def __init__(self, root: dict[str, Any], rng: random.Random) -> None:
        self.defs = {**root.get("definitions", {}), **root.get("$defs", {})}
        self.rng = rng

    def value(self, schema: dict[str, Any], name: str, depth: int) -> Any:
        schema = self._resolve(schema)
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return self.rng.choice(schema["enum"])
        for key in ("anyOf", "oneOf", "allOf"):
            if _field(schema, key):
                options = [self._resolve(s) for s in _field(schema, key)]
                non_null = [s for s in options if _type_of(s) != "null"]
                return self.value((non_null or options)[0], name, depth)
        kind = _type_of(schema)
        if kind == "object" or "properties" in schema:
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, name, depth)
        if kind in ("number", "integer"):
            return self._number(schema, name, kind)
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "null":
            return None
        return self._string(schema, name)

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        seen = 0
        while "$ref" in schema and seen < 50:
            ref = schema["$ref"].rsplit("/", 1)[-1]
            schema = {**self.defs.get(ref, {}), **{k: v for k, v in schema.items() if k != "$ref"}}
            seen += 1
        return schema

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        props: dict[str, Any] = schema.get("properties") or {}
        required = set(schema.get("required") or props)
        order = _field(schema, "propertyOrdering") or list(props)
        out = {}
        for key in order:
            # Optional fields are filled too unless nesting gets deep: reports look fuller.
            if key in props and (key in required or depth < 3):
                out[key] = self.value(props[key], key, depth + 1)
        _order_ranges(out)
        return out

    def _array(self, schema: dict[str, Any], name: str, depth: int) -> list[Any]:
        low = int(_field(schema, "minItems", 1 if depth < 4 else 0))
        high = int(_field(schema, "maxItems", max(low, 2)))
        count = max(low, min(high, self.rng.randint(1, 2)))
        items = schema.get("items") or {"type": "string"}
        values = [self.value(items, name, depth + 1) for _ in range(count)]
        if values and all(isinstance(v, dict) for v in values):
            _order_sequence(values)
        return values

    def _number(self, schema: dict[str, Any], name: str, kind: str) -> float | int:
        low = _as_float(schema.get("minimum", _field(schema, "exclusiveMinimum")))
        high = _as_float(schema.get("maximum", _field(schema, "exclusiveMaximum")))
        if low is None and high is None:
            low, high = (0.0, 1.0) if "confidence" in name or "score" in name else (0.0, 60.0)
        elif low is None:
            low = min(0.0, high - 1.0)  # type: ignore[operator]
        elif high is None:
            high = low + 60.0
        if kind == "integer":
            return self.rng.randint(math.ceil(low), max(math.ceil(low), math.floor(high)))  # type: ignore[arg-type]
        value = round(self.rng.uniform(low, high), 2)  # type: ignore[arg-type]
        return min(max(value, low), high)  # type: ignore[type-var]

    def _string(self, schema: dict[str, Any], name: str) -> str:
        fmt = schema.get("format")
        if fmt == "date-time":
            return datetime(2026, 1, 1, 9, 0, tzinfo=UTC).isoformat()
        if fmt == "date":
            return "2026-01-01"
        text = f"Fake {name.replace('_', ' ')} #{self.rng.randint(1, 999)}"
        min_len = int(_field(schema, "minLength", 0))
        max_len = _field(schema, "maxLength")
        text = text.ljust(min_len, ".")
        return text[: int(max_len)] if max_len is not None else text


def _thoughts(gen_config: dict[str, Any], thinking_tokens: int) -> int:
    """Thinking tokens spent on a request: the model's habit, capped by its budget."""
    budget = _field(_field(gen_config, "thinkingConfig") or {}, "thinkingBudget")
    return thinking_tokens if budget is None else min(thinking_tokens, max(0, int(budget)))


def _schema_of(gen_config: dict[str, Any]) -> dict[str, Any] | None:
    return _field(gen_config, "responseJsonSchema") or _field(gen_config, "responseSchema")


def _field(obj: dict[str, Any], camel: str, default: Any = None) -> Any:
    """`obj[camel]`, accepting the snake_case spelling the SDK sometimes sends instead."""
    if camel in obj:
        return obj[camel]
    return obj.get(re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), camel), default)


def _type_of(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):  # JSON Schema allows ["string", "null"]
        non_null = [k for k in kind if str(k).lower() != "null"]
        kind = non_null[0] if non_null else "null"
    return str(kind).lower() if kind else None


def _as_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _order_ranges(obj: dict[str, Any]) -> None:
    """Keep `start*` <= `end*` inside one object so range validators in the schema hold."""
    for key in list(obj):
        if not key.startswith("start"):
            continue
        end_key = "end" + key[len("start") :]
        start, end = obj.get(key), obj.get(end_key)
        if _is_number(start) and _is_number(end) and start > end:
            obj[key], obj[end_key] = end, start


def _order_sequence(items: list[dict[str, Any]]) -> None:
    """Timelines read better (and validate) when entries are in start order."""
    keys = [k for k in items[0] if k.startswith("start") and _is_number(items[0][k])]
    if keys:
        items.sort(key=lambda item: item.get(keys[0], 0))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# -- the HTTP side --------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without TCP_NODELAY every keep-alive
    # answer would wait ~40 ms for a delayed ACK.
    disable_nagle_algorithm = True
    server: _Server

    # Quiet by default; the demo can turn logging up.
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    @property
    def state(self) -> FakeState:
        return self.server.state

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        body = self._read_body()
        try:
            self._route(method, url.path, parse_qs(url.query), body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeouts do this); nothing to answer
        except Exception as exc:  # a bug in the fake must still answer with JSON
            log.exception("fake gemini failed on %s %s", method, url.path)
            self._error(500, f"fake server error: {exc}")

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> None:
        if path.startswith("/_fake/"):
            self._control(method, path, body)
        elif method == "POST" and (m := _GENERATE_RE.match(path)):
            self._generate(m.group(2), body)
        elif method == "POST" and _UPLOAD_RE.match(path):
            if "upload_id" in query:
                self._upload_chunk(query["upload_id"][0], body)
            else:
                self._upload_start(path, body)
        elif method == "GET" and (m := _FILE_RE.match(path)):
            self._get_file(m.group(2))
        elif method == "DELETE" and (m := _FILE_RE.match(path)):
            self._delete_file(m.group(2))
        elif method == "GET" and _FILES_RE.match(path):
            self._list_files()
        else:
            self.state.count("unknown")
            self._error(404, f"Method not found: {method} {path}")

    # -- plumbing ----------------------------------------------------------------

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, code: int, message: str | None = None, **extra: Any) -> None:
        error: dict[str, Any] = {
            "code": code,
            "message": message or _MESSAGES.get(code, "error"),
            "status": _STATUS.get(code, "UNKNOWN"),
        }
        if extra.get("details"):
            error["details"] = list(extra["details"])
        if code == 429:
            error["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        extra.get("violation")
                        or {
                            "quotaMetric": "generativelanguage.googleapis.com/"
                            "generate_content_paid_tier_input_token_count",
                            "quotaId": "GenerateContentPaidTierInputTokensPerModelPerMinute",
                        }
                    ],
                },
                {
                    "@type": "type.googleapis.com/google.rpc.Help",
                    "links": [
                        {
                            "description": "Learn more about Gemini API quotas",
                            "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                        }
                    ],
                },
            ]
            if extra.get("retry_delay"):
                error["details"].append(
                    {
                        "@type": "type.googleapis.com/google.rpc.RetryInfo",
                        "retryDelay": extra["retry_delay"],
                    }
                )
        self._send(code, {"error": error}, extra.get("headers"))

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            self.state.stopping.wait(seconds)

    def _hang(self) -> None:
        """Hold the request without answering, then drop the connection."""
        self.state.stopping.wait(self.state.config.hang_s)
        self.close_connection = True

    def _fault(self, mode: str) -> bool:
        """Answer with the HTTP-level fault `mode`; False when `mode` is not one."""
        if mode == "hang":
            self._hang()
            return True
        if mode.isdigit():
            self._error(int(mode), retry_delay=self.state.config.retry_delay)
            return True
        if mode in _REFUSALS:
            self._error(**_REFUSALS[mode], retry_delay=self.state.config.retry_delay)
            return True
        return False

    def _base(self) -> str:
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        return f"http://{host}"

    # -- /_fake -----------------------------------------------------------------

    def _control(self, method: str, path: str, body: bytes) -> None:
        if path == "/_fake/stats" and method == "GET":
            self._send(200, self.state.snapshot())
        elif path == "/_fake/config" and method == "GET":
            self._send(200, asdict(self.state.config))
        elif path == "/_fake/config" and method == "POST":
            try:
                self.state.configure(json.loads(body or b"{}"))
            except (ValueError, TypeError) as exc:
                self._error(400, str(exc))
                return
            self._send(200, asdict(self.state.config))
        elif path == "/_fake/reset" and method == "POST":
            self.state.reset()
            self._send(200, {"reset": True})
        else:
            self._error(404, f"no fake control endpoint {method} {path}")

    # -- generateContent --------------------------------------------------------

    def _generate(self, model: str, body: bytes) -> None:
        state = self.state
        state.count("generate")
        with state.lock:
            by_model = state.stats["generate_by_model"]
            by_model[model] = by_model.get(model, 0) + 1
            state.stats["in_flight"] += 1
            state.stats["max_in_flight"] = max(
                state.stats["max_in_flight"], state.stats["in_flight"]
            )
        try:
            self._generate_inner(model, body)
        finally:
            with state.lock:
                state.stats["in_flight"] -= 1

    def _generate_inner(self, model: str, body: bytes) -> None:
        state = self.state
        arrived = time.monotonic()
        mode = state.choose_mode()
        try:
            request = json.loads(body or b"{}")
        except json.JSONDecodeError:
            self._error(400, "Invalid JSON payload received.")
            return
        gen_config = _field(request, "generationConfig") or {}
        media_seconds, media_problem = self._media_seconds(request)
        prompt = "\n".join(
            part["text"]
            for content in request.get("contents") or []
            for part in content.get("parts") or []
            if isinstance(part.get("text"), str)
        )
        prompt_chars = len(prompt)
        low = str(_field(gen_config, "mediaResolution", "")).upper() == "MEDIA_RESOLUTION_LOW"
        per_second = TOKENS_PER_VIDEO_SECOND_LOW if low else TOKENS_PER_VIDEO_SECOND
        frames = self._frame_seconds(request, media_seconds)
        media_tokens = media_seconds * TOKENS_PER_AUDIO_SECOND + frames * (
            per_second - TOKENS_PER_AUDIO_SECOND
        )
        prompt_tokens = state.counted_tokens(max(1, round(media_tokens + prompt_chars / 4)))
        with state.lock:
            state.stats["generate_requests"].append(
                {
                    "model": model,
                    "mode": mode,
                    "prompt": prompt,  # the text parts, so tests can check what was asked
                    "prompt_chars": prompt_chars,
                    "media_seconds": round(media_seconds, 3),
                    "media_resolution": _field(gen_config, "mediaResolution"),
                    "prompt_tokens": prompt_tokens,
                    "has_schema": bool(_schema_of(gen_config)),
                    "max_output_tokens": _field(gen_config, "maxOutputTokens"),
                    "thinking_budget": _field(
                        _field(gen_config, "thinkingConfig") or {}, "thinkingBudget"
                    ),
                }
            )
        log.info(
            "generateContent model=%s outcome=%s media=%.1fs prompt_tokens=%d",
            model,
            mode,
            media_seconds,
            prompt_tokens,
        )
        if media_problem is None and prompt_tokens > state.config.input_token_limit:
            media_problem = (
                400,
                f"The input token count ({prompt_tokens}) exceeds the maximum number of "
                f"tokens allowed ({state.config.input_token_limit}).",
            )
        if not media_problem and mode not in _REFUSALS and mode != "hang" and not mode.isdigit():
            retry_after = state.admit_quota(model, prompt_tokens, arrived)
            if retry_after is not None:
                step = state.config.retry_delay_step_s
                coarse = math.ceil(round(retry_after / step, 6)) * step
                self._error(429, retry_delay=f"{round(coarse, 3):g}s")
                return
        self._pause(
            state.config.latency_s + state.config.latency_per_1k_tokens_s * prompt_tokens / 1000
        )
        if self._fault(mode):
            return
        if media_problem:
            self._error(*media_problem)
            return
        if state.config.answers == "replay":
            self._replay(model, request)
            return
        self._answer(model, mode, gen_config, prompt_tokens, prompt=prompt)

    def _replay(self, model: str, request: dict[str, Any]) -> None:
        """The recorded answer to this exact request, or 400 "not recorded"."""
        from devtools.gemini_replay import Store, identity, request_key

        def file_identity(uri: str) -> str | None:
            with self.state.lock:
                stored = self.state.files.get(uri.rstrip("/").rsplit("/", 1)[-1])
            if stored is None:
                return None
            return identity(stored.display_name, stored.size_bytes, stored.mime_type)

        key = request_key(model, request, file_identity)
        record = Store(Path(str(self.state.config.replay_dir))).get(key)
        if record is None:
            self._error(400, f"not recorded: no recorded answer for request {key}")
            return
        usage = (record.get("response") or {}).get("usageMetadata") or {}
        self._served(int(usage.get("promptTokenCount") or 0),
                     int(usage.get("candidatesTokenCount") or 0))  # fmt: skip
        self._send(int(record.get("status", 200)), record.get("response"))

    def _media_seconds(self, request: dict[str, Any]) -> tuple[float, tuple[int, str] | None]:
        """Total seconds of media in the request, or the error the real API would give."""
        total = 0.0
        for content in request.get("contents") or []:
            for part in content.get("parts") or []:
                if (file_data := _field(part, "fileData")) is not None:
                    uri = _field(file_data, "fileUri", "")
                    file_id = uri.rstrip("/").rsplit("/", 1)[-1]
                    with self.state.lock:
                        stored = self.state.files.get(file_id)
                    if stored is None:
                        return total, (
                            403,
                            f"You do not have permission to access the File {file_id} "
                            "or it may not exist.",
                        )
                    if _file_state(stored, self.state.config) != "ACTIVE":
                        return total, (
                            400,
                            f"The File {file_id} is not in an ACTIVE state and usage is "
                            "not allowed.",
                        )
                    seconds = _seconds(stored.duration_s, stored.size_bytes)
                    total += _clipped(seconds, _field(part, "videoMetadata"))
                elif (inline := _field(part, "inlineData")) is not None:
                    raw = _b64decode(inline.get("data", ""))
                    seconds = self._inline_seconds(raw)
                    total += _clipped(seconds, _field(part, "videoMetadata"))
        return total, None

    def _frame_seconds(self, request: dict[str, Any], media_seconds: float) -> float:
        """`media_seconds` with each part's frames weighted by its `videoMetadata.fps` (the
        real API samples 1 frame per second unless told otherwise)."""
        scale = [
            _fps(_field(part, "videoMetadata"))
            for content in request.get("contents") or []
            for part in content.get("parts") or []
            if _field(part, "fileData") is not None or _field(part, "inlineData") is not None
        ]
        if all(s == 1.0 for s in scale):
            return media_seconds
        # Parts are weighted by their share of the media; one part is the usual request.
        return media_seconds * sum(scale) / len(scale)

    def _inline_seconds(self, raw: bytes) -> float:
        digest = hashlib.sha256(raw).hexdigest()
        known, duration = self.state.cached_duration(digest)
        if not known:
            # ffprobe needs a seekable file; keep it only while probing.
            path = self.state.storage / f"inline-{uuid.uuid4().hex}"
            path.write_bytes(raw)
            try:
                duration = self.state.media_duration(path, digest)
            finally:
                path.unlink(missing_ok=True)
        return _seconds(duration, len(raw))

    def _answer(
        self,
        model: str,
        mode: str,
        gen_config: dict[str, Any],
        prompt_tokens: int,
        *,
        prompt: str = "",
    ) -> None:
        state = self.state
        with state.lock:
            instance_rng = random.Random(state.rng.random())
        schema = _schema_of(gen_config)
        wants_json = "json" in str(_field(gen_config, "responseMimeType", ""))
        if mode == "safety":
            payload = {
                "promptFeedback": {
                    "blockReason": "SAFETY",
                    "safetyRatings": [
                        {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}
                    ],
                },
                "usageMetadata": {
                    "promptTokenCount": prompt_tokens,
                    "totalTokenCount": prompt_tokens,
                },
                "modelVersion": model,
            }
            self._served(prompt_tokens, 0)
            self._send(200, payload)
            return
        if schema or wants_json:
            value = {} if mode == "schema_mismatch" else self._scripted(schema, prompt)
            if value is None:
                value = synthesize(schema, instance_rng)
            text = json.dumps(value, indent=1)
        else:
            text = "Fake answer: the candidate worked steadily through the task."
        finish = "STOP"
        if mode == "malformed":
            text = "Sure! Here is the JSON you asked for:\n```json\n" + text[: len(text) // 2]
        elif mode == "max_tokens":
            text, finish = text[: max(1, len(text) // 3)], "MAX_TOKENS"
        output_tokens = state.config.output_tokens or max(1, len(text) // 4)
        thoughts = _thoughts(gen_config, state.config.thinking_tokens)
        limit = _field(gen_config, "maxOutputTokens")
        if thoughts and limit is not None and thoughts + output_tokens > int(limit):
            output_tokens = max(0, int(limit) - thoughts)  # thinking used up the limit
            text, finish = text[: output_tokens * 4], "MAX_TOKENS"
        payload = {
            "candidates": [
                {
                    "content": {"parts": [{"text": text}] if text else [], "role": "model"},
                    "finishReason": finish,
                    "index": 0,
                }
            ],
            "usageMetadata": {
                "promptTokenCount": prompt_tokens,
                "candidatesTokenCount": output_tokens,
                "totalTokenCount": prompt_tokens + output_tokens + thoughts,
                **({"thoughtsTokenCount": thoughts} if thoughts else {}),
            },
            "modelVersion": model,
            "responseId": uuid.uuid4().hex[:22],
        }
        self._served(prompt_tokens, output_tokens + thoughts)
        self._send(200, payload)

    def _scripted(self, schema: dict[str, Any] | None, prompt: str) -> Any:
        """The story's or the labels' answer when scripted answers are on, else None
        (synthesise)."""
        config = self.state.config
        if config.answers == "labels":
            from devtools import label_answers  # stdlib only, like the fake

            with self.state.lock:
                shown = self.state.shown
                return label_answers.answer(config.labels or {}, schema, prompt, shown)
        if config.answers != "demo":
            return None
        from devtools.story import scripted_answer  # stdlib only, like the fake

        return scripted_answer(schema, prompt)

    def _served(self, prompt_tokens: int, output_tokens: int) -> None:
        with self.state.lock:
            self.state.stats["prompt_tokens"] += prompt_tokens
            self.state.stats["output_tokens"] += output_tokens

    # -- Files API --------------------------------------------------------------

    def _upload_start(self, path: str, body: bytes) -> None:
        state = self.state
        state.count("upload_start")
        self._pause(state.config.upload_latency_s)
        if self._fault(state.choose_upload_mode()):
            return
        if (self.headers.get("X-Goog-Upload-Command") or "").lower() != "start":
            self._error(400, "Only resumable uploads are supported by the fake.")
            return
        meta = (json.loads(body or b"{}").get("file") or {}) if body else {}
        upload_id = uuid.uuid4().hex
        declared = int(self.headers.get("X-Goog-Upload-Header-Content-Length") or 0)
        mime = (
            self.headers.get("X-Goog-Upload-Header-Content-Type")
            or _field(meta, "mimeType")
            or "application/octet-stream"
        )
        with state.lock:
            state.uploads[upload_id] = _Upload(
                mime_type=mime,
                display_name=_field(meta, "displayName")
                or self.headers.get("X-Goog-Upload-File-Name")
                or "",
                declared_size=declared,
                path=state.storage / f"upload-{upload_id}",
            )
        url = f"{self._base()}{path}?upload_id={upload_id}&upload_protocol=resumable"
        self._send(
            200,
            None,
            {
                "X-Goog-Upload-URL": url,
                "X-Goog-Upload-Status": "active",
                "X-Goog-Upload-Chunk-Granularity": "8388608",
            },
        )

    def _upload_chunk(self, upload_id: str, body: bytes) -> None:
        state = self.state
        state.count("upload_chunk")
        command = (self.headers.get("X-Goog-Upload-Command") or "").lower()
        offset = int(self.headers.get("X-Goog-Upload-Offset") or 0)
        with state.lock:
            upload = state.uploads.get(upload_id)
        if upload is None:
            self._error(404, "Upload session not found.", headers={"X-Goog-Upload-Status": "final"})
            return
        if offset != upload.received:
            self._error(
                400,
                f"Offset {offset} does not match received bytes {upload.received}.",
                headers={"X-Goog-Upload-Status": "final"},
            )
            return
        with upload.path.open("ab") as fh:
            fh.write(body)
        upload.received += len(body)
        if "finalize" not in command:
            self._send(200, None, {"X-Goog-Upload-Status": "active"})
            return
        stored = self._finalize(upload_id, upload)
        self._send(200, {"file": self._file_json(stored)}, {"X-Goog-Upload-Status": "final"})

    def _finalize(self, upload_id: str, upload: _Upload) -> _StoredFile:
        state = self.state
        file_id = uuid.uuid4().hex[:12]
        path = state.storage / f"file-{file_id}"
        upload.path.rename(path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        stored = _StoredFile(
            name=f"files/{file_id}",
            mime_type=upload.mime_type,
            display_name=upload.display_name,
            path=path,
            size_bytes=upload.received,
            sha256=digest,
            created=datetime.now(UTC),
            duration_s=state.media_duration(path, digest),
        )
        with state.lock:
            state.uploads.pop(upload_id, None)
            state.files[file_id] = stored
            stats = state.stats
            stats["uploads"] += 1
            stats["upload_bytes"] += upload.received
            stats["live_files"] = len(state.files)
            stats["max_live_files"] = max(stats["max_live_files"], len(state.files))
        return stored

    def _get_file(self, file_id: str) -> None:
        state = self.state
        state.count("files_get")
        with state.lock:
            stored = state.files.get(file_id)
            if stored is not None:
                stored.gets += 1
        if stored is None:
            self._error(
                403,
                f"You do not have permission to access the File {file_id} or it may not exist.",
            )
            return
        self._send(200, self._file_json(stored))

    def _delete_file(self, file_id: str) -> None:
        state = self.state
        state.count("files_delete")
        with state.lock:
            stored = state.files.pop(file_id, None)
            if stored is not None:
                state.stats["deletes"] += 1
                state.stats["live_files"] = len(state.files)
        if stored is None:
            self._error(
                403,
                f"You do not have permission to access the File {file_id} or it may not exist.",
            )
            return
        stored.path.unlink(missing_ok=True)
        self._send(200, {})

    def _list_files(self) -> None:
        self.state.count("files_list")
        with self.state.lock:
            stored = list(self.state.files.values())
        self._send(200, {"files": [self._file_json(f) for f in stored]})

    def _file_json(self, stored: _StoredFile) -> dict[str, Any]:
        file_state = _file_state(stored, self.state.config)
        created = stored.created
        payload: dict[str, Any] = {
            "name": stored.name,
            "displayName": stored.display_name,
            "mimeType": stored.mime_type,
            "sizeBytes": str(stored.size_bytes),
            "createTime": _rfc3339(created),
            "updateTime": _rfc3339(created),
            "expirationTime": _rfc3339(created + timedelta(hours=48)),
            "sha256Hash": base64.b64encode(stored.sha256.encode()).decode(),
            "uri": f"{self._base()}/v1beta/{stored.name}",
            "state": file_state,
            "source": "UPLOADED",
        }
        if stored.duration_s is not None and stored.mime_type.startswith("video/"):
            payload["videoMetadata"] = {"videoDuration": f"{stored.duration_s:.3f}s"}
        if file_state == "FAILED":
            payload["error"] = {"code": 400, "message": "Video processing failed."}
        return payload


def _file_state(stored: _StoredFile, config: FakeConfig) -> str:
    # `gets` counts files.get calls so far: the upload answer and the first
    # `processing_polls` gets say PROCESSING, later ones the final state.
    if config.processing_polls > 0 and stored.gets <= config.processing_polls:
        return "PROCESSING"
    return config.file_final_state


def _b64decode(text: str) -> bytes:
    """Standard or URL-safe base64, padded or not (the SDK sends URL-safe, unpadded)."""
    text = text.replace("+", "-").replace("/", "_")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _seconds(duration_s: float | None, size_bytes: int) -> float:
    return duration_s if duration_s is not None else size_bytes / FALLBACK_BYTES_PER_SECOND


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], state: FakeState) -> None:
        self.state = state
        super().__init__(address, _Handler)


class FakeGemini:
    """The fake server in a background thread on 127.0.0.1 and a free port.

    >>> with FakeGemini(latency_s=0.1) as fake:
    ...     client = genai.Client(api_key="x", http_options=HttpOptions(base_url=fake.base_url))
    ...     fake.configure(script=["429", "ok"])
    ...     fake.stats["calls"]["generate"]
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **config: Any) -> None:
        cfg = FakeConfig()
        cfg.update(config)
        self.state = FakeState(cfg)
        self._server = _Server((host, port), self.state)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def stats(self) -> dict[str, Any]:
        """A snapshot (deep copy) of the counters."""
        return self.state.snapshot()

    @property
    def config(self) -> FakeConfig:
        return self.state.config

    def configure(self, **values: Any) -> None:
        self.state.configure(values)

    def reset(self) -> None:
        """Forget files, counters and script positions (configuration is kept)."""
        self.state.reset()

    def start(self) -> FakeGemini:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-gemini",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.state.stopping.set()  # releases hung and sleeping handlers
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.state.close()

    def __enter__(self) -> FakeGemini:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _parse_rates(values: list[str]) -> dict[str, float]:
    rates = {}
    for item in values:
        mode, _, rate = item.partition("=")
        rates[mode.strip()] = float(rate)
    return rates


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.fake_gemini",
        description="Run the fake Gemini API (point GEMINI_BASE_URL at it).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per generate call")
    parser.add_argument("--upload-latency", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--rate",
        action="append",
        default=[],
        metavar="MODE=P",
        help=f"fault probability per generate call; MODE in {', '.join(MODES[1:])}",
    )
    parser.add_argument("--upload-rate", action="append", default=[], metavar="MODE=P")
    parser.add_argument("--script", default="", help="comma-separated modes for the first calls")
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--fail-first-mode", default="429")
    parser.add_argument("--retry-delay", default="1s", help='RetryInfo on 429s ("" to omit)')
    parser.add_argument("--hang-seconds", type=float, default=3600.0)
    parser.add_argument("--processing-polls", type=int, default=1)
    parser.add_argument(
        "--answers",
        choices=["demo", "labels"],
        default=None,
        help="scripted answers: devtools.story, or a labelled case's (--labels)",
    )
    parser.add_argument(
        "--labels", type=Path, default=None, help="JSON of evals.cases.fake_labels(case)"
    )
    parser.add_argument("--quota-rpm", type=int, default=None, help="project quota, per model")
    parser.add_argument("--quota-tpm", type=int, default=None, help="input tokens per window")
    parser.add_argument("--quota-window", type=float, default=60.0, help="the quota's minute (s)")
    parser.add_argument("--latency-per-1k-tokens", type=float, default=0.0)
    parser.add_argument("--retry-delay-step", type=float, default=0.001, help="quota retryDelay")
    parser.add_argument("--token-bias", type=float, default=0.0, help="e.g. 0.2: count +20%%")
    parser.add_argument("--token-spread", type=float, default=0.0, help="e.g. 0.2: +-20%%")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    config = {
        "latency_s": args.latency,
        "upload_latency_s": args.upload_latency,
        "seed": args.seed,
        "rates": _parse_rates(args.rate),
        "upload_rates": _parse_rates(args.upload_rate),
        "script": [m for m in args.script.split(",") if m],
        "fail_first": args.fail_first,
        "fail_first_mode": args.fail_first_mode,
        "retry_delay": args.retry_delay or None,
        "hang_s": args.hang_seconds,
        "processing_polls": args.processing_polls,
        "quota_rpm": args.quota_rpm,
        "quota_tpm": args.quota_tpm,
        "quota_window_s": args.quota_window,
        "latency_per_1k_tokens_s": args.latency_per_1k_tokens,
        "retry_delay_step_s": args.retry_delay_step,
        "token_bias": args.token_bias,
        "token_spread": args.token_spread,
        "answers": args.answers,
        "labels": json.loads(args.labels.read_text()) if args.labels else None,
    }
    fake = FakeGemini(host=args.host, port=args.port, **config)
    log.info("fake Gemini listening on %s (stats: %s/_fake/stats)", fake.base_url, fake.base_url)
    try:
        fake._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        fake.state.stopping.set()
        fake._server.server_close()
        fake.state.close()


if __name__ == "__main__":
    main()
