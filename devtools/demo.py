"""``make demo``: both DAGs end to end on local stand-ins, from a fresh clone.

1. starts a moto S3 server on a free port and creates a recordings and a results bucket;
2. generates the story's recordings with ffmpeg and espeak-ng (``devtools.story``: a
   screenshare with typing, a terminal error, an AI-assistant page, a large paste and idle
   minutes; a webcam session with a covered camera and a second voice) and uploads them the
   way TUS leaves them, one webcam chunk lost on the way;
3. starts the local fake Gemini answering from the same story, unless ``GEMINI_API_KEY`` is
   set (then the real API); the fake's answers say they are scripted;
4. runs ``task_analysis`` and ``proctor_video`` through ``airflow dags test`` in local
   launcher mode, with a throwaway Airflow home under ``.demo/``;
5. copies the outputs to ``.demo/results/``, prints a short summary and the two
   ``report.html`` paths; stops everything.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from devtools import airflow_env as af

DEMO_DIR = af.REPO / ".demo"
RECORDINGS_BUCKET = "demo-recordings"
RESULTS_BUCKET = "demo-results"
SUBMISSION_ID = "S-1001"
TASK_BRIEF = "Build a small REST API with one endpoint and a unit test."
# A structured rubric, as the backend sends it: each criterion scored on its own scale.
RUBRIC = [
    {"name": "Correctness", "description": "The endpoint returns the right data."},
    {"name": "Test coverage", "description": "Tests the endpoint, edge cases included."},
    {"name": "Clarity of commits", "description": "Small commits with clear messages."},
    {"name": "Use of documentation", "description": "Reads the docs before asking for help."},
]
# Short enough that every part of the story lands in its own segment; 240 s in total.
DEMO_SEGMENT_SECONDS = "30"


def _s3(endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, **_boto_credentials())


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": af.MOTO_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": af.MOTO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": af.MOTO_CREDENTIALS["AWS_DEFAULT_REGION"],
    }


def upload_recordings(endpoint: str, media_dir: Path, analysis_id: str) -> dict[str, str]:
    """Generate and upload the story's screenshare and chunked webcam session (one chunk lost
    on the way, as an unreliable upload would); return their URIs."""
    from devtools import media, story

    screen = media.make_scripted_screenshare(media_dir / "screen.mp4")
    webcam = media.make_scripted_webcam(media_dir / "webcam.webm")
    chunks = media.split_clusters(webcam, media_dir / "chunks")
    s3 = _s3(endpoint)
    for bucket in (RECORDINGS_BUCKET, RESULTS_BUCKET):
        s3.create_bucket(Bucket=bucket)
    screen_key = f"tasks/{analysis_id}/screenshare.mp4"
    s3.upload_file(str(screen), RECORDINGS_BUCKET, screen_key)
    for chunk in chunks:
        # Zero-padded like the TUS hook names them, so lexical order is time order.
        index = int(chunk.stem)
        if index in story.WEBCAM_LOST_CHUNKS:
            continue
        s3.upload_file(str(chunk), RECORDINGS_BUCKET, f"webcam/{analysis_id}/{index:06d}.webm")
    return {
        "screenshare_uri": f"s3://{RECORDINGS_BUCKET}/{screen_key}",
        "webcam_uri": f"s3://{RECORDINGS_BUCKET}/webcam/{analysis_id}/",
    }


def download_outputs(endpoint: str, kind: str, analysis_id: str, dest: Path) -> Path:
    s3 = _s3(endpoint)
    prefix = f"{kind}/{analysis_id}/"
    target = dest / kind / analysis_id
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=RESULTS_BUCKET, Prefix=prefix):
        for obj in page.get("Contents", []):
            path = target / obj["Key"][len(prefix) :]
            path.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(RESULTS_BUCKET, obj["Key"], str(path))
    return target


@contextmanager
def gemini(log_dir: Path) -> Iterator[str | None]:
    if os.environ.get("GEMINI_API_KEY"):
        print("GEMINI_API_KEY is set: using the real Gemini API (this spends tokens).")
        yield None
        return
    with af.fake_gemini(log_path=log_dir / "fake_gemini.log") as url:
        scripted_answers(url)
        print(
            f"GEMINI_API_KEY is not set: using the local fake Gemini at {url}, answering from "
            "the demo's script (devtools/story.py)."
        )
        yield url


def scripted_answers(url: str) -> None:
    """Make the fake answer from the story instead of synthesising random values."""
    request = urllib.request.Request(
        f"{url}/_fake/config",
        data=json.dumps({"answers": "demo"}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def describe(kind: str, result: Mapping[str, Any] | None) -> list[str]:
    """A few human lines about one result.json."""
    if result is None:
        return ["  no result.json"]
    coverage = result.get("coverage") or {}
    usage = result.get("usage") or {}
    status = result.get("status")
    lines = [
        f"  status: {status}" + (f" ({result.get('error')})" if result.get("error") else ""),
        f"  coverage: {coverage.get('segments_analysed')}/{coverage.get('segments_total')} "
        f"segments analysed, {coverage.get('seconds_analysed')} of "
        f"{coverage.get('duration_s')} s",
        f"  model usage: {usage.get('calls')} calls, {usage.get('input_tokens')} input / "
        f"{usage.get('output_tokens')} output tokens"
        + (
            f", estimated ${usage['estimated_usd']:.4f} at list prices"
            if isinstance(usage.get("estimated_usd"), int | float)
            else ""
        ),
    ]
    report = result.get("report") if isinstance(result.get("report"), dict) else {}
    if report.get("summary"):
        lines.append(f"  summary: {str(report['summary'])[:160]}")
    if kind == "proctor_video":
        level = (report.get("integrity") or {}).get("level")
        lines.append(f"  integrity level: {level}")
        for event in (report.get("events") or [])[:6]:
            lines.append(
                f"  event {event.get('type')}: {event.get('start_s')}-{event.get('end_s')} s "
                f"({event.get('source')}, confidence {event.get('confidence')})"
            )
    else:
        flags = report.get("integrity_flags") or []
        scores = report.get("rubric_scores") or []
        lines.append(f"  rubric scores: {len(scores)}; integrity flags: {len(flags)}")
    return lines


def run(keep_airflow_home: bool = False) -> int:
    started = time.monotonic()
    if DEMO_DIR.exists():
        shutil.rmtree(DEMO_DIR)
    logs = DEMO_DIR / "logs"
    logs.mkdir(parents=True)
    results_dir = DEMO_DIR / "results"
    outcomes: list[af.DagTestOutcome] = []
    with (
        af.moto_s3(log_path=logs / "moto.log") as s3_endpoint,
        gemini(logs) as gemini_url,
        tempfile.TemporaryDirectory(prefix="demo-media-") as media_dir,
    ):
        print(f"moto S3 at {s3_endpoint}; generating and uploading sample recordings ...")
        uris = upload_recordings(s3_endpoint, Path(media_dir), SUBMISSION_ID)
        env = af.airflow_env(
            DEMO_DIR / "airflow",
            s3_endpoint=s3_endpoint,
            recordings_bucket=RECORDINGS_BUCKET,
            results_bucket=RESULTS_BUCKET,
            gemini_base_url=gemini_url,
            extra={"SEGMENT_SECONDS": DEMO_SEGMENT_SECONDS},
        )
        print("preparing a throwaway Airflow (SQLite) under .demo/airflow ...")
        af.migrate(env)
        af.ensure_pool(env)
        runs = [
            (
                "task_analysis",
                {
                    # No webcam_uri here: with one, task_analysis triggers the proctor_video
                    # run itself, but `airflow dags test` has no scheduler to execute a
                    # triggered run, so the demo runs proctor_video as its own DAG below
                    # (`make airflow` shows the one-trigger path).
                    "submission_id": SUBMISSION_ID,
                    "screenshare_uri": uris["screenshare_uri"],
                    "task_brief": TASK_BRIEF,
                    "rubric": RUBRIC,
                },
            ),
            ("proctor_video", {"attempt_id": SUBMISSION_ID, "webcam_uri": uris["webcam_uri"]}),
        ]
        for dag_id, conf in runs:
            print(f"airflow dags test {dag_id} (local launcher) ...")
            outcome = af.dags_test(dag_id, conf, env)
            (logs / f"{dag_id}.log").write_text(outcome.output, encoding="utf-8")
            print(f"  -> {outcome.state} (full log: .demo/logs/{dag_id}.log)")
            outcomes.append(outcome)
        for kind, _conf in runs:
            download_outputs(s3_endpoint, kind, SUBMISSION_ID, results_dir)
    if not keep_airflow_home:
        shutil.rmtree(DEMO_DIR / "airflow", ignore_errors=True)
    print(_summary(results_dir, outcomes, time.monotonic() - started))
    return 0 if all(o.succeeded for o in outcomes) else 1


def _summary(results_dir: Path, outcomes: list[af.DagTestOutcome], elapsed: float) -> str:
    lines = ["", f"Demo finished in {elapsed:.0f}s. Reports:"]
    for outcome in outcomes:
        folder = results_dir / outcome.dag_id / SUBMISSION_ID
        result_path = folder / "result.json"
        result = json.loads(result_path.read_text()) if result_path.is_file() else None
        shown = result_path.relative_to(af.REPO) if result_path.is_file() else folder
        lines.append(f"- {outcome.dag_id} [{outcome.state}]: {shown}")
        lines.extend(describe(outcome.dag_id, result))
        if outcome.dag_id == "proctor_video" and (folder / "video.webm").is_file():
            lines.append(f"  stitched video: {(folder / 'video.webm').relative_to(af.REPO)}")
    lines += ["", "Open the reports in a browser:"]
    for outcome in outcomes:
        report = results_dir / outcome.dag_id / SUBMISSION_ID / "report.html"
        lines.append(f"  {report if report.is_file() else f'(no report.html) {report}'}")
    return "\n".join(lines)


def standalone_env(
    home: Path,
    *,
    port: int,
    s3_endpoint: str,
    gemini_url: str | None,
    recordings_bucket: str = RECORDINGS_BUCKET,
    results_bucket: str = RESULTS_BUCKET,
    database_url: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment `make airflow` runs `airflow standalone` with (the UI tests use it too):
    local launcher, every user an admin, DAGs unpaused, SQLite unless `database_url`."""
    settings = {
        "SEGMENT_SECONDS": DEMO_SEGMENT_SECONDS,
        "AIRFLOW__API__PORT": str(port),
        # The task runners reach the API server here; it must follow a non-default port.
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
    }
    if database_url:
        from devtools.postgres import airflow_database_env

        settings.update(airflow_database_env(database_url))
    return af.airflow_env(
        home,
        s3_endpoint=s3_endpoint,
        recordings_bucket=recordings_bucket,
        results_bucket=results_bucket,
        gemini_base_url=gemini_url,
        extra={**settings, **(extra or {})},
    )


