"""`python -m evals.side JOB OUT`: run one side's product over prepared cases.

Started by the harness with `PYTHONPATH=<side's tree>/containers:<harness>` (evals.sides), so
every product import here is that side's code. JOB (JSON): the set file, the case ids and
their recordings, the config, what to run (`signals` or `model`), the model mode and
recordings directory, a work directory and the parallelism. OUT: {case id: result}.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from evals.config import Config
from evals.detect import run_signals
from evals.labels import load
from evals.model import run_model


def run(job: dict[str, Any]) -> dict[str, Any]:
    labelled = load(Path(job["set"]))
    by_id = {c.id: c for c in labelled.cases}
    config = Config.from_dict(job["config"])
    workdir = Path(job["workdir"])
    workdir.mkdir(parents=True, exist_ok=True)

    def one(item: tuple[str, str]) -> tuple[str, dict[str, Any]]:
        case_id, path = item
        case = by_id[case_id]
        if job["what"] == "signals":
            return case_id, run_signals(case, Path(path), config, workdir)
        return case_id, run_model(case, Path(path), config, workdir, mode=job["mode"],
                                  recordings=Path(job["recordings"]))  # fmt: skip

    with ThreadPoolExecutor(max_workers=max(1, int(job.get("jobs", 1)))) as pool:
        return dict(pool.map(one, job["cases"].items()))


def main(argv: list[str] | None = None) -> int:
    job_path, out_path = (argv or sys.argv[1:])[:2]
    results = run(json.loads(Path(job_path).read_text()))
    Path(out_path).write_text(json.dumps(results, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
