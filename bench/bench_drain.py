"""Drain: how fast a fleet of analyses clears through ONE Gemini project quota.

Real container processes (`python -m task_analyzer`, some `python -m proctor_video`), run
as their images ship (`devtools/image.py`: the clean virtualenv of
`containers/requirements.txt`, the Dockerfiles' layout, bytecode and ENV; not the
development virtualenv, whose extra packages slow every start-up), over generated
recordings of varied lengths, K at a time as the DAG caps would allow,
against the local fake Gemini enforcing a project quota like the real service's (per model:
requests and input tokens per minute, tokens counted from the video seconds a call
references at ~300/s, 429 with RetryInfo.retryDelay beyond it, latency growing with the
call's tokens). The shared store is a real `redis-server`.

Time is scaled down so this fits on a laptop: the quota's "minute" lasts `--window` seconds
(GEMINI_BUDGET_WINDOW_SECONDS in the containers, quota_window_s in the fake), and the fake's
latencies shrink by the same factor; quotas and budgets stay in real units per window.
Recordings are tiny (320x180, 2 fps) so preprocessing is cheap; their length, hence their
tokens, is real. Three settings on the same workload:

1. decision record: 12 at a time, MAP_CONCURRENCY=1, static shares (each container quota/12,
   memory:// budget);
2. today's defaults: MAP_CONCURRENCY=4, the same static shares;
3. shared budget: GEMINI_BUDGET_URI=redis://..., the fleet's limits = the true quota;

plus the shared budget set to twice the true quota (another client on the key), and a
lone 60-minute analysis under (2) and (3).

    make bench-drain                              # full (~40 min), appends to RESULTS.md
    .venv/bin/python bench/bench_drain.py --quick # < 3 min: shared budget only
    .venv/bin/python bench/bench_drain.py --only shared,shared-2x  # some settings, full load

Bound = max(total tokens / TPM, total calls / RPM, the longest analysis alone), in windows
times the window length; efficiency = bound / measured drain time. The last line printed is
the shared budget's efficiency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from devtools import emf
from devtools import image as images
from devtools.fake_gemini import FakeGemini
from devtools.media import make_live_webcam, make_long_screenshare, split_clusters
from devtools.redis_server import RedisServer

REPO = Path(__file__).resolve().parents[1]
RESULTS_MD = REPO / "bench" / "RESULTS.md"
RESULTS_DIR = REPO / "bench" / "results"
CACHE = Path(os.environ.get("BENCH_CACHE") or Path(tempfile.gettempdir()) / "analysis-bench-cache")

# The true project quota (Tier 1, gemini-2.5-flash): per model, per minute.
TRUE_RPM = 1000
TRUE_TPM = 1_000_000
TOKENS_PER_SECOND = 300
SEGMENT_SECONDS = 120
# Real-time latency of one call: a fixed part plus a part per 1000 input tokens
# (a 2-minute segment, ~36k tokens, takes ~20 s).
LATENCY_S = 2.0
LATENCY_PER_1K_S = 0.5
# The caps: 12 analyses at once (the decision record), split between the two kinds.
K_TASK = 10
K_PROCTOR = 2
SLOTS = K_TASK + K_PROCTOR

# More analyses than the caps admit at once, of varied lengths (tokens ~ 18k per minute).
FULL_TASK_MINUTES = [5, 10, 20, 30, 45, 60, 15] * 2
FULL_PROCTOR_MINUTES = [15, 15, 15]
QUICK_TASK_MINUTES = [10, 20, 30, 45, 30]
QUICK_PROCTOR_MINUTES = [20]
LONE_MINUTES = 60
# What --only can pick: the four drains and the lone analysis.
SETTING_KEYS = ["decision", "defaults", "shared", "shared-2x", "lone", "lone-static"]
SUMMARY_RE = re.compile(
    r"Gemini budget \((?P<where>[^)]*)\): (?P<calls>\d+) calls admitted, "
    r"waited max (?P<max>[\d.]+) s, total (?P<total>[\d.]+) s"
)


@dataclass(frozen=True)
class Item:
    name: str
    kind: str  # "task" | "proctor"
    minutes: int
    input_uri: str

    @property
    def module(self) -> str:
        return "task_analyzer" if self.kind == "task" else "proctor_video"


@dataclass
class Run:
    name: str
    kind: str
    minutes: int
    started_s: float
    finished_s: float
    exit_code: int
    status: str
    segments_failed: int
    calls_admitted: int
    waited_max_s: float
    waited_total_s: float
    input_tokens: int
    prep_s: float
    reduce_s: float


@dataclass
class Setting:
    label: str
    env: dict[str, str]
    runs: list[Run] = field(default_factory=list)
    fake: dict[str, Any] = field(default_factory=dict)
    drain_s: float = 0.0
    # The CloudWatch dashboard's figures, computed from the EMF lines the containers printed.
    dashboard: dict[str, Any] = field(default_factory=dict)


# -- inputs -------------------------------------------------------------------------------


def task_recording(minutes: int) -> Path:
    path, _ = make_long_screenshare(
        CACHE, minutes=minutes, size="320x180", fps=2, cycle_seconds=300, idle_in_cycle=()
    )
    return path


def proctor_chunks(minutes: int) -> Path:
    directory = CACHE / f"webcam-{minutes}min-chunks"
    if not (directory / "0.webm").exists():
        source = make_live_webcam(
            CACHE / f"webcam-{minutes}min.webm", duration=minutes * 60, size="160x120", fps=2
        )
        split_clusters(source, directory)
    return directory


def workload(task_minutes: list[int], proctor_minutes: list[int]) -> list[Item]:
    tasks = [
        Item(f"task-{i:02d}-{m}min", "task", m, f"file://{task_recording(m)}")
        for i, m in enumerate(task_minutes)
    ]
    proctors = [
        Item(f"proctor-{i:02d}-{m}min", "proctor", m, f"file://{proctor_chunks(m)}/")
        for i, m in enumerate(proctor_minutes)
    ]
    # Interleaved in arrival order: a proctor video every few tasks.
    step = max(1, len(tasks) // max(1, len(proctors)))
    items: list[Item] = []
    for i, task in enumerate(tasks):
        items.append(task)
        if i % step == step - 1 and proctors:
            items.append(proctors.pop(0))
    return items + proctors


# -- running containers -------------------------------------------------------------------


def base_env(fake: FakeGemini, window_s: int) -> dict[str, str]:
    """What the DAG would pass on top of the image's ENV (nothing of this shell's)."""
    return {
        "GEMINI_BASE_URL": fake.base_url,
        "GEMINI_BUDGET_WINDOW_SECONDS": str(window_s),
        "SEGMENT_SECONDS": str(SEGMENT_SECONDS),
        "LOG_LEVEL": "INFO",
    }


async def run_item(
    item: Item, env: dict[str, str], out: Path, t0: float, image: images.Image
) -> Run:
    scratch = out / "scratch"  # this container's own scratch volume
    scratch.mkdir(parents=True, exist_ok=True)
    env = image.environment({
        **env,
        "ANALYSIS_ID": item.name,
        "INPUT_URI": item.input_uri,
        "OUTPUT_URI": f"file://{out}/",
        "SCRATCH_DIR": str(scratch),
        "TMPDIR": str(scratch),
        "HOME": str(scratch),
    })  # fmt: skip
    started = time.monotonic() - t0
    proc = await asyncio.create_subprocess_exec(
        *image.argv, env=env, cwd=image.cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    stdout, _ = await proc.communicate()
    finished = time.monotonic() - t0
    log = stdout.decode(errors="replace")
    (out / "container.log").write_text(log)
    try:
        result = json.loads((out / "result.json").read_text())
    except (OSError, json.JSONDecodeError):
        result = {"status": "no result", "coverage": {}, "usage": {}, "timings": {}}
    summary = SUMMARY_RE.search(log)
    timings = result.get("timings") or {}
    usage = result.get("usage") or {}
    tokens = int(usage.get("input_tokens", 0) or 0)
    return Run(
        name=item.name,
        kind=item.kind,
        minutes=item.minutes,
        started_s=started,
        finished_s=finished,
        exit_code=proc.returncode or 0,
        status=str(result.get("status")),
        segments_failed=int((result.get("coverage") or {}).get("segments_failed", 0) or 0),
        calls_admitted=int(summary["calls"]) if summary else 0,
        waited_max_s=float(summary["max"]) if summary else 0.0,
        waited_total_s=float(summary["total"]) if summary else 0.0,
        input_tokens=tokens,
        prep_s=sum(float(timings.get(f"{p}_s", 0.0)) for p in ("fetch", "probe", "prepare")),
        reduce_s=float(timings.get("reduce_s", 0.0)),
    )


async def drain(
    items: list[Item], env: dict[str, str], out: Path, laid: dict[str, images.Image]
) -> tuple[list[Run], float]:
    caps = {"task": asyncio.Semaphore(K_TASK), "proctor": asyncio.Semaphore(K_PROCTOR)}
    t0 = time.monotonic()

    async def one(item: Item) -> Run:
        async with caps[item.kind]:
            return await run_item(item, env, out / item.name, t0, laid[item.module])

    runs = await asyncio.gather(*(one(item) for item in items))
    return list(runs), time.monotonic() - t0


def run_setting(
    setting: Setting,
    items: list[Item],
    fake: FakeGemini,
    out: Path,
    laid: dict[str, images.Image],
    window_s: int,
) -> Setting:
    fake.reset()
    print(f"== {setting.label}: {len(items)} analyses ...", flush=True)
    folder = out / slug(setting.label)
    runs, drain_s = asyncio.run(drain(items, setting.env, folder, laid))
    stats = fake.stats
    setting.runs, setting.drain_s = runs, drain_s
    setting.fake = {
        "generate_calls": stats["calls"].get("generate", 0),
        "quota_429": stats["quota_rejections"],
        "prompt_tokens": stats["prompt_tokens"],
        "max_in_flight": stats["max_in_flight"],
    }
    print(f"   drained in {drain_s:.1f} s; {setting.fake}", flush=True)
    setting.dashboard = dashboard(folder, window_s)
    return setting


def dashboard(folder: Path, window_s: int) -> dict[str, Any]:
    """The dashboard's figures from the EMF lines in the containers' logs, as CloudWatch
    would extract them (every document validated), one period per quota window."""
    docs = [
        doc
        for log in sorted(folder.rglob("container.log"))
        for doc in emf.documents(log.read_text(errors="replace"))
    ]
    for doc in docs:
        emf.validate(doc)
    figures = emf.dashboard_figures(emf.extract(docs), period_s=window_s, hour_s=60 * window_s)
    return {"emf_documents": len(docs), **figures}


def slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


# -- settings -----------------------------------------------------------------------------


def static_env(base: dict[str, str], concurrency: int) -> dict[str, str]:
    return {
        **base,
        "GEMINI_BUDGET_URI": "memory://",
        "MAP_CONCURRENCY": str(concurrency),
        "GEMINI_RPM_BUDGET": str(max(1, TRUE_RPM // SLOTS)),
        "GEMINI_TPM_BUDGET": str(TRUE_TPM // SLOTS),
    }


def shared_env(base: dict[str, str], uri: str, factor: int = 1) -> dict[str, str]:
    return {
        **base,
        "GEMINI_BUDGET_URI": uri,
        "MAP_CONCURRENCY": "4",
        "GEMINI_RPM_BUDGET": str(TRUE_RPM * factor),
        "GEMINI_TPM_BUDGET": str(TRUE_TPM * factor),
    }


# -- metrics ------------------------------------------------------------------------------


def tokens_estimate(minutes: int) -> int:
    return minutes * 60 * TOKENS_PER_SECOND


def lone_bound(run: Run, window_s: int) -> float:
    """Its own quota bound plus the time it spends outside the quota: preparation, one MAP
    call's service latency (the last wave), REDUCE."""
    quota = max(run.input_tokens / TRUE_TPM, (run.calls_admitted) / TRUE_RPM) * window_s
    scale = window_s / 60
    call = (LATENCY_S + LATENCY_PER_1K_S * SEGMENT_SECONDS * TOKENS_PER_SECOND / 1000) * scale
    return quota + run.prep_s + call + run.reduce_s


