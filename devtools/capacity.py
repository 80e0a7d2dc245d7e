"""Capacity planner: what operators run before `terraform apply` (`make capacity`).

It reproduces the decision record's arithmetic (350 ÷ 12 × 35 min ≈ 17 h), then, from the
same tfvars Terraform applies, predicts each workload's drain time, names the binding
constraint (Fargate vCPU, Gemini RPM or Gemini TPM) and the lever to move next.

The formulas mirror `terraform/modules/capacity/main.tf` one for one; both are checked
against `terraform/modules/capacity/tests/cases.json` (pytest here, `terraform test` there),
so planning and applying cannot drift apart. Pure core: no network, no AWS.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import struct
import sys
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
TERRAFORM_DIR = REPO_ROOT / "terraform"
DEFAULT_TFVARS = (
    TERRAFORM_DIR / "terraform.tfvars",
    TERRAFORM_DIR / "examples" / "decision-record.tfvars",
)
CASES_FILE = TERRAFORM_DIR / "modules" / "capacity" / "tests" / "cases.json"

# Published Gemini video cost: ~300 input tokens per second (default media resolution), ~100 (low).
PUBLISHED_TOKENS_PER_SECOND = {"default": 300, "low": 100}
CONSTRAINTS = ("Fargate vCPU", "Gemini RPM", "Gemini TPM")
FARGATE_MEMORY = {  # vcpu -> (min, max, step) MiB
    1: (2048, 8192, 1024),
    2: (4096, 16384, 1024),
    4: (8192, 30720, 1024),
    8: (16384, 61440, 4096),
    16: (32768, 122880, 8192),
}
# Which DAG lever each container's cap is (names in plugins/analysis_pipeline/config.py).
CAP_LEVERS = {
    "task-analyzer": "MAX_CONCURRENT_ANALYSES",
    "proctor-video": "MAX_CONCURRENT_PROCTOR_VIDEOS",
}


@dataclass(frozen=True)
class Workload:
    """One container's levers; defaults equal the module's `optional(...)` defaults."""

    max_concurrent: int
    vcpu: int
    memory_mib: int
    gemini_weight: float = 1
    avg_recording_minutes: float = 30
    idle_fraction: float = 0
    segment_seconds: float = 120
    media_resolution: str = "default"
    tokens_per_second: float | None = None
    map_concurrency: int = 4
    seconds_per_call: float = 120
    overhead_minutes: float = 3
    tokens_per_call_overhead: float = 2000
    minutes_per_analysis: float | None = None
    batch_size: float = 0

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Workload:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


@dataclass(frozen=True)
class Levers:
    """The module's inputs; defaults equal the module's variable defaults."""

    workloads: Mapping[str, Workload]
    gemini_project_rpm: float
    gemini_project_tpm: float
    fargate_vcpu_quota: float | None = None
    fargate_vcpu_quota_applied: float | None = None
    headroom_vcpu: float = 0
    gemini_reserved_fraction: float = 0
    min_tpm_budget: float = 1000
    analysis_timeout_minutes: float = 120


@dataclass(frozen=True)
class Drain:
    analyses_per_hour: float
    binding: str
    hours: float | None
    fargate_per_hour: float
    rpm_per_hour: float
    tpm_per_hour: float


@dataclass(frozen=True)
class Plan:
    """The module's outputs, plus the errors its validations/preconditions would raise."""

    vcpu_by_workload: dict[str, float]
    required_vcpu: float
    quota_to_request: float
    quota_increase_needed: bool
    effective_caps: dict[str, int]
    caps_limited_by_quota: bool
    pool_vcpu: float
    gemini_rpm_budget: dict[str, int]
    gemini_tpm_budget: dict[str, int]
    per_analysis: dict[str, dict[str, float]]
    drain: dict[str, Drain]
    errors: dict[str, str] = field(default_factory=dict)


# --- the arithmetic (mirror of terraform/modules/capacity/main.tf) -----------------------


