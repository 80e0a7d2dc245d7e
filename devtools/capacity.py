"""Capacity planner: what operators run before `terraform apply` (`make capacity`).

It reproduces the decision record's arithmetic (350 ÷ 12 × 35 min ≈ 17 h), then, from the
same tfvars Terraform applies, shows each workload's predicted drain, the binding constraint
(Fargate vCPU quota, DAG cap, Gemini TPM or Gemini RPM) and the lever to move next.

There is one capacity model: `terraform/modules/capacity`. This module does no arithmetic of
its own: it evaluates that module (a throwaway root calling it, `terraform apply` with local
state in a temporary directory; no provider, about a second) on the tfvars plus any what-ifs,
and presents the outputs. The plan fails here exactly when `terraform plan` would.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
TERRAFORM_DIR = REPO_ROOT / "terraform"
MODULE_DIR = TERRAFORM_DIR / "modules" / "capacity"
DEFAULT_TFVARS = (
    TERRAFORM_DIR / "terraform.tfvars",
    TERRAFORM_DIR / "examples" / "decision-record.tfvars",
)
# Which DAG lever each container's cap is (names in plugins/analysis_pipeline/config.py).
CAP_LEVERS = {
    "task-analyzer": "MAX_CONCURRENT_ANALYSES",
    "proctor-video": "MAX_CONCURRENT_PROCTOR_VIDEOS",
}

# The throwaway root: the root module's capacity inputs (`any`, so the module alone types
# and defaults them; null means "the module's default"), what-ifs merged per workload.
ROOT_MODULE = """
variable "workloads" { type = any }
variable "workload_overrides" {
  type    = any
  default = {}
}
variable "gemini_project_rpm" { type = any }
variable "gemini_project_tpm" { type = any }
variable "fargate_vcpu_quota" {
  type    = any
  default = null
}
variable "fargate_vcpu_quota_applied" {
  type    = any
  default = null
}
variable "headroom_vcpu" {
  type    = any
  default = null
}
variable "gemini_model_quotas" {
  type    = any
  default = null
}
variable "gemini_reserved_fraction" {
  type    = any
  default = null
}
variable "analysis_timeout_minutes" {
  type    = any
  default = null
}

locals {
  what_if = { for k, w in var.workloads : k => merge(w, try(var.workload_overrides[k], {})) }
}

module "capacity" {
  source = "./capacity"

  workloads                  = local.what_if
  gemini_project_rpm         = var.gemini_project_rpm
  gemini_project_tpm         = var.gemini_project_tpm
  fargate_vcpu_quota         = var.fargate_vcpu_quota
  fargate_vcpu_quota_applied = var.fargate_vcpu_quota_applied
  headroom_vcpu              = var.headroom_vcpu
  gemini_model_quotas        = var.gemini_model_quotas
  gemini_reserved_fraction   = var.gemini_reserved_fraction
  analysis_timeout_minutes   = var.analysis_timeout_minutes
}

output "plan" { value = module.capacity }
output "tfvars" {
  value = {
    workloads          = var.workloads
    fargate_vcpu_quota = var.fargate_vcpu_quota
    gemini_project_rpm = var.gemini_project_rpm
    gemini_project_tpm = var.gemini_project_tpm
    headroom_vcpu      = var.headroom_vcpu
  }
}
"""
# Warnings about the tfvars' other (non-capacity) variables are expected, not news.
IGNORED_WARNINGS = ("Value for undeclared variable", "Values for undeclared variables")


class PlannerError(RuntimeError):
    """terraform could not be run at all (not a failing plan: that is Evaluation.errors)."""


@dataclass
class Evaluation:
    """modules/capacity's outputs for one set of inputs, or why `plan` would fail."""

    plan: dict[str, Any] | None
    tfvars: dict[str, Any] | None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def evaluate(
    tfvars: Path | None,
    variables: Mapping[str, Any] | None = None,
    workload_overrides: Mapping[str, Mapping[str, Any]] | None = None,
    terraform: str | None = None,
) -> Evaluation:
    """Apply modules/capacity (no provider, local state in a temporary directory)."""
    binary = terraform or os.environ.get("TERRAFORM") or shutil.which("terraform")
    if not binary:
        raise PlannerError("terraform not found on PATH (need >= 1.10): the planner runs it")
    with tempfile.TemporaryDirectory(prefix="capacity-") as tmp:
        work = Path(tmp)
        shutil.copytree(
            MODULE_DIR, work / "capacity", ignore=shutil.ignore_patterns(".terraform*", "tests")
        )
        (work / "main.tf").write_text(ROOT_MODULE)
        extra = {**(variables or {}), "workload_overrides": dict(workload_overrides or {})}
        (work / "what-if.tfvars.json").write_text(json.dumps(extra))
        env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}
        if not Path(env.get("TF_CLI_CONFIG_FILE", "/nonexistent")).exists():
            env["TF_CLI_CONFIG_FILE"] = ""

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [binary, *args], cwd=work, env=env, capture_output=True, text=True, timeout=120
            )

        init = run("init", "-backend=false", "-input=false", "-no-color")
        if init.returncode != 0:
            raise PlannerError(f"terraform init failed:\n{init.stdout}{init.stderr}")
        files = ([f"-var-file={tfvars.resolve()}"] if tfvars else []) + [
            "-var-file=what-if.tfvars.json"
        ]
        apply = run("apply", "-auto-approve", "-input=false", "-refresh=false", "-json", *files)
        errors, warnings = _diagnostics(apply.stdout)
        if apply.returncode != 0:
            if not errors:
                errors = [(apply.stderr or apply.stdout).strip()]
            return Evaluation(None, None, errors, warnings)
        out = run("output", "-json")
        if out.returncode != 0:
            raise PlannerError(f"terraform output failed:\n{out.stderr}")
        values = json.loads(out.stdout)
        return Evaluation(values["plan"]["value"], values["tfvars"]["value"], [], warnings)


