"""`python -m evals` (`make eval BASELINE=<git ref or config>`): run a candidate and a
baseline over the same cases of each labelled set (dev and held-out, reported apart), and
fail when the candidate is worse.

    make eval                                       # working tree vs main, both sets
    make eval BASELINE=evals/configs/sensitive-signals.json
    .venv/bin/python -m evals --baseline HEAD~1 --set heldout --model fake

Exit status: 0 PASS, 1 FAIL (the reasons are printed and written), 2 bad arguments. The
verdict FAILS when, on either set:
- a metric is worse than the baseline beyond its tolerance, by its observed value or by the
  upper 95 % bound of a paired bootstrap over cases (`stats.py`);
- a case errors on either side (a crash is never a clean `low`);
- a target has nothing to measure it (empty denominator), or the candidate misses a target
  the baseline meets (targets both miss are listed as known misses);
- the sides differ in what the model sees (model, prompt, schema, media resolution,
  segmentation: `sides.MODEL_PATHS` and the config's `env`) and the model metrics were not
  measured (no `GEMINI_API_KEY` and no complete recording to replay): "model metrics not
  measured".
Outputs: `out/results.json` and `out/results.md` (tables per set, per-slice tables).
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from evals import cases as case_api
from evals import scoring, stats
from evals.config import Config, ConfigError
from evals.detect import run_signals
from evals.labels import Case, LabelError, LabelledSet
from evals.model import MEASURED, MODES
from evals.sides import Side, SideError, environment, model_changes, resolve

# Importable from here too (older callers): one case through the detectors, the levers.
__all__ = ["Config", "main", "run_signals"]

HERE = Path(__file__).resolve().parent
DEFAULT_CONFIG = HERE / "configs" / "default.json"
DEFAULT_SETS = ("dev", "heldout")
DEFAULT_RECORDINGS = HERE / "recordings"
SLICE_KEYS = ("codec", "length", "lighting", "sound", "recorder")
Progress = Callable[[str], None]


# ------------------------------------------------------------------------ running
def _materialise_all(
    cases: Sequence[Case], *, cache: Path, jobs: int, progress: Progress
) -> dict[str, Path | str]:
    """Each case's recording, or the reason it could not be made (an error, not a skip)."""

    def one(case: Case) -> tuple[str, Path | str]:
        started = time.monotonic()
        try:
            path: Path | str = case_api.materialise(case, cache=cache)
        except Exception as exc:  # a recording that cannot be made fails its case
            path = f"recording could not be made: {type(exc).__name__}: {exc}"
        progress(f"  recording {case.id}: {time.monotonic() - started:.1f} s")
        return case.id, path

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return dict(pool.map(one, cases))


