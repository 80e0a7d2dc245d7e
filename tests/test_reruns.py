"""Reruns on purpose and identities that cannot collide (fast, local storage): what the
launch reuses, which result is this run's own, where a task's webcam goes, run ids. The
same in real Airflow: test_backend_contract.py."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from analysis_pipeline.contract import container_env
from analysis_pipeline.launch.completion import own_result
from analysis_pipeline.launch.prior import reusable_result
from analysis_pipeline.launch.stopping import analysis_key, analysis_started_by
from analysis_pipeline.params import validate_request
from analysis_pipeline.proctoring import proctoring_run_id


@pytest.fixture
def recording(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    rec = tmp_path / "rec" / "S-1.mp4"
    rec.parent.mkdir(parents=True)
    rec.write_bytes(b"recording")
    monkeypatch.setenv("ANALYSIS_LAUNCHER", "local")  # settings from the environment
    monkeypatch.setenv("ALLOWED_INPUT_PREFIXES", f"file://{tmp_path}/rec/")
    monkeypatch.setenv("RESULTS_URI", f"file://{tmp_path}/out/")
    return rec


def write(uri: str, name: str, result: dict[str, Any]) -> None:
    path = Path(uri.removeprefix("file://")) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))


def complete(request: Any, **extra: Any) -> dict[str, Any]:
    from analysis_pipeline.identity import input_identity

    identity = input_identity(request.input_uri)
    return {"status": "complete", "input": {"identity": identity},
            "started_at": datetime.now(UTC).isoformat(), **extra}  # fmt: skip


def test_a_rerun_reuses_only_what_it_made_itself(recording: Path) -> None:
    conf = {"submission_id": "S-1", "screenshare_uri": recording.as_uri()}
    plain = validate_request("task_analysis", conf)
    rerun = validate_request("task_analysis", {**conf, "rerun": True})
    out = plain.output_uri()
    write(out, "result.json", complete(plain))
    assert reusable_result(plain, out, run_id="r1") is not None  # the default: never pay twice
    assert reusable_result(rerun, out, run_id="r2") is None  # on purpose: analyse again
    write(out, "result.json", complete(plain, rerun_id="r2"))
    assert reusable_result(rerun, out, run_id="r2") is not None  # its own retry reuses
    # The container of a rerun is told so (its checkpoints then count only for this run).
    environ = dict(os.environ)
    assert container_env(rerun, environ=environ, run_id="r2")["RERUN_ID"] == "r2"
    assert "RERUN_ID" not in container_env(plain, environ=environ, run_id="r1")


def test_this_runs_own_result_is_found_when_a_better_one_stays_current(tmp_path: Path) -> None:
    out = f"file://{tmp_path}/out/"
    launched = datetime.now(UTC)
    old = (launched - timedelta(days=2)).isoformat()
    write(out, "result.json", {"status": "complete", "started_at": old})
    write(out, "result.failed-20261201T000000Z.json", {"status": "failed", "started_at": old})
    new = {"status": "partial", "started_at": launched.isoformat()}
    write(out, "result.partial-20261207T120000Z.json", new)
    uri, result = own_result(out, launched)
    assert uri == out + "result.partial-20261207T120000Z.json" and result == new
    assert own_result(f"file://{tmp_path}/nothing/", launched) == (None, None)


def test_a_tasks_webcam_is_its_own_analysis_apart_from_any_test_attempt(
    recording: Path, tmp_path: Path
) -> None:
    webcam = recording.parent / "webcam"
    webcam.mkdir()
    conf = {"attempt_id": "S-1", "webcam_uri": webcam.as_uri() + "/"}
    attempt = validate_request("proctor_video", conf)
    task_webcam = validate_request("proctor_video", {**conf, "source": "submission"})
    assert attempt.output_uri() == f"file://{tmp_path}/out/proctor_video/S-1/"
    assert task_webcam.output_uri() == f"file://{tmp_path}/out/task_analysis/S-1/webcam/"
    assert (attempt.key, task_webcam.key) == ("S-1", "submission:S-1")
    # ECS finds (reattaches, stops) containers by startedBy: never the other one's.
    assert analysis_started_by("proctor_video", attempt.key) != analysis_started_by(
        "proctor_video", task_webcam.key
    )
    assert analysis_key("proctor_video", {**conf, "source": "submission"}) == task_webcam.key
    assert analysis_key("proctor_video", conf) == attempt.key


def test_run_ids_of_a_tasks_proctoring_cannot_be_an_attempts() -> None:
    assert proctoring_run_id("S-1") == "submission:S-1"
    assert proctoring_run_id("S-1", rerun=True, run_id="submission:S-1:rerun:2") == (
        "submission:S-1:rerun:submission:S-1:rerun:2"
    )
    # ':' is in no id: an attempt's run named by its id (or `attempt:<id>`) never matches.
    import re

    from analysis_pipeline.params import ID_PATTERN

    assert not re.fullmatch(ID_PATTERN, proctoring_run_id("S-1"))
