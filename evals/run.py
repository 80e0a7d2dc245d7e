"""`python -m evals` (`make eval CONFIG=… BASELINE=…`): run two configurations over a
labelled set, print a side-by-side table and a verdict against the targets, write JSON and
Markdown.

Signal metrics run the product's own detectors (stitcher, proctor signals → events →
integrity rules, idle detection) on every case and need no model. Model metrics run the real
containers (`python -m proctor_video` / `python -m task_analyzer`) and only with a
`GEMINI_API_KEY`; without one they are skipped and the reason is printed.

A configuration is a JSON file of levers:

    {"name": "default",
     "signal": {"min_black_s": 2, "min_freeze_s": 5, "min_speech_s": 4},   # SignalConfig
     "idle_min_seconds": 30,
     "env": {"GEMINI_MAP_MODEL": "…", "SEGMENT_SECONDS": "120",
             "GEMINI_MEDIA_RESOLUTION": "low"}}                           # model runs only
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evals import metrics
from evals.generate import materialise
from evals.labels import Case, LabelledSet, load

HERE = Path(__file__).resolve().parent
DEFAULT_SET = HERE / "sets" / "generated.json"
DEFAULT_CONFIG = HERE / "configs" / "default.json"

# The targets (issue "Measured detection quality"); a config passes when it meets all.
TARGETS: dict[str, tuple[str, float]] = {
    "signal_precision": (">=", 0.95),
    "signal_recall": (">=", 0.95),
    "camera_frozen_in_gap": ("<=", 0),
    "voice_or_sound_from_tone_or_fan": ("<=", 0),
    "active_skipped_s": ("<=", 0),
    "idle_recall": (">=", 0.90),
    "clean_at_high": ("<=", 0),
    "stitch_failures": ("<=", 0),
}
# A/B: the candidate may not be worse than the baseline by more than this on any target.
ACCEPTABLE_DELTA = 0.02


@dataclass
class Config:
    name: str
    signal: dict[str, float] = field(default_factory=dict)
    idle_min_seconds: float = 30.0
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Config:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise SystemExit(f"CONFIG {path}: cannot read ({exc})") from exc
        unknown = set(data) - {"name", "signal", "idle_min_seconds", "env"}
        if unknown:
            raise SystemExit(f"CONFIG {path}: unknown keys {sorted(unknown)}")
        return cls(
            name=str(data.get("name") or Path(path).stem),
            signal={k: float(v) for k, v in (data.get("signal") or {}).items()},
            idle_min_seconds=float(data.get("idle_min_seconds", 30.0)),
            env={k: str(v) for k, v in (data.get("env") or {}).items()},
        )


# ------------------------------------------------------------------------- one case
def source_path(case: Case, workdir: Path) -> Path:
    """The recording (file) or chunk prefix (directory) of a case, generated if needed."""
    if "generator" in case.source:
        return materialise(case.source, workdir / case.id)
    uri = str(case.source["uri"])
    if not uri.startswith("file://"):
        raise SystemExit(f"case {case.id}: only file:// sources run locally, got {uri}")
    return Path(uri.removeprefix("file://"))


def run_signals(case: Case, path: Path, config: Config, workdir: Path) -> dict[str, Any]:
    """The product's detectors on one case, exactly as the containers run them."""
    from analysis_engine import media
    from analysis_engine.stitch import stitch_chunks
    from proctor_video.events import SignalConfig, merge_events, score_integrity, signal_events
    from proctor_video.signals import detect_signals

    started = time.monotonic()
    out: dict[str, Any] = {}
    if case.kind == "proctor_video":
        video, report = path, None
        if path.is_dir():
            video = workdir / case.id / "video.webm"
            report = stitch_chunks(sorted(path.iterdir()), video)
            video = report.output  # video.mp4 when the codecs only fit MP4
            out["stitch"] = {**report.to_dict(), "container": video.suffix.lstrip(".")}
        info = media.probe(video)
        offset = report.start_s if report else 0.0
        end_s = max(offset + info.duration_s, report.duration_s if report else 0.0)
        signals = detect_signals(video, start_s=offset, end_s=end_s, has_audio=info.has_audio)
        gaps = [(g.interval, {"reason": g.reason}) for g in report.gaps] if report else []
        events = signal_events(
            black=signals.black,
            frozen=signals.frozen,
            speech=signals.speech,
            gaps=gaps,
            config=SignalConfig(**config.signal),  # type: ignore[arg-type]
        )
        merged = merge_events(events)
        out["events"] = [e.to_dict() for e in merged]
        out["integrity"] = score_integrity(merged, end_s).level
        out["duration_s"] = end_s
    else:
        info = media.probe(path)
        idle = media.detect_idle(path, info, min_seconds=config.idle_min_seconds)
        out["idle"] = [[i.start_s, i.end_s] for i in idle]
        out["duration_s"] = info.duration_s
    out["wall_s"] = round(time.monotonic() - started, 2)
    return out