def _diagnostics(stream: str) -> tuple[list[str], list[str]]:
    """Errors and warnings from `terraform apply -json`, one line each."""
    errors: list[str] = []
    warnings: list[str] = []
    for line in stream.splitlines():
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            continue
        if message.get("type") != "diagnostic":
            continue
        diag = message["diagnostic"]
        if diag["summary"].startswith(IGNORED_WARNINGS):
            continue
        text = " ".join((diag.get("detail") or diag["summary"]).split())
        (errors if diag["severity"] == "error" else warnings).append(text)
    return errors, warnings


def record_hours(submissions: float, concurrency: float, minutes_per_analysis: float) -> float:
    """The decision record's figure: results land as each finishes, so no rounding to waves."""
    return submissions / concurrency * minutes_per_analysis / 60


def default_tfvars() -> Path:
    return next(p for p in DEFAULT_TFVARS if p.exists())


# --- presentation -----------------------------------------------------------------------------


def _show(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, str):
        return value
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.4g}"


def next_lever(plan: Mapping[str, Any], name: str, quota: float | None) -> str:
    """One sentence: which lever to move next for workload `name`, and how far."""
    w = plan["workloads"][name]
    d = plan["drain"][name]
    cap_lever = CAP_LEVERS.get(name, f"{name} max_concurrent")
    if d["binding"] == "Fargate vCPU" and plan["caps_limited_by_quota"]:
        return (
            f"wait for the Fargate vCPU increase to {_show(plan['quota_to_request'])}: until "
            f"AWS grants it {cap_lever} is held at {d['concurrency']} of "
            f"{w['max_concurrent']} (or lower headroom_vcpu)"
        )
    if d["binding"] in ("Fargate vCPU", "DAG cap"):
        nxt = plan["next_cap"][name]
        if nxt["cap"] <= w["max_concurrent"]:
            return f"{cap_lever} cannot usefully rise: {nxt['stops_at']} binds next"
        needs_quota = quota is not None and nxt["vcpu_quota"] > quota
        quota_part = (
            f" and fargate_vcpu_quota from {_show(quota)} to {_show(nxt['vcpu_quota'])}"
            if needs_quota
            else " (fits the current quota)"
        )
        hours = w["batch_size"] / nxt["analyses_per_hour"] if w["batch_size"] else 0
        return (
            f"raise {cap_lever} from {w['max_concurrent']} to {nxt['cap']}{quota_part} in one "
            f"apply -> {nxt['analyses_per_hour']:.1f} analyses/h"
            + (f", {hours:.1f} h for the batch" if hours else "")
            + f"; beyond that {nxt['stops_at']} binds"
        )
    model = _tightest_model(plan, name, "tpm" if d["binding"] == "Gemini TPM" else "rpm")
    budget = plan["gemini_model_budgets"][model]
    needed = plan["gemini_quota_needed"][model]
    if d["binding"] == "Gemini RPM":
        return (
            f"raise the Gemini RPM quota of {model} from {_show(budget['rpm'])} (usable) to "
            f">= {_show(needed['rpm'])} (or lengthen SEGMENT_SECONDS from "
            f"{_show(w['segment_seconds'])}: fewer calls per analysis); until then more "
            f"Fargate vCPU or a higher {cap_lever} buys nothing"
        )
    cheaper = "media_resolution = low (~100 tokens/s), " if w["media_resolution"] != "low" else ""
    return (
        f"raise the Gemini TPM quota of {model} from {_show(budget['tpm'])} (usable) to "
        f">= {_show(needed['tpm'])} (or {cheaper}more idle skipping); until then more Fargate "
        f"vCPU or a higher {cap_lever} buys nothing"
    )


