"""Every name and lever the DAG side depends on, in one place.

Terraform must create exactly these resource names (terraform/main.tf derives them from
the same project name) or set the matching settings on the Airflow workers and
dag-processor. Everything here is read from the
process environment only, so importing it at DAG parse time costs microseconds and never
touches the network.

How a lever is read (``read_lever``), cheapest first:

1. plain ``<NAME>`` or ``AIRFLOW_VAR_<NAME>`` in the environment. The latter is Airflow's
   own environment-variable secrets backend, so ``Variable.get("<NAME>")`` in a task sees
   the same value. The deployment injects the SSM parameters ``/airflow/variables/<NAME>``
   as these variables when it starts the dag-processor and workers (ECS task-definition
   ``secrets`` or an MWAA startup script): zero network calls per parse; a lever change
   takes effect when those processes restart.
2. Only when ``ANALYSIS_LEVERS_FROM_VARIABLES=true``: ``Variable.get("<NAME>")`` through the
   configured secrets backend (e.g. SSM). Enable this only together with Airflow's secrets
   cache (``AIRFLOW__SECRETS__USE_CACHE=True``, ``CACHE_TTL_SECONDS``), which keeps parses
   from calling SSM more than once per TTL.
3. The safe default below (the decision record's figures).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Kind = Literal["task_analysis", "proctor_video"]

# --- names Terraform must match ---------------------------------------------------------
PROJECT = "analysis-pipeline"
ECS_CLUSTER = f"{PROJECT}"
SSM_VARIABLES_PREFIX = "/airflow/variables/"
POOL_NAME = "fargate_vcpu"
DISCORD_CONN_ID = "discord_alerts"
PUBLISH_CONN_ID = "analysis_backend"


@dataclass(frozen=True)
class ContainerSpec:
    """One container image: how ECS knows it and how it is run locally."""

    kind: Kind
    container_name: str
    module: str  # `python -m <module>` in local mode, the image ENTRYPOINT in ecs mode
    lever_prefix: str
    vcpu_lever: str
    default_vcpu: int
    cap_lever: str
    default_cap: int
    priority_weight: int

    @property
    def task_definition(self) -> str:
        return f"{PROJECT}-{self.container_name}"

    @property
    def log_group(self) -> str:
        return f"/ecs/{PROJECT}/{self.container_name}"

    @property
    def log_stream_prefix(self) -> str:
        # awslogs names streams <prefix>/<container name>/<ecs task id>
        return self.container_name


CONTAINERS: Mapping[Kind, ContainerSpec] = {
    "task_analysis": ContainerSpec(
        kind="task_analysis",
        container_name="task-analyzer",
        module="task_analyzer",
        lever_prefix="TASK_ANALYZER",
        vcpu_lever="TASK_ANALYZER_VCPU",
        default_vcpu=4,
        cap_lever="MAX_CONCURRENT_ANALYSES",
        default_cap=12,
        # Recruiter-facing results go first when the vCPU pool is contended.
        priority_weight=100,
    ),
    "proctor_video": ContainerSpec(
        kind="proctor_video",
        container_name="proctor-video",
        module="proctor_video",
        lever_prefix="PROCTOR_VIDEO",
        vcpu_lever="PROCTOR_VIDEO_VCPU",
        default_vcpu=2,
        cap_lever="MAX_CONCURRENT_PROCTOR_VIDEOS",
        default_cap=8,
        priority_weight=10,
    ),
}

# The pool is sized in vCPUs: the Fargate On-Demand vCPU quota (L-3032A538) that this
# pipeline may use. 64 is the decision record's quota (16 task analyses x 4 vCPU ceiling).
POOL_VCPU_LEVER = "FARGATE_VCPU_POOL_SLOTS"
DEFAULT_POOL_VCPU = 64

ANALYSIS_TIMEOUT_LEVER = "ANALYSIS_TIMEOUT_MINUTES"
DEFAULT_ANALYSIS_TIMEOUT_MINUTES = 120
# Launch retries: after the sentinel (quota storm) wait long, after a crash retry soon;
# each delay doubles per try (outcome.AnalysisRetryPolicy).
LAUNCH_RETRIES_LEVER = "ANALYSIS_LAUNCH_RETRIES"
DEFAULT_LAUNCH_RETRIES = 3
SENTINEL_RETRY_LEVER = "ANALYSIS_SENTINEL_RETRY_SECONDS"
DEFAULT_SENTINEL_RETRY_SECONDS = 900
CRASH_RETRY_LEVER = "ANALYSIS_CRASH_RETRY_SECONDS"
DEFAULT_CRASH_RETRY_SECONDS = 120

# --- deployment settings (plain environment of the Airflow processes) ---------------------
DEFAULT_ALLOWED_INPUT_PREFIXES = "s3://analysis-pipeline-recordings/"
DEFAULT_RESULTS_URI = "s3://analysis-pipeline-results/"

# Container tunables that may be passed from the Airflow deployment to the container.
# GEMINI_API_KEY is deliberately absent: in ecs mode it comes from the task definition's
# `secrets`; local mode adds it separately.
GEMINI_TUNABLES: tuple[str, ...] = (
    "GEMINI_BASE_URL",
    "GEMINI_MAP_MODEL",
    "GEMINI_REDUCE_MODEL",
    "GEMINI_MAX_ATTEMPTS",
    "GEMINI_TIMEOUT_SECONDS",
    "GEMINI_MEDIA_RESOLUTION",
    "SEGMENT_SECONDS",
    "MAP_CONCURRENCY",
    "GEMINI_MAX_RETRY_DELAY_SECONDS",
    "GEMINI_THINKING_BUDGET",
    "GEMINI_PRICES",
    # Per-model fleet limits: the same for every container, so passed through as they are.
    # GEMINI_BUDGET_URI is deliberately absent: it carries the store's auth token, so in
    # ecs mode it reaches the container only through the task definition's `secrets`
    # (a plain override would print it in DescribeTasks); local mode passes every
    # GEMINI_* through anyway.
    "GEMINI_MODEL_BUDGETS",
)


# Each container kind has its own share of the project's Gemini quota (Terraform writes
# <PREFIX>_GEMINI_RPM_BUDGET / _TPM_BUDGET and also bakes them into each task definition), so a
# single deployment-wide GEMINI_RPM_BUDGET is never passed: it would give both kinds one value.
GEMINI_BUDGETS: tuple[str, ...] = ("GEMINI_RPM_BUDGET", "GEMINI_TPM_BUDGET")


def gemini_budgets(kind: Kind, *, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The container variables for this kind's budget levers that are set (else the task
    definition's / the container's defaults apply)."""
    prefix = CONTAINERS[kind].lever_prefix
    found = {name: setting(f"{prefix}_{name}", env=env) for name in GEMINI_BUDGETS}
    return {name: value for name, value in found.items() if value}


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def setting(
    name: str, *, env: Mapping[str, str] | None = None, variables: bool = True
) -> str | None:
    """A deployment value: plain ``NAME``, else ``AIRFLOW_VAR_NAME`` (Terraform writes both
    levers and names to ``/airflow/variables/``), else the Variable when enabled (see above)
    and `variables` allows it (listeners: no metastore lookup inside the scheduler's loop)."""
    env = _env(env)
    raw = env.get(name) or env.get(f"AIRFLOW_VAR_{name}")
    enabled = env.get("ANALYSIS_LEVERS_FROM_VARIABLES", "").lower() == "true"
    if raw is None and variables and enabled:
        raw = _variable_or_none(name)
    return raw


