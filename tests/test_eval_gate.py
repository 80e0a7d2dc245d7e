"""`make eval`'s gate fails when it must: a worse detector threshold, a detector that fires
nothing, an integrity level that drops from high to low, a case that crashes, and a model
lever changed without a key. Each runs the real harness (`python -m evals`) on three short
dev-style cases (a dim room, a hand over the lens, speech), the candidate being a patched
copy of the product tree (as a git ref would be) against the working tree; the recordings
and the baseline's results are cached across the tests. Record/replay is tested against
the fake Gemini."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from evals import catalog, run, stats

REPO = Path(__file__).resolve().parents[1]
DEFAULT = str(REPO / "evals" / "configs" / "default.json")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gate")
    b = catalog.Builder(catalog.DEV)
    b.webcam("g-dim-room", duration_s=12, picture=b.picture(gain=0.28))
    b.webcam("g-hand", duration_s=12, events=[{"kind": "hand", "start_s": 2, "end_s": 10,
                                               "level": 0.05}])  # fmt: skip
    b.webcam("g-speech", duration_s=12, sound=[b.voice(0, start_s=2, end_s=10)])
    subset = catalog.build("dev") | {"cases": b.cases}
    crash = {"id": "d-crashes", "kind": "proctor_video",
             "source": {"uri": f"file://{root}/never-uploaded/"}}  # fmt: skip
    (root / "dev-subset.json").write_text(json.dumps(subset))
    (root / "with-crash.json").write_text(json.dumps({**subset, "cases": [crash]}))
    return {"root": root, "cache": root / "cache", "set": root / "dev-subset.json",
            "crash": root / "with-crash.json"}  # fmt: skip


def patched_tree(root: Path, name: str, edit: Callable[[Path], None]) -> Path:
    tree = root / name
    if not tree.exists():
        shutil.copytree(REPO / "containers", tree / "containers",
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        edit(tree / "containers")
    return tree


def append(path: Path, code: str) -> None:
    path.write_text(path.read_text() + "\n" + code)


def gate(env: dict[str, Path], *args: str, set_file: Path | None = None) -> tuple[int, Any]:
    out = env["root"] / "out"
    code = run.main(["--set", str(set_file or env["set"]), "--cache", str(env["cache"]),
                     "--out", str(out), "--recordings", str(env["root"] / "recordings"),
                     *args])  # fmt: skip
    return code, json.loads((out / "results.json").read_text())


def failures(report: Any) -> str:
    return "\n".join(f for s in report["sets"] for f in s["failures"])


def test_an_unchanged_candidate_passes(env: dict[str, Path]) -> None:
    code, report = gate(env, "--baseline", DEFAULT, "--model", "off")
    assert code == 0, failures(report)
    (result,) = report["sets"]
    rows = {r["key"]: r for r in result["signal"]["rows"]}
    assert rows["signal_recall"]["candidate"] == rows["signal_recall"]["baseline"]
    assert rows["signal_recall"]["ci"] == [0, 0]  # identical outputs: no uncertainty
    assert {s["slice"] for s in result["signal"]["slices"]} >= {"codec", "lighting", "sound"}


def test_a_raised_black_pixel_threshold_fails(env: dict[str, Path]) -> None:
    def raise_threshold(containers: Path) -> None:
        signals = containers / "proctor_video" / "signals.py"
        text = signals.read_text()
        assert "pix_th=0.12" in text
        signals.write_text(text.replace("pix_th=0.12", "pix_th=0.30"))

    tree = patched_tree(env["root"], "pix-0.30", raise_threshold)
    code, report = gate(env, "--candidate", str(tree), "--baseline", "working-tree",
                        "--model", "off")  # fmt: skip
    assert code == 1
    # The dim room is now "covered" for the whole test: a clean session at high.
    assert "clean_at_high worse than the baseline: 1 vs 0" in failures(report)


def test_a_detector_that_fires_nothing_fails(env: dict[str, Path]) -> None:
    def silence(containers: Path) -> None:
        append(containers / "proctor_video" / "signals.py", (
            "_detect = detect_signals\n\n\n"
            "def detect_signals(video, **kwargs):\n"
            "    got = _detect(video, **kwargs)\n"
            "    return Signals((), (), (), (), got.has_audio, got.seconds_elapsed)\n"
        ))  # fmt: skip

    tree = patched_tree(env["root"], "silent", silence)
    code, report = gate(env, "--candidate", str(tree), "--baseline", "working-tree",
                        "--model", "off")  # fmt: skip
    assert code == 1
    text = failures(report)
    assert "signal_recall worse than the baseline: 0 vs 1" in text
    assert "high_at_low" in text  # the covered camera is no longer seen


def test_an_integrity_level_dropping_from_high_to_low_fails(env: dict[str, Path]) -> None:
    def lenient(containers: Path) -> None:
        append(containers / "proctor_video" / "events.py", (
            "_rules = score_integrity\n\n\n"
            "def score_integrity(events, duration_s, **kwargs):\n"
            "    got = _rules(events, duration_s, **kwargs)\n"
            "    return Integrity('low', got.reasons, got.notes)\n"
        ))  # fmt: skip

    tree = patched_tree(env["root"], "lenient", lenient)
    code, report = gate(env, "--candidate", str(tree), "--baseline", "working-tree",
                        "--model", "off")  # fmt: skip
    assert code == 1
    text = failures(report)
    assert "high_at_low worse than the baseline: 1 vs 0" in text
    assert "signal_recall worse" not in text  # the detectors are unchanged: only the level


def test_a_case_that_crashes_fails(env: dict[str, Path]) -> None:
    code, report = gate(env, "--baseline", "working-tree", "--model", "off",
                        set_file=env["crash"])  # fmt: skip
    assert code == 1
    text = failures(report)
    assert "case d-crashes errored on the candidate side" in text
    assert "case_errors = 1 misses its target" in text
    (result,) = report["sets"]
    assert result["case_results"]["candidate"]["d-crashes"]["error"]  # not a clean "low"


def test_a_lower_media_resolution_without_a_key_cannot_pass(
    env: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    low = tmp_path / "low-resolution.json"
    low.write_text(json.dumps({"name": "low", "env": {"GEMINI_MEDIA_RESOLUTION": "low"}}))
    code, report = gate(env, "--config", str(low), "--baseline", DEFAULT)
    assert code == 1
    assert report["model_mode"] == "off"
    text = failures(report)
    assert "model metrics not measured" in text and "GEMINI_MEDIA_RESOLUTION" in text
    assert "signal" not in text.split("model metrics")[0]  # the detectors did not change


def test_recorded_answers_replay_offline_and_a_changed_request_is_not_measured(
    env: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Record the model's answers (here the label-answering fake stands in for Gemini),
    then replay them with no fake behind: the same model metrics, measured. A candidate
    that asks something else (low media resolution) finds no recording: not measured."""
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    one = ["--cases", "g-hand", "--baseline", DEFAULT]
    code, recorded = gate(env, *one, "--model", "record-fake")
    assert code == 0, failures(recorded)  # nothing the model sees changed ...
    (result,) = recorded["sets"]
    assert result["model"]["measured"] is False  # ... and a fake is not a model
    assert list((env["root"] / "recordings" / "g-hand").glob("*.json"))
    code, replayed = gate(env, *one, "--model", "replay")
    (again,) = replayed["sets"]
    assert code == 0, failures(replayed)  # replayed: parsing, merging, scoring, measured
    assert again["model"]["measured"] is True
    rows = {r["key"]: r["candidate"] for r in again["model"]["rows"]}
    assert rows == {r["key"]: r["candidate"] for r in result["model"]["rows"]}
    assert rows["model_errors"] == 0 and rows["tokens_per_webcam_minute"] > 0
    low = tmp_path / "low.json"
    low.write_text(json.dumps({"name": "low", "env": {"GEMINI_MEDIA_RESOLUTION": "low"}}))
    code, changed = gate(env, *one, "--model", "replay", "--config", str(low))
    assert code == 1
    assert "never recorded" in changed["sets"][0]["model"]["note"]
    assert "model metrics not measured" in failures(changed)


def test_paired_bootstrap_is_a_non_inferiority_test() -> None:
    def hits(rows: Any) -> float:
        return sum(r["x"] for r in rows) / len(rows)

    same = [{"x": 1}] * 20
    assert not stats.compare(same, same, hits, higher_is_better=True, tolerance=0).failed
    one_worse = [{"x": 0}] + [{"x": 1}] * 19
    comp = stats.compare(one_worse, same, hits, higher_is_better=True, tolerance=0.02)
    assert comp.failed and comp.worse == pytest.approx(0.05) and comp.ci_high >= 0.05
    better = [{"x": 1}] * 20
    worse_base = [{"x": 0}] * 5 + [{"x": 1}] * 15
    assert not stats.compare(better, worse_base, hits, higher_is_better=True, tolerance=0).failed