def metrics(setting: Setting, window_s: int, longest_alone_s: float) -> dict[str, Any]:
    runs, fake = setting.runs, setting.fake
    tokens = fake["prompt_tokens"]
    ok_calls = fake["generate_calls"] - fake["quota_429"]
    bound = max(tokens / TRUE_TPM * window_s, ok_calls / TRUE_RPM * window_s, longest_alone_s)
    statuses: dict[str, int] = {}
    for run in runs:
        statuses[run.status] = statuses.get(run.status, 0) + 1
    return {
        "label": setting.label,
        "analyses": len(runs),
        "statuses": statuses,
        "drain_s": round(setting.drain_s, 1),
        "bound_s": round(bound, 1),
        "efficiency": round(bound / setting.drain_s, 3) if setting.drain_s else None,
        "generate_calls": fake["generate_calls"],
        "quota_429": fake["quota_429"],
        "quota_429_rate": round(fake["quota_429"] / max(1, fake["generate_calls"]), 4),
        "input_tokens": tokens,
        "slowest_wait_s": round(max((r.waited_max_s for r in runs), default=0.0), 1),
        "first_report_s": round(min((r.finished_s for r in runs), default=0.0), 1),
        "median_report_s": round(statistics.median(r.finished_s for r in runs), 1),
        "segments_failed": sum(r.segments_failed for r in runs),
        "max_in_flight": fake["max_in_flight"],
        "dashboard": setting.dashboard,
    }


