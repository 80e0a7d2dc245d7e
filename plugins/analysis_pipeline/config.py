"""Every name and lever the DAG side depends on, in one place, and where each value comes from.

One source: Terraform writes one Airflow Variable, ``analysis_pipeline_settings`` (SSM
parameter ``/airflow/variables/analysis_pipeline_settings``, a JSON object, see
``terraform/levers.tf``), and Airflow reads it through its secrets backend
(``SystemsManagerParameterStoreBackend``). One document rather than one parameter per lever:
an apply that moves a cap and a vCPU size together is seen together by every parse, and a
parse costs one lookup (Airflow's secrets cache, ``[secrets] use_cache``, makes that one
lookup per ``cache_ttl_seconds`` per dag-processor).

How a value is found (``settings()``):

1. ``<NAME>`` or ``AIRFLOW_VAR_<NAME>`` in the process environment: an explicit override of
   one field (demos, tests, a staging Airflow). ``make preflight`` reports every override as
   a difference from Terraform.
2. the field ``<NAME>`` of the settings document (``Variable.get`` through the secrets
   backends; ``AIRFLOW_VAR_ANALYSIS_PIPELINE_SETTINGS`` is the environment backend's copy).
3. ``ANALYSIS_LAUNCHER=local`` only: the embedded default below (the decision record's
   figures). In ecs mode (the default) a value that is missing, or any value that is
   malformed, raises ``SettingsError`` naming it: at parse time that is a DAG import error
   in the UI, never a silent default.

The DAG files read these when they are parsed, so a changed lever reaches a running Airflow
within one secrets-cache TTL plus one parse interval (docs/DEPLOY.md states the bound), with
no restart: the dag-processor re-imports each DAG file in a fresh process, and workers parse
the DAG again for every task they run.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["task_analysis", "proctor_video"]

# --- names Terraform must match ---------------------------------------------------------
PROJECT = "analysis-pipeline"
ECS_CLUSTER = f"{PROJECT}"
SSM_VARIABLES_PREFIX = "/airflow/variables/"
SSM_CONNECTIONS_PREFIX = "/airflow/connections/"
SETTINGS_VARIABLE = "analysis_pipeline_settings"
POOL_NAME = "fargate_vcpu"
DISCORD_CONN_ID = "discord_alerts"
PUBLISH_CONN_ID = "analysis_backend"


class SettingsError(ValueError):
    """A deployment setting is missing or malformed; the message names it and says where."""


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

# --- deployment settings ----------------------------------------------------------------
DEFAULT_ALLOWED_INPUT_PREFIXES = "s3://analysis-pipeline-recordings/"
DEFAULT_RESULTS_URI = "s3://analysis-pipeline-results/"
# Local mode: the command that runs one container, `{module}` replaced by its module. The
# default is this interpreter; a clean Airflow has none of the containers' dependencies, so
# point it at an interpreter that has them (e.g. the images' virtualenv).
LOCAL_COMMAND_SETTING = "ANALYSIS_LOCAL_COMMAND"

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
)

# Local mode only: each kind's share of the Gemini quota (<PREFIX>_GEMINI_RPM_BUDGET /
# _TPM_BUDGET in the environment) becomes that container's GEMINI_RPM_BUDGET/_TPM_BUDGET. In
# ecs mode the task definition is the only source of the containers' budgets (Terraform
# writes them there), so an apply never leaves the fleet on mixed budgets.
GEMINI_BUDGETS: tuple[str, ...] = ("GEMINI_RPM_BUDGET", "GEMINI_TPM_BUDGET")


def gemini_budgets(kind: Kind, *, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Local mode: the container variables for this kind's budget levers that are set."""
    env = _env(env)
    prefix = CONTAINERS[kind].lever_prefix
    found = {
        n: env.get(f"{prefix}_{n}") or env.get(f"AIRFLOW_VAR_{prefix}_{n}") for n in GEMINI_BUDGETS
    }
    return {name: value for name, value in found.items() if value}


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


# --- the settings document --------------------------------------------------------------


def _positive(name: str, raw: Any) -> int:
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise SettingsError(f"{name}: {raw!r} is not an integer") from None
    if value <= 0:
        raise SettingsError(f"{name}: {value} must be positive")
    return value


