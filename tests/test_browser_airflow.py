"""The Airflow UI as operators use it: real `airflow standalone` with the `make airflow`
environment (local launcher, moto S3, the fake Gemini) and its metadata in PostgreSQL, as
production keeps it (`make airflow DB=postgres`), driven in the Debian chromium through
Playwright.

One standalone serves every test in this module: the `task_analysis` trigger form shows each
param with its title and description; a bad submission id is refused with the reason shown;
two valid triggers with the cap at 1 leave the second run queued (none dropped).

Set REPORT_SCREENSHOTS_DIR to save a screenshot of the form (the README shows it).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devtools import airflow_env as af
from devtools import demo, media
from devtools.fake_gemini import FakeGemini
from devtools.postgres import temporary_postgres

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
RECORDINGS, RESULTS = "ui-recordings", "ui-results"
DAG = "task_analysis"


@dataclass(frozen=True)
class Airflow:
    url: str

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}/api/v2/{path}", timeout=20) as response:
            return json.loads(response.read())

    def runs(self) -> dict[str, str]:
        """submission id -> state of its run."""
        runs = self.api(f"dags/{DAG}/dagRuns?limit=100")["dag_runs"]
        return {r["conf"].get("submission_id"): r["state"] for r in runs}


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Airflow]:
    root = tmp_path_factory.mktemp("airflow-ui")
    recording = media.make_screenshare(root / "screen.mp4", duration=8)
    port = af.free_port()
    # A slow model keeps the first run busy long enough to watch the second one queue.
    with (
        af.moto_s3(log_path=root / "moto.log") as s3_endpoint,
        FakeGemini(latency_s=300) as fake,
        temporary_postgres() as database_url,
    ):
        s3 = _s3(s3_endpoint)
        for bucket in (RECORDINGS, RESULTS):
            s3.create_bucket(Bucket=bucket)
        for sid in ("S-UI-1", "S-UI-2"):
            s3.upload_file(str(recording), RECORDINGS, f"tasks/{sid}/screen.mp4")
        env = demo.standalone_env(
            root / "home",
            port=port,
            s3_endpoint=s3_endpoint,
            gemini_url=fake.base_url,
            recordings_bucket=RECORDINGS,
            results_bucket=RESULTS,
            database_url=database_url,
            extra={"AIRFLOW_VAR_MAX_CONCURRENT_ANALYSES": "1"},
        )
        af.migrate(env)
        log = (root / "standalone.log").open("wb")
        process = subprocess.Popen(
            [af.AIRFLOW, "standalone"], env=env, cwd=af.REPO, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            # The pool goes in while standalone boots (the database is already migrated):
            # the first run that takes it is only triggered by the last test.
            af.ensure_pool(env)
            server = Airflow(f"http://localhost:{port}")
            _wait_for_dag(server, process, root / "standalone.log")
            yield server
        finally:
            af.stop_group(process)
            log.close()


def _s3(endpoint: str) -> Any:
    import boto3

    creds = af.MOTO_CREDENTIALS
    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
        region_name=creds["AWS_DEFAULT_REGION"],
    )  # fmt: skip


def _wait_for_dag(server: Airflow, process: subprocess.Popen, log: Path) -> None:
    """Until the API answers and the dag-processor has registered task_analysis, unpaused."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            if server.api(f"dags/{DAG}")["is_paused"] is False:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError("standalone did not serve task_analysis:\n" + log.read_text()[-3000:])


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def trigger_form(browser: Any, airflow: Airflow) -> tuple[Any, Any]:
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(60_000)  # two shared cores: the SPA can be slow to paint
    page.goto(f"{airflow.url}/dags/{DAG}")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    dialog.locator("#element_submission_id").wait_for()
    return page, dialog


def submit(dialog: Any, submission_id: str) -> None:
    dialog.locator("#element_submission_id").fill(submission_id)
    dialog.locator("#element_screenshare_uri").fill(
        f"s3://{RECORDINGS}/tasks/{submission_id}/screen.mp4"
    )
    dialog.get_by_role("button", name="Trigger").click()


def test_trigger_form_shows_every_param(browser: Any, airflow: Airflow) -> None:
    params = airflow.api(f"dags/{DAG}/details")["params"]
    assert set(params) >= {"submission_id", "screenshare_uri", "webcam_uri", "task_brief",
                           "rubric"}  # fmt: skip
    page, dialog = trigger_form(browser, airflow)
    text = dialog.inner_text()
    for name, param in params.items():
        schema = param.get("schema") or {}
        label = schema.get("title") or name
        description = param.get("description") or schema.get("description")
        assert label in text, name
        assert description and description in text, name
    if target := os.environ.get("REPORT_SCREENSHOTS_DIR"):
        dialog.screenshot(path=str(Path(target) / "airflow-trigger-form.png"))
    page.close()


def test_bad_submission_id_is_refused_with_the_reason(browser: Any, airflow: Airflow) -> None:
    page, dialog = trigger_form(browser, airflow)
    submit(dialog, "bad id/..")
    reason = dialog.get_by_text("Invalid input for param submission_id")
    reason.wait_for()
    shown = dialog.inner_text()
    # The schema rule that failed (pattern or the no-whitespace rule: jsonschema reports
    # whichever it checks first) and the offending value are shown.
    assert "Invalid input for param submission_id: 'bad id/..'" in shown, shown
    assert "Failed validating" in shown, shown
    assert "bad id/.." not in airflow.runs()
    page.close()


def test_valid_runs_queue_beyond_the_cap(browser: Any, airflow: Airflow) -> None:
    for submission_id in ("S-UI-1", "S-UI-2"):
        page, dialog = trigger_form(browser, airflow)
        submit(dialog, submission_id)
        page.get_by_text("Dag run has been successfully triggered").first.wait_for()
        page.close()
    # MAX_CONCURRENT_ANALYSES=1: the first runs (its container waits on the slow model),
    # the second waits queued.
    deadline = time.monotonic() + 120
    while (runs := airflow.runs()).get("S-UI-1") != "running" and time.monotonic() < deadline:
        time.sleep(2)
    assert runs == {"S-UI-1": "running", "S-UI-2": "queued"}
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(60_000)
    page.goto(f"{airflow.url}/dags/{DAG}/runs")
    page.get_by_text("queued").first.wait_for()
    page.close()