def run_model(case: Case, path: Path, config: Config, workdir: Path) -> dict[str, Any]:
    """The real container on one case (needs GEMINI_API_KEY); its result.json, summarised."""
    from analysis_engine.pricing import priced

    out_dir = workdir / case.id / f"model-{config.name}"
    uri = f"file://{path}/" if path.is_dir() else f"file://{path}"
    env = {
        **os.environ,
        **config.env,
        "ANALYSIS_ID": case.id,
        "INPUT_URI": uri,
        "OUTPUT_URI": f"file://{out_dir}/",
    }
    started = time.monotonic()
    module = "proctor_video" if case.kind == "proctor_video" else "task_analyzer"
    proc = subprocess.run(
        [sys.executable, "-m", module], env=env, capture_output=True, text=True, check=False
    )
    wall = round(time.monotonic() - started, 2)
    try:
        result = json.loads((out_dir / "result.json").read_text())
    except (OSError, ValueError):
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"error": f"exit {proc.returncode}: {tail[0]}", "wall_s": wall}
    usage = result.get("usage") or {}
    report = result.get("report") or {}
    return {
        "status": result.get("status"),
        "events": report.get("events", []),
        "integrity": (report.get("integrity") or {}).get("level"),
        "rubric": report.get("rubric_scores"),
        "input_tokens": usage.get("input_tokens"),
        "output_tokens": usage.get("output_tokens"),
        "estimated_usd": priced(usage).get("estimated_usd") if usage else None,
        "wall_s": wall,
    }


def _guarded(fn: Callable[..., dict[str, Any]], case: Case, *args: Any) -> dict[str, Any]:
    """A case the product rejects or fails on is a result too (nothing found), not a crash."""
    from analysis_engine.errors import AnalysisError

    try:
        return fn(case, *args)
    except AnalysisError as exc:
        empty: dict[str, Any] = {"error": str(exc), "wall_s": 0.0}
        if case.kind == "proctor_video":
            return {**empty, "events": [], "integrity": "low", "stitch": {"error": str(exc)}}
        return {**empty, "idle": []}