def lever_template(name: str, fallback: str) -> str:
    """A templated value read when the task runs: the Variable ``name`` through the secrets
    backend (SSM ``/airflow/variables/<name>``), else what this process saw when it parsed."""
    return "{{ var.value.get(" + json.dumps(name) + ", " + json.dumps(fallback) + ") }}"


def runtime_setting(name: str, *, env: Mapping[str, str] | None = None) -> str | None:
    """A value needed only at run time (a task, a listener): the Variable first, so a lever
    change applies without restarting anything; then the environment."""
    return _variable_or_none(name) or setting(name, env=env)


def read_lever(name: str, default: int, *, env: Mapping[str, str] | None = None) -> int:
    """A positive integer lever; an unreadable or non-positive value falls back to default."""
    raw = setting(name, env=env)
    try:
        value = int(str(raw).strip()) if raw is not None else default
    except ValueError:
        return default
    return value if value > 0 else default


def _variable_or_none(name: str) -> str | None:
    # Imported lazily: the common path (environment) must not pay for it.
    from airflow.sdk import Variable

    try:
        return Variable.get(name, default=None)
    except Exception:  # a secrets backend outage must not break DAG parsing
        return None


@dataclass(frozen=True)
class Levers:
    max_active_runs: int
    vcpu: int
    timeout_minutes: int
    launch_retries: int
    sentinel_retry_seconds: int
    crash_retry_seconds: int


