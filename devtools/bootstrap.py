"""``make bootstrap``: the Terraform state bucket of a new account, and ``terraform/backend.hcl``.

Terraform keeps this pipeline's state in S3 with S3-native locking (``use_lockfile``: a
lock object beside the state, no DynamoDB table), and the bucket must exist before the first
``terraform init``. This creates it once, idempotently, as a state bucket should be:
versioned (every state kept), public access blocked, objects owned by the bucket owner,
encrypted at rest (SSE-KMS with ``--kms-key-id``, else SSE-S3), and TLS-only by policy. It
then writes the backend configuration ``make plan`` passes to ``terraform init``.

Needs Python and boto3 only (the ops virtualenv, ``make ops``), and the caller's AWS
credentials with s3:CreateBucket and s3:Put*Configuration/Policy on that bucket.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

STATE_KEY = "analysis-pipeline/terraform.tfstate"


def tls_only_policy(bucket: str) -> dict[str, Any]:
    arn = f"arn:aws:s3:::{bucket}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [arn, f"{arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


def ensure_state_bucket(s3: Any, bucket: str, *, region: str, kms_key_id: str | None) -> str:
    """Create (or bring into shape) the state bucket; returns what it did."""
    try:
        create: dict[str, Any] = {"Bucket": bucket, "ObjectOwnership": "BucketOwnerEnforced"}
        if region != "us-east-1":  # us-east-1 refuses an explicit LocationConstraint
            create["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**create)
        done = "created"
    except s3.exceptions.BucketAlreadyOwnedByYou:
        done = "already there (yours); settings re-applied"
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    rule: dict[str, Any] = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": kms_key_id}
    if kms_key_id is None:
        rule = {"SSEAlgorithm": "AES256"}
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": rule, "BucketKeyEnabled": True}]
        },
    )
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(tls_only_policy(bucket)))
    return done


def backend_hcl(bucket: str, *, region: str, key: str, kms_key_id: str | None) -> str:
    lines = [
        "# Written by `make bootstrap` (devtools/bootstrap.py); `make plan` passes it to",
        "# terraform init -backend-config. Not committed.",
        f'bucket       = "{bucket}"',
        f'key          = "{key}"',
        f'region       = "{region}"',
        "encrypt      = true",
        "use_lockfile = true # S3-native locking (Terraform >= 1.10)",
    ]
    if kms_key_id:
        lines.append(f'kms_key_id   = "{kms_key_id}"')
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bucket", required=True, help="globally unique state bucket name")
    parser.add_argument("--region", required=True)
    parser.add_argument("--key", default=STATE_KEY, help="state object key")
    parser.add_argument("--kms-key-id", default=None, help="KMS key ARN for SSE-KMS")
    parser.add_argument("--backend-config", type=Path, default=Path("terraform/backend.hcl"))
    args = parser.parse_args(argv)

    import boto3

    s3 = boto3.client("s3", region_name=args.region)
    done = ensure_state_bucket(s3, args.bucket, region=args.region, kms_key_id=args.kms_key_id)
    config = backend_hcl(args.bucket, region=args.region, key=args.key, kms_key_id=args.kms_key_id)
    args.backend_config.write_text(config)
    print(f"state bucket s3://{args.bucket}: {done}")
    print(f"wrote {args.backend_config}: terraform init -backend-config={args.backend_config}")


if __name__ == "__main__":
    main()