def _tokens_per_second(w: Workload) -> float:
    if w.tokens_per_second is not None:
        return w.tokens_per_second
    return PUBLISHED_TOKENS_PER_SECOND.get(w.media_resolution, 300)


def per_analysis(w: Workload) -> dict[str, float]:
    analysed_seconds = w.avg_recording_minutes * 60 * (1 - w.idle_fraction)
    segments = max(1, math.ceil(analysed_seconds / w.segment_seconds))
    requests = segments + 1  # MAP per segment + one REDUCE
    modelled = w.overhead_minutes + (math.ceil(segments / w.map_concurrency) + 1) * (
        w.seconds_per_call / 60
    )
    return {
        "requests": requests,
        "tokens": analysed_seconds * _tokens_per_second(w) + requests * w.tokens_per_call_overhead,
        "modelled_minutes": modelled,
        "minutes": w.minutes_per_analysis if w.minutes_per_analysis is not None else modelled,
        "segments": segments,
        "tokens_per_call": w.segment_seconds * _tokens_per_second(w) + w.tokens_per_call_overhead,
    }


def validate(levers: Levers) -> dict[str, str]:
    """The module's variable validations: name of the failing variable -> reason."""
    errors: dict[str, str] = {}
    for name, w in levers.workloads.items():
        problem = _workload_problem(w)
        if problem:
            errors["var.workloads"] = f"{name}: {problem}"
    if levers.fargate_vcpu_quota is not None and levers.fargate_vcpu_quota < 1:
        errors["var.fargate_vcpu_quota"] = "must be >= 1"
    if levers.headroom_vcpu < 0:
        errors["var.headroom_vcpu"] = "must be >= 0"
    if levers.gemini_project_rpm < 1:
        errors["var.gemini_project_rpm"] = "must be >= 1"
    if levers.gemini_project_tpm < 1:
        errors["var.gemini_project_tpm"] = "must be >= 1"
    if not 0 <= levers.gemini_reserved_fraction < 1:
        errors["var.gemini_reserved_fraction"] = "must be in [0, 1)"
    if levers.analysis_timeout_minutes < 1:
        errors["var.analysis_timeout_minutes"] = "must be >= 1"
    return errors


def _workload_problem(w: Workload) -> str | None:
    if w.max_concurrent < 1 or w.max_concurrent != int(w.max_concurrent):
        return "max_concurrent must be a whole number >= 1"
    if w.vcpu not in FARGATE_MEMORY:
        return "vcpu must be one of 1, 2, 4, 8, 16"
    low, high, step = FARGATE_MEMORY[w.vcpu]
    if not (low <= w.memory_mib <= high and w.memory_mib % step == 0):
        return f"memory_mib {w.memory_mib} is not a Fargate size for {w.vcpu} vCPU"
    if w.media_resolution not in PUBLISHED_TOKENS_PER_SECOND:
        return "media_resolution must be default or low"
    in_range = (
        w.gemini_weight > 0
        and w.avg_recording_minutes > 0
        and 0 <= w.idle_fraction < 1
        and 10 <= w.segment_seconds <= 3600
        and 1 <= w.map_concurrency <= 64
        and w.map_concurrency == int(w.map_concurrency)
        and w.seconds_per_call > 0
        and w.overhead_minutes >= 0
        and w.tokens_per_call_overhead >= 0
        and w.batch_size >= 0
        and (w.minutes_per_analysis is None or w.minutes_per_analysis > 0)
        and (w.tokens_per_second is None or w.tokens_per_second > 0)
    )
    return None if in_range else "profile out of range"


