"""The backend contract as JSON Schemas (draft 2020-12), shipped in this package:

- `task_analysis.conf` / `proctor_video.conf`: what a trigger's `conf` may hold. GENERATED
  from the DAGs' Params (`conf_schema`), so the file and the DAGs cannot drift: a test
  regenerates them and compares. The URI patterns depend on the deployment's
  `ALLOWED_INPUT_PREFIXES`; the files use the default prefix, and a running Airflow serves
  its own (`GET /api/v2/dags/<dag_id>/details`, `params`).
- `callback`: the body of the signed result callback (analysis_pipeline.callback).
- `result`: `result.json`, as both containers write it.

    python -m analysis_pipeline.schemas          # rewrite the two generated conf schemas
    python -m analysis_pipeline.schemas --check  # exit 1 if they differ from the DAGs
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from analysis_pipeline.config import DEFAULT_ALLOWED_INPUT_PREFIXES, Kind

DRAFT = "https://json-schema.org/draft/2020-12/schema"
BASE_ID = "https://schemas.analysis-pipeline.example/"
NAMES = ("task_analysis.conf", "proctor_video.conf", "callback", "result")
KINDS: tuple[Kind, ...] = ("task_analysis", "proctor_video")


@cache
def load_schema(name: str) -> dict[str, Any]:
    """A shipped schema by name (see NAMES)."""
    if name not in NAMES:
        raise KeyError(f"no schema {name!r}; known: {', '.join(NAMES)}")
    text = resources.files(__package__).joinpath(f"{name}.schema.json").read_text("utf-8")
    return json.loads(text)


def conf_schema(kind: Kind, *, prefixes: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The trigger conf's schema, made from the Params the DAG itself is built with."""
    from airflow.sdk.definitions.param import NOTSET

    from analysis_pipeline.params import proctor_video_params, task_analysis_params

    prefixes = prefixes or tuple(
        p.strip() for p in DEFAULT_ALLOWED_INPUT_PREFIXES.split(",") if p.strip()
    )
    params = (task_analysis_params if kind == "task_analysis" else proctor_video_params)(prefixes)
    properties: dict[str, Any] = {}
    required = []
    for name, param in params.items():
        schema = dict(param.schema)
        if param.description:
            schema["description"] = param.description
        if param.value is NOTSET:
            required.append(name)
        else:
            schema["default"] = param.value
        properties[name] = schema
    return {
        "$schema": DRAFT,
        "$id": f"{BASE_ID}{kind}.conf.schema.json",
        "title": f"{kind} trigger conf",
        "description": (
            f"The conf of a {kind} DAG run (POST /api/v2/dags/{kind}/dagRuns). Generated "
            "from the DAG's Params; URI patterns for the default ALLOWED_INPUT_PREFIXES. "
            "Keys not listed are ignored."
        ),
        "type": "object",
        "required": required,
        "properties": properties,
    }


def _path(name: str) -> Path:
    return Path(__file__).with_name(f"{name}.schema.json")


def _dump(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare, exit 1 if stale")
    args = parser.parse_args(argv)
    stale = []
    for kind in KINDS:
        text = _dump(conf_schema(kind))
        path = _path(f"{kind}.conf")
        if args.check:
            if not path.is_file() or path.read_text("utf-8") != text:
                stale.append(path.name)
        else:
            path.write_text(text, "utf-8")
            print(f"wrote {path}")
    if stale:
        print(f"stale (run python -m analysis_pipeline.schemas): {', '.join(stale)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
