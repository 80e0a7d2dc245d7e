"""The demo's story end to end, and its report.html in a real headless Chromium.

Both containers run as processes on recordings generated from `devtools.story` (typing, a
terminal error, an AI-assistant page, a large paste, idle minutes; a covered camera, a lost
chunk, a second voice made with espeak-ng), against the local fake Gemini answering from the
same story. The tests check what the reports say, then open each report.html in the Debian
chromium (driven by Playwright, no browser download): no console errors, one timeline mark
per event, and a click on an event seeks the stitched video.

Set REPORT_SCREENSHOTS_DIR to also save a screenshot of each page (docs/ holds the ones the
README shows).
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import ContainerRun, MotoS3, run_container

from devtools import media, story
from devtools.fake_gemini import FakeGemini

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
FAKE_KEY = "fake-key-for-the-local-fake-gemini-0000"


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Run both containers once on the story's recordings; their output folders."""
    root = tmp_path_factory.mktemp("story")
    screen = media.make_scripted_screenshare(root / "screen.mp4")
    webcam = media.make_scripted_webcam(root / "webcam.webm")
    uploaded = root / "uploaded"
    uploaded.mkdir()
    for chunk in media.split_clusters(webcam, root / "chunks"):
        if int(chunk.stem) not in story.WEBCAM_LOST_CHUNKS:
            shutil.copy(chunk, uploaded / f"{int(chunk.stem):06d}.webm")
    context = {"task_brief": "Build a small REST API with one endpoint and a unit test.",
               "rubric": [s["criterion"] for s in story.TASK_REPORT["rubric_scores"]]}  # fmt: skip
    runs = {
        "task": ("task_analyzer", screen.as_uri()),
        "proctor": ("proctor_video", uploaded.as_uri() + "/"),
    }
    folders = {name: root / f"out-{name}" for name in runs}
    with FakeGemini(answers="demo") as fake:

        def run(name: str) -> ContainerRun:
            module, input_uri = runs[name]
            env = {
                "ANALYSIS_ID": "S-1001",
                "INPUT_URI": input_uri,
                "OUTPUT_URI": folders[name].as_uri() + "/",
                "ANALYSIS_CONTEXT": json.dumps(context),
                "GEMINI_API_KEY": FAKE_KEY,
                "GEMINI_BASE_URL": fake.base_url,
                "SEGMENT_SECONDS": "30",
            }
            return run_container(module, env)

        # The two containers are independent (as the two DAGs' launches are): run them at
        # once, each on its own core.
        with ThreadPoolExecutor(max_workers=len(runs)) as pool:
            done = list(pool.map(run, runs))
    for finished in done:
        assert finished.code == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    return folders


def load(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "result.json").read_text())


def near(value: float, target: float, slack: float = 1.5) -> bool:
    return abs(value - target) <= slack


# ---------------------------------------------------------------------- what the reports say
def test_task_report_tells_the_story(outputs: dict[str, Path]) -> None:
    result = load(outputs["task"])
    assert result["status"] == "complete", result["error"]
    report = result["report"]
    assert report["summary"].startswith(story.FAKE_LABEL)
    # Every scripted event comes back on the recording clock, from the clip it fell in.
    got = {(e["kind"], e["at_s"]) for e in report["notable_events"]}
    for event in story.TASK_EVENTS:
        assert any(k == event["kind"] and near(t, event["at_s"]) for k, t in got), event
    # The idle minutes were found by ffmpeg (not sent to the model) and are in the report.
    (idle,) = report["idle_ranges"]
    assert idle["start_s"] <= story.TASK_IDLE[0][0] + 5 and idle["end_s"] >= 200
    assert {t["category"] for t in report["tools_used"]} >= {"editor", "terminal", "ai_assistant"}
    assert [f["type"] for f in report["integrity_flags"]] == [
        "ai_assistance",
        "external_code_paste",
    ]
    assert result["usage"]["estimated_usd"] > 0
    html = (outputs["task"] / "report.html").read_text()
    for text in (story.FAKE_LABEL, "Use of documentation", "pytest fails: KeyError",
                 "external code paste", "idle: a still, silent screen is not sent"):  # fmt: skip
        assert text in html, text


def test_proctor_report_tells_the_story(outputs: dict[str, Path]) -> None:
    result = load(outputs["proctor"])
    assert result["status"] == "complete", result["error"]
    report = result["report"]
    assert report["summary"].startswith(story.FAKE_LABEL)
    assert report["integrity"]["level"] == "high"
    events = {e["type"]: e for e in report["events"]}
    covered, gap, voice = events["camera_covered"], events["recording_gap"], events["other_voice"]
    assert near(covered["start_s"], story.WEBCAM_COVERED[0])
    assert near(covered["end_s"], story.WEBCAM_COVERED[1])
    assert "signal" in covered["evidence"].get("sources", [covered["source"]])
    lost = story.WEBCAM_LOST_CHUNKS[0] * story.WEBCAM_CHUNK_S
    assert near(gap["start_s"], lost) and near(gap["end_s"], lost + story.WEBCAM_CHUNK_S)
    assert voice["source"] == "model" and voice["confidence"] >= 0.9
    # The detector heard the espeak-ng voice on its own, before the model said whose it was.
    heard = events["audio_activity"]
    assert heard["source"] == "signal" and near(heard["start_s"], story.WEBCAM_SECOND_VOICE[0])
    html = (outputs["proctor"] / "report.html").read_text()
    assert story.FAKE_LABEL in html and 'data-src="video.webm"' in html
    # Thumbnails travel inside the page (one presigned link must show them).
    assert html.count('src="data:image/jpeg;base64,') >= 1
    assert 'src="evidence/' not in html


