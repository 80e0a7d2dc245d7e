"""CloudWatch metrics as Embedded Metric Format (EMF) lines on stdout: no agent, no API call.

Each container's stdout goes to CloudWatch Logs (the task definition's `awslogs` driver), and
CloudWatch Logs turns every log event that is an EMF document into metrics. The documents
are built with `aws-embedded-metrics` (its `MetricsContext` validates names, units and
dimensions; its serializer writes the `_aws` metadata) and written here as one bare JSON line
each, never through the logging formatter (an event must be the JSON object alone).

What is emitted (namespace `METRICS_NAMESPACE`, default `AnalysisPipeline`):

- `AnalysesStarted` once a container has valid settings (dimension `Kind`);
- one line per finished analysis (dimensions `Kind`, and `Kind`+`Status`): `Analyses`,
  `SentinelFailures`, `DurationSeconds`, `RecordingSeconds`, `InputTokens`, `OutputTokens`,
  `EstimatedUSD`, `SegmentsAnalysed`, `SegmentsFailed`, `GeminiCalls`, `Gemini429s`,
  `BudgetWaitSeconds`, with the analysis id, status and error as searchable properties;
- the Gemini budget's state, per model, every few seconds from one container of the fleet
  (`analysis_engine.budget_metrics`: line, window, limits, ceiling, pause).

The builders are pure (a result or a state in, an EMF document out); `emit` writes.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from aws_embedded_metrics.exceptions import InvalidNamespaceError, InvalidTimestampError
from aws_embedded_metrics.logger.metrics_context import MetricsContext
from aws_embedded_metrics.serializers.log_serializer import LogSerializer
from aws_embedded_metrics.validator import validate_namespace

from analysis_engine.result import ALL_SEGMENTS_FAILED

log = logging.getLogger(__name__)

DEFAULT_NAMESPACE = "AnalysisPipeline"
NAMESPACE_ENV = "METRICS_NAMESPACE"
ANALYSIS_DIMENSIONS: tuple[tuple[str, ...], ...] = (("Kind",), ("Kind", "Status"))

_write_lock = threading.Lock()


def namespace_from_env(env: Mapping[str, str]) -> str:
    """`METRICS_NAMESPACE`, or the default when unset or unusable (metrics never stop a run)."""
    value = (env.get(NAMESPACE_ENV) or "").strip()
    if not value:
        return DEFAULT_NAMESPACE
    try:
        validate_namespace(value)
        if value.startswith("AWS/"):  # reserved for AWS services
            raise InvalidNamespaceError("the AWS/ prefix is reserved")
    except InvalidNamespaceError:
        log.warning("%s=%r is not a CloudWatch namespace; using %s",
                    NAMESPACE_ENV, value[:60], DEFAULT_NAMESPACE)  # fmt: skip
        return DEFAULT_NAMESPACE
    return value


def context_for(
    namespace: str,
    dimensions: Mapping[str, str],
    dimension_sets: Sequence[Sequence[str]],
    at: datetime | None,
) -> MetricsContext:
    context = MetricsContext.empty()
    context.namespace = namespace
    context.set_dimensions(
        [{name: dimensions[name] for name in names} for names in dimension_sets],
        use_default=False,  # no LogGroup/ServiceName defaults: our dimensions are the contract
    )
    if at is not None:
        # Older than CloudWatch takes (14 days): the time of writing stands.
        with contextlib.suppress(InvalidTimestampError):
            context.set_timestamp(at)
    return context


def started_document(*, kind: str, namespace: str, at: datetime | None = None) -> list[str]:
    """`AnalysesStarted` = 1 for one container that got past its settings."""
    context = context_for(namespace, {"Kind": kind}, [("Kind",)], at)
    context.put_metric("AnalysesStarted", 1, "Count")
    return serialize(context)


def analysis_document(result: Mapping[str, Any], *, namespace: str) -> list[str]:
    """The metrics of one finished analysis, from its result.json."""
    kind = str(result.get("kind") or "unknown")
    status = str(result.get("status") or "unknown")
    usage = _mapping(result.get("usage"))
    coverage = _mapping(result.get("coverage"))
    timings = _mapping(result.get("timings"))
    context = context_for(
        namespace, {"Kind": kind, "Status": status}, ANALYSIS_DIMENSIONS, _parsed(result)
    )
    sentinel = status == "failed" and result.get("error") == ALL_SEGMENTS_FAILED
    values: list[tuple[str, float | None, str]] = [
        ("Analyses", 1, "Count"),
        ("SentinelFailures", 1 if sentinel else 0, "Count"),
        ("DurationSeconds", _number(timings.get("total_s")), "Seconds"),
        ("RecordingSeconds", _number(coverage.get("duration_s")), "Seconds"),
        ("InputTokens", _number(usage.get("input_tokens")) or 0, "Count"),
        ("OutputTokens", _number(usage.get("output_tokens")) or 0, "Count"),
        ("EstimatedUSD", _number(usage.get("estimated_usd")), "None"),
        ("SegmentsAnalysed", _number(coverage.get("segments_analysed")) or 0, "Count"),
        ("SegmentsFailed", _number(coverage.get("segments_failed")) or 0, "Count"),
        ("GeminiCalls", _number(usage.get("attempts")) or 0, "Count"),
        ("Gemini429s", _number(usage.get("rate_limited")) or 0, "Count"),
        ("BudgetWaitSeconds", _number(usage.get("budget_wait_s")) or 0, "Seconds"),
    ]
    for name, value, unit in values:
        if value is not None:  # unknown (no price for the model, no timings) is left out
            context.put_metric(name, value, unit)
    context.set_property("AnalysisId", result.get("analysis_id"))
    if result.get("error"):
        context.set_property("Error", str(result["error"])[:300])
    return serialize(context)


def serialize(context: MetricsContext) -> list[str]:
    """The library's EMF serialization (batches of at most 100 metrics per document)."""
    return LogSerializer.serialize(context)


def emit(lines: Sequence[str], *, stream: TextIO | None = None) -> None:
    """Write EMF documents as bare lines. Never raises: a metric is not worth a run."""
    out = stream or sys.stdout
    try:
        with _write_lock:
            for line in lines:
                out.write(line + "\n")
            out.flush()
    except Exception as exc:
        log.warning("metrics not written: %s: %s", type(exc).__name__, exc)


def emit_started(*, kind: str, namespace: str) -> None:
    try:
        emit(started_document(kind=kind, namespace=namespace))
    except Exception as exc:  # a library validation error must not fail the analysis
        log.warning("start metric not built: %s: %s", type(exc).__name__, exc)


def emit_analysis(result: Mapping[str, Any], *, namespace: str) -> None:
    try:
        emit(analysis_document(result, namespace=namespace))
    except Exception as exc:
        log.warning("analysis metrics not built: %s: %s", type(exc).__name__, exc)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def _parsed(result: Mapping[str, Any]) -> datetime | None:
    text = str(result.get("finished_at") or "")
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None
