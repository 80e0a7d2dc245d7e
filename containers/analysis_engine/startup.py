"""Start-up rejection: settings that cannot run still leave an `invalid_input` result when
OUTPUT_URI itself is usable (exit 2 either way: retrying will not help)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from analysis_engine import metrics
from analysis_engine.errors import InvalidInputError
from analysis_engine.publish import outcome_sentence, publish_result, scrubbed
from analysis_engine.result import Kind, build_result
from analysis_engine.settings import output_uri_from_env
from analysis_engine.storage import Storage

log = logging.getLogger("analysis")

EXIT_INVALID_INPUT = 2


def reject_at_startup(
    kind: Kind,
    env: Mapping[str, str],
    storage: Storage,
    exc: InvalidInputError,
    started_at: str,
) -> int:
    output_uri = output_uri_from_env(env)
    if output_uri is None:
        log.error(
            "%s invalid input, no result written (OUTPUT_URI unusable): %s; exit 2", kind, exc
        )
        return EXIT_INVALID_INPUT
    result = build_result(
        kind=kind,
        analysis_id=(env.get("ANALYSIS_ID") or None),
        status="invalid_input",
        error=str(exc),
        report=None,
        coverage=None,
        usage={},
        timings={},
        models={},
        started_at=started_at,
        input_uri=(env.get("INPUT_URI") or None),
    )
    secret = env.get("GEMINI_API_KEY", "")
    published = publish_result(storage, output_uri, result, secret=secret)
    metrics.emit_analysis(scrubbed(result, secret), namespace=metrics.namespace_from_env(env))
    log.info("%s", outcome_sentence(result, published, EXIT_INVALID_INPUT))
    return EXIT_INVALID_INPUT