def _tightest_model(plan: Mapping[str, Any], name: str, unit: str) -> str:
    """The model this workload calls whose fleet demand most exceeds its budget."""
    used = plan["per_analysis"][name]["by_model"]
    demand, budgets = plan["gemini_fleet_demand"], plan["gemini_model_budgets"]
    return max(used, key=lambda m: demand[m][unit] / budgets[m][unit])


def report(
    evaluation: Evaluation, args: argparse.Namespace, notes: Sequence[str]
) -> tuple[str, int]:
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
    lines.append(
        f"Levers (from {args.tfvars}, evaluated by terraform/modules/capacity)"
        + (" with what-ifs:" if notes else "")
    )
    lines += [f"  what-if, differs from the tfvars: {n}" for n in notes]
    plan, tfvars = evaluation.plan, evaluation.tfvars
    if plan is None or tfvars is None:
        lines += [f"  terraform plan would fail: {e}" for e in evaluation.errors]
        return "\n".join(lines), 1
    quota = args.vcpu_quota if args.vcpu_quota is not None else tfvars["fargate_vcpu_quota"]
    lines.append(
        f"  Fargate vCPU: caps need {_show(plan['required_vcpu'])} of quota "
        f"{'(sized from the caps)' if quota is None else _show(quota)}; request "
        f"{_show(plan['quota_to_request'])}; caps written "
        + ", ".join(f"{k} {c}" for k, c in plan["effective_caps"].items())
    )
    for model, budget in plan["gemini_model_budgets"].items():
        demand = plan["gemini_fleet_demand"][model]
        lines.append(
            f"  Gemini {model}, fleet-wide (shared budget store): {_show(budget['rpm'])} RPM, "
            f"{_show(budget['tpm'])} TPM; the caps written ask {_show(round(demand['rpm']))} "
            f"RPM, {_show(round(demand['tpm']))} TPM"
        )
        shares = (plan.get("gemini_shares") or {}).get(model)
        if shares:
            weights = ":".join(_show(plan["workloads"][k]["gemini_weight"]) for k in shares)
            lines.append(
                f"    shared by gemini_weight ({weights}): "
                + ", ".join(f"{k} {_show(round(v))} TPM" for k, v in shares.items())
            )
    lines.append("")
    for name in plan["workloads"]:
        lines += _workload_lines(plan, name, quota)
    lines += [f"warning: {w}" for w in evaluation.warnings]
    return "\n".join(lines), 0


def _workload_lines(plan: Mapping[str, Any], name: str, quota: float | None) -> list[str]:
    w, d, per = plan["workloads"][name], plan["drain"][name], plan["per_analysis"][name]
    source = "measured" if w["minutes_per_analysis"] is not None else "modelled"
    out = [
        f"{name}: cap {w['max_concurrent']} × {w['vcpu']} vCPU / {w['memory_mib']} MiB, "
        f"{per['minutes']:.1f} min per analysis ({source}, MAP_CONCURRENCY="
        f"{w['map_concurrency']}), {per['requests']:g} Gemini calls and "
        f"{per['tokens']:,.0f} tokens each",
        f"  analyses/h allowed by Fargate vCPU {d['fargate_per_hour']:.1f}, DAG cap "
        f"{d['cap_per_hour']:.1f}, Gemini TPM {d['tpm_per_hour']:.1f}, "
        f"Gemini RPM {d['rpm_per_hour']:.1f}",
        f"  binding constraint: {d['binding']} (running {d['concurrency']} at once)",
    ]
    if w["batch_size"]:
        out.append(f"  predicted drain of {w['batch_size']:g}: {d['hours']:.1f} h")
    out += [f"  lever to move next: {next_lever(plan, name, quota)}", ""]
    return out


