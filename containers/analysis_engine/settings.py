"""Configuration enters once: the container environment becomes a typed, validated `Settings`.

Every rejection raises `InvalidInputError` naming the variable and the reason.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from analysis_engine.errors import InvalidInputError
from analysis_engine.model_specs import input_token_limit, video_tokens_per_second
from analysis_engine.pricing import DEFAULT_PRICES, Price, prices_from_env

ANALYSIS_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
# Published figures: ~300 input tokens per second of video at default media
# resolution, ~100 at low. Used to estimate a call's cost before the budget admits it.
TOKENS_PER_SECOND = {"default": 300, "low": 100}

DEFAULT_MAP_MODEL = "gemini-2.5-flash"
DEFAULT_REDUCE_MODEL = "gemini-2.5-flash"
# Input tokens kept free for the MAP prompt's text (instructions, brief, rubric) when
# checking that a segment's video fits the model's input limit.
PROMPT_TOKENS_ALLOWANCE = 16_384


@dataclass(frozen=True)
class Settings:
    analysis_id: str
    input_uri: str
    output_uri: str
    analysis_context: dict[str, Any] = field(default_factory=dict)
    gemini_api_key: str = field(default="", repr=False)
    gemini_base_url: str | None = None
    map_model: str = DEFAULT_MAP_MODEL
    reduce_model: str = DEFAULT_REDUCE_MODEL
    segment_seconds: float = 120.0
    map_concurrency: int = 4
    gemini_max_attempts: int = 6
    gemini_timeout_seconds: float = 300.0
    # A server's RetryInfo.retryDelay is honoured up to this long (a 429 may ask for hours).
    gemini_max_retry_delay_seconds: float = 90.0
    # Tokens a thinking model may reason for before answering (0: off where possible).
    gemini_thinking_budget: int = 1024
    # Defaults are one twelfth of a Tier-1 Flash project (1k RPM, 1M TPM): the
    # decision record runs 12 analyses at once against one shared quota.
    gemini_rpm_budget: int = 80
    gemini_tpm_budget: int = 80_000
    # Where the budget lives: memory:// (this container's share) or redis(s):// (the fleet's,
    # so the RPM/TPM above are fleet-wide limits per model). See analysis_engine.budget.
    gemini_budget_uri: str = field(default="memory://", repr=False)  # may carry a token
    # Per-model overrides of the two limits: {"gemini-2.5-pro": {"rpm": 150, "tpm": 2000000}}.
    gemini_model_budgets: dict[str, dict[str, int]] = field(default_factory=dict)
    # The budget's window; 60 s matches Gemini's per-minute quotas. Shorter only in
    # benchmarks that scale time down (the fake Gemini's quota minute shrinks with it).
    gemini_budget_window_seconds: int = 60
    # This kind's weight in the fleet's line (the capacity module's gemini_weight): while
    # both kinds wait, each gets tokens in proportion to its weight.
    gemini_budget_weight: float = 1.0
    # When the analysis was submitted (Unix time; the DAG run's), its place in the fleet's
    # line across retries. None: when this container started.
    submitted_at: float | None = None
    media_resolution: Literal["default", "low"] = "default"
    # Triage (analysis_engine.triage): a kind that flags stretches locally (the proctor) shows
    # the model its quiet stretches sampled, at low resolution. PROCTOR_TRIAGE=off: all as is.
    triage: bool = True
    # USD per million tokens per model, for usage.estimated_usd (GEMINI_PRICES; pricing.py).
    gemini_prices: Mapping[str, Price] = field(default_factory=lambda: DEFAULT_PRICES)
    max_duration_seconds: float = 4 * 3600.0
    idle_min_seconds: float = 30.0
    # Past this many seconds from start-up no new model call starts (None: no deadline).
    run_deadline_seconds: float | None = None
    work_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    # Set by a purposeful rerun (the DAG's `rerun`): analyse again, reusing only checkpoints
    # made under the same id (this rerun's own earlier attempts).
    rerun_id: str | None = None

    @property
    def tokens_per_second(self) -> int:
        """MAP input tokens per second of a recording with sound (the upper bound)."""
        return self.map_tokens_per_second(has_audio=True)

    def map_tokens_per_second(self, *, has_audio: bool) -> int:
        """MAP input tokens per second of video for the MAP model and media resolution."""
        return video_tokens_per_second(self.map_model, self.media_resolution, has_audio=has_audio)

    @property
    def input_is_prefix(self) -> bool:
        return self.input_uri.endswith("/")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        settings = cls(
            analysis_id=_analysis_id(env),
            input_uri=_uri(env, "INPUT_URI", allow_prefix=True),
            output_uri=_output_uri(env),
            analysis_context=_context(env),
            gemini_api_key=env.get("GEMINI_API_KEY", ""),
            gemini_base_url=env.get("GEMINI_BASE_URL") or None,
            map_model=env.get("GEMINI_MAP_MODEL") or DEFAULT_MAP_MODEL,
            reduce_model=env.get("GEMINI_REDUCE_MODEL") or DEFAULT_REDUCE_MODEL,
            segment_seconds=_number(env, "SEGMENT_SECONDS", 120.0, minimum=10.0, maximum=3600.0),
            map_concurrency=int(
                _number(env, "MAP_CONCURRENCY", 4, minimum=1, maximum=64, integer=True)
            ),
            gemini_max_attempts=int(
                _number(env, "GEMINI_MAX_ATTEMPTS", 6, minimum=1, maximum=50, integer=True)
            ),
            gemini_timeout_seconds=_number(env, "GEMINI_TIMEOUT_SECONDS", 300.0, minimum=0.1),
            gemini_max_retry_delay_seconds=_number(
                env, "GEMINI_MAX_RETRY_DELAY_SECONDS", 90.0, minimum=1.0, maximum=3600.0
            ),
            gemini_thinking_budget=int(
                _number(env, "GEMINI_THINKING_BUDGET", 1024, minimum=0, maximum=32768, integer=True)
            ),
            gemini_rpm_budget=int(_number(env, "GEMINI_RPM_BUDGET", 80, minimum=1, integer=True)),
            gemini_tpm_budget=int(
                _number(env, "GEMINI_TPM_BUDGET", 80_000, minimum=1000, integer=True)
            ),
            gemini_budget_uri=_budget_uri(env),
            gemini_model_budgets=_model_budgets(env),
            gemini_budget_window_seconds=int(
                _number(
                    env, "GEMINI_BUDGET_WINDOW_SECONDS", 60, minimum=1, maximum=3600, integer=True
                )
            ),
            gemini_budget_weight=_number(
                env, "GEMINI_BUDGET_WEIGHT", 1.0, minimum=0.01, maximum=1000.0
            ),
            submitted_at=_submitted_at(env),
            media_resolution=_choice(env, "GEMINI_MEDIA_RESOLUTION", ("default", "low"), "default"),
            triage=_choice(env, "PROCTOR_TRIAGE", ("on", "off"), "on") == "on",
            gemini_prices=prices_from_env(env),
            max_duration_seconds=_number(env, "MAX_RECORDING_SECONDS", 4 * 3600.0, minimum=1.0),
            idle_min_seconds=_number(env, "IDLE_MIN_SECONDS", 30.0, minimum=5.0),
            run_deadline_seconds=(
                _number(env, "RUN_DEADLINE_SECONDS", 0.0, minimum=1.0)
                if (env.get("RUN_DEADLINE_SECONDS") or "").strip()
                else None
            ),
            work_dir=Path(env.get("SCRATCH_DIR") or tempfile.gettempdir()),
            rerun_id=_rerun_id(env),
        )
        _check_segment_fits(settings)
        return settings


def _check_segment_fits(settings: Settings) -> None:
    """A segment the MAP model cannot take in fails every call the same way: refuse it now."""
    per_second = settings.tokens_per_second
    limit = input_token_limit(settings.map_model)
    needed = round(settings.segment_seconds * per_second) + PROMPT_TOKENS_ALLOWANCE
    if needed > limit:
        longest = (limit - PROMPT_TOKENS_ALLOWANCE) // per_second
        raise InvalidInputError(
            "SEGMENT_SECONDS",
            f"{settings.segment_seconds:g} s of video at ~{per_second} tokens/s "
            f"({settings.map_model}, {settings.media_resolution} media resolution) plus the "
            f"prompt is ~{needed:,} input tokens, over the model's {limit:,}-token input "
            f"limit: at most {longest} s",
        )


def _required(env: Mapping[str, str], name: str) -> str:
    value = (env.get(name) or "").strip()
    if not value:
        raise InvalidInputError(name, "is required but not set")
    return value


def _analysis_id(env: Mapping[str, str]) -> str:
    value = _required(env, "ANALYSIS_ID")
    if not ANALYSIS_ID_PATTERN.fullmatch(value):
        raise InvalidInputError(
            "ANALYSIS_ID",
            f"{value[:40]!r} must match {ANALYSIS_ID_PATTERN.pattern} "
            "(letters, digits, '_', '.', '-'; at most 128 characters)",
        )
    return value


def _uri(env: Mapping[str, str], name: str, *, allow_prefix: bool) -> str:
    value = _required(env, name)
    if not value.startswith(("s3://", "file://")):
        raise InvalidInputError(name, f"{value!r} must start with s3:// or file://")
    if value.startswith("s3://") and len(value.removeprefix("s3://").split("/", 1)[0]) < 3:
        raise InvalidInputError(name, f"{value!r} has no bucket name")
    if ".." in value.split("/"):
        raise InvalidInputError(name, f"{value!r} must not contain '..' path segments")
    if value.endswith("/") and not allow_prefix:
        raise InvalidInputError(name, f"{value!r} must name one object, not a prefix")
    return value


def _output_uri(env: Mapping[str, str]) -> str:
    value = _uri(env, "OUTPUT_URI", allow_prefix=True)
    return value if value.endswith("/") else value + "/"


def _context(env: Mapping[str, str]) -> dict[str, Any]:
    raw = (env.get("ANALYSIS_CONTEXT") or "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            "ANALYSIS_CONTEXT", f"is not valid JSON ({exc.msg} at char {exc.pos})"
        ) from exc
    if not isinstance(value, dict):
        raise InvalidInputError(
            "ANALYSIS_CONTEXT", f"must be a JSON object, got {type(value).__name__}"
        )
    return value


def _rerun_id(env: Mapping[str, str]) -> str | None:
    value = (env.get("RERUN_ID") or "").strip()
    if not value:
        return None
    if len(value) > 250 or not value.isprintable():
        raise InvalidInputError("RERUN_ID", "must be printable text of at most 250 characters")
    return value


def _budget_uri(env: Mapping[str, str]) -> str:
    raw = (env.get("GEMINI_BUDGET_URI") or "").strip() or "memory://"
    parts = urlsplit(raw)
    if parts.scheme == "memory":
        return "memory://"
    # The value may carry a token: errors show only the scheme and host.
    shown = f"{parts.scheme}://{parts.hostname or ''}"
    if parts.scheme not in ("redis", "rediss", "redis+cluster", "rediss+cluster"):
        raise InvalidInputError(
            "GEMINI_BUDGET_URI",
            f"{shown!r} must start with memory://, redis://, rediss:// (one endpoint) or "
            "redis+cluster://, rediss+cluster:// (a sharded cluster)",
        )
    if not parts.hostname:
        raise InvalidInputError("GEMINI_BUDGET_URI", f"{shown!r} has no host")
    try:
        parts.port  # noqa: B018 - raises on a non-numeric port
    except ValueError as exc:
        raise InvalidInputError("GEMINI_BUDGET_URI", f"{shown!r} has an invalid port") from exc
    return raw


def _submitted_at(env: Mapping[str, str]) -> float | None:
    """ANALYSIS_SUBMITTED_AT: an ISO 8601 time with its offset (or Z), or Unix seconds."""
    name = "ANALYSIS_SUBMITTED_AT"
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    value = _unix_seconds(raw)
    if value is None:
        moment = _iso_time(raw)
        if moment is None:
            raise InvalidInputError(
                name, f"{raw[:40]!r} is neither an ISO 8601 time nor Unix seconds"
            )
        if moment.tzinfo is None:
            raise InvalidInputError(name, f"{raw[:40]!r} has no UTC offset (add Z or +00:00)")
        value = moment.timestamp()
    if not 0 < value < 1e10:  # the line's order keeps submission times below 1e10
        raise InvalidInputError(name, f"{raw[:40]!r} is not a time between 1970 and 2286")
    return value


def _unix_seconds(raw: str) -> float | None:
    try:
        return float(raw)
    except ValueError:
        return None


def _iso_time(raw: str) -> datetime | None:
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None


def _model_budgets(env: Mapping[str, str]) -> dict[str, dict[str, int]]:
    name = "GEMINI_MODEL_BUDGETS"
    raw = (env.get(name) or "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(name, f"is not valid JSON ({exc.msg} at char {exc.pos})") from exc
    if not isinstance(value, dict):
        raise InvalidInputError(name, "must be a JSON object of model name -> {rpm, tpm}")
    budgets: dict[str, dict[str, int]] = {}
    for model, limits in value.items():
        if not isinstance(limits, dict) or set(limits) != {"rpm", "tpm"}:
            raise InvalidInputError(
                name, f'{model!r} must map to exactly {{"rpm": int, "tpm": int}}'
            )
        for key, minimum in (("rpm", 1), ("tpm", 1000)):
            number = limits[key]
            if isinstance(number, bool) or not isinstance(number, int) or number < minimum:
                raise InvalidInputError(
                    name, f"{model!r}.{key} must be an integer >= {minimum}, got {number!r}"
                )
        budgets[str(model)] = {"rpm": limits["rpm"], "tpm": limits["tpm"]}
    return budgets


def _number(
    env: Mapping[str, str],
    name: str,
    default: float,
    *,
    minimum: float,
    maximum: float | None = None,
    integer: bool = False,
) -> float:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError as exc:
        kind = "an integer" if integer else "a number"
        raise InvalidInputError(name, f"{raw!r} is not {kind}") from exc
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum:g} and {maximum:g}" if maximum is not None else f">= {minimum:g}"
        raise InvalidInputError(name, f"{raw} must be {bound}")
    return value


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> Any:
    value = (env.get(name) or default).strip().lower()
    if value not in choices:
        raise InvalidInputError(name, f"{value!r} must be one of {', '.join(choices)}")
    return value


def output_uri_from_env(env: Mapping[str, str]) -> str | None:
    """OUTPUT_URI alone, so a run rejected for other settings can still leave its result."""
    try:
        return _output_uri(env)
    except InvalidInputError:
        return None