def plan(levers: Levers) -> Plan:
    """Everything the module computes. Call `validate` first: this assumes valid inputs."""
    wl = levers.workloads
    vcpu_by = {k: w.max_concurrent * w.vcpu for k, w in wl.items()}
    caps_vcpu = sum(vcpu_by.values())
    required = caps_vcpu + levers.headroom_vcpu
    applied = levers.fargate_vcpu_quota_applied
    quota_to_request = max(math.ceil(required), levers.fargate_vcpu_quota or 0, applied or 0)

    available = caps_vcpu if applied is None else max(0, applied - levers.headroom_vcpu)
    ratio = 1 if caps_vcpu <= available else available / caps_vcpu
    effective = {
        k: w.max_concurrent if ratio >= 1 else max(1, math.floor(w.max_concurrent * ratio))
        for k, w in wl.items()
    }

    usable_rpm = math.floor(levers.gemini_project_rpm * (1 - levers.gemini_reserved_fraction))
    usable_tpm = math.floor(levers.gemini_project_tpm * (1 - levers.gemini_reserved_fraction))
    slots = sum(w.max_concurrent * w.gemini_weight for w in wl.values())
    rpm_budget = {k: math.floor(usable_rpm * w.gemini_weight / slots) for k, w in wl.items()}
    tpm_budget = {k: math.floor(usable_tpm * w.gemini_weight / slots) for k, w in wl.items()}

    per = {k: per_analysis(w) for k, w in wl.items()}
    drain = {}
    for k, w in wl.items():
        rates = (
            w.max_concurrent * 60 / per[k]["minutes"],
            rpm_budget[k] * w.max_concurrent * 60 / per[k]["requests"],
            tpm_budget[k] * w.max_concurrent * 60 / per[k]["tokens"],
        )
        best = min(rates)
        hours = w.batch_size / best if best > 0 else None  # a zero budget never drains
        drain[k] = Drain(best, CONSTRAINTS[rates.index(best)], hours, *rates)

    errors = _preconditions(levers, required, usable_rpm, slots, rpm_budget, tpm_budget, per)
    return Plan(
        vcpu_by_workload=vcpu_by,
        required_vcpu=required,
        quota_to_request=quota_to_request,
        quota_increase_needed=True if applied is None else quota_to_request > applied,
        effective_caps=effective,
        caps_limited_by_quota=any(effective[k] < w.max_concurrent for k, w in wl.items()),
        pool_vcpu=sum(effective[k] * w.vcpu for k, w in wl.items()),
        gemini_rpm_budget=rpm_budget,
        gemini_tpm_budget=tpm_budget,
        per_analysis={
            k: {n: per[k][n] for n in ("requests", "tokens", "modelled_minutes", "minutes")}
            for k in per
        },
        drain=drain,
        errors=errors,
    )


def _preconditions(
    levers: Levers,
    required: float,
    usable_rpm: int,
    slots: float,
    rpm_budget: Mapping[str, int],
    tpm_budget: Mapping[str, int],
    per: Mapping[str, Mapping[str, float]],
) -> dict[str, str]:
    """The module's output preconditions: failing output -> reason (as `plan` reports it)."""
    errors: dict[str, str] = {}
    quota = levers.fargate_vcpu_quota
    if quota is not None and required > quota:
        errors["output.required_vcpu"] = (
            f"the DAG caps need {required:g} vCPU but fargate_vcpu_quota is {quota:g}: "
            "raise fargate_vcpu_quota or lower the caps"
        )
    if any(v < 1 for v in rpm_budget.values()):
        errors["output.gemini_rpm_budget"] = (
            f"a Gemini RPM budget rounds to zero: {usable_rpm} usable RPM over {slots:g} slots"
        )
    if any(v < levers.min_tpm_budget for v in tpm_budget.values()):
        errors["output.gemini_tpm_budget"] = (
            f"a Gemini TPM budget is below the containers' minimum {levers.min_tpm_budget:g}"
        )
    elif any(tpm_budget[k] < per[k]["tokens_per_call"] for k in tpm_budget):
        errors["output.gemini_tpm_budget"] = (
            "one MAP call needs more tokens than a container may spend in a minute "
            "(raise the Gemini TPM, shorten segments or use low media resolution)"
        )
    if any(p["minutes"] >= levers.analysis_timeout_minutes for p in per.values()):
        errors["output.per_analysis"] = (
            f"analysis_timeout_minutes ({levers.analysis_timeout_minutes:g}) is shorter than a "
            "predicted analysis"
        )
    return errors


