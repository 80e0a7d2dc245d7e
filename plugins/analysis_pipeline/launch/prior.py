"""Never pay twice: find a finished result of *this input* before launching a container.

A retry, a UI Clear or a duplicate trigger of an analysis whose ``result.json`` is
``complete`` and was made from the same recording (``input.identity``, see
``analysis_pipeline.identity``) reuses that result: no container, no model call. Any other
result (partial, failed, another recording, an older container that did not stamp its
input) is not reused: the run launches as usual and the container's own checkpoints keep
the rerun cheap. A run with `rerun: true` reuses nothing but what it made itself (a retry of
that same run): it is the one way to pay for an analysis again, on purpose.
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


def reusable_result(
    request: AnalysisRequest, output_uri: str, *, run_id: str | None = None
) -> dict[str, Any] | None:
    """The existing complete result for this request's input, or None (then launch). A
    rerun reuses only what it made itself (a retry of the same rerun run)."""
    result = storage.read_json(output_uri + "result.json")
    if not result or result.get("status") != "complete":
        return None  # no need to hash the input
    if request.rerun and result.get("rerun_id") != run_id:
        log.info("rerun of %s %s: the earlier complete result is not reused (it is kept "
                 "beside the new one)", request.kind, request.analysis_id)  # fmt: skip
        return None
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