def run_side(
    side: Side,
    labelled: LabelledSet,
    paths: Mapping[str, Path | str],
    *,
    what: str,
    mode: str = "",
    recordings: Path = DEFAULT_RECORDINGS,
    cache: Path,
    jobs: int,
    workdir: Path,
) -> dict[str, dict[str, Any]]:
    """{case id: result} for one side, in its own process; cached per case unless the run
    records (live model answers are never reused from here: the recordings are)."""
    by_id = {c.id: c for c in labelled.cases}
    results: dict[str, dict[str, Any]] = {}
    todo: dict[str, str] = {}
    reuse = what == "signals" or mode in ("fake", "replay")
    store = cache / "results" / side.key(what) / f"{what}-{mode or 'signal'}"
    for case_id, path in paths.items():
        if isinstance(path, str):
            results[case_id] = {"error": path}
            continue
        hit = store / f"{case_id}-{case_api.recipe_key(by_id[case_id].source)}.json"
        if reuse and hit.exists() and mode != "replay":
            results[case_id] = json.loads(hit.read_text())
        else:
            todo[case_id] = str(path)
    if todo:
        assert labelled.path is not None
        job = {
            "set": str(labelled.path),
            "cases": todo,
            "config": side.config.to_dict(),
            "what": what,
            "mode": mode,
            "recordings": str(recordings),
            "workdir": str(workdir / side.role),
            "jobs": jobs,
        }
        with tempfile.TemporaryDirectory(prefix="evals-side-") as tmp:
            job_file, out_file = Path(tmp) / "job.json", Path(tmp) / "out.json"
            job_file.write_text(json.dumps(job))
            proc = subprocess.run(
                [sys.executable, "-m", "evals.side", str(job_file), str(out_file)],
                env=environment(side, os.environ),
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0 or not out_file.exists():
                tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
                reason = f"the {side.role} side's run failed: {tail[0]}"
                return {**results, **{cid: {"error": reason} for cid in todo}}
            got = json.loads(out_file.read_text())
        store.mkdir(parents=True, exist_ok=True)
        for case_id, result in got.items():
            results[case_id] = result
            if reuse and not result.get("error") and not result.get("not_recorded"):
                name = f"{case_id}-{case_api.recipe_key(by_id[case_id].source)}.json"
                (store / name).write_text(json.dumps(result))
    return results


# ------------------------------------------------------------------------ judging
def compare_metrics(
    metrics: Sequence[scoring.Metric],
    cand: Sequence[Mapping[str, Any]],
    base: Sequence[Mapping[str, Any]],
    kinds: set[str],
) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """(rows, failures, known misses) for one group of metrics on one set."""
    rows, failures, known = [], [], []
    for m in metrics:
        tolerance = m.tolerance
        if m.key in scoring.RELATIVE_TOLERANCE:
            reference = m.aggregate(base)
            tolerance = m.tolerance * (reference or 0.0)
        comp = stats.compare(
            cand, base, m.aggregate, higher_is_better=m.higher_is_better, tolerance=tolerance
        )
        row = {
            "key": m.key,
            "label": m.label,
            **comp.to_dict(),
            "gated": m.gated,
            "target": m.target,
            "higher_is_better": m.higher_is_better,
        }
        if m.gated and comp.failed:
            bound = f"{comp.ci_high:.3g}" if comp.ci_high is not None else "n/a"
            failures.append(
                f"{m.key} worse than the baseline: {_fmt(comp.candidate)} vs "
                f"{_fmt(comp.baseline)} (worse by {_fmt(comp.worse)}, 95% bound {bound}, "
                f"tolerance {_fmt(tolerance)})"
            )
        if m.target is not None and (m.kind is None or m.kind in kinds):
            op = ">=" if m.higher_is_better else "<="

            def meets(value: float | None, target: float = m.target, op: str = op) -> bool:
                if value is None:
                    return False
                return value >= target if op == ">=" else value <= target

            if comp.candidate is None:
                failures.append(
                    f"{m.key}: nothing in the set measures it (empty denominator; "
                    f"target {op} {_fmt(m.target)})"
                )
            elif not meets(comp.candidate):
                text = f"{m.key} = {_fmt(comp.candidate)} misses its target {op} {_fmt(m.target)}"
                if m.key.endswith("errors") or meets(comp.baseline):
                    failures.append(
                        text + ("" if m.key.endswith("errors") else " (the baseline meets it)")
                    )
                elif comp.baseline is None:
                    failures.append(text + " (the baseline had nothing to measure)")
                else:
                    known.append(text + f" (the baseline misses it too: {_fmt(comp.baseline)})")
            row["meets_target"] = meets(comp.candidate)
        rows.append(row)
    return rows, failures, known


def slice_table(
    cases: Sequence[Case], cand: Sequence[Mapping[str, Any]], base: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Per slice value: cases, detector recall/precision and integrity misses, both sides."""
    rec, prec = scoring.recall(scoring.DETECTOR_TYPES), scoring.precision(scoring.DETECTOR_TYPES)
    wrong = scoring.total("integrity_over")
    under = scoring.total("integrity_under")
    errors = scoring.total("case_errors")
    idle = scoring.idle_ratio("idle_found_s", "idle_truth_s")
    rows = []
    for key in SLICE_KEYS:
        values = sorted({case_api.slices(c).get(key, "?") for c in cases})
        for value in values:
            idx = [i for i, c in enumerate(cases) if case_api.slices(c).get(key, "?") == value]
            c_rows, b_rows = [cand[i] for i in idx], [base[i] for i in idx]
            rows.append(
                {
                    "slice": key,
                    "value": value,
                    "cases": len(idx),
                    "recall": [rec(c_rows), rec(b_rows)],
                    "precision": [prec(c_rows), prec(b_rows)],
                    "integrity_wrong": [
                        (wrong(c_rows) or 0) + (under(c_rows) or 0),
                        (wrong(b_rows) or 0) + (under(b_rows) or 0),
                    ],
                    "idle_recall": [idle(c_rows), idle(b_rows)],
                    "errors": [errors(c_rows), errors(b_rows)],
                }
            )
    return rows


def evaluate_set(
    labelled: LabelledSet,
    candidate: Side,
    baseline: Side,
    *,
    model_mode: str,
    recordings: Path,
    cache: Path,
    jobs: int,
    workdir: Path,
    ids: Sequence[str] | None = None,
    ci_only: bool = False,
    progress: Progress = print,
) -> dict[str, Any]:
    cases = [c for c in labelled.cases if (ids is None or c.id in ids) and (c.ci or not ci_only)]
    if not cases:
        raise LabelError(f"{labelled.name}: no case selected")
    kinds = {c.kind for c in cases}
    progress(f"{labelled.name} ({labelled.split}): {len(cases)} cases")
    paths = _materialise_all(cases, cache=cache, jobs=jobs, progress=progress)
    sides = {"candidate": candidate, "baseline": baseline}
    signal: dict[str, dict[str, dict[str, Any]]] = {}
    for role, side in sides.items():
        started = time.monotonic()
        if role == "baseline" and side.key("signals") == candidate.key("signals"):
            signal[role] = signal["candidate"]  # the same code and levers: the same run
            continue
        signal[role] = run_side(
            side,
            labelled,
            paths,
            what="signals",
            cache=cache,
            jobs=jobs,
            workdir=workdir / labelled.name,
        )
        progress(f"  {role} ({side.label}) detectors: {time.monotonic() - started:.1f} s")
    contrib = {
        role: [scoring.signal_contribution(c, signal[role][c.id]) for c in cases] for role in sides
    }
    rows, failures, known = compare_metrics(
        scoring.SIGNAL_METRICS, contrib["candidate"], contrib["baseline"], kinds
    )
    for role in sides:
        for c in cases:
            if signal[role][c.id].get("error"):
                failures.append(
                    f"case {c.id} errored on the {role} side: {signal[role][c.id]['error']}"
                )
    out: dict[str, Any] = {
        "set": labelled.name,
        "split": labelled.split,
        "cases": len(cases),
        "signal": {
            "rows": rows,
            "slices": slice_table(cases, contrib["candidate"], contrib["baseline"]),
        },
        "case_results": {role: signal[role] for role in sides},
    }
    model = _model(
        cases,
        labelled,
        sides,
        paths,
        model_mode=model_mode,
        recordings=recordings,
        cache=cache,
        jobs=jobs,
        workdir=workdir,
        kinds=kinds,
        progress=progress,
    )
    failures += model.pop("failures")
    known += model.pop("known")
    out["model"] = model
    out["failures"], out["known_misses"] = failures, known
    return out


def _model(
    cases: Sequence[Case],
    labelled: LabelledSet,
    sides: Mapping[str, Side],
    paths: Mapping[str, Path | str],
    *,
    model_mode: str,
    recordings: Path,
    cache: Path,
    jobs: int,
    workdir: Path,
    kinds: set[str],
    progress: Progress,
) -> dict[str, Any]:
    changes = model_changes(sides["candidate"], sides["baseline"])
    out: dict[str, Any] = {"mode": model_mode, "changes": changes, "failures": [], "known": []}
    if model_mode == "off":
        out["measured"] = False
        out["note"] = "model metrics not measured (no GEMINI_API_KEY, no recordings to replay)"
    else:
        results: dict[str, dict[str, dict[str, Any]]] = {}
        for role, side in sides.items():
            started = time.monotonic()
            if role == "baseline" and side.key() == sides["candidate"].key():
                results[role] = results["candidate"]
                continue
            results[role] = run_side(
                side,
                labelled,
                paths,
                what="model",
                mode=model_mode,
                recordings=recordings,
                cache=cache,
                jobs=jobs,
                workdir=workdir / labelled.name,
            )
            progress(f"  {role} model ({model_mode}): {time.monotonic() - started:.1f} s")
        missing = sum(1 for r in results.values() for x in r.values() if x.get("not_recorded"))
        contrib = {
            role: [scoring.model_contribution(c, results[role][c.id]) for c in cases]
            for role in sides
        }
        rows, failures, known = compare_metrics(
            scoring.MODEL_METRICS, contrib["candidate"], contrib["baseline"], kinds
        )
        out["rows"], out["case_results"] = rows, results
        out["measured"] = model_mode in MEASURED and not missing
        if model_mode == "replay" and missing:
            out["note"] = (
                f"model metrics not measured: {missing} run(s) asked something "
                "never recorded (record it with GEMINI_API_KEY)"
            )
        elif model_mode not in MEASURED:
            out["note"] = (
                "model metrics not measured: the fake Gemini answers from the "
                "labels (plumbing only, not a model)"
            )
        if out["measured"] or model_mode not in MEASURED:
            out["failures"] += failures  # fake: plumbing regressions still fail
            out["known"] += known
    if changes and not out["measured"]:
        out["failures"].append(
            "model metrics not measured: the candidate changes what the model sees ("
            + "; ".join(changes[:5])
            + (f"; +{len(changes) - 5} more" if len(changes) > 5 else "")
            + "); run with GEMINI_API_KEY (live) or replay complete recordings"
        )
    return out


# ------------------------------------------------------------------------ reporting
def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and value == 0:
        return "0"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value == value else "nan"
    return str(value)


def markdown(report: Mapping[str, Any]) -> str:
    lines = [
        f"# Eval: {report['candidate']} vs {report['baseline']}",
        "",
        f"**Verdict: {'PASS' if report['pass'] else 'FAIL'}**",
        "",
    ]
    for result in report["sets"]:
        lines += [f"## {result['set']} ({result['split']}, {result['cases']} cases)", ""]
        lines += _metric_table(result["signal"]["rows"])
        lines += [
            "",
            "Per slice (candidate / baseline):",
            "",
            "| slice | value | cases | recall | precision | integrity wrong | "
            "idle recall | errors |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for s in result["signal"]["slices"]:
            cells = [
                f"{_fmt(s[k][0])} / {_fmt(s[k][1])}"
                for k in ("recall", "precision", "integrity_wrong", "idle_recall", "errors")
            ]
            lines.append(
                f"| {s['slice']} | {s['value']} | {s['cases']} | " + " | ".join(cells) + " |"
            )
        model = result["model"]
        lines += [
            "",
            f"Model ({model['mode']}): "
            + ("measured" if model.get("measured") else model.get("note", "")),
        ]
        if model.get("rows"):
            lines += ["", *_metric_table(model["rows"])]
        if model.get("changes"):
            lines += ["", "What the model sees differs: " + "; ".join(model["changes"])]
        lines += [""] + [f"- FAIL: {f}" for f in result["failures"]]
        lines += [f"- known miss: {k}" for k in result["known_misses"]] + [""]
    return "\n".join(lines) + "\n"


def _metric_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    out = [
        "| metric | candidate | baseline | worse [90% CI] | tolerance | target | |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lo, hi = r["ci"]
        ci = f"{_fmt(r['worse'])} [{_fmt(lo)}, {_fmt(hi)}]" if r["worse"] is not None else "—"
        target = (
            ""
            if r["target"] is None
            else ((">= " if r["higher_is_better"] else "<= ") + _fmt(r["target"]))
        )
        flag = "FAIL" if r["gated"] and r["failed"] else ("" if r["gated"] else "(not gated)")
        if r.get("meets_target") is False:
            flag = (flag + " target missed").strip()
        out.append(
            f"| {r['label']} | {_fmt(r['candidate'])} | {_fmt(r['baseline'])} | {ci} | "
            f"{_fmt(r['tolerance'])} | {target} | {flag} |"
        )
    return out


# ------------------------------------------------------------------------ driver
def default_model_mode(recordings: Path) -> str:
    if os.environ.get("GEMINI_API_KEY"):
        return "live"
    if recordings.is_dir() and any(recordings.rglob("*.json")):
        return "replay"
    return "off"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help="the candidate's levers (JSON)"
    )
    parser.add_argument(
        "--baseline",
        default="main",
        help="a git ref, a config file, or a directory with containers/",
    )
    parser.add_argument(
        "--candidate", default=None, help="default: the working tree; or a git ref / directory"
    )
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=None,
        help="dev, heldout or a set file (repeatable; default: dev and heldout)",
    )
    parser.add_argument("--cases", default=None, help="comma-separated case ids")
    parser.add_argument("--ci", action="store_true", help="only the cases marked ci (fast)")
    parser.add_argument(
        "--model",
        choices=MODES,
        default=None,
        help="default: live with GEMINI_API_KEY, else replay if recordings exist, else off",
    )
    parser.add_argument("--recordings", type=Path, default=DEFAULT_RECORDINGS)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=None, help="default: EVALS_CACHE")
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args(argv)
    cache = args.cache or case_api.cache_dir()
    try:
        config = Config.load(args.config)
        candidate = resolve(args.candidate, role="candidate", default_config=config, cache=cache)
        baseline = resolve(args.baseline, role="baseline", default_config=config, cache=cache)
        sets = [case_api.load_set(s) for s in (args.sets or DEFAULT_SETS)]
    except (ConfigError, SideError, LabelError) as exc:
        print(f"evals: {exc}", file=sys.stderr)
        return 2
    mode = args.model or default_model_mode(args.recordings)
    ids = args.cases.split(",") if args.cases else None
    started = time.monotonic()
    print(f"candidate: {candidate.label}; baseline: {baseline.label}; model: {mode}")
    with tempfile.TemporaryDirectory(prefix="evals-") as tmp:
        results = []
        for labelled in sets:
            try:
                results.append(
                    evaluate_set(
                        labelled,
                        candidate,
                        baseline,
                        model_mode=mode,
                        recordings=args.recordings,
                        cache=cache,
                        jobs=args.jobs,
                        workdir=Path(tmp),
                        ids=ids,
                        ci_only=args.ci,
                    )
                )
            except LabelError as exc:
                print(f"evals: {exc}", file=sys.stderr)
                return 2
    report = {
        "candidate": candidate.label,
        "baseline": baseline.label,
        "model_mode": mode,
        "sets": results,
        "pass": not any(r["failures"] for r in results),
        "wall_s": round(time.monotonic() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=1, default=str))
    text = markdown(report)
    (args.out / "results.md").write_text(text)
    print(text)
    print(f"wrote {args.out / 'results.json'} and {args.out / 'results.md'} ({report['wall_s']} s)")
    return 0 if report["pass"] else 1
