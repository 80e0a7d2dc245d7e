"""Model runs: the real container on one case, against one of four Gemini endpoints.

| mode | endpoint | measures the model? |
|---|---|---|
| `live` | the real API through the recording proxy (needs `GEMINI_API_KEY`); every answer is stored under `--recordings/<case>/` | yes |
| `replay` | the fake Gemini answering from those recordings, offline; a request never recorded fails its run | yes, when every request was recorded |
| `fake` | the fake Gemini answering from the case's labels (`devtools/label_answers.py`) | no: plumbing only (what is shown, parsed, merged, scored) |
| `record-fake` | the recording proxy in front of the label-answering fake (tests record/replay without a key) | no |

Runs inside a side's process (`evals.side`): `python -m proctor_video` / `task_analyzer` is
that side's code, with its config's `env` (models, resolution, segment length, ...).
"""  # noqa: E501

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from evals.config import Config
from evals.labels import Case

MODES = ("off", "fake", "replay", "live", "record-fake")
MEASURED = ("live", "replay")
REAL_API = "https://generativelanguage.googleapis.com"
FAKE_KEY = "local-fake-gemini-key-0000000000000000"
NOT_RECORDED = "not recorded"
LOCAL_BUDGET = {"GEMINI_RPM_BUDGET": "100000", "GEMINI_TPM_BUDGET": "1000000000"}


@contextlib.contextmanager
def endpoint(mode: str, case: Case, *, recordings: Path) -> Iterator[tuple[str, str]]:
    """(base URL, API key) for one case's run in `mode`."""
    from devtools.fake_gemini import FakeGemini
    from devtools.gemini_replay import GeminiRecorder, Store
    from evals.cases import fake_labels

    store = recordings / case.id
    if mode == "fake":
        with FakeGemini(answers="labels", labels=fake_labels(case)) as fake:
            yield fake.base_url, FAKE_KEY
    elif mode == "replay":
        with FakeGemini(answers="replay", replay_dir=str(store)) as fake:
            yield fake.base_url, FAKE_KEY
    elif mode == "record-fake":
        with (
            FakeGemini(answers="labels", labels=fake_labels(case)) as fake,
            GeminiRecorder(fake.base_url, Store(store)) as recorder,
        ):
            yield recorder.base_url, FAKE_KEY
    elif mode == "live":
        key = os.environ.get("GEMINI_API_KEY", "")
        if not key:
            raise RuntimeError("model mode live needs GEMINI_API_KEY")
        upstream = os.environ.get("GEMINI_UPSTREAM_URL", REAL_API)
        with GeminiRecorder(upstream, Store(store)) as recorder:
            yield recorder.base_url, key
    else:
        raise ValueError(f"model mode {mode!r}: one of {MODES[1:]}")


def run_model(
    case: Case, path: Path, config: Config, workdir: Path, *, mode: str, recordings: Path
) -> dict[str, Any]:
    """The container on one case; its result.json summarised (or the reason it failed)."""
    out_dir = workdir / case.id / f"model-{mode}"
    uri = f"file://{path}/" if path.is_dir() else f"file://{path}"
    started = time.monotonic()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI_", "AWS_"))}
    module = "proctor_video" if case.kind == "proctor_video" else "task_analyzer"
    try:
        with endpoint(mode, case, recordings=recordings) as (url, key):
            env = {
                **base,
                **config.env,
                "ANALYSIS_ID": case.id,
                "INPUT_URI": uri,
                "OUTPUT_URI": f"file://{out_dir}/",
                "GEMINI_BASE_URL": url,
                "GEMINI_API_KEY": key,
                "SCRATCH_DIR": str(workdir),
            }
            proc = subprocess.run(
                [sys.executable, "-m", module],
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=3600,
            )
    except (RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
        return {"error": f"{type(exc).__name__}: {exc}", "wall_s": 0.0}
    wall = round(time.monotonic() - started, 2)
    try:
        result = json.loads((out_dir / "result.json").read_text())
    except (OSError, ValueError):
        lines = (proc.stdout + proc.stderr).strip().splitlines()
        return {
            "error": f"exit {proc.returncode}: {lines[-1] if lines else 'no output'}",
            "wall_s": wall,
        }
    return summarise(result, wall)


def summarise(result: Mapping[str, Any], wall_s: float) -> dict[str, Any]:
    usage = result.get("usage") or {}
    report = result.get("report") or {}
    error = result.get("error")
    return {
        "status": result.get("status"),
        "error": error if result.get("status") not in ("complete", "partial") else None,
        "not_recorded": bool(error and NOT_RECORDED in str(error)),
        "events": report.get("events", []),
        "integrity": (report.get("integrity") or {}).get("level"),
        "rubric": report.get("rubric_scores"),
        "input_tokens": _total(usage, "input_tokens"),
        "output_tokens": _total(usage, "output_tokens"),
        "estimated_usd": usage.get("estimated_usd"),
        "wall_s": wall_s,
    }


def _total(usage: Mapping[str, Any], key: str) -> int:
    """Tokens over every model (usage is per model, with or without a total)."""
    if isinstance(usage.get(key), int | float):
        return int(usage[key])
    per_model = usage.get("per_model") or usage.get("models") or {}
    if isinstance(per_model, dict):
        return sum(int((m or {}).get(key) or 0) for m in per_model.values())
    return 0