def record_hours(submissions: float, concurrency: float, minutes_per_analysis: float) -> float:
    """The decision record's figure: results land as each finishes, so no rounding to waves."""
    return submissions / concurrency * minutes_per_analysis / 60


# --- the advisor ----------------------------------------------------------------------------


def next_lever(levers: Levers, name: str) -> str:
    """One sentence: which lever to move next for workload `name`, and how far."""
    p = plan(levers)
    d = p.drain[name]
    w = levers.workloads[name]
    cap_lever = CAP_LEVERS.get(name, f"{name} max_concurrent")
    if d.binding == "Fargate vCPU":
        return _raise_cap_advice(levers, name, w, cap_lever, d)
    factor = d.fargate_per_hour / (d.rpm_per_hour if d.binding == "Gemini RPM" else d.tpm_per_hour)
    if d.binding == "Gemini RPM":
        need = math.ceil(levers.gemini_project_rpm * factor)
        return (
            f"raise the Gemini project RPM from {levers.gemini_project_rpm:,.0f} to >= {need:,} "
            f"(or lengthen SEGMENT_SECONDS from {w.segment_seconds:g}: fewer calls per analysis); "
            f"until then more Fargate vCPU or a higher {cap_lever} buys nothing"
        )
    need = math.ceil(levers.gemini_project_tpm * factor)
    cheaper = (
        "media_resolution = low (100 tokens/s instead of 300), "
        if (_tokens_per_second(w) > PUBLISHED_TOKENS_PER_SECOND["low"])
        else ""
    )
    return (
        f"raise the Gemini project TPM from {levers.gemini_project_tpm:,.0f} to >= {need:,} "
        f"(or {cheaper}more idle skipping); until then more Fargate vCPU or a higher "
        f"{cap_lever} buys nothing"
    )


def _raise_cap_advice(levers: Levers, name: str, w: Workload, cap_lever: str, d: Drain) -> str:
    best_cap, best_rate, best_quota, stop = w.max_concurrent, d.analyses_per_hour, None, ""
    for cap in range(w.max_concurrent + 1, w.max_concurrent * 20 + 2):
        trial = _with_cap(levers, name, cap)
        result = plan(trial)
        if result.errors:
            stop = "; beyond that the plan fails: " + next(iter(result.errors.values()))
            break
        rate = result.drain[name].analyses_per_hour
        if rate <= best_rate + 1e-9:
            stop = f"; beyond that {result.drain[name].binding} binds"
            break
        best_cap, best_rate, best_quota = cap, rate, trial.fargate_vcpu_quota
    if best_cap == w.max_concurrent:
        return f"{cap_lever} cannot usefully rise{stop}: move the Gemini quota first"
    quota_now = levers.fargate_vcpu_quota
    quota_part = (
        f" and fargate_vcpu_quota from {quota_now:g} to {best_quota:g}"
        if quota_now is not None and best_quota is not None and best_quota > quota_now
        else " (fits the current quota)"
    )
    hours = w.batch_size / best_rate if w.batch_size else 0
    return (
        f"raise {cap_lever} from {w.max_concurrent} to {best_cap}{quota_part} in one apply "
        f"-> {best_rate:.1f} analyses/h"
        + (f", {hours:.1f} h for the batch" if hours else "")
        + stop
    )


def _with_cap(levers: Levers, name: str, cap: int) -> Levers:
    workloads = dict(levers.workloads)
    workloads[name] = dataclasses.replace(workloads[name], max_concurrent=cap)
    trial = dataclasses.replace(levers, workloads=workloads)
    if levers.fargate_vcpu_quota is not None:
        need = math.ceil(
            sum(x.max_concurrent * x.vcpu for x in workloads.values()) + levers.headroom_vcpu
        )
        trial = dataclasses.replace(trial, fargate_vcpu_quota=max(levers.fargate_vcpu_quota, need))
    return trial


# --- reading the tfvars Terraform applies ---------------------------------------------------