# -- report ---------------------------------------------------------------------------------


def plot(settings: list[Setting], bound_s: float, path: Path, window_s: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=90)
    for setting in settings:
        ends = sorted(r.finished_s for r in setting.runs)
        ax.step([0, *ends], range(len(ends) + 1), where="post", label=setting.label)
    ax.axvline(bound_s, color="black", linestyle="--", linewidth=1, label="lower bound")
    ax.set_xlabel(f"seconds (1 quota minute = {window_s} s)")
    ax.set_ylabel("analyses finished")
    ax.set_title("Draining one Gemini project quota")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def table(rows: list[dict[str, Any]], window_s: int) -> list[str]:
    def m(seconds: float) -> str:  # scaled seconds -> real minutes
        return f"{seconds * 60 / window_s / 60:.1f}"

    lines = [
        "| setting | drain (real min) | bound | efficiency | 429s / calls | slowest wait "
        "| first report | all complete? |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        complete = r["statuses"].get("complete", 0) == r["analyses"]
        lines.append(
            f"| {r['label']} | {r['drain_s']} s ({m(r['drain_s'])}) | {r['bound_s']} s "
            f"({m(r['bound_s'])}) | **{r['efficiency']}** | {r['quota_429']} / "
            f"{r['generate_calls']} ({r['quota_429_rate']:.1%}) | {r['slowest_wait_s']} s "
            f"| {r['first_report_s']} s | {'yes' if complete else r['statuses']} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="shared budget only, < 3 min")
    parser.add_argument("--window", type=int, default=30, help="seconds per quota minute")
    parser.add_argument("--append", action="store_true", help="append to bench/RESULTS.md")
    parser.add_argument("--keep", type=Path, help="keep every container's output and log here")
    parser.add_argument(
        "--only",
        help=f"comma-separated settings of the full workload to run ({', '.join(SETTING_KEYS)}); "
        "without 'lone' the bound has no 'longest analysis alone' term (it only matters when "
        "it exceeds tokens/TPM, which it does not on the full workload)",
    )
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else set(SETTING_KEYS)
    if unknown := only - set(SETTING_KEYS):
        parser.error(f"--only: unknown setting(s) {sorted(unknown)}; known: {SETTING_KEYS}")
    if args.quick and args.only:
        parser.error("--only selects settings of the full workload; --quick runs its own")
    window = args.window
    scale = window / 60
    started = time.monotonic()
    task_m, proctor_m = (
        (QUICK_TASK_MINUTES, QUICK_PROCTOR_MINUTES)
        if args.quick
        else (FULL_TASK_MINUTES, FULL_PROCTOR_MINUTES)
    )
    items = workload(task_m, proctor_m)
    lone = workload([LONE_MINUTES], [])
    print(f"inputs ready in {time.monotonic() - started:.0f} s", flush=True)
    fake_config = {
        "quota_rpm": TRUE_RPM,
        "quota_tpm": TRUE_TPM,
        "quota_window_s": float(window),
        "latency_s": LATENCY_S * scale,
        "latency_per_1k_tokens_s": LATENCY_PER_1K_S * scale,
    }
    rows: list[dict[str, Any]] = []
    lone_rows: list[dict[str, Any]] = []
    runtime = images.runtime(as_image_user=False)
    with (
        RedisServer() as redis_server,
        FakeGemini(**fake_config) as fake,
        tempfile.TemporaryDirectory(prefix="bench-drain-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        laid = {name: stack.enter_context(images.laid_out(name, runtime)) for name in images.IMAGES}
        out = args.keep or Path(tmp)
        base = base_env(fake, window)
        shared = Setting("shared budget", shared_env(base, redis_server.uri))
        if args.quick:
            drains = [shared]
        else:
            every = {
                "decision": Setting(
                    "decision record (12, MAP 1, static shares)", static_env(base, 1)
                ),
                "defaults": Setting("today's defaults (MAP 4, static shares)", static_env(base, 4)),
                "shared": shared,
                "shared-2x": Setting(
                    "shared budget at 2x the true quota",
                    shared_env(base, redis_server.uri, factor=2),
                ),
            }
            drains = [setting for key, setting in every.items() if key in only]
        # The lone 60-minute analysis: the shared budget's first (its measured time is also
        # the bound's "longest analysis alone" term for every setting).
        lone_settings: list[Setting] = []
        if not args.quick:  # quick mode: the shared drain only
            lone_settings = [
                setting
                for key, setting in {
                    "lone": Setting("lone 60 min, shared budget", shared.env),
                    "lone-static": Setting("lone 60 min, today's defaults", static_env(base, 4)),
                }.items()
                if key in only
            ]
        for setting in lone_settings:
            run_setting(setting, lone, fake, out / "lone", laid, window)
            run = setting.runs[0]
            bound = lone_bound(run, window)
            lone_rows.append(
                {
                    "label": setting.label,
                    "time_s": round(run.finished_s, 1),
                    "bound_s": round(bound, 1),
                    "ratio": round(run.finished_s / bound, 2),
                    "status": run.status,
                    "quota_429": setting.fake["quota_429"],
                }
            )
        longest_alone = (
            lone_settings[0].runs[0].finished_s
            if "lone" in only and not args.quick and max(task_m) >= LONE_MINUTES
            else 0.0
        )
        for setting in drains:
            run_setting(setting, items, fake, out, laid, window)
            rows.append(metrics(setting, window, longest_alone))
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        mode = (
            "quick"
            if args.quick
            else "full"
            if only == set(SETTING_KEYS)
            else "-".join(key for key in SETTING_KEYS if key in only)
        )
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        payload = {
            "when": stamp,
            "mode": mode,
            "window_s": window,
            "true_quota": {"rpm": TRUE_RPM, "tpm": TRUE_TPM},
            "latency": {"fixed_s": LATENCY_S, "per_1k_tokens_s": LATENCY_PER_1K_S},
            "caps": {"task": K_TASK, "proctor": K_PROCTOR},
            "workload": {"task_minutes": task_m, "proctor_minutes": proctor_m},
            "settings": rows,
            "lone": lone_rows,
            "runs": {s.label: [asdict(r) for r in s.runs] for s in drains + lone_settings},
            "cpus": os.cpu_count(),
            "load_at_end": os.getloadavg(),
            "wall_s": round(time.monotonic() - started, 1),
        }
        (RESULTS_DIR / f"drain-{mode}.json").write_text(json.dumps(payload, indent=1) + "\n")
        png = RESULTS_DIR / f"drain-{mode}.png"
        plot(drains, max(r["bound_s"] for r in rows), png, window)

    total_tokens = rows[-1]["input_tokens"]
    lines = [
        f"### {stamp} — `{command(args)}`",
        "",
        f"Workload: {len(task_m)} task analyses ({', '.join(map(str, task_m))} min) and "
        f"{len(proctor_m)} proctor videos ({', '.join(map(str, proctor_m))} min), "
        f"{total_tokens:,} input tokens; caps {K_TASK} task + {K_PROCTOR} proctor at a time. "
        f"True quota {TRUE_RPM} RPM / {TRUE_TPM:,} TPM per model (fake Gemini); one quota "
        f"minute = {window} s here (latencies scaled alike: {LATENCY_S:g} s + "
        f"{LATENCY_PER_1K_S:g} s per 1k tokens, real). {os.cpu_count()} CPUs, load "
        f"{os.getloadavg()[0]:.1f} at the end (shared machine). Plot: "
        f"`bench/results/{png.name}`, data: `bench/results/drain-{mode}.json`.",
        "",
        *table(rows, window),
        "",
        *dashboard_table(rows),
        "",
        "| lone analysis | time | its bound | ratio | status | 429s |",
        "|---|---:|---:|---:|---|---:|",
        *(
            f"| {r['label']} | {r['time_s']} s | {r['bound_s']} s | **{r['ratio']}** | "
            f"{r['status']} | {r['quota_429']} |"
            for r in lone_rows
        ),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.append:
        with RESULTS_MD.open("a") as handle:
            handle.write(text + "\n")
    shared_row = next((r for r in rows if r["label"] == "shared budget"), rows[-1])
    print(f"{shared_row['label']} efficiency: {shared_row['efficiency']}")


def dashboard_table(rows: list[dict[str, Any]]) -> list[str]:
    """The CloudWatch dashboard's figures, computed from the drain's EMF lines alone (one
    period = one quota window; an hour = 60 windows), beside what the bench measured."""
    out = [
        "Dashboard figures from the containers' EMF lines (devtools/emf.py; period = one quota "
        "window): drain progress, throughput against the quota, failures, cost per hour.",
        "",
        "| setting | EMF docs | started / finished (bench) | mean / peak use of quota "
        "| ceiling min | failure rate | 429s (fake) | USD | USD per hour |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        d = row.get("dashboard") or {}
        if not d:
            continue
        quota = next(iter(d["throughput"]["per_model"].values()), {})
        use = (
            f"{quota.get('use_of_quota_mean')} / {quota.get('use_of_quota_peak')}"
            if quota
            else "n/a (memory:// budgets report no fleet state)"
        )
        out.append(
            f"| {row['label']} | {d['emf_documents']} | {d['drain']['started']:.0f} / "
            f"{d['drain']['finished']:.0f} ({row['analyses']}) | {use} | "
            f"{quota.get('ceiling_min', 'n/a')} | {d['failures']['failure_rate']} | "
            f"{d['failures']['gemini_429s']:.0f} ({row['quota_429']}) | "
            f"{d['cost']['estimated_usd']} | {d['cost']['usd_per_hour']} |"
        )
    return out


def command(args: argparse.Namespace) -> str:
    window = f" --window {args.window}" if args.window != 30 else ""
    if args.quick:
        return f"bench/bench_drain.py --quick{window}"
    if args.only or window:
        only = f" --only {args.only}" if args.only else ""
        return f"bench/bench_drain.py{only}{window}"
    return "make bench-drain"


if __name__ == "__main__":
    main()