def levers_for(kind: Kind, *, env: Mapping[str, str] | None = None) -> Levers:
    spec = CONTAINERS[kind]
    return Levers(
        max_active_runs=read_lever(spec.cap_lever, spec.default_cap, env=env),
        vcpu=read_lever(spec.vcpu_lever, spec.default_vcpu, env=env),
        timeout_minutes=read_lever(
            ANALYSIS_TIMEOUT_LEVER, DEFAULT_ANALYSIS_TIMEOUT_MINUTES, env=env
        ),
        launch_retries=read_lever(LAUNCH_RETRIES_LEVER, DEFAULT_LAUNCH_RETRIES, env=env),
        sentinel_retry_seconds=read_lever(
            SENTINEL_RETRY_LEVER, DEFAULT_SENTINEL_RETRY_SECONDS, env=env
        ),
        crash_retry_seconds=read_lever(CRASH_RETRY_LEVER, DEFAULT_CRASH_RETRY_SECONDS, env=env),
    )


def pool_vcpus(*, env: Mapping[str, str] | None = None) -> int:
    return read_lever(POOL_VCPU_LEVER, DEFAULT_POOL_VCPU, env=env)


def launcher_mode(*, env: Mapping[str, str] | None = None) -> Literal["ecs", "local"]:
    value = _env(env).get("ANALYSIS_LAUNCHER", "ecs").strip().lower() or "ecs"
    if value not in ("ecs", "local"):
        raise ValueError(f"ANALYSIS_LAUNCHER must be 'ecs' or 'local', got {value!r}")
    return value  # type: ignore[return-value]


def allowed_input_prefixes(*, env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Configured prefixes, each forced to end with '/' so `s3://b` never admits `s3://b-evil`."""
    raw = setting("ALLOWED_INPUT_PREFIXES", env=env) or DEFAULT_ALLOWED_INPUT_PREFIXES
    prefixes = [p.strip() for p in raw.split(",") if p.strip()]
    return tuple(p if p.endswith("/") else p + "/" for p in prefixes)


def results_uri(*, env: Mapping[str, str] | None = None) -> str:
    raw = (setting("RESULTS_URI", env=env) or DEFAULT_RESULTS_URI).strip()
    return raw if raw.endswith("/") else raw + "/"


def output_uri_for(kind: Kind, analysis_id: str, *, env: Mapping[str, str] | None = None) -> str:
    return f"{results_uri(env=env)}{kind}/{analysis_id}/"


@dataclass(frozen=True)
class EcsNetwork:
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    assign_public_ip: bool

    def as_network_configuration(self) -> dict:
        return {
            "awsvpcConfiguration": {
                "subnets": list(self.subnets),
                "securityGroups": list(self.security_groups),
                "assignPublicIp": "ENABLED" if self.assign_public_ip else "DISABLED",
            }
        }


def ecs_network(*, env: Mapping[str, str] | None = None) -> EcsNetwork:
    """Subnets and security groups Terraform outputs, as comma-separated environment values."""

    def split(name: str) -> tuple[str, ...]:
        return tuple(v.strip() for v in (setting(name, env=env) or "").split(",") if v.strip())

    public = (setting("ANALYSIS_ECS_ASSIGN_PUBLIC_IP", env=env) or "false").lower() == "true"
    return EcsNetwork(
        subnets=split("ANALYSIS_ECS_SUBNETS"),
        security_groups=split("ANALYSIS_ECS_SECURITY_GROUPS"),
        assign_public_ip=public,
    )


def ecs_cluster(*, env: Mapping[str, str] | None = None, variables: bool = True) -> str:
    return setting("ANALYSIS_ECS_CLUSTER", env=env, variables=variables) or ECS_CLUSTER


def log_group(kind: Kind, *, env: Mapping[str, str] | None = None) -> str:
    """Terraform writes <PREFIX>_LOG_GROUP (it follows its `project` variable); the default
    matches the default project."""
    spec = CONTAINERS[kind]
    return setting(f"{spec.lever_prefix}_LOG_GROUP", env=env) or spec.log_group


def task_definition(kind: Kind, *, env: Mapping[str, str] | None = None) -> str:
    """Family name (latest ACTIVE revision); Terraform also writes <PREFIX>_TASK_DEFINITION."""
    spec = CONTAINERS[kind]
    return setting(f"{spec.lever_prefix}_TASK_DEFINITION", env=env) or spec.task_definition


def aws_conn_id(*, env: Mapping[str, str] | None = None) -> str | None:
    # None = boto3's default credential chain (the worker's task role), no connection lookup.
    return _env(env).get("ANALYSIS_AWS_CONN_ID") or None