def _strip(value: Any) -> Any:
    """python-hcl2 keeps the quotes of quoted keys/strings; Terraform does not."""
    if isinstance(value, str):
        return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    if isinstance(value, dict):
        return {_strip(k): _strip(v) for k, v in value.items() if not str(k).startswith("__")}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def load_hcl(path: Path) -> dict[str, Any]:
    import hcl2  # dev dependency; imported here so the arithmetic needs nothing

    with path.open() as handle:
        return _strip(hcl2.load(handle))


def root_defaults(variables_tf: Path = TERRAFORM_DIR / "variables.tf") -> dict[str, Any]:
    """Defaults of the root module's variables, so an omitted tfvar means the same here."""
    parsed = load_hcl(variables_tf)
    out: dict[str, Any] = {}
    for block in parsed.get("variable", []):
        for name, body in block.items():
            if "default" in body:
                out[name] = body["default"]
    return out


def levers_from_tfvars(path: Path) -> Levers:
    values = {**root_defaults(), **load_hcl(path)}
    workloads = {k: Workload.from_mapping(v) for k, v in values["workloads"].items()}
    known = {f.name for f in dataclasses.fields(Levers)} - {"workloads"}
    return Levers(workloads=workloads, **{k: v for k, v in values.items() if k in known})


def default_tfvars() -> Path:
    return next(p for p in DEFAULT_TFVARS if p.exists())


# --- PNG drain curve (tiny encoder: no plotting dependency) --------------------------------


def write_png(path: Path, pixels: Sequence[Sequence[tuple[int, int, int]]]) -> None:
    height, width = len(pixels), len(pixels[0])
    raw = b"".join(b"\x00" + bytes(c for px in row for c in px) for row in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189))
COLOUR_NAMES = ("blue", "red", "green", "purple")


# 3x5 pixel glyphs, enough to label the axes (hours and analyses) without a font library.
GLYPHS = {
    "0": "111101101101111",
    "1": "010110010010111",
    "2": "111001111100111",
    "3": "111001111001111",
    "4": "101101111001001",
    "5": "111100111001111",
    "6": "111100111101111",
    "7": "111001001001001",
    "8": "111101111101111",
    "9": "111101111001111",
    "h": "100100111101101",
}
Image = list[list[tuple[int, int, int]]]


