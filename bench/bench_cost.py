"""Estimated Gemini cost of one 60-minute task analysis, at each media resolution.

Runs the real `python -m task_analyzer` (defaults: 120 s segments, idle skipping) on a cached
60-minute screenshare that is a third idle, against the local fake Gemini, once per
`GEMINI_MEDIA_RESOLUTION`, and reads `usage` from each result.json: calls, tokens and
`estimated_usd` from the list-price table in `analysis_engine/pricing.py`.

Input tokens are the fake's model of the published rates (~300 tokens per second of video at
default resolution, ~100 at low, plus the prompt's text); output tokens are the length of the
fake's answers, which are shorter than a real model's (and carry no thinking tokens), so the
output share of the cost is a floor. The picture is small (320x180, 5 fps) because token
counts depend on the seconds sent, not on pixels.

    make bench-cost                   # or: .venv/bin/python bench/bench_cost.py --append
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_preprocess import CACHE

from analysis_engine.pricing import PRICES_AS_OF
from devtools.fake_gemini import FakeGemini
from devtools.media import make_long_screenshare

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADING = "## Cost of a 60-minute analysis"


def run_once(recording: Path, resolution: str, fake_url: str, work: Path) -> dict[str, Any]:
    out = work / resolution
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GEMINI_"))}
    env.update(
        ANALYSIS_ID=f"bench-cost-{resolution}",
        INPUT_URI=recording.as_uri(),
        OUTPUT_URI=out.as_uri() + "/",
        GEMINI_API_KEY="bench-key-for-the-local-fake-gemini",
        GEMINI_BASE_URL=fake_url,
        GEMINI_MEDIA_RESOLUTION=resolution,
        MAP_CONCURRENCY="8",
        GEMINI_RPM_BUDGET="1000",
        GEMINI_TPM_BUDGET="10000000",
    )
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "task_analyzer"], env=env, capture_output=True,
                          text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"task_analyzer exit {done.returncode}:\n{done.stdout[-2000:]}")
    result = json.loads((out / "result.json").read_text())
    result["_wall_s"] = time.monotonic() - started
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--append", action="store_true", help="append results to RESULTS.md")
    args = parser.parse_args()

    print(f"[1/3] preparing a {args.minutes}-minute screenshare (cached in {CACHE}) ...",
          flush=True)  # fmt: skip
    recording, idle = make_long_screenshare(
        CACHE, minutes=args.minutes, size="320x180", fps=5, gop_seconds=2.0
    )
    idle_share = sum(b - a for a, b in idle) / (args.minutes * 60)
    rows = []
    with FakeGemini() as fake, tempfile.TemporaryDirectory(prefix="bench-cost-") as work:
        for step, resolution in enumerate(("default", "low"), start=2):
            print(f"[{step}/3] task_analyzer at GEMINI_MEDIA_RESOLUTION={resolution} ...",
                  flush=True)  # fmt: skip
            result = run_once(recording, resolution, fake.base_url, Path(work))
            usage, coverage = result["usage"], result["coverage"]
            rows.append((resolution, usage, coverage, result["_wall_s"]))
            print(f"      {usage['calls']} calls, {usage['input_tokens']:,} input / "
                  f"{usage['output_tokens']:,} output tokens, ${usage['estimated_usd']:.4f} "
                  f"({result['_wall_s']:.0f} s)", flush=True)  # fmt: skip
    lines = [
        f"### {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC — `make bench-cost`",
        "",
        f"One {args.minutes}-minute screenshare, {idle_share:.0%} idle (skipped, never sent), "
        "default settings (120 s segments), `gemini-2.5-flash` for MAP and REDUCE at list "
        f"prices as of {PRICES_AS_OF} ($0.30 / $2.50 per million input / output tokens).",
        "",
        "| media resolution | model calls | video seconds sent | input tokens | output tokens"
        " | estimated cost | per 350 analyses |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for resolution, usage, coverage, _wall in rows:
        usd = usage["estimated_usd"]
        lines.append(
            f"| `{resolution}` | {usage['calls']} | {coverage['seconds_analysed']:,.0f} | "
            f"{usage['input_tokens']:,} | {usage['output_tokens']:,} | **${usd:.3f}** | "
            f"${usd * 350:,.2f} |"
        )
    lines += [
        "",
        "Input tokens follow the published per-second video rates (the fake counts them the "
        "same way); output tokens here are the fake's short answers, so a real run's output "
        "cost (and any thinking tokens) comes on top.",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    if args.append:
        append_section(report)
    return 0


def append_section(report: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if HEADING not in text:
        RESULTS.write_text(text.rstrip("\n") + f"\n\n{HEADING}\n\n" + report)
        return
    head, _, rest = text.partition(HEADING)
    body, sep, tail = rest.partition("\n## ")
    RESULTS.write_text(head + HEADING + body.rstrip("\n") + "\n\n" + report
                       + (("\n## " + tail) if sep else ""))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