def standalone(*, postgres: bool = False) -> int:
    """``make airflow``: the UI on local stand-ins, until Ctrl-C (``DB=postgres``: with its
    metadata in a throwaway PostgreSQL, as production Airflow keeps it)."""
    home = af.REPO / ".airflow" / ("standalone-postgres" if postgres else "standalone")
    logs = af.REPO / ".airflow" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    port = int(os.environ.get("AIRFLOW_PORT", "8080"))
    with (
        af.moto_s3(log_path=logs / "moto.log") as s3_endpoint,
        gemini(logs) as gemini_url,
        tempfile.TemporaryDirectory(prefix="airflow-media-") as media_dir,
        _metadata_database(postgres) as database_url,
    ):
        uris = upload_recordings(s3_endpoint, Path(media_dir), SUBMISSION_ID)
        env = standalone_env(
            home, port=port, s3_endpoint=s3_endpoint, gemini_url=gemini_url,
            database_url=database_url,
        )  # fmt: skip
        af.migrate(env)
        print(af.ensure_pool(env))
        print(f"Airflow UI: http://localhost:{port}  (local launcher, moto S3 at {s3_endpoint})")
        print(f"Metadata database: {database_url or 'SQLite under ' + str(home)}")
        print("Trigger task_analysis with, for example:")
        print(json.dumps({"submission_id": SUBMISSION_ID, **uris}, indent=2))
        try:
            return subprocess.call([af.AIRFLOW, "standalone"], env=env, cwd=af.REPO)
        except KeyboardInterrupt:
            return 0


@contextmanager
def _metadata_database(postgres: bool) -> Iterator[str | None]:
    if not postgres:
        yield None
        return
    from devtools.postgres import temporary_postgres

    with temporary_postgres() as url:
        yield url


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__)
    parser.add_argument("--keep-airflow-home", action="store_true")
    parser.add_argument("--standalone", action="store_true", help="run the UI (make airflow)")
    parser.add_argument(
        "--postgres", action="store_true", help="with --standalone: metadata in PostgreSQL"
    )
    args = parser.parse_args(argv)
    if args.standalone:
        sys.exit(standalone(postgres=args.postgres))
    sys.exit(run(keep_airflow_home=args.keep_airflow_home))


if __name__ == "__main__":
    main()
