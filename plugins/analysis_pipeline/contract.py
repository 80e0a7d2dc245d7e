"""The container environment contract, built once for both launchers."""

from __future__ import annotations

import os
from collections.abc import Mapping

from analysis_pipeline.config import GEMINI_TUNABLES, gemini_budgets
from analysis_pipeline.params import AnalysisRequest, context_json

# Local mode only: what a child process needs to reach moto/S3 and find its tools.
LOCAL_PASSTHROUGH: tuple[str, ...] = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "PATH",
    "HOME",
    "LANG",
    "TMPDIR",
    "SCRATCH_DIR",
    "MAX_RECORDING_SECONDS",
    "IDLE_MIN_SECONDS",
)


def container_env(
    request: AnalysisRequest,
    *,
    environ: Mapping[str, str] | None = None,
    run_id: str | None = None,
) -> dict[str, str]:
    """Per-run variables plus the GEMINI_* tunables the deployment sets (never the API key,
    never a budget: in ecs mode the task definition is the only source of those). A rerun's
    container gets RERUN_ID (its DAG run's id): it analyses again, reusing only what that
    same rerun already paid for."""
    environ = os.environ if environ is None else environ
    env = {
        "ANALYSIS_ID": request.analysis_id,
        "INPUT_URI": request.input_uri,
        "OUTPUT_URI": request.output_uri(env=environ),
        "ANALYSIS_CONTEXT": context_json(request.context),
    }
    if request.submitted_at is not None:  # its place in the fleet's Gemini line
        env["ANALYSIS_SUBMITTED_AT"] = request.submitted_at.isoformat()
    if request.rerun and run_id:
        env["RERUN_ID"] = run_id
    env.update({name: environ[name] for name in GEMINI_TUNABLES if environ.get(name)})
    return env


def local_process_env(
    request: AnalysisRequest,
    *,
    environ: Mapping[str, str] | None = None,
    run_id: str | None = None,
) -> dict[str, str]:
    """The contract plus what a local child process needs (secret key included, by value)."""
    environ = os.environ if environ is None else environ
    env = container_env(request, environ=environ, run_id=run_id)
    env.update({name: environ[name] for name in LOCAL_PASSTHROUGH if environ.get(name)})
    # DESIGN: in local mode every GEMINI_* setting passes through (the key included)...
    env.update({k: v for k, v in environ.items() if k.startswith("GEMINI_") and v})
    # ...while this kind's own budget levers, when set, still win over a generic value.
    env.update(gemini_budgets(request.kind, env=environ))
    env["PYTHONUNBUFFERED"] = "1"
    return env