def _text(img: Image, x: int, y: int, text: str, scale: int = 2) -> None:
    for i, char in enumerate(text):
        bits = GLYPHS.get(char, "0" * 15)
        for n, bit in enumerate(bits):
            if bit == "1":
                for dy in range(scale):
                    for dx in range(scale):
                        px, py = x + (i * 4 + n % 3) * scale + dx, y + (n // 3) * scale + dy
                        if 0 <= py < len(img) and 0 <= px < len(img[0]):
                            img[py][px] = (60, 60, 60)


def drain_curve(
    series: Mapping[str, tuple[float, float]], width: int = 640, height: int = 360
) -> Image:
    """Completed analyses over time: one line per workload, (rate per hour, batch)."""
    pad = 40
    horizon = max((batch / rate for rate, batch in series.values() if rate > 0), default=1) * 1.1
    top = max((batch for _, batch in series.values()), default=1) * 1.05
    img = [[(255, 255, 255)] * width for _ in range(height)]
    step = max(1, math.ceil(horizon / 12))
    for hour in range(0, int(horizon) + 1):  # grid each hour, labelled every `step`
        x = pad + int(hour / horizon * (width - 2 * pad))
        for y in range(pad, height - pad):
            img[y][x] = (225, 225, 225)
        if hour % step == 0:
            _text(img, x - 4, height - pad + 6, f"{hour}h")
    for x in range(pad, width - pad):
        img[height - pad][x] = (0, 0, 0)
    for y in range(pad, height - pad + 1):
        img[y][pad] = (0, 0, 0)
    for colour, (rate, batch) in zip(COLOURS, series.values(), strict=False):
        y_batch = height - pad - int(batch / top * (height - 2 * pad))
        _text(img, 2, y_batch - 5, f"{batch:.0f}")
        for x in range(pad, width - pad):
            hours = (x - pad) / (width - 2 * pad) * horizon
            done = min(batch, rate * hours)
            y = height - pad - int(done / top * (height - 2 * pad))
            for dy in (-1, 0, 1):
                img[max(0, min(height - 1, y + dy))][x] = colour
    return img


# --- CLI --------------------------------------------------------------------------------------


def _apply_overrides(levers: Levers, args: argparse.Namespace) -> tuple[Levers, list[str]]:
    """CLI what-ifs on top of the tfvars; each one is listed as differing from the tfvars."""
    notes: list[str] = []
    name = args.workload
    w = levers.workloads[name]
    per_workload = {
        "max_concurrent": args.concurrency,
        "minutes_per_analysis": args.minutes_per_analysis,
        "vcpu": args.vcpu_per_task,
        "avg_recording_minutes": args.recording_minutes,
        "tokens_per_second": args.tokens_per_second,
        "idle_fraction": args.idle_fraction,
        "segment_seconds": args.segment_seconds,
        "map_concurrency": args.map_concurrency,
        "batch_size": args.submissions,
    }
    changes = {k: v for k, v in per_workload.items() if v is not None}
    notes += [
        f"workloads[{name}].{k} = {_show(v)} (tfvars: {_show(getattr(w, k))})"
        for k, v in changes.items()
        if k != "batch_size" and getattr(w, k) != v
    ]
    workloads = {**levers.workloads, name: dataclasses.replace(w, **changes)}
    top = {
        "fargate_vcpu_quota": args.vcpu_quota,
        "gemini_project_rpm": args.rpm,
        "gemini_project_tpm": args.tpm,
    }
    top_changes = {k: v for k, v in top.items() if v is not None}
    notes += [
        f"{k} = {_show(v)} (tfvars: {_show(getattr(levers, k))})"
        for k, v in top_changes.items()
        if getattr(levers, k) != v
    ]
    return dataclasses.replace(levers, workloads=workloads, **top_changes), notes


def _show(value: Any) -> str:
    if value is None:
        return "unset"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.4g}"


def report(levers: Levers, args: argparse.Namespace, notes: Sequence[str]) -> tuple[str, int]:
    lines: list[str] = []
    if args.submissions and args.concurrency and args.minutes_per_analysis:
        hours = record_hours(args.submissions, args.concurrency, args.minutes_per_analysis)
        waves = math.ceil(args.submissions / args.concurrency)
        lines += [
            "Decision-record arithmetic",
            f"  {args.submissions:g} submissions ÷ {args.concurrency:g} concurrent × "
            f"{args.minutes_per_analysis:g} min = {hours * 60:.1f} min "
            f"≈ {hours:.1f} h to fully drain",
            f"  (upper bound in whole waves: {waves} × {args.minutes_per_analysis:g} min = "
            f"{waves * args.minutes_per_analysis / 60:.1f} h; results land as each finishes)",
            "",
        ]
    errors = validate(levers)
    p = plan(levers) if not errors else None
    if p is not None:
        errors = p.errors
    lines.append(f"Levers (from {args.tfvars})" + (" with what-ifs:" if notes else ""))
    lines += [f"  what-if, differs from the tfvars: {n}" for n in notes]
    if p is None:
        lines += [f"  terraform plan would fail: {k}: {v}" for k, v in errors.items()]
        return "\n".join(lines), 1
    quota = levers.fargate_vcpu_quota
    lines += [
        f"  Fargate vCPU: caps need {_show(p.required_vcpu)} (headroom "
        f"{_show(levers.headroom_vcpu)}) of quota "
        f"{'(sized from the caps)' if quota is None else _show(quota)}; "
        f"request {_show(p.quota_to_request)}",
        f"  Gemini project: {_show(levers.gemini_project_rpm)} RPM, "
        f"{_show(levers.gemini_project_tpm)} TPM "
        f"(reserved {levers.gemini_reserved_fraction:.0%})",
        "",
    ]
    for name, w in levers.workloads.items():
        lines += _workload_lines(levers, p, name, w)
    lines += [f"terraform plan would fail: {k}: {v}" for k, v in errors.items()]
    return "\n".join(lines), 1 if errors else 0


