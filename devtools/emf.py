"""Reading the containers' Embedded Metric Format lines as CloudWatch would (tests, benchmarks).

- `validate(document)`: the EMF specification's rules (the JSON Schema of the `_aws`
  metadata, then the references it makes into the root node), so a test fails on a line
  CloudWatch Logs would not turn into metrics.
- `series(...)`: the datapoints CloudWatch would store for one metric and one dimension
  set, aggregated per period with a statistic, like a dashboard widget or an alarm reads
  them.
- `dashboard_figures(...)`: the figures of the Terraform dashboard
  (`terraform/monitoring_dashboard.tf`) computed from the documents a drain wrote: drain
  progress, throughput against the quota, failures, cost per hour.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema

# The specification's units (MetricDatum) and limits.
UNITS = (
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
    "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
    "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second",
    "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second",
    "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
)  # fmt: skip
MAX_METRICS_PER_DIRECTIVE = 100
MAX_VALUES_PER_METRIC = 100
MAX_DIMENSIONS_PER_SET = 30
MAX_DIMENSION_VALUE = 1024
MAX_EVENT_BYTES = 1024 * 1024

_NAME = {"type": "string", "minLength": 1, "maxLength": 255}
METADATA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["_aws"],
    "properties": {
        "_aws": {
            "type": "object",
            "required": ["Timestamp", "CloudWatchMetrics"],
            "properties": {
                "Timestamp": {"type": "integer", "minimum": 0},
                "CloudWatchMetrics": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["Namespace", "Dimensions", "Metrics"],
                        "properties": {
                            "Namespace": {**_NAME, "not": {"pattern": "^AWS/"}},
                            "Dimensions": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "array",
                                    "maxItems": MAX_DIMENSIONS_PER_SET,
                                    "items": _NAME,
                                },
                            },
                            "Metrics": {
                                "type": "array",
                                "maxItems": MAX_METRICS_PER_DIRECTIVE,
                                "items": {
                                    "type": "object",
                                    "required": ["Name"],
                                    "properties": {
                                        "Name": _NAME,
                                        "Unit": {"enum": list(UNITS)},
                                        "StorageResolution": {"enum": [1, 60]},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        }
    },
}


class EmfError(ValueError):
    """A document CloudWatch Logs would not extract metrics from."""


def validate(document: Mapping[str, Any]) -> None:
    """Raise EmfError unless `document` is a valid EMF document (schema + references)."""
    try:
        jsonschema.validate(document, METADATA_SCHEMA)
    except jsonschema.ValidationError as exc:
        path = "/".join(str(p) for p in exc.absolute_path)
        raise EmfError(f"{path or 'root'}: {exc.message}") from None
    size = len(json.dumps(document).encode())
    if size > MAX_EVENT_BYTES:
        raise EmfError(f"event of {size} bytes is over the {MAX_EVENT_BYTES}-byte limit")
    for directive in document["_aws"]["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            for name in dimension_set:
                value = document.get(name)
                if not isinstance(value, str) or not value.strip():
                    raise EmfError(f"dimension {name!r} must be a non-empty string member")
                if len(value) > MAX_DIMENSION_VALUE:
                    raise EmfError(f"dimension {name!r} is over {MAX_DIMENSION_VALUE} characters")
        for metric in directive["Metrics"]:
            name = metric["Name"]
            values = document.get(name)
            values = values if isinstance(values, list) else [values]
            if not values or len(values) > MAX_VALUES_PER_METRIC:
                raise EmfError(f"metric {name!r} needs 1 to {MAX_VALUES_PER_METRIC} values")
            if not all(_is_number(v) for v in values):
                raise EmfError(f"metric {name!r} must be a number or an array of numbers")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def documents(text: str) -> list[dict[str, Any]]:
    """The EMF documents among output lines (plain log lines are skipped)."""
    found = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and "_aws" in value:
            found.append(value)
    return found


@dataclass(frozen=True)
class Datum:
    """One extracted metric value, as CloudWatch stores it."""

    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]
    timestamp_s: float
    value: float


def extract(docs: Iterable[Mapping[str, Any]]) -> list[Datum]:
    """Every datum the documents publish: one per metric, dimension set and value."""
    data = []
    for doc in docs:
        at = doc["_aws"]["Timestamp"] / 1000.0
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            for dimension_set in directive["Dimensions"]:
                dims = tuple(sorted((name, str(doc[name])) for name in dimension_set))
                for metric in directive["Metrics"]:
                    raw = doc[metric["Name"]]
                    for value in raw if isinstance(raw, list) else [raw]:
                        data.append(
                            Datum(directive["Namespace"], metric["Name"], dims, at, float(value))
                        )
    return data


STATISTICS = {
    "Sum": sum,
    "SampleCount": len,
    "Average": lambda values: sum(values) / len(values),
    "Maximum": max,
    "Minimum": min,
}


def series(
    data: Sequence[Datum],
    name: str,
    *,
    dimensions: Mapping[str, str] | None = None,
    stat: str = "Sum",
    period_s: float = 60.0,
    start_s: float | None = None,
) -> dict[float, float]:
    """{period start: statistic} for one metric with exactly these dimensions (CloudWatch
    matches a metric by its whole dimension set); periods with no data are absent."""
    wanted = tuple(sorted((dimensions or {}).items()))
    points = [d for d in data if d.name == name and d.dimensions == wanted]
    if not points:
        return {}
    origin = start_s if start_s is not None else min(d.timestamp_s for d in data)
    buckets: dict[float, list[float]] = {}
    for d in points:
        bucket = origin + math.floor((d.timestamp_s - origin) / period_s) * period_s
        buckets.setdefault(bucket, []).append(d.value)
    return {t: STATISTICS[stat](v) for t, v in sorted(buckets.items())}


KINDS = ("task_analysis", "proctor_video")


def dashboard_figures(
    data: Sequence[Datum], *, period_s: float = 60.0, hour_s: float = 3600.0
) -> dict[str, Any]:
    """The dashboard's figures from a drain's data (the same metrics and statistics as the
    widgets; `hour_s` is an hour in the data's clock, shorter in a time-scaled drain)."""
    if not data:
        return {}
    start = min(d.timestamp_s for d in data)
    end = max(d.timestamp_s for d in data)

    def total(name: str, **dims: str) -> float:
        return sum(series(data, name, dimensions=dims, period_s=period_s, start_s=start).values())

    started = sum(total("AnalysesStarted", Kind=k) for k in KINDS)
    finished = sum(total("Analyses", Kind=k) for k in KINDS)
    by_status = {
        status: sum(total("Analyses", Kind=k, Status=status) for k in KINDS)
        for status in ("complete", "partial", "failed", "invalid_input")
    }
    failed = by_status["failed"] + by_status["invalid_input"]
    usd = sum(total("EstimatedUSD", Kind=k) for k in KINDS)
    elapsed = max(end - start, period_s)
    models = sorted({dict(d.dimensions)["Model"] for d in data if d.name == "BudgetLimitTokens"})
    throughput = {}
    for model in models:

        def of(name: str, stat: str, model: str = model) -> dict[float, float]:
            return series(
                data, name, dimensions={"Model": model}, stat=stat, period_s=period_s,
                start_s=start,
            )  # fmt: skip

        window, limit = of("BudgetWindowTokens", "Maximum"), of("BudgetLimitTokens", "Maximum")
        used = [window[t] / limit[t] for t in window if limit.get(t)]
        throughput[model] = {
            "window_tokens_peak": max(window.values(), default=0),
            "limit_tokens": max(limit.values(), default=0),
            "use_of_quota_mean": round(sum(used) / len(used), 3) if used else None,
            "use_of_quota_peak": round(max(used), 3) if used else None,
            "ceiling_min": min(of("BudgetCeilingTokens", "Minimum").values(), default=None),
            "queue_depth_peak": max(of("BudgetQueueDepth", "Maximum").values(), default=0),
            "paused_periods": sum(1 for v in of("BudgetPaused", "Maximum").values() if v > 0),
        }
    progress = []
    done = 0.0
    for t, n in sorted(_merged(data, "Analyses", period_s, start).items()):
        done += n
        progress.append({"at_s": round(t - start, 1), "finished": done})
    return {
        "period_s": period_s,
        "elapsed_s": round(elapsed, 1),
        "drain": {
            "started": started,
            "finished": finished,
            "in_flight_at_end": started - finished,
            "progress": progress,
        },
        "throughput": {
            "input_tokens": sum(total("InputTokens", Kind=k) for k in KINDS),
            "input_tokens_per_period": round(
                sum(total("InputTokens", Kind=k) for k in KINDS) / (elapsed / period_s), 1
            ),
            "per_model": throughput,
        },
        "failures": {
            **{f"analyses_{k}": v for k, v in by_status.items()},
            "failure_rate": round(failed / finished, 4) if finished else None,
            "sentinel": sum(total("SentinelFailures", Kind=k) for k in KINDS),
            "gemini_calls": sum(total("GeminiCalls", Kind=k) for k in KINDS),
            "gemini_429s": sum(total("Gemini429s", Kind=k) for k in KINDS),
        },
        "cost": {
            "estimated_usd": round(usd, 6),
            "usd_per_hour": round(usd / (elapsed / hour_s), 4),
        },
    }


def _merged(data: Sequence[Datum], name: str, period_s: float, start: float) -> dict[float, float]:
    merged: dict[float, float] = {}
    for kind in KINDS:
        for t, v in series(data, name, dimensions={"Kind": kind}, period_s=period_s,
                           start_s=start).items():  # fmt: skip
            merged[t] = merged.get(t, 0.0) + v
    return merged