def plot_drain(plan: Mapping[str, Any], path: Path) -> list[str]:
    """Completed analyses over hours, one line per workload with a batch; returns the names."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    series = {k: d for k, d in plan["drain"].items() if plan["workloads"][k]["batch_size"]}
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for name, d in series.items():
        batch = plan["workloads"][name]["batch_size"]
        ax.plot(
            [0, d["hours"], max(dd["hours"] for dd in series.values()) * 1.05],
            [0, batch, batch],
            label=f"{name}: {d['analyses_per_hour']:.1f}/h, {d['hours']:.1f} h ({d['binding']})",
        )
    ax.set_xlabel("hours")
    ax.set_ylabel("analyses completed")
    ax.set_title("Predicted drain at the caps written (terraform/modules/capacity)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return list(series)


# --- CLI --------------------------------------------------------------------------------------

# CLI flag -> workload attribute of modules/capacity (what-ifs for --workload).
WORKLOAD_FLAGS = {
    "concurrency": "max_concurrent",
    "minutes_per_analysis": "minutes_per_analysis",
    "vcpu_per_task": "vcpu",
    "recording_minutes": "avg_recording_minutes",
    "tokens_per_second": "tokens_per_second",
    "idle_fraction": "idle_fraction",
    "segment_seconds": "segment_seconds",
    "map_concurrency": "map_concurrency",
    "gemini_weight": "gemini_weight",
    "submissions": "batch_size",
}
TOP_FLAGS = {
    "vcpu_quota": "fargate_vcpu_quota",
    "vcpu_quota_applied": "fargate_vcpu_quota_applied",
    "rpm": "gemini_project_rpm",
    "tpm": "gemini_project_tpm",
}


def what_ifs(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The module variables and per-workload attributes the CLI flags set."""
    top = {v: getattr(args, k) for k, v in TOP_FLAGS.items() if getattr(args, k) is not None}
    per = {v: getattr(args, k) for k, v in WORKLOAD_FLAGS.items() if getattr(args, k) is not None}
    return top, ({args.workload: per} if per else {})


def differences(
    tfvars: Mapping[str, Any] | None,
    top: Mapping[str, Any],
    per: Mapping[str, Mapping[str, Any]],
) -> list[str]:
    """Each what-if that differs from the tfvars, as `name = new (tfvars: old)`."""
    if tfvars is None:
        return [f"{k} = {_show(v)}" for k, v in top.items()] + [
            f"workloads[{w}].{k} = {_show(v)}" for w, attrs in per.items() for k, v in attrs.items()
        ]
    notes = [
        f"{k} = {_show(v)} (tfvars: {_show(tfvars.get(k))})"
        for k, v in top.items()
        if k in tfvars and tfvars[k] != v
    ]
    for w, attrs in per.items():
        given = tfvars["workloads"].get(w, {})
        notes += [
            f"workloads[{w}].{k} = {_show(v)} (tfvars: {_show(given.get(k))})"
            for k, v in attrs.items()
            if k != "batch_size" and given.get(k) != v
        ]
    return notes


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="make capacity", description=__doc__.split("\n\n")[0])
    ap.add_argument("--tfvars", type=Path, default=None, help="tfvars Terraform applies")
    ap.add_argument("--workload", default="task-analyzer", help="which container the what-ifs move")
    ap.add_argument("--submissions", type=float, help="batch to drain (SUBMISSIONS)")
    ap.add_argument("--concurrency", type=int, help="DAG cap (CONCURRENCY)")
    ap.add_argument("--minutes-per-analysis", type=float, help="measured minutes per analysis")
    ap.add_argument("--vcpu-quota", type=float, help="Fargate On-Demand vCPU quota to plan")
    ap.add_argument(
        "--vcpu-quota-applied", type=float, help="quota AWS applies now (a pending request)"
    )
    ap.add_argument("--vcpu-per-task", type=int, help="vCPU per task")
    ap.add_argument("--rpm", type=float, help="Gemini project requests per minute, per model")
    ap.add_argument("--tpm", type=float, help="Gemini project tokens per minute, per model")
    ap.add_argument("--recording-minutes", type=float, help="average recording minutes")
    ap.add_argument("--tokens-per-second", type=float, help="video tokens/s (300 default, 100 low)")
    ap.add_argument("--idle-fraction", type=float, help="share of the recording skipped as idle")
    ap.add_argument("--segment-seconds", type=float, help="SEGMENT_SECONDS")
    ap.add_argument("--map-concurrency", type=int, help="MAP_CONCURRENCY")
    ap.add_argument(
        "--gemini-weight", type=float, help="share of a Gemini budget the workloads compete for"
    )
    ap.add_argument("--png", type=Path, help="write the drain curve here")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.tfvars = args.tfvars or default_tfvars()
    top, per = what_ifs(args)
    try:
        evaluation = evaluate(args.tfvars, top, per)
    except PlannerError as exc:
        print(f"capacity: {exc}", file=sys.stderr)
        return 2
    notes = differences(evaluation.tfvars, top, per)
    text, code = report(evaluation, args, notes)
    print(text)
    if args.png and evaluation.plan is not None:
        names = plot_drain(evaluation.plan, args.png)
        print(f"drain curve written to {args.png} ({', '.join(names)})")
    if notes:
        print("note: what-ifs differ from the tfvars: edit the tfvars before `make plan`")
    return code


if __name__ == "__main__":
    sys.exit(main())
