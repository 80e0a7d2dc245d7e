"""Drain: how fast a fleet of analyses clears through ONE Gemini project quota.

Real container processes (`python -m task_analyzer`, some `python -m proctor_video`), run
as their images ship (`devtools/image.py`: the clean virtualenv of
`containers/requirements.txt`, the Dockerfiles' layout, bytecode and ENV; not the
development virtualenv, whose extra packages slow every start-up), over generated
recordings of varied lengths, K at a time as the DAG caps would allow,
against the local fake Gemini enforcing a project quota like the real service's (per model:
requests and input tokens per minute, tokens counted from the video seconds a call
references at ~300/s, 429 with RetryInfo.retryDelay beyond it, latency growing with the
call's tokens; its retryDelay coarse, one real second). The shared store is a real
`redis-server` as the production store behaves (`RedisServer.as_shipped`: TLS, the ACL user
Terraform writes, cluster mode enabled).

Time is scaled down so this fits on a laptop: the quota's "minute" lasts `--window` seconds
(GEMINI_BUDGET_WINDOW_SECONDS in the containers, quota_window_s in the fake), and the fake's
latencies shrink by the same factor; quotas and budgets stay in real units per window.
Recordings are tiny (320x180, 2 fps) so preprocessing is cheap; their length, hence their
tokens, is real. Three settings on the same workload:

1. decision record: 12 at a time, MAP_CONCURRENCY=1, static shares (each container quota/12,
   memory:// budget);
2. today's defaults: MAP_CONCURRENCY=4, the same static shares;
3. shared budget: GEMINI_BUDGET_URI=rediss://..., the fleet's limits = the true quota;

plus the shared budget set to twice the true quota (another client on the key); the shared
budget against a service that misbehaves as the real one does: one spurious 429 in the
first minute (`spike`), 1% random spurious 429s (`random`), token counts off by up to 20%
both ways (`spread`), a store that restarts empty at 40% of the drain (`restart`); a mixed
drain where both kinds are quota-bound, with the capacity module's prediction of when the
proctor videos finish (`mixed`); real-size recordings (720p/1080p screens at 30 fps, a
640x480 webcam: preparation and upload count, `real-size`); and a lone 60-minute analysis
under (2) and (3).

    make bench-drain                              # full (~90 min), appends to RESULTS.md
    .venv/bin/python bench/bench_drain.py --quick # < 3 min: shared budget only
    .venv/bin/python bench/bench_drain.py --only shared,spike,random  # some settings

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
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]  # devtools: the repository's, not an installed package

from devtools import capacity, emf  # noqa: E402
from devtools import image as images  # noqa: E402
from devtools.fake_gemini import FakeGemini  # noqa: E402
from devtools.media import make_live_webcam, make_long_screenshare, split_clusters  # noqa: E402
from devtools.redis_server import RedisServer, Tls  # noqa: E402

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
# The mixed drain, quota-bound for both kinds at once: 45-minute proctor videos (each
# container alone asks more than the proctor kind's half of the quota) beside long tasks.
MIXED_TASK_MINUTES = [60] * 5
MIXED_PROCTOR_MINUTES = [45] * 6
# Its caps: still 12 analyses at once, a third of them proctor videos (so that while one is
# preparing the others keep the kind's share of the quota busy).
MIXED_CAPS = (8, 4)
# Real-size recordings (preprocessing and upload count): screenshares at 720p and 1080p,
# 30 fps; webcams at 640x480, 15 fps.
REAL_TASK = [(10, "1280x720"), (20, "1920x1080"), (30, "1280x720"), (45, "1920x1080")]
REAL_PROCTOR_MINUTES = [10]
# The service's own 429s: the retryDelay it sends with them (real seconds; scaled), and its
# quota's retryDelay granularity (whole seconds, scaled).
SPURIOUS_RETRY_DELAY_S = 5.0
RETRY_DELAY_STEP_S = 1.0
# The store restart: at this fraction of the drain's token bound.
RESTART_AT = 0.4
# What --only can pick: the drains and the lone analysis.
SETTING_KEYS = [
    "decision", "defaults", "shared", "shared-2x", "spike", "random", "spread", "restart",
    "mixed", "real-size", "lone", "lone-static",
]  # fmt: skip
SUMMARY_RE = re.compile(
    r"Gemini budget \((?P<where>[^)]*)\): (?P<calls>\d+) calls admitted, "
    r"waited max (?P<max>[\d.]+) s, total (?P<total>[\d.]+) s"
    r"(?:, (?P<r429>\d+) 429s, longest without an admission (?P<gap>[\d.]+) s)?"
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
    rate_limited: int = 0
    longest_gap_s: float = 0.0


@dataclass
class Setting:
    label: str
    env: dict[str, str]
    runs: list[Run] = field(default_factory=list)
    fake: dict[str, Any] = field(default_factory=dict)
    drain_s: float = 0.0
    # How the fake behaves on top of the quota (spikes, random 429s, token spread).
    service: dict[str, Any] = field(default_factory=dict)
    # Its own workload (else the common one) and caps (task, proctor), and when to restart
    # the store (scaled s).
    items: list[Item] | None = None
    caps: tuple[int, int] = (K_TASK, K_PROCTOR)
    restart_at_s: float | None = None
    # The CloudWatch dashboard's figures, computed from the EMF lines the containers printed.
    dashboard: dict[str, Any] = field(default_factory=dict)


# -- inputs -------------------------------------------------------------------------------


def task_recording(minutes: int, size: str = "320x180", fps: int = 2) -> Path:
    path, _ = make_long_screenshare(
        CACHE, minutes=minutes, size=size, fps=fps, cycle_seconds=300, idle_in_cycle=()
    )
    return path


def proctor_chunks(minutes: int, size: str = "160x120", fps: int = 2) -> Path:
    tag = "" if (size, fps) == ("160x120", 2) else f"-{size}-{fps}fps"
    directory = CACHE / f"webcam-{minutes}min{tag}-chunks"
    if not (directory / "0.webm").exists():
        source = make_live_webcam(
            CACHE / f"webcam-{minutes}min{tag}.webm", duration=minutes * 60, size=size, fps=fps
        )
        split_clusters(source, directory)
    return directory


def workload(
    task_minutes: list[int],
    proctor_minutes: list[int],
    *,
    task_sizes: list[str] | None = None,
    real_size: bool = False,
) -> list[Item]:
    fps = {"task": 30, "proctor": 15} if real_size else {"task": 2, "proctor": 2}
    sizes = task_sizes or ["320x180"] * len(task_minutes)
    tasks = [
        Item(f"task-{i:02d}-{m}min", "task", m,
             f"file://{task_recording(m, sizes[i], fps['task'])}")
        for i, m in enumerate(task_minutes)
    ]  # fmt: skip
    webcam = "640x480" if real_size else "160x120"
    proctors = [
        Item(f"proctor-{i:02d}-{m}min", "proctor", m,
             f"file://{proctor_chunks(m, webcam, fps['proctor'])}/")
        for i, m in enumerate(proctor_minutes)
    ]  # fmt: skip
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
        rate_limited=int(summary["r429"] or 0) if summary else 0,
        longest_gap_s=float(summary["gap"] or 0.0) if summary else 0.0,
    )


async def drain(
    items: list[Item],
    env: dict[str, str],
    out: Path,
    laid: dict[str, images.Image],
    restart: tuple[float, Callable[[], None]] | None = None,
    limits: tuple[int, int] = (K_TASK, K_PROCTOR),
) -> tuple[list[Run], float]:
    caps = {"task": asyncio.Semaphore(limits[0]), "proctor": asyncio.Semaphore(limits[1])}
    t0 = time.monotonic()

    async def one(item: Item) -> Run:
        async with caps[item.kind]:
            return await run_item(item, env, out / item.name, t0, laid[item.module])

    async def restart_store(at_s: float, action: Callable[[], None]) -> None:
        await asyncio.sleep(at_s)
        print(f"   restarting the budget store at {time.monotonic() - t0:.1f} s", flush=True)
        await asyncio.to_thread(action)

    runs_task = asyncio.gather(*(one(item) for item in items))
    if restart is not None:
        restarter = asyncio.create_task(restart_store(*restart))
    runs = await runs_task
    if restart is not None:
        await restarter
    return list(runs), time.monotonic() - t0


# What a setting's `service` may change in the fake; every drain starts from these.
SERVICE_DEFAULTS: dict[str, Any] = {"spikes": [], "rates": {}, "token_bias": 0.0,
                                    "token_spread": 0.0, "seed": 0}  # fmt: skip


def run_setting(
    setting: Setting,
    items: list[Item],
    fake: FakeGemini,
    out: Path,
    laid: dict[str, images.Image],
    window_s: int,
    store: RedisServer | None = None,
) -> Setting:
    fake.configure(**{**SERVICE_DEFAULTS, **setting.service})
    fake.reset()
    items = setting.items or items
    print(f"== {setting.label}: {len(items)} analyses ...", flush=True)
    folder = out / slug(setting.label)
    restart = (
        (setting.restart_at_s, store.restart)
        if setting.restart_at_s is not None and store is not None
        else None
    )
    runs, drain_s = asyncio.run(drain(items, setting.env, folder, laid, restart, setting.caps))
    stats = fake.stats
    setting.runs, setting.drain_s = runs, drain_s
    setting.fake = {
        "generate_calls": stats["calls"].get("generate", 0),
        "quota_429": stats["quota_rejections"],
        "injected_429": stats["outcomes"].get("429", 0),
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


def tokens_bound(items: list[Item], window_s: int) -> float:
    """The drain's token bound before it runs (scaled seconds), from the recordings' length."""
    return sum(tokens_estimate(item.minutes) for item in items) / TRUE_TPM * window_s


def predicted_vs_measured(setting: Setting, window_s: int) -> dict[str, Any]:
    """What terraform/modules/capacity predicts for the proctor videos of this drain (the
    same caps, weights, quota and recording profile; tokens per second of video as the
    runs measured them, the minutes of one unhindered analysis modelled from its
    preparation and two waves of calls), against when the last one finished. The module's
    drain is the steady state (batch / rate); a drain that starts from nothing first spends
    one preparation (the module's overhead_minutes) before its first call, added here."""
    scale = window_s / 60
    call_s = LATENCY_S + LATENCY_PER_1K_S * SEGMENT_SECONDS * TOKENS_PER_SECOND / 1000
    workloads: dict[str, Any] = {}
    for kind, name, cap in (
        ("task", "task-analyzer", setting.caps[0]),
        ("proctor", "proctor-video", setting.caps[1]),
    ):
        runs = [r for r in setting.runs if r.kind == kind]
        seconds = sum(r.minutes * 60 for r in runs)
        workloads[name] = {
            "max_concurrent": cap, "vcpu": 1, "memory_mib": 2048,
            "avg_recording_minutes": seconds / 60 / len(runs),
            "segment_seconds": SEGMENT_SECONDS,
            "tokens_per_second": sum(r.input_tokens for r in runs) / seconds,
            "tokens_per_call_overhead": 0,
            "map_concurrency": 64,
            "seconds_per_call": call_s,
            "overhead_minutes": statistics.mean(r.prep_s for r in runs) / scale / 60,
            "batch_size": len(runs),
        }  # fmt: skip
    plan = capacity.evaluate(
        None,
        {"workloads": workloads, "gemini_project_rpm": TRUE_RPM, "gemini_project_tpm": TRUE_TPM},
    ).plan
    assert plan is not None, "the capacity module refused the mixed drain's workloads"
    fill_min = workloads["proctor-video"]["overhead_minutes"]
    predicted = (plan["drain"]["proctor-video"]["hours"] * 60 + fill_min) * 60 * scale
    measured = max(r.finished_s for r in setting.runs if r.kind == "proctor")
    return {
        "proctor_predicted_s": round(predicted, 1),
        "proctor_measured_s": round(measured, 1),
        "error": round(predicted / measured - 1, 3),
        "binding": plan["drain"]["proctor-video"]["binding"],
        "shares_tpm": plan["gemini_shares"],
    }


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
    ok_calls = fake["generate_calls"] - fake["quota_429"] - fake["injected_429"]
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
        "injected_429": fake["injected_429"],
        "all_429_rate": round(
            (fake["quota_429"] + fake["injected_429"]) / max(1, fake["generate_calls"]), 4
        ),
        "longest_gap_s": round(max((r.longest_gap_s for r in runs), default=0.0), 1),
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
        "| setting | drain (real min) | bound | efficiency | quota 429s / calls | injected "
        "429s | slowest wait | longest without admission | first report | all complete? |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        complete = r["statuses"].get("complete", 0) == r["analyses"]
        lines.append(
            f"| {r['label']} | {r['drain_s']} s ({m(r['drain_s'])}) | {r['bound_s']} s "
            f"({m(r['bound_s'])}) | **{r['efficiency']}** | {r['quota_429']} / "
            f"{r['generate_calls']} ({r['quota_429_rate']:.1%}) | {r.get('injected_429', 0)} "
            f"| {r['slowest_wait_s']} s | {r.get('longest_gap_s', 0.0)} s "
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
    if args.quick and not args.only:
        only = {"shared"}
    if unknown := only - set(SETTING_KEYS):
        parser.error(f"--only: unknown setting(s) {sorted(unknown)}; known: {SETTING_KEYS}")
    if args.quick and only & {"lone", "lone-static", "mixed", "real-size"}:
        parser.error("--quick runs drains of the quick workload: no lone, mixed or real-size")
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
    mixed = workload(MIXED_TASK_MINUTES, MIXED_PROCTOR_MINUTES) if "mixed" in only else []
    real = (
        workload([m for m, _ in REAL_TASK], REAL_PROCTOR_MINUTES,
                 task_sizes=[size for _, size in REAL_TASK], real_size=True)
        if "real-size" in only
        else []
    )  # fmt: skip
    print(f"inputs ready in {time.monotonic() - started:.0f} s", flush=True)
    fake_config = {
        "quota_rpm": TRUE_RPM,
        "quota_tpm": TRUE_TPM,
        "quota_window_s": float(window),
        "latency_s": LATENCY_S * scale,
        "latency_per_1k_tokens_s": LATENCY_PER_1K_S * scale,
        # The service's 429s: a coarse retryDelay on the quota's, and this one on its own.
        "retry_delay_step_s": RETRY_DELAY_STEP_S * scale,
        "retry_delay": f"{SPURIOUS_RETRY_DELAY_S * scale:g}s",
    }
    rows: list[dict[str, Any]] = []
    lone_rows: list[dict[str, Any]] = []
    runtime = images.runtime(as_image_user=False)
    with (
        RedisServer.as_shipped(Tls.make(CACHE / "tls")) as redis_server,
        FakeGemini(**fake_config) as fake,
        tempfile.TemporaryDirectory(prefix="bench-drain-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        laid = {name: stack.enter_context(images.laid_out(name, runtime)) for name in images.IMAGES}
        out = args.keep or Path(tmp)
        base = base_env(fake, window)
        shared = Setting("shared budget", shared_env(base, redis_server.uri))
        # Every setting, then those asked for.
        every = {
            "decision": Setting("decision record (12, MAP 1, static shares)", static_env(base, 1)),
            "defaults": Setting("today's defaults (MAP 4, static shares)", static_env(base, 4)),
            "shared": shared,
            "shared-2x": Setting(
                "shared budget at 2x the true quota",
                shared_env(base, redis_server.uri, factor=2),
            ),
            # The service's own 429s and its token count, against the shared budget.
            "spike": Setting(
                "shared, one spurious 429 in the first minute",
                shared.env,
                service={"spikes": [{"at_s": 0.4 * window, "count": 1}]},
            ),
            "random": Setting(
                "shared, 1% random spurious 429s", shared.env, service={"rates": {"429": 0.01}}
            ),
            "spread": Setting(
                "shared, token counts off by up to 20% both ways",
                shared.env,
                service={"token_spread": 0.2, "seed": 11},
            ),
            "restart": Setting(
                "shared, the store restarts empty mid-drain",
                shared.env,
                restart_at_s=RESTART_AT * tokens_bound(items, window),
            ),
            "mixed": Setting(
                "mixed: 5 x 60-min tasks, 6 x 45-min proctor videos, both quota-bound",
                shared.env,
                items=mixed,
                caps=MIXED_CAPS,
            ),
            "real-size": Setting(
                "shared, real-size recordings (720p/1080p screens, 640x480 webcam)",
                shared.env,
                items=real,
            ),
        }
        drains = [setting for key, setting in every.items() if key in only]
        # The lone 60-minute analysis: the shared budget's first (its measured time is also
        # the bound's "longest analysis alone" term for every setting).
        lone_settings: list[Setting] = []
        if not args.quick:  # quick mode: drains only
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
            run_setting(setting, items, fake, out, laid, window, redis_server)
            # Its own workload: the "longest analysis alone" term is its slowest run's own
            # bound (its tokens at the whole quota, plus its preparation, one call, REDUCE).
            alone = (
                max(lone_bound(run, window) for run in setting.runs)
                if setting.items is not None
                else longest_alone
            )
            rows.append(metrics(setting, window, alone))
            if setting.items is mixed and mixed:
                rows[-1]["prediction"] = predicted_vs_measured(setting, window)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        picked = "-".join(key for key in SETTING_KEYS if key in only)
        mode = (
            ("quick" if only == {"shared"} else f"quick-{picked}")
            if args.quick
            else "full"
            if only == set(SETTING_KEYS)
            else picked
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
        only = f" --only {args.only}" if args.only else ""
        return f"bench/bench_drain.py --quick{only}{window}"
    if args.only or window:
        only = f" --only {args.only}" if args.only else ""
        return f"bench/bench_drain.py{only}{window}"
    return "make bench-drain"


if __name__ == "__main__":
    main()
