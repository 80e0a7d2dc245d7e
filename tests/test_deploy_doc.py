"""docs/DEPLOY.md: every command in its shell blocks is run by a test (named below, and the
test file must hold the command's own words), or is on the list of commands that need a real
AWS account or a running deployment. A command added to the guide without either fails."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "DEPLOY.md"

# command prefix -> (the test that runs it, words that test must contain)
EXERCISED: dict[str, tuple[str, str]] = {
    "make bootstrap": ("tests/test_bootstrap.py", '"devtools.bootstrap"'),
    "cp terraform/examples/decision-record.tfvars": ("tests/test_ops.py", '"capacity"'),
    "make capacity": ("tests/test_ops.py", '"capacity"'),
    "make images": ("tests/test_images_build.py", "make_images"),
    "make push": ("tests/test_images_build.py", "push"),
    "make dist": ("tests/test_wheel.py", '"wheel", "-q", "--no-deps"'),
    "pip install dist/analysis_pipeline_airflow-": ("tests/test_wheel.py", "str(wheel)"),
    "make mwaa": ("tests/test_wheel.py", "mwaa.write_layout"),
    "airflow dags unpause": ("tests/test_wheel.py", '"unpause"'),
    "make preflight": ("tests/test_preflight.py", "preflight.main"),
}
# Need the account (or the deployed Airflow): run by a person, never by the suite.
REAL_AWS = (
    "make registry",  # terraform apply -target against the account
    "make plan",  # refusals tested in tests/test_ops.py; the plan itself reads the account
    "make apply",
    "aws secretsmanager put-secret-value",  # the slots: tests/test_terraform.py (secrets)
    "aws ssm put-parameter",
    "aws s3 cp",  # MWAA's bucket
    "curl -X POST",  # a deployed Airflow's REST API
)


def commands() -> list[str]:
    found = []
    for block in re.findall(r"```sh\n(.*?)```", GUIDE.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                found.append(line)
    return found


def test_the_guide_goes_from_zero_to_a_first_run_in_order() -> None:
    headings = re.findall(r"^## \d+\. (.+)$", GUIDE.read_text(), re.M)
    order = ["Bootstrap", "settings", "Images", "Apply", "Secrets", "Install into Airflow"]
    order += ["Unpause", "Preflight", "first real run", "Rolling back"]
    assert len(headings) == len(order)
    for heading, expected in zip(headings, order, strict=True):
        assert expected.lower() in heading.lower(), (heading, expected)


def test_every_command_is_tested_or_named_as_needing_aws() -> None:
    found = commands()
    assert len(found) >= 15
    for command in found:
        tested = [p for p in EXERCISED if command.startswith(p)]
        real = [p for p in REAL_AWS if command.startswith(p)]
        assert tested or real, f"docs/DEPLOY.md command neither tested nor real-AWS: {command}"
        for prefix in tested:
            test_file, words = EXERCISED[prefix]
            assert words in (REPO / test_file).read_text(), (command, test_file, words)


def test_every_make_target_in_the_guide_exists() -> None:
    makefile = (REPO / "Makefile").read_text()
    for command in commands():
        if command.startswith("make "):
            target = command.split()[1]
            assert re.search(rf"^{re.escape(target)}:", makefile, re.M), target
