"""The labelled sets as a small API: load a set, iterate its cases, get a case's recording
(generated once, cached), and its labels in the shapes other tools want.

    from evals import cases

    for case in cases.iter_cases("heldout", kind="proctor_video"):
        path = cases.materialise(case)            # chunk prefix dir, or a recording file
        truth = cases.model_events(case)          # face/phone/voice... labels (TruthEvent)
        fake = FakeGemini(answers="labels", labels=cases.fake_labels(case))

Sets: `dev` (tune on it), `heldout` (never tune on it; report it apart), or a path to your
own set file (labels.py documents the format). Generated media lives in a cache keyed by the
recipe's content (`EVALS_CACHE`, default `<repo>/.cache/evals`): the first run renders it,
later runs reuse it. `s3://` cases are downloaded once into the same cache (with their
upload times, which the stitcher uses); `file://` cases are used in place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from evals.labels import Case, LabelledSet, TruthEvent, load

HERE = Path(__file__).resolve().parent
SETS = {"dev": HERE / "sets" / "dev.json", "heldout": HERE / "sets" / "heldout.json"}
# Bump when a generator's output changes for the same recipe (invalidates the cache).
GENERATOR_VERSION = 3
SIGNAL_TYPES = ("camera_covered", "camera_frozen", "recording_gap", "audio_activity")
MODEL_TYPES = (
    "face_absent",
    "multiple_faces",
    "different_person",
    "looking_away",
    "phone_or_device",
    "other_voice",
    "other",
)


def cache_dir() -> Path:
    return Path(os.environ.get("EVALS_CACHE") or HERE.parent / ".cache" / "evals")


def load_set(name: str | Path) -> LabelledSet:
    """`dev`, `heldout`, or the path of a set file (validated; LabelError names the field)."""
    return load(SETS.get(str(name), Path(name)))


def iter_cases(
    name: str | Path | LabelledSet,
    *,
    kind: str | None = None,
    tag: str | None = None,
    ids: Sequence[str] | None = None,
) -> Iterator[Case]:
    """The cases of a set, optionally only one kind, one tag, or the given ids."""
    labelled = name if isinstance(name, LabelledSet) else load_set(name)
    for case in labelled.cases:
        if kind and case.kind != kind:
            continue
        if tag and not any(t == tag or t.startswith(tag + ":") for t in case.tags):
            continue
        if ids is not None and case.id not in ids:
            continue
        yield case


def recipe_key(source: Mapping[str, Any]) -> str:
    text = json.dumps({"v": GENERATOR_VERSION, "source": source}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def materialise(case: Case, *, cache: Path | None = None) -> Path:
    """The case's recording: a chunk prefix directory (proctor_video) or one file."""
    uri = case.source.get("uri")
    if isinstance(uri, str) and uri.startswith("file://"):
        return Path(uri.removeprefix("file://"))
    root = cache or cache_dir()
    done = root / f"{case.id}-{recipe_key(case.source)}"
    marker = done / "recording.json"
    if marker.exists():
        return done / json.loads(marker.read_text())["path"]
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{case.id}-", dir=root))
    try:
        if isinstance(uri, str):
            made = _download(uri, work)
        else:
            from evals.generate import materialise as generate

            made = generate(case.source, work, cache=root / "shared")
            for other in work.iterdir():  # keep the recording only (sessions, parts: ~2x)
                if other.is_dir() and other != made:
                    shutil.rmtree(other)
                elif other != made:
                    other.unlink()
        (work / "recording.json").write_text(json.dumps({"path": str(made.relative_to(work))}))
        try:
            work.rename(done)
        except OSError:  # someone else finished the same case first: theirs is as good
            shutil.rmtree(work, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return done / json.loads(marker.read_text())["path"]


def _download(uri: str, work: Path) -> Path:
    """An s3:// object or chunk prefix into `work`, chunk files dated by their upload time."""
    from analysis_engine.storage import Storage

    storage = Storage()
    if not uri.endswith("/"):
        dest = work / uri.rstrip("/").rsplit("/", 1)[-1]
        return storage.download(uri, dest)
    out = work / "chunks"
    out.mkdir()
    for ref in storage.list_chunks(uri):
        path = storage.download(ref.uri, out / ref.name)
        if ref.uploaded_at is not None:
            os.utime(path, (ref.uploaded_at, ref.uploaded_at))
    return out


def model_events(case: Case) -> list[TruthEvent]:
    """Labels only a model (or a face detector / speaker model) can see."""
    return [e for e in case.truth.events if e.type in MODEL_TYPES]


def signal_events(case: Case) -> list[TruthEvent]:
    """Labels the product's signal detectors are meant to find."""
    return [e for e in case.truth.events if e.type in SIGNAL_TYPES]


def duration_s(case: Case) -> float | None:
    stitch = case.truth.stitch or {}
    if "duration_s" in stitch:
        return float(stitch["duration_s"])
    source = case.source
    if "long" in source:
        return float(source["long"]["total_s"])
    if "duration_s" in source:
        return float(source["duration_s"])
    return None


def fake_labels(case: Case) -> dict[str, Any]:
    """What `FakeGemini(answers="labels", labels=...)` answers from: the case's model-type
    events (it reports those overlapping each clip it is shown), its integrity and rubric."""
    return {
        "case": case.id,
        "kind": case.kind,
        "duration_s": duration_s(case),
        "events": [
            {"type": e.type, "start_s": e.start_s, "end_s": e.end_s} for e in model_events(case)
        ],
        "integrity": case.truth.integrity,
        "rubric": {name: list(bounds) for name, bounds in case.truth.rubric.items()},
    }


def slices(case: Case) -> dict[str, str]:
    """The case's slice labels: its own, else derived from a v1 recipe."""
    if case.slices:
        return dict(case.slices)
    src = case.source
    container = str(src.get("container", "webm"))
    codec = {"webm": "vp8", "h264_mkv": "h264", "safari_mp4": "h264-mp4"}.get(container, "?")
    if case.kind == "task_analysis":
        codec = "h264"
    sound = sorted({str(p["kind"]) for p in src.get("sound", [])} - {"silence"})
    return {
        "codec": codec if "generator" in src else "real",
        "length": "short",
        "lighting": "test-pattern" if case.kind == "proctor_video" else "dark-theme",
        "sound": "+".join(sound) or "quiet",
        "recorder": "synthetic" if "generator" in src else "real",
    }