# ---------------------------------------------------------------------- in a real browser
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert os.access(CHROMIUM, os.X_OK), "chromium is installed by `make install`"
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def open_report(browser: Any, folder: Path) -> tuple[Any, list[str]]:
    page = browser.new_page(viewport={"width": 1000, "height": 800})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto((folder / "report.html").as_uri())
    page.wait_for_load_state("load")
    return page, problems


def screenshot(page: Any, name: str) -> None:
    target = os.environ.get("REPORT_SCREENSHOTS_DIR")
    if target:
        page.screenshot(path=str(Path(target) / name), full_page=True)


def test_task_report_in_chromium(browser: Any, outputs: dict[str, Path]) -> None:
    report = load(outputs["task"])["report"]
    page, problems = open_report(browser, outputs["task"])
    marks = page.locator("#timeline .tl-event")
    assert marks.count() == len(report["notable_events"]) == len(story.TASK_EVENTS)
    # A rubric evidence link moves the timeline cursor to the cited moment.
    link = page.locator("#rubric a.seek").first
    link.click()
    assert page.locator("#tl-cursor").is_visible()
    assert page.locator("tr.hit").count() == 1
    screenshot(page, "report-task.png")
    assert problems == []


def test_proctor_report_in_chromium(browser: Any, outputs: dict[str, Path]) -> None:
    report = load(outputs["proctor"])["report"]
    page, problems = open_report(browser, outputs["proctor"])
    assert page.locator("#timeline .tl-event").count() == len(report["events"])
    assert page.locator("#timeline .tl-gap").count() == 1
    # Functions, not expression strings: Playwright evals an expression inside the page,
    # which the report's Content-Security-Policy rightly forbids.
    page.wait_for_function("() => document.getElementById('video').readyState >= 1")
    assert page.evaluate("() => Array.from(document.images).every(i => i.naturalWidth > 0)")
    # Clicking the second voice's time seeks the stitched video there.
    voice = next(e for e in report["events"] if e["type"] == "other_voice")
    offset = report["recording"]["video_start_s"]
    row = page.locator("#events tr", has_text="other voice")
    row.locator("a.seek").first.click()
    target = voice["start_s"] - offset
    page.wait_for_function(
        "(t) => { const v = document.getElementById('video');"
        " return !v.seeking && Math.abs(v.currentTime - t) < 0.5; }",
        arg=target,
    )
    screenshot(page, "report-proctor.png")
    assert problems == []


CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8", ".webm": "video/webm", ".mp4": "video/mp4",
    ".jpg": "image/jpeg", ".json": "application/json",
}  # fmt: skip


def test_proctor_report_through_one_presigned_link(
    browser: Any, outputs: dict[str, Path], moto_s3: MotoS3
) -> None:
    """As a recruiter gets it: the outputs in a private bucket, ONE link (the report's
    presigned URL with its video's in the fragment). Thumbnails are inside the page and the
    video plays and seeks; the relative sibling alone is refused by S3."""
    from analysis_pipeline.links import report_link, s3v4_client

    folder, prefix = outputs["proctor"], "proctor_video/S-1001-link/"
    for path in folder.rglob("*"):
        if path.is_file() and "checkpoints" not in path.parts:
            key = prefix + path.relative_to(folder).as_posix()
            moto_s3.client.put_object(Bucket="results", Key=key, Body=path.read_bytes(),
                                      ContentType=CONTENT_TYPES[path.suffix])  # fmt: skip
    report = load(folder)["report"]
    video = f"s3://results/{prefix}{report['recording']['video']}"
    signer = s3v4_client(
        endpoint_url=moto_s3.endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    link = report_link(f"s3://results/{prefix}report.html", video_uri=video, s3_client=signer)
    assert "X-Amz-Signature=" in link and link.count("X-Amz-Signature") == 2
    unsigned = f"{moto_s3.endpoint}/results/{prefix}{report['recording']['video']}"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(unsigned, timeout=10)
    assert refused.value.code == 403  # what a relative link from the page would get

    page = browser.new_page(viewport={"width": 1000, "height": 800})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(link)
    page.wait_for_load_state("load")
    page.wait_for_function("() => document.getElementById('video').readyState >= 1")
    images = page.locator("img.thumb")
    assert images.count() >= 1
    assert page.evaluate(
        "() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"
    )
    voice = next(e for e in report["events"] if e["type"] == "other_voice")
    page.locator("#events tr", has_text="other voice").locator("a.seek").first.click()
    target = voice["start_s"] - report["recording"]["video_start_s"]
    page.wait_for_function(
        "(t) => { const v = document.getElementById('video');"
        " return !v.seeking && Math.abs(v.currentTime - t) < 0.5; }",
        arg=target,
    )
    assert problems == []
    # A fragment naming anything but the sibling video is ignored (the page's own origin
    # and folder only): the video then falls back to the relative name.
    page.close()
    page = browser.new_page()
    page.goto(link.split("#")[0] + "#video=" + urllib.parse.quote("https://evil.example/v.webm"))
    page.wait_for_load_state("load")
    src = page.evaluate("() => document.getElementById('video').getAttribute('src')")
    assert src == report["recording"]["video"]