def _non_negative(name: str, raw: Any) -> int:
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise SettingsError(f"{name}: {raw!r} is not an integer") from None
    if value < 0:
        raise SettingsError(f"{name}: {value} must not be negative")
    return value


def _text(name: str, raw: Any) -> str:
    value = str(raw).strip()
    if not value:
        raise SettingsError(f"{name}: empty")
    return value


def _uri_root(name: str, raw: Any) -> str:
    value = _text(name, raw)
    if not value.startswith(("s3://", "file://")):
        raise SettingsError(f"{name}: {value!r} is not an s3:// or file:// URI")
    return value if value.endswith("/") else value + "/"


def _items(name: str, raw: Any) -> tuple[str, ...]:
    values = raw if isinstance(raw, list) else str(raw).split(",")
    return tuple(str(v).strip() for v in values if str(v).strip())


def _prefixes(name: str, raw: Any) -> tuple[str, ...]:
    """Each forced to end with '/' so `s3://b` never admits `s3://b-evil`."""
    prefixes = _items(name, raw)
    if not prefixes:
        raise SettingsError(f"{name}: no prefix given")
    for prefix in prefixes:
        _uri_root(name, prefix)
    return tuple(p if p.endswith("/") else p + "/" for p in prefixes)


def _ids(name: str, raw: Any) -> tuple[str, ...]:
    ids = _items(name, raw)
    if not ids:
        raise SettingsError(f"{name}: empty (ecs mode places every task in these)")
    return ids


def _boolean(name: str, raw: Any) -> bool:
    value = str(raw).strip().lower()
    if value not in ("true", "false"):
        raise SettingsError(f"{name}: {raw!r} is not true or false")
    return value == "true"


@dataclass(frozen=True)
class Field:
    parse: Callable[[str, Any], Any]
    default: Any  # local mode's embedded default (a raw value, parsed like any other)


def _fields() -> dict[str, Field]:
    fields = {
        POOL_VCPU_LEVER: Field(_positive, DEFAULT_POOL_VCPU),
        ANALYSIS_TIMEOUT_LEVER: Field(_positive, DEFAULT_ANALYSIS_TIMEOUT_MINUTES),
        LAUNCH_RETRIES_LEVER: Field(_non_negative, DEFAULT_LAUNCH_RETRIES),
        SENTINEL_RETRY_LEVER: Field(_positive, DEFAULT_SENTINEL_RETRY_SECONDS),
        CRASH_RETRY_LEVER: Field(_positive, DEFAULT_CRASH_RETRY_SECONDS),
        "ANALYSIS_ECS_CLUSTER": Field(_text, ECS_CLUSTER),
        "ANALYSIS_ECS_SUBNETS": Field(_ids, ""),
        "ANALYSIS_ECS_SECURITY_GROUPS": Field(_ids, ""),
        "ANALYSIS_ECS_ASSIGN_PUBLIC_IP": Field(_boolean, "false"),
        "RESULTS_URI": Field(_uri_root, DEFAULT_RESULTS_URI),
        "ALLOWED_INPUT_PREFIXES": Field(_prefixes, DEFAULT_ALLOWED_INPUT_PREFIXES),
    }
    for spec in CONTAINERS.values():
        fields[spec.cap_lever] = Field(_positive, spec.default_cap)
        fields[spec.vcpu_lever] = Field(_positive, spec.default_vcpu)
        fields[f"{spec.lever_prefix}_TASK_DEFINITION"] = Field(_text, spec.task_definition)
        fields[f"{spec.lever_prefix}_LOG_GROUP"] = Field(_text, spec.log_group)
    return fields


FIELDS: Mapping[str, Field] = _fields()
# Fields only ecs mode needs: in local mode an empty default is fine.
ECS_ONLY = frozenset({"ANALYSIS_ECS_SUBNETS", "ANALYSIS_ECS_SECURITY_GROUPS"})


def launcher_mode(*, env: Mapping[str, str] | None = None) -> Literal["ecs", "local"]:
    value = _env(env).get("ANALYSIS_LAUNCHER", "ecs").strip().lower() or "ecs"
    if value not in ("ecs", "local"):
        raise SettingsError(f"ANALYSIS_LAUNCHER must be 'ecs' or 'local', got {value!r}")
    return value  # type: ignore[return-value]


