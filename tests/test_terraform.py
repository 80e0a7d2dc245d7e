"""Static checks of terraform/: formatting, the wiring to the DAG side and the contracts, IAM
scope, and checkov. All offline: the AWS provider cannot be downloaded here, so the root
module is checked by parsing its HCL (python-hcl2) rather than by `terraform validate`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest

REPO = Path(__file__).resolve().parent.parent
TF = REPO / "terraform"
CHECKOV = REPO / ".venv-tools" / "bin" / "checkov"

config = pytest.importorskip(
    "analysis_pipeline.config", reason="DAG-side config (plugins/analysis_pipeline) not present"
)


# --- parsing helpers ----------------------------------------------------------------------------


def _unquote(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, dict):
        return {_unquote(k): _unquote(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    return value


@cache
def _parsed(path: Path) -> dict[str, Any]:
    with path.open() as handle:
        return _unquote(hcl2.load(handle))


def _main() -> dict[str, Any]:
    return _parsed(TF / "main.tf")


def _locals() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for block in _main()["locals"]:
        merged.update(block)
    return merged


def _blocks(kind: str, type_name: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for block in _main()[kind]:
        found.update(block.get(type_name, {}))
    return found


def _variable_defaults() -> dict[str, Any]:
    out = {}
    for block in _parsed(TF / "variables.tf")["variable"]:
        for name, body in block.items():
            out[name] = body.get("default")
    return out


def _render(template: str, **values: str) -> str:
    """Evaluate a `"${var.project}/${k}"`-style template with the given names."""

    def sub(match: re.Match[str]) -> str:
        return values[match.group(1)]

    return re.sub(r"\$\{([\w.]+)\}", sub, template)


def _for_template(expression: str) -> str:
    """The value template of `{for k in keys(var.workloads) : k => "<template>"}`."""
    match = re.search(r'=> "(.*)"\}\}$', expression) or re.search(r"=> (\w+)\}\}$", expression)
    assert match, expression
    return match.group(1) if expression.endswith('"}}') else "${" + match.group(1) + "}"


# --- formatting -----------------------------------------------------------------------------


@pytest.mark.terraform
def test_terraform_fmt_is_clean() -> None:
    binary = shutil.which("terraform")
    if binary is None:
        pytest.skip("terraform binary not on PATH: `terraform fmt -check` not run")
    env = {**os.environ}
    if not Path(env.get("TF_CLI_CONFIG_FILE", "/nonexistent")).exists():
        env["TF_CLI_CONFIG_FILE"] = ""
    result = subprocess.run(
        [binary, "fmt", "-check", "-recursive", "-diff", str(TF)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- naming shared with the DAG side --------------------------------------------------------


def test_project_cluster_and_container_names_match_the_dag_config() -> None:
    project = _variable_defaults()["project"]
    assert project == config.PROJECT
    assert _render(_locals()["cluster_name"], **{"var.project": project}) == config.ECS_CLUSTER
    workloads = next(
        block["workloads"]
        for block in _parsed(TF / "variables.tf")["variable"]
        if "workloads" in block
    )
    workload_keys_rule = next(
        rule["condition"]
        for rule in workloads["validation"]
        if "keys(var.workloads)" in rule["condition"]
    )
    names = {spec.container_name for spec in config.CONTAINERS.values()}
    assert set(re.findall(r'"([a-z-]+)"', workload_keys_rule)) == names
    assert set(_locals()["containers"]) == names


@pytest.mark.parametrize("kind", sorted(config.CONTAINERS))
def test_task_definition_log_group_and_prefix_match_the_dag_config(kind: str) -> None:
    spec = config.CONTAINERS[kind]
    project = _variable_defaults()["project"]
    names = {"var.project": project, "k": spec.container_name}
    loc = _locals()
    assert _render(_for_template(loc["task_family"]), **names) == spec.task_definition
    assert _render(_for_template(loc["log_group"]), **names) == spec.log_group
    assert _render(_for_template(loc["log_stream_prefix"]), **names) == spec.log_stream_prefix
    task_def = _blocks("resource", "aws_ecs_task_definition")["this"]
    containers = task_def["container_definitions"]
    assert "name = each.key" in containers  # container name = workload key = spec name
    assert "awslogs-group = aws_cloudwatch_log_group.this[each.key].name" in containers
    assert "awslogs-stream-prefix = local.log_stream_prefix[each.key]" in containers
    log_groups = _blocks("resource", "aws_cloudwatch_log_group")["this"]
    assert log_groups["name"] == "${local.log_group[each.key]}"
    assert task_def["family"] == "${local.task_family[each.key]}"


# --- every lever the DAGs read is an SSM parameter ------------------------------------------


def _ssm_parameter_names() -> set[str]:
    """Keys of local.airflow_levers, evaluated for each entry of local.containers."""
    expression = _locals()["airflow_levers"]
    containers = _locals()["containers"]
    names: set[str] = set()
    for key_expr in re.findall(r"for k, c in local\.containers : (.+?) =>", expression):
        for fields in containers.values():
            if key_expr.startswith("c."):
                names.add(fields[key_expr[2:]])
            else:
                template = key_expr.strip('"')
                names.add(re.sub(r"\$\{c\.(\w+)\}", lambda m, f=fields: f[m.group(1)], template))
    literal = expression.rsplit("{", 1)[1]
    names |= set(re.findall(r"\b([A-Z][A-Z0-9_]+) = ", literal))
    return names


def test_ssm_parameters_live_under_the_airflow_variables_prefix() -> None:
    ssm = _blocks("resource", "aws_ssm_parameter")["airflow_variable"]
    assert ssm["for_each"] == "${local.airflow_levers}"
    assert ssm["name"] == config.SSM_VARIABLES_PREFIX + "${each.key}"


def test_every_lever_the_dags_read_is_an_ssm_parameter() -> None:
    levers = {config.POOL_VCPU_LEVER, config.ANALYSIS_TIMEOUT_LEVER}
    for spec in config.CONTAINERS.values():
        levers |= {spec.cap_lever, spec.vcpu_lever}
    assert levers <= _ssm_parameter_names(), levers - _ssm_parameter_names()


def test_ecs_names_and_gemini_budgets_are_ssm_parameters_too() -> None:
    names = _ssm_parameter_names()
    assert {"ANALYSIS_ECS_CLUSTER", "ANALYSIS_ECS_SUBNETS", "ANALYSIS_ECS_SECURITY_GROUPS"} <= names
    for prefix in ("TASK_ANALYZER", "PROCTOR_VIDEO"):
        assert {f"{prefix}_TASK_DEFINITION", f"{prefix}_GEMINI_RPM_BUDGET"} <= names
        assert f"{prefix}_GEMINI_TPM_BUDGET" in names


def test_caps_written_for_the_dags_are_the_quota_limited_ones() -> None:
    expression = _locals()["airflow_levers"]
    assert "c.cap_lever => tostring(module.capacity.effective_caps[k])" in expression
    assert "FARGATE_VCPU_POOL_SLOTS = tostring(module.capacity.pool_vcpu)" in expression


def test_airflow_environment_output_uses_the_names_the_dag_config_reads() -> None:
    source = (REPO / "plugins" / "analysis_pipeline" / "config.py").read_text()
    read = set(re.findall(r'(?:get|setting|split)\("([A-Z][A-Z0-9_]+)"', source))
    outputs = {}
    for block in _parsed(TF / "outputs.tf")["output"]:
        outputs.update(block)
    env_names = set(outputs["airflow_environment"]["value"])
    assert env_names <= read, env_names - read
    assert {"ANALYSIS_ECS_SUBNETS", "ANALYSIS_ECS_SECURITY_GROUPS", "RESULTS_URI"} <= env_names


def test_settings_the_dag_config_reads_are_ssm_parameters_too() -> None:
    source = (REPO / "plugins" / "analysis_pipeline" / "config.py").read_text()
    settings = set(re.findall(r'setting\("([A-Z][A-Z0-9_]+)"', source))
    for spec in config.CONTAINERS.values():
        prefix = getattr(spec, "lever_prefix", None)
        if prefix:  # task_definition(kind) reads <PREFIX>_TASK_DEFINITION
            settings.add(f"{prefix}_TASK_DEFINITION")
            assert _locals()["containers"][spec.container_name]["lever_prefix"] == prefix
    assert settings <= _ssm_parameter_names(), settings - _ssm_parameter_names()


# --- the container environment contract -------------------------------------------------------


def _design_variables() -> set[str]:
    for candidate in (REPO / "docs" / "DESIGN.md", REPO.parent / "shared" / "DESIGN.md"):
        if candidate.exists():
            section = candidate.read_text().split("## Container contract", 1)[1]
            rows = [line for line in section.splitlines() if line.startswith("| `")]
            return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row)}
    pytest.skip("DESIGN.md (docs/ or ../shared/) not found")


def _settings_variables() -> set[str]:
    source = (REPO / "containers" / "analysis_engine" / "settings.py").read_text()
    return set(re.findall(r'env(?:\.get\(|, )"([A-Z][A-Z0-9_]+)"', source))


def _container_environment() -> set[str]:
    expression = _locals()["container_environment"]
    return set(re.findall(r"\b([A-Z][A-Z0-9_]+) = ", expression))


PER_RUN = {"ANALYSIS_ID", "INPUT_URI", "OUTPUT_URI", "ANALYSIS_CONTEXT"}


def test_task_definition_environment_names_are_contract_names() -> None:
    env = _container_environment()
    known = _design_variables() | _settings_variables() | {"TMPDIR"}
    assert env <= known, env - known
    # Everything the contract fixes per image is set; per-run values come from overrides.
    per_image = _design_variables() - PER_RUN - {"GEMINI_API_KEY", "GEMINI_BASE_URL"}
    per_image -= {"AWS_ENDPOINT_URL"}
    assert per_image <= env, per_image - env
    assert not env & PER_RUN


def test_gemini_api_key_comes_only_from_secrets_manager() -> None:
    containers = _blocks("resource", "aws_ecs_task_definition")["this"]["container_definitions"]
    assert "GEMINI_API_KEY" not in _container_environment()
    assert 'secrets = [{name = "GEMINI_API_KEY", valueFrom = var.gemini_api_key_secret_arn}]' in (
        containers
    )
    execution = _blocks("data", "aws_iam_policy_document")["execution"]["statement"]
    secret = [s for s in execution if s["actions"] == ["secretsmanager:GetSecretValue"]]
    assert secret and secret[0]["resources"] == ["${var.gemini_api_key_secret_arn}"]


def test_container_is_hardened() -> None:
    task_def = _blocks("resource", "aws_ecs_task_definition")["this"]
    containers = task_def["container_definitions"]
    assert "readonlyRootFilesystem = true" in containers
    assert "privileged = false" in containers
    assert "user = local.container_user" in containers
    assert not _locals()["container_user"].startswith(("0", "root"))
    assert "containerPath = local.scratch_path" in containers
    assert task_def["ephemeral_storage"][0]["size_in_gib"] == "${each.value.ephemeral_storage_gib}"
    assert task_def["requires_compatibilities"] == ["FARGATE"]


# --- IAM scope --------------------------------------------------------------------------------

RECORDINGS_OBJECTS = "arn:${local.partition}:s3:::${r.bucket}/${r.prefix}*"
RESULTS_OBJECTS = "${aws_s3_bucket.results.arn}/${var.results_prefix}*"


def _statements(document: str) -> list[dict[str, Any]]:
    doc = _blocks("data", "aws_iam_policy_document")[document]
    statements = list(doc.get("statement", []))
    for dynamic in doc.get("dynamic", []):
        statements += dynamic["statement"]["content"]
    return statements


def test_task_role_touches_only_its_prefixes() -> None:
    allowed_actions = {
        "s3:GetObject",
        "s3:PutObject",
        "s3:PutObjectTagging",
        "s3:AbortMultipartUpload",
        "s3:ListBucket",
        "kms:GenerateDataKey",
        "kms:Decrypt",
    }
    writes = {"s3:PutObject", "s3:PutObjectTagging", "s3:AbortMultipartUpload"}
    for statement in _statements("task"):
        actions = set(statement["actions"])
        resources = statement["resources"]
        assert actions <= allowed_actions, actions
        assert statement.get("effect", "Allow") == "Allow"
        text = json.dumps(resources)
        assert '"*"' not in text
        if actions & writes:
            assert resources == [RESULTS_OBJECTS], statement
        elif actions == {"s3:GetObject"} and statement["sid"] == "ReadRecordings":
            assert resources == "${[for r in local.recordings : " + f'"{RECORDINGS_OBJECTS}"' + "]}"
        elif actions == {"s3:ListBucket"}:
            condition = statement["condition"][0]
            assert condition["variable"] == "s3:prefix" and condition["test"] == "StringLike"
            assert "${var.results_prefix}*" in json.dumps(condition["values"]) or (
                "${r.prefix}*" in json.dumps(condition["values"])
            )
        else:
            assert actions <= {"kms:GenerateDataKey", "kms:Decrypt"}, statement
    assert _locals()["recordings"].startswith("${[for u in var.recordings_uri_prefixes")


def test_task_role_and_execution_role_are_separate() -> None:
    task_def = _blocks("resource", "aws_ecs_task_definition")["this"]
    assert task_def["execution_role_arn"] == "${aws_iam_role.execution.arn}"
    assert task_def["task_role_arn"] == "${aws_iam_role.task.arn}"
    execution_actions = {a for s in _statements("execution") for a in s["actions"]}
    assert not {a for a in execution_actions if a.startswith("s3:")}
    task_actions = {a for s in _statements("task") for a in s["actions"]}
    assert not {a for a in task_actions if a.startswith(("ecr:", "secretsmanager:"))}


def test_airflow_policy_is_scoped_to_this_pipeline() -> None:
    by_sid = {s["sid"]: s for s in _statements("airflow")}
    run = by_sid["RunThesePipelinesTasks"]
    assert run["actions"] == ["ecs:RunTask"]
    assert "task-definition/${f}:*" in run["resources"] and "local.task_family" in run["resources"]
    assert set(by_sid["WatchAndStopThem"]["actions"]) == {"ecs:DescribeTasks", "ecs:StopTask"}
    pass_role = by_sid["PassOnlyTheseRoles"]
    assert pass_role["actions"] == ["iam:PassRole"]
    assert pass_role["resources"] == ["${aws_iam_role.execution.arn}", "${aws_iam_role.task.arn}"]
    ssm = by_sid["ReadItsVariables"]
    assert ssm["resources"] == "${[for p in aws_ssm_parameter.airflow_variable : p.arn]}"
    for statement in by_sid.values():
        if '"*"' in json.dumps(statement["resources"]):  # only when pinned to this cluster
            assert statement["actions"] == ["ecs:ListTasks"], statement["sid"]
            condition = statement["condition"][0]
            assert condition["variable"] == "ecs:cluster"
            assert condition["values"] == ["${aws_ecs_cluster.this.arn}"]


# --- the quota traps --------------------------------------------------------------------------


def test_fargate_quota_is_requested_from_the_module_and_guarded() -> None:
    quota = _blocks("resource", "aws_servicequotas_service_quota")["fargate_vcpu"]
    data = _blocks("data", "aws_servicequotas_service_quota")["fargate_vcpu"]
    fq = _locals()["fargate_quota"]
    assert (fq["service_code"], fq["quota_code"]) == ("fargate", "L-3032A538")
    assert quota["value"] == "${module.capacity.quota_to_request}"
    assert data["quota_code"] == "${local.fargate_quota.quota_code}"
    precondition = quota["lifecycle"][0]["precondition"][0]
    assert (
        "data.aws_servicequotas_service_quota.fargate_vcpu.adjustable" in precondition["condition"]
    )
    assert "not adjustable" in precondition["error_message"]
    module = next(m["capacity"] for m in _main()["module"] if "capacity" in m)
    assert module["fargate_vcpu_quota_applied"] == "${local.quota_granted}"
    outputs = {}
    for block in _parsed(TF / "outputs.tf")["output"]:
        outputs.update(block)
    assert {"fargate_vcpu_quota_granted", "fargate_vcpu_quota_requested"} <= set(outputs)


# --- module hygiene ------------------------------------------------------------------------


@pytest.mark.parametrize("directory", [TF, TF / "modules" / "capacity"])
def test_every_variable_typed_and_described_every_output_described(directory: Path) -> None:
    for block in _parsed(directory / "variables.tf")["variable"]:
        for name, body in block.items():
            assert body.get("type") and body.get("description"), name
    for block in _parsed(directory / "outputs.tf")["output"]:
        for name, body in block.items():
            assert body.get("description"), name


def test_capacity_module_declares_no_provider() -> None:
    for path in (TF / "modules" / "capacity").glob("*.tf"):
        text = path.read_text()
        assert "provider " not in text and "required_providers" not in text, path


@pytest.mark.parametrize("tfvars", sorted((TF / "examples").glob("*.tfvars")), ids=lambda p: p.name)
def test_examples_set_every_required_variable(tfvars: Path) -> None:
    required = {k for k, v in _variable_defaults().items() if v is None}
    required -= {"fargate_vcpu_quota", "airflow_role_name", "gemini_api_key_kms_key_arn"}
    values = {k: v for k, v in _parsed(tfvars).items() if not k.startswith("__")}
    assert required <= set(values), required - set(values)
    assert set(values) <= set(_variable_defaults()), set(values) - set(_variable_defaults())


# --- checkov ------------------------------------------------------------------------------------


def test_checkov_passes_with_justified_skips() -> None:
    if not CHECKOV.exists():
        pytest.skip("checkov not installed: run `make tools` (make tf-check installs it)")
    result = subprocess.run(
        [str(CHECKOV), "-d", str(TF), "--framework", "terraform", "-o", "json"],
        capture_output=True,
        text=True,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
        timeout=300,
    )
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [c for r in reports for c in r["results"]["failed_checks"]]
    assert not failed, [(c["check_id"], c["resource"]) for c in failed]
    for r in reports:
        assert r["summary"]["parsing_errors"] == 0
        assert r["summary"]["passed"] > 50  # it really scanned the root module
        for skipped in r["results"]["skipped_checks"]:
            reason = skipped.get("check_result", {}).get("suppress_comment", "")
            assert len(reason) > 20, (skipped["check_id"], skipped["resource"])