# ------------------------------------------------------------------------- scoring
def score(cases: Sequence[Case], results: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Aggregate signal metrics over every case's result (pure)."""
    per_type = {t: metrics.Counts() for t in metrics.SIGNAL_TYPES}
    frozen_in_gap = sound_from_noise = 0
    idle = metrics.IdleScore()
    levels: list[tuple[str, str]] = []
    stitch_failures: dict[str, list[str]] = {}
    errors = {case.id: results[case.id]["error"] for case in cases if "error" in results[case.id]}
    wall = 0.0
    for case in cases:
        got = results[case.id]
        wall += got.get("wall_s", 0.0)
        if case.kind == "proctor_video":
            events = got["events"]
            for kind, counts in metrics.match_events(
                [e for e in events if e.get("source") == "signal"],
                case.truth.events,
                types=metrics.SIGNAL_TYPES,
                tolerance_s=metrics.SIGNAL_TOLERANCE_S,
            ).items():
                per_type[kind].add(counts)
            gaps = [(e.start_s, e.end_s) for e in case.truth.events if e.type == "recording_gap"]
            frozen = [(e["start_s"], e["end_s"]) for e in events if e["type"] == "camera_frozen"]
            frozen_in_gap += sum(1 for f in frozen if metrics.overlap_s([f], gaps) > 0.5)
            noise = [span for kind, span in case.truth.sound if kind in ("fan", "tone")]
            voiced = [
                (e["start_s"], e["end_s"])
                for e in events
                if e["type"] in ("other_voice", "audio_activity")
            ]
            # A sound event counts against the noise only where no speech is (±2 s).
            speech = [
                (s.start_s - 2, s.end_s + 2) for kind, s in case.truth.sound if kind == "speech"
            ]
            sound_from_noise += sum(
                1
                for v in voiced
                if metrics.overlap_s([v], noise) - metrics.overlap_s([v], speech) > 1.0
            )
            if case.truth.integrity:
                levels.append((case.truth.integrity, got["integrity"]))
            if case.truth.stitch is not None:
                problems = metrics.check_stitch(case.truth.stitch, got.get("stitch", {}))
                if problems:
                    stitch_failures[case.id] = problems
        else:
            idle.add(
                metrics.score_idle(
                    [tuple(i) for i in got["idle"]],  # type: ignore[misc]
                    case.truth.idle,
                    case.truth.active,
                )
            )
    total = metrics.Counts()
    for counts in per_type.values():
        total.add(counts)
    matrix = metrics.confusion(levels)
    return {
        "signal_precision": total.precision,
        "signal_recall": total.recall,
        "signal_timestamp_error_s": total.timestamp_error_s,
        "per_type": {k: v.to_dict() for k, v in per_type.items()},
        "camera_frozen_in_gap": frozen_in_gap,
        "voice_or_sound_from_tone_or_fan": sound_from_noise,
        "idle": idle.to_dict(),
        "idle_recall": idle.recall,
        "active_skipped_s": round(idle.active_skipped_s, 2),
        "active_skipped_fraction": idle.active_skipped_fraction,
        "integrity_confusion": matrix,
        "clean_at_high": matrix["low"]["high"],
        "stitch_failures": len(stitch_failures),
        "stitch_failure_detail": stitch_failures,
        "case_errors": errors,
        "wall_s": round(wall, 2),
    }


def score_model(cases: Sequence[Case], results: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    per_type = {t: metrics.Counts() for t in metrics.MODEL_TYPES}
    tokens_in = tokens_out = 0
    usd = 0.0
    for case in cases:
        got = results.get(case.id) or {}
        model_events = [e for e in got.get("events", []) if e.get("source") == "model"]
        for kind, counts in metrics.match_events(
            model_events,
            case.truth.events,
            types=metrics.MODEL_TYPES,
            tolerance_s=metrics.MODEL_TOLERANCE_S,
        ).items():
            per_type[kind].add(counts)
        tokens_in += int(got.get("input_tokens") or 0)
        tokens_out += int(got.get("output_tokens") or 0)
        usd += float(got.get("estimated_usd") or 0.0)
    return {
        "per_type": {k: v.to_dict() for k, v in per_type.items()},
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        "estimated_usd": round(usd, 4),
        "wall_s": round(sum(float((results.get(c.id) or {}).get("wall_s", 0)) for c in cases), 2),
    }


def verdict(scores: Mapping[str, Any], baseline: Mapping[str, Any] | None) -> list[str]:
    """Failures against the targets and against the baseline ([] = pass)."""
    failures = []
    for key, (op, bound) in TARGETS.items():
        value = scores.get(key)
        if value is None:
            continue  # nothing in the set measures it
        ok = value >= bound if op == ">=" else value <= bound
        if not ok:
            failures.append(f"{key} = {_fmt(value)} (target {op} {_fmt(bound)})")
        if baseline is not None and baseline.get(key) is not None:
            worse = baseline[key] - value if op == ">=" else value - baseline[key]
            if worse > (ACCEPTABLE_DELTA if isinstance(bound, float) and bound < 1 else 0):
                failures.append(
                    f"{key} worse than baseline: {_fmt(value)} vs {_fmt(baseline[key])}"
                )
    return failures


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value == value else "nan"
    return str(value)


# ------------------------------------------------------------------------- reporting
ROWS = [
    ("signal precision", "signal_precision"),
    ("signal recall", "signal_recall"),
    ("signal timestamp error (s)", "signal_timestamp_error_s"),
    ("camera_frozen inside a gap", "camera_frozen_in_gap"),
    ("sound events from tone/fan", "voice_or_sound_from_tone_or_fan"),
    ("idle recall", "idle_recall"),
    ("active seconds skipped", "active_skipped_s"),
    ("active fraction skipped", "active_skipped_fraction"),
    ("clean sessions at high", "clean_at_high"),
    ("stitch cases wrong", "stitch_failures"),
    ("signal wall time (s)", "wall_s"),
]


def table(columns: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    """A Markdown table: one row per metric, one column per configuration."""
    head = "| metric | " + " | ".join(name for name, _ in columns) + " | target |"
    lines = [head, "|---" * (len(columns) + 2) + "|"]
    for label, key in ROWS:
        target = TARGETS.get(key)
        cells = [
            _fmt(scores.get(key)) if scores.get(key) is not None else "—" for _, scores in columns
        ]
        goal = f"{target[0]} {_fmt(target[1])}" if target else ""
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {goal} |")
    for kind in metrics.SIGNAL_TYPES:
        cells = []
        for _, scores in columns:
            c = scores["per_type"][kind]
            cells.append(
                f"P {_fmt(c['precision'])} R {_fmt(c['recall'])} ({c['tp']}/{c['tp'] + c['fn']})"
            )
        lines.append(f"| {kind} | " + " | ".join(cells) + " | ±2 s |")
    for true in ("low", "medium", "high"):
        cells = [
            " ".join(f"{p[0]}:{n}" for p, n in scores["integrity_confusion"][true].items())
            for _, scores in columns
        ]
        lines.append(f"| integrity truth {true} → predicted | " + " | ".join(cells) + " | |")
    return "\n".join(lines)


# ------------------------------------------------------------------------- driver
def evaluate(
    labelled: LabelledSet,
    configs: Sequence[Config],
    *,
    workdir: Path,
    subset_ci: bool = False,
    with_model: bool | None = None,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    cases = [c for c in labelled.cases if c.ci or not subset_ci]
    if with_model is None:
        with_model = bool(os.environ.get("GEMINI_API_KEY"))
    model_skip = None if with_model else "GEMINI_API_KEY is not set: model metrics skipped"
    if model_skip:
        progress(model_skip + " (signal metrics only)")
    paths: dict[str, Path] = {}
    out: dict[str, Any] = {"set": labelled.name, "cases": len(cases), "configs": {}}
    for n, config in enumerate(configs):
        signal_results: dict[str, Any] = {}
        model_results: dict[str, Any] = {}
        for i, case in enumerate(cases, 1):
            started = time.monotonic()
            if case.id not in paths:
                paths[case.id] = source_path(case, workdir)
            signal_results[case.id] = _guarded(run_signals, case, paths[case.id], config, workdir)
            if with_model:
                model_results[case.id] = run_model(case, paths[case.id], config, workdir)
            progress(
                f"[{config.name} {n + 1}/{len(configs)}] [{i}/{len(cases)}] {case.id}: "
                f"{time.monotonic() - started:.1f} s"
            )
        scores = score(cases, signal_results)
        entry: dict[str, Any] = {"scores": scores, "cases": signal_results}
        if with_model:
            entry["model"] = score_model(cases, model_results)
            entry["model_cases"] = model_results
        else:
            entry["model"] = {"skipped": model_skip}
        out["configs"][config.name] = entry
    return out


def write_outputs(result: dict[str, Any], out_dir: Path, names: Sequence[str]) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = [(name, result["configs"][name]["scores"]) for name in names]
    baseline = columns[1][1] if len(columns) > 1 else None
    failures = verdict(columns[0][1], baseline)
    result["verdict"] = {"pass": not failures, "failures": failures}
    md = [
        f"# Eval: {result['set']} ({result['cases']} cases)",
        "",
        table(columns),
        "",
        f"**Verdict for `{names[0]}`: {'PASS' if not failures else 'FAIL'}**",
        *[f"- {f}" for f in failures],
    ]
    for name in names:
        model = result["configs"][name]["model"]
        md.append(f"\nModel metrics (`{name}`): " + (model.get("skipped") or json.dumps(model)))
    json_path, md_path = out_dir / "results.json", out_dir / "results.md"
    json_path.write_text(json.dumps(result, indent=2, default=str))
    md_path.write_text("\n".join(md) + "\n")
    return json_path, md_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--baseline", type=Path, default=None)
    parser.add_argument("--set", dest="labelled_set", type=Path, default=DEFAULT_SET)
    parser.add_argument("--out", type=Path, default=HERE / "out")
    parser.add_argument("--ci", action="store_true", help="only the cases marked ci (fast)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep generated media here")
    args = parser.parse_args(argv)
    configs = [Config.load(args.config)]
    if args.baseline is not None:
        baseline = Config.load(args.baseline)
        if baseline.name == configs[0].name:
            baseline.name += " (baseline)"
        configs.append(baseline)
    labelled = load(args.labelled_set)
    with tempfile.TemporaryDirectory(prefix="evals-") as tmp:
        workdir = args.workdir or Path(tmp)
        result = evaluate(labelled, configs, workdir=workdir, subset_ci=args.ci)
    json_path, md_path = write_outputs(result, args.out, [c.name for c in configs])
    print()
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")
    return 0 if result["verdict"]["pass"] else 1