def _workload_lines(levers: Levers, p: Plan, name: str, w: Workload) -> list[str]:
    d, per = p.drain[name], p.per_analysis[name]
    source = "measured" if w.minutes_per_analysis is not None else "modelled"
    out = [
        f"{name}: cap {w.max_concurrent} × {w.vcpu} vCPU / {w.memory_mib} MiB, "
        f"{per['minutes']:.1f} min per analysis ({source}), "
        f"{per['requests']:g} Gemini calls and {per['tokens']:,.0f} tokens each",
        f"  per container: GEMINI_RPM_BUDGET={p.gemini_rpm_budget[name]} "
        f"GEMINI_TPM_BUDGET={p.gemini_tpm_budget[name]}",
        f"  analyses/h allowed by Fargate vCPU {d.fargate_per_hour:.1f}, "
        f"Gemini RPM {d.rpm_per_hour:.1f}, Gemini TPM {d.tpm_per_hour:.1f}",
        f"  binding constraint: {d.binding}",
    ]
    if w.batch_size:
        drain = "never (a Gemini budget is zero)" if d.hours is None else f"{d.hours:.1f} h"
        out.append(f"  predicted drain of {w.batch_size:g}: {drain}")
    out += [f"  lever to move next: {next_lever(levers, name)}", ""]
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="make capacity", description=__doc__.split("\n\n")[0])
    ap.add_argument("--tfvars", type=Path, default=None, help="tfvars Terraform applies")
    ap.add_argument("--workload", default="task-analyzer", help="which container the what-ifs move")
    ap.add_argument("--submissions", type=float, help="batch to drain (SUBMISSIONS)")
    ap.add_argument("--concurrency", type=int, help="DAG cap (CONCURRENCY)")
    ap.add_argument("--minutes-per-analysis", type=float, help="measured minutes per analysis")
    ap.add_argument("--vcpu-quota", type=float, help="Fargate On-Demand vCPU quota")
    ap.add_argument("--vcpu-per-task", type=int, help="vCPU per task")
    ap.add_argument("--rpm", type=float, help="Gemini project requests per minute")
    ap.add_argument("--tpm", type=float, help="Gemini project tokens per minute")
    ap.add_argument("--recording-minutes", type=float, help="average recording minutes")
    ap.add_argument("--tokens-per-second", type=float, help="video tokens/s (300 default, 100 low)")
    ap.add_argument("--idle-fraction", type=float, help="share of the recording skipped as idle")
    ap.add_argument("--segment-seconds", type=float, help="SEGMENT_SECONDS")
    ap.add_argument("--map-concurrency", type=int, help="MAP_CONCURRENCY")
    ap.add_argument("--png", type=Path, help="write the drain curve here")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.tfvars = args.tfvars or default_tfvars()
    levers, notes = _apply_overrides(levers_from_tfvars(args.tfvars), args)
    text, code = report(levers, args, notes)
    print(text)
    if args.png and code == 0:
        p = plan(levers)
        series = {
            k: (d.analyses_per_hour, levers.workloads[k].batch_size)
            for k, d in p.drain.items()
            if levers.workloads[k].batch_size
        }
        write_png(args.png, drain_curve(series))
        legend = ", ".join(f"{k} {c}" for k, c in zip(series, COLOUR_NAMES, strict=False))
        print(f"drain curve written to {args.png} (analyses done over hours; {legend})")
    if notes:
        print("note: what-ifs differ from the tfvars: edit the tfvars before `make plan`")
    return code


def load_cases(path: Path = CASES_FILE) -> dict[str, Any]:
    return json.loads(path.read_text())


if __name__ == "__main__":
    sys.exit(main())
