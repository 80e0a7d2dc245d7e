"""terraform/ checked as AWS would check it, offline.

The root module is initialised against the real AWS provider (the local plugin directory
when one is installed, else the registry), validated against its schema and applied with a
mocked provider by `terraform test` (terraform/tests/*.tftest.hcl: container definitions,
levers, IAM documents, quota, budget store). Python only adds what needs Python: the names
the DAG side imports (plugins/analysis_pipeline) and the container contract (DESIGN.md, the
engine's settings) are rendered into a generated `.tftest.hcl` and checked against the
values Terraform computes. A missing terraform binary or provider is a failure, not a skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TF = REPO / "terraform"
CHECKOV = REPO / ".venv-tools" / "bin" / "checkov"
# Where a local provider mirror usually lives (the Makefile searches the same places).
PLUGIN_ROOTS = (
    Path.home() / ".terraform.d" / "plugins",
    Path("/opt"),
    Path("/usr/local/share/terraform"),
    Path("/usr/share/terraform"),
)

pytestmark = pytest.mark.terraform


def _terraform() -> str:
    binary = shutil.which("terraform")
    if binary is None:
        pytest.fail("terraform not on PATH: install Terraform >= 1.10 (make tf-check needs it)")
    return binary


def _plugin_dir() -> Path | None:
    """The directory above registry.terraform.io/ holding the AWS provider, if installed."""
    if os.environ.get("TF_PLUGIN_DIR"):
        return Path(os.environ["TF_PLUGIN_DIR"])
    pattern = "**/registry.terraform.io/hashicorp/aws/*/*/terraform-provider-aws*"
    for root in PLUGIN_ROOTS:
        for binary in root.glob(pattern):
            if ".terraform" not in binary.parts:
                return Path(str(binary).split("/registry.terraform.io/")[0])
    return None


def _env() -> dict[str, str]:
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}
    if not Path(env.get("TF_CLI_CONFIG_FILE", "/nonexistent")).exists():
        env["TF_CLI_CONFIG_FILE"] = ""  # silence the missing-config warning
    return env


def _run(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_terraform(), *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of terraform/ initialised against the provider the lock file pins."""
    work = tmp_path_factory.mktemp("tf") / "terraform"
    shutil.copytree(TF, work, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*", "*.tfplan"))
    plugins = _plugin_dir()
    args = ["init", "-backend=false", "-input=false", "-lockfile=readonly", "-no-color"]
    if plugins is not None:
        args.append(f"-plugin-dir={plugins}")
    result = _run(args, work)
    if result.returncode != 0:
        pytest.fail(
            "terraform init failed: the AWS provider (hashicorp/aws, as pinned in "
            ".terraform.lock.hcl) must be reachable, either installed as a local plugin "
            "directory (TF_PLUGIN_DIR, searched under "
            f"{', '.join(map(str, PLUGIN_ROOTS))}) or from the registry.\n"
            + result.stdout
            + result.stderr
        )
    yield work


def _passed(result: subprocess.CompletedProcess[str]) -> int:
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r"Success! (\d+) passed, 0 failed", result.stdout)
    assert match, result.stdout
    return int(match.group(1))


# --- terraform's own checks ------------------------------------------------------------------


