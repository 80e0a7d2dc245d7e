"""The two labelled sets (dev, held-out): kept apart, covering every listed condition, labels
derived from the same description the generator renders, and a few renders checked with
the product's own detectors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devtools import label_answers
from evals import cases, catalog
from evals.config import Config
from evals.detect import run_signals
from evals.labels import LabelError, parse


@pytest.fixture(scope="module")
def sets() -> dict[str, list[cases.Case]]:
    return {name: list(cases.iter_cases(name)) for name in ("dev", "heldout")}


def test_committed_sets_are_what_the_catalog_builds() -> None:
    for split in ("dev", "heldout"):
        committed = json.loads(cases.SETS[split].read_text())
        assert committed == json.loads(json.dumps(catalog.build(split))), (
            f"evals/sets/{split}.json is stale: run `python -m evals.catalog`"
        )


def test_heldout_covers_every_condition(sets: dict[str, list[cases.Case]]) -> None:
    held = sets["heldout"]
    assert len(held) >= 60
    assert cases.load_set("heldout").split == "heldout"
    sliced = {key: {cases.slices(c)[key] for c in held} for key in ("codec", "length")}
    assert {"vp8", "vp9", "h264", "h264-mp4", "vp8-sparse-keyframes", "vp9-sparse-keyframes",
            "h264-sparse-keyframes"} <= sliced["codec"]  # fmt: skip
    assert {"short", "30min", "60min"} <= sliced["length"]
    lighting = {cases.slices(c)["lighting"] for c in held}
    assert {"steady", "dim", "ramp", "exposure-jump", "light-theme", "dark-theme"} <= lighting
    sounds = " ".join(cases.slices(c)["sound"] for c in held)
    for sound in ("two-speakers", "music", "fan", "hum", "keyboard", "speech"):
        assert sound in sounds
    assert any(cases.slices(c)["recorder"] == "chromium" for c in held)
    types = {e.type for c in held for e in c.truth.events}
    assert set(cases.MODEL_TYPES) - {"other"} <= types
    assert {"camera_covered", "camera_frozen", "recording_gap", "audio_activity"} <= types
    tags = {t for c in held for t in c.tags}
    for threshold in ("black-pixel", "black-duration", "freeze-duration", "speech-duration",
                      "sound-level", "idle-duration"):  # fmt: skip
        assert f"near-threshold:{threshold}" in tags
    recipes = json.dumps([c.source for c in held])
    for condition in ('"hand"', '"occluded"', '"moved"', '"scaled"', '"second_person"',
                      '"different_person"', '"absent"', '"jump"', '"ramp"', '"flite"',
                      '"espeak-ng"', '"stopped_s"', '"lost"', '"theme": "light"'):  # fmt: skip
        assert condition in recipes, condition
    long_cases = [c for c in held if (cases.duration_s(c) or 0) >= 1800]
    assert len(long_cases) >= 2


def test_dev_and_heldout_are_kept_apart(sets: dict[str, list[cases.Case]]) -> None:
    dev, held = sets["dev"], sets["heldout"]
    assert not {c.id for c in dev} & {c.id for c in held}
    assert not {c.source.get("seed") for c in dev} & {c.source.get("seed") for c in held} - {None}

    def photos(group: list[cases.Case]) -> set[str]:
        text = json.dumps([c.source for c in group])
        return {w for w in ("hopper", "astronaut", "camera") if f'"{w}"' in text} | {
            part.split('"')[0] for part in text.split('"lfw:')[1:]
        }

    def voices(group: list[cases.Case]) -> set[str]:
        return {
            layer.get("voice", "")
            for c in group
            for layer in [*c.source.get("sound", []), *_insert_sounds(c)]
            if layer.get("kind") == "speech"
        }

    assert not photos(dev) & photos(held)
    assert not voices(dev) & voices(held)
    assert catalog.DEV.hum_hz != catalog.HELDOUT.hum_hz
    assert catalog.DEV.music != catalog.HELDOUT.music


def _insert_sounds(case: cases.Case) -> list[dict]:
    inserts = case.source.get("long", {}).get("inserts", [])
    return [layer for i in inserts for layer in i.get("sound", [])]


def test_truth_follows_the_labelling_policy() -> None:
    events = catalog.truth_events(
        [{"kind": "hand", "start_s": 9, "end_s": 18}, {"kind": "black", "start_s": 20,
          "end_s": 21.5}, {"kind": "occluded", "start_s": 0, "end_s": 9}],
        [{"kind": "speech", "start_s": 2, "end_s": 6, "who": "other"},
         {"kind": "speech", "start_s": 7, "end_s": 9}, {"kind": "music"}],
        duration_s=30,
        gaps=[(12.0, 15.0)],
    )  # fmt: skip
    got = [(e["type"], e["start_s"], e["end_s"]) for e in events]
    assert got == [
        ("audio_activity", 2, 9),  # two speakers 1 s apart: one stretch of speech
        ("other_voice", 2, 6),
        ("camera_covered", 9, 12),  # cut by the lost chunk, which is its own event
        ("recording_gap", 12, 15),
        ("camera_covered", 15, 18),
    ]  # the 1.5 s black and the hand over the mouth are not events
    assert catalog.integrity(events, 30) == "high"
    # The same 9 s of black is nothing in an hour: the rules use shares of the test.
    assert catalog.integrity([{"type": "camera_covered", "start_s": 9, "end_s": 18}], 3600) == (
        "low"
    )


def test_set_files_reject_bad_cases_with_the_field() -> None:
    base = {"format": "analysis-evals/labelled-set", "version": 2, "split": "custom"}
    case = {"id": "real-1", "kind": "proctor_video", "source": {"uri": "s3://rec/att-1/"}}
    assert parse({**base, "cases": [case]}).cases[0].source["uri"] == "s3://rec/att-1/"
    with pytest.raises(LabelError, match=r"source\.uri"):
        parse({**base, "cases": [{**case, "source": {"uri": "http://x/y"}}]})
    bad = {**case, "truth": {"events": [{"type": "phone", "start_s": 1, "end_s": 2}]}}
    with pytest.raises(LabelError, match=r"events\[0\]\.type"):
        parse({**base, "cases": [bad]})
    with pytest.raises(LabelError, match="split"):
        parse({**base, "split": "test", "cases": [case]})
    with pytest.raises(LabelError, match="slices"):
        parse({**base, "cases": [{**case, "slices": {"colour": "red"}}]})


def test_fake_answers_from_labels_only_for_what_it_was_shown() -> None:
    labels = {"events": [{"type": "phone_or_device", "start_s": 50, "end_s": 70},
                         {"type": "multiple_faces", "start_s": 200, "end_s": 210}],
              "integrity": "high"}  # fmt: skip
    schema = {"properties": {"observations": {}}}
    shown: list[tuple[float, float]] = []
    prompt = "it covers 00:01:00-00:02:00 of a 00:05:00 test. Report every time as seconds"
    clip = label_answers.answer(labels, schema, prompt, shown)
    assert clip is not None and clip["max_people_visible"] == 1
    assert [(o["type"], o["start_s"], o["end_s"]) for o in clip["observations"]] == [
        ("phone_or_device", 0, 10)  # clipped to the clip, on the clip's clock
    ]
    absolute = "this clip starts at 40.0 s and ends at 100.0 s, so every time"
    clip = label_answers.answer(labels, schema, absolute, shown)
    assert clip is not None
    assert [(o["start_s"], o["end_s"]) for o in clip["observations"]] == [(50, 70)]
    reduce = label_answers.answer(labels, {"properties": {"integrity_level": {}}}, "", shown)
    assert reduce is not None
    assert [t["type"] for t in reduce["timeline"]] == ["phone_or_device"]  # 200 s never shown
    assert reduce["integrity_level"] == "low"


def test_a_rendered_scene_is_seen_by_the_products_detectors(tmp_path: Path) -> None:
    """A 15-s VP9 scene: a hand over the lens (dark, textured, not black) 1-5.5 s, a chunk
    lost (6-9 s), speech 9.5-15 s; rendered, chunked, stitched and run through the
    proctor's own detectors."""
    b = catalog.Builder(catalog.HELDOUT)
    b.webcam("t", duration_s=15, codec="vp9", lost=[2],
             events=[{"kind": "hand", "start_s": 1, "end_s": 5.5, "level": 0.06}],
             sound=[b.voice(0, start_s=9.5, end_s=15)])  # fmt: skip
    (raw,) = b.cases
    case = parse({"format": "analysis-evals/labelled-set", "version": 2, "cases": [raw]}).cases[0]
    path = cases.materialise(case, cache=tmp_path / "cache")
    assert "2.webm" not in {p.name for p in path.iterdir()} and "1.webm" in {
        p.name for p in path.iterdir()
    }
    assert cases.materialise(case, cache=tmp_path / "cache") == path  # cached
    got = run_signals(case, path, Config("default"), tmp_path)
    # The signal types this scene is about (the face detector's own findings are measured on
    # the whole sets by bench/bench_detectors.py, not asserted on one rendered scene).
    found = {
        e["type"]: (e["start_s"], e["end_s"])
        for e in got["events"]
        if e["type"] in cases.SIGNAL_TYPES
    }
    truth = {e.type: (e.start_s, e.end_s) for e in case.truth.events}
    assert set(found) == set(truth) == {"camera_covered", "audio_activity", "recording_gap"}
    for kind, (a, b_) in truth.items():
        assert abs(found[kind][0] - a) <= 1.0 and abs(found[kind][1] - b_) <= 1.0, kind


def test_chunks_are_cut_by_cluster_time_even_after_a_crc() -> None:
    """Matroska clusters start with a CRC-32 element; WebM's with the Timecode."""
    from evals.generate import cluster_time_s

    body_webm = b"\xe7\x82\x0b\xb8" + b"\xa3\x81\x00"  # Timecode 3000 ms, a block
    body_mkv = b"\xbf\x84\x01\x02\x03\x04" + body_webm  # CRC-32 first
    for body in (body_webm, body_mkv):
        cluster = b"\x1f\x43\xb6\x75" + bytes([0x80 | len(body)]) + body
        assert cluster_time_s(cluster) == 3.0
