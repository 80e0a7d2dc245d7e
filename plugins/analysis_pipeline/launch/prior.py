"""Never pay twice: find a finished result of *this input* before launching a container.

A retry, a UI Clear or a duplicate trigger of an analysis whose ``result.json`` is
``complete`` and was made from the same recording (``input.identity``, see
``analysis_pipeline.identity``) reuses that result: no container, no model call. Any other
result (partial, failed, another recording, an older container that did not stamp its
input) is not reused: the run launches as usual and the container's own checkpoints keep
the rerun cheap.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from analysis_pipeline import storage
from analysis_pipeline.identity import input_identity
from analysis_pipeline.params import AnalysisRequest

log = logging.getLogger(__name__)


def matches_input(result: Mapping[str, Any] | None, identity: str | None) -> bool:
    """A complete result made from exactly this input."""
    if not result or identity is None or result.get("status") != "complete":
        return False
    stamped = result.get("input")
    return isinstance(stamped, Mapping) and stamped.get("identity") == identity


def reusable_result(request: AnalysisRequest, output_uri: str) -> dict[str, Any] | None:
    """The existing complete result for this request's input, or None (then launch)."""
    result = storage.read_json(output_uri + "result.json")
    if not result or result.get("status") != "complete":
        return None  # no need to hash the input
    identity = input_identity(request.input_uri)
    if not matches_input(result, identity):
        log.info("result.json exists but not for this input (%s); launching", identity)
        return None
    log.info(
        "%s %s already has a complete result for this input (%s): reusing it, no container",
        request.kind,
        request.analysis_id,
        identity,
    )
    return dict(result)
