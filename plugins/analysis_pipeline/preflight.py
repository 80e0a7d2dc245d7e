"""Preflight: what Airflow sees, compared with what Terraform wrote and with the pool.

``python -m analysis_pipeline.preflight --terraform-output tf.json`` (``make preflight`` runs
``terraform output -json`` for it) prints every setting the DAGs read as Airflow sees it and
as Terraform's output ``airflow_settings`` says it should be, then the ``fargate_vcpu``
pool, and exits 1 on any difference (0 when all agree, 2 when it cannot look).

Where "what Airflow sees" comes from (``--source``):
- ``airflow`` (on an Airflow host, the default where Airflow is installed): Airflow's own
  secrets backends, exactly as a parse reads them (``config.raw_settings``), plus every
  environment override (``NAME`` / ``AIRFLOW_VAR_NAME``), each reported as a difference;
- ``ssm`` (an operator's machine, the ops virtualenv): the SSM parameter the
  ``SystemsManagerParameterStoreBackend`` serves
  (``/airflow/variables/analysis_pipeline_settings``).

The pool (``--pool``): ``db`` (an Airflow host: its metadata database), ``api`` (Airflow's
REST API, ``--airflow-url`` and a token in ``AIRFLOW_API_TOKEN``), or ``skip`` (named in
the output; the rest is still compared).

Nothing here imports Airflow unless asked to: the ops virtualenv has only boto3.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis_pipeline import config

EXIT_OK, EXIT_DIFFERENT, EXIT_CANNOT_LOOK = 0, 1, 2


@dataclass(frozen=True)
class Row:
    name: str
    airflow: str | None
    terraform: str | None
    note: str = ""

    @property
    def differs(self) -> bool:
        return self.airflow != self.terraform or bool(self.note)


def terraform_settings(output: Mapping[str, Any]) -> tuple[dict[str, str], str]:
    """(fields, parameter name) from ``terraform output -json``."""
    try:
        fields = output["airflow_settings"]["value"]
        parameter = output["airflow_settings_parameter"]["value"]
    except (KeyError, TypeError):
        raise SystemExit(
            "terraform output has no airflow_settings / airflow_settings_parameter: "
            "apply the current terraform/ first"
        ) from None
    return {k: str(v) for k, v in fields.items()}, str(parameter)


def from_ssm(parameter: str, *, region: str | None) -> dict[str, str]:
    import boto3

    client = boto3.client("ssm", region_name=region)
    try:
        raw = client.get_parameter(Name=parameter, WithDecryption=True)["Parameter"]["Value"]
    except client.exceptions.ParameterNotFound:
        return {}
    document = json.loads(raw)
    return {k: str(v) for k, v in document.items()}


def from_airflow() -> tuple[dict[str, str], dict[str, str]]:
    """(what a parse reads, the environment overrides among it)."""
    document = config.settings_document() or {}
    overrides = config.overrides()
    return {k: str(v) for k, v in {**document, **overrides}.items()}, overrides


def compare(
    seen: Mapping[str, str], wanted: Mapping[str, str], overrides: Mapping[str, str]
) -> list[Row]:
    rows = []
    for name in sorted(set(config.FIELDS) | set(wanted) | set(seen)):
        note = "overridden in this process' environment" if name in overrides else ""
        if name not in config.FIELDS:
            note = "not a setting the DAGs read"
        rows.append(Row(name, seen.get(name), wanted.get(name), note))
    return rows


@dataclass(frozen=True)
class PoolSeen:
    slots: int | None
    include_deferred: bool | None
    source: str


def pool_from_db() -> PoolSeen:
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session(scoped=False) as session:
        pool = session.scalar(select(Pool).where(Pool.pool == config.POOL_NAME))
        if pool is None:
            return PoolSeen(None, None, "metadata database")
        return PoolSeen(int(pool.slots), bool(pool.include_deferred), "metadata database")


def pool_from_api(url: str, token: str) -> PoolSeen:
    request = urllib.request.Request(
        f"{url.rstrip('/')}/api/v2/pools/{config.POOL_NAME}",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            body = json.load(answer)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return PoolSeen(None, None, "REST API")
        raise
    return PoolSeen(int(body["slots"]), bool(body.get("include_deferred")), "REST API")


def pool_rows(pool: PoolSeen, wanted_slots: str | None) -> list[Row]:
    if pool.slots is None:
        return [Row(f"pool {config.POOL_NAME}", None, wanted_slots, "missing")]
    rows = [Row(f"pool {config.POOL_NAME} slots", str(pool.slots), wanted_slots)]
    if not pool.include_deferred:
        rows.append(Row(f"pool {config.POOL_NAME} include_deferred", "false", "true"))
    return rows


def render(rows: list[Row]) -> str:
    width = max(len(r.name) for r in rows)
    lines = [f"{'setting':<{width}}  {'airflow sees':<40}  terraform", "-" * (width + 60)]
    for row in rows:
        mark = "!=" if row.differs else "  "
        airflow = "(missing)" if row.airflow is None else row.airflow
        terraform = "(missing)" if row.terraform is None else row.terraform
        note = f"  <- {row.note}" if row.note else ""
        lines.append(f"{row.name:<{width}}  {airflow[:40]:<40}{mark}{terraform}{note}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--terraform-output", type=Path, required=True)
    parser.add_argument("--source", choices=("airflow", "ssm"), default=None)
    parser.add_argument("--pool", choices=("db", "api", "skip"), required=True)
    parser.add_argument("--airflow-url", default=os.environ.get("AIRFLOW_API_URL"))
    parser.add_argument("--region", default=os.environ.get("AWS_REGION"))
    args = parser.parse_args(argv)

    wanted, parameter = terraform_settings(json.loads(args.terraform_output.read_text()))
    source = args.source or ("airflow" if _airflow_installed() else "ssm")
    overrides: dict[str, str] = {}
    try:
        if source == "airflow":
            seen, overrides = from_airflow()
        else:
            seen = from_ssm(parameter, region=args.region)
    except Exception as exc:
        print(f"cannot read the settings ({source}): {type(exc).__name__}: {exc}")
        return EXIT_CANNOT_LOOK
    rows = compare(seen, wanted, overrides)
    pool_note = ""
    try:
        if args.pool == "db":
            rows += pool_rows(pool_from_db(), wanted.get(config.POOL_VCPU_LEVER))
        elif args.pool == "api":
            token = os.environ.get("AIRFLOW_API_TOKEN", "")
            if not args.airflow_url or not token:
                print("--pool api needs --airflow-url (AIRFLOW_API_URL) and AIRFLOW_API_TOKEN")
                return EXIT_CANNOT_LOOK
            rows += pool_rows(
                pool_from_api(args.airflow_url, token), wanted.get(config.POOL_VCPU_LEVER)
            )
        else:
            pool_note = f"pool {config.POOL_NAME}: not checked (--pool skip)"
    except Exception as exc:
        print(f"cannot read the pool ({args.pool}): {type(exc).__name__}: {exc}")
        return EXIT_CANNOT_LOOK
    print(f"settings as Airflow sees them ({source}) against terraform output ({parameter}):")
    print(render(rows))
    if pool_note:
        print(pool_note)
    different = [r.name for r in rows if r.differs]
    if different:
        print(f"{len(different)} difference(s): {', '.join(different)}")
        return EXIT_DIFFERENT
    print("Airflow and Terraform agree.")
    return EXIT_OK


def _airflow_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("airflow") is not None


if __name__ == "__main__":
    sys.exit(main())
