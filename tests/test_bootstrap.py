"""`make bootstrap` against a moto S3 server: the state bucket as a state bucket should be,
idempotent, and a real `terraform init` + `apply` that stores its state there with S3-native
locking through the backend configuration it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from devtools.airflow_env import MOTO_CREDENTIALS, moto_s3

REPO = Path(__file__).resolve().parents[1]
BUCKET = "acme-terraform-state"


def bootstrap(endpoint: str, backend: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **MOTO_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}
    argv = [sys.executable, "-m", "devtools.bootstrap", "--bucket", BUCKET, "--region"]
    argv += ["eu-west-1", "--backend-config", str(backend), *extra]
    return subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.terraform
def test_bootstrap_makes_a_state_bucket_terraform_can_lock(tmp_path: Path) -> None:
    backend = tmp_path / "backend.hcl"
    with moto_s3(log_path=tmp_path / "moto.log") as endpoint:
        first = bootstrap(endpoint, backend)
        assert first.returncode == 0, first.stderr
        assert "created" in first.stdout
        again = bootstrap(endpoint, backend)  # idempotent: a second run changes nothing
        assert again.returncode == 0 and "already there" in again.stdout, again.stderr

        s3 = _s3(endpoint)
        assert s3.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"
        block = s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
        assert all(block.values()) and len(block) == 4
        rules = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]
        assert rules["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        policy = json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])
        assert policy["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        assert s3.get_bucket_location(Bucket=BUCKET)["LocationConstraint"] == "eu-west-1"
        written = backend.read_text()
        assert f'bucket       = "{BUCKET}"' in written and "use_lockfile = true" in written

        # moto does not evaluate aws:SecureTransport: its Deny then refuses every object
        # request, HTTPS included. Real S3 admits HTTPS (Terraform's only transport).
        s3.delete_bucket_policy(Bucket=BUCKET)
        state = _terraform_apply_with(backend, endpoint, tmp_path / "root")
        assert state["resources"][0]["type"] == "terraform_data"
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
        assert keys == ["analysis-pipeline/terraform.tfstate"]
        # The lock object was taken and released around init and apply (versioning keeps
        # its history): S3-native locking, no DynamoDB table.
        history = s3.list_object_versions(Bucket=BUCKET, Prefix="analysis-pipeline/")
        locks = [v["Key"] for v in history.get("DeleteMarkers", [])]
        assert "analysis-pipeline/terraform.tfstate.tflock" in locks


def _s3(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="eu-west-1",
        aws_access_key_id=MOTO_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=MOTO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def _terraform_apply_with(backend: Path, endpoint: str, root: Path) -> dict:
    """A one-resource root on the backend `make bootstrap` configured (plus only what points
    the S3 backend at the local moto server instead of AWS)."""
    root.mkdir()
    (root / "main.tf").write_text(
        'terraform {\n  backend "s3" {}\n}\n\nresource "terraform_data" "probe" {\n'
        '  input = "state lives in the bootstrapped bucket"\n}\n'
    )
    (root / "moto.hcl").write_text(
        f'endpoints = {{ s3 = "{endpoint}" }}\nuse_path_style = true\n'
        "skip_credentials_validation = true\nskip_requesting_account_id = true\n"
        "skip_metadata_api_check = true\nskip_region_validation = true\n"
    )
    env = {**os.environ, **MOTO_CREDENTIALS, "TF_IN_AUTOMATION": "1"}
    env.pop("AWS_ENDPOINT_URL", None)
    init = ["terraform", "init", "-input=false", f"-backend-config={backend}"]
    init.append("-backend-config=moto.hcl")
    for argv in (init, ["terraform", "apply", "-input=false", "-auto-approve"]):
        done = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    body = _s3(endpoint).get_object(Bucket=BUCKET, Key="analysis-pipeline/terraform.tfstate")[
        "Body"
    ]
    return json.loads(body.read())