def settings_document(
    *, env: Mapping[str, str] | None = None, variables: bool = True
) -> dict[str, Any] | None:
    """The settings Variable as a dict (None when absent); malformed JSON raises."""
    raw = _env(env).get(f"AIRFLOW_VAR_{SETTINGS_VARIABLE.upper()}")
    if raw is None and variables and env is None:
        raw = _fetched_document()
    if raw is None:
        return None
    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise SettingsError(f"{SETTINGS_VARIABLE}: not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise SettingsError(f"{SETTINGS_VARIABLE}: not a JSON object")
    return document


def overrides(*, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Fields set in the process environment (NAME or AIRFLOW_VAR_NAME)."""
    env = _env(env)
    found = {}
    for name in FIELDS:
        raw = env.get(name) or env.get(f"AIRFLOW_VAR_{name}")
        if raw is not None:
            found[name] = raw
    return found


def raw_settings(
    *, env: Mapping[str, str] | None = None, variables: bool = True, only: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Every field (or ``only`` these) as found, before parsing; ecs mode raises on the
    first missing one."""
    mode = launcher_mode(env=env)
    document = settings_document(env=env, variables=variables)
    found = {**(document or {}), **overrides(env=env)}
    raw: dict[str, Any] = {}
    for name in only or tuple(FIELDS):
        if name in found:
            raw[name] = found[name]
        elif mode == "local":
            raw[name] = FIELDS[name].default
        elif document is None:
            raise SettingsError(
                f"{name}: the settings Variable {SETTINGS_VARIABLE!r} is missing (ecs mode reads "
                f"it through the secrets backend: SSM {SSM_VARIABLES_PREFIX}{SETTINGS_VARIABLE}, "
                "written by terraform apply)"
            )
        else:
            raise SettingsError(
                f"{name}: missing from the settings Variable {SETTINGS_VARIABLE!r} (SSM "
                f"{SSM_VARIABLES_PREFIX}{SETTINGS_VARIABLE}); re-run terraform apply"
            )
    return raw


def settings(
    *, env: Mapping[str, str] | None = None, variables: bool = True, only: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Every field (or ``only`` these), parsed; raises ``SettingsError`` naming the first bad
    one. The DAG files call it whole (``levers_for``), so any bad field fails the parse."""
    mode = launcher_mode(env=env)
    parsed = {}
    for name, raw in raw_settings(env=env, variables=variables, only=only).items():
        if mode == "local" and name in ECS_ONLY:
            parsed[name] = _items(name, raw)
            continue
        parsed[name] = FIELDS[name].parse(name, raw)
    return parsed


def value(name: str, *, env: Mapping[str, str] | None = None, variables: bool = True) -> Any:
    """One field, parsed (checks that field only)."""
    return settings(env=env, variables=variables, only=(name,))[name]


# One parse builds several tasks and reads the settings for each; they share one lookup.
_FETCH_TTL_SECONDS = 5.0
_fetched: tuple[float, str | None] | None = None


def _fetched_document() -> str | None:
    global _fetched
    now = time.monotonic()
    if _fetched is None or now - _fetched[0] > _FETCH_TTL_SECONDS:
        _fetched = (now, _variable_or_none(SETTINGS_VARIABLE))
    return _fetched[1]


def _variable_or_none(name: str) -> str | None:
    """The Variable through Airflow's secrets backends (env, SSM, then the metastore), with
    Airflow's secrets cache; None when no backend has it. A backend that cannot be reached
    is not "missing": that error propagates (the import error then says so)."""
    from airflow.sdk import Variable

    try:
        return Variable.get(name)
    except KeyError:
        return None
    except Exception as exc:
        if "not found" in str(exc).lower() or "VARIABLE_NOT_FOUND" in str(exc):
            return None
        raise


def setting(
    name: str, *, env: Mapping[str, str] | None = None, variables: bool = True
) -> str | None:
    """One field of the settings as a string; a name that is no field (a process setting
    such as ``ANALYSIS_RUNBOOK_URL``) from the environment only (NAME, else
    AIRFLOW_VAR_NAME), None when unset."""
    if name not in FIELDS:
        found_env = _env(env)
        return found_env.get(name) or found_env.get(f"AIRFLOW_VAR_{name}")
    found = value(name, env=env, variables=variables)
    if isinstance(found, tuple):
        return ",".join(found)
    if isinstance(found, bool):
        return "true" if found else "false"
    return str(found)


@dataclass(frozen=True)
class Levers:
    max_active_runs: int
    vcpu: int
    timeout_minutes: int
    launch_retries: int
    sentinel_retry_seconds: int
    crash_retry_seconds: int
    pool_vcpus: int


def levers_for(kind: Kind, *, env: Mapping[str, str] | None = None) -> Levers:
    spec = CONTAINERS[kind]
    found = settings(env=env)
    return Levers(
        max_active_runs=found[spec.cap_lever],
        vcpu=found[spec.vcpu_lever],
        timeout_minutes=found[ANALYSIS_TIMEOUT_LEVER],
        launch_retries=found[LAUNCH_RETRIES_LEVER],
        sentinel_retry_seconds=found[SENTINEL_RETRY_LEVER],
        crash_retry_seconds=found[CRASH_RETRY_LEVER],
        pool_vcpus=found[POOL_VCPU_LEVER],
    )


def pool_vcpus(*, env: Mapping[str, str] | None = None) -> int:
    return value(POOL_VCPU_LEVER, env=env)


def allowed_input_prefixes(*, env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    return value("ALLOWED_INPUT_PREFIXES", env=env)


def results_uri(*, env: Mapping[str, str] | None = None) -> str:
    return value("RESULTS_URI", env=env)


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
    names = (
        "ANALYSIS_ECS_SUBNETS",
        "ANALYSIS_ECS_SECURITY_GROUPS",
        "ANALYSIS_ECS_ASSIGN_PUBLIC_IP",
    )
    found = settings(env=env, only=names)
    return EcsNetwork(
        subnets=found["ANALYSIS_ECS_SUBNETS"],
        security_groups=found["ANALYSIS_ECS_SECURITY_GROUPS"],
        assign_public_ip=found["ANALYSIS_ECS_ASSIGN_PUBLIC_IP"],
    )


def ecs_cluster(*, env: Mapping[str, str] | None = None, variables: bool = True) -> str:
    """``variables=False`` (listeners inside the scheduler's or API server's loop): never the
    metastore, whose scoped session is that loop's own; the environment's copy, else the
    deployment's own secrets backend (SSM) directly, else the default name."""
    if not variables:
        document = settings_document(env=env, variables=False)
        if document is None and env is None:
            document = _document_from_custom_backend()
        found = {**(document or {}), **overrides(env=env)}
        return str(found.get("ANALYSIS_ECS_CLUSTER") or ECS_CLUSTER)
    return value("ANALYSIS_ECS_CLUSTER", env=env)


def _document_from_custom_backend() -> dict[str, Any] | None:
    """The settings from the configured secrets backend alone (no metastore lookup)."""
    try:
        from airflow.configuration import get_custom_secret_backend

        backend = get_custom_secret_backend()
        raw = backend.get_variable(SETTINGS_VARIABLE) if backend is not None else None
        document = json.loads(raw) if raw else None
    except Exception:  # listeners never raise; the caller falls back to the default name
        return None
    return document if isinstance(document, dict) else None


def log_group(kind: Kind, *, env: Mapping[str, str] | None = None) -> str:
    return value(f"{CONTAINERS[kind].lever_prefix}_LOG_GROUP", env=env)


def task_definition(kind: Kind, *, env: Mapping[str, str] | None = None) -> str:
    """Family name (latest ACTIVE revision)."""
    return value(f"{CONTAINERS[kind].lever_prefix}_TASK_DEFINITION", env=env)


def aws_conn_id(*, env: Mapping[str, str] | None = None) -> str | None:
    # None = boto3's default credential chain (the worker's task role), no connection lookup.
    return _env(env).get("ANALYSIS_AWS_CONN_ID") or None


def local_command(module: str, *, env: Mapping[str, str] | None = None) -> list[str]:
    """argv that runs one container module in local mode (``ANALYSIS_LOCAL_COMMAND``)."""
    import shlex
    import sys

    template = _env(env).get(LOCAL_COMMAND_SETTING, "").strip()
    if not template:
        return [sys.executable, "-m", module]
    if "{module}" not in template:
        raise SettingsError(f"{LOCAL_COMMAND_SETTING}: {template!r} has no {{module}} placeholder")
    return [part.replace("{module}", module) for part in shlex.split(template)]
