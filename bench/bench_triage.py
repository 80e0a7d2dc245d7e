"""Benchmark: model tokens per webcam minute and model-event recall, triage on vs off.

    make bench-triage SET=heldout          # or: .venv/bin/python bench/bench_triage.py
    .venv/bin/python bench/bench_triage.py --set dev --ids d-phone,d-long-30min

Every `proctor_video` case of the set runs through the real container (`python -m
proctor_video`, as `make eval` runs it) twice: `PROCTOR_TRIAGE=off` (today: every second at
the run's media resolution, 1 frame per second) and `on` (the quiet stretches sampled). The
model is the fake Gemini answering from the case's labels (`evals.model` mode `fake`): it
reports the labelled model-type events that overlap the clips it is shown, so recall here
measures what triage shows the model, not what a real model would see in a sampled frame.
Tokens are the container's own `usage.input_tokens` (MAP + REDUCE), as the fake bills them:
~300 per second at default resolution, ~100 at low, the frames' part scaled by
`videoMetadata.fps`. Writes `bench/results/triage-<set>.json`, prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "containers")]

SIDES = {"off": {"PROCTOR_TRIAGE": "off"}, "on": {"PROCTOR_TRIAGE": "on"}}
TOLERANCE_S = 5.0  # the model metrics' tolerance (evals.metrics.MODEL_TOLERANCE_S)


def run(set_name: str, ids: Sequence[str], jobs: int) -> dict[str, Any]:
    from evals import cases
    from evals.config import Config
    from evals.model import run_model

    chosen = list(cases.iter_cases(set_name, kind="proctor_video", ids=list(ids) or None))
    paths = {c.id: cases.materialise(c) for c in chosen}
    out: dict[str, Any] = {side: {} for side in SIDES}
    with tempfile.TemporaryDirectory(prefix="bench-triage-") as tmp:

        def one(item: tuple[str, Any]) -> tuple[str, str, dict[str, Any]]:
            side, case = item
            config = Config(name=side, env={**SIDES[side], "SEGMENT_SECONDS": "60"})
            work = Path(tmp) / side
            got = run_model(case, paths[case.id], config, work, mode="fake", recordings=work)
            return side, case.id, got

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for side, case_id, got in pool.map(one, [(s, c) for c in chosen for s in SIDES]):
                out[side][case_id] = got
                print(f"{case_id} {side}: {got.get('status')} {got.get('input_tokens')} tokens"
                      f" {got.get('error') or ''}", file=sys.stderr)  # fmt: skip
    return out


def score(set_name: str, results: dict[str, Any]) -> dict[str, Any]:
    from evals import cases, metrics

    scores: dict[str, Any] = {}
    for side, per_case in results.items():
        counts = {t: metrics.Counts() for t in cases.MODEL_TYPES}
        tokens = minutes = 0.0
        errors = []
        per_case_rate = []
        for case in cases.iter_cases(set_name, kind="proctor_video", ids=list(per_case)):
            got = per_case[case.id]
            if got.get("error") or got.get("status") not in ("complete", "partial"):
                errors.append(case.id)
            for kind, c in metrics.match_events(
                got.get("events", []),
                cases.model_events(case),
                types=cases.MODEL_TYPES,
                tolerance_s=TOLERANCE_S,
            ).items():
                counts[kind].tp += c.tp
                counts[kind].fn += c.fn
            length = (cases.duration_s(case) or 0.0) / 60
            if length and got.get("input_tokens"):
                tokens += got["input_tokens"]
                minutes += length
                per_case_rate.append(got["input_tokens"] / length)
        tp = sum(c.tp for c in counts.values())
        fn = sum(c.fn for c in counts.values())
        scores[side] = {
            "tokens_per_webcam_minute": round(tokens / minutes) if minutes else None,
            "mean_case_tokens_per_minute": (
                round(sum(per_case_rate) / len(per_case_rate)) if per_case_rate else None
            ),
            "webcam_minutes": round(minutes, 1),
            "model_event_recall": round(tp / (tp + fn), 4) if tp + fn else None,
            "matched": f"{tp}/{tp + fn}",
            "per_type_recall": {t: c.to_dict()["recall"] for t, c in counts.items() if c.tp + c.fn},
            "errors": errors,
        }
    return scores


def markdown(set_name: str, scores: dict[str, Any], load: str) -> str:
    off, on = scores["off"], scores["on"]
    ratio = (
        on["tokens_per_webcam_minute"] / off["tokens_per_webcam_minute"]
        if off["tokens_per_webcam_minute"] and on["tokens_per_webcam_minute"]
        else None
    )
    lines = [
        f"Set `{set_name}`: {off['webcam_minutes']} webcam minutes; fake Gemini answering from "
        f"the labels ({load}).",
        "",
        "| | triage off (today) | triage on |",
        "|---|---|---|",
        f"| model tokens per webcam minute (all cases) | {off['tokens_per_webcam_minute']} | "
        f"{on['tokens_per_webcam_minute']} ({ratio:.2f}x) |"
        if ratio
        else "| model tokens per webcam minute | — | — |",
        f"| mean over cases of tokens per minute | {off['mean_case_tokens_per_minute']} | "
        f"{on['mean_case_tokens_per_minute']} |",
        f"| model-type event recall (±{TOLERANCE_S:g} s) | {off['model_event_recall']} "
        f"({off['matched']}) | {on['model_event_recall']} ({on['matched']}) |",
        f"| runs that did not complete | {len(off['errors'])} | {len(on['errors'])} |",
    ]
    for kind in sorted({*off["per_type_recall"], *on["per_type_recall"]}):
        lines.append(
            f"| recall: {kind} | {off['per_type_recall'].get(kind)} | "
            f"{on['per_type_recall'].get(kind)} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", default="heldout", help="dev | heldout | a set file")
    parser.add_argument("--ids", default="", help="comma-separated case ids (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="containers at once")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    ids = [i for i in args.ids.split(",") if i]
    results = run(args.set, ids, args.jobs)
    scores = score(args.set, results)
    load = "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
    out = args.out or REPO / "bench" / "results" / f"triage-{Path(args.set).stem}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"scores": scores, "results": results, "load": load}, indent=1))
    print(markdown(args.set, scores, load))
    print(f"\n(details: {out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
