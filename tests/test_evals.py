"""The eval harness: metrics (pure), the labelled-set format, and the CI subset of the
generated set run end to end through the product's detectors (signal metrics only)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evals import cases, metrics, run
from evals.labels import LabelError, Span, TruthEvent, load, parse


def test_events_match_within_the_tolerance_one_to_one() -> None:
    truth = [TruthEvent("camera_covered", 10, 20), TruthEvent("camera_covered", 40, 45)]
    predicted = [
        {"type": "camera_covered", "start_s": 11.5, "end_s": 19},  # within ±2 s
        {"type": "camera_covered", "start_s": 11, "end_s": 20},  # a duplicate: false positive
        {"type": "camera_covered", "start_s": 40, "end_s": 48},  # end 3 s off: no match
    ]
    (counts,) = metrics.match_events(
        predicted, truth, types=["camera_covered"], tolerance_s=2
    ).values()
    assert (counts.tp, counts.fp, counts.fn) == (1, 2, 1)
    assert counts.precision == pytest.approx(1 / 3) and counts.recall == 0.5
    assert counts.timestamp_error_s == pytest.approx(0.5)  # |11-10| and |20-20|


def test_idle_scores_count_wrongly_skipped_active_seconds() -> None:
    score = metrics.score_idle([(18, 52)], idle=[Span(20, 55)], active=[Span(0, 20)])
    assert score.recall == pytest.approx(32 / 35)
    assert score.active_skipped_s == 2 and score.active_skipped_fraction == 0.1


def test_stitch_check_and_confusion() -> None:
    report = {"runs": [{}], "duration_s": 30.2, "gaps": [{"start_s": 12, "end_s": 15.4}]}
    assert metrics.check_stitch({"runs": 1, "duration_s": 30, "gaps": [[12, 15]]}, report) == []
    wrong = metrics.check_stitch({"runs": 2, "gaps": []}, report)
    assert len(wrong) == 2
    assert metrics.confusion([("low", "high"), ("low", "low")])["low"] == {
        "low": 1,
        "medium": 0,
        "high": 1,
    }


def test_labelled_set_errors_name_the_field() -> None:
    base = {"format": "analysis-evals/labelled-set", "version": 1}
    with pytest.raises(LabelError, match="version"):
        parse({**base, "version": 9, "cases": []})
    case = {"id": "a", "kind": "proctor_video", "source": {"uri": "file:///x/"}}
    bad = {**case, "truth": {"events": [{"type": "camera_covered", "start_s": 5, "end_s": 1}]}}
    with pytest.raises(LabelError, match=r"cases\[0\] \(a\)\.truth\.events\[0\]"):
        parse({**base, "cases": [bad]})
    with pytest.raises(LabelError, match="used twice"):
        parse({**base, "cases": [case, case]})
    labelled = load(cases.SETS["dev"])
    assert len(labelled.cases) >= 20 and any(c.ci for c in labelled.cases)


@pytest.mark.slow
def test_ci_subset_meets_the_targets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    code = run.main(["--set", "dev", "--ci", "--baseline", str(run.DEFAULT_CONFIG),
                     "--model", "off", "--out", str(tmp_path / "out"),
                     "--cache", str(tmp_path / "cache")])  # fmt: skip
    printed = capsys.readouterr().out
    assert "model metrics not measured" in printed  # no GEMINI_API_KEY here: the reason is shown
    report = json.loads((tmp_path / "out" / "results.json").read_text())
    (result,) = report["sets"]
    assert report["pass"] and code == 0, result["failures"]
    rows = {r["key"]: r["candidate"] for r in result["signal"]["rows"]}
    assert rows["signal_precision"] >= 0.95 and rows["signal_recall"] >= 0.95
    assert rows["active_skipped_s"] == 0 and rows["idle_recall"] >= 0.9
    assert "| detector precision |" in (tmp_path / "out" / "results.md").read_text()