def test_terraform_fmt_is_clean() -> None:
    result = _run(["fmt", "-check", "-recursive", "-diff", "-no-color", str(TF)], REPO, 60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_lock_file_pins_one_provider_release_for_every_platform() -> None:
    lock = (TF / ".terraform.lock.hcl").read_text()
    assert re.search(r'version\s+=\s+"5\.\d+\.\d+"', lock)
    # zh: hashes are the registry's per-platform package checksums: an operator on another
    # platform installs the same release and init verifies it.
    assert len(re.findall(r'"zh:[0-9a-f]{64}"', lock)) >= 10
    assert '"h1:' in lock


@pytest.mark.slow
def test_root_module_validates_against_the_provider_schema(root: Path) -> None:
    result = _run(["validate", "-no-color"], root)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_root_module_mocked_apply_suite(root: Path) -> None:
    assert _passed(_run(["test", "-no-color", "-filter=tests/root.tftest.hcl"], root)) >= 13


@pytest.mark.slow
def test_monitoring_mocked_apply_suite(root: Path) -> None:
    """The dashboard, the alarms (runbook sections, notifications) and the backend's role."""
    assert _passed(_run(["test", "-no-color", "-filter=tests/monitoring.tftest.hcl"], root)) >= 6


@pytest.mark.slow
def test_secrets_mocked_apply_suite(root: Path) -> None:
    """Secret slots without values in state; the Airflow role reads exactly its settings."""
    assert _passed(_run(["test", "-no-color", "-filter=tests/secrets.tftest.hcl"], root)) >= 3


@pytest.mark.parametrize("suite", ["monitoring.tftest.hcl", "secrets.tftest.hcl"])
def test_other_suites_mock_aws_and_set_variables_as_the_root_suite_does(suite: str) -> None:
    """terraform test files cannot include one another: the other suites repeat the root
    suite's mocked provider and variables, and must not drift from them."""

    def preamble(name: str) -> str:
        text = (TF / "tests" / name).read_text()
        return text[text.index("mock_provider") : text.index('\nrun "')].strip()

    assert preamble(suite) == preamble("root.tftest.hcl")


@pytest.mark.slow
@pytest.mark.parametrize("example", ["decision-record.tfvars", "scaled.tfvars"])
def test_example_plans_with_the_mocked_provider(root: Path, example: str) -> None:
    result = _run(
        [
            "test",
            "-no-color",
            "-test-directory=tests/examples",
            f"-var-file={root / 'examples' / example}",
        ],
        root,
    )
    assert _passed(result) >= 1


def test_capacity_module_suite(tmp_path: Path) -> None:
    work = tmp_path / "capacity"
    shutil.copytree(TF / "modules" / "capacity", work, ignore=shutil.ignore_patterns(".terraform*"))
    assert _run(["init", "-backend=false", "-input=false", "-no-color"], work).returncode == 0
    assert _passed(_run(["test", "-no-color"], work)) >= 19


# --- wiring that needs Python: the DAG side and the container contract -------------------


def _hcl_list(values: set[str] | list[str]) -> str:
    return json.dumps(sorted(values))


def _design_variables() -> tuple[set[str], set[str]]:
    """The container contract's variables: (all, those not marked optional)."""
    for candidate in (REPO / "docs" / "DESIGN.md", REPO.parent / "shared" / "DESIGN.md"):
        if candidate.exists():
            section = candidate.read_text().split("## Container contract", 1)[1]
            section = section.split("\n## ", 1)[0]
            rows = [line for line in section.splitlines() if line.startswith("| `")]
            names = {r: set(re.findall(r"`([A-Z][A-Z0-9_]+)`", r.split("|")[1])) for r in rows}
            required = {n for row, found in names.items() if "optional" not in row for n in found}
            return {n for found in names.values() for n in found}, required
    pytest.fail("DESIGN.md (docs/ or ../shared/) not found: the container contract is unknown")


def _dag_side_test() -> str:
    """A .tftest.hcl asserting that Terraform writes what the DAG side imports."""
    from analysis_pipeline import config

    containers = list(config.CONTAINERS.values())
    asserts = [
        (
            f"toset(keys(output.airflow_settings)) == toset({_hcl_list(set(config.FIELDS))})",
            "Terraform writes exactly the settings the DAG side reads (config.FIELDS)",
        ),
        (
            "aws_ssm_parameter.airflow_settings.name == "
            f'"{config.SSM_VARIABLES_PREFIX}{config.SETTINGS_VARIABLE}"',
            "The settings live where the DAG side's secrets backend reads its Variable",
        ),
        (
            f'var.project == "{config.PROJECT}" && aws_ecs_cluster.this.name == '
            f'"{config.ECS_CLUSTER}"',
            "Project and cluster names match the DAG side",
        ),
    ]
    for spec in containers:
        key = f'"{spec.container_name}"'
        td = f"aws_ecs_task_definition.this[{key}]"
        asserts.append(
            (
                f'{td}.family == "{spec.task_definition}" && '
                f'jsondecode({td}.container_definitions)[0].name == "{spec.container_name}" && '
                f"jsondecode({td}.container_definitions)[0].logConfiguration.options == "
                f'{{ awslogs-group = "{spec.log_group}", awslogs-region = var.aws_region, '
                f'awslogs-stream-prefix = "{spec.log_stream_prefix}" }} && '
                f'output.airflow_settings["{spec.lever_prefix}_TASK_DEFINITION"] == '
                f'"{spec.task_definition}"',
                f"{spec.kind}: task definition, container name and logs match the DAG side",
            )
        )
    design, required = _design_variables()
    per_run = {"ANALYSIS_ID", "INPUT_URI", "OUTPUT_URI", "ANALYSIS_CONTEXT"}
    # Per-image contract variables Terraform must set (the secrets arrive via `secrets`).
    fixed = required - per_run - {"GEMINI_API_KEY", "GEMINI_BUDGET_URI"}
    known = design | {"TMPDIR", "SCRATCH_DIR", "GEMINI_MEDIA_RESOLUTION", "GEMINI_MODEL_BUDGETS"}
    for spec in containers:
        env = (
            "[for e in jsondecode(aws_ecs_task_definition.this"
            f'["{spec.container_name}"].container_definitions)[0].environment : e.name]'
        )
        secrets = env.replace(".environment", ".secrets")
        asserts += [
            (
                f"length(setsubtract({_hcl_list(fixed)}, {env})) == 0",
                f"{spec.kind}: every per-image contract variable is set",
            ),
            (
                f"length(setsubtract({env}, {_hcl_list(known)})) == 0",
                f"{spec.kind}: only contract names in the environment",
            ),
            (
                f"length(setintersection({env}, {_hcl_list(per_run)})) == 0",
                f"{spec.kind}: per-run values come from the DAG's overrides only",
            ),
            (
                f'toset({secrets}) == toset(["GEMINI_API_KEY", "GEMINI_BUDGET_URI"])',
                f"{spec.kind}: the key and the budget store URI come from Secrets Manager",
            ),
        ]
    body = "\n".join(
        f"  assert {{\n    condition     = {cond}\n    error_message = {json.dumps(msg)}\n  }}"
        for cond, msg in asserts
    )
    root_test = (TF / "tests" / "root.tftest.hcl").read_text()
    preamble = root_test.split('\nrun "', 1)[0]  # the same mocked provider and variables
    return f'{preamble}\nrun "dag_side_and_container_contract" {{\n  command = apply\n{body}\n}}\n'


@pytest.mark.slow
def test_terraform_writes_what_the_dag_side_and_containers_read(root: Path) -> None:
    (root / "tests" / "generated_dag_side.tftest.hcl").write_text(_dag_side_test())
    result = _run(["test", "-no-color", "-filter=tests/generated_dag_side.tftest.hcl"], root)
    assert _passed(result) == 1


def test_every_root_variable_is_described_and_checked() -> None:
    """Validations on every root variable (a bool needs none: its type is the check)."""
    # `terraform fmt` output: each block starts at column 0 and ends with "}" alone.
    text = (TF / "variables.tf").read_text()
    blocks = re.findall(r'^variable "(\w+)" \{\n(.*?)^\}', text, re.M | re.S)
    assert len(blocks) >= 20
    # Passed straight to modules/capacity, whose own validations check them.
    checked_by_module = {"gemini_model_quotas"}
    for name, body in blocks:
        assert re.search(r"^  description\s+=", body, re.M), name
        type_ = re.search(r"^  type\s+=\s+(.+)$", body, re.M)
        assert type_, name
        if type_.group(1) == "bool" or name in checked_by_module:
            continue
        assert "\n  validation {" in body, f"variable {name} has no validation"


# --- checkov --------------------------------------------------------------------------------


@pytest.mark.slow
def test_checkov_passes_with_justified_skips() -> None:
    if not CHECKOV.exists():
        pytest.fail("checkov not installed: run `make tools` (make test and make tf-check do)")
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
